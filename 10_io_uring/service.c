/* service.c -- the decoding loop and the messages: echo, broadcast, LZ4, worker replies
 *
 * The decoding loop takes whole messages out of a connection's input
 * buffer (frame.c), whatever the reads cut them into, and hands each one
 * to the service: echo sends it back as one message (a compressed request
 * is answered compressed), broadcast sends it to every other client. A
 * protocol error closes that connection only, with one log line naming
 * the peer and the reason. With --threads, workers build the replies and
 * service_collect() delivers them.
 */
#include "service.h"
#include "lz4.h"
#include "send.h"
#include "workers.h"

#include <stdio.h>
#include <stdlib.h>

/* An emptied input buffer bigger than this is given back (buf_release_if_big). */
#define KEEP_INPUT_BYTES 4096u

/* Send one message in the configured framing to `to`. */
static bool deliver(struct server *s, struct conn *to, const uint8_t *body, size_t len,
                    uint8_t flags, uint32_t origin_size)
{
    uint8_t prefix[FRAME_HEADER_BYTES];
    size_t prefix_len, suffix_len;
    const uint8_t *suffix;
    frame_wrap(&s->cfg.rules, len, flags, origin_size, prefix, &prefix_len, &suffix, &suffix_len);
    return send_message(s, to, prefix, prefix_len, body, len, suffix, suffix_len);
}

/* Broadcast: every other member gets the message as it came (it has been
 * validated). A slow member's queue grows with other people's messages:
 * this is where the output cap earns its keep. */
static void broadcast(struct server *s, struct conn *from, const struct frame *f)
{
    for (int fd = 0; fd <= s->max_fd; fd++) {
        struct conn *to = s->conns[fd];
        if (to == NULL || to == from || to->state != CONN_OPEN)
            continue;
        deliver(s, to, f->body, f->body_len, f->compressed ? FLAG_COMPRESSED : 0, f->origin_size);
        /* Its queue (and so what it wants from the ring) may have changed: the
         * loop settles it at the end of this turn, not from inside our loop. */
        conn_changed(s, to);
    }
}

/* The echo of a compressed request, answered compressed. */
static const char *echo_compressed(struct server *s, struct conn *c, const struct frame *f,
                                   const uint8_t *plain)
{
    uint8_t *packed = malloc(lz4_compress_bound(f->origin_size));
    if (packed == NULL)
        return ERR_NO_MEMORY;
    size_t packed_len = lz4_compress(plain, f->origin_size, packed);
    if (packed_len <= MAX_BODY_BYTES)
        deliver(s, c, packed, packed_len, FLAG_COMPRESSED, f->origin_size);
    else /* incompressible near 10 MiB: the client's own block stays within the limit */
        deliver(s, c, f->body, f->body_len, FLAG_COMPRESSED, f->origin_size);
    free(packed);
    return NULL;
}

/* The service, for one message. Returns NULL (handled), or why not. */
static const char *handle_message(struct server *s, struct conn *c, const struct frame *f)
{
    trace("frame complete fd=%d: %zu bytes%s", c->fd, f->body_len, f->compressed ? " (LZ4)" : "");
    if (s->workers != NULL) {
        /* A worker decompresses (which checks the body) and builds the reply. */
        if (workers_submit(s->workers, c->fd, c->gen, f) == -1)
            return ERR_NO_MEMORY;
        c->inflight_bytes += f->body_len; /* queued, as far as the watermarks go */
        return NULL;
    }
    uint8_t *plain = NULL;
    if (f->compressed) {
        /* origin_size was validated (<= 10 MiB) before the body was waited for. */
        plain = alloc_may_fail("decompress") ? NULL : malloc(f->origin_size);
        if (plain == NULL)
            return ERR_NO_MEMORY;
        const char *err = lz4_decompress(f->body, f->body_len, plain, f->origin_size);
        if (err != NULL) {
            free(plain);
            return err;
        }
    }
    const char *err = NULL;
    if (s->cfg.service == SERVICE_BROADCAST)
        broadcast(s, c, f);
    else if (!f->compressed)
        deliver(s, c, f->body, f->body_len, 0, f->origin_size);
    else
        err = echo_compressed(s, c, f, plain);
    if (plain != NULL) /* only compressed requests have one: skip the call */
        free(plain);
    if (err == NULL)
        s->count.msgs_in++;
    return err;
}

/* The decoding loop of lesson 5 over data[0..len), with one more exit:
 * once this client's own queue passes the high-water mark, stop taking its
 * messages until the queue drains. `in` is c->in when data is in it: a
 * handled frame leaves it at once, as in lesson 7, so a close counts only
 * what is left as unanswered. Returns the bytes of the frames handled. */
