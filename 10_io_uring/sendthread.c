/* sendthread.c -- the classic design, built right: a send thread woken by a semaphore
 *
 *   loop thread (epoll)      worker k (N)               send thread
 *   recv, decode --job--> [jobs k: mutex+cond] --reply--> [replies: mutex] --sem_post-->
 *     sem_wait; pop one reply (the queue lock for the pop only); lock the connection;
 *     generation matches? send(); what the kernel does not take goes to c->out, and
 *     "loop, settle c" --eventfd--> loop: EPOLLOUT on/off, reading paused/resumed, close
 *   loop, on EPOLLOUT: flush c->out under the same connection lock
 * Only the loop calls epoll_ctl() and close().
 *
 * Lesson 6's server (server.c, workers.c) is the design the course prefers:
 * only the loop thread touches sockets. This program is the other one, the
 * one found in many real code bases, with each of its hazards handled:
 * the queue lock is never held across send(); a connection is a slot indexed
 * by fd that lives as long as the program, with a lock and a generation, so
 * a reply for a closed connection whose fd was reused is dropped; the send
 * path never closes (it marks the connection failed and asks the loop);
 * EAGAIN hands the rest to the loop's EPOLLOUT instead of retrying; counters
 * both threads change are C11 atomics; at exit a sem_post releases the send
 * thread from sem_wait. The lesson text compares the two (tools/sendthread_bench).
 */
#include "buffer.h"
#include "frame.h"
#include "lz4.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS      64
#define MAX_SLOTS       4096 /* connections are slots indexed by fd: fds above this are refused */
#define MAX_INPUT_BYTES (2 * (FRAME_HEADER_BYTES + MAX_BODY_BYTES))

/* A request on its way to a worker, then the reply on its way to the send thread. */
struct msg {
    struct msg *next;
    const char *error; /* the worker could not answer (bad LZ4 body, no memory) */
    int fd;
    uint64_t gen;
    bool compressed;
    uint32_t origin_size;
    size_t owed; /* bytes counted in the connection's c->inflight until the reply is handled */
    size_t len;
    uint8_t bytes[]; /* request body, or the framed reply */
};

struct msg_queue {
    pthread_mutex_t lock;
    pthread_cond_t ready; /* the workers' queues only */
    struct msg *head, *tail;
};

enum conn_state { CONN_FREE, CONN_OPEN, CONN_FAILED };
enum watch_kind { WATCH_LISTEN, WATCH_WAKE, WATCH_CONN };

/* What an epoll event is about (epoll_event.data.ptr points at one). */
struct watch {
    enum watch_kind kind;
    struct conn *c;
};

/* A slot: one per fd number, never freed while the program runs, so the send
 * thread may always lock it. Under `lock`: state, gen, out, paused, draining,
 * why. Loop thread only: in, events, watch. Both, without the lock: inflight. */
struct conn {
    pthread_mutex_t lock;
    enum conn_state state;
    int fd;
    uint64_t gen;           /* which connection lives in the slot now */
    struct buffer out;      /* what the kernel did not take yet (the loop flushes it) */
    bool paused, draining;  /* reading paused at high water; the peer sent its FIN */
    const char *why;        /* CONN_FAILED: the reason, for the loop's log line */
    atomic_size_t inflight; /* request bytes with the workers or in the reply queue */
    struct buffer in;
    uint32_t events;
    struct watch watch;
    struct conn *settle_next; /* on the settle list (under settle_lock) */
    bool settle_listed;
    struct conn *loop_next; /* loop only: the list the loop took */
    bool open;              /* loop only: the loop has not closed it */
    char peer[ADDR_STR_LEN];
};

struct config {
    const char *host;
    int port, threads, sndbuf;
    size_t high_water, low_water;
    long worker_delay_ms; /* test hook: each reply takes this long */
};

struct worker {
    pthread_t thread;
    struct server *s;
    struct msg_queue jobs;
    bool stop; /* under jobs.lock */
};

/* Counted by the send thread and the loop's EPOLLOUT flush alike: atomics,
 * because `x++` from two threads is a load and a store, and loses counts. */
struct stats {
    atomic_ullong replies, dropped, send_calls, sleeps;
};

