/* server.h -- the finished server: connections, their states and timers, counters, the loop */
#ifndef SERVER_H
#define SERVER_H

#include "buffer.h"
#include "frame.h"
#include "net.h"
#include "timer.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* lt: level-triggered; et: edge-triggered, read until EAGAIN. */
enum mode { MODE_LT, MODE_ET };

/* echo: each message back to its sender; broadcast: to every OTHER client. */
enum service { SERVICE_ECHO, SERVICE_BROADCAST };

/* Why a connection ended: each reason has its own counter. */
enum close_reason {
    CLOSE_PEER,           /* the peer closed its side, and got everything we had for it */
    CLOSE_PROTOCOL,       /* a frame broke the protocol */
    CLOSE_IDLE,           /* nothing moved for --idle-ms (closed gracefully) */
    CLOSE_FRAME_TIMEOUT,  /* a frame took longer than --frame-ms to arrive (slowloris) */
    CLOSE_OUTPUT_CAP,     /* its queue would have passed --output-cap */
    CLOSE_STALE,          /* its queue made no progress for --stale-ms */
    CLOSE_SLOW,           /* its queue stayed over the high-water mark for --slow-ms */
    CLOSE_ERROR,          /* reset, send/recv error, out of memory, epoll_ctl */
    CLOSE_STOP,           /* the server stopped: finished, flushed and half-closed */
    CLOSE_STOP_DEADLINE,  /* the server stopped and this one was not done in time */
    CLOSE_LINGER_TIMEOUT, /* after our FIN, the peer never sent its own */
    CLOSE_REASONS
};
const char *close_reason_name(enum close_reason r);

/* The life of a connection, as far as closing goes:
 *
 *   OPEN --(stop, idle timeout)--> DRAINING --(queue empty)--> LINGERING --(peer's FIN,
 *     |    no more reading;         shutdown(SHUT_WR):            or --linger-ms)--> closed
 *     |    answer what was read     our FIN                 read and discard
 *     +--(peer's FIN, queue empty)-----------------------------------------------> closed
 *     +--(error, cap, protocol error: abort, buffers freed at once)-------------> closed
 */
enum conn_state { CONN_OPEN, CONN_DRAINING, CONN_LINGERING };
const char *conn_state_name(enum conn_state st);

struct conn {
    int fd;
    char peer[ADDR_STR_LEN];
    enum conn_state state;
    /* in: bytes received and not yet decoded (a frame may be incomplete).
     * out: the send queue, bytes the kernel has not taken yet.
     * marks: where each queued reply ends in the stream of queued bytes
     * (uint64_t each), so the counters know when a reply is really sent. */
    struct buffer in, out, marks;
    uint64_t out_queued_total; /* bytes ever appended to out */
    uint64_t out_sent_total;   /* bytes of out the kernel took */
    uint32_t events;           /* what is registered with epoll right now */
    bool reading_paused;       /* the queue passed the high-water mark */
    bool read_eof;             /* the peer finished sending: close once out is empty */
    bool batching;             /* decoding one read: replies collect in out, one send after */
    struct timer activity;     /* idle timeout (OPEN), or linger timeout (LINGERING) */
    struct timer frame;        /* running while a frame is partly here */
    struct timer stale;        /* running while output is queued: restarted when it moves */
    struct timer slow;         /* running while the queue is over the high-water mark */
    enum close_reason reason;  /* why it is closing (DRAINING, LINGERING or closing) */
    bool closing;              /* close after this turn */
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
    int slow_ms;             /* a queue over the high-water mark this long: close */
    bool drop_abort;         /* a peer dropped for not reading (cap, stale, slow): RST, not FIN */
    int threads;             /* 0: handle messages on the loop thread */
    int idle_ms;             /* close (gracefully) a connection quiet for this long; 0: never */
    int frame_ms;            /* a started frame must be complete within this; 0: no limit */
    int linger_ms;           /* after our FIN, wait this long for the peer's */
    int stop_ms;             /* a graceful stop finishes within this, then closes the rest */
};

/* What the server counts; printed on SIGUSR1 and at exit. Replies:
 * queued = sent + dropped + still in a queue (0 at exit). */
struct counters {
    uint64_t accepted, refused;
    uint64_t msgs_in; /* whole messages decoded and handed to the service */
    /* Received but never handled: the connection closed first (an error,
     * or a stop deadline). Whole messages, and every byte thrown away. */
    uint64_t msgs_unanswered, bytes_unanswered;
    uint64_t msgs_queued;  /* replies handed to the send path */
    uint64_t msgs_sent;    /* replies whose last byte the kernel took */
    uint64_t msgs_dropped; /* replies thrown away: their connection closed first */
    uint64_t bytes_in, bytes_out;
    uint64_t closed[CLOSE_REASONS];
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
    uint64_t next_gen;                /* generations handed out so far */
    struct workers *workers;          /* --threads N, or NULL */
    struct conn *more;                /* et: connections to serve again without waiting */
    long long now_ms;                 /* the loop's clock, read once per turn */
    struct timer_list idle_timers, frame_timers, linger_timers, stale_timers, slow_timers;
    int signal_fd;              /* SIGINT, SIGTERM, SIGUSR1 arrive here as data */
    bool stopping;              /* a graceful stop is under way */
    long long stop_deadline_ms; /* ...and must end by then */
    struct counters count;
};

