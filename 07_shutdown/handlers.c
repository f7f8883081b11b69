/* handlers.c -- what an event does to a connection: read, write, error, and settle
 *
 * The loop calls a handler when the fd is ready, then conn_settle(), whose
 * answer (read, write, close) it turns into epoll interest. The handlers
 * never touch epoll, and they never settle another connection: a broadcast
 * or a worker's reply only marks the other connection changed, and the
 * loop settles it at the end of the turn.
 */
#include "handlers.h"
#include "send.h"
#include "service.h"
#include "shutdown.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Fairness: lt reads once per wake-up (epoll reports the socket again if
 * more is waiting), so one flooding client cannot starve the rest. et reads
 * until EAGAIN, this much at most per wake-up (then WANT_MORE). */
#define READ_BUDGET_BYTES (256u << 10)

/* OPEN: read, and decode what arrived. */
static enum want read_and_decode(struct server *s, struct conn *c)
{
    /* et stops as soon as this client's queue (with what its workers hold)
     * passes the high-water mark: the rest waits in the kernel, and the
     * MOD that resumes reading reports it. */
    size_t budget = s->cfg.budgets ? READ_BUDGET_BYTES : SIZE_MAX;
    while (c->state == CONN_OPEN && !c->reading_paused && !c->read_eof &&
           !conn_over_high_water(s, c)) {
        if (budget == 0) /* et: enough for this wake-up; come back after the others */
            return WANT_MORE;
        size_t n;
        enum io r = buf_read_fd(&c->in, c->fd, &n);
        if (r == IO_AGAIN)
            break;
        if (r == IO_ERROR || r == IO_FULL) {
            fprintf(stderr, "server: %s: recv: %s\n", c->peer,
                    r == IO_FULL ? "input buffer full" : strerror(errno));
            conn_close(s, c, CLOSE_ERROR);
            break;
        }
        if (r == IO_CLOSED) {
            trace("recv fd=%d -> 0 bytes: %s closed its side", c->fd, c->peer);
            if (buf_readable(&c->in) > 0)
                fprintf(stderr, "server: %s: closed in the middle of a message (%zu bytes left)\n",
                        c->peer, buf_readable(&c->in));
            c->read_eof = true;    /* closed once everything queued for it is sent */
            timer_stop(&c->frame); /* that frame will never be finished */
            break;
        }
        trace("recv fd=%d -> %zu bytes (%zu buffered)", c->fd, n, buf_readable(&c->in));
        s->count.bytes_in += n;
        conn_touch(s, c);
        budget -= n < budget ? n : budget;
        service_decode(s, c);
        if (s->cfg.mode == MODE_LT)
            break;
    }
    return WANT_NOTHING;
}

enum want conn_on_readable(struct server *s, struct conn *c)
{
    if (c->state == CONN_LINGERING) /* after our FIN: only waiting for the peer's */
        return shutdown_linger_read(s, c) ? WANT_MORE : WANT_NOTHING;
    if (c->state == CONN_OPEN)
        return read_and_decode(s, c);
    return WANT_NOTHING; /* DRAINING: what was read is answered; nothing more is read */
}

enum want conn_on_writable(struct server *s, struct conn *c)
{
    return send_flush(s, c) ? WANT_MORE : WANT_NOTHING;
}

void conn_on_error(struct server *s, struct conn *c)
{
    /* A pending error (a reset, say): SO_ERROR tells which, and clears it. */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno; /* could not even ask: report why */
    fprintf(stderr, "server: %s: %s\n", c->peer, err ? strerror(err) : "socket error");
    conn_close(s, c, CLOSE_ERROR);
}

/* Backpressure (背压): above the high-water mark stop reading this client,
 * below the low-water mark read again. Two marks, not one, so that a queue
 * hovering around a single mark does not flip the epoll registration on
 * every message. Returns true when reading resumes. */
static bool apply_watermarks(struct server *s, struct conn *c)
{
    size_t queued = conn_queued(c); /* bytes a worker still holds count: they will be queued */
    if (!c->reading_paused && queued > s->cfg.high_water_bytes) {
        c->reading_paused = true;
        fprintf(stderr, "server: %s: %zu bytes queued > high-water %zu: reading paused\n", c->peer,
                queued, s->cfg.high_water_bytes);
    } else if (c->reading_paused && queued <= s->cfg.low_water_bytes) {
        c->reading_paused = false;
        if (c->state == CONN_OPEN) /* DRAINING only decodes what it holds */
            fprintf(stderr, "server: %s: %zu bytes queued <= low-water %zu: reading resumed\n",
                    c->peer, queued, s->cfg.low_water_bytes);
        return true;
    }
    return false;
}

enum want conn_settle(struct server *s, struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return WANT_CLOSE;
    /* Messages that waited in c->in while the queue was full are decoded
     * once it drains; a DRAINING connection answers everything it holds
     * (the decoding loop itself stops at the high-water mark). */
    if (apply_watermarks(s, c) || c->state == CONN_DRAINING)
        service_decode(s, c);
    if (c->state == CONN_DRAINING)
        shutdown_drain_step(s, c); /* flushed? then half-close */
    else if (c->state == CONN_OPEN && c->read_eof && conn_queued(c) == 0)
        conn_close(s, c, CLOSE_PEER); /* the peer is done, and has everything */
    if (c->state == CONN_CLOSING)
        return WANT_CLOSE;
    /* The time bound: over the high-water mark for --slow-ms, and it goes. */
    if (!conn_over_high_water(s, c))
        timer_stop(&c->slow);
    else if (!timer_running(&c->slow))
        timer_start(&s->slow_timers, &c->slow, s->now_ms);
    return conn_wants(c);
}