struct server {
    struct config cfg;
    struct frame_rules rules;
    int epfd, listen_fd, wake_fd; /* wake_fd: eventfd the send thread writes to wake the loop */
    struct watch listen_watch, wake_watch;
    struct conn *slots; /* MAX_SLOTS of them */
    uint64_t next_gen;  /* loop thread only */
    struct worker *workers;
    struct msg_queue replies; /* workers -> send thread */
    sem_t replies_sem;        /* one post per reply, and one at exit */
    atomic_bool stopping;
    pthread_t send_thread;
    pthread_mutex_t settle_lock; /* send thread -> loop: connections to look at */
    struct conn *settle_head;
    struct stats stats;
};

static void queue_init(struct msg_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->ready, NULL);
    q->head = q->tail = NULL;
}

static void queue_push_locked(struct msg_queue *q, struct msg *m)
{
    m->next = NULL;
    if (q->tail != NULL)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
}

static struct msg *queue_pop_locked(struct msg_queue *q)
{
    struct msg *m = q->head;
    if (m != NULL) {
        q->head = m->next;
        if (q->head == NULL)
            q->tail = NULL;
    }
    return m;
}

static void free_list(struct msg *m)
{
    while (m != NULL) {
        struct msg *next = m->next;
        free(m);
        m = next;
    }
}

/* Bytes this connection owes its peer: with the workers, or queued. Under c->lock. */
static size_t owed_locked(struct conn *c)
{
    return atomic_load(&c->inflight) + buf_readable(&c->out);
}

/* ---- workers: the echo reply, framed (a compressed body is unpacked, checked, packed) ---- */

static struct msg *make_reply(const struct msg *req)
{
    const uint8_t *body = req->bytes;
    size_t len = req->len;
    uint8_t *plain = NULL, *packed = NULL;
    const char *err = "out of memory for a reply";
    if (req->compressed) {
        plain = malloc(req->origin_size);
        packed = malloc(lz4_compress_bound(req->origin_size));
        if (plain != NULL && packed != NULL)
            err = lz4_decompress(req->bytes, req->len, plain, req->origin_size);
        if (plain == NULL || packed == NULL || err != NULL)
            goto fail;
        len = lz4_compress(plain, req->origin_size, packed);
        body = packed;
        if (len > MAX_BODY_BYTES) { /* incompressible near 10 MiB: send the request's block */
            body = req->bytes;
            len = req->len;
        }
        err = "out of memory for a reply";
    }
    struct msg *r = malloc(sizeof *r + FRAME_HEADER_BYTES + len);
    if (r == NULL)
        goto fail;
    *r = (struct msg){.fd = req->fd, .gen = req->gen, .owed = req->owed};
    r->len = FRAME_HEADER_BYTES + len;
    frame_put_header(r->bytes, req->compressed ? FLAG_COMPRESSED : 0, req->origin_size,
                     req->compressed ? (uint32_t)len : 0);
    memcpy(r->bytes + FRAME_HEADER_BYTES, body, len);
    free(plain);
    free(packed);
    return r;
fail:
    free(plain);
    free(packed);
    return NULL;
}

/* Workers put replies on the send thread's queue: the lock for the push only, then a post. */
static void reply_post(struct server *s, struct msg *r)
{
    pthread_mutex_lock(&s->replies.lock);
    queue_push_locked(&s->replies, r);
    pthread_mutex_unlock(&s->replies.lock);
    sem_post(&s->replies_sem);
}

static void *worker_main(void *arg)
{
    struct worker *me = arg;
    struct server *s = me->s;
    for (;;) {
        pthread_mutex_lock(&me->jobs.lock);
        while (me->jobs.head == NULL && !me->stop)
            pthread_cond_wait(&me->jobs.ready, &me->jobs.lock);
        struct msg *req = queue_pop_locked(&me->jobs);
        pthread_mutex_unlock(&me->jobs.lock);
        if (req == NULL) /* stopping, and nothing left */
            return NULL;
        if (s->cfg.worker_delay_ms > 0) {
            struct timespec d = {s->cfg.worker_delay_ms / 1000,
                                 (s->cfg.worker_delay_ms % 1000) * 1000000};
            while (nanosleep(&d, &d) == -1 && errno == EINTR)
                ;
        }
        struct msg *r = make_reply(req);
        if (r == NULL) { /* the request goes back with the reason: it needs no new memory */
            req->error = req->compressed ? "bad LZ4 body or no memory" : "out of memory";
            r = req;
        } else {
            free(req);
        }
        reply_post(s, r);
    }
}

