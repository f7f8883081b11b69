/* loop_epoll.c -- the event loop with epoll: the interest list lives in the kernel
 *
 * select and poll hand the kernel the whole list of fds on every call, and
 * scan all of it for the few that are ready. With epoll the list is kept
 * in the kernel (epoll_ctl ADD/MOD/DEL changes it), and epoll_wait returns
 * only the ready fds: the cost of a turn follows the number of events, not
 * the number of connections.
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAX_EVENTS 256 /* events taken per epoll_wait; the rest wait for the next call */

/* What we ask epoll to report for a connection that wants w. EPOLLOUT only
 * while we have something to send: a level-triggered EPOLLOUT on an idle
 * socket (room in the send buffer) would fire on every single turn. */
static uint32_t interest(const struct server *s, enum want w)
{
    uint32_t ev = w == WANT_WRITE ? EPOLLOUT : EPOLLIN | EPOLLRDHUP;
    if (s->cfg.mode != MODE_LT)
        ev |= EPOLLET;
    if (s->cfg.oneshot)
        ev |= EPOLLONESHOT;
    return ev;
}

/* Returns 0, or -1 with errno (ENOMEM, or ENOSPC past fs.epoll.max_user_watches). */
static int watch(struct server *s, int op, int fd, uint32_t events, void *ptr)
{
    /* epoll_data is a union: we keep a pointer to the connection (NULL for
     * the listening socket), so an event leads straight to its state
     * without a lookup by fd. */
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    return epoll_ctl(s->epfd, op, fd, &ev);
}

/* The listening socket is setup: failing to watch it ends the server. */
static void watch_listener(struct server *s, int op, uint32_t events)
{
    if (watch(s, op, s->listen_fd, events, NULL) == -1)
        die("epoll_ctl(listening socket)");
}

/* A connection is not: failing to watch it closes that connection only. */
static bool watch_conn(struct server *s, int op, struct conn *c)
{
    if (watch(s, op, c->fd, interest(s, c->want), c) == 0)
        return true;
    fprintf(stderr, "server: %s: epoll_ctl: %s\n", c->peer, strerror(errno));
    conn_close(s, c, "epoll_ctl failed");
    return false;
}

static void on_new(struct server *s, struct conn *c, void *arg)
{
    (void)arg;
    watch_conn(s, EPOLL_CTL_ADD, c);
}

static void trace_events(int fd, uint32_t e)
{
    trace("epoll: fd=%d%s%s%s%s%s", fd, e & EPOLLIN ? " EPOLLIN" : "",
          e & EPOLLOUT ? " EPOLLOUT" : "", e & EPOLLRDHUP ? " EPOLLRDHUP" : "",
          e & EPOLLHUP ? " EPOLLHUP" : "", e & EPOLLERR ? " EPOLLERR" : "");
}

/* One event for a connection: call the handler it asks for. */
static enum want dispatch(struct server *s, struct conn *c, uint32_t e)
{
    if (e & EPOLLERR) {
        /* A pending error (a reset, say): SO_ERROR tells which, and clears it. */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno; /* could not even ask: report why */
        fprintf(stderr, "server: %s: %s\n", c->peer, err ? strerror(err) : "socket error");
        return WANT_CLOSE;
    }
    if (c->want == WANT_WRITE && (e & (EPOLLOUT | EPOLLHUP)))
        return conn_on_writable(c);
    /* EPOLLRDHUP (the peer shut down its side) and EPOLLHUP may come with
     * data still unread: recv() returns that data first, then 0. */
    if (c->want == WANT_READ && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
        return conn_on_readable(s, c);
    return c->want;
}

void loop_epoll(struct server *s)
{
    /* EPOLL_CLOEXEC, like SOCK_CLOEXEC: not inherited by programs we exec. */
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd == -1)
        die("epoll_create1");
    uint32_t listen_events = EPOLLIN | (s->cfg.mode != MODE_LT ? EPOLLET : 0);
    watch_listener(s, EPOLL_CTL_ADD, listen_events);
    bool listening = true;

    struct epoll_event events[MAX_EVENTS];
    while (!stop_requested) {
        /* While accept is paused, the listener is taken off the interest
         * list (DEL), or a level-triggered epoll would report it on every
         * turn. Why not MOD with an empty mask: epoll_ctl adds EPOLLERR and
         * EPOLLHUP to every mask, so those would still be reported. When the
         * pause ends, ADD checks the socket's state at once: connections
         * that queued up meanwhile are reported, even edge-triggered. */
        bool want_listen = server_accepting(s);
        if (want_listen != listening) {
            watch_listener(s, want_listen ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_events);
            listening = want_listen;
        }
        /* epoll_pwait: epoll_wait that unblocks the stop signals while it
         * waits, and only then (server.c, block_stop_signals). */
        int n = epoll_pwait(s->epfd, events, MAX_EVENTS, server_wait_ms(s), &s->wait_mask);
        if (n == -1) {
            if (errno == EINTR)
                continue; /* the loop condition looks at stop_requested */
            die("epoll_pwait");
        }
        trace("epoll_wait -> %d events", n);
        /* Only ready fds come back: no scan over every connection. */
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                server_accept(s, on_new, NULL);
                continue;
            }
            trace_events(c->fd, events[i].events);
            enum want next = dispatch(s, c, events[i].events);
            if (next == WANT_CLOSE) {
                /* close() also removes the fd from the interest list (as
                 * long as no dup() of it is open elsewhere). */
                conn_close(s, c, "done");
                continue;
            }
            if (next != c->want || s->cfg.oneshot) {
                if (next != c->want)
                    trace("fd=%d: %s", c->fd,
                          next == WANT_WRITE ? "EAGAIN: EPOLLOUT on" : "all sent: EPOLLIN on");
                else
                    trace("fd=%d: re-arm (EPOLLONESHOT)", c->fd);
                c->want = next;
                watch_conn(s, EPOLL_CTL_MOD, c);
            }
        }
    }
}
