/* shutdown.c -- closing without losing data: half-close, linger, timeouts, the graceful stop
 *
 * close() on a socket whose receive buffer still holds bytes we never read
 * does not send FIN: the kernel sends RST and throws away everything it had
 * not sent yet, replies included; the peer's next recv() fails with
 * ECONNRESET (Linux lets it read first what had already arrived; other
 * systems may not). So a server that wants to end a connection
 *   1. answers what it has already read and flushes its queue (DRAINING),
 *   2. shutdown(SHUT_WR): our FIN, "nothing more from us" (LINGERING),
 *   3. reads and discards until the peer's FIN (a receive of 0), then close().
 * Step 3 is bounded by --linger-ms: a peer that never closes must not keep
 * the connection (and its fd) forever.
 */
#include "shutdown.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* Our own output may hold a connection's messages back (its queue is over
 * the high-water mark, or workers hold its replies): then the peer is not
 * the slow one, and its frame deadline must not run. */
static bool held_back_by_us(const struct server *s, const struct conn *c)
{
    return c->reading_paused || conn_over_high_water(s, c);
}

void shutdown_begin(struct server *s, struct conn *c, enum close_reason why)
{
    if (c->state != CONN_OPEN)
        return;
    trace("fd=%d: %s -> %s (%s)", c->fd, conn_state_name(c->state), conn_state_name(CONN_DRAINING),
          close_reason_name(why));
    c->state = CONN_DRAINING;
    c->reason = why;
    timer_stop(&c->activity);
    timer_stop(&c->frame);
    conn_changed(s, c); /* the loop settles it: stop reading, answer, flush, half-close */
}

void shutdown_drain_step(struct server *s, struct conn *c)
{
    /* Messages already read are answered before we say goodbye, even those
     * that waited while reading was paused: conn_settle has decoded what
     * it could, and this step runs again as the queue drains. */
    if (conn_queued(c) > 0)
        return; /* not flushed yet: a send's completion (or a worker) brings us back */
    /* The queue is empty and decoding found no whole message: what is
     * left is the start of one that will never be finished. */
    if (buf_readable(&c->in) > 0)
        fprintf(stderr, "server: %s: %zu bytes of an unfinished message dropped\n", c->peer,
                buf_readable(&c->in));
    conn_drop_input(s, c);
    if (c->read_eof) { /* the peer has already sent its FIN: nothing to wait for */
        conn_close(s, c, c->reason);
        return;
    }
    /* The lesson: FIN, not close(). Our FIN says "no more from us"; the
     * peer's replies in flight are safe, and we keep reading until its FIN.
     * Appendix 10: a direct call, not IORING_OP_SHUTDOWN: it comes once per
     * connection, and the queue is empty, so no send of ours is in flight
     * for the FIN to overtake. */
    if (shutdown(c->fd, SHUT_WR) == -1) {
        fprintf(stderr, "server: %s: shutdown: %s\n", c->peer, strerror(errno));
        conn_close(s, c, CLOSE_ERROR);
        return;
    }
    trace("shutdown(SHUT_WR) fd=%d: FIN sent, reading until the peer's FIN", c->fd);
    c->state = CONN_LINGERING;
    c->reading_paused = false;
    timer_start(&s->linger_timers, &c->activity, s->now_ms);
}

void shutdown_linger_discard(struct server *s, struct conn *c, size_t n)
{
    trace("recv fd=%d -> %zu bytes, discarded (lingering)", c->fd, n);
    s->count.bytes_in += n;
    s->count.bytes_unanswered += n;
}

/* Close everything that is left, once the stop deadline has passed. */
static void close_the_rest(struct server *s)
{
    long left = 0;
    for (int fd = 0; fd <= s->max_fd; fd++) {
        struct conn *c = s->conns[fd];
        if (c != NULL && c->state != CONN_CLOSING) {
            conn_close(s, c, CLOSE_STOP_DEADLINE);
            left++;
        }
    }
    if (left > 0)
        fprintf(stderr, "server: stop deadline (%d ms): closing %ld connection(s) not done yet\n",
                s->cfg.stop_ms, left);
}

void server_run_timers(struct server *s)
{
    struct timer *t;
    while ((t = timer_list_pop_expired(&s->idle_timers, s->now_ms)) != NULL) {
        struct conn *c = t->owner;
        fprintf(stderr, "server: %s: idle for %d ms: closing\n", c->peer, s->cfg.idle_ms);
        shutdown_begin(s, c, CLOSE_IDLE);
    }
    while ((t = timer_list_pop_expired(&s->frame_timers, s->now_ms)) != NULL) {
        struct conn *c = t->owner;
        if (held_back_by_us(s, c)) { /* not the peer's fault: start over */
            timer_start(&s->frame_timers, t, s->now_ms);
            continue;
        }
        fprintf(stderr, "server: %s: closed: a message took over %d ms (%zu bytes of it so far)\n",
                c->peer, s->cfg.frame_ms, buf_readable(&c->in));
        conn_close(s, c, CLOSE_FRAME_TIMEOUT);
    }
    while ((t = timer_list_pop_expired(&s->stale_timers, s->now_ms)) != NULL) {
        /* Output that sits in a queue without moving means a peer that
         * stopped reading (or vanished without a word). */
        struct conn *c = t->owner;
        fprintf(stderr,
                "server: %s: closed: stale output (%zu bytes queued, no progress for %lld ms)\n",
                c->peer, conn_out_bytes(c), s->now_ms - t->since_ms);
        conn_close(s, c, CLOSE_STALE);
    }
    while ((t = timer_list_pop_expired(&s->slow_timers, s->now_ms)) != NULL) {
        /* Progress, but too little: a reader that takes a few kilobytes now
         * and then is never stale, and would keep its queue for ever. */
        struct conn *c = t->owner;
        fprintf(stderr,
                "server: %s: closed: too slow (%zu bytes queued, over the high-water mark for "
                "%d ms)\n",
                c->peer, conn_out_bytes(c), s->cfg.slow_ms);
        conn_close(s, c, CLOSE_SLOW);
    }
    while ((t = timer_list_pop_expired(&s->linger_timers, s->now_ms)) != NULL) {
        struct conn *c = t->owner;
        fprintf(stderr, "server: %s: no FIN within %d ms of ours: closing\n", c->peer,
                s->cfg.linger_ms);
        conn_close(s, c, CLOSE_LINGER_TIMEOUT);
    }
    if (s->stopping && s->now_ms >= s->stop_deadline_ms)
        close_the_rest(s);
}