/* ---- send thread ---- */

/* Ask the loop to look at c (EPOLLOUT, paused reading, close). Never with c->lock held. */
static void settle_request(struct server *s, struct conn *c)
{
    pthread_mutex_lock(&s->settle_lock);
    bool was_empty = s->settle_head == NULL;
    if (!c->settle_listed) {
        c->settle_listed = true;
        c->settle_next = s->settle_head;
        s->settle_head = c;
    }
    pthread_mutex_unlock(&s->settle_lock);
    uint64_t one = 1;
    if (was_empty) /* a non-empty list has a wake-up on its way already */
        while (write(s->wake_fd, &one, sizeof one) == -1 && errno == EINTR)
            ;
}

/* Send what the kernel takes now; the rest goes to c->out for the loop's
 * EPOLLOUT. Under c->lock, so the loop's flush cannot interleave its bytes
 * with ours. Returns true if the loop must settle c (leftover, or failed). */
static bool send_now_locked(struct server *s, struct conn *c, const struct msg *r)
{
    size_t off = 0;
    while (off < r->len) {
        ssize_t n = send(c->fd, r->bytes + off, r->len - off, MSG_NOSIGNAL);
        atomic_fetch_add(&s->stats.send_calls, 1);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;              /* the lesson: never retry here; the loop waits for EPOLLOUT */
        c->state = CONN_FAILED; /* the lesson: never close from the send path */
        c->why = errno == EPIPE || errno == ECONNRESET ? "peer gone" : "send failed";
        return true;
    }
    trace("send fd=%d <- %zu of %zu bytes (send thread)", c->fd, off, r->len);
    if (off == r->len)
        return false;
    if (buf_append(&c->out, r->bytes + off, r->len - off) != IO_OK) {
        c->state = CONN_FAILED;
        c->why = "out of memory for the output queue";
    } else {
        trace("EAGAIN fd=%d: %zu bytes to the loop for EPOLLOUT", c->fd, r->len - off);
    }
    return true;
}

/* One reply: check it is still wanted, then send or queue it. Frees it. */
static void send_reply(struct server *s, struct msg *r)
{
    struct conn *c = &s->slots[r->fd];
    bool settle = false;
    pthread_mutex_lock(&c->lock);
    /* the lesson: the fd number may belong to a newer connection by now */
    if (c->state == CONN_FREE || c->gen != r->gen) {
        pthread_mutex_unlock(&c->lock);
        trace("reply for fd=%d generation %llu dropped: connection gone", r->fd,
              (unsigned long long)r->gen);
        atomic_fetch_add(&s->stats.dropped, 1);
        free(r);
        return;
    }
    atomic_fetch_sub(&c->inflight, r->owed);
    if (r->error != NULL && c->state == CONN_OPEN) {
        c->state = CONN_FAILED;
        c->why = r->error;
    }
    if (c->state == CONN_FAILED) {
        atomic_fetch_add(&s->stats.dropped, 1);
        settle = true;
    } else if (buf_readable(&c->out) > 0) { /* behind the queued bytes, never before them */
        if (buf_append(&c->out, r->bytes, r->len) != IO_OK) {
            c->state = CONN_FAILED;
            c->why = "out of memory for the output queue";
            settle = true;
        }
        atomic_fetch_add(&s->stats.replies, 1);
    } else {
        settle = send_now_locked(s, c, r);
        atomic_fetch_add(&s->stats.replies, 1);
    }
    if (c->paused && owed_locked(c) <= s->cfg.low_water)
        settle = true; /* the loop resumes reading */
    if (c->draining && owed_locked(c) == 0)
        settle = true; /* the loop closes */
    pthread_mutex_unlock(&c->lock);
    free(r);
    if (settle)
        settle_request(s, c);
}

static void *send_thread_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        if (sem_trywait(&s->replies_sem) == -1) { /* EAGAIN: nothing queued: sleep */
            atomic_fetch_add(&s->stats.sleeps, 1);
            /* sem_wait is never restarted after a signal handler (man 7 signal) */
            while (sem_wait(&s->replies_sem) == -1 && errno == EINTR)
                ;
        }
        if (atomic_load(&s->stopping))
            return NULL; /* main frees what is still queued */
        pthread_mutex_lock(&s->replies.lock);
        struct msg *r = queue_pop_locked(&s->replies);
        pthread_mutex_unlock(&s->replies.lock); /* the lesson: not held across send() */
        if (r != NULL)
            send_reply(s, r);
    }
}

