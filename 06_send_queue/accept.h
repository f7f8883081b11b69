/* accept.h -- new connections */
#ifndef ACCEPT_H
#define ACCEPT_H

#include "server.h"

/* Accept the connections waiting on the listening socket: in lt mode up to
 * a bounded number per call, with et until EAGAIN. Each one kept is a new
 * OPEN connection on the changed list. */
void server_accept(struct server *s);

/* Should the loop watch the listening socket now? (Not while paused after
 * running out of file descriptors.) */
bool server_accepting(struct server *s);

#endif
