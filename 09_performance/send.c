/* send.c -- the send path: write directly when nothing is queued, queue the
 * rest, EPOLLOUT only while something is queued; watermarks, cap, staleness
 *
 *            conn_send()                         EPOLLOUT: conn_flush()
 *   idle ----------------> writing directly --+   queued ------------> drained
 *   (queue empty)          all taken: idle    |   (EPOLLOUT on)        (EPOLLOUT off)
 *                          some left: --------+-> queued
 *
 * The order of bytes is sacred: a new message goes BEHIND what is queued,
 * never ahead of it, so the direct write is only tried on an empty queue.
 *
 * Lesson 7 adds accounting: the queue remembers where each reply ends
 * (c->marks), so the counters know when a reply was really handed to the
 * kernel, and how many a close dropped. Lesson 9 adds batching: replies to
 * the messages decoded from one read are collected and leave in one send()
 * (a client that pipelines 100 requests costs one system call, not 100).
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

/* Replies collected while one read is decoded: small ones only (up to
 * BATCH_REPLY_BYTES each, BATCH_MAX_BYTES in all). Copying a small reply is
 * cheaper than a system call; a big one is written directly from where it
 * is, after what was collected, without a copy. */
#define BATCH_REPLY_BYTES 4096u
#define BATCH_MAX_BYTES   (64u << 10)
/* A drained queue keeps a buffer this big at most (see buf_release_if_big). */
#define KEEP_OUTPUT_BYTES 4096u

long long server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void conn_mark_closing(struct server *s, struct conn *c, enum close_reason why)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reason = why;
    c->next_closing = s->closing;
    s->closing = c;
    /* Free the queues now: a capped connection must not hold its memory
     * until the end of the turn. */
    conn_drop_input(s, c);
    buf_free(&c->out);
}

void server_close_marked(struct server *s)
{
    while (s->closing != NULL) {
        struct conn *c = s->closing;
        s->closing = c->next_closing;
        conn_close(s, c);
    }
}

/* A send error is the peer's doing (it reset or closed): log quietly, one line. */
static void send_failed(struct server *s, struct conn *c)
{
    fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
    conn_mark_closing(s, c, CLOSE_ERROR);
}

/* Remember where a queued reply ends: c->marks holds the stream offsets. */
static bool mark_reply_end(struct server *s, struct conn *c)
{
    uint64_t end = c->out_queued_total;
    if (buf_append(&c->marks, &end, sizeof end) != IO_OK) {
        fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
        conn_mark_closing(s, c, CLOSE_ERROR);
        s->count.msgs_dropped++; /* this reply has no mark to be counted by at close */
        return false;
    }
    return true;
}