/* ---- loop thread ---- */

static void set_events_locked(struct server *s, struct conn *c, uint32_t events)
{
    if (events == c->events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = &c->watch};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
        die("epoll_ctl MOD");
    trace("fd=%d: EPOLLIN %s, EPOLLOUT %s", c->fd, events & EPOLLIN ? "on" : "off",
          events & EPOLLOUT ? "on" : "off");
    c->events = events;
}

/* The loop's close, under the connection lock: a send thread that holds the
 * lock sees the fd open and its own; one that comes later sees CONN_FREE. */
static void conn_close(struct server *s, struct conn *c, const char *why)
{
    pthread_mutex_lock(&c->lock);
    trace("close fd=%d generation %llu: %s", c->fd, (unsigned long long)c->gen, why);
    if (verbose || strcmp(why, "peer done") != 0)
        fprintf(stderr, "sendthread: %s: closed: %s\n", c->peer, why);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = CONN_FREE;
    buf_free(&c->out);
    pthread_mutex_unlock(&c->lock);
    buf_free(&c->in);
    c->open = false;
}

static bool over_high_water(struct server *s, struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    bool over = owed_locked(c) > s->cfg.high_water;
    if (over && !c->paused) {
        c->paused = true;
        fprintf(stderr, "sendthread: %s: %zu bytes owed > high-water %zu: reading paused\n",
                c->peer, owed_locked(c), s->cfg.high_water);
        set_events_locked(s, c, c->events & ~(uint32_t)EPOLLIN);
    }
    pthread_mutex_unlock(&c->lock);
    return over;
}

static bool submit(struct server *s, struct conn *c, const struct frame *f)
{
    struct msg *m = malloc(sizeof *m + f->body_len);
    if (m == NULL)
        return false;
    *m = (struct msg){.fd = c->fd,
                      .gen = c->gen,
                      .compressed = f->compressed,
                      .origin_size = f->origin_size,
                      .owed = f->frame_len,
                      .len = f->body_len};
    memcpy(m->bytes, f->body, f->body_len);
    atomic_fetch_add(&c->inflight, f->frame_len); /* before the job exists for anyone else */
    struct worker *w = &s->workers[c->gen % (uint64_t)s->cfg.threads]; /* in order per conn */
    pthread_mutex_lock(&w->jobs.lock);
    queue_push_locked(&w->jobs, m);
    pthread_cond_signal(&w->jobs.ready);
    pthread_mutex_unlock(&w->jobs.lock);
    return true;
}

/* Whole messages out of c->in, to the workers, until high water. False: c was closed. */
static bool decode(struct server *s, struct conn *c)
{
    while (!over_high_water(s, c)) {
        struct frame f;
        const char *why = NULL;
        enum frame_status st =
            frame_decode(&s->rules, buf_peek(&c->in), buf_readable(&c->in), &f, &why);
        if (st == FRAME_NEED_MORE)
            return true;
        if (st == FRAME_ERROR) {
            char got[96], reason[160];
            frame_describe(&f, buf_peek(&c->in), got, sizeof got);
            snprintf(reason, sizeof reason, "protocol error: %s%s", why, got);
            conn_close(s, c, reason);
            return false;
        }
        trace("frame complete fd=%d: %zu bytes", c->fd, f.body_len);
        if (!submit(s, c, &f)) {
            conn_close(s, c, "out of memory for a message");
            return false;
        }
        buf_consume(&c->in, f.frame_len);
    }
    return true;
}

