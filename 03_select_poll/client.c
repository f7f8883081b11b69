/* client.c -- a tiny netcat: stdin to the socket, the socket to stdout, in one thread
 *
 * Lessons 1 and 2 needed two threads, one per direction, because a blocking
 * call waits for one thing at a time. Lesson 3: poll() waits for stdin, the
 * socket and stdout together, so one thread does both directions and never
 * gets stuck in either. The socket is non-blocking. stdout is not (O_NONBLOCK
 * belongs to the open file, which the shell that started us shares), so it
 * is written only when poll() says it has room, at most PIPE_BUF bytes at a
 * time: that much a pipe with room takes without blocking.
 *
 * Lesson 2: the connection is made with a non-blocking connect and a
 * timeout (connect.c); the result is reported in one line, and failed
 * attempts can be retried with a growing delay (--retry).
 *
 * --send-first BYTES turns it into the single-threaded client of the
 * deadlock experiment: send everything, only then read the echo.
 */
#include "connect.h"
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IO_CHUNK_BYTES       65536
#define PROGRESS_EVERY_BYTES (1 << 20)
#define MAX_SEND_FIRST_BYTES (1L << 40)
#define DEFAULT_TIMEOUT_MS   10000
#define FIRST_RETRY_DELAY_MS 100  /* doubled after every failed attempt... */
#define MAX_RETRY_DELAY_MS   2000 /* ...up to this */
#define MAX_RETRIES          100
#define MAX_TIMEOUT_MS       3600000

struct config {
    const char *host;
    int port;
    long long send_first_bytes; /* 0: normal netcat mode */
    int timeout_ms;
    int retries;
    enum connect_wait wait;
    bool self_connect;
    bool connect_only;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: client [--host ADDR] [--port N] [--timeout MS] [--retry N] [--connect-only]\n"
            "              [--wait poll|select] [--self-connect] [--send-first BYTES] [-v]\n"
            "Connects to an echo server, copies stdin to the socket and the socket to stdout.\n"
            "At end of stdin it half-closes (shutdown SHUT_WR) and prints what is still coming.\n"
            "The connect is non-blocking; its result (connected, refused, timed out,\n"
            "self-connect, failed) and its duration are printed on stderr.\n"
            "  --host ADDR          server address (default 127.0.0.1)\n"
            "  --port N             server port (default 9000)\n"
            "  --timeout MS         give up connecting after MS milliseconds (default %d)\n"
            "  --retry N            after a failed attempt, retry up to N times, waiting\n"
            "                       %d ms, then twice as long each time (at most %d ms)\n"
            "  --connect-only       exit right after connecting (status 0 if connected)\n"
            "  --wait poll|select   how to wait for the connect to finish (default poll)\n"
            "  --self-connect       bind to the destination address first: the socket\n"
            "                       connects to itself (with --port 0, to a free port)\n"
            "  --send-first BYTES   single-threaded: send BYTES bytes, only then read the echo\n"
            "                       (the deadlock experiment; prints progress on stderr)\n"
            "  -v, --verbose        print every send and recv\n",
            DEFAULT_TIMEOUT_MS, FIRST_RETRY_DELAY_MS, MAX_RETRY_DELAY_MS);
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"send-first", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'},
        {"retry", required_argument, NULL, 'r'},
        {"wait", required_argument, NULL, 'w'},
        {"self-connect", no_argument, NULL, 'S'},
        {"connect-only", no_argument, NULL, 'c'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "H:p:s:t:r:w:Scvh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
        case 's':
            cfg->send_first_bytes = parse_number("--send-first", optarg, 1, MAX_SEND_FIRST_BYTES);
            break;
        case 't':
            cfg->timeout_ms = (int)parse_number("--timeout", optarg, 1, MAX_TIMEOUT_MS);
            break;
        case 'r': cfg->retries = (int)parse_number("--retry", optarg, 0, MAX_RETRIES); break;
        case 'w':
            if (strcmp(optarg, "poll") == 0) {
                cfg->wait = WAIT_POLL;
            } else if (strcmp(optarg, "select") == 0) {
                cfg->wait = WAIT_SELECT;
            } else {
                fprintf(stderr, "client: --wait wants poll or select\n");
                exit(2);
            }
            break;
        case 'S': cfg->self_connect = true; break;
        case 'c': cfg->connect_only = true; break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "client: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
}

