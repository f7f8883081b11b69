/* client.c -- a tiny netcat in blocking style: stdin to the socket, the socket to stdout
 *
 * Blocking I/O can wait for one thing at a time, so two directions need two
 * threads: this is the thread-per-connection model in miniature. Lesson 3
 * replaces the second thread with poll().
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
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
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

static atomic_bool writer_done; /* set by the writer thread when it returns */

/* The writer thread's way out when the connection broke under it: one
 * line, and the thread ends. Exiting here would race main's return. */
static void *writer_failed(const char *what)
{
    fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
    atomic_store(&writer_done, true);
    return NULL;
}

/* The second thread: standard input -> socket, then half-close. */
static void *stdin_to_socket(void *arg)
{
    int fd = *(int *)arg;
    char buf[IO_CHUNK_BYTES];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            die("read(stdin)");
        }
        if (n == 0)
            break;
        trace("send fd=%d <- %zd bytes", fd, n);
        /* Not die(): the exit status is main's to decide, from what the
         * reader saw. A send that fails because the server has gone would
         * otherwise race main's return, and the status would depend on
         * which thread got there first. */
        if (writen(fd, buf, (size_t)n) == -1)
            return writer_failed("send");
    }
    /* Say we are done BEFORE the FIN leaves: the server may answer it, and
     * the main thread see the end of the echo, before this thread runs on. */
    trace("stdin ended: shutdown(SHUT_WR) fd=%d", fd);
    atomic_store(&writer_done, true);
    /* "I have nothing more to say": FIN goes out after the queued bytes.
     * The server's recv() returns 0, it closes, and our reader sees 0 too. */
    if (shutdown(fd, SHUT_WR) == -1)
        return writer_failed("shutdown"); /* ENOTCONN: the server reset us */
    return NULL;
}

/* The main thread: socket -> standard output, until the server closes. */
static int socket_to_stdout(int fd)
{
    char buf[IO_CHUNK_BYTES];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "client: recv: %s\n", strerror(errno));
            return 1;
        }
        if (n == 0) {
            trace("recv fd=%d -> 0 bytes: server closed", fd);
            return 0;
        }
        trace("recv fd=%d -> %zd bytes", fd, n);
        if (writen(STDOUT_FILENO, buf, (size_t)n) == -1)
            die("write(stdout)");
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

    pthread_t writer;
    int rc = pthread_create(&writer, NULL, stdin_to_socket, &fd);
    if (rc != 0) {
        errno = rc;
        die("pthread_create");
    }
    /* The exit status comes from here alone: 0 if the server closed the
     * connection cleanly, 1 if it broke. What the writer met does not
     * change it (its error, if any, is one line on stderr). */
    rc = socket_to_stdout(fd);
    /* The classic problem of thread-per-connection: if the server closed
     * first, the writer thread may sit in read(stdin) forever. A signal
     * could interrupt that read (pthread_kill, handler without SA_RESTART),
     * but only if it lands while the thread is inside read(): one sent a
     * moment earlier is handled and the read then blocks anyway. Ending the
     * process is the honest way out: we wait for the writer only if it has
     * already finished, otherwise exit() takes it down with us. */
    if (atomic_load(&writer_done))
        pthread_join(writer, NULL);
    else if (rc == 0)
        trace("server closed first; not waiting for the stdin thread");
    close(fd);
    return rc;
}