/* What the send thread asked for, or what changed: close, EPOLLOUT, reading. */
static void settle(struct server *s, struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->state == CONN_FREE) { /* closed since it was listed */
        pthread_mutex_unlock(&c->lock);
        return;
    }
    const char *why = c->state == CONN_FAILED              ? c->why
                      : c->draining && owed_locked(c) == 0 ? "peer done"
                                                           : NULL;
    bool resume = c->paused && owed_locked(c) <= s->cfg.low_water;
    if (resume) {
        c->paused = false;
        fprintf(stderr, "sendthread: %s: %zu bytes owed <= low-water %zu: reading resumed\n",
                c->peer, owed_locked(c), s->cfg.low_water);
    }
    uint32_t events =
        (c->paused || c->draining ? 0 : EPOLLIN) | (buf_readable(&c->out) > 0 ? EPOLLOUT : 0);
    if (why == NULL)
        set_events_locked(s, c, events);
    pthread_mutex_unlock(&c->lock);
    if (why != NULL)
        conn_close(s, c, why);
    else if (resume)
        decode(s, c); /* the messages that waited in c->in */
}

/* EPOLLOUT: the loop flushes c->out, under the lock the send thread sends under. */
static void on_writable(struct server *s, struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->state == CONN_OPEN && buf_readable(&c->out) > 0) {
        size_t n;
        enum io r = buf_send_fd(&c->out, c->fd, &n);
        atomic_fetch_add(&s->stats.send_calls, 1);
        if (r == IO_AGAIN)
            break;
        if (r != IO_OK) {
            c->state = CONN_FAILED;
            c->why = "peer gone";
        }
        trace("send fd=%d <- %zu bytes from the queue (%zu left)", c->fd, n, buf_readable(&c->out));
    }
    pthread_mutex_unlock(&c->lock);
    settle(s, c);
}

static void on_readable(struct server *s, struct conn *c)
{
    size_t n;
    enum io r = buf_read_fd(&c->in, c->fd, &n);
    if (r == IO_AGAIN)
        return;
    if (r == IO_ERROR || r == IO_FULL) {
        conn_close(s, c, r == IO_FULL ? "input too big" : "recv failed");
        return;
    }
    if (r == IO_CLOSED) { /* its replies still go out; then the loop closes */
        pthread_mutex_lock(&c->lock);
        c->draining = true;
        pthread_mutex_unlock(&c->lock);
        trace("recv fd=%d -> end of stream", c->fd);
        settle(s, c);
        return;
    }
    trace("recv fd=%d -> %zu bytes", c->fd, n);
    decode(s, c);
}

static void on_accept(struct server *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fprintf(stderr, "sendthread: accept: %s\n", strerror(errno));
        return;
    }
    if (fd >= MAX_SLOTS) {
        fprintf(stderr, "sendthread: fd %d: refused: more than %d slots\n", fd, MAX_SLOTS);
        close(fd);
        return;
    }
    if (s->cfg.sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s->cfg.sndbuf, sizeof s->cfg.sndbuf);
    struct conn *c = &s->slots[fd];
    pthread_mutex_lock(&c->lock);
    c->state = CONN_OPEN;
    c->fd = fd;
    c->gen = ++s->next_gen;
    c->paused = c->draining = false;
    c->events = EPOLLIN;
    atomic_store(&c->inflight, 0);
    buf_init(&c->out, 0);
    pthread_mutex_unlock(&c->lock);
    buf_init(&c->in, MAX_INPUT_BYTES);
    c->open = true;
    net_peer_str(fd, c->peer);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->watch};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        die("epoll_ctl ADD");
    trace("accept fd=%d generation %llu from %s", fd, (unsigned long long)c->gen, c->peer);
}

static void on_wake(struct server *s)
{
    uint64_t count;
    while (read(s->wake_fd, &count, sizeof count) == -1 && errno == EINTR)
        ;
    pthread_mutex_lock(&s->settle_lock); /* take the whole list in one move */
    struct conn *list = s->settle_head;
    s->settle_head = NULL;
    for (struct conn *c = list; c != NULL; c = c->settle_next) {
        c->settle_listed = false; /* from now on the send thread may list it again */
        c->loop_next = c->settle_next;
    }
    pthread_mutex_unlock(&s->settle_lock);
    for (struct conn *c = list; c != NULL; c = c->loop_next)
        settle(s, c);
}

/* Reset, or both directions shut: nothing more can be read or delivered. */
static void on_conn_event(struct server *s, struct conn *c, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP)) {
        conn_close(s, c, "peer gone");
        return;
    }
    if (events & EPOLLOUT && c->events & EPOLLOUT)
        on_writable(s, c);
    if (c->open && events & EPOLLIN && c->events & EPOLLIN)
        on_readable(s, c);
}

