/* service.h -- the decoding loop and the messages */
#ifndef SERVICE_H
#define SERVICE_H

#include "server.h"

/* Decode and handle every whole message in c->in, until c's queue passes
 * the high-water mark (the rest waits in c->in). A protocol error, or
 * running out of memory, closes c. */
void service_decode(struct server *s, struct conn *c);

/* --threads, on the workers' eventfd: deliver every finished reply to its
 * connection, or drop it if that connection is gone. */
void service_collect(struct server *s);

#endif
