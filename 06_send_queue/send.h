/* send.h -- the send path: direct write on an empty queue, else behind the queue */
#ifndef SEND_H
#define SEND_H

#include "server.h"

/* Fairness: a flush sends at most this much per wake-up. A level-triggered
 * socket is simply reported again; an edge-triggered one is served again
 * before the loop sleeps (WANT_MORE). */
#define WRITE_BUDGET_BYTES (1u << 20)

/* Send one message (prefix, body, suffix) to c: directly if nothing is
 * queued, else behind the queue. An error, the output cap or out of memory
 * closes c. Returns false if c is (now) closing: the reply is dropped. */
bool send_message(struct server *s, struct conn *c, const uint8_t *prefix, size_t prefix_len,
                  const uint8_t *body, size_t body_len, const uint8_t *suffix, size_t suffix_len);

/* EPOLLOUT: send from the queue (an error closes c). Returns true if the
 * write budget ran out with bytes left (et: serve it again). */
bool send_flush(struct server *s, struct conn *c);

/* The periodic stale-output check: close every connection whose queue has
 * not moved for --stale-ms. It runs at most every --stale-check-ms. */
void server_check_stale(struct server *s);

#endif
