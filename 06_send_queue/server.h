/* server.h -- what the epoll loop uses: connections, accept, handlers */
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

struct conn {
    int fd;
    char peer[ADDR_STR_LEN];
    /* in: bytes received and not yet decoded (a frame may be incomplete).
     * out: the send queue, bytes the kernel has not taken yet. */
    struct buffer in, out;
    uint32_t events;           /* what is registered with epoll right now */
    bool reading_paused;       /* the queue passed the high-water mark */
    bool read_eof;             /* the peer finished sending: close once out is empty */
    long long out_progress_ms; /* when the queue last moved (or became non-empty) */
    const char *closing;       /* non-NULL: close after this turn, for this reason */
    struct conn *next_closing; /* the list of connections to close after this turn */
    uint64_t gen;              /* this connection's generation: unique, never reused */
    size_t inflight_bytes;     /* --threads: message bytes a worker has not answered yet */
    bool more_work;            /* et: its budget ran out with work left (see s->more) */
    struct conn *next_more;
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
    int spare_fd;        /* reserved for the EMFILE dance, see server_accept() */
    int epfd;            /* the epoll instance: the interest list lives in the kernel */
    struct conn **conns; /* indexed by fd */
    int conns_cap;       /* length of conns[] */
    int max_fd;          /* highest fd in conns[], or -1 */
    long nconns;
    long long accept_paused_until_ms; /* 0, or when to watch the listener again */
    struct conn *closing;             /* to close once the current turn is over */
    long long next_stale_check_ms;
    uint64_t next_gen;       /* generations handed out so far */
    struct workers *workers; /* --threads N, or NULL */
    struct conn *more;       /* et: connections to serve again without waiting */
};

/* "out of memory": the server's own failure. It closes the connection it
 * happened on (logged as such, not as the peer's protocol error). */
extern const char ERR_NO_MEMORY[];
/* The test hook for those paths: true if the environment variable
 * SERVER_FAIL_ALLOC names this allocation site ("table", "decompress",
 * "reply"): the caller then acts as if malloc had returned NULL. */
bool alloc_may_fail(const char *site);

/* The event loop (loop_epoll.c). Returns when a stop signal arrived. */
void loop_epoll(struct server *s);

/* Accept the connections waiting on the listening socket: in lt mode up to
 * a bounded number per call, with et until EAGAIN. new_cb is called for
 * each one the server keeps. */
void server_accept(struct server *s, void (*new_cb)(struct server *, struct conn *, void *),
                   void *arg);

/* Should the loop watch the listening socket now? (Not while paused after
 * running out of file descriptors.) And how long may it wait, in ms (-1: forever)? */
bool server_accepting(struct server *s);
int server_wait_ms(const struct server *s);

/* The connection's handlers, called by the loop when the fd is ready. */
void conn_on_readable(struct server *s, struct conn *c);
void conn_on_writable(struct server *s, struct conn *c);

/* ---- send.c: the send path ---- */

/* Send one message (prefix, body, suffix) to c: directly if nothing is
 * queued, else behind the queue. Returns false if c is (now) closing. */
bool conn_send(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
               const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len);
/* EPOLLOUT: send from the queue. */
void conn_flush(struct server *s, struct conn *c);
/* Apply the watermarks and make epoll's interest match the state:
 * EPOLLIN unless reading is paused, EPOLLOUT while the queue is not empty. */
void conn_update(struct server *s, struct conn *c);
/* Close c after the current turn (other events of this turn may still
 * name it; freeing it now would leave them a dangling pointer). */
void conn_mark_closing(struct server *s, struct conn *c, const char *why);
/* Fairness: work per connection per wake-up is capped. A level-triggered
 * socket is simply reported again; an edge-triggered one is not, so it
 * goes on s->more and is served after the batch, before the next wait. */
#define READ_BUDGET_BYTES  (256u << 10)
#define WRITE_BUDGET_BYTES (1u << 20)
void conn_want_more(struct server *s, struct conn *c);
void server_serve_more(struct server *s);

/* Close the connections marked during the turn. */
void server_close_marked(struct server *s);
/* The periodic stale-output check. */
void server_check_stale(struct server *s);
long long server_now_ms(void);

/* Close the fd, free the connection, forget it. */
void conn_close(struct server *s, struct conn *c, const char *why);
/* Decode and handle every whole message in c->in (until reading pauses). */
void conn_decode(struct server *s, struct conn *c);

#endif
