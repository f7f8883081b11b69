/* send.c -- the send path: write directly when nothing is queued, queue the rest, flush
 *
 *            send_message()                      EPOLLOUT: send_flush()
 *   idle ----------------> writing directly --+   queued ------------> drained
 *   (queue empty)          all taken: idle    |   (EPOLLOUT on)        (EPOLLOUT off)
 *                          some left: --------+-> queued
 *
 * The order of bytes is sacred: a new message goes BEHIND what is queued,
 * never ahead of it, so the direct write is only tried on an empty queue.
 * EPOLLOUT itself is the loop's business: conn_wants() asks for it while
 * the queue is not empty.
 *
 * Lesson 7 adds accounting: the queue remembers where each reply ends
 * (c->marks), so the counters know when a reply was really handed to the
 * kernel, and how many a close dropped. Lesson 9 adds batching: replies to
 * the messages decoded from one read are collected and leave in one send()
 * (a client that pipelines 100 requests costs one system call, not 100).
 */
#include "send.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Replies collected while one read is decoded: small ones only (up to
 * BATCH_REPLY_BYTES each, BATCH_MAX_BYTES in all). Copying a small reply is
 * cheaper than a system call; a big one is written directly from where it
 * is, after what was collected, without a copy. */
#define BATCH_REPLY_BYTES 4096u
#define BATCH_MAX_BYTES   (64u << 10)
/* A drained queue keeps a buffer this big at most (see buf_release_if_big). */
#define KEEP_OUTPUT_BYTES 4096u

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

/* One sendmsg of the three parts: IO_OK (*n bytes taken), IO_AGAIN or IO_ERROR. */
static enum io send_direct(int fd, struct iovec iov[3], size_t *n)
{
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 3};
    ssize_t r;
    do
        r = sendmsg(fd, &msg, MSG_NOSIGNAL);
    while (r == -1 && errno == EINTR);
    *n = r > 0 ? (size_t)r : 0;
    if (r >= 0)
        return IO_OK;
    return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
}

/* The reply could not be queued: c closes, and the reply counts as dropped. */
static bool drop_reply(struct server *s, struct conn *c, enum close_reason why)
{
    conn_close(s, c, why);
    s->count.msgs_dropped++;
    return false;
}

/* Lesson 9, in a batch: is this reply collected? Only what the output cap
 * allows: collected replies are a queue, and the cap holds for it. One too
 * big to collect goes after what was collected: that is sent first, and
 * the big one then meets an empty queue and is written directly. */
static bool batch_collects(struct server *s, struct conn *c, size_t total)
{
    size_t queued = buf_readable(&c->out);
    if (total <= BATCH_REPLY_BYTES && queued + total <= BATCH_MAX_BYTES &&
        queued + total <= s->cfg.output_cap_bytes)
        return true;
    if (queued > 0 && c->state != CONN_CLOSING) {
        send_flush(s, c);
        if (buf_readable(&c->out) > 0) /* the kernel took less: a backlog now */
            c->batching = false;
    }
    return false;
}

bool send_message(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
                  const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len)
{
    s->count.msgs_queued++;
    size_t total = prefix_len + body_len + suffix_len;
    bool collect = c->batching && batch_collects(s, c, total);
    if (c->state == CONN_CLOSING) {
        s->count.msgs_dropped++;
        return false;
    }
    /* Lesson 9: the parts described once, as the iovec sendmsg takes. */
    struct iovec iov[3] = {
        {(void *)prefix, prefix_len}, {(void *)body, body_len}, {(void *)suffix, suffix_len}};
    size_t queued = buf_readable(&c->out);
    size_t sent = 0;
    if (collect) {
        /* sent by send_batch_end(), with the other replies of this read */
        c->out_queued_total += total;
        if (queued == 0) /* the queue begins: the stale clock starts now */
            timer_start(&s->stale_timers, &c->stale, s->now_ms);
    } else if (queued == 0) {
        /* Why try first: most messages fit in the socket's send buffer, and
         * a direct write saves two epoll_ctl calls and a wake-up. */
        if (send_direct(c->fd, iov, &sent) == IO_ERROR) {
            send_failed(s, c);
            s->count.msgs_dropped++;
            return false;
        }
        c->out_queued_total += total;
        if (sent == total) {
            trace("send fd=%d <- %zu bytes (direct)", c->fd, sent);
            s->count.msgs_sent++;
            count_sent(s, c, sent);
            return true;
        }
        trace("send fd=%d <- %zu of %zu bytes (direct), queueing the rest", c->fd, sent, total);
        c->batching = false; /* lesson 9: a backlog now, which EPOLLOUT sends */
        count_sent(s, c, sent);
        /* the queue begins: the stale clock starts now */
        timer_start(&s->stale_timers, &c->stale, s->now_ms);
    } else if (queued + total > s->cfg.output_cap_bytes) {
        /* Scenario 1: the peer is not keeping up. An empty queue takes any
         * one message (up to 10 MiB); a non-empty one may not pass the cap. */
        fprintf(stderr, "server: %s: closed: output cap (%zu bytes queued, %zu more)\n", c->peer,
                queued, total);
        return drop_reply(s, c, CLOSE_OUTPUT_CAP);
    } else {
        c->out_queued_total += total;
    }
    /* Queue what the kernel did not take, part by part, and where it ends. */
    uint64_t end = c->out_queued_total;
    for (int i = 0; i < 3; i++) {
        size_t skip = sent < iov[i].iov_len ? sent : iov[i].iov_len;
        sent -= skip;
        if (buf_append(&c->out, (uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip) !=
            IO_OK) {
            fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
            return drop_reply(s, c, CLOSE_ERROR);
        }
    }
    if (buf_append(&c->marks, &end, sizeof end) != IO_OK) {
        fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
        return drop_reply(s, c, CLOSE_ERROR); /* this reply has no mark to be counted by */
    }
    return true;
}

bool send_flush(struct server *s, struct conn *c)
{
    size_t before = buf_readable(&c->out);
    bool more = false;
    while (buf_readable(&c->out) > 0) {
        if (s->cfg.budgets && before - buf_readable(&c->out) >= WRITE_BUDGET_BYTES) {
            more = s->cfg.mode == MODE_ET; /* lt: EPOLLOUT fires again by itself */
            break;
        }
        size_t n;
        enum io r = buf_send_fd(&c->out, c->fd, &n);
        if (r == IO_AGAIN)
            break;
        if (r != IO_OK) {
            send_failed(s, c);
            return false;
        }
        count_sent(s, c, n);
    }
    if (buf_readable(&c->out) < before) {
        trace("send fd=%d <- %zu bytes from the queue (%zu left)", c->fd,
              before - buf_readable(&c->out), buf_readable(&c->out));
        timer_start(&s->stale_timers, &c->stale, s->now_ms); /* it moved: start over */
    }
    if (buf_readable(&c->out) == 0) {
        timer_stop(&c->stale);
        buf_release_if_big(&c->out, KEEP_OUTPUT_BYTES);
    }
    return more;
}

void send_batch_begin(struct conn *c)
{
    c->batching = buf_readable(&c->out) == 0;
}

void send_batch_end(struct server *s, struct conn *c)
{
    /* Batching was turned off during the read if a send left a backlog
     * (EPOLLOUT will send it), or for the read's only reply (sent directly). */
    if (!c->batching)
        return;
    c->batching = false;
    if (c->state != CONN_CLOSING && buf_readable(&c->out) > 0) {
        trace("send fd=%d: %zu bytes of replies collected from this read: one send", c->fd,
              buf_readable(&c->out));
        send_flush(s, c);
    }
}
