/* conn.c -- a connection's record: create, find, close (with a reason), free
 *
 * Every connection lives in conns[], indexed by its fd. Ending one is two
 * steps. conn_close() decides: the state becomes CLOSING, the counters are
 * updated, the buffers are freed at once (a capped connection must not
 * keep its memory until later). conn_free_closed() then closes the fd and
 * frees the record at the end of a loop's turn, once no operation of the
 * ring names the connection any more (appendix 10: the loop cancels them,
 * and each still completes once).
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The input buffer holds at most one incomplete frame plus the receives
 * that completed after decoding stopped (appendix 10: the kernel filled
 * them before our cancel; at most the whole buffer ring). */
#define MAX_INPUT_BYTES (FRAME_HEADER_BYTES + MAX_BODY_BYTES + RECV_BUFFERS * RECV_BUFFER_BYTES)

volatile sig_atomic_t usr2_count = 0;

long long server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char ERR_NO_MEMORY[] = "out of memory";
static const char *fail_alloc_sites; /* SERVER_FAIL_ALLOC, read once before any thread starts */

void alloc_hook_init(void)
{
    fail_alloc_sites = getenv("SERVER_FAIL_ALLOC");
}

bool alloc_may_fail(const char *site)
{
    if (fail_alloc_sites == NULL)
        return false;
    size_t n = strlen(site);
    for (const char *p = strstr(fail_alloc_sites, site); p != NULL; p = strstr(p + 1, site))
        if ((p == fail_alloc_sites || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return true;
    return false;
}

const char *conn_state_name(enum conn_state st)
{
    switch (st) {
    case CONN_OPEN: return "open";
    case CONN_DRAINING: return "draining";
    case CONN_LINGERING: return "lingering";
    case CONN_CLOSING: return "closing";
    }
    return "?";
}

static const char *const reason_names[CLOSE_REASONS] = {
    [CLOSE_PEER] = "peer",
    [CLOSE_PROTOCOL] = "protocol",
    [CLOSE_IDLE] = "idle",
    [CLOSE_FRAME_TIMEOUT] = "frame_timeout",
    [CLOSE_OUTPUT_CAP] = "output_cap",
    [CLOSE_STALE] = "stale",
    [CLOSE_SLOW] = "slow",
    [CLOSE_ERROR] = "error",
    [CLOSE_STOP] = "stop",
    [CLOSE_STOP_DEADLINE] = "stop_deadline",
    [CLOSE_LINGER_TIMEOUT] = "linger_timeout",
};

const char *close_reason_name(enum close_reason r)
{
    return r < CLOSE_REASONS ? reason_names[r] : "?";
}

/* ---- the table: conns[fd] ---- */

/* Make room for fd in conns[]. Out of memory refuses that one connection:
 * one client must never take the server down. */
static bool table_reserve(struct server *s, int fd)
{
    if (fd < s->conns_cap)
        return true;
    int cap = s->conns_cap == 0 ? 64 : s->conns_cap;
    while (cap <= fd)
        cap *= 2;
    struct conn **grown =
        alloc_may_fail("table") ? NULL : realloc(s->conns, (size_t)cap * sizeof *grown);
    if (grown == NULL)
        return false;
    memset(grown + s->conns_cap, 0, (size_t)(cap - s->conns_cap) * sizeof *grown);
    s->conns = grown;
    s->conns_cap = cap;
    return true;
}

struct conn *conn_find(const struct server *s, int fd)
{
    return fd >= 0 && fd <= s->max_fd ? s->conns[fd] : NULL;
}

struct conn *conn_new(struct server *s, int fd, const struct sockaddr *peer)
{
    struct conn *c = table_reserve(s, fd) ? calloc(1, sizeof *c) : NULL;
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->state = CONN_OPEN;
    c->gen = ++s->next_gen;
    /* Buffers start empty and grow as bytes arrive: a header that claims
     * 10 MiB costs nothing until the 10 MiB are really here. An idle
     * connection costs this struct and the small buffers it has used. */
    buf_init(&c->in, MAX_INPUT_BYTES);
    buf_init(&c->out, 0);
    buf_init(&c->sending, 0);
    buf_init(&c->marks, 0);
    c->activity.owner = c->frame.owner = c->stale.owner = c->slow.owner = c;
    timer_start(&s->idle_timers, &c->activity, s->now_ms);
    net_addr_str(peer, c->peer);
    s->conns[fd] = c;
    if (fd > s->max_fd)
        s->max_fd = fd;
    s->nconns++;
    s->count.accepted++;
    conn_changed(s, c); /* the loop arms its receive */
    return c;
}

/* Lesson 9: the counting of conn_drop_input, for bytes that need not be
 * in c->in (the rest of a read decoded in place, service.c). */
void conn_count_unanswered(struct server *s, const uint8_t *data, size_t len)
{
    size_t at = 0;
    struct frame f;
    const char *why;
    while (frame_decode(&s->cfg.rules, data + at, len - at, &f, &why) == FRAME_OK) {
        s->count.msgs_unanswered++;
        at += f.frame_len;
    }
    s->count.bytes_unanswered += len;
}

/* Throw away what c->in holds, counting the whole messages in it as
 * unanswered (a protocol error stops the count at the bad frame). */
void conn_drop_input(struct server *s, struct conn *c)
{
    conn_count_unanswered(s, buf_peek(&c->in), buf_readable(&c->in));
    buf_free(&c->in);
}

void conn_close(struct server *s, struct conn *c, enum close_reason why)
{
    if (c->state == CONN_CLOSING)
        return;
    trace("close fd=%d (%s, %s)", c->fd, conn_state_name(c->state), close_reason_name(why));
    c->state = CONN_CLOSING;
    s->count.closed[why]++;
    timer_stop(&c->activity);
    timer_stop(&c->frame);
    timer_stop(&c->stale);
    timer_stop(&c->slow);
    /* What it held will never be answered or sent: count it, free it now
     * (all but sending, which a send in flight may name: freed with c). */
    conn_drop_input(s, c);
    s->count.msgs_dropped += buf_readable(&c->marks) / sizeof(uint64_t);
    buf_free(&c->out);
    buf_free(&c->marks);
    bool not_reading = why == CLOSE_OUTPUT_CAP || why == CLOSE_STALE || why == CLOSE_SLOW;
    if (not_reading && s->cfg.drop_abort) {
        /* A peer dropped for not reading: close() would leave what the
         * kernel still holds for it (up to tcp_wmem's maximum) in an orphan
         * socket, trickling out through the peer's window for minutes. It
         * would never read it all anyway: SO_LINGER {1, 0} makes close()
         * send RST and free those buffers now. */
        struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
        if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now) == -1)
            fprintf(stderr, "server: %s: setsockopt(SO_LINGER): %s\n", c->peer, strerror(errno));
    }
    c->next_closed = s->closed;
    s->closed = c;
}

