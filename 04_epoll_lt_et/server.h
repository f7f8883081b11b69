/* server.h -- what the epoll loop uses: connections, accept, handlers */
#ifndef SERVER_H
#define SERVER_H

#include "net.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define IO_BUF_BYTES 65536 /* one read buffer for the whole server */

/* lt: level-triggered; et: edge-triggered, read until EAGAIN;
 * et-no-drain: edge-triggered with ONE read per event (the bug, on purpose). */
enum mode { MODE_LT, MODE_ET, MODE_ET_NO_DRAIN };

/* What a connection wants to wait for next. The handlers return it, and
 * only the loop turns it into epoll interest (EPOLLIN or EPOLLOUT). */
enum want { WANT_READ, WANT_WRITE, WANT_CLOSE };

struct conn {
    int fd;
    char peer[ADDR_STR_LEN];
    /* Echo bytes the kernel did not take yet. While some are pending we
     * stop reading this client: its own slowness limits what we hold. */
    char *pending;
    size_t pending_off, pending_len;
    enum want want;
};

struct config {
    const char *host;
    int port;
    enum mode mode;
    bool oneshot;      /* EPOLLONESHOT: one event, then re-arm by hand */
    size_t read_bytes; /* at most this much per recv (small: the et-no-drain bug shows) */
    int sndbuf_bytes;  /* 0, or SO_SNDBUF for every connection (small: partial sends show) */
    long max_conns;    /* 0: no limit but the fd limit */
};

struct server {
    struct config cfg;
    int listen_fd;
    int spare_fd;        /* reserved for the EMFILE dance, see server_accept() */
    int epfd;            /* the epoll instance: the interest list lives in the kernel */
    struct conn **conns; /* indexed by fd */
    int conns_cap;       /* length of conns[] */
    int max_fd;          /* highest fd in conns[], or -1 */
    long nconns;
    long long accept_paused_until_ms; /* 0, or when to watch the listener again */
    sigset_t wait_mask; /* the signal mask inside the wait: SIGINT, SIGTERM unblocked */
    char io_buf[IO_BUF_BYTES];
};

/* The event loop (loop_epoll.c). Returns when a stop signal arrived. The
 * stop signals are blocked everywhere but inside the wait (epoll_pwait with
 * s->wait_mask): see block_stop_signals(). */
void loop_epoll(struct server *s);

/* Accept the connections waiting on the listening socket: in lt mode up to
 * a bounded number per call, with et until EAGAIN. new_cb is called for
 * each one the server keeps. */
void server_accept(struct server *s, void (*new_cb)(struct server *, struct conn *, void *),
                   void *arg);

/* Should the loop watch the listening socket now? (Not while paused after
 * running out of file descriptors.) And how long may it wait, in ms (-1: forever)? */
bool server_accepting(struct server *s);
int server_wait_ms(const struct server *s);

/* The connection's handlers, called by the loop when the fd is ready.
 * They return what the connection wants next. */
enum want conn_on_readable(struct server *s, struct conn *c);
enum want conn_on_writable(struct conn *c);

/* Close the fd, free the connection, forget it. */
void conn_close(struct server *s, struct conn *c, const char *why);

#endif
