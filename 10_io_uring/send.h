/* send.h -- the send path: every reply queued, one send in flight for the front of the queue */
#ifndef SEND_H
#define SEND_H

#include "server.h"

/* Fairness: one send names at most this much (--budgets on). With
 * IORING_SETUP_DEFER_TASKRUN the kernel copies a send's bytes while the
 * loop thread is in io_uring_enter: a few MiB for one client would hold up
 * every other client's completions. */
#define WRITE_BUDGET_BYTES (1u << 20)

/* Send one message (prefix, body, suffix) to c: queued behind what is
 * there, for the loop's next send. The output cap or out of memory closes
 * c. Returns false if c is (now) closing: the reply is dropped. */
bool send_message(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
                  const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len);

/* What is queued goes to the kernel now, with one send(), if no send is
 * in flight (it would overtake it). Off the hot path: before a close (a
 * protocol error, out of memory), as lesson 7 had sent the replies to the
 * messages before the bad one; and before the output cap judges. */
void send_flush(struct server *s, struct conn *c);

/* The loop, for c's next send: false if nothing is queued, else the bytes
 * the send names (the front of the queue; they stay put until send_done). */
bool send_next(struct server *s, struct conn *c, const uint8_t **data, size_t *len);

/* A send's completion: res bytes taken (a short send leaves the rest for
 * the next), or -errno, which closes c. */
void send_done(struct server *s, struct conn *c, int res);

#endif
