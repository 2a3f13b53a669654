#ifdef __linux__
#define _GNU_SOURCE
#include <sched.h>
#include <sys/epoll.h>
#endif
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "CPeerwayLinux.h"

#ifdef __linux__
static int batch_send(int fd, struct iovec *iov, struct sockaddr_storage *addrs, unsigned int n) {
    struct mmsghdr msgs[CPEERWAY_MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * n);
    for (unsigned int i = 0; i < n; i++) {
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (addrs) {
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = addrs[i].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        }
    }
    return sendmmsg(fd, msgs, n, 0);
}

static int batch_receive(int fd, struct iovec *iov, struct sockaddr_storage *addrs, unsigned int n,
                         unsigned int *lengths, unsigned char *truncated) {
    struct mmsghdr msgs[CPEERWAY_MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * n);
    for (unsigned int i = 0; i < n; i++) {
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (addrs) {
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        }
    }
    int got = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL);
    for (int i = 0; i < got; i++) {
        lengths[i] = msgs[i].msg_len;
        if (truncated) truncated[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    }
    return got;
}
#else
static int batch_send(int fd, struct iovec *iov, struct sockaddr_storage *addrs, unsigned int n) {
    unsigned int sent = 0;
    for (; sent < n; sent++) {
        const struct sockaddr *to = addrs ? (const struct sockaddr *)&addrs[sent] : NULL;
        socklen_t len = addrs ? (addrs[sent].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) : 0;
        if (sendto(fd, iov[sent].iov_base, iov[sent].iov_len, 0, to, len) < 0) return sent ? (int)sent : -1;
    }
    return (int)sent;
}

static int batch_receive(int fd, struct iovec *iov, struct sockaddr_storage *addrs, unsigned int n,
                         unsigned int *lengths, unsigned char *truncated) {
    unsigned int got = 0;
    for (; got < n; got++) {
        socklen_t len = sizeof(struct sockaddr_storage);
        ssize_t r = recvfrom(fd, iov[got].iov_base, iov[got].iov_len, MSG_DONTWAIT,
                             addrs ? (struct sockaddr *)&addrs[got] : NULL, addrs ? &len : NULL);
        if (r < 0) return got ? (int)got : -1;
        lengths[got] = (unsigned int)r;
        if (truncated) truncated[got] = 0;
    }
    return (int)got;
}
#endif

_Static_assert(sizeof(struct sockaddr_storage) <= CPEERWAY_ADDRESS_SLOT, "address slot too small");

static void make_iov(struct iovec *iov, const void *buffer, size_t stride, const unsigned int *lengths, size_t length, unsigned int n) {
    for (unsigned int i = 0; i < n; i++) {
        iov[i].iov_base = (char *)buffer + i * stride;
        iov[i].iov_len = lengths ? lengths[i] : length;
    }
}

int cpeerway_send_batch(int fd, const void *buffer, size_t stride, size_t length, unsigned int n) {
    struct iovec iov[CPEERWAY_MAX_BATCH];
    if (n > CPEERWAY_MAX_BATCH) n = CPEERWAY_MAX_BATCH;
    make_iov(iov, buffer, stride, NULL, length, n);
    return batch_send(fd, iov, NULL, n);
}

int cpeerway_receive_batch(int fd, void *buffer, size_t stride, unsigned int n, unsigned int *lengths) {
    struct iovec iov[CPEERWAY_MAX_BATCH];
    if (n > CPEERWAY_MAX_BATCH) n = CPEERWAY_MAX_BATCH;
    make_iov(iov, buffer, stride, NULL, stride, n);
    return batch_receive(fd, iov, NULL, n, lengths, NULL);
}

int cpeerway_receive_from_batch(int fd, void *buffer, size_t stride, unsigned int n, unsigned int *lengths,
                                void *addresses, unsigned char *truncated) {
    struct iovec iov[CPEERWAY_MAX_BATCH];
    if (n > CPEERWAY_MAX_BATCH) n = CPEERWAY_MAX_BATCH;
    make_iov(iov, buffer, stride, NULL, stride, n);
    return batch_receive(fd, iov, (struct sockaddr_storage *)addresses, n, lengths, truncated);
}

int cpeerway_send_to_batch(int fd, const void *buffer, size_t stride, const unsigned int *lengths,
                           const void *addresses, unsigned int n) {
    struct iovec iov[CPEERWAY_MAX_BATCH];
    if (n > CPEERWAY_MAX_BATCH) n = CPEERWAY_MAX_BATCH;
    make_iov(iov, buffer, stride, lengths, 0, n);
    return batch_send(fd, iov, (struct sockaddr_storage *)addresses, n);
}

void cpeerway_write_address(void *slot, int family, const unsigned char *ip, unsigned short port) {
    memset(slot, 0, sizeof(struct sockaddr_storage));
    if (family == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)slot;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        memcpy(&a->sin_addr, ip, 4);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)slot;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        memcpy(&a->sin6_addr, ip, 16);
    }
}

int cpeerway_read_address(const void *slot, unsigned char *ip, unsigned short *port) {
    const struct sockaddr_storage *s = (const struct sockaddr_storage *)slot;
    if (s->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)slot;
        memcpy(ip, &a->sin_addr, 4);
        *port = ntohs(a->sin_port);
        return 4;
    }
    if (s->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)slot;
        memcpy(ip, &a->sin6_addr, 16);
        *port = ntohs(a->sin6_port);
        return 6;
    }
    return 0;
}

#ifdef __linux__
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

int cpeerway_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}
#else
int cpeerway_epoll_create(void) { errno = ENOSYS; return -1; }
int cpeerway_epoll_add(int epfd, int fd, unsigned int tag) { (void)epfd; (void)fd; (void)tag; errno = ENOSYS; return -1; }
int cpeerway_epoll_wait_tags(int epfd, unsigned int *tags, int n, int timeout_ms) {
    (void)epfd; (void)tags; (void)n; (void)timeout_ms; errno = ENOSYS; return -1;
}
int cpeerway_pin_thread(int cpu) { (void)cpu; errno = ENOSYS; return -1; }
#endif
