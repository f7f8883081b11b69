/* connect.c -- non-blocking connect: EINPROGRESS, wait for writability, SO_ERROR
 *
 * A blocking connect() to a host that does not answer waits for the
 * kernel's SYN retries: over two minutes on Linux by default
 * (net.ipv4.tcp_syn_retries = 6). A non-blocking connect returns at once,
 * and we decide how long to wait.
 */
#include "connect.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

const char *connect_result_name(enum connect_result r)
{
    switch (r) {
    case CONNECT_OK: return "connected";
    case CONNECT_REFUSED: return "refused";
    case CONNECT_TIMED_OUT: return "timed out";
    case CONNECT_SELF: return "self-connect";
    case CONNECT_FD_TOO_HIGH: return "fd too high for select";
    case CONNECT_FAILED: return "failed";
    }
    return "?";
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* never jumps, unlike the wall clock */
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* wait_writable's answer when select() cannot watch the fd at all */
#define WAIT_FD_TOO_HIGH (-2)

/* Wait until fd is writable or the deadline (in microseconds) passes. Returns 1 (writable),
 * 0 (deadline passed), -1 (error, errno set) or WAIT_FD_TOO_HIGH. A signal
 * (EINTR) only recomputes how much time is left: the deadline does not move. */
static int wait_writable(int fd, enum connect_wait how, long long deadline_us)
{
    for (;;) {
        long long left = deadline_us - now_us();
        if (left <= 0)
            return 0;
        int n;
        if (how == WAIT_POLL) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            n = poll(&p, 1, (int)((left + 999) / 1000)); /* round up: never wake early */
        } else {
            /* select() can only watch fds below FD_SETSIZE (1024): FD_SET
             * on a larger fd writes outside the fd_set. Refuse instead. */
            if (fd >= FD_SETSIZE)
                return WAIT_FD_TOO_HIGH;
            fd_set wset;
            FD_ZERO(&wset); /* select() modifies the set: rebuild it every time */
            FD_SET(fd, &wset);
            struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};
            n = select(fd + 1, NULL, &wset, NULL, &tv);
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -1;
        if (n > 0)
            return 1;
    }
}

/* Is the socket connected to itself? Then local and peer address are equal. */
static bool is_self_connect(int fd)
{
    struct sockaddr_storage local, peer;
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) == -1 ||
        getpeername(fd, (struct sockaddr *)&peer, &peer_len) == -1)
        return false;
    return local_len == peer_len && memcmp(&local, &peer, local_len) == 0;
}

static enum connect_result fail(int fd, int err, enum connect_result r, int *err_out)
{
    if (fd != -1)
        close(fd);
    *err_out = err;
    return r;
}

static enum connect_result classify(int err)
{
    switch (err) {
    case ECONNREFUSED: return CONNECT_REFUSED;
    case ETIMEDOUT: return CONNECT_TIMED_OUT;
    default: return CONNECT_FAILED;
    }
}

enum connect_result connect_with_timeout(const struct connect_request *req, int *fd_out,
                                         int *err_out)
{
    long long deadline_us = now_us() + (long long)req->timeout_ms * 1000;
    *fd_out = -1;
    *err_out = 0;

    /* SOCK_NONBLOCK saves the fcntl() round trip; SOCK_CLOEXEC keeps the fd
     * out of programs we might exec. */
    int fd = socket(req->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return fail(-1, errno, CONNECT_FAILED, err_out);

    const struct sockaddr *dest = req->addr;
    struct sockaddr_storage bound;
    if (req->bind_to_peer) {
        /* The deterministic self-connect: take the destination address as
         * our own local address (with port 0 the kernel picks a free port,
         * and that becomes the destination). Nobody listens there, so our
         * SYN arrives at our own socket, which is itself sending a SYN: a
         * "simultaneous open" with itself, which TCP completes. */
        socklen_t len = sizeof bound;
        if (bind(fd, req->addr, req->addr_len) == -1 ||
            getsockname(fd, (struct sockaddr *)&bound, &len) == -1)
            return fail(fd, errno, CONNECT_FAILED, err_out);
        dest = (const struct sockaddr *)&bound;
    }

    if (connect(fd, dest, req->addr_len) == -1) {
        /* EINPROGRESS: the handshake has started; the answer comes later.
         * EINTR: a signal interrupted us, but the handshake goes on in the
         * kernel; calling connect() again would fail with EALREADY, so we
         * wait for it exactly as for EINPROGRESS. */
        if (errno != EINPROGRESS && errno != EINTR)
            return fail(fd, errno, classify(errno), err_out);
        int ready = wait_writable(fd, req->wait, deadline_us);
        if (ready == -1)
            return fail(fd, errno, CONNECT_FAILED, err_out);
        if (ready == WAIT_FD_TOO_HIGH)
            return fail(fd, 0, CONNECT_FD_TOO_HIGH, err_out);
        if (ready == 0)
            return fail(fd, ETIMEDOUT, CONNECT_TIMED_OUT, err_out);
        /* The lesson: writable does NOT mean connected. A failed connect is
         * writable too; SO_ERROR tells which (and clears the error). */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            return fail(fd, errno, CONNECT_FAILED, err_out);
        if (err != 0)
            return fail(fd, err, classify(err), err_out);
    }
    /* connect() may also succeed at once on a non-blocking socket: Linux TCP
     * does so when TCP_FASTOPEN_CONNECT is set and a Fast Open cookie (or
     * TCP_FASTOPEN_NO_COOKIE, which needs none) lets it put off the SYN until
     * the first write; without them it is EINPROGRESS, even on loopback
     * (tests/tfo_connect.c measures both). Unix-domain sockets succeed at once. */

    if (req->local_out != NULL)
        net_local_str(fd, req->local_out);
    if (is_self_connect(fd))
        return fail(fd, 0, CONNECT_SELF, err_out);

    /* Hand the socket back in blocking mode, the mode callers expect (the
     * netcat of lesson 3 switches O_NONBLOCK on again for its poll loop).
     * fcntl reports failure by returning -1: check that, not errno. */
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1)
        return fail(fd, errno, CONNECT_FAILED, err_out);
    *fd_out = fd;
    return CONNECT_OK;
}
