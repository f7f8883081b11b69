/* loop_epoll.h -- the event loop */
#ifndef LOOP_EPOLL_H
#define LOOP_EPOLL_H

#include "server.h"

/* Run the server until a graceful stop is over. */
void loop_epoll(struct server *s);

#endif
