/* workers.c -- messages handled on worker threads, replies back through an eventfd
 *
 *   loop thread                     worker k                      loop thread
 *   decode a message  --job-->  [queue k]  --> compute reply --> [done queue] --eventfd-->
 *   (c->gen, bytes)             (mutex+cond)                      (mutex)      deliver if
 *                                                                              c->gen matches
 *
 * Only the loop thread touches sockets and connections: workers see bytes
 * and a (fd, generation) ticket, nothing else. A connection's messages all
 * go to the same worker (chosen by its generation), so its replies come
 * back in order. The generation is the guard against the classic bug: the
 * connection closes, its fd number is reused by a new client, and a late
 * reply is delivered to a stranger. Here a reply whose generation does not
 * match the connection now on that fd is dropped, and freed exactly once.
 */
#include "workers.h"
#include "lz4.h"
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct job_queue {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct job *head, *tail;
};

struct worker {
    pthread_t thread;
    struct workers *pool;
    struct job_queue jobs;
    bool stop; /* under jobs.lock */
};

struct workers {
    struct frame_rules rules;
    int n;
    long delay_ms; /* test hook: each job waits this long before it is worked on */
    int efd;
    struct job_queue done;
    struct worker *w;
};

static void queue_init(struct job_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->ready, NULL);
    q->head = q->tail = NULL;
}