static void loop_run(struct server *s, const sigset_t *wait_mask)
{
    struct epoll_event events[MAX_EVENTS];
    while (!stop_requested) {
        int n = epoll_pwait(s->epfd, events, MAX_EVENTS, -1, wait_mask);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            die("epoll_pwait");
        }
        for (int i = 0; i < n; i++) {
            struct watch *w = events[i].data.ptr;
            if (w->kind == WATCH_LISTEN)
                on_accept(s);
            else if (w->kind == WATCH_WAKE)
                on_wake(s);
            else if (w->c->open)
                on_conn_event(s, w->c, events[i].events);
        }
    }
}

/* ---- setup and exit ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sendthread [--threads N] [--sndbuf BYTES] [--high-water B] [--low-water B]\n"
            "                  [--worker-delay-ms MS] [--host ADDR] [--port N] [-v]\n"
            "Echo server (lesson protocol) in the classic design: N worker threads compute\n"
            "the replies, ONE send thread sends them, woken by a semaphore.\n"
            "  --threads N        worker threads, 1..64 (default 2)\n"
            "  --sndbuf BYTES     set SO_SNDBUF on every connection (small: partial sends)\n"
            "  --high-water B     stop reading a client that is owed more than B bytes (1048576)\n"
            "  --low-water B      read it again at B bytes owed or less (262144)\n"
            "  --worker-delay-ms MS  (tests) each reply takes MS ms longer to compute\n"
            "  --host ADDR        address to bind (default 127.0.0.1)\n"
            "  --port N           port (default 9000; 0 = let the kernel choose)\n"
            "  -v, --verbose      print every event, on every thread\n"
            "Prints 'listening on HOST:PORT' first. SIGINT/SIGTERM stop it (exit 0).\n");
}

static struct config parse_args(int argc, char **argv)
{
    struct config cfg = {.host = "127.0.0.1",
                         .port = 9000,
                         .threads = 2,
                         .high_water = 1048576,
                         .low_water = 262144};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (!has_value) {
            fprintf(stderr, "%s: unknown option or missing value: %s (try --help)\n", prog_name, a);
            exit(2);
        } else if (strcmp(a, "--port") == 0) {
            cfg.port = parse_port(argv[++i]);
        } else if (strcmp(a, "--host") == 0) {
            cfg.host = argv[++i];
        } else if (strcmp(a, "--threads") == 0) {
            cfg.threads = (int)parse_number(a, argv[++i], 1, 64);
        } else if (strcmp(a, "--sndbuf") == 0) {
            cfg.sndbuf = (int)parse_number(a, argv[++i], 1, 64 * 1024 * 1024);
        } else if (strcmp(a, "--high-water") == 0) {
            cfg.high_water = (size_t)parse_number(a, argv[++i], 1, 1L << 30);
        } else if (strcmp(a, "--low-water") == 0) {
            cfg.low_water = (size_t)parse_number(a, argv[++i], 0, 1L << 30);
        } else if (strcmp(a, "--worker-delay-ms") == 0) {
            cfg.worker_delay_ms = parse_number(a, argv[++i], 0, 60000);
        } else {
            fprintf(stderr, "%s: unknown option: %s (try --help)\n", prog_name, a);
            exit(2);
        }
    }
    if (cfg.low_water >= cfg.high_water) {
        fprintf(stderr, "%s: --low-water must be below --high-water\n", prog_name);
        exit(2);
    }
    return cfg;
}

static void start_threads(struct server *s)
{
    queue_init(&s->replies);
    if (sem_init(&s->replies_sem, 0, 0) == -1) /* 0: the send thread starts asleep */
        die("sem_init");
    pthread_mutex_init(&s->settle_lock, NULL);
    s->workers = calloc((size_t)s->cfg.threads, sizeof *s->workers);
    if (s->workers == NULL)
        die("calloc");
    for (int i = 0; i < s->cfg.threads; i++) {
        s->workers[i].s = s;
        queue_init(&s->workers[i].jobs);
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0)
            die_msg("pthread_create failed");
    }
    if (pthread_create(&s->send_thread, NULL, send_thread_main, s) != 0)
        die_msg("pthread_create failed");
}

/* Workers first (no new replies after this), then the send thread: the stop
 * flag, then one post, or it sleeps in sem_wait forever and join never returns. */