static void nearest(long long *deadline, long long candidate)
{
    if (candidate >= 0 && (*deadline < 0 || candidate < *deadline))
        *deadline = candidate;
}

long long server_deadline_ms(const struct server *s)
{
    /* The ring's timeout is our timer: sleep until the nearest deadline. */
    long long deadline = -1; /* none: sleep until a completion */
    if (s->accept_paused_until_ms != 0)
        nearest(&deadline, s->accept_paused_until_ms);
    nearest(&deadline, timer_list_deadline(&s->idle_timers));
    nearest(&deadline, timer_list_deadline(&s->frame_timers));
    nearest(&deadline, timer_list_deadline(&s->linger_timers));
    nearest(&deadline, timer_list_deadline(&s->stale_timers));
    nearest(&deadline, timer_list_deadline(&s->slow_timers));
    if (s->stopping)
        nearest(&deadline, s->stop_deadline_ms);
    return deadline;
}

void server_begin_stop(struct server *s)
{
    s->stopping = true;
    s->stop_deadline_ms = s->now_ms + s->cfg.stop_ms;
    /* 1. No new connections: a client that connects now is refused at once
     * instead of waiting in a queue nobody will serve. (The loop has just
     * accepted those already queued: closing the listener resets them.)
     * Appendix 10: the ring's accept holds the socket too, until the
     * loop's cancel of it completes. */
    close(s->listen_fd);
    s->listen_fd = -1;
    fprintf(stderr,
            "server: stopping: no new connections; finishing %ld connection(s) within %d ms\n",
            s->nconns, s->cfg.stop_ms);
    /* 2. Every connection: answer what was read, flush, half-close, linger. */
    for (int fd = 0; fd <= s->max_fd; fd++) {
        struct conn *c = s->conns[fd];
        if (c != NULL)
            shutdown_begin(s, c, CLOSE_STOP);
    }
}

bool server_stop_done(const struct server *s)
{
    return s->stopping && s->nconns == 0;
}

bool server_on_signal(struct server *s, const struct signalfd_siginfo *si)
{
    /* A signal arrives here as a record read from the signalfd, in the
     * loop, like any other completion: no handler runs in the middle of
     * our code. */
    if (si->ssi_signo == SIGUSR1) {
        server_print_counters(s, "on SIGUSR1");
        return false;
    }
    if (!s->stopping) {
        fprintf(stderr, "server: %s: stopping gracefully\n", strsignal((int)si->ssi_signo));
        return true;
    }
    fprintf(stderr, "server: %s again: stopping now\n", strsignal((int)si->ssi_signo));
    s->stop_deadline_ms = s->now_ms;
    return false;
}

void server_print_counters(const struct server *s, const char *when)
{
    /* Replies still queued: queued = sent + dropped + pending, always. */
    uint64_t pending = 0;
    for (int fd = 0; fd <= s->max_fd; fd++)
        if (s->conns[fd] != NULL)
            pending += buf_readable(&s->conns[fd]->marks) / sizeof(uint64_t);
    const struct counters *n = &s->count;
    printf("stats %s: accepted=%llu open=%ld refused=%llu msgs_in=%llu msgs_queued=%llu "
           "msgs_sent=%llu msgs_dropped=%llu msgs_pending=%llu msgs_unanswered=%llu "
           "bytes_in=%llu bytes_unanswered=%llu bytes_out=%llu",
           when, (unsigned long long)n->accepted, s->nconns, (unsigned long long)n->refused,
           (unsigned long long)n->msgs_in, (unsigned long long)n->msgs_queued,
           (unsigned long long)n->msgs_sent, (unsigned long long)n->msgs_dropped,
           (unsigned long long)pending, (unsigned long long)n->msgs_unanswered,
           (unsigned long long)n->bytes_in, (unsigned long long)n->bytes_unanswered,
           (unsigned long long)n->bytes_out);
    for (int r = 0; r < CLOSE_REASONS; r++)
        printf(" closed_%s=%llu", close_reason_name((enum close_reason)r),
               (unsigned long long)n->closed[r]);
    printf(" recv_no_buffers=%llu usr2=%d\n", (unsigned long long)n->recv_no_buffers,
           (int)usr2_count);
    fflush(stdout);
}
