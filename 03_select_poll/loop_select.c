/* loop_select.c -- the event loop with select(): bitmaps rebuilt every turn */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <sys/select.h>
#include <time.h>

static void on_new(struct server *s, struct conn *c, void *arg)
{
    (void)s, (void)c, (void)arg; /* nothing to register: the sets are rebuilt each turn */
}

void loop_select(struct server *s)
{
    while (!stop_requested) {
        /* select() overwrites the sets (and on Linux its timeout) with its
         * answer, so the sets are built from scratch on every turn. */
        fd_set rset, wset;
        FD_ZERO(&rset);
        FD_ZERO(&wset);
        int nfds = 0;
        if (server_accepting(s)) {
            FD_SET(s->listen_fd, &rset);
            nfds = s->listen_fd + 1;
        }
        /* Every fd in conns[] is below FD_SETSIZE: server_accept() refused
         * the others (s->fd_limit). */
        for (int fd = 0; fd <= s->max_fd; fd++) {
            struct conn *c = s->conns[fd];
            if (c == NULL)
                continue;
            FD_SET(fd, c->want == WANT_WRITE ? &wset : &rset);
            if (fd + 1 > nfds)
                nfds = fd + 1;
        }
        int wait_ms = server_wait_ms(s);
        struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000L};
        /* pselect: select with a timespec it leaves alone, and a signal mask
         * it installs while it waits: the stop signals are unblocked there
         * and only there (server.c, block_stop_signals). */
        int n = pselect(nfds, &rset, &wset, NULL, wait_ms < 0 ? NULL : &ts, &s->wait_mask);
        if (n == -1) {
            if (errno == EINTR)
                continue; /* the loop condition looks at stop_requested */
            die("pselect");
        }
        trace("select -> %d ready", n);
        bool listener_ready = FD_ISSET(s->listen_fd, &rset);
        if (listener_ready)
            n--; /* so that n counts only connections in the scan below */

        /* The cost of select: to find the n ready fds we test every bit up
         * to the highest fd, however few are ready. */
        int last = s->max_fd;
        for (int fd = 0; fd <= last && n > 0; fd++) {
            struct conn *c = s->conns[fd];
            if (c == NULL)
                continue;
            enum want next = c->want;
            if (FD_ISSET(fd, &rset)) {
                n--;
                trace("readable fd=%d", fd);
                next = conn_on_readable(s, c);
            } else if (FD_ISSET(fd, &wset)) {
                n--;
                trace("writable fd=%d", fd);
                next = conn_on_writable(c);
            }
            if (next == WANT_CLOSE)
                conn_close(s, c, "done");
            else
                c->want = next;
        }
        /* Accept last: new fds must not be tested against this turn's sets. */
        if (listener_ready) {
            trace("readable fd=%d (listening socket)", s->listen_fd);
            server_accept(s, on_new, NULL);
        }
    }
}
