#ifdef __linux__
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "CPeerwayLinux.h"

enum { CPEERWAY_MAX_BATCH = 256 };

int cpeerway_send_batch(int fd, const void *buffer, size_t stride, size_t length, unsigned int n) {
    struct mmsghdr msgs[CPEERWAY_MAX_BATCH];
    struct iovec iov[CPEERWAY_MAX_BATCH];
    if (n > CPEERWAY_MAX_BATCH) n = CPEERWAY_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * n);
    for (unsigned int i = 0; i < n; i++) {
        iov[i].iov_base = (char *)buffer + i * stride;
        iov[i].iov_len = length;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return sendmmsg(fd, msgs, n, 0);
}

int cpeerway_receive_batch(int fd, void *buffer, size_t stride, unsigned int n, unsigned int *lengths) {
    struct mmsghdr msgs[CPEERWAY_MAX_BATCH];
    struct iovec iov[CPEERWAY_MAX_BATCH];
    if (n > CPEERWAY_MAX_BATCH) n = CPEERWAY_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * n);
    for (unsigned int i = 0; i < n; i++) {
        iov[i].iov_base = (char *)buffer + i * stride;
        iov[i].iov_len = stride;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL);
    for (int i = 0; i < got; i++) lengths[i] = msgs[i].msg_len;
    return got;
}

int cpeerway_epoll_create(void) { return epoll_create1(0); }

int cpeerway_epoll_add(int epfd, int fd, unsigned int tag) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int cpeerway_epoll_wait_tags(int epfd, unsigned int *tags, int n, int timeout_ms) {
    struct epoll_event events[256];
    if (n > 256) n = 256;
    int got = epoll_wait(epfd, events, n, timeout_ms);
    for (int i = 0; i < got; i++) tags[i] = (unsigned int)events[i].data.u64;
    return got;
}
#endif
