/* server.h -- the finished server's types: a connection and its states, the configuration, the
 * counters
 *
 * The files, each calling only the ones below it (no file calls back up):
 *
 *   server.c     options, signals, main
 *   loop_uring.c the loop: owns the ring, applies what each connection wants
 *   accept.c     new connections (and the EMFILE trap)
 *   handlers.c   what a completion does to a connection; graceful close, linger
 *   shutdown.c   timers, the graceful stop, signals, counters
 *   service.c    the decoding loop, the messages, worker replies
 *   workers.c    worker threads
 *   send.c       the send path: queue, one send in flight, its completion
 *   conn.c       a connection's record: create, close (with a reason), free
 *   timer.c      timer lists, each kept in deadline order
 *   uring.c      the io_uring instance: rings, submissions, completions, buffers
 */
#ifndef SERVER_H
#define SERVER_H

#include "buffer.h"
#include "frame.h"
#include "net.h"
#include "timer.h"
#include "uring.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/signalfd.h>

/* Appendix 10: received bytes land in buffers the kernel takes from a ring
 * we provide, shared by every connection and given back as soon as their
 * bytes are decoded or copied (loop_uring.c). 16 KiB: a small message
 * fits in one, a big one takes a few, and loopback's 64 KiB segments
 * split into four. 256 of them, 4 MiB: the ring also bounds what one turn
 * brings in. Between two turns the kernel fills buffers for every
 * connection that has data; with many more, a busy turn works through
 * tens of MiB that have left the CPU caches before they are decoded and
 * sent (1024 buffers made a 100-connection bulk echo 3 times slower).
 * When the ring runs dry, a receive ends with ENOBUFS and is armed again:
 * its bytes wait in the socket for the next turn, nothing is lost. */
#define RECV_BUFFERS      256
#define RECV_BUFFER_BYTES (16u << 10)

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
    CLOSE_ERROR,          /* reset, send/recv error, out of memory */
    CLOSE_STOP,           /* the server stopped: finished, flushed and half-closed */
    CLOSE_STOP_DEADLINE,  /* the server stopped and this one was not done in time */
    CLOSE_LINGER_TIMEOUT, /* after our FIN, the peer never sent its own */
    CLOSE_REASONS
};

/* The life of a connection:
 *
 *   OPEN --(stop, idle timeout)--> DRAINING --(queue empty)--> LINGERING --(peer's FIN,
 *     |    no more reading;         shutdown(SHUT_WR):            or --linger-ms)--> CLOSING
 *     |    answer what was read     our FIN                 read and discard
 *     +--(peer's FIN, queue empty)-----------------------------------------------> CLOSING
 *     +--(error, cap, protocol error: buffers freed at once)---------------------> CLOSING
 *
 * CLOSING lasts at least until the end of the loop's turn, and until the
 * ring has no operation of it in flight: each of them still names the
 * connection, and completes once more (if only to say it was cancelled). */
enum conn_state { CONN_OPEN, CONN_DRAINING, CONN_LINGERING, CONN_CLOSING };

/* What a connection wants from the loop next. The handlers return it; only
 * the loop turns it into ring operations: a multishot receive armed or
 * cancelled, a send submitted. */
enum want { WANT_NOTHING = 0, WANT_READ = 1, WANT_WRITE = 2, WANT_CLOSE = 4 };

