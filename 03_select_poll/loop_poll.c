/* loop_poll.c -- the event loop with poll(): an array of pollfd, no fd limit */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct poll_set {
    struct pollfd *fds; /* fds[0] is the listening socket */
    size_t len, cap;
};

static short events_for(enum want w)
{
    return w == WANT_WRITE ? POLLOUT : POLLIN;
}

/* Called by server_accept() for each new connection: append it. */
static void on_new(struct server *s, struct conn *c, void *arg)
{
    struct poll_set *set = arg;
    if (set->len == set->cap) {
        size_t cap = set->cap * 2;
        struct pollfd *grown = realloc(set->fds, cap * sizeof *grown);
        if (grown == NULL) {
            conn_close(s, c, "out of memory");
            return;
        }
        set->fds = grown;
        set->cap = cap;
    }
    set->fds[set->len++] = (struct pollfd){.fd = c->fd, .events = events_for(c->want)};
}

static void trace_revents(int fd, short re)
{
    trace("poll: fd=%d%s%s%s%s%s", fd, re & POLLIN ? " POLLIN" : "", re & POLLOUT ? " POLLOUT" : "",
          re & POLLHUP ? " POLLHUP" : "", re & POLLERR ? " POLLERR" : "",
          re & POLLNVAL ? " POLLNVAL" : "");
}

/* One ready entry: call the handler the revents ask for. POLLERR, POLLHUP
 * and POLLNVAL come back even if we did not ask for them. */
static enum want dispatch(struct server *s, struct conn *c, short re)
{
    if (re & POLLNVAL) {
        /* The fd is not open: a bug of ours (closed without removing it). */
        fprintf(stderr, "server: BUG: POLLNVAL on fd %d (%s)\n", c->fd, c->peer);
        return WANT_CLOSE;
    }
    if (c->want == WANT_WRITE && (re & (POLLOUT | POLLERR | POLLHUP)))
        return conn_on_writable(c); /* send() reports the error, if any */
    if (c->want == WANT_READ && (re & (POLLIN | POLLERR | POLLHUP)))
        return conn_on_readable(s, c); /* recv() returns the data, 0 or the error */
    return c->want;
}

void loop_poll(struct server *s)
{
    struct poll_set set = {.len = 1, .cap = 64};
    set.fds = malloc(set.cap * sizeof *set.fds);
    if (set.fds == NULL)
        die("malloc");
    set.fds[0] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};

    while (!stop_requested) {
        /* A negative fd is skipped by poll(): how we stop watching the
         * listener while accept is paused. */
        set.fds[0].fd = server_accepting(s) ? s->listen_fd : -1;
        int wait_ms = server_wait_ms(s);
        struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000L};
        /* ppoll: poll that unblocks the stop signals while it waits, and
         * only then (server.c, block_stop_signals). */
        int n = ppoll(set.fds, set.len, wait_ms < 0 ? NULL : &ts, &s->wait_mask);
        if (n == -1) {
            if (errno == EINTR)
                continue; /* the loop condition looks at stop_requested */
            die("ppoll");
        }
        trace("poll -> %d ready of %zu", n, set.len);

        short listen_re = set.fds[0].revents;
        /* Like select, poll makes us scan the whole array for the few entries
         * with revents set. */
        size_t i = 1;
        while (i < set.len && n > 0) {
            short re = set.fds[i].revents;
            if (re == 0) {
                i++;
                continue;
            }
            n--;
            struct conn *c = s->conns[set.fds[i].fd];
            trace_revents(c->fd, re);
            enum want next = dispatch(s, c, re);
            if (next != WANT_CLOSE) {
                c->want = next;
                set.fds[i].events = events_for(next);
                i++;
                continue;
            }
            conn_close(s, c, "done");
            /* The lesson: fill the hole with the last entry and look at slot
             * i AGAIN. The moved entry has not been examined yet and may
             * carry revents from this very poll(); i++ here would skip it
             * (a client whose data then waits for the next event). */
            set.fds[i] = set.fds[set.len - 1];
            set.len--;
        }
        if (listen_re & POLLIN)
            server_accept(s, on_new, &set);
        else if (listen_re & (POLLERR | POLLNVAL))
            die("poll: listening socket failed");
    }
    free(set.fds);
}
