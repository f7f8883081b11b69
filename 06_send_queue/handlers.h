/* handlers.h -- what an event does to a connection */
#ifndef HANDLERS_H
#define HANDLERS_H

#include "server.h"

/* The loop calls these when c's fd is ready. Each returns WANT_MORE (et:
 * its budget ran out with work left) or WANT_NOTHING. */
enum want conn_on_readable(struct server *s, struct conn *c);
enum want conn_on_writable(struct server *s, struct conn *c);
/* EPOLLERR: say which error, and close. */
void conn_on_error(struct server *s, struct conn *c);

/* After c's handlers ran, or after other work changed c: apply the
 * watermarks, decode what waited, close once the peer is done and has
 * everything, and return what c wants next (read, write, close). */
enum want conn_settle(struct server *s, struct conn *c);

#endif
