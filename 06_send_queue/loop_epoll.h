/* loop_epoll.h -- the event loop */
#ifndef LOOP_EPOLL_H
#define LOOP_EPOLL_H

#include "server.h"

/* Run the server until a stop signal arrives (stop_requested). */
void loop_epoll(struct server *s);

#endif
