/* sink.c -- a server that reads everything and answers nothing: the one-way ceiling */
//
// An echo server does two things per byte: read it and send it back. This one only reads, as
// fast as one thread and epoll allow, so `loadgen --mode oneway --no-replies` against it shows
// how fast bytes can flow into a process on this machine -- the ceiling any server's input
// path is measured against.
//
// It accepts any number of connections, reads each into one 256 KiB buffer until EAGAIN and
// throws the bytes away. On SIGINT or SIGTERM it prints
//   sink: received B bytes on N connections
// on stdout and exits 0. A failure on one connection closes that connection, never the sink.
// Exit status: 0 stopped by a signal, 1 a setup failure, 2 bad usage.

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "toolkit.h"

#define DEFAULT_HOST    "127.0.0.1"
#define MAX_PORT        65535u
#define READ_BYTES      (256u * 1024)
#define EVENTS_PER_WAIT 256
#define ACCEPT_PAUSE_MS 100 // out of descriptors: let some connections close first
#define PEER_TEXT_BYTES (NI_MAXHOST + NI_MAXSERV + 2)

struct options {
    const char *host;
    uint64_t port;
    bool verbose;
};

// Every open connection is on the sink's list, so that all can be freed at the end.
struct sink_conn {
    struct sink_conn *prev, *next;
    int fd;
    uint64_t bytes;
    char peer[PEER_TEXT_BYTES];
};

struct sink {
    const struct options *opt;
    int epfd, listen_fd;
    bool listening; // false during a pause after EMFILE
    int64_t resume_ms;
    uint64_t bytes, conns;
    uint8_t *buf;
    struct sink_conn *open; // the list of open connections
};

static void on_signal(int sig)
{
    (void)sig; // only there to interrupt epoll_pwait()
}

