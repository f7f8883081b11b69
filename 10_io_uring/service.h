/* service.h -- the decoding loop and the messages */
#ifndef SERVICE_H
#define SERVICE_H

#include "server.h"

/* Decode and handle every whole message in c->in, until c's queue passes
 * the high-water mark (the rest waits in c->in). A protocol error, or
 * running out of memory, closes c. */
void service_decode(struct server *s, struct conn *c);

/* Lesson 9: the same for the bytes of one read that are not in c->in (the
 * receive's buffer, handlers.c): decoded where they are, and only what is
 * left copied into c->in. */
void service_decode_read(struct server *s, struct conn *c, const uint8_t *data, size_t len);

/* --threads, on the workers' eventfd: deliver every finished reply to its
 * connection, or drop it if that connection is gone. */
void service_collect(struct server *s);

#endif
