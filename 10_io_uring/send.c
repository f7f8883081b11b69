/* send.c -- the send path: queue every reply, one send in flight for the front of the queue
 *
 *            send_message()          loop: send_next()           completion: send_done()
 *   reply ----------------> out ---> out and sending swap ----> sending consumed; the rest
 *                           (queue)  (no byte copied); SEND     (short send) is named by
 *                                    names sending              the next SEND
 *
 * The order of bytes is sacred: a new message goes BEHIND what is queued,
 * never ahead of it, and one send at most is in flight per connection, for
 * the front of the queue. The send itself is the loop's business:
 * conn_wants() asks for one while the queue is not empty.
 *
 * Appendix 10: no send() on the way (but in two rare cases: send_flush).
 * The kernel reads the bytes a send names when it gets to them, so they
 * must stay where they are until its completion; but appending may grow
 * out (a new block) or compact it (a memmove). Hence two buffers: the send
 * names sending, replies keep arriving in out, and when sending is used up
 * the two swap (two struct copies). Batching comes for free: every reply
 * of a turn is queued before the turn's one send leaves.
 *
 * Lesson 7 adds accounting: the queue remembers where each reply ends
 * (c->marks), so the counters know when a reply was really handed to the
 * kernel, and how many a close dropped.
 */
#include "send.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

/* A drained queue keeps a buffer this big at most (see buf_release_if_big).
 * Appendix 10: none. Every reply passes through the queue now, so every
 * connection that keeps up would keep one; a malloc per reply costs less. */
#define KEEP_OUTPUT_BYTES 0u

/* A send error is the peer's doing (it reset or closed): log quietly, one line. */
static void send_failed(struct server *s, struct conn *c)
{
    fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
    conn_close(s, c, CLOSE_ERROR);
}

/* The kernel took n more bytes of c's stream: every reply whose end is
 * now taken is sent. */
static void count_sent(struct server *s, struct conn *c, size_t n)
{
    if (n == 0)
        return;
    c->out_sent_total += n;
    s->count.bytes_out += n;
    while (buf_readable(&c->marks) >= sizeof(uint64_t)) {
        uint64_t end;
        memcpy(&end, buf_peek(&c->marks), sizeof end);
        if (end > c->out_sent_total)
            break;
        buf_consume(&c->marks, sizeof end);
        s->count.msgs_sent++;
    }
    conn_touch(s, c);
}

/* n more bytes of c's queue were taken: counted, the stale clock starts
 * over, and a drained queue gives its buffers back. */
static void queue_moved(struct server *s, struct conn *c, size_t n)
{
    count_sent(s, c, n);
    if (n > 0) /* it moved: start over */
        timer_start(&s->stale_timers, &c->stale, s->now_ms);
    if (conn_out_bytes(c) == 0) {
        timer_stop(&c->stale);
        buf_release_if_big(&c->out, KEEP_OUTPUT_BYTES);
        buf_release_if_big(&c->sending, KEEP_OUTPUT_BYTES);
    }
}

/* The reply could not be queued: c closes, and the reply counts as dropped. */
static bool drop_reply(struct server *s, struct conn *c, enum close_reason why)
{
    conn_close(s, c, why);
    s->count.msgs_dropped++;
    return false;
}

bool send_message(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
                  const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len)
{
    s->count.msgs_queued++;
    size_t total = prefix_len + body_len + suffix_len;
    /* Appendix 10: replies wait in the queue for the turn's send, so the
     * kernel has not been asked yet. Before the cap judges, ask it, as
     * lesson 9's batch did: what is queued goes now, and the cap counts
     * what the kernel would not take. */
    if (conn_out_bytes(c) + total > s->cfg.output_cap_bytes)
        send_flush(s, c);
    if (c->state == CONN_CLOSING) {
        s->count.msgs_dropped++;
        return false;
    }
    /* Lesson 9: the parts described once, as an iovec. */
    struct iovec iov[3] = {
        {(void *)prefix, prefix_len}, {(void *)body, body_len}, {(void *)suffix, suffix_len}};
    size_t queued = conn_out_bytes(c);
    if (queued > 0 && queued + total > s->cfg.output_cap_bytes) {
        /* Scenario 1: the peer is not keeping up. An empty queue takes any
         * one message (up to 10 MiB); a non-empty one may not pass the cap. */
        fprintf(stderr, "server: %s: closed: output cap (%zu bytes queued, %zu more)\n", c->peer,
                queued, total);
        return drop_reply(s, c, CLOSE_OUTPUT_CAP);
    }
    c->out_queued_total += total;
    if (queued == 0) /* the queue begins: the stale clock starts now */
        timer_start(&s->stale_timers, &c->stale, s->now_ms);
    /* Queue the reply, part by part, and where it ends. */
    uint64_t end = c->out_queued_total;
    for (int i = 0; i < 3; i++)
        if (buf_append(&c->out, iov[i].iov_base, iov[i].iov_len) != IO_OK) {
            fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
            return drop_reply(s, c, CLOSE_ERROR);
        }
    if (buf_append(&c->marks, &end, sizeof end) != IO_OK) {
        fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
        return drop_reply(s, c, CLOSE_ERROR); /* this reply has no mark to be counted by */
    }
    return true;
}

void send_flush(struct server *s, struct conn *c)
{
    /* Only with nothing in flight: a send() now would overtake it. */
    if (c->state == CONN_CLOSING || buf_readable(&c->sending) > 0 || buf_readable(&c->out) == 0)
        return;
    size_t n;
    enum io r = buf_send_fd(&c->out, c->fd, &n);
    if (r == IO_ERROR) {
        send_failed(s, c);
        return;
    }
    trace("send fd=%d <- %zu bytes directly (%zu left)", c->fd, n, conn_out_bytes(c));
    queue_moved(s, c, n);
}

bool send_next(struct server *s, struct conn *c, const uint8_t **data, size_t *len)
{
    if (buf_readable(&c->sending) == 0) {
        if (buf_readable(&c->out) == 0)
            return false;
        /* The front of the queue moves out of out's way: the buffers swap. */
        struct buffer emptied = c->sending;
        c->sending = c->out;
        c->out = emptied;
    }
    *data = buf_peek(&c->sending);
    *len = buf_readable(&c->sending);
    if (s->cfg.budgets && *len > WRITE_BUDGET_BYTES)
        *len = WRITE_BUDGET_BYTES;
    return true;
}

void send_done(struct server *s, struct conn *c, int res)
{
    if (res < 0) {
        errno = -res;
        send_failed(s, c);
        return;
    }
    buf_consume(&c->sending, (size_t)res);
    trace("send fd=%d <- %d bytes from the queue (%zu left)", c->fd, res, conn_out_bytes(c));
    queue_moved(s, c, (size_t)res);
}
