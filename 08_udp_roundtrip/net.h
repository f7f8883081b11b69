/* net.h -- the helpers every lesson-8 program shares: errors, options, UDP sockets */
#ifndef NET_H
#define NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest "HOST:PORT" text net_addr_str() produces, e.g. "[::1]:65535". */
#define ADDR_STR_LEN 64

/* Exit-on-failure helpers, for setup only (socket, bind, a thread...).
 * die() prints "what: strerror(errno)" and exits 1; die_msg() prints its text. */
void die(const char *what) __attribute__((noreturn));
void die_msg(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Bad usage: print "prog: TEXT (--help lists the options)" and exit 2. */
void usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* getopt_long's '?' and ':' results, as one line and exit 2. getopt must run
 * with opterr = 0 and an option string that starts with ':'. */
void bad_option(int c, char *const argv[]) __attribute__((noreturn));

/* The program name used as the prefix of every error line ("server: ..."). */
extern const char *prog_name;

/* -v: print a line for every event. trace() writes to stderr. */
extern bool verbose;
void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Command-line numbers: the whole text must be a number in min..max, or
 * the program exits with status 2 and a line naming the option. */
long parse_number(const char *option, const char *text, long min, long max);
int parse_port(const char *text); /* parse_number("--port", text, 0, 65535) */

/* A UDP socket bound to host:port (port 0: the kernel chooses); may exit
 * (die) because it is setup. Servers and receivers use it. */
int udp_bind(const char *host, int port);

/* A UDP socket connected to host:port; may exit (die). connect() on UDP sends
 * nothing: it fixes the destination for send() and makes the kernel drop
 * datagrams from anyone else, and report an ICMP "port unreachable" as
 * ECONNREFUSED on a later call. */
int udp_connect(const char *host, int port);

/* Print "listening on HOST:PORT" for a bound socket and flush stdout:
 * tests and scripts wait for this line to learn the port. */
void net_print_listening(int fd);

/* Format an address as "1.2.3.4:80" or "[::1]:80" into out (ADDR_STR_LEN bytes). */
const char *net_addr_str(const struct sockaddr *sa, char *out);

/* Print n bytes between quotes, with \n, \t, \\, \" and \xNN escapes;
 * at most max_shown bytes, then "...". */
void print_escaped(const void *buf, size_t n, size_t max_shown);

/* Sleep ms milliseconds (EINTR restarts the rest of the sleep). */
void sleep_ms(long ms);

#endif
