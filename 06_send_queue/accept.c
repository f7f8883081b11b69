/* accept.c -- new connections: accept until the queue is empty, and the EMFILE trap
 *
 * The listening socket is non-blocking: accept() stops at EAGAIN instead
 * of blocking when the queue is empty (another process, or a client that
 * gave up, may have emptied it since epoll said so).
 */
#include "accept.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPTS_PER_TURN 64  /* then let the other connections have a turn */
#define ACCEPT_PAUSE_MS  100 /* when even the spare fd is gone */

/* Refuse a connection we cannot or will not serve: close it at once and say
 * why in one line. Accepting it first is the only way to tell the client:
 * left in the queue, it would wait for an answer that never comes. What the
 * client sees depends on what it did: if it has sent nothing, close() sends
 * a FIN and it reads the end of the stream; if its bytes already sit unread
 * in our receive buffer, close() sends a reset instead, and its next recv()
 * fails with ECONNRESET ("Connection reset by peer"). */
static void refuse(int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
}

/* Stop watching the listener for ACCEPT_PAUSE_MS instead of spinning on an
 * accept() that keeps failing; server_accepting() resumes. */
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
        refuse(fd, net_addr_str((struct sockaddr *)&addr, peer), "out of file descriptors");
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

void server_accept(struct server *s)
{
    /* Edge-triggered: the listener reports readable once for a whole burst
     * of connections; stopping before EAGAIN would strand the rest until
     * the next client arrives. Level-triggered: it reports again, so we
     * may stop early and let the other connections have their turn. */
    int max_accepts = s->cfg.mode == MODE_LT ? ACCEPTS_PER_TURN : INT_MAX;
    for (int i = 0; i < max_accepts; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        /* accept4: the new socket is born non-blocking and close-on-exec
         * (a plain accept() does not inherit O_NONBLOCK on Linux). */
        int fd =
            accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the queue is empty */
            if (errno == EINTR || accept_error_is_one_connection(errno))
                continue; /* a signal; one connection failed: the next may be fine */
            if (errno == EMFILE || errno == ENFILE) {
                if (!accept_with_spare(s))
                    return;
                continue;
            }
            /* Not about one connection (ENOBUFS, ENOMEM...): it would fail
             * again at once. Even with ET the connections left in the queue
             * are not stranded: when the pause ends, the loop registers the
             * listener again, and epoll_ctl reports what is already waiting. */
            pause_accept(s, strerror(errno));
            return;
        }
        char peer[ADDR_STR_LEN];
        net_addr_str((struct sockaddr *)&addr, peer);
        if (s->cfg.max_conns > 0 && s->nconns >= s->cfg.max_conns) {
            refuse(fd, peer, "--max-conns reached");
            continue;
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
            refuse(fd, peer, ERR_NO_MEMORY);
            continue;
        }
        trace("accept fd=%d from %s (%ld connections)", fd, c->peer, s->nconns);
    }
}

bool server_accepting(struct server *s)
{
    if (s->accept_paused_until_ms != 0 && server_now_ms() >= s->accept_paused_until_ms) {
        s->accept_paused_until_ms = 0;
        if (s->spare_fd == -1)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    return s->accept_paused_until_ms == 0;
}