static void stop_threads(struct server *s)
{
    for (int i = 0; i < s->cfg.threads; i++) {
        pthread_mutex_lock(&s->workers[i].jobs.lock);
        s->workers[i].stop = true;
        pthread_cond_signal(&s->workers[i].jobs.ready);
        pthread_mutex_unlock(&s->workers[i].jobs.lock);
    }
    for (int i = 0; i < s->cfg.threads; i++) {
        pthread_join(s->workers[i].thread, NULL);
        free_list(s->workers[i].jobs.head);
        pthread_mutex_destroy(&s->workers[i].jobs.lock);
        pthread_cond_destroy(&s->workers[i].jobs.ready);
    }
    atomic_store(&s->stopping, true);
    sem_post(&s->replies_sem);
    pthread_join(s->send_thread, NULL);
    free_list(s->replies.head); /* replies never sent: freed here, once */
    pthread_mutex_destroy(&s->replies.lock);
    pthread_cond_destroy(&s->replies.ready);
    sem_destroy(&s->replies_sem);
    pthread_mutex_destroy(&s->settle_lock);
    free(s->workers);
}

static void setup(struct server *s, sigset_t *wait_mask)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    /* Blocked here and so in every thread created later (they inherit the
     * mask); only epoll_pwait unblocks them, atomically, while it waits. */
    if (pthread_sigmask(SIG_BLOCK, &stop, wait_mask) != 0)
        die_msg("pthread_sigmask failed");
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->epfd == -1 || s->wake_fd == -1)
        die("epoll_create1/eventfd");
    s->slots = calloc(MAX_SLOTS, sizeof *s->slots);
    if (s->slots == NULL)
        die("calloc");
    for (int fd = 0; fd < MAX_SLOTS; fd++) {
        pthread_mutex_init(&s->slots[fd].lock, NULL);
        s->slots[fd].watch = (struct watch){WATCH_CONN, &s->slots[fd]};
    }
    s->listen_fd = net_listen(s->cfg.host, s->cfg.port, true);
    int flags = fcntl(s->listen_fd, F_GETFL); /* a client gone before accept: EAGAIN, not a hang */
    if (flags == -1 || fcntl(s->listen_fd, F_SETFL, flags | O_NONBLOCK) == -1)
        die("fcntl(O_NONBLOCK)");
    s->listen_watch = (struct watch){WATCH_LISTEN, NULL};
    s->wake_watch = (struct watch){WATCH_WAKE, NULL};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->listen_watch};
    struct epoll_event wake = {.events = EPOLLIN, .data.ptr = &s->wake_watch};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) == -1 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake_fd, &wake) == -1)
        die("epoll_ctl ADD");
}

static void cleanup(struct server *s)
{
    for (int fd = 0; fd < MAX_SLOTS; fd++) {
        if (s->slots[fd].open) {
            close(fd);
            buf_free(&s->slots[fd].in);
            buf_free(&s->slots[fd].out);
        }
        pthread_mutex_destroy(&s->slots[fd].lock);
    }
    free(s->slots);
    close(s->listen_fd);
    close(s->wake_fd);
    close(s->epfd);
}

int main(int argc, char **argv)
{
    prog_name = "sendthread";
    static struct server s; /* static: the counters start at zero, the threads see one copy */
    s.cfg = parse_args(argc, argv);
    s.rules = (struct frame_rules){.framing = FRAMING_PROTOCOL};
    ignore_sigpipe();
    on_stop_signals();
    sigset_t wait_mask;
    setup(&s, &wait_mask);
    start_threads(&s);
    net_print_listening(s.listen_fd);
    loop_run(&s, &wait_mask);
    int open_conns = 0;
    for (int fd = 0; fd < MAX_SLOTS; fd++)
        open_conns += s.slots[fd].open;
    stop_threads(&s);
    fprintf(stderr,
            "sendthread: stopping (%d connections open): %llu replies sent or queued, %llu "
            "dropped, %llu send() calls, the send thread slept %llu times\n",
            open_conns, (unsigned long long)atomic_load(&s.stats.replies),
            (unsigned long long)atomic_load(&s.stats.dropped),
            (unsigned long long)atomic_load(&s.stats.send_calls),
            (unsigned long long)atomic_load(&s.stats.sleeps));
    cleanup(&s);
    return 0;
}
