/* handlers.h -- what a completion does to a connection */
#ifndef HANDLERS_H
#define HANDLERS_H

#include "server.h"

/* The loop calls these for c's completions. A receive brought n bytes
 * (decoded, or discarded while lingering), the peer's FIN, or an error
 * (which closes c); a send completed (res: bytes taken, or -errno). */
void conn_on_received(struct server *s, struct conn *c, const uint8_t *data, size_t n);
void conn_on_peer_fin(struct server *s, struct conn *c);
void conn_on_recv_error(struct server *s, struct conn *c, int err);
void conn_on_sent(struct server *s, struct conn *c, int res);

/* After c's handlers ran, or after other work changed c: apply the
 * watermarks, decode what waited, take the next step of a graceful close,
 * and return what c wants next (read, write, close). */
enum want conn_settle(struct server *s, struct conn *c);

#endif