static void addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t size)
{
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if (getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(out, size, "?");
    else
        snprintf(out, size, "%s:%s", host, port);
}

// Setup: bind, listen, print the address. Returns the listening fd, or -1 after one line.
static int sink_listen(const struct options *opt)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *list = NULL;
    char service[16], text[PEER_TEXT_BYTES];
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    int one = 1;

    snprintf(service, sizeof service, "%llu", (unsigned long long)opt->port);
    int rc = getaddrinfo(opt->host, service, &hints, &list);
    if (rc != 0) {
        log_line("%s: %s", opt->host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int fd = socket(list->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const char *step = "socket";
    if (fd >= 0 &&
        (step = "setsockopt SO_REUSEADDR",
         setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0) &&
        (step = "bind", bind(fd, list->ai_addr, list->ai_addrlen) == 0) &&
        (step = "listen", listen(fd, SOMAXCONN) == 0) &&
        (step = "getsockname", getsockname(fd, (struct sockaddr *)&bound, &len) == 0)) {
        freeaddrinfo(list);
        addr_text((struct sockaddr *)&bound, len, text, sizeof text);
        printf("listening on %s\n", text);
        fflush(stdout);
        return fd;
    }
    log_line("%s: %s", step, strerror(errno));
    freeaddrinfo(list);
    if (fd >= 0)
        close(fd);
    return -1;
}

static void conn_close(struct sink *s, struct sink_conn *c, const char *why)
{
    if (s->opt->verbose)
        log_line("%s: closed after %llu bytes (%s)", c->peer, (unsigned long long)c->bytes, why);
    close(c->fd); // also takes it out of the epoll set
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->open = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

// Take every connection waiting in the queue.
static void sink_accept(struct sink *s)
{
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd =
            accept4(s->listen_fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            log_line("accept: %s", strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                // the queue stays readable: stop watching it a moment instead of spinning
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
                s->listening = false;
                s->resume_ms = clock_ms() + ACCEPT_PAUSE_MS;
            }
            return;
        }
        struct sink_conn *c = calloc(1, sizeof *c);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (c == NULL || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
            log_line("%s for a new connection", c == NULL ? "out of memory" : "epoll_ctl failed");
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->next = s->open;
        if (s->open != NULL)
            s->open->prev = c;
        s->open = c;
        addr_text((struct sockaddr *)&peer, len, c->peer, sizeof c->peer);
        s->conns++;
        if (s->opt->verbose)
            log_line("%s: accepted", c->peer);
    }
}

// Read until EAGAIN (level-triggered: stopping early would only cost another wake-up).
static void sink_read(struct sink *s, struct sink_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, s->buf, READ_BYTES, 0);
        if (n > 0) {
            c->bytes += (uint64_t)n;
            s->bytes += (uint64_t)n;
            continue;
        }
        if (n == 0) {
            conn_close(s, c, "end of stream");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        log_line("%s: recv: %s", c->peer, strerror(errno));
        conn_close(s, c, strerror(errno));
        return;
    }
}

static void options_usage(FILE *out)
{
    fprintf(out,
            "usage: sink [--host H] [--port N] [-v]\n"
            "Accepts any number of connections and reads and discards everything they send.\n"
            "  --host H        address to bind (default %s)\n"
            "  --port N        port (default 0: the kernel chooses)\n"
            "  -v, --verbose   one line per accept and close\n"
            "Prints 'listening on HOST:PORT' first; on SIGINT or SIGTERM prints\n"
            "'sink: received B bytes on N connections' and exits 0.\n",
            DEFAULT_HOST);
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":H:p:vh", long_options, NULL)) != -1) {
        switch (c) {
        case 'H': opt->host = optarg; break;
        case 'p':
            if (options_number("--port", optarg, 0, MAX_PORT, &opt->port) < 0)
                return 2;
            break;
        case 'v': opt->verbose = true; break;
        case 'h': options_usage(stdout); return 0;
        case ':': log_line("option '%s' needs a value (try --help)", argv[optind - 1]); return 2;
        default: log_line("bad option '%s' (try --help)", argv[optind - 1]); return 2;
        }
    }
    if (optind < argc) {
        log_line("unexpected argument '%s' (try --help)", argv[optind]);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct options opt = {.host = DEFAULT_HOST};
    struct sink s = {.opt = &opt, .epfd = -1, .listening = true};
    struct epoll_event events[EVENTS_PER_WAIT];
    struct sigaction sa = {.sa_handler = on_signal};
    sigset_t stop_signals, run_mask;

    tool_name = "sink";
    int rc = options_parse(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    raise_fd_limit();
    // SIGINT and SIGTERM are blocked except inside epoll_pwait(): a signal that comes between
    // two waits is held until the next one, which then returns EINTR at once.
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop_signals, &run_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    s.buf = malloc(READ_BYTES);
    s.listen_fd = sink_listen(&opt);
    s.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (s.listen_fd < 0) {
        free(s.buf);
        return 1;
    }
    if (s.buf == NULL || s.epfd < 0 || epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.listen_fd, &lev) == -1) {
        log_line("setup: %s", s.buf == NULL ? "out of memory" : strerror(errno));
        free(s.buf);
        return 1;
    }
    for (;;) {
        int timeout = -1;
        if (!s.listening) {
            int64_t left = s.resume_ms - clock_ms();
            if (left <= 0 && epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.listen_fd, &lev) == 0)
                s.listening = true;
            else
                timeout = left > 0 ? (int)left : ACCEPT_PAUSE_MS;
        }
        int n = epoll_pwait(s.epfd, events, EVENTS_PER_WAIT, timeout, &run_mask);
        if (n == -1 && errno == EINTR)
            break; // SIGINT or SIGTERM: the only signals we catch
        if (n == -1) {
            log_line("epoll_wait: %s", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                sink_accept(&s);
            else
                sink_read(&s, events[i].data.ptr);
        }
    }
    printf("sink: received %llu bytes on %llu connections\n", (unsigned long long)s.bytes,
           (unsigned long long)s.conns);
    while (s.open != NULL)
        conn_close(&s, s.open, "sink stopping");
    close(s.listen_fd);
    close(s.epfd);
    free(s.buf);
    return 0;
}
