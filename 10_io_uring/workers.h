/* workers.h -- messages handled on worker threads, replies back through an eventfd */
#ifndef WORKERS_H
#define WORKERS_H

#include "frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct workers;

/* A job: a request on its way to a worker, then the worker's answer on
 * its way back. Workers see bytes and a (fd, generation) ticket only. */
struct job {
    struct job *next;
    const char *error; /* no reply: a bad LZ4 body, or ERR_NO_MEMORY */
    int fd;
    uint64_t gen;
    bool compressed;
    uint32_t origin_size;
    size_t request_len; /* answered: how many in-flight bytes to give back */
    size_t len;         /* request: body bytes; reply: the whole framed reply */
    uint8_t bytes[];    /* request body, or the framed reply */
};

/* Start n threads that frame replies by these rules. Returns NULL (errno
 * set) on failure. The eventfd the loop must read is workers_eventfd(). */
struct workers *workers_start(const struct frame_rules *rules, int n);
int workers_eventfd(const struct workers *w);

/* Hand one decoded message to a worker (a copy: the input buffer moves
 * on). Returns 0, or -1 if memory ran out. */
int workers_submit(struct workers *w, int fd, uint64_t gen, const struct frame *f);

/* Loop thread, once its read of the eventfd completed: every job answered
 * since the last call, in order per connection. The caller frees each one
 * (free()). */
struct job *workers_take_done(struct workers *w);

/* Stop and join the threads, free everything still queued. */
void workers_stop(struct workers *w);

#endif
