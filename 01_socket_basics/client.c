/* client.c -- a tiny netcat in blocking style: stdin to the socket, the socket to stdout
 *
 * Blocking I/O can wait for one thing at a time, so two directions need two
 * threads: this is the thread-per-connection model in miniature. Lesson 3
 * replaces the second thread with poll().
 *
 * --send-first BYTES turns it into the single-threaded client of the
 * deadlock experiment: send everything, only then read the echo.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_CHUNK_BYTES       65536
#define PROGRESS_EVERY_BYTES (1 << 20)
#define MAX_SEND_FIRST_BYTES (1L << 40)

struct config {
    const char *host;
    int port;
    long long send_first_bytes; /* 0: normal netcat mode */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: client [--host ADDR] [--port N] [--send-first BYTES] [-v]\n"
            "Connects to an echo server, copies stdin to the socket and the socket to stdout.\n"
            "At end of stdin it half-closes (shutdown SHUT_WR) and prints what is still coming.\n"
            "  --host ADDR          server address (default 127.0.0.1)\n"
            "  --port N             server port (default 9000)\n"
            "  --send-first BYTES   single-threaded: send BYTES bytes, only then read the echo\n"
            "                       (the deadlock experiment; prints progress on stderr)\n"
            "  -v, --verbose        print every send and recv\n");
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"send-first", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "H:p:s:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
        case 's':
            cfg->send_first_bytes = parse_number("--send-first", optarg, 1, MAX_SEND_FIRST_BYTES);
            break;
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

int main(int argc, char **argv)
{
    struct config cfg = {.host = "127.0.0.1", .port = 9000};
    prog_name = "client";
    parse_args(argc, argv, &cfg);
    ignore_sigpipe();

    int fd = net_connect(cfg.host, cfg.port);
    if (fd == -1)
        die_msg("connect to %s port %d: %s", cfg.host, cfg.port, strerror(errno));
    char local[ADDR_STR_LEN], peer[ADDR_STR_LEN];
    trace("connected fd=%d %s -> %s", fd, net_local_str(fd, local), net_peer_str(fd, peer));

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
