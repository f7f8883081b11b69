/* accept.h -- new connections */
#ifndef ACCEPT_H
#define ACCEPT_H

#include "server.h"

/* A connection the ring's accept (or server_accept) took: refused past
 * --max-conns, else a new OPEN connection on the changed list. */
void server_accepted(struct server *s, int fd);

/* An accept failed with err: one connection's problem, the EMFILE dance,
 * or a pause. Returns true if the next accept may succeed at once. */
bool server_accept_failed(struct server *s, int err);

/* Accept every connection waiting on the listening socket, until EAGAIN
 * (at a stop, before the listener closes: see loop_uring.c). */
void server_accept(struct server *s);

/* Should the loop keep an accept in flight now? (Not while paused after
 * running out of file descriptors, nor once stopping.) */
bool server_accepting(struct server *s);

#endif
