/* closer.c -- the RST experiment: answer one request, then hang up in one of three ways
 *
 * A client asks "GET N\n" and the server sends N bytes back. The client
 * has already sent a second request behind the first (pipelining), which
 * this server never reads: it answers one request per connection. Then it
 * hangs up:
 *   --close close     close() with those bytes still unread. The kernel
 *                     sends RST instead of FIN and throws away what it had
 *                     not sent yet: the tail of the answer, still in our
 *                     send buffer. The client reads what had arrived, then
 *                     ECONNRESET. (Some systems also discard what the client
 *                     had received but not yet read.)
 *   --close linger0   SO_LINGER {on, 0 s}, then close(): RST on purpose,
 *                     even with nothing unread. Same loss.
 *   --close graceful  shutdown(SHUT_WR): FIN after the last byte; read and
 *                     discard until the client's FIN, then close(). Bounded
 *                     by --linger-ms. Nothing is lost.
 * Blocking sockets, one connection at a time: the lesson is the close.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_REQUEST_BYTES 64
#define MAX_REPLY_BYTES   (1L << 30)
#define DEFAULT_LINGER_MS 2000

enum close_mode { CLOSE_PLAIN, CLOSE_LINGER0, CLOSE_GRACEFUL };

struct config {
    const char *host;
    int port;
    enum close_mode mode;
    int linger_ms;
    bool once;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: closer [--close close|linger0|graceful] [--linger-ms MS] [--once]\n"
            "              [--host ADDR] [--port N] [-v]\n"
            "Answers one request \"GET N\\n\" per connection with N bytes, then hangs up:\n"
            "  --close close      close() with the client's next request unread: RST (default)\n"
            "  --close linger0    SO_LINGER {1, 0} and close(): RST on purpose\n"
            "  --close graceful   shutdown(SHUT_WR), read until the client's FIN, close()\n"
            "  --linger-ms MS     graceful: wait at most MS ms for the client's FIN (%d)\n"
            "  --once             serve one connection, then exit\n"
            "  --host ADDR, --port N   where to listen (default 127.0.0.1, 9000; 0: any port)\n"
            "  -v                 say what happens at each step\n",
            DEFAULT_LINGER_MS);
}

/* Byte i of every answer: a pattern with a period of 251 (a prime), so a
 * missing or repeated stretch shows up as a wrong byte. */
static uint8_t answer_byte(uint64_t i)
{
    return (uint8_t)('a' + i % 251 % 26);
}

/* Read the request line one byte at a time, so that nothing after the
 * '\n' is taken from the socket: the next request stays unread. */
static long read_request(int fd)
{
    char line[MAX_REQUEST_BYTES + 1];
    size_t n = 0;
    while (n < MAX_REQUEST_BYTES) {
        ssize_t got = recv(fd, line + n, 1, 0);
        if (got == -1 && errno == EINTR && !stop_requested)
            continue;
        if (got <= 0)
            return -1;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    char *end = NULL;
    long want = strncmp(line, "GET ", 4) == 0 ? strtol(line + 4, &end, 10) : -1;
    if (end == NULL || *end != '\0' || want < 0 || want > MAX_REPLY_BYTES)
        return -1;
    return want;
}

static int send_answer(int fd, long want)
{
    uint8_t chunk[65536];
    for (long sent = 0; sent < want;) {
        size_t n = want - sent < (long)sizeof chunk ? (size_t)(want - sent) : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = answer_byte((uint64_t)sent + i);
        if (writen(fd, chunk, n) != (ssize_t)n)
            return -1;
        sent += (long)n;
    }
    return 0;
}

static int unread_bytes(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == -1 ? -1 : n;
}

static void hang_up(const struct config *cfg, int fd)
{
    if (cfg->mode == CLOSE_GRACEFUL) {
        /* FIN after the last byte of the answer; the client reads it all,
         * then sees end of stream. Its pending request is read and dropped:
         * unread bytes at close() time are what turn a FIN into a RST. */
        if (shutdown(fd, SHUT_WR) == -1) {
            fprintf(stderr, "closer: shutdown: %s\n", strerror(errno));
            close(fd);
            return;
        }
        trace("shutdown(SHUT_WR): FIN sent; reading until the client's FIN");
        struct timeval limit = {.tv_sec = cfg->linger_ms / 1000,
                                .tv_usec = (cfg->linger_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        char discard[4096];
        long dropped = 0;
        ssize_t n;
        while ((n = recv(fd, discard, sizeof discard, 0)) > 0 ||
               (n == -1 && errno == EINTR && !stop_requested))
            dropped += n > 0 ? n : 0;
        if (n == 0)
            printf("closer: graceful: FIN sent, %ld unread bytes discarded, client's FIN "
                   "received, close()\n",
                   dropped);
        else
            printf("closer: graceful: no FIN from the client within %d ms (%s), close()\n",
                   cfg->linger_ms, strerror(errno));
    } else if (cfg->mode == CLOSE_LINGER0) {
        /* l_onoff 1, l_linger 0: close() discards the send queue and sends RST. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == -1)
            fprintf(stderr, "closer: setsockopt(SO_LINGER): %s\n", strerror(errno));
        printf("closer: linger0: SO_LINGER {1, 0}, close(): RST\n");
    } else {
        printf("closer: close() with %d unread bytes in the receive buffer: RST\n",
               unread_bytes(fd));
    }
    fflush(stdout);
    close(fd);
}

static void serve(const struct config *cfg, int fd)
{
    long want = read_request(fd);
    if (want < 0) {
        fprintf(stderr, "closer: bad or missing request (want \"GET N\\n\")\n");
        close(fd);
        return;
    }
    trace("request: GET %ld", want);
    if (send_answer(fd, want) == -1) {
        fprintf(stderr, "closer: send: %s\n", strerror(errno));
        close(fd);
        return;
    }
    /* send() returning means the kernel has the bytes, not that the client
     * has them: most of a big answer is still in the buffers here. */
    printf("closer: answered GET %ld: all %ld bytes handed to the kernel\n", want, want);
    hang_up(cfg, fd);
}

int main(int argc, char **argv)
{
    struct config cfg = {
        .host = "127.0.0.1", .port = 9000, .mode = CLOSE_PLAIN, .linger_ms = DEFAULT_LINGER_MS};
    static const struct option opts[] = {
        {"close", required_argument, NULL, 'c'}, {"linger-ms", required_argument, NULL, 'l'},
        {"once", no_argument, NULL, '1'},        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},  {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    prog_name = "closer";
    int opt;
    while ((opt = getopt_long(argc, argv, "c:l:1H:p:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            if (strcmp(optarg, "close") == 0) {
                cfg.mode = CLOSE_PLAIN;
            } else if (strcmp(optarg, "linger0") == 0) {
                cfg.mode = CLOSE_LINGER0;
            } else if (strcmp(optarg, "graceful") == 0) {
                cfg.mode = CLOSE_GRACEFUL;
            } else {
                fprintf(stderr, "closer: --close wants close, linger0 or graceful, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'l': cfg.linger_ms = (int)parse_number("--linger-ms", optarg, 1, 3600000); break;
        case '1': cfg.once = true; break;
        case 'H': cfg.host = optarg; break;
        case 'p': cfg.port = parse_port(optarg); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "closer: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    ignore_sigpipe();
    on_stop_signals();
    int listen_fd = net_listen(cfg.host, cfg.port, true);
    net_print_listening(listen_fd);
    while (!stop_requested) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        serve(&cfg, fd);
        if (cfg.once)
            break;
    }
    close(listen_fd);
    return 0;
}
