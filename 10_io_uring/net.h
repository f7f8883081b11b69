/* net.h -- the socket helpers every lesson-1 program shares */
#ifndef NET_H
#define NET_H

#include <stdbool.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Longest "HOST:PORT" text net_addr_str() produces, e.g. "[::1]:65535". */
#define ADDR_STR_LEN 64

/* Exit-on-failure helpers, for setup only (socket, bind, listen...).
 * die() prints "what: strerror(errno)" and exits 1; die_msg() prints its text. */
void die(const char *what) __attribute__((noreturn));
void die_msg(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* The program name used as the prefix of every error line ("server: ..."). */
extern const char *prog_name;

/* -v: print a line for every event. trace() writes to stderr. It is a
 * macro (lesson 9): with -v off, a call costs one test of `verbose`, not a
 * function call that builds its arguments and returns at once. */
extern bool verbose;
void trace_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define trace(...)                                                                                 \
    do {                                                                                           \
        if (verbose)                                                                               \
            trace_line(__VA_ARGS__);                                                               \
    } while (0)

/* Command-line numbers: the whole text must be a number in min..max, or
 * the program exits with status 2 and a line naming the option. */
long parse_number(const char *option, const char *text, long min, long max);
int parse_port(const char *text); /* parse_number("--port", text, 0, 65535) */

/* Ignore SIGPIPE, so writing to a closed peer returns EPIPE instead of killing us. */
void ignore_sigpipe(void);

/* Set by SIGINT/SIGTERM once on_stop_signals() is called. The handlers are
 * installed without SA_RESTART, so a blocked accept/recv/send returns EINTR
 * and the program gets a chance to look at this flag. A race remains: a
 * signal that lands after a loop tested the flag but before it entered the
 * blocking call only sets the flag, and the call sleeps on until the next
 * event. Event loops close the gap by keeping the signal blocked except
 * inside the wait itself (ppoll, epoll_pwait unblock it atomically), or by
 * turning it into a readable fd (signalfd, the self-pipe trick). */
extern volatile sig_atomic_t stop_requested;
void on_stop_signals(void);

struct addrinfo;

/* Resolve host:port with getaddrinfo; may exit (die) because it is setup.
 * passive: for bind (NULL host = every interface). Free with freeaddrinfo. */
struct addrinfo *net_resolve(const char *host, int port, bool passive);

/* Create, bind and listen; may exit (die) because it is setup. port 0 lets
 * the kernel choose. The backlog is SOMAXCONN, a C library constant (4096 in
 * glibc 2.36, 128 in older ones); listen() takes the smaller of it and
 * net.core.somaxconn. reuse_addr sets SO_REUSEADDR (every server here does;
 * the server's --no-reuseaddr shows why). */
int net_listen(const char *host, int port, bool reuse_addr);

/* net_listen() with SO_REUSEPORT as well: every socket of the same user that
 * sets it may listen on the same address and port, and the kernel spreads
 * new connections among them. May exit, like net_listen(). */
int net_listen_shared(const char *host, int port, bool reuse_addr);

/* Print "listening on HOST:PORT" for a listening socket and flush stdout:
 * tests and scripts wait for this line to learn the port. */
void net_print_listening(int listen_fd);

/* Blocking connect to host:port. Returns the fd, or -1 with errno set
 * (the caller decides whether that is fatal). */
int net_connect(const char *host, int port);

/* Read exactly n bytes unless the peer closes first. Returns the count read
 * (< n only at end of stream) or -1 on error. Retries EINTR unless a stop
 * signal arrived. */
ssize_t readn(int fd, void *buf, size_t n);

/* Write all n bytes. Returns n or -1 (errno EPIPE, ECONNRESET...). Retries
 * EINTR unless a stop signal arrived. */
ssize_t writen(int fd, const void *buf, size_t n);

/* Format an address as "1.2.3.4:80" or "[::1]:80" into out (ADDR_STR_LEN bytes). */
const char *net_addr_str(const struct sockaddr *sa, char *out);

/* The local / remote address of a connected socket, formatted as above. */
const char *net_local_str(int fd, char *out);
const char *net_peer_str(int fd, char *out);

/* Demo helper: wait (at most timeout_ms) until the peer has sent everything
 * and shut down its side, so the next recv sees all its bytes at once.
 * Returns true if the peer finished in time. */
bool net_wait_peer_done(int fd, int timeout_ms);

/* Print n bytes between quotes, with \n, \r, \t, \\, \" and \xNN escapes. */
void fput_escaped(FILE *out, const void *buf, size_t n);

#endif
