/* handlers.c -- what a completion does to a connection: bytes, the peer's FIN, errors; settle
 *
 * The loop calls a handler for each of a connection's completions, and
 * conn_settle() at the end of the turn, whose answer (read, write, close)
 * it turns into ring operations. The handlers never touch the ring, and
 * they never settle another connection: a broadcast or a worker's reply
 * only marks the other connection changed, and the loop settles it at the
 * end of the turn.
 */
#include "handlers.h"
#include "send.h"
#include "service.h"
#include "shutdown.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void conn_on_received(struct server *s, struct conn *c, const uint8_t *data, size_t n)
{
    if (c->state == CONN_LINGERING) { /* after our FIN: only waiting for the peer's */
        shutdown_linger_discard(s, c, n);
        return;
    }
    /* OPEN; or DRAINING, or paused at the high-water mark: bytes the
     * kernel received before the loop's cancel of the receive took effect.
     * They are kept, never dropped: decoding stops at the mark, and the
     * rest waits in c->in. */
    trace("recv fd=%d -> %zu bytes (%zu buffered)", c->fd, n, buf_readable(&c->in) + n);
    s->count.bytes_in += n;
    conn_touch(s, c);
    /* Lesson 9: nothing buffered (a connection that keeps up), so no
     * frame to complete: decode in place, in the ring's buffer. */
    if (buf_readable(&c->in) == 0) {
        service_decode_read(s, c, data, n);
        return;
    }
    enum io r = buf_append(&c->in, data, n);
    if (r != IO_OK) {
        fprintf(stderr, "server: %s: recv: %s\n", c->peer,
                r == IO_FULL ? "input buffer full" : strerror(errno));
        conn_count_unanswered(s, data, n);
        conn_close(s, c, CLOSE_ERROR);
        return;
    }
    service_decode(s, c);
}

void conn_on_peer_fin(struct server *s, struct conn *c)
{
    if (c->state == CONN_LINGERING) {
        trace("recv fd=%d -> 0: the peer's FIN, closing", c->fd);
        conn_close(s, c, c->reason);
        return;
    }
    trace("recv fd=%d -> 0 bytes: %s closed its side", c->fd, c->peer);
    c->read_eof = true;    /* closed once everything queued for it is sent */
    timer_stop(&c->frame); /* that frame will never be finished */
}

void conn_on_recv_error(struct server *s, struct conn *c, int err)
{
    if (c->state == CONN_LINGERING) {
        /* A reset now only means the peer is gone: nothing is lost on our side. */
        trace("recv fd=%d: %s while lingering", c->fd, strerror(err));
        conn_close(s, c, c->reason);
        return;
    }
    fprintf(stderr, "server: %s: recv: %s\n", c->peer, strerror(err));
    conn_close(s, c, CLOSE_ERROR);
}

void conn_on_sent(struct server *s, struct conn *c, int res)
{
    send_done(s, c, res);
}

/* Backpressure (背压): above the high-water mark stop reading this client,
 * below the low-water mark read again. Two marks, not one, so that a queue
 * hovering around a single mark does not cancel and re-arm the receive on
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

/* The peer is done, and has everything. Appendix 10: its FIN may come in
 * the same turn as whole messages that wait for the queue to drain, so
 * what is left is told only now: the start of a message, never finished. */
static void peer_done(struct server *s, struct conn *c)
{
    if (buf_readable(&c->in) > 0)
        fprintf(stderr, "server: %s: closed in the middle of a message (%zu bytes left)\n", c->peer,
                buf_readable(&c->in));
    conn_close(s, c, CLOSE_PEER);
}

enum want conn_settle(struct server *s, struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return WANT_CLOSE;
    /* Messages that waited in c->in while the queue was full are decoded
     * once it drains; a DRAINING connection answers everything it holds
     * (the decoding loop itself stops at the high-water mark). Appendix
     * 10: a decode may stop at the mark and the queue drain again within
     * the same turn (a send's completion), reading never paused: what
     * waits in c->in is decoded now, or a FIN in that turn would close
     * the connection with whole requests unanswered. */
    bool waiting = c->state == CONN_OPEN && !c->reading_paused && buf_readable(&c->in) > 0;
    if (apply_watermarks(s, c) || c->state == CONN_DRAINING || waiting) {
        service_decode(s, c);
        /* Appendix 10: the replies wait for the turn's send, so decoding
         * may have passed the mark again: paused again, the next drain
         * brings us back here for the messages still waiting. (DRAINING
         * decodes on every settle anyway.) */
        if (c->state == CONN_OPEN)
            apply_watermarks(s, c);
    }
    if (c->state == CONN_DRAINING)
        shutdown_drain_step(s, c); /* flushed? then half-close */
    else if (c->state == CONN_OPEN && c->read_eof && conn_queued(c) == 0)
        peer_done(s, c);
    if (c->state == CONN_CLOSING)
        return WANT_CLOSE;
    /* The time bound: over the high-water mark for --slow-ms, and it goes. */
    if (!conn_over_high_water(s, c))
        timer_stop(&c->slow);
    else if (!timer_running(&c->slow))
        timer_start(&s->slow_timers, &c->slow, s->now_ms);
    return conn_wants(c);
}
