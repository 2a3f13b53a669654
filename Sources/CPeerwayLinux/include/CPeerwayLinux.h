// Batched UDP I/O for the STUN pair's datagram engine and the load generators of `peerway bench`.
// On Linux: sendmmsg/recvmmsg (which Swift's Glibc module does not expose: they need _GNU_SOURCE)
// and epoll; elsewhere a loop of sendto/recvfrom, so the package still builds. The header stays free
// of system types so it does not clash with Glibc; shim.c does the work.
#ifndef CPEERWAY_LINUX_H
#define CPEERWAY_LINUX_H

#include <stddef.h>

/// Bytes reserved per socket address slot (a sockaddr_storage).
#define CPEERWAY_ADDRESS_SLOT 128
/// Most datagrams one batch call moves.
#define CPEERWAY_MAX_BATCH 256

/// Sends `n` datagrams of `length` bytes each, laid out `stride` bytes apart in `buffer`, on the
/// connected socket `fd`. Returns how many were sent, or -1 with errno set.
int cpeerway_send_batch(int fd, const void *buffer, size_t stride, size_t length, unsigned int n);

/// Receives up to `n` datagrams without blocking into slots `stride` bytes apart in `buffer`,
/// writing each one's length into `lengths`. Returns how many arrived, or -1 with errno set.
int cpeerway_receive_batch(int fd, void *buffer, size_t stride, unsigned int n, unsigned int *lengths);

/// Like `cpeerway_receive_batch` on an unconnected socket: also writes each datagram's source
/// address into `addresses` (slots of CPEERWAY_ADDRESS_SLOT bytes) and sets `truncated[i]` when a
/// datagram did not fit its slot.
int cpeerway_receive_from_batch(int fd, void *buffer, size_t stride, unsigned int n, unsigned int *lengths,
                                void *addresses, unsigned char *truncated);

/// Sends `n` datagrams from slots `stride` bytes apart, with `lengths[i]` bytes each, to the
/// addresses in `addresses` (slots of CPEERWAY_ADDRESS_SLOT bytes, as written by
/// `cpeerway_write_address`). Returns how many were sent, or -1 with errno set.
int cpeerway_send_to_batch(int fd, const void *buffer, size_t stride, const unsigned int *lengths,
                           const void *addresses, unsigned int n);

/// Writes an IPv4 (`family` 4, `ip` 4 bytes) or IPv6 (`family` 6, `ip` 16 bytes) socket address
/// with `port` into an address slot.
void cpeerway_write_address(void *slot, int family, const unsigned char *ip, unsigned short port);

/// Reads an address slot: returns 4 or 6 and fills `ip` (16 bytes) and `port`; 0 for other families.
int cpeerway_read_address(const void *slot, unsigned char *ip, unsigned short *port);

/// epoll_create1(0) (Linux only; -1 elsewhere).
int cpeerway_epoll_create(void);

/// Registers `fd` for input with `tag` as its user data.
int cpeerway_epoll_add(int epfd, int fd, unsigned int tag);

/// Waits up to `timeout_ms` for at most `n` (<= 256) ready fds and writes their tags. Returns the
/// count, or -1 with errno set.
int cpeerway_epoll_wait_tags(int epfd, unsigned int *tags, int n, int timeout_ms);

/// Pins the calling thread to CPU `cpu` (Linux only; returns -1 elsewhere).
int cpeerway_pin_thread(int cpu);

#endif