void conn_count_sent(struct server *s, struct conn *c, size_t n)
{
    if (n == 0)
        return;
    c->out_sent_total += n;
    s->count.bytes_out += n;
    /* Every reply whose end the kernel has now taken is sent. */
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

bool conn_send(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
               const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len)
{
    s->count.msgs_queued++;
    if (c->closing) {
        s->count.msgs_dropped++;
        return false;
    }
    size_t total = prefix_len + body_len + suffix_len;
    size_t queued = buf_readable(&c->out);
    size_t sent = 0;
    /* Collect only what the output cap allows: a queue EPOLLOUT is waiting
     * for is a backlog, and the cap holds for it whichever way a reply comes. */
    bool collect = c->batching && total <= BATCH_REPLY_BYTES && queued + total <= BATCH_MAX_BYTES &&
                   queued + total <= s->cfg.output_cap_bytes;
    if (!collect && c->batching && queued > 0 && !(c->events & EPOLLOUT)) {
        /* A big reply in a batch: what was collected goes first. */
        conn_flush(s, c);
        if (c->closing) {
            s->count.msgs_dropped++;
            return false;
        }
        queued = buf_readable(&c->out);
    }
    if (collect) {
        /* Batching: sent by conn_batch_end(), with the others of this read. */
    } else if (queued == 0) {
        /* Why try first: most messages fit in the socket's send buffer, and
         * a direct write saves two epoll_ctl calls and a wake-up. */
        struct iovec iov[3] = {
            {(void *)prefix, prefix_len}, {(void *)body, body_len}, {(void *)suffix, suffix_len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 3};
        ssize_t n;
        do
            n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        while (n == -1 && errno == EINTR);
        if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
            send_failed(s, c);
            s->count.msgs_dropped++;
            return false;
        }
        sent = n > 0 ? (size_t)n : 0;
        c->out_queued_total += total;
        if (sent == total) {
            trace("send fd=%d <- %zu bytes (direct)", c->fd, sent);
            s->count.msgs_sent++;
            conn_count_sent(s, c, sent);
            return true;
        }
        trace("send fd=%d <- %zu of %zu bytes (direct), queueing the rest", c->fd, sent, total);
        conn_count_sent(s, c, sent);
    } else if (queued + total > s->cfg.output_cap_bytes) {
        /* Scenario 1: the peer is not keeping up. An empty queue takes any
         * one message (up to 10 MiB); a non-empty one may not pass the cap. */
        fprintf(stderr, "server: %s: closed: output cap (%zu bytes queued, %zu more)\n", c->peer,
                queued, total);
        conn_mark_closing(s, c, CLOSE_OUTPUT_CAP);
        s->count.msgs_dropped++;
        return false;
    }
    if (collect || queued > 0)
        c->out_queued_total += total;
    if (queued == 0) /* the queue begins: the stale clock starts now */
        timer_start(&s->stale_timers, &c->stale, s->now_ms);
    /* Queue what the kernel did not take, part by part. */
    const uint8_t *parts[3] = {prefix, body, suffix};
    size_t lens[3] = {prefix_len, body_len, suffix_len};
    for (int i = 0; i < 3; i++) {
        size_t skip = sent < lens[i] ? sent : lens[i];
        sent -= skip;
        if (buf_append(&c->out, parts[i] + skip, lens[i] - skip) != IO_OK) {
            fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
            conn_mark_closing(s, c, CLOSE_ERROR);
            s->count.msgs_dropped++;
            return false;
        }
    }
    return mark_reply_end(s, c);
}

void conn_batch_begin(struct conn *c)
{
    c->batching = true;
}

void conn_batch_end(struct server *s, struct conn *c)
{
    c->batching = false;
    /* The replies of this read, in one send. Only if the queue is ours: a
     * queue EPOLLOUT is already waiting for is not writable now anyway. */
    if (!c->closing && buf_readable(&c->out) > 0 && !(c->events & EPOLLOUT)) {
        trace("send fd=%d: %zu bytes of replies collected from this read: one send", c->fd,
              buf_readable(&c->out));
        conn_flush(s, c);
    }
}

void conn_flush(struct server *s, struct conn *c)
{
    size_t before = buf_readable(&c->out);
    while (buf_readable(&c->out) > 0) {
        if (before - buf_readable(&c->out) >= WRITE_BUDGET_BYTES) {
            if (s->cfg.mode == MODE_ET)
                conn_want_more(s, c); /* lt: EPOLLOUT fires again by itself */
            break;
        }
        size_t n;
        enum io r = buf_send_fd(&c->out, c->fd, &n);
        if (r == IO_AGAIN)
            break;
        if (r == IO_ERROR) {
            send_failed(s, c);
            return;
        }
        conn_count_sent(s, c, n);
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
}

void conn_update(struct server *s, struct conn *c)
{
    if (c->closing)
        return;
    /* Bytes a worker still holds count as queued: they will be. */
    size_t queued = buf_readable(&c->out) + c->inflight_bytes;
    if (c->state == CONN_DRAINING) {
        conn_drain_step(s, c); /* flushed? then half-close */
        if (c->closing)
            return;
    } else if (c->state == CONN_OPEN && c->read_eof && queued == 0) {
        conn_mark_closing(s, c, CLOSE_PEER); /* the peer is done, and has everything */
        return;
    }
    /* Backpressure (背压): above the high-water mark stop reading this
     * client, below the low-water mark read again. Two marks, not one, so
     * that a queue hovering around a single mark does not flip the epoll
     * registration on every message. */
    if (!c->reading_paused && queued > s->cfg.high_water_bytes) {
        c->reading_paused = true;
        fprintf(stderr, "server: %s: %zu bytes queued > high-water %zu: reading paused\n", c->peer,
                queued, s->cfg.high_water_bytes);
    } else if (c->reading_paused && queued <= s->cfg.low_water_bytes) {
        c->reading_paused = false;
        if (c->state == CONN_OPEN) /* DRAINING only decodes what it holds */
            fprintf(stderr, "server: %s: %zu bytes queued <= low-water %zu: reading resumed\n",
                    c->peer, queued, s->cfg.low_water_bytes);
        conn_decode(s, c); /* messages that arrived meanwhile wait in c->in */
        if (c->closing)
            return;
        queued = buf_readable(&c->out) + c->inflight_bytes;
    }
    /* The time bound: over the high-water mark for --slow-ms, and it goes. */
    if (queued <= s->cfg.high_water_bytes)
        timer_stop(&c->slow);
    else if (!timer_running(&c->slow))
        timer_start(&s->slow_timers, &c->slow, s->now_ms);
    uint32_t ev = 0;
    /* DRAINING reads nothing more; LINGERING reads only to discard. */
    if ((c->state == CONN_OPEN && !c->reading_paused && !c->read_eof) || c->state == CONN_LINGERING)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (buf_readable(&c->out) > 0)
        ev |= EPOLLOUT; /* only while something is queued: idle, it would fire non-stop */
    if (s->cfg.mode == MODE_ET)
        ev |= EPOLLET;
    if (ev == c->events)
        return;
    if ((ev ^ c->events) & EPOLLOUT)
        trace("fd=%d: EPOLLOUT %s", c->fd,
              ev & EPOLLOUT ? "on (output queued)" : "off (queue empty)");
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &e) == -1) {
        fprintf(stderr, "server: %s: epoll_ctl: %s\n", c->peer, strerror(errno));
        conn_mark_closing(s, c, CLOSE_ERROR);
        return;
    }
    c->events = ev;
}

void conn_want_more(struct server *s, struct conn *c)
{
    if (s->cfg.mode != MODE_ET || c->more_work || c->closing)
        return;
    c->more_work = true;
    c->next_more = s->more;
    s->more = c;
}

void server_serve_more(struct server *s)
{
    struct conn *list = s->more;
    s->more = NULL; /* those that still have work put themselves back */
    while (list != NULL) {
        struct conn *c = list;
        list = c->next_more;
        c->more_work = false;
        if (c->closing)
            continue;
        if (buf_readable(&c->out) > 0)
            conn_flush(s, c);
        if (!c->closing)
            conn_on_readable(s, c);
        conn_update(s, c);
    }
}