struct conn {
    int fd;
    char peer[ADDR_STR_LEN];
    enum conn_state state;
    enum close_reason reason; /* DRAINING, LINGERING: why the graceful close began */
    /* in: bytes received and not yet decoded (a frame may be incomplete).
     * out: the send queue, bytes the kernel has not taken yet.
     * sending (appendix 10): the front of the queue, which the send in
     * flight names: kept apart from out, so appending to out may move
     * out's memory (send.c).
     * marks: where each queued reply ends in the stream of queued bytes
     * (uint64_t each), so the counters know when a reply is really sent. */
    struct buffer in, out, sending, marks;
    uint64_t out_queued_total; /* bytes ever appended to out */
    uint64_t out_sent_total;   /* bytes of out the kernel took */
    bool reading_paused;       /* the queue passed the high-water mark */
    bool read_eof;             /* the peer finished sending: close once out is empty */
    struct timer activity;     /* idle timeout (OPEN), or linger timeout (LINGERING) */
    struct timer frame;        /* running while a frame is partly here */
    struct timer stale;        /* running while output is queued: restarted when it moves */
    struct timer slow;         /* running while the queue is over the high-water mark */
    uint64_t gen;              /* this connection's generation: unique, never reused */
    size_t inflight_bytes;     /* --threads: message bytes a worker has not answered yet */
    /* Appendix 10: what the ring holds for it (loop_uring.c's alone). At
     * most one multishot receive, one send and one cancel; the record is
     * freed only once ops_in_flight is back to 0. */
    int ops_in_flight;   /* its requests whose last completion has not come */
    bool recv_armed;     /* a multishot receive is in flight... */
    bool recv_cancelled; /* ...and a cancel of it was submitted */
    bool send_in_flight; /* a send names sending */
    bool cancel_in_flight;
    bool cancelled_all; /* CLOSING: every operation on its fd was cancelled */
    /* Lists the connection may be on, each at most once (the flag says so). */
    bool changed; /* a completion or other work changed it: settle it this turn */
    struct conn *next_changed, *next_closed;
};

