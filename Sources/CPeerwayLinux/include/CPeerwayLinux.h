// Batched UDP send/receive (sendmmsg/recvmmsg) and epoll for the load generators of `peerway bench`.
// Swift's Glibc module does not expose these (_GNU_SOURCE); the header stays free of system types
// so it does not clash with Glibc, and shim.c does the work.
#ifndef CPEERWAY_LINUX_H
#define CPEERWAY_LINUX_H

#include <stddef.h>

/// Sends `n` datagrams of `length` bytes each, laid out `stride` bytes apart in `buffer`, on the
/// connected socket `fd`. Returns how many were sent, or -1 with errno set.
int cpeerway_send_batch(int fd, const void *buffer, size_t stride, size_t length, unsigned int n);

/// Receives up to `n` datagrams without blocking into slots `stride` bytes apart in `buffer`,
/// writing each one's length into `lengths`. Returns how many arrived, or -1 with errno set.
int cpeerway_receive_batch(int fd, void *buffer, size_t stride, unsigned int n, unsigned int *lengths);

/// epoll_create1(0).
int cpeerway_epoll_create(void);

/// Registers `fd` for input with `tag` as its user data.
int cpeerway_epoll_add(int epfd, int fd, unsigned int tag);

/// Waits up to `timeout_ms` for at most `n` (<= 256) ready fds and writes their tags. Returns the
/// count, or -1 with errno set.
int cpeerway_epoll_wait_tags(int epfd, unsigned int *tags, int n, int timeout_ms);

#endif