/* "out of memory": the server's own failure. It closes the connection it
 * happened on (counted as an error, not as the peer's protocol error). */
extern const char ERR_NO_MEMORY[];
/* The test hook for those paths: true if the environment variable
 * SERVER_FAIL_ALLOC names this allocation site ("table", "decompress",
 * "reply"): the caller then acts as if malloc had returned NULL. */
bool alloc_may_fail(const char *site);

/* The event loop (loop_epoll.c). Returns when a graceful stop is over. */
void loop_epoll(struct server *s);

/* Accept the connections waiting on the listening socket: in lt mode up to
 * a bounded number per call, with et (or until_empty) until EAGAIN. new_cb
 * is called for each one the server keeps. */
void server_accept(struct server *s, void (*new_cb)(struct server *, struct conn *, void *),
                   void *arg, bool until_empty);

/* Should the loop watch the listening socket now? (Not while paused after
 * running out of file descriptors, nor once stopping.) */
bool server_accepting(struct server *s);

/* The connection's handlers, called by the loop when the fd is ready. */
void conn_on_readable(struct server *s, struct conn *c);
void conn_on_writable(struct server *s, struct conn *c);

/* Restart c's idle timer: bytes moved. Inline (lesson 9): it runs for
 * every read and every send; touched already at this turn's clock reading
 * (a read and the send of its reply, say), the timer is where it should be. */
static inline void conn_touch(struct server *s, struct conn *c)
{
    if (timer_running(&c->activity) && c->activity.since_ms == s->now_ms)
        return;
    if (c->state == CONN_OPEN)
        timer_start(&s->idle_timers, &c->activity, s->now_ms);
}

/* ---- send.c: the send path ---- */

/* Send one message (prefix, body, suffix) to c: directly if nothing is
 * queued, else behind the queue. Returns false if c is (now) closing. */
bool conn_send(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
               const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len);
/* The queue (with what workers still hold for c) is over the high-water
 * mark: take no more of c's messages until it drains. */
static inline bool conn_over_high_water(const struct server *s, const struct conn *c)
{
    return buf_readable(&c->out) + c->inflight_bytes > s->cfg.high_water_bytes;
}
/* EPOLLOUT: send from the queue. */
void conn_flush(struct server *s, struct conn *c);
/* Apply the watermarks and make epoll's interest match the state:
 * EPOLLIN unless reading is paused, EPOLLOUT while the queue is not empty. */
void conn_update(struct server *s, struct conn *c);
/* Close c after the current turn (other events of this turn may still
 * name it; freeing it now would leave them a dangling pointer). */
void conn_mark_closing(struct server *s, struct conn *c, enum close_reason why);
/* Fairness: work per connection per wake-up is capped. A level-triggered
 * socket is simply reported again; an edge-triggered one is not, so it
 * goes on s->more and is served after the batch, before the next wait. */
#define READ_BUDGET_BYTES  (256u << 10)
#define WRITE_BUDGET_BYTES (1u << 20)
void conn_want_more(struct server *s, struct conn *c);
void server_serve_more(struct server *s);

/* Throw away what c->in holds, counting the whole messages in it as unanswered. */
void conn_drop_input(struct server *s, struct conn *c);
/* Close the connections marked during the turn. */
void server_close_marked(struct server *s);
long long server_now_ms(void);

/* Close the fd, free the connection, forget it. */
void conn_close(struct server *s, struct conn *c);
/* Replies that are fully sent: advance the marks by what the kernel took. */
void conn_count_sent(struct server *s, struct conn *c, size_t n);
/* Decoding one read's messages: collect the replies, then send them in one call. */
void conn_batch_begin(struct conn *c);
void conn_batch_end(struct server *s, struct conn *c);
/* Decode and handle every whole message in c->in (until reading pauses). */
void conn_decode(struct server *s, struct conn *c);

/* ---- shutdown.c: graceful close, timers, the graceful stop ---- */

/* Close c gracefully: answer what was read, flush, half-close, wait for the peer's FIN. */
void conn_close_gracefully(struct server *s, struct conn *c, enum close_reason why);
/* Called when c's queue may have emptied: a DRAINING connection half-closes. */
void conn_drain_step(struct server *s, struct conn *c);
/* LINGERING: read and discard until the peer's FIN. */
void conn_linger_read(struct server *s, struct conn *c);
/* After decoding: start, restart (frame_done: a frame was completed) or stop the frame deadline. */
void conn_frame_timer_update(struct server *s, struct conn *c, bool frame_done);
/* Expired timers: idle, frame, linger, stale output and slow readers. */
void server_run_timers(struct server *s);
/* The nearest deadline of every timer the loop knows, as an epoll_wait timeout (-1: none). */
int server_wait_ms(const struct server *s);
/* Signals, read from the signalfd: print the counters, or say that a
 * graceful stop should begin now (true). */
bool server_on_signal(struct server *s);
/* Begin the graceful stop: close the listener, drain every connection.
 * server_stop_done: it is over (nothing left open). */
void server_begin_stop(struct server *s);
bool server_stop_done(const struct server *s);
void server_print_counters(const struct server *s, const char *when);
/* SIGUSR2 (a harmless signal, for the EINTR tests): counted by a handler. */
extern volatile sig_atomic_t usr2_count;

#endif