/* Copy stdin to the socket and the socket to stdout until the server
 * closes. Returns the exit status. */
static int netcat(int fd)
{
    /* Non-blocking socket: a send() that cannot go on returns EAGAIN instead
     * of stopping the whole program (lesson 1's deadlock). */
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
        die("fcntl(O_NONBLOCK)");
    char in[IO_CHUNK_BYTES], out[IO_CHUNK_BYTES];
    size_t in_off = 0, in_len = 0;   /* read from stdin, not yet sent */
    size_t out_off = 0, out_len = 0; /* received, not yet written to stdout */
    bool stdin_open = true, half_closed = false;
    for (;;) {
        /* Read more input only when the last piece is sent, and more from
         * the socket only when the last piece is written: the server's pace
         * and our reader's pace limit how much we hold. */
        short sock_events = (out_len == 0 ? POLLIN : 0) | (in_len > 0 ? POLLOUT : 0);
        struct pollfd p[3] = {
            {.fd = stdin_open && in_len == 0 ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = sock_events != 0 ? fd : -1, .events = sock_events},
            {.fd = out_len > 0 ? STDOUT_FILENO : -1, .events = POLLOUT},
        };
        if (poll(p, 3, -1) == -1) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (out_len == 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(fd, out, sizeof out, 0);
            if (n == 0) {
                trace("recv fd=%d -> 0 bytes: server closed", fd);
                return 0; /* no thread to wait for, nothing held: we are done */
            }
            if (n > 0) {
                trace("recv fd=%d -> %zd bytes", fd, n);
                out_len = (size_t)n;
            } else if (errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "client: recv: %s\n", strerror(errno));
                return 1;
            }
        }
        if (p[2].revents != 0) { /* POLLOUT, or POLLERR: write() says which error */
            size_t step = out_len - out_off < PIPE_BUF ? out_len - out_off : PIPE_BUF;
            ssize_t n = write(STDOUT_FILENO, out + out_off, step);
            if (n == -1 && errno != EINTR && errno != EAGAIN)
                die("write(stdout)");
            if (n > 0)
                out_off += (size_t)n;
            if (out_off == out_len)
                out_off = out_len = 0;
        }
        if (p[0].revents & POLLNVAL) {
            stdin_open = false; /* stdin was not even open: treat it as empty */
        } else if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(STDIN_FILENO, in, sizeof in);
            if (n == -1 && errno != EINTR && errno != EAGAIN)
                die("read(stdin)");
            if (n == 0)
                stdin_open = false;
            if (n > 0) {
                in_off = 0;
                in_len = (size_t)n;
            }
        }
        while (in_off < in_len) { /* send what we can now; poll tells us when to go on */
            ssize_t n = send(fd, in + in_off, in_len - in_off, MSG_NOSIGNAL);
            if (n == -1) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                fprintf(stderr, "client: send: %s\n", strerror(errno));
                return 1;
            }
            trace("send fd=%d <- %zd bytes", fd, n);
            in_off += (size_t)n;
        }
        if (in_off == in_len)
            in_off = in_len = 0;
        if (!stdin_open && in_len == 0 && !half_closed) {
            /* All input is sent: FIN, and keep reading the echo. */
            trace("stdin ended: shutdown(SHUT_WR) fd=%d", fd);
            if (shutdown(fd, SHUT_WR) == -1)
                die("shutdown");
            half_closed = true;
        }
    }
}

/* The deadlock experiment. The server echoes every chunk as it arrives, but
 * we do not read until we have sent everything. Once the server's send
 * buffer and our receive buffer are full, the server blocks in send() and
 * stops reading; then its receive buffer and our send buffer fill, and we
 * block in send() too. Neither side will ever move again. */