static void queue_push_locked(struct job_queue *q, struct job *j)
{
    j->next = NULL;
    if (q->tail != NULL)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static void free_list(struct job *j)
{
    while (j != NULL) {
        struct job *next = j->next;
        free(j);
        j = next;
    }
}

/* The work itself: the echo reply, framed. Runs on a worker thread and
 * touches nothing shared. Returns NULL and says why in *err if memory runs
 * out or a compressed body is bad. */
static struct job *make_reply(const struct frame_rules *rules, const struct job *req,
                              const char **err)
{
    const uint8_t *body = req->bytes;
    size_t len = req->len;
    uint8_t *plain = NULL, *packed = NULL;
    *err = ERR_NO_MEMORY;
    if (req->compressed) {
        plain = alloc_may_fail("decompress") ? NULL : malloc(req->origin_size);
        packed = malloc(lz4_compress_bound(req->origin_size));
        if (plain != NULL && packed != NULL)
            *err = lz4_decompress(req->bytes, req->len, plain, req->origin_size);
        if (plain == NULL || packed == NULL || *err != NULL) {
            free(plain);
            free(packed);
            return NULL;
        }
        len = lz4_compress(plain, req->origin_size, packed);
        body = packed;
        if (len > MAX_BODY_BYTES) { /* see service.c: send the request's own block */
            body = req->bytes;
            len = req->len;
        }
    }
    *err = ERR_NO_MEMORY; /* from here on, the only way to fail */
    uint8_t prefix[FRAME_HEADER_BYTES];
    size_t prefix_len, suffix_len;
    const uint8_t *suffix;
    frame_wrap(rules, len, req->compressed ? FLAG_COMPRESSED : 0, req->origin_size, prefix,
               &prefix_len, &suffix, &suffix_len);
    struct job *r =
        alloc_may_fail("reply") ? NULL : malloc(sizeof *r + prefix_len + len + suffix_len);
    if (r != NULL) {
        *r = (struct job){.fd = req->fd, .gen = req->gen, .len = prefix_len + len + suffix_len};
        memcpy(r->bytes, prefix, prefix_len);
        memcpy(r->bytes + prefix_len, body, len);
        if (suffix_len > 0) /* suffix is NULL when there is none: memcpy wants a pointer */
            memcpy(r->bytes + prefix_len + len, suffix, suffix_len);
    }
    free(plain);
    free(packed);
    return r;
}

static void *worker_main(void *arg)
{
    struct worker *me = arg;
    struct workers *pool = me->pool;
    for (;;) {
        pthread_mutex_lock(&me->jobs.lock);
        while (me->jobs.head == NULL && !me->stop)
            pthread_cond_wait(&me->jobs.ready, &me->jobs.lock);
        struct job *req = me->jobs.head;
        if (req == NULL) { /* stopping, and nothing left */
            pthread_mutex_unlock(&me->jobs.lock);
            return NULL;
        }
        me->jobs.head = req->next;
        if (me->jobs.head == NULL)
            me->jobs.tail = NULL;
        pthread_mutex_unlock(&me->jobs.lock);

        if (pool->delay_ms > 0) { /* a reply late on purpose (see workers_start) */
            struct timespec d = {pool->delay_ms / 1000, pool->delay_ms % 1000 * 1000000};
            while (nanosleep(&d, &d) == -1 && errno == EINTR)
                ;
        }
        const char *err;
        size_t request_len = req->len; /* bytes the loop counts as in flight until we answer */
        struct job *reply = make_reply(&pool->rules, req, &err);
        if (reply == NULL) {
            /* No reply: the request itself goes back with the reason. It
             * needs no new memory, so even out of memory the loop hears of
             * it and gives the in-flight bytes back. */
            req->error = err;
            reply = req;
        } else {
            free(req);
        }
        reply->request_len = request_len;
        pthread_mutex_lock(&pool->done.lock);
        queue_push_locked(&pool->done, reply);
        pthread_mutex_unlock(&pool->done.lock);
        /* Wake the loop: eventfd adds 1 to its counter; the ring's read of it completes. */
        uint64_t one = 1;
        while (write(pool->efd, &one, sizeof one) == -1 && errno == EINTR)
            ;
    }
}

struct workers *workers_start(const struct frame_rules *rules, int n)
{
    struct workers *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    pool->rules = *rules;
    pool->n = n;
    /* Test hook: SERVER_WORKER_DELAY_MS=N holds every job N ms, so that a
     * test can close a connection and give its fd to a new client before
     * the old connection's reply comes back (the generation check). */
    const char *delay = getenv("SERVER_WORKER_DELAY_MS");
    pool->delay_ms = delay != NULL ? atol(delay) : 0;
    /* Blocking, on purpose: only the ring reads it, and on some kernels
     * (6.1) an io_uring read of an O_NONBLOCK file completes at once with
     * EAGAIN instead of waiting for the counter to move. */
    pool->efd = eventfd(0, EFD_CLOEXEC);
    pool->w = calloc((size_t)n, sizeof *pool->w);
    if (pool->efd == -1 || pool->w == NULL) {
        if (pool->efd != -1)
            close(pool->efd);
        free(pool->w);
        free(pool);
        return NULL;
    }
    queue_init(&pool->done);
    /* Workers take no signal: a thread inherits its creator's mask, so
     * every signal is blocked while they are created. SIGUSR2's handler
     * then always runs on the loop thread, the one whose calls it is
     * meant to interrupt. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < n; i++) {
        pool->w[i].pool = pool;
        queue_init(&pool->w[i].jobs);
        if (pthread_create(&pool->w[i].thread, NULL, worker_main, &pool->w[i]) != 0)
            die("pthread_create");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool;
}

int workers_eventfd(const struct workers *w)
{
    return w->efd;
}

int workers_submit(struct workers *pool, int fd, uint64_t gen, const struct frame *f)
{
    struct job *j = malloc(sizeof *j + f->body_len);
    if (j == NULL)
        return -1;
    *j = (struct job){.fd = fd,
                      .gen = gen,
                      .compressed = f->compressed,
                      .origin_size = f->origin_size,
                      .len = f->body_len};
    memcpy(j->bytes, f->body, f->body_len);
    struct worker *w = &pool->w[gen % (uint64_t)pool->n]; /* same worker: replies in order */
    pthread_mutex_lock(&w->jobs.lock);
    queue_push_locked(&w->jobs, j);
    pthread_cond_signal(&w->jobs.ready);
    pthread_mutex_unlock(&w->jobs.lock);
    return 0;
}

struct job *workers_take_done(struct workers *pool)
{
    /* The loop's ring has read the eventfd already. Take the whole list at
     * once: the lock is held for two pointer moves. */
    pthread_mutex_lock(&pool->done.lock);
    struct job *list = pool->done.head;
    pool->done.head = pool->done.tail = NULL;
    pthread_mutex_unlock(&pool->done.lock);
    return list;
}

void workers_stop(struct workers *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->n; i++) {
        pthread_mutex_lock(&pool->w[i].jobs.lock);
        pool->w[i].stop = true;
        pthread_cond_signal(&pool->w[i].jobs.ready);
        pthread_mutex_unlock(&pool->w[i].jobs.lock);
    }
    for (int i = 0; i < pool->n; i++) {
        pthread_join(pool->w[i].thread, NULL);
        free_list(pool->w[i].jobs.head);
        pthread_mutex_destroy(&pool->w[i].jobs.lock);
        pthread_cond_destroy(&pool->w[i].jobs.ready);
    }
    free_list(pool->done.head);
    pthread_mutex_destroy(&pool->done.lock);
    close(pool->efd);
    free(pool->w);
    free(pool);
}
