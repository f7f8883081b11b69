/* net.c -- the socket helpers every lesson-1 program shares */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *prog_name = "net";
bool verbose = false;
volatile sig_atomic_t stop_requested = 0;

void die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog_name, what, strerror(errno));
    exit(1);
}

void die_msg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void trace_line(const char *fmt, ...)
{
    va_list ap;
    flockfile(stderr); /* one line, even when two threads trace at once */
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

long parse_number(const char *option, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    /* strtol() alone accepts "5x" as 5 and "" as 0: check where it stopped. */
    if (errno != 0 || end == text || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "%s: %s wants a number in %ld..%ld, not '%s'\n", prog_name, option, min,
                max, text);
        exit(2);
    }
    return n;
}

int parse_port(const char *text)
{
    return (int)parse_number("--port", text, 0, 65535);
}

void ignore_sigpipe(void)
{
    /* The default action of SIGPIPE is to end the process. A server that
     * writes to a client who just left would die with it. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        die("signal(SIGPIPE)");
}

static void stop_handler(int signo)
{
    (void)signo;
    stop_requested = 1; /* only async-signal-safe work in a handler */
}

void on_stop_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocked calls must return EINTR */
    if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1)
        die("sigaction");
}

/* getaddrinfo is the modern, thread-safe replacement of gethostbyname:
 * it handles IPv4 and IPv6 and fills in the port in network byte order. */
struct addrinfo *net_resolve(const char *host, int port, bool passive)
{
    struct addrinfo hints = {0}, *res;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        die_msg("cannot resolve '%s': %s", host, gai_strerror(rc));
    return res;
}

static int listen_on(const char *host, int port, bool reuse_addr, bool reuse_port)
{
    struct addrinfo *ai = net_resolve(host, port, true);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd == -1)
        die("socket");
    /* Without SO_REUSEADDR a restarted server fails with EADDRINUSE while
     * connections of its previous life sit in TIME_WAIT (up to a minute). */
    int on = 1;
    if (reuse_addr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1)
        die("setsockopt(SO_REUSEADDR)");
    /* Both options only count if set before bind(). */
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == -1)
        die("setsockopt(SO_REUSEPORT)");
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1)
        die("bind");
    freeaddrinfo(ai);
    if (listen(fd, SOMAXCONN) == -1)
        die("listen");
    return fd;
}

int net_listen(const char *host, int port, bool reuse_addr)
{
    return listen_on(host, port, reuse_addr, false);
}

int net_listen_shared(const char *host, int port, bool reuse_addr)
{
    return listen_on(host, port, reuse_addr, true);
}

void net_print_listening(int listen_fd)
{
    char addr[ADDR_STR_LEN];
    printf("listening on %s\n", net_local_str(listen_fd, addr));
    fflush(stdout);
}

int net_connect(const char *host, int port)
{
    struct addrinfo *ai = net_resolve(host, port, false);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd == -1)
        die("socket");
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
        int saved = errno;
        close(fd);
        freeaddrinfo(ai);
        errno = saved;
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

ssize_t readn(int fd, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t got = recv(fd, (char *)buf + done, n - done, 0);
        if (got == -1) {
            if (errno == EINTR && !stop_requested)
                continue;
            return -1;
        }
        if (got == 0) /* the peer closed: return what we have */
            break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

ssize_t writen(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        /* A blocking write may still return early (a signal arrived after
         * part of the data went out): keep going from where it stopped.
         * write() works on any fd; on a socket it is send() without flags. */
        ssize_t put = write(fd, (const char *)buf + done, n - done);
        if (put == -1) {
            if (errno == EINTR && !stop_requested)
                continue;
            return -1;
        }
        done += (size_t)put;
    }
    return (ssize_t)done;
}

const char *net_addr_str(const struct sockaddr *sa, char *out)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, ADDR_STR_LEN, "%s:%d", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, ADDR_STR_LEN, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, ADDR_STR_LEN, "(family %d)", sa->sa_family);
    }
    return out;
}

/* getsockname() or getpeername(): same signature, same formatting. */
static const char *socket_addr_str(int fd, char *out,
                                   int (*get)(int, struct sockaddr *, socklen_t *))
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (get(fd, (struct sockaddr *)&ss, &len) == -1) {
        snprintf(out, ADDR_STR_LEN, "?");
        return out;
    }
    return net_addr_str((struct sockaddr *)&ss, out);
}

const char *net_local_str(int fd, char *out)
{
    return socket_addr_str(fd, out, getsockname);
}

const char *net_peer_str(int fd, char *out)
{
    return socket_addr_str(fd, out, getpeername);
}

bool net_wait_peer_done(int fd, int timeout_ms)
{
    /* POLLRDHUP is reported once the peer's FIN has arrived. TCP delivers in
     * order, so by then every byte the peer sent is in our receive buffer. */
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n == -1 && errno == EINTR && !stop_requested)
            continue;
        return n == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
    }
}

void fput_escaped(FILE *out, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\\': fputs("\\\\", out); break;
        case '"': fputs("\\\"", out); break;
        default:
            if (p[i] >= 0x20 && p[i] < 0x7f)
                fputc(p[i], out);
            else
                fprintf(out, "\\x%02x", p[i]);
        }
    }
    fputc('"', out);
}
