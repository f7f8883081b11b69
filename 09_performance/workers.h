/* workers.h -- messages handled on worker threads, replies back through an eventfd */
#ifndef WORKERS_H
#define WORKERS_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct conn;
struct frame;
struct workers;

/* Start n threads. Returns NULL (errno set) on failure. The eventfd the
 * loop must watch is workers_eventfd(). */
struct workers *workers_start(struct server *s, int n);
int workers_eventfd(const struct workers *w);

/* Hand one decoded message of c to a worker (a copy: c->in moves on).
 * Returns 0, or -1 if memory ran out. */
int workers_submit(struct workers *w, struct conn *c, const struct frame *f);

/* Loop thread, on the eventfd: deliver every finished reply to its
 * connection, or drop it if that connection is gone. */
void workers_collect(struct workers *w);

/* Stop and join the threads, free everything still queued. */
void workers_stop(struct workers *w);

#endif