struct config {
    const char *host;
    int port;
    struct frame_rules rules; /* --framing and its limits */
    int sndbuf_bytes;         /* 0, or SO_SNDBUF for every connection (small: partial sends show) */
    long max_conns;           /* 0: no limit but the fd limit */
    enum service service;
    bool nodelay;            /* TCP_NODELAY (default on) */
    bool budgets;            /* cap the bytes one send names (default on) */
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

/* What the server counts; printed on SIGUSR1 and at exit. Each counter
 * changes where its event happens, once. Replies:
 * queued = sent + dropped + still in a queue (0 at exit). */
struct counters {
    uint64_t accepted, refused;
    uint64_t msgs_in; /* whole messages the service took */
    /* Received but never handled: the connection closed first (an error,
     * or a stop deadline). Whole messages, and every byte thrown away. */
    uint64_t msgs_unanswered, bytes_unanswered;
    uint64_t msgs_queued;  /* replies handed to the send path */
    uint64_t msgs_sent;    /* replies whose last byte the kernel took */
    uint64_t msgs_dropped; /* replies thrown away: their connection closed first */
    uint64_t bytes_in, bytes_out;
    uint64_t closed[CLOSE_REASONS];
    uint64_t recv_no_buffers; /* appendix 10: a receive found the buffer ring empty */
};

/* Appendix 10: the loop's own ring operations, beside the connections'
 * (loop_uring.c's alone). The kernel writes into these until the ring is
 * gone, so they live as long as the server does. */
struct loop_ops {
    struct signalfd_siginfo signal; /* where the signalfd read lands */
    uint64_t wakeups;               /* where the workers' eventfd read lands */
    struct __kernel_timespec when;  /* the timeout's deadline, read when it is submitted */
    long long timeout_ms;           /* the deadline of the armed timeout, or -1: none armed */
    bool accept_armed;              /* a multishot accept is in flight... */
    bool accept_cancelled;          /* ...and a cancel of it was submitted */
};

struct server {
    struct config cfg;
    int listen_fd;
    int spare_fd;        /* reserved for the EMFILE dance, see accept.c */
    struct uring ring;   /* the io_uring instance (set up in main, before listening) */
    struct loop_ops ops; /* ...and the loop's own operations on it */
    struct conn **conns; /* indexed by fd */
    int conns_cap;       /* length of conns[] */
    int max_fd;          /* highest fd in conns[], or -1 */
    long nconns;
    long long accept_paused_until_ms; /* 0, or when to accept again */
    struct conn *changed;             /* to settle before the turn ends */
    struct conn *closed;              /* CLOSING: to free once the ring is done with them */
    uint64_t next_gen;                /* generations handed out so far */
    struct workers *workers;          /* --threads N, or NULL */
    long long now_ms;                 /* the loop's clock, read once per turn */
    struct timer_list idle_timers, frame_timers, linger_timers, stale_timers, slow_timers;
    int signal_fd;              /* SIGINT, SIGTERM, SIGUSR1 arrive here as data */
    bool stopping;              /* a graceful stop is under way */
    long long stop_deadline_ms; /* ...and must end by then */
    struct counters count;
};

/* ---- conn.c: a connection's record ---- */

/* Add a connection for fd to the table (OPEN, idle timer running, on the
 * changed list so the loop arms its receive). NULL: out of memory. */
struct conn *conn_new(struct server *s, int fd, const struct sockaddr *peer);
/* The connection on fd, or NULL. */
struct conn *conn_find(const struct server *s, int fd);
/* End c now, for this reason: CLOSING, its counters updated, its buffers
 * freed at once (what it held unanswered is counted), except sending,
 * which a send in flight may still name. The loop then cancels what c has
 * in flight; conn_free_closed, at the end of a turn, closes the fd and
 * frees the record of every closed connection with nothing in flight. */
void conn_close(struct server *s, struct conn *c, enum close_reason why);
void conn_free_closed(struct server *s);
/* Throw away what c->in holds, counting the whole messages in it as unanswered. */
void conn_drop_input(struct server *s, struct conn *c);
/* Received bytes that will never be handled: count them, and the whole
 * messages among them (lesson 9: a read decoded in place holds its own). */
void conn_count_unanswered(struct server *s, const uint8_t *data, size_t len);
/* A completion, or another connection's work, changed c (a broadcast, a
 * worker's reply, a timer): the loop settles it before the turn ends. */
void conn_changed(struct server *s, struct conn *c);
struct conn *conn_next_changed(struct server *s);
/* Bytes moved: restart the idle timer (OPEN only). Inline (lesson 9): it
 * runs for every read and every send; touched already at this turn's clock
 * reading (a read and the send of its reply, say), the timer is where it
 * should be. */
static inline void conn_touch(struct server *s, struct conn *c)
{
    if (timer_running(&c->activity) && c->activity.since_ms == s->now_ms)
        return;
    if (c->state == CONN_OPEN)
        timer_start(&s->idle_timers, &c->activity, s->now_ms);
}
/* What the state says c waits for: read, write (output queued), close. */
enum want conn_wants(const struct conn *c);
/* Bytes queued for c: what a send names, and the queue behind it. */
static inline size_t conn_out_bytes(const struct conn *c)
{
    return buf_readable(&c->sending) + buf_readable(&c->out);
}
/* Bytes queued for c, counting what workers still hold for it. */
static inline size_t conn_queued(const struct conn *c)
{
    return conn_out_bytes(c) + c->inflight_bytes;
}
static inline bool conn_over_high_water(const struct server *s, const struct conn *c)
{
    return conn_queued(c) > s->cfg.high_water_bytes;
}
const char *conn_state_name(enum conn_state st);
const char *close_reason_name(enum close_reason r);
long long server_now_ms(void);

/* "out of memory": the server's own failure. It closes the connection it
 * happened on (counted as an error, not as the peer's protocol error). */
extern const char ERR_NO_MEMORY[];
/* The test hook for those paths: true if the environment variable
 * SERVER_FAIL_ALLOC names this allocation site ("table", "decompress",
 * "reply"): the caller then acts as if malloc had returned NULL.
 * alloc_hook_init reads the variable, before any thread starts. */
void alloc_hook_init(void);
bool alloc_may_fail(const char *site);
/* Appendix 10, a second hook: SERVER_NO_URING=ENOSYS or EPERM makes the
 * ring's setup act as if io_uring_setup had failed so (server.c), so a
 * test can see what a machine without io_uring prints: one line, exit 3. */

/* SIGUSR2 (a harmless signal, for the EINTR tests): counted by a handler. */
extern volatile sig_atomic_t usr2_count;

#endif
