/* loop_uring.h -- the event loop */
#ifndef LOOP_URING_H
#define LOOP_URING_H

#include "server.h"

/* Set up s->ring and its receive buffers. Returns 0, or a negative errno
 * if the kernel says no (*failed names the call): no io_uring here. */
int loop_uring_setup(struct server *s, const char **failed);

/* Run the server until a graceful stop is over. */
void loop_uring(struct server *s);

#endif
