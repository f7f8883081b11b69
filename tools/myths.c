/* myths.c -- four beliefs about sockets that students bring along, each put to
 * an experiment on loopback. The lessons' "common misconceptions" boxes run
 * these; every line printed is a measurement, not a claim.
 *
 *   myths et-epollout      edge-triggered EPOLLOUT needs no re-registration
 *   myths connect-eintr    connect() interrupted by a signal must not be retried
 *   myths send-zero        send() does not return 0 when the peer has closed
 *   myths packed-header    a packed struct puts integers in host byte order
 */
#include "toolkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void fail(const char *what)
{
    log_line("%s: %s", what, strerror(errno));
    exit(1);
}

/* A loopback listener on a port the kernel chooses; *addr says where. */
static int listener(int backlog, struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        fail("socket");
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof *addr;
    if (bind(fd, (struct sockaddr *)addr, sizeof *addr) == -1 || listen(fd, backlog) == -1 ||
        getsockname(fd, (struct sockaddr *)addr, &len) == -1)
        fail("listen");
    return fd;
}

static int connected(const struct sockaddr_in *addr, int flags)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd == -1)
        fail("socket");
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == -1 && errno != EINPROGRESS)
        fail("connect");
    return fd;
}

static const char *events_name(int n, const struct epoll_event *ev)
{
    if (n == 0)
        return "nothing";
    return ev->events & EPOLLOUT ? "EPOLLOUT" : "another event";
}

/* Belief: after an edge-triggered EPOLLOUT, the socket must be registered
 * again (EPOLL_CTL_MOD) to hear of the next one. The kernel reports a new
 * edge whenever the send buffer goes from full to having room. */
static int et_epollout(void)
{
    struct sockaddr_in addr;
    int lfd = listener(1, &addr);
    int fd = connected(&addr, SOCK_NONBLOCK);
    int peer = accept(lfd, NULL, NULL);
    if (peer == -1)
        fail("accept");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.fd = fd};
    if (ep == -1 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
        fail("epoll");
    printf("registered once: EPOLL_CTL_ADD, EPOLLOUT | EPOLLET\n");
    int n = epoll_wait(ep, &ev, 1, 1000);
    printf("1. connected, buffer empty: epoll_wait -> %s\n", events_name(n, &ev));

    static char block[65536];
    long total = 0;
    for (;;) {
        ssize_t w = send(fd, block, sizeof block, MSG_NOSIGNAL);
        if (w == -1 && errno == EAGAIN)
            break;
        if (w == -1)
            fail("send");
        total += w;
    }
    n = epoll_wait(ep, &ev, 1, 200);
    printf("2. sent %ld bytes until EAGAIN, nobody reads: epoll_wait (200 ms) -> %s\n", total,
           events_name(n, &ev));

    long got = 0;
    while (got < total) {
        ssize_t r = recv(peer, block, sizeof block, 0);
        if (r <= 0)
            fail("recv");
        got += r;
    }
    n = epoll_wait(ep, &ev, 1, 1000);
    printf("3. the peer read all %ld bytes, no epoll_ctl since: epoll_wait -> %s\n", got,
           events_name(n, &ev));
    close(ep);
    close(peer);
    close(fd);
    close(lfd);
    return n == 1 && (ev.events & EPOLLOUT) ? 0 : 1;
}

static void on_alarm(int sig)
{
    (void)sig; /* only there to interrupt connect() */
}