static size_t decode_frames(struct server *s, struct conn *c, const uint8_t *data, size_t len,
                            struct buffer *in, bool *frame_done)
{
    size_t used = 0;
    /* used < len: a read used up needs no last frame_decode that finds nothing */
    while (used < len && c->state != CONN_CLOSING && !conn_over_high_water(s, c)) {
        struct frame f;
        const char *why = NULL;
        enum frame_status st = frame_decode(&s->cfg.rules, data + used, len - used, &f, &why);
        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_OK)
            why = handle_message(s, c, &f);
        if (why != NULL) /* the connection ends: what was queued goes first */
            send_flush(s, c);
        if (why == ERR_NO_MEMORY) { /* our failure: this message stays unanswered */
            fprintf(stderr, "server: %s: closed: out of memory for a message\n", c->peer);
            conn_close(s, c, CLOSE_ERROR); /* counted with the rest of the input */
            break;
        }
        if (why != NULL) {
            char got[96];
            frame_describe(&f, data + used, got, sizeof got);
            fprintf(stderr, "server: %s: protocol error: %s%s\n", c->peer, why, got);
            conn_close(s, c, CLOSE_PROTOCOL);
            break;
        }
        *frame_done = true;
        if (c->state == CONN_CLOSING) /* a send failed: this message counts as unanswered */
            break;
        used += f.frame_len;
        if (in != NULL)
            buf_consume(in, f.frame_len);
    }
    return used;
}

/* After decoding: the frame deadline runs from a frame's first byte to its
 * last. An idle timeout alone cannot catch a slowloris, who sends one byte
 * just before every idle deadline and so is never idle. */
static void frame_timer_update(struct server *s, struct conn *c, bool frame_done)
{
    if (c->state != CONN_OPEN || buf_readable(&c->in) == 0)
        timer_stop(&c->frame);
    else if (frame_done || !timer_running(&c->frame)) /* a new frame began */
        timer_start(&s->frame_timers, &c->frame, s->now_ms);
}

void service_decode(struct server *s, struct conn *c)
{
    /* Appendix 10: the replies queue up, and leave with the turn's one
     * send; decoding stops at the high-water mark, and goes on once a
     * send's completion brings the queue down to the low-water mark. */
    bool frame_done = false;
    decode_frames(s, c, buf_peek(&c->in), buf_readable(&c->in), &c->in, &frame_done);
    if (c->state == CONN_CLOSING)
        return;
    buf_release_if_big(&c->in, KEEP_INPUT_BYTES); /* all decoded: give a big buffer back */
    frame_timer_update(s, c, frame_done);
}

void service_decode_read(struct server *s, struct conn *c, const uint8_t *data, size_t len)
{
    /* Replies leave before data is reused: copied into c->out. */
    bool frame_done = false;
    size_t used = decode_frames(s, c, data, len, NULL, &frame_done);
    /* The rest (the start of a frame, or whole frames left at the
     * high-water mark) is copied into c->in: the buffer goes back to the
     * kernel's ring. */
    if (c->state != CONN_CLOSING && used < len &&
        buf_append(&c->in, data + used, len - used) != IO_OK) {
        fprintf(stderr, "server: %s: closed: out of memory for the input buffer\n", c->peer);
        conn_close(s, c, CLOSE_ERROR);
    }
    if (c->state == CONN_CLOSING) { /* the rest of this read will never be handled */
        conn_count_unanswered(s, data + used, len - used);
        return;
    }
    frame_timer_update(s, c, frame_done);
}

/* One answered job, for the connection on its fd. */
static void deliver_job(struct server *s, struct job *r)
{
    struct conn *c = conn_find(s, r->fd);
    bool mine = c != NULL && c->gen == r->gen; /* its connection is still there */
    if (mine) {
        c->inflight_bytes -= r->request_len;
        conn_changed(s, c); /* less in flight: its watermarks and drain move on */
    }
    if (r->error == ERR_NO_MEMORY) {
        /* Our failure, not the peer's: the replies after this one could
         * only arrive out of order, so the connection ends. */
        s->count.msgs_unanswered++;
        if (mine && c->state != CONN_CLOSING) {
            fprintf(stderr, "server: %s: closed: out of memory for a reply\n", c->peer);
            conn_close(s, c, CLOSE_ERROR);
        }
        return;
    }
    if (r->error != NULL) { /* a bad LZ4 body: no message after all */
        if (mine && c->state != CONN_CLOSING) {
            fprintf(stderr, "server: %s: protocol error: %s\n", c->peer, r->error);
            conn_close(s, c, CLOSE_PROTOCOL);
        }
        return;
    }
    s->count.msgs_in++;
    if (!mine) {
        /* The lesson: the connection this reply was for is gone (maybe its
         * fd already belongs to someone else): drop it. */
        s->count.msgs_queued++;
        s->count.msgs_dropped++;
        trace("reply for fd=%d generation %llu dropped: connection gone", r->fd,
              (unsigned long long)r->gen);
        return;
    }
    send_message(s, c, r->bytes, r->len, NULL, 0, NULL, 0); /* dropped if c is closing */
}

void service_collect(struct server *s)
{
    struct job *list = workers_take_done(s->workers);
    while (list != NULL) {
        struct job *r = list;
        list = r->next;
        deliver_job(s, r);
        free(r); /* exactly once, sent or dropped */
    }
}