void conn_free_closed(struct server *s)
{
    struct conn **p = &s->closed;
    while (*p != NULL) {
        struct conn *c = *p;
        if (c->ops_in_flight > 0) { /* the ring still names it: a later turn */
            p = &c->next_closed;
            continue;
        }
        *p = c->next_closed;
        s->conns[c->fd] = NULL;
        s->nconns--;
        while (s->max_fd >= 0 && s->conns[s->max_fd] == NULL)
            s->max_fd--;
        /* Only now: an fd closed earlier could be handed to a new client
         * while this record still held conns[fd]. */
        if (close(c->fd) == -1)
            fprintf(stderr, "server: %s: close: %s\n", c->peer, strerror(errno));
        buf_free(&c->sending);
        free(c);
    }
}

void conn_changed(struct server *s, struct conn *c)
{
    if (c->changed)
        return;
    c->changed = true;
    c->next_changed = s->changed;
    s->changed = c;
}

struct conn *conn_next_changed(struct server *s)
{
    struct conn *c = s->changed;
    if (c != NULL) {
        s->changed = c->next_changed;
        c->changed = false;
    }
    return c;
}

enum want conn_wants(const struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return WANT_CLOSE;
    enum want w = WANT_NOTHING;
    /* DRAINING reads nothing more; LINGERING reads only to discard. */
    if ((c->state == CONN_OPEN && !c->reading_paused && !c->read_eof) || c->state == CONN_LINGERING)
        w |= WANT_READ;
    if (conn_out_bytes(c) > 0)
        w |= WANT_WRITE; /* only while something is queued: then one send is kept in flight */
    return w;
}