/* A blocking connect() to addr, interrupted by SIGALRM after 200 ms. */
static int interrupted_connect(const struct sockaddr_in *addr, int *err)
{
    struct itimerval t = {.it_value = {.tv_usec = 200000}};
    setitimer(ITIMER_REAL, &t, NULL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        fail("socket");
    int r = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
    *err = r == -1 ? errno : 0;
    return fd;
}

/* accept_later: after 300 ms, accept one connection: room in the queue,
 * so the next retransmitted SYN is answered. */
static void *accept_later(void *arg)
{
    usleep(300000);
    int a = accept(*(int *)arg, NULL, NULL);
    return (void *)(intptr_t)a;
}

/* Seconds since t0_ns (clock_ns, CLOCK_MONOTONIC). */
static double since_s(int64_t t0_ns)
{
    return (double)(clock_ns() - t0_ns) / 1e9;
}

static const char *result(int r, int err)
{
    return r == 0 ? "0" : strerrorname_np(err);
}

/* Belief: connect() that fails with EINTR is simply called again. The
 * handshake goes on in the kernel: POSIX says a second connect() fails
 * with EALREADY, and so does Linux on a non-blocking socket; on a blocking
 * one Linux waits for the same attempt instead. What works everywhere:
 * wait until the socket is writable, then read SO_ERROR. */
static int connect_eintr(void)
{
    struct sockaddr_in addr;
    int lfd = listener(0, &addr); /* Linux queues backlog + 1 = 1 connection */
    int first = connected(&addr, SOCK_NONBLOCK);
    struct pollfd p = {.fd = first, .events = POLLOUT};
    poll(&p, 1, 1000); /* its handshake done: the accept queue is full */
    printf("a listener with a full accept queue drops SYNs: connect() blocks\n");
    struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    int err, err2;
    int fd = interrupted_connect(&addr, &err);
    printf("1. blocking connect(), SIGALRM after 200 ms: %s\n", result(err == 0 ? 0 : -1, err));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    err2 = errno;
    printf("2. connect() again, non-blocking: %s (the attempt goes on)\n", result(r, err2));
    pthread_t th;
    pthread_create(&th, NULL, accept_later, &lfd);
    int64_t t0 = clock_ns();
    p = (struct pollfd){.fd = fd, .events = POLLOUT};
    int ready = poll(&p, 1, 5000);
    int so_error = -1;
    socklen_t len = sizeof so_error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    printf("3. poll(POLLOUT) (one connection accepted at 300 ms): %s after %.1f s, "
           "SO_ERROR %s: connected\n",
           ready == 1 ? "writable" : "timeout", since_s(t0), result(so_error, so_error));
    void *a1;
    pthread_join(th, &a1);
    int r4 = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    printf("4. connect() once more: %s (Linux reports the finished attempt once)\n",
           result(r4, errno));
    r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int err4 = errno;
    printf("   and again: %s\n", result(r, err4));

    int err5;
    int fd2 = interrupted_connect(&addr, &err5); /* the queue is full again */
    pthread_create(&th, NULL, accept_later, &lfd);
    t0 = clock_ns();
    r = connect(fd2, (struct sockaddr *)&addr, sizeof addr);
    int err6 = errno;
    printf("5. another socket: %s, then a blocking connect() again: %s after %.1f s: "
           "Linux waited for the same attempt\n",
           result(-1, err5), result(r, err6), since_s(t0));
    void *a2;
    pthread_join(th, &a2);
    close((int)(intptr_t)a1);
    close((int)(intptr_t)a2);
    close(fd2);
    close(fd);
    close(first);
    close(lfd);
    return err == EINTR && err2 == EALREADY && ready == 1 && so_error == 0 && r4 == 0 &&
                   err4 == EISCONN && err5 == EINTR && r == 0
               ? 0
               : 1;
}

/* Three send() calls 100 ms apart on fd; true if one of them returned 0. */
static bool three_sends(int fd)
{
    bool zero = false;
    for (int i = 1; i <= 3; i++) {
        ssize_t w = send(fd, "hello", 5, MSG_NOSIGNAL);
        printf("   send(5 bytes) -> %zd%s%s\n", w, w == -1 ? " " : "",
               w == -1 ? strerrorname_np(errno) : "");
        zero = zero || w == 0;
        usleep(100000); /* time for the peer's kernel to answer with a RST */
    }
    return zero;
}

/* Belief: send() returns 0 when the peer has closed, as recv() does. It
 * returns the bytes the kernel took, or -1 with an errno. */
static int send_zero(void)
{
    struct sockaddr_in addr;
    int lfd = listener(1, &addr);
    char b[1];

    int fd = connected(&addr, 0);
    int peer = accept(lfd, NULL, NULL);
    if (peer == -1)
        fail("accept");
    close(peer); /* nothing unread: a FIN */
    usleep(100000);
    printf("1. the peer called close(): a FIN; recv() -> %zd (end of stream)\n", recv(fd, b, 1, 0));
    bool zero = three_sends(fd);
    close(fd);

    fd = connected(&addr, 0);
    peer = accept(lfd, NULL, NULL);
    if (peer == -1)
        fail("accept");
    struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
    setsockopt(peer, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
    close(peer); /* a RST, no FIN before it */
    usleep(100000);
    printf("2. the peer reset the connection (SO_LINGER {1, 0}, close)\n");
    zero = three_sends(fd) || zero;
    printf("send() returned 0: %s\n", zero ? "yes" : "never");
    close(fd);
    close(lfd);
    return zero ? 1 : 0;
}

/* Belief: a packed struct with the header's fields can be sent as it is. Its
 * integers are in the host's byte order; the protocol's are big-endian. */
struct __attribute__((packed)) wire_header {
    uint8_t flags;
    uint32_t origin_size;
    uint32_t compress_size;
    uint8_t reserved[16];
};

static void show(const char *what, const struct wire_header *h)
{
    uint8_t bytes[sizeof *h];
    memcpy(bytes, h, sizeof bytes);
    printf("%s: bytes 0-8 =", what);
    for (int i = 0; i < 9; i++)
        printf(" %02x", bytes[i]);
    printf("; a big-endian reader sees origin_size %u\n", get_u32_be(bytes + 1));
}

/* The same fields without the attribute: the compiler aligns origin_size. */
struct padded_header {
    uint8_t flags;
    uint32_t origin_size;
    uint32_t compress_size;
    uint8_t reserved[16];
};

static int packed_header(void)
{
    printf("sizeof: %zu packed, %zu without the attribute (padding after flags)\n",
           sizeof(struct wire_header), sizeof(struct padded_header));
    struct wire_header h = {.flags = 0, .origin_size = 5};
    show("1. origin_size = 5", &h);
    h.origin_size = htonl(5);
    show("2. origin_size = htonl(5)", &h);
    return 0;
}

int main(int argc, char **argv)
{
    tool_name = "myths";
    const char *which = argc == 2 ? argv[1] : "";
    if (strcmp(which, "et-epollout") == 0)
        return et_epollout();
    if (strcmp(which, "connect-eintr") == 0)
        return connect_eintr();
    if (strcmp(which, "send-zero") == 0)
        return send_zero();
    if (strcmp(which, "packed-header") == 0)
        return packed_header();
    fprintf(stderr, "usage: myths et-epollout|connect-eintr|send-zero|packed-header\n");
    return 2;
}
