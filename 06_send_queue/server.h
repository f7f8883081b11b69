/* server.h -- the server's types: a connection and its states, the configuration
 *
 * The files, each calling only the ones below it (no file calls back up):
 *
 *   server.c     options, main
 *   loop_epoll.c the loop: owns epoll, applies what each connection wants
 *   accept.c     new connections (and the EMFILE trap)
 *   handlers.c   what an event does to a connection
 *   service.c    the decoding loop, the messages, worker replies
 *   workers.c    worker threads
 *   send.c       the send path: direct write, queue, flush
 *   conn.c       a connection's record: create, close (with a reason), free
 */
#ifndef SERVER_H
#define SERVER_H

#include "buffer.h"
#include "frame.h"
#include "net.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* lt: level-triggered; et: edge-triggered, read until EAGAIN. */
enum mode { MODE_LT, MODE_ET };

/* echo: each message back to its sender; broadcast: to every OTHER client. */
enum service { SERVICE_ECHO, SERVICE_BROADCAST };

/* Why a connection ended: the -v trace names it. */
enum close_reason {
    CLOSE_PEER,       /* the peer closed its side, and got everything we had for it */
    CLOSE_PROTOCOL,   /* a frame broke the protocol */
    CLOSE_OUTPUT_CAP, /* its queue would have passed --output-cap */
    CLOSE_STALE,      /* its queue made no progress for --stale-ms */
    CLOSE_ERROR,      /* reset, send/recv error, out of memory, epoll_ctl */
    CLOSE_STOP,       /* the server stopped */
    CLOSE_REASONS
};

/* The life of a connection:
 *
 *   OPEN --(peer's FIN and queue empty; error, cap, stale, protocol error; stop)--> CLOSING
 *
 * CLOSING lasts until the end of the loop's turn: other events of the same
 * turn may still name the connection, so it is freed only then. */
enum conn_state { CONN_OPEN, CONN_CLOSING };

/* What a connection wants from the loop next. The handlers return it; only
 * the loop turns it into epoll interest. WANT_MORE (et): a per-turn budget
 * ran out with work left; serve it again before the loop sleeps. */
enum want { WANT_NOTHING = 0, WANT_READ = 1, WANT_WRITE = 2, WANT_MORE = 4, WANT_CLOSE = 8 };

struct conn {
    int fd;
    char peer[ADDR_STR_LEN];
    enum conn_state state;
    /* in: bytes received and not yet decoded (a frame may be incomplete).
     * out: the send queue, bytes the kernel has not taken yet. */
    struct buffer in, out;
    bool reading_paused;       /* the queue passed the high-water mark */
    bool read_eof;             /* the peer finished sending: close once out is empty */
    long long out_progress_ms; /* when the queue last moved (or became non-empty) */
    uint64_t gen;              /* this connection's generation: unique, never reused */
    size_t inflight_bytes;     /* --threads: message bytes a worker has not answered yet */
    /* Lists the connection may be on, each at most once (the flag says so). */
    bool changed; /* another connection's work changed it: settle it this turn */
    bool more;    /* et: the loop serves it again before sleeping */
    struct conn *next_changed, *next_more, *next_closed;
};

struct config {
    const char *host;
    int port;
    enum mode mode;
    struct frame_rules rules; /* --framing and its limits */
    int sndbuf_bytes;         /* 0, or SO_SNDBUF for every connection (small: partial sends show) */
    long max_conns;           /* 0: no limit but the fd limit */
    enum service service;
    bool nodelay;            /* TCP_NODELAY (default on) */
    bool budgets;            /* et: cap the bytes read and sent per wake-up (default on) */
    size_t high_water_bytes; /* queue above this: stop reading the connection */
    size_t low_water_bytes;  /* queue back at or below this: read again */
    size_t output_cap_bytes; /* a non-empty queue may not grow past this: close */
    int stale_ms;            /* queued output without progress this long: close */
    int stale_check_ms;      /* how often the stale-output check runs */
    int threads;             /* 0: handle messages on the loop thread */
};

struct server {
    struct config cfg;
    int listen_fd;
    int spare_fd;          /* reserved for the EMFILE dance, see accept.c */
    int epfd;              /* the epoll instance, and what is registered in it: */
    struct watch *watches; /* ...indexed by fd (loop_epoll.c's alone) */
    int watches_cap;
    struct conn **conns; /* indexed by fd */
    int conns_cap;       /* length of conns[] */
    int max_fd;          /* highest fd in conns[], or -1 */
    long nconns;
    long long accept_paused_until_ms; /* 0, or when to watch the listener again */
    sigset_t wait_mask;            /* the signal mask inside the wait: SIGINT, SIGTERM unblocked */
    struct conn *changed;          /* to settle before the turn ends */
    struct conn *closed;           /* CLOSING: to free once the turn is over */
    struct conn *more;             /* et: to serve again before sleeping (the loop's) */
    uint64_t next_gen;             /* generations handed out so far */
    struct workers *workers;       /* --threads N, or NULL */
    long long next_stale_check_ms; /* when the stale-output check runs next */
};

/* ---- conn.c: a connection's record ---- */

/* Add a connection for fd to the table (OPEN, on the changed list so the
 * loop registers it). NULL: out of memory. */
struct conn *conn_new(struct server *s, int fd, const struct sockaddr *peer);
/* The connection on fd, or NULL. */
struct conn *conn_find(const struct server *s, int fd);
/* End c now, for this reason: CLOSING, its buffers freed at once. The fd
 * is closed and the record freed at the end of the turn (conn_free_closed). */
void conn_close(struct server *s, struct conn *c, enum close_reason why);
void conn_free_closed(struct server *s);
/* Another connection's work changed c (a broadcast, a worker's reply):
 * the loop settles it before the turn ends. */
void conn_changed(struct server *s, struct conn *c);
struct conn *conn_next_changed(struct server *s);
/* What the state says c waits for: read, write (output queued), close. */
enum want conn_wants(const struct conn *c);
/* Bytes queued for c, counting what workers still hold for it. */
static inline size_t conn_queued(const struct conn *c)
{
    return buf_readable(&c->out) + c->inflight_bytes;
}
static inline bool conn_over_high_water(const struct server *s, const struct conn *c)
{
    return conn_queued(c) > s->cfg.high_water_bytes;
}
const char *conn_state_name(enum conn_state st);
const char *close_reason_name(enum close_reason r);
long long server_now_ms(void);

/* "out of memory": the server's own failure. It closes the connection it
 * happened on (logged as such, not as the peer's protocol error). */
extern const char ERR_NO_MEMORY[];
/* The test hook for those paths: true if the environment variable
 * SERVER_FAIL_ALLOC names this allocation site ("table", "decompress",
 * "reply"): the caller then acts as if malloc had returned NULL.
 * alloc_hook_init reads the variable, before any thread starts. */
void alloc_hook_init(void);
bool alloc_may_fail(const char *site);

#endif
