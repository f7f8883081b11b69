/* accept.c -- new connections: each accept's completion, the queue at a stop, and the EMFILE trap
 *
 * Appendix 10: the loop keeps one multishot accept in flight on the
 * listening socket, one submission for any number of connections: each
 * arrives here as a completion with its new fd. The listening socket is
 * non-blocking all the same: the accept() calls made here (the queue at a
 * stop, the EMFILE dance) stop at EAGAIN instead of blocking when the
 * queue is empty.
 */
#include "accept.h"
#include "shutdown.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_PAUSE_MS 100 /* when even the spare fd is gone */

/* Refuse a connection we cannot or will not serve: close it at once and say
 * why in one line. Accepting it first is the only way to tell the client:
 * left in the queue, it would wait for an answer that never comes. What the
 * client sees depends on what it did: if it has sent nothing, close() sends
 * a FIN and it reads the end of the stream; if its bytes already sit unread
 * in our receive buffer, close() sends a reset instead, and its next recv()
 * fails with ECONNRESET ("Connection reset by peer"). */
static void refuse(struct server *s, int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
    s->count.refused++;
}

/* Stop accepting for ACCEPT_PAUSE_MS instead of spinning on an accept()
 * that keeps failing; server_accepting() resumes. */
static void pause_accept(struct server *s, const char *why)
{
    fprintf(stderr, "server: accept: %s, pausing accept for %d ms\n", why, ACCEPT_PAUSE_MS);
    s->accept_paused_until_ms = server_now_ms() + ACCEPT_PAUSE_MS;
}

/* Running out of file descriptors (EMFILE: this process, ENFILE: the whole
 * system) is the classic accept trap: the connection stays in the queue,
 * the listening socket stays readable, and a naive loop spins at 100% CPU.
 * The remedy: keep one fd in reserve. When accept() says EMFILE, give the
 * reserve back, accept the connection with it, close it at once, and take
 * the reserve again. The client learns it was refused: the end of the
 * stream if it has sent nothing yet, a reset if it has (see refuse()). */
static bool accept_with_spare(struct server *s)
{
    if (s->spare_fd == -1) {
        /* No reserve left (we could not reopen it). */
        pause_accept(s, "out of file descriptors");
        return false;
    }
    close(s->spare_fd);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_CLOEXEC);
    if (fd != -1) {
        char peer[ADDR_STR_LEN];
        refuse(s, fd, net_addr_str((struct sockaddr *)&addr, peer), "out of file descriptors");
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* fd == -1: the queue was empty after all (accept4 reports EMFILE
     * before it looks at the queue). */
    return fd != -1;
}

/* Errors accept() reports for one connection only: the client gave up while
 * queued (ECONNABORTED), a firewall rule refused it (EPERM), or, on Linux, a
 * network error already pending on the new socket (accept(2), "Error
 * handling"). The connection is gone; the ones behind it are not. */
static bool accept_error_is_one_connection(int err)
{
    switch (err) {
    case ECONNABORTED:
    case EPERM:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH: return true;
    default: return false;
    }
}

void server_accepted(struct server *s, int fd)
{
    /* A multishot accept has one address buffer for all its completions,
     * so it is given none: the socket itself says who the peer is. */
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getpeername(fd, (struct sockaddr *)&addr, &len) == -1) {
        /* Reset while it waited in the accept queue (ENOTCONN): accepted
         * all the same, and closed as an error at once, as lesson 9's
         * first recv on it would have done (the counters stay the same). */
        fprintf(stderr, "server: accept fd=%d: the peer is gone already (getpeername: %s)\n", fd,
                strerror(errno));
        addr.ss_family = AF_UNSPEC;
        struct conn *c = conn_new(s, fd, (struct sockaddr *)&addr);
        if (c == NULL) {
            close(fd);
            return;
        }
        conn_close(s, c, CLOSE_ERROR);
        return;
    }
    char peer[ADDR_STR_LEN];
    net_addr_str((struct sockaddr *)&addr, peer);
    if (s->cfg.max_conns > 0 && s->nconns >= s->cfg.max_conns) {
        refuse(s, fd, peer, "--max-conns reached");
        return;
    }
    /* A fixed SO_SNDBUF turns autotuning off for this socket (the
     * kernel doubles the value for its bookkeeping). */
    if (s->cfg.sndbuf_bytes > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s->cfg.sndbuf_bytes, sizeof(int)) == -1)
        fprintf(stderr, "server: %s: setsockopt(SO_SNDBUF): %s\n", peer, strerror(errno));
    /* Nagle's algorithm holds a small write while an earlier one is
     * unacknowledged; with the peer's delayed ACK, a reply can wait
     * ~40 ms. A request/response server turns it off. */
    int on = 1;
    if (s->cfg.nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
        fprintf(stderr, "server: %s: setsockopt(TCP_NODELAY): %s\n", peer, strerror(errno));
    struct conn *c = conn_new(s, fd, (struct sockaddr *)&addr);
    if (c == NULL) {
        refuse(s, fd, peer, ERR_NO_MEMORY);
        return;
    }
    trace("accept fd=%d from %s (%ld connections)", fd, c->peer, s->nconns);
    /* The ring's accept may complete after the stop began (its cancel was
     * still on the way): this one is stopped like the others, with a FIN. */
    if (s->stopping)
        shutdown_begin(s, c, CLOSE_STOP);
}

bool server_accept_failed(struct server *s, int err)
{
    if (err == EINTR || accept_error_is_one_connection(err))
        return true; /* a signal; one connection failed: the next may be fine */
    if (err == EMFILE || err == ENFILE) {
        /* Appendix 10: the kernel takes the new fd before it looks at the
         * queue, so at the limit the ring's accept fails at once, whether a
         * client waits or not: armed again straight away, it would spin.
         * So refuse every client that waits, then let ACCEPT_PAUSE_MS pass
         * before the next try (quietly: each refusal has its line). */
        while (accept_with_spare(s))
            ;
        if (s->accept_paused_until_ms == 0)
            s->accept_paused_until_ms = server_now_ms() + ACCEPT_PAUSE_MS;
        return false;
    }
    /* Not about one connection (ENOBUFS, ENOMEM...): it would fail again
     * at once. The connections left in the queue are not stranded: when
     * the pause ends, the loop arms a new accept, which takes them. */
    pause_accept(s, strerror(err));
    return false;
}

void server_accept(struct server *s)
{
    for (;;) {
        /* accept4: the new socket is born non-blocking and close-on-exec
         * (a plain accept() does not inherit O_NONBLOCK on Linux). */
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the queue is empty */
            if (!server_accept_failed(s, errno))
                return;
            continue;
        }
        server_accepted(s, fd);
    }
}

bool server_accepting(struct server *s)
{
    if (s->stopping)
        return false;
    if (s->accept_paused_until_ms != 0 && s->now_ms >= s->accept_paused_until_ms) {
        s->accept_paused_until_ms = 0;
        if (s->spare_fd == -1)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    return s->accept_paused_until_ms == 0;
}
