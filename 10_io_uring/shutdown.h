/* shutdown.h -- closing without losing data: graceful close, linger, timers, the graceful stop */
#ifndef SHUTDOWN_H
#define SHUTDOWN_H

#include "server.h"

/* Close c gracefully (OPEN -> DRAINING): answer what was read, flush,
 * half-close, wait for the peer's FIN. The loop settles it this turn. */
void shutdown_begin(struct server *s, struct conn *c, enum close_reason why);
/* DRAINING, once settled: if everything is answered and flushed, our FIN
 * (DRAINING -> LINGERING), or the close if the peer's FIN came first. */
void shutdown_drain_step(struct server *s, struct conn *c);
/* LINGERING: n bytes received while waiting for the peer's FIN: counted
 * and thrown away. */
void shutdown_linger_discard(struct server *s, struct conn *c, size_t n);

/* Expired timers: idle, frame, linger, stale output and slow readers. */
void server_run_timers(struct server *s);
/* The nearest deadline of every timer the loop knows, in server_now_ms()
 * time (-1: none): the ring's timeout is armed for it. */
long long server_deadline_ms(const struct server *s);
/* A signal, read from the signalfd: print the counters, or say that a
 * graceful stop should begin now (true). */
bool server_on_signal(struct server *s, const struct signalfd_siginfo *si);
/* Begin the graceful stop: close the listener, drain every connection.
 * server_stop_done: it is over (nothing left open). */
void server_begin_stop(struct server *s);
bool server_stop_done(const struct server *s);
void server_print_counters(const struct server *s, const char *when);

#endif
