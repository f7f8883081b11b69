/* loop_epoll.c -- the event loop: the only code that talks to epoll
 *
 * select and poll hand the kernel the whole list of fds on every call, and
 * scan all of it for the few that are ready. With epoll the list is kept
 * in the kernel (epoll_ctl ADD/MOD/DEL changes it), and epoll_wait returns
 * only the ready fds: the cost of a turn follows the number of events, not
 * the number of connections.
 *
 * One turn:
 *   1. wait for events (or the nearest timer deadline);
 *   2. each event: the connection's handler, then conn_settle(), whose
 *      answer (read, write, close) becomes its epoll interest;
 *   3. et: serve again the connections whose budget ran out;
 *   4. expired timers;
 *   5. settle every connection that other work changed this turn (a
 *      broadcast, a worker's reply, a timer, a new connection);
 *   6. free the connections closed this turn.
 */
#include "loop_epoll.h"
#include "accept.h"
#include "handlers.h"
#include "service.h"
#include "shutdown.h"
#include "workers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256 /* events taken per epoll_wait; the rest wait for the next call */

/* What each registered fd is: an event carries its fd (data.fd), and this
 * table says which handler it goes to, and what epoll watches for it. */
enum watch_kind { WATCH_NONE, WATCH_LISTENER, WATCH_CONN, WATCH_WORKERS, WATCH_SIGNALS };
struct watch {
    enum watch_kind kind;
    uint32_t events; /* the interest registered right now */
};

static struct watch *watch_of(struct server *s, int fd)
{
    if (fd >= s->watches_cap) {
        int cap = s->watches_cap == 0 ? 64 : s->watches_cap;
        while (cap <= fd)
            cap *= 2;
        struct watch *grown = realloc(s->watches, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        memset(grown + s->watches_cap, 0, (size_t)(cap - s->watches_cap) * sizeof *grown);
        s->watches = grown;
        s->watches_cap = cap;
    }
    return &s->watches[fd];
}

/* Register fd (ADD the first time, MOD after). Returns 0, or -1 with errno
 * (ENOMEM, or ENOSPC past fs.epoll.max_user_watches). */
static int watch(struct server *s, int fd, enum watch_kind kind, uint32_t events)
{
    struct watch *w = watch_of(s, fd);
    if (w == NULL) {
        errno = ENOMEM;
        return -1;
    }
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(s->epfd, w->kind == WATCH_NONE ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) == -1)
        return -1;
    *w = (struct watch){.kind = kind, .events = events};
    return 0;
}

/* Setup fds (listener, eventfd, signalfd): failing to watch one ends the server. */
static void watch_or_die(struct server *s, int fd, enum watch_kind kind, uint32_t events,
                         const char *what)
{
    if (watch(s, fd, kind, events) == -1)
        die(what);
}

/* Take fd off the interest list; setup fds only (the listener's pause). */
static void unwatch_or_die(struct server *s, int fd, const char *what)
{
    if (epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL) == -1)
        die(what);
    s->watches[fd] = (struct watch){.kind = WATCH_NONE};
}

/* The listener follows server_accepting(). While accept is paused, the
 * listener is taken off the interest list (DEL), or a level-triggered epoll
 * would report it on every turn. Why not MOD with an empty mask: epoll_ctl
 * adds EPOLLERR and EPOLLHUP to every mask, so those would still be
 * reported. When the pause ends, ADD checks the socket's state at once:
 * connections that queued up meanwhile are reported, even edge-triggered. */
static void watch_listener(struct server *s, uint32_t listen_events)
{
    bool listening = s->watches[s->listen_fd].kind == WATCH_LISTENER;
    if (server_accepting(s) == listening)
        return;
    if (listening)
        unwatch_or_die(s, s->listen_fd, "epoll_ctl(listening socket)");
    else
        watch_or_die(s, s->listen_fd, WATCH_LISTENER, listen_events, "epoll_ctl(listening socket)");
}

/* What a connection wants, made epoll interest. EPOLLOUT only while
 * something is queued: an idle socket is always writable, and a
 * level-triggered EPOLLOUT would fire on every turn. */
static void apply(struct server *s, struct conn *c, enum want want)
{
    if (want & WANT_CLOSE)
        return; /* freed at the end of the turn; close() unregisters it */
    uint32_t ev = (want & WANT_READ ? EPOLLIN | EPOLLRDHUP : 0) |
                  (want & WANT_WRITE ? EPOLLOUT : 0) | (s->cfg.mode == MODE_ET ? EPOLLET : 0);
    struct watch *w = c->fd < s->watches_cap ? &s->watches[c->fd] : NULL;
    if (w == NULL || w->kind != WATCH_CONN || w->events != ev) {
        if (w != NULL && w->kind == WATCH_CONN && ((ev ^ w->events) & EPOLLOUT))
            trace("fd=%d: EPOLLOUT %s", c->fd,
                  ev & EPOLLOUT ? "on (output queued)" : "off (queue empty)");
        if (watch(s, c->fd, WATCH_CONN, ev) == -1) {
            /* failing to watch a connection closes that connection only */
            fprintf(stderr, "server: %s: epoll_ctl: %s\n", c->peer, strerror(errno));
            conn_close(s, c, CLOSE_ERROR);
            return;
        }
    }
    /* et: a budget ran out with work left, and epoll will not say so again.
     * (lt: it reports the socket again by itself.) */
    if ((want & WANT_MORE) && s->cfg.mode == MODE_ET && !c->more) {
        c->more = true;
        c->next_more = s->more;
        s->more = c;
    }
}

