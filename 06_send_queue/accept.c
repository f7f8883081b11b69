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

/* Refuse a connection we cannot or will not serve: close it at once, so the
 * client sees the end of the stream, and say why in one line. */
static void refuse(int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
}

/* Running out of file descriptors (EMFILE: this process, ENFILE: the whole
 * system) is the classic accept trap: the connection stays in the queue,
 * the listening socket stays readable, and a naive loop spins at 100% CPU.
 * The remedy: keep one fd in reserve. When accept() says EMFILE, give the
 * reserve back, accept the connection with it, close it at once (the
 * client sees a clean end of stream instead of waiting forever), and take
 * the reserve again. */
static bool accept_with_spare(struct server *s)
{
    if (s->spare_fd == -1) {
        /* No reserve left (we could not reopen it): stop watching the
         * listener for a moment instead of spinning. */
        fprintf(stderr, "server: accept: out of file descriptors, pausing accept for %d ms\n",
                ACCEPT_PAUSE_MS);
        s->accept_paused_until_ms = server_now_ms() + ACCEPT_PAUSE_MS;
        return false;
    }
    close(s->spare_fd);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept(s->listen_fd, (struct sockaddr *)&addr, &len);
    if (fd != -1) {
        char peer[ADDR_STR_LEN];
        refuse(fd, net_addr_str((struct sockaddr *)&addr, peer), "out of file descriptors");
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* fd == -1: the queue was empty after all (accept4 reports EMFILE
     * before it looks at the queue). */
    return fd != -1;
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
            if (errno == EINTR || errno == ECONNABORTED)
                continue; /* a signal; a client that gave up while queued */
            if (errno == EMFILE || errno == ENFILE) {
                if (!accept_with_spare(s))
                    return;
                continue;
            }
            fprintf(stderr, "server: accept: %s\n", strerror(errno));
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
