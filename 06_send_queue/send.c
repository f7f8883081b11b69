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
 */
#include "send.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* A send error is the peer's doing (it reset or closed): log quietly, one line. */
static void send_failed(struct server *s, struct conn *c)
{
    fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
    conn_close(s, c, CLOSE_ERROR);
}

/* One sendmsg of the three parts: IO_OK (*n bytes taken), IO_AGAIN or IO_ERROR. */
static enum io send_direct(int fd, const uint8_t *const parts[3], const size_t lens[3], size_t *n)
{
    struct iovec iov[3];
    for (int i = 0; i < 3; i++)
        iov[i] = (struct iovec){(void *)parts[i], lens[i]};
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

bool send_message(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
                  const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len)
{
    if (c->state == CONN_CLOSING)
        return false;
    const uint8_t *parts[3] = {prefix, body, suffix};
    size_t lens[3] = {prefix_len, body_len, suffix_len};
    size_t total = prefix_len + body_len + suffix_len;
    size_t queued = buf_readable(&c->out);
    size_t sent = 0;
    if (queued == 0) {
        /* Why try first: most messages fit in the socket's send buffer, and
         * a direct write saves two epoll_ctl calls and a wake-up. */
        if (send_direct(c->fd, parts, lens, &sent) == IO_ERROR) {
            send_failed(s, c);
            return false;
        }
        if (sent == total) {
            trace("send fd=%d <- %zu bytes (direct)", c->fd, sent);
            return true;
        }
        trace("send fd=%d <- %zu of %zu bytes (direct), queueing the rest", c->fd, sent, total);
        /* the queue begins: the stale clock starts now */
        c->out_progress_ms = server_now_ms();
    } else if (queued + total > s->cfg.output_cap_bytes) {
        /* Scenario 1: the peer is not keeping up. An empty queue takes any
         * one message (up to 10 MiB); a non-empty one may not pass the cap. */
        fprintf(stderr, "server: %s: closed: output cap (%zu bytes queued, %zu more)\n", c->peer,
                queued, total);
        conn_close(s, c, CLOSE_OUTPUT_CAP);
        return false;
    }
    /* Queue what the kernel did not take, part by part. */
    for (int i = 0; i < 3; i++) {
        size_t skip = sent < lens[i] ? sent : lens[i];
        sent -= skip;
        if (buf_append(&c->out, parts[i] + skip, lens[i] - skip) != IO_OK) {
            fprintf(stderr, "server: %s: closed: out of memory for the send queue\n", c->peer);
            conn_close(s, c, CLOSE_ERROR);
            return false;
        }
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
    }
    if (buf_readable(&c->out) < before) {
        trace("send fd=%d <- %zu bytes from the queue (%zu left)", c->fd,
              before - buf_readable(&c->out), buf_readable(&c->out));
        c->out_progress_ms = server_now_ms(); /* it moved: start over */
    }
    return more;
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
        if (c == NULL || c->state == CONN_CLOSING || buf_readable(&c->out) == 0)
            continue;
        if (now - c->out_progress_ms > s->cfg.stale_ms) {
            fprintf(
                stderr,
                "server: %s: closed: stale output (%zu bytes queued, no progress for %lld ms)\n",
                c->peer, buf_readable(&c->out), now - c->out_progress_ms);
            conn_close(s, c, CLOSE_STALE);
        }
    }
}
