/* conn.c -- a connection's record: create, find, close (with a reason), free
 *
 * Every connection lives in conns[], indexed by its fd. Ending one is two
 * steps. conn_close() decides: the state becomes CLOSING, the buffers are
 * freed at once (a capped connection must not keep its memory until
 * later). conn_free_closed() then closes the fd and frees the record at
 * the end of the loop's turn, when no event of that turn can name the
 * connection any more.
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The input buffer holds at most one incomplete frame plus one read. */
#define MAX_INPUT_BYTES (FRAME_HEADER_BYTES + MAX_BODY_BYTES + 2 * 65536)

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
    case CONN_CLOSING: return "closing";
    }
    return "?";
}

static const char *const reason_names[CLOSE_REASONS] = {
    [CLOSE_PEER] = "peer",   [CLOSE_PROTOCOL] = "protocol", [CLOSE_OUTPUT_CAP] = "output_cap",
    [CLOSE_STALE] = "stale", [CLOSE_ERROR] = "error",       [CLOSE_STOP] = "stop",
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
    c->out_progress_ms = server_now_ms();
    net_addr_str(peer, c->peer);
    s->conns[fd] = c;
    if (fd > s->max_fd)
        s->max_fd = fd;
    s->nconns++;
    conn_changed(s, c); /* the loop registers it with epoll */
    return c;
}

void conn_close(struct server *s, struct conn *c, enum close_reason why)
{
    if (c->state == CONN_CLOSING)
        return;
    trace("close fd=%d (%s, %s)", c->fd, conn_state_name(c->state), close_reason_name(why));
    c->state = CONN_CLOSING;
    /* What it held will never be answered or sent: free it now. */
    buf_free(&c->in);
    buf_free(&c->out);
    c->next_closed = s->closed;
    s->closed = c;
}

void conn_free_closed(struct server *s)
{
    while (s->closed != NULL) {
        struct conn *c = s->closed;
        s->closed = c->next_closed;
        if (c->more) /* never leave a freed connection on the loop's list */
            for (struct conn **p = &s->more; *p != NULL; p = &(*p)->next_more)
                if (*p == c) {
                    *p = c->next_more;
                    break;
                }
        s->conns[c->fd] = NULL;
        s->nconns--;
        while (s->max_fd >= 0 && s->conns[s->max_fd] == NULL)
            s->max_fd--;
        /* close() also takes the fd out of the epoll interest list. */
        if (close(c->fd) == -1)
            fprintf(stderr, "server: %s: close: %s\n", c->peer, strerror(errno));
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
    if (!c->reading_paused && !c->read_eof)
        w |= WANT_READ;
    if (buf_readable(&c->out) > 0)
        w |= WANT_WRITE; /* only while something is queued: idle, EPOLLOUT would fire non-stop */
    return w;
}