static void trace_events(int fd, uint32_t e)
{
    trace("epoll: fd=%d%s%s%s%s%s", fd, e & EPOLLIN ? " EPOLLIN" : "",
          e & EPOLLOUT ? " EPOLLOUT" : "", e & EPOLLRDHUP ? " EPOLLRDHUP" : "",
          e & EPOLLHUP ? " EPOLLHUP" : "", e & EPOLLERR ? " EPOLLERR" : "");
}

/* One event for a connection: its handlers, then what it wants next. */
static void dispatch(struct server *s, struct conn *c, uint32_t e)
{
    if (c->state == CONN_CLOSING)
        return; /* closed earlier in this turn: nothing more to do */
    if (e & EPOLLERR) {
        conn_on_error(s, c);
        return;
    }
    enum want more = WANT_NOTHING;
    if (e & EPOLLOUT)
        more |= conn_on_writable(s, c);
    /* EPOLLRDHUP (the peer shut down its side) and EPOLLHUP may come with
     * data still unread: recv() returns that data first, then 0. */
    if ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && c->state != CONN_CLOSING)
        more |= conn_on_readable(s, c);
    apply(s, c, more | conn_settle(s, c));
}

/* et: connections whose budget ran out are served again, taken as a whole
 * list (those that still have work put themselves back). */
static void serve_more(struct server *s)
{
    struct conn *list = s->more;
    s->more = NULL;
    while (list != NULL) {
        struct conn *c = list;
        list = c->next_more;
        c->more = false;
        dispatch(s, c, EPOLLIN | (buf_readable(&c->out) > 0 ? EPOLLOUT : 0));
    }
}

/* The end of a turn: settle what other work changed (settling one may
 * change others: a resumed client's broadcast), then free the closed. */
static void end_turn(struct server *s)
{
    struct conn *c;
    while ((c = conn_next_changed(s)) != NULL)
        apply(s, c, conn_settle(s, c));
    for (c = s->closed; c != NULL; c = c->next_closed)
        s->watches[c->fd].kind = WATCH_NONE; /* close() takes it out of epoll */
    conn_free_closed(s);
}

static void on_signal(struct server *s)
{
    if (!server_on_signal(s))
        return;
    /* The kernel has completed the handshakes of the connections in the
     * accept queue; closing the listener would reset them. Take them in
     * first: the stop then ends them like the others, with a FIN. */
    server_accept(s, true);
    s->watches[s->listen_fd].kind = WATCH_NONE; /* server_begin_stop closes it */
    server_begin_stop(s);
}

void loop_epoll(struct server *s)
{
    /* EPOLL_CLOEXEC, like SOCK_CLOEXEC: not inherited by programs we exec. */
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd == -1)
        die("epoll_create1");
    uint32_t listen_events = EPOLLIN | (s->cfg.mode != MODE_LT ? EPOLLET : 0);
    watch_or_die(s, s->listen_fd, WATCH_LISTENER, listen_events, "epoll_ctl(listening socket)");
    /* Worker replies announce themselves on an eventfd, and signals on a
     * signalfd: more fds in the same set, so the loop sleeps in one place
     * for everything. */
    if (s->workers != NULL)
        watch_or_die(s, workers_eventfd(s->workers), WATCH_WORKERS, EPOLLIN, "epoll_ctl(eventfd)");
    watch_or_die(s, s->signal_fd, WATCH_SIGNALS, EPOLLIN, "epoll_ctl(signalfd)");

    struct epoll_event events[MAX_EVENTS];
    while (!server_stop_done(s)) {
        if (!s->stopping) /* once stopping, it is closed (server_begin_stop) */
            watch_listener(s, listen_events);
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
            int fd = events[i].data.fd;
            switch (s->watches[fd].kind) {
            case WATCH_LISTENER: server_accept(s, false); break;
            case WATCH_WORKERS: service_collect(s); break;
            case WATCH_SIGNALS: on_signal(s); break;
            case WATCH_CONN:
                trace_events(fd, events[i].events);
                dispatch(s, conn_find(s, fd), events[i].events);
                break;
            case WATCH_NONE: break; /* the listener, closed by a stop earlier in this turn */
            }
        }
        serve_more(s);
        server_run_timers(s);
        end_turn(s);
    }
}