static int send_then_read(int fd, long long total)
{
    char buf[IO_CHUNK_BYTES];
    memset(buf, 'x', sizeof buf);
    long long sent = 0, next_report = PROGRESS_EVERY_BYTES;
    while (sent < total) {
        size_t step = total - sent < IO_CHUNK_BYTES ? (size_t)(total - sent) : IO_CHUNK_BYTES;
        if (writen(fd, buf, step) == -1)
            die("send");
        sent += (long long)step;
        if (sent >= next_report || sent == total) {
            fprintf(stderr, "client: sent %lld of %lld bytes\n", sent, total);
            next_report += PROGRESS_EVERY_BYTES;
        }
    }
    fprintf(stderr, "client: everything sent, now reading the echo\n");
    if (shutdown(fd, SHUT_WR) == -1)
        die("shutdown");
    long long got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            die("recv");
        if (n == 0)
            break;
        got += n;
    }
    fprintf(stderr, "client: received %lld bytes back\n", got);
    return got == total ? 0 : 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* One result line per attempt, on stderr (stdout carries the echoed data). */
static void report(enum connect_result r, int err, const char *dest, const char *local, double ms)
{
    switch (r) {
    case CONNECT_OK: fprintf(stderr, "client: connected to %s in %.1f ms\n", dest, ms); break;
    case CONNECT_REFUSED: fprintf(stderr, "client: refused by %s after %.1f ms\n", dest, ms); break;
    case CONNECT_TIMED_OUT:
        fprintf(stderr, "client: timed out after %.1f ms connecting to %s\n", ms, dest);
        break;
    case CONNECT_SELF:
        fprintf(stderr, "client: self-connect: %s is connected to itself (after %.1f ms)\n", local,
                ms);
        break;
    case CONNECT_FAILED:
        fprintf(stderr, "client: failed to connect to %s after %.1f ms: %s\n", dest, ms,
                strerror(err));
        break;
    case CONNECT_FD_TOO_HIGH:
        fprintf(stderr,
                "client: cannot wait for the connect to %s with select(): the socket's fd is "
                "not below FD_SETSIZE (%d); --wait poll has no such limit\n",
                dest, FD_SETSIZE);
        break;
    }
}

/* Connect, trying 1 + cfg->retries times with a doubling delay in between.
 * Returns the connected fd or -1. */
static int connect_client(const struct config *cfg)
{
    struct addrinfo *ai = net_resolve(cfg->host, cfg->port, false);
    char dest[ADDR_STR_LEN], local[ADDR_STR_LEN] = "?";
    net_addr_str(ai->ai_addr, dest);
    struct connect_request req = {
        .addr = ai->ai_addr,
        .addr_len = ai->ai_addrlen,
        .timeout_ms = cfg->timeout_ms,
        .wait = cfg->wait,
        .bind_to_peer = cfg->self_connect,
        .local_out = local,
    };
    int fd = -1, delay_ms = FIRST_RETRY_DELAY_MS;
    for (int attempt = 1;; attempt++) {
        int err;
        double start = now_ms();
        enum connect_result r = connect_with_timeout(&req, &fd, &err);
        report(r, err, dest, local, now_ms() - start);
        if (r == CONNECT_OK || attempt > cfg->retries)
            break;
        /* Backing off: a server that is restarting, or a network that is
         * overloaded, is not helped by a client hammering it. */
        fprintf(stderr, "client: retry %d of %d in %d ms\n", attempt, cfg->retries, delay_ms);
        sleep_ms(delay_ms);
        delay_ms = delay_ms * 2 > MAX_RETRY_DELAY_MS ? MAX_RETRY_DELAY_MS : delay_ms * 2;
    }
    freeaddrinfo(ai);
    return fd;
}

int main(int argc, char **argv)
{
    struct config cfg = {.host = "127.0.0.1", .port = 9000, .timeout_ms = DEFAULT_TIMEOUT_MS};
    prog_name = "client";
    parse_args(argc, argv, &cfg);
    ignore_sigpipe();

    int fd = connect_client(&cfg);
    if (fd == -1)
        return 1;
    char local[ADDR_STR_LEN], peer[ADDR_STR_LEN];
    trace("connected fd=%d %s -> %s", fd, net_local_str(fd, local), net_peer_str(fd, peer));
    if (cfg.connect_only) {
        close(fd);
        return 0;
    }

    if (cfg.send_first_bytes > 0) {
        int rc = send_then_read(fd, cfg.send_first_bytes);
        close(fd);
        return rc;
    }

    int rc = netcat(fd);
    close(fd);
    return rc;
}
