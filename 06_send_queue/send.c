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
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

long long server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void conn_mark_closing(struct server *s, struct conn *c, const char *why)
{
    if (c->closing != NULL)
        return;
    c->closing = why;
    c->next_closing = s->closing;
    s->closing = c;
    /* Free the queues now: a capped connection must not hold its memory
     * until the end of the turn. */
    buf_free(&c->in);
    buf_free(&c->out);
}

void server_close_marked(struct server *s)
{
    while (s->closing != NULL) {
        struct conn *c = s->closing;
        s->closing = c->next_closing;
        conn_close(s, c, c->closing);
    }
}

/* A send error is the peer's doing (it reset or closed): log quietly, one line. */
static void send_failed(struct server *s, struct conn *c)
{
    fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
    conn_mark_closing(s, c, "send failed");
}

bool conn_send(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
               const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len)
{
    if (c->closing != NULL)
        return false;
    size_t total = prefix_len + body_len + suffix_len;
    size_t queued = buf_readable(&c->out);
    size_t sent = 0;
    if (queued == 0) {
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
            return false;
        }
        sent = n > 0 ? (size_t)n : 0;
        if (sent == total) {
            trace("send fd=%d <- %zu bytes (direct)", c->fd, sent);
            return true;
        }
        trace("send fd=%d <- %zu of %zu bytes (direct), queueing the rest", c->fd, sent, total);
        c->out_progress_ms = server_now_ms(); /* the stale clock starts now */
    } else if (queued + total > s->cfg.output_cap_bytes) {
        /* Scenario 1: the peer is not keeping up. An empty queue takes any
         * one message (up to 10 MiB); a non-empty one may not pass the cap. */
        fprintf(stderr, "server: %s: closed: output cap (%zu bytes queued, %zu more)\n", c->peer,
                queued, total);
        conn_mark_closing(s, c, "output cap");
        return false;
    }
    /* Queue what the kernel did not take, part by part. */
    const uint8_t *parts[3] = {prefix, body, suffix};
    size_t lens[3] = {prefix_len, body_len, suffix_len};
    for (int i = 0; i < 3; i++) {
        size_t skip = sent < lens[i] ? sent : lens[i];
        sent -= skip;
        if (buf_append(&c->out, parts[i] + skip, lens[i] - skip) != IO_OK) {
            fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
            conn_mark_closing(s, c, "out of memory");
            return false;
        }
    }
    return true;
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
    }
    if (buf_readable(&c->out) < before) {
        trace("send fd=%d <- %zu bytes from the queue (%zu left)", c->fd,
              before - buf_readable(&c->out), buf_readable(&c->out));
        c->out_progress_ms = server_now_ms();
    }
}

void conn_update(struct server *s, struct conn *c)
{
    if (c->closing != NULL)
        return;
    /* Bytes a worker still holds count as queued: they will be. */
    size_t queued = buf_readable(&c->out) + c->inflight_bytes;
    if (c->read_eof && queued == 0) {
        conn_mark_closing(s, c, "peer closed, everything sent");
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
        fprintf(stderr, "server: %s: %zu bytes queued <= low-water %zu: reading resumed\n", c->peer,
                queued, s->cfg.low_water_bytes);
        conn_decode(s, c); /* messages that arrived meanwhile wait in c->in */
        if (c->closing != NULL)
            return;
        queued = buf_readable(&c->out) + c->inflight_bytes;
    }
    uint32_t ev = 0;
    if (!c->reading_paused && !c->read_eof)
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
        conn_mark_closing(s, c, "epoll_ctl failed");
        return;
    }
    c->events = ev;
}

void conn_want_more(struct server *s, struct conn *c)
{
    if (s->cfg.mode != MODE_ET || c->more_work || c->closing != NULL)
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
        if (c->closing != NULL)
            continue;
        if (buf_readable(&c->out) > 0)
            conn_flush(s, c);
        if (c->closing == NULL)
            conn_on_readable(s, c);
        conn_update(s, c);
    }
}

void server_check_stale(struct server *s)
{
    long long now = server_now_ms();
    if (now < s->next_stale_check_ms)
        return;
    s->next_stale_check_ms = now + s->cfg.stale_check_ms;
    /* Scenario 2: output that sits in a queue without moving means a peer
     * that stopped reading (or vanished without a word). */
    for (int fd = 0; fd <= s->max_fd; fd++) {
        struct conn *c = s->conns[fd];
        if (c == NULL || c->closing != NULL || buf_readable(&c->out) == 0)
            continue;
        if (now - c->out_progress_ms > s->cfg.stale_ms) {
            fprintf(
                stderr,
                "server: %s: closed: stale output (%zu bytes queued, no progress for %lld ms)\n",
                c->peer, buf_readable(&c->out), now - c->out_progress_ms);
            conn_mark_closing(s, c, "stale output");
        }
    }
}
