/* loop_epoll.c -- the event loop with epoll: the interest list lives in the kernel
 *
 * select and poll hand the kernel the whole list of fds on every call, and
 * scan all of it for the few that are ready. With epoll the list is kept
 * in the kernel (epoll_ctl ADD/MOD/DEL changes it), and epoll_wait returns
 * only the ready fds: the cost of a turn follows the number of events, not
 * the number of connections.
 */
#include "server.h"
#include "workers.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAX_EVENTS 256 /* events taken per epoll_wait; the rest wait for the next call */

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

/* A new connection starts reading; EPOLLOUT comes only with queued output. */
static void on_new(struct server *s, struct conn *c, void *arg)
{
    (void)arg;
    c->events = EPOLLIN | EPOLLRDHUP | (s->cfg.mode == MODE_ET ? EPOLLET : 0);
    if (watch(s, EPOLL_CTL_ADD, c->fd, c->events, c) == -1) {
        /* failing to watch a connection closes that connection only */
        fprintf(stderr, "server: %s: epoll_ctl: %s\n", c->peer, strerror(errno));
        c->reason = CLOSE_ERROR;
        conn_close(s, c);
    }
}

static void trace_events(int fd, uint32_t e)
{
    trace("epoll: fd=%d%s%s%s%s%s", fd, e & EPOLLIN ? " EPOLLIN" : "",
          e & EPOLLOUT ? " EPOLLOUT" : "", e & EPOLLRDHUP ? " EPOLLRDHUP" : "",
          e & EPOLLHUP ? " EPOLLHUP" : "", e & EPOLLERR ? " EPOLLERR" : "");
}

/* One event for a connection: call the handlers it asks for, then bring
 * the epoll registration in line with the connection's state. */
static void dispatch(struct server *s, struct conn *c, uint32_t e)
{
    if (c->closing)
        return; /* marked during this turn (cap, error): nothing more to do */
    if (e & EPOLLERR) {
        /* A pending error (a reset, say): SO_ERROR tells which, and clears it. */
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        fprintf(stderr, "server: %s: %s\n", c->peer, err ? strerror(err) : "socket error");
        conn_mark_closing(s, c, CLOSE_ERROR);
        return;
    }
    if (e & EPOLLOUT)
        conn_on_writable(s, c);
    /* EPOLLRDHUP (the peer shut down its side) and EPOLLHUP may come with
     * data still unread: recv() returns that data first, then 0. */
    if ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !c->closing)
        conn_on_readable(s, c);
    conn_update(s, c);
}

void loop_epoll(struct server *s)
{
    /* EPOLL_CLOEXEC, like SOCK_CLOEXEC: not inherited by programs we exec. */
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd == -1)
        die("epoll_create1");
    uint32_t listen_events = EPOLLIN | (s->cfg.mode != MODE_LT ? EPOLLET : 0);
    watch_listener(s, EPOLL_CTL_ADD, listen_events);
    /* Worker replies announce themselves on an eventfd: one more fd in the
     * same epoll set, so the loop sleeps in one place for everything. */
    static char workers_tag; /* its address marks the eventfd's events */
    if (s->workers != NULL &&
        watch(s, EPOLL_CTL_ADD, workers_eventfd(s->workers), EPOLLIN, &workers_tag) == -1)
        die("epoll_ctl(eventfd)");
    /* Lesson 7: signals are one more fd in the set (see signals_setup). */
    static char signal_tag;
    if (watch(s, EPOLL_CTL_ADD, s->signal_fd, EPOLLIN, &signal_tag) == -1)
        die("epoll_ctl(signalfd)");
    bool listening = true;

    struct epoll_event events[MAX_EVENTS];
    while (!server_stop_done(s)) {
        /* While accept is paused (out of fds), the listener is taken out of
         * the interest list, or a level-triggered epoll would report it on
         * every turn. Once stopping, it is closed (server_begin_stop). */
        bool want_listen = server_accepting(s);
        if (!s->stopping && want_listen != listening) {
            watch_listener(s, EPOLL_CTL_MOD, want_listen ? listen_events : 0);
            listening = want_listen;
        }
        /* Connections with work left over (et budgets) mean: do not sleep.
         * Otherwise sleep until an event or the nearest timer deadline. */
        int n = epoll_wait(s->epfd, events, MAX_EVENTS, s->more != NULL ? 0 : server_wait_ms(s));
        /* One clock reading per turn: timers and counters use it. */
        s->now_ms = server_now_ms();
        if (n == -1) {
            if (errno == EINTR) /* SIGUSR2, say: not an error, just another turn */
                continue;
            die("epoll_wait");
        }
        trace("epoll_wait -> %d events", n);
        /* Only ready fds come back: no scan over every connection. */
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                if (s->listen_fd != -1) /* a stop earlier in this turn closed it */
                    server_accept(s, on_new, NULL, false);
                continue;
            }
            if ((void *)c == (void *)&workers_tag) {
                workers_collect(s->workers);
                continue;
            }
            if ((void *)c == (void *)&signal_tag) {
                if (server_on_signal(s)) {
                    /* The kernel has completed the handshakes of the
                     * connections in the accept queue; closing the
                     * listener would reset them. Take them in first: the
                     * stop then ends them like the others, with a FIN. */
                    server_accept(s, on_new, NULL, true);
                    server_begin_stop(s);
                }
                continue;
            }
            trace_events(c->fd, events[i].events);
            dispatch(s, c, events[i].events);
        }
        server_serve_more(s);
        server_run_timers(s);
        /* Only now, with no event of this turn left to name them. */
        server_close_marked(s);
    }
}
