/* client.c -- sends messages, reads the replies as messages: framing from the client's side
 *
 * Lesson 5: the client speaks the server's framing (the lesson protocol by
 * default). It sends its messages (one write each, or all in ONE write with
 * --one-write), then decodes the replies with the same decoding loop as the
 * server, checks that each one is the message it sent, and prints them.
 * --naive does what beginners do instead: every recv() is "a message".
 * The connection is still made by lesson 2's non-blocking connect.
 */
#include "buffer.h"
#include "connect.h"
#include "frame.h"
#include "lz4.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS   10000
#define FIRST_RETRY_DELAY_MS 100  /* doubled after every failed attempt... */
#define MAX_RETRY_DELAY_MS   2000 /* ...up to this */
#define MAX_RETRIES          100
#define MAX_TIMEOUT_MS       3600000
#define MAX_MESSAGES         100000
#define QUIET_MS             2000 /* give up waiting after this much silence */
#define SHOW_BYTES           60   /* print at most this much of a message */

enum pattern { PATTERN_TEXT, PATTERN_RANDOM, PATTERN_REPEAT };

struct config {
    const char *host;
    int port;
    int timeout_ms;
    int retries;
    enum connect_wait wait;
    bool self_connect;
    bool connect_only;
    struct frame_rules rules;
    bool compress, naive, one_write, quiet;
    bool split, pingpong, nodelay; /* the Nagle experiment */
    long expect;                   /* >= 0: receive this many messages, whatever they are */
    long pause_ms;                 /* read nothing during the first pause_ms (a flood) */
    long repeat;
    long body_bytes; /* > 0: generate one message of this size */
    enum pattern pattern;
    unsigned long seed;
};

struct message {
    uint8_t *body;
    size_t len;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: client [--host ADDR] [--port N] [--framing protocol|length|lines|fixed]\n"
        "              [--record-bytes N] [--max-line N] [--compress] [--one-write]\n"
        "              [--repeat N] [--body-bytes N [--pattern text|random|repeat] [--seed S]]\n"
        "              [--naive] [--quiet] [--timeout MS] [--retry N] [--connect-only] [-v]\n"
        "              [MESSAGE...]\n"
        "Sends each MESSAGE (and/or one generated body) as one message, --repeat times,\n"
        "reads the echo as messages and checks every reply. Exit 0 if all came back intact.\n"
        "  --framing F          protocol (default), length, lines or fixed, as the server\n"
        "  --compress           send LZ4-compressed bodies (flags 1; protocol framing)\n"
        "  --one-write          put every message into ONE send() call (sticky packets)\n"
        "  --naive              print every recv() as if it were one message (the bug)\n"
        "  --body-bytes N       add one generated message of N bytes (up to 10 MiB)\n"
        "  --pattern P          its content: text (default), random, repeat (compressible)\n"
        "  --quiet              print only the summary line\n"
        "  --expect N           receive N messages whatever they are (a broadcast member);\n"
        "                       0: just send\n"
        "  --pingpong           send a message only after the previous reply arrived\n"
        "  --split              send header and body with two send() calls (write-write)\n"
        "  --nodelay            set TCP_NODELAY (turn Nagle's algorithm off)\n"
        "  --pause-ms MS        read nothing for the first MS milliseconds (keep sending)\n"
        "  --timeout MS, --retry N, --connect-only, --wait, --self-connect: as in lesson 2\n");
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"timeout", required_argument, NULL, 't'},
        {"retry", required_argument, NULL, 'r'},
        {"wait", required_argument, NULL, 'w'},
        {"self-connect", no_argument, NULL, 'S'},
        {"connect-only", no_argument, NULL, 'c'},
        {"framing", required_argument, NULL, 'f'},
        {"record-bytes", required_argument, NULL, 'R'},
        {"max-line", required_argument, NULL, 'L'},
        {"compress", no_argument, NULL, 'z'},
        {"naive", no_argument, NULL, 'n'},
        {"one-write", no_argument, NULL, '1'},
        {"quiet", no_argument, NULL, 'q'},
        {"split", no_argument, NULL, 'X'},
        {"pingpong", no_argument, NULL, 'G'},
        {"nodelay", no_argument, NULL, 'D'},
        {"expect", required_argument, NULL, 'E'},
        {"pause-ms", required_argument, NULL, 'U'},
        {"repeat", required_argument, NULL, 'k'},
        {"body-bytes", required_argument, NULL, 'b'},
        {"pattern", required_argument, NULL, 'P'},
        {"seed", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "H:p:t:r:w:Scf:R:L:zn1qXGDE:U:k:b:P:s:vh", opts, NULL)) !=
           -1) {
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
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
        case 'f': {
            int f = framing_parse(optarg);
            if (f < 0) {
                fprintf(stderr,
                        "client: --framing wants protocol, length, lines or fixed, not '%s'\n",
                        optarg);
                exit(2);
            }
            cfg->rules.framing = (enum framing)f;
            break;
        }
        case 'R':
            cfg->rules.record_bytes =
                (size_t)parse_number("--record-bytes", optarg, 1, MAX_BODY_BYTES);
            break;
        case 'L':
            cfg->rules.max_line_bytes =
                (size_t)parse_number("--max-line", optarg, 1, MAX_BODY_BYTES);
            break;
        case 'z': cfg->compress = true; break;
        case 'n': cfg->naive = true; break;
        case '1': cfg->one_write = true; break;
        case 'q': cfg->quiet = true; break;
        case 'X': cfg->split = true; break;
        case 'G': cfg->pingpong = true; break;
        case 'D': cfg->nodelay = true; break;
        case 'E': cfg->expect = parse_number("--expect", optarg, 0, MAX_MESSAGES); break;
        case 'U': cfg->pause_ms = parse_number("--pause-ms", optarg, 0, 3600000); break;
        case 'k': cfg->repeat = parse_number("--repeat", optarg, 1, MAX_MESSAGES); break;
        case 'b': cfg->body_bytes = parse_number("--body-bytes", optarg, 1, MAX_BODY_BYTES); break;
        case 'P':
            if (strcmp(optarg, "text") == 0) {
                cfg->pattern = PATTERN_TEXT;
            } else if (strcmp(optarg, "random") == 0) {
                cfg->pattern = PATTERN_RANDOM;
            } else if (strcmp(optarg, "repeat") == 0) {
                cfg->pattern = PATTERN_REPEAT;
            } else {
                fprintf(stderr, "client: --pattern wants text, random or repeat\n");
                exit(2);
            }
            break;
        case 's': cfg->seed = (unsigned long)parse_number("--seed", optarg, 0, 1L << 40); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (cfg->compress && cfg->rules.framing != FRAMING_PROTOCOL) {
        fprintf(stderr, "client: --compress needs --framing protocol\n");
        exit(2);
    }
}

/* A generated body: readable text, seeded random bytes (incompressible), or
 * one short pattern over and over (very compressible). */
static uint8_t *make_body(size_t n, enum pattern p, unsigned long seed)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog while bytes stream ";
    uint8_t *b = malloc(n);
    if (b == NULL)
        die("malloc");
    uint64_t x = seed * 2654435761u + 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        if (p == PATTERN_RANDOM) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64: same bytes everywhere */
            b[i] = (uint8_t)x;
        } else if (p == PATTERN_REPEAT) {
            b[i] = (uint8_t)("0123456789abcdef"[i % 16]);
        } else {
            b[i] = (uint8_t)words[i % (sizeof words - 1)];
        }
    }
    return b;
}

/* Encode one message into out in the configured framing. */
static size_t encode(const struct config *cfg, const struct message *m, struct buffer *out)
{
    const uint8_t *body = m->body;
    size_t len = m->len;
    uint8_t *packed = NULL;
    uint8_t flags = 0;
    if (cfg->compress) {
        packed = malloc(lz4_compress_bound(m->len));
        if (packed == NULL)
            die("malloc");
        len = lz4_compress(m->body, m->len, packed);
        body = packed;
        flags = FLAG_COMPRESSED;
        if (len > MAX_BODY_BYTES) {
            /* Incompressible data near 10 MiB grows past the protocol's
             * compress_size limit: send it raw instead. */
            trace("message of %zu bytes grows to %zu when compressed: sent raw", m->len, len);
            body = m->body;
            len = m->len;
            flags = 0;
        }
    }
    uint8_t prefix[FRAME_HEADER_BYTES];
    size_t prefix_len, suffix_len;
    const uint8_t *suffix;
    frame_wrap(&cfg->rules, len, flags, (uint32_t)m->len, prefix, &prefix_len, &suffix,
               &suffix_len);
    if (buf_append(out, prefix, prefix_len) != IO_OK || buf_append(out, body, len) != IO_OK ||
        buf_append(out, suffix, suffix_len) != IO_OK)
        die("buffer"); /* IO_ERROR (ENOMEM): out has no max_bytes, so it is never IO_FULL */
    free(packed);
    return prefix_len;
}

static void show(const char *what, int number, const uint8_t *p, size_t n, const char *note)
{
    printf("%s #%d: %zu byte%s%s: ", what, number, n, n == 1 ? "" : "s", note);
    fput_escaped(stdout, p, n < SHOW_BYTES ? n : SHOW_BYTES);
    printf("%s\n", n > SHOW_BYTES ? "..." : "");
}

/* Check one decoded reply against the message it answers. */
static bool check_reply(const struct config *cfg, const struct frame *f, const struct message *m,
                        int number)
{
    const uint8_t *body = f->body;
    uint8_t *plain = NULL;
    if (f->compressed) {
        plain = malloc(f->origin_size);
        if (plain == NULL)
            die("malloc");
        const char *err = lz4_decompress(f->body, f->body_len, plain, f->origin_size);
        if (err != NULL) {
            fprintf(stderr, "client: reply #%d: %s\n", number, err);
            free(plain);
            return false;
        }
        body = plain;
    }
    size_t len = f->compressed ? f->origin_size : f->body_len;
    bool same = len == m->len && memcmp(body, m->body, len) == 0;
    if (!cfg->quiet)
        show("reply", number, body, len, f->compressed ? " (LZ4)" : "");
    if (!same)
        fprintf(stderr, "client: reply #%d differs from message #%d\n", number, number);
    free(plain);
    return same;
}

static double now_ms(void);

/* Send everything, read and check every reply, with one poll loop: the
 * socket is non-blocking, so a big message never blocks us while the
 * server waits for us to read (lesson 1's deadlock). */
static int exchange(const struct config *cfg, int fd, struct message *msgs, size_t count)
{
    struct buffer out, in;
    buf_init(&out, 0);
    buf_init(&in, 0);
    /* Where each message's header ends and where the message ends, in out:
     * the points where a send() call may stop (--split, one per message). */
    size_t *head_end = malloc((count + 1) * sizeof *head_end);
    size_t *frame_end = malloc((count + 1) * sizeof *frame_end);
    if (head_end == NULL || frame_end == NULL)
        die("malloc");
    size_t expected_bytes = 0;
    for (size_t i = 0; i < count; i++) {
        size_t start = buf_readable(&out);
        head_end[i] = start + encode(cfg, &msgs[i], &out);
        frame_end[i] = buf_readable(&out);
    }
    size_t want_replies = cfg->expect >= 0 ? (size_t)cfg->expect : count;
    if (cfg->nodelay) {
        int on = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
            die("setsockopt(TCP_NODELAY)");
    }
    double started = now_ms();
    expected_bytes = cfg->compress ? 0 : buf_readable(&out); /* an echo is the same bytes */
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
        die("fcntl(O_NONBLOCK)");

    size_t sent = 0, total = buf_readable(&out), next_frame = 0, replies = 0, received = 0;
    int recvs = 0, rc = 0;
    bool done = want_replies == 0 && total == 0;
    while (!done) {
        bool may_send = buf_readable(&out) > 0;
        if (may_send && cfg->pingpong && !cfg->one_write) {
            size_t nf = next_frame;
            while (nf < count && frame_end[nf] <= sent)
                nf++;
            may_send = nf <= replies; /* the reply to the previous message is in */
        }
        /* --pause-ms: a client that does not read for a while (the flood). */
        double paused_left = (double)cfg->pause_ms - (now_ms() - started);
        bool may_read = paused_left <= 0;
        struct pollfd p = {.fd = fd, .events = (may_read ? POLLIN : 0) | (may_send ? POLLOUT : 0)};
        int n = poll(&p, 1, may_read ? QUIET_MS : (int)paused_left + 1);
        if (n == 0 && !may_read)
            continue;
        if (n == -1 && errno == EINTR)
            continue;
        if (n == 0) {
            fprintf(stderr, "client: nothing for %d ms after %zu of %zu replies\n", QUIET_MS,
                    replies, want_replies);
            rc = 1;
            break;
        }
        if (p.revents & POLLOUT) {
            /* --one-write: one send() for everything; else one per message
             * (--split: one for its header, one for its body). */
            size_t limit = buf_readable(&out);
            if (!cfg->one_write) {
                while (next_frame < count && frame_end[next_frame] <= sent)
                    next_frame++;
                size_t stop = frame_end[next_frame];
                if (cfg->split && head_end[next_frame] > sent)
                    stop = head_end[next_frame];
                limit = stop - sent;
            }
            if (cfg->pingpong && next_frame > replies)
                limit = 0; /* wait for the previous reply first */
            ssize_t w = limit == 0 ? 0 : send(fd, buf_peek(&out), limit, MSG_NOSIGNAL);
            if (w == -1 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "client: send: %s\n", strerror(errno));
                rc = 1;
                break;
            }
            if (w > 0) {
                trace("send fd=%d <- %zd bytes", fd, w);
                buf_consume(&out, (size_t)w);
                sent += (size_t)w;
                if (sent == total && cfg->expect < 0 && shutdown(fd, SHUT_WR) == -1)
                    die("shutdown");
                if (sent == total && want_replies == 0)
                    done = true; /* a broadcast sender expecting nothing back */
            }
        }
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        size_t r;
        enum io got = buf_read_fd(&in, fd, &r);
        if (got == IO_AGAIN)
            continue;
        if (got == IO_ERROR || got == IO_FULL) {
            fprintf(stderr, "client: recv: %s\n",
                    got == IO_FULL ? "input buffer full" : strerror(errno));
            rc = 1;
            break;
        }
        if (got == IO_CLOSED) {
            if (replies < count || (cfg->naive && received < expected_bytes)) {
                fprintf(stderr, "client: server closed the connection after %zu of %zu replies\n",
                        replies, want_replies);
                rc = 1;
            }
            break;
        }
        recvs++;
        trace("recv fd=%d -> %zu bytes", fd, r);
        if (cfg->naive) {
            /* THE BUG, on purpose: one recv() = one message. */
            show("naive recv", recvs, buf_peek(&in), buf_readable(&in), "");
            received += buf_readable(&in);
            buf_consume(&in, buf_readable(&in));
            if (received >= expected_bytes)
                done = true;
            continue;
        }
        /* The decoding loop, as in the server: peel off every whole reply. */
        for (;;) {
            struct frame f;
            const char *why = NULL;
            enum frame_status st =
                frame_decode(&cfg->rules, buf_peek(&in), buf_readable(&in), &f, &why);
            if (st == FRAME_NEED_MORE)
                break;
            if (st == FRAME_ERROR || replies == want_replies) {
                fprintf(stderr, "client: bad reply: %s\n",
                        why ? why : "more replies than messages");
                rc = 1;
                done = true;
                break;
            }
            if (cfg->expect >= 0) {
                if (!cfg->quiet) /* a broadcast member: anything goes, in order */
                    show("message", (int)replies + 1, f.body, f.body_len,
                         f.compressed ? " (LZ4, not shown decompressed)" : "");
            } else if (!check_reply(cfg, &f, &msgs[replies], (int)replies + 1)) {
                rc = 1;
            }
            replies++;
            buf_consume(&in, f.frame_len);
            if (replies == want_replies && (cfg->expect < 0 || sent == total))
                done = true;
        }
    }
    const char *msg_s = count == 1 ? "" : "s", *recv_s = recvs == 1 ? "" : "s";
    double took = now_ms() - started;
    if (rc == 0 && cfg->expect >= 0)
        printf("client: %zu message%s sent, %zu received (%.0f ms)\n", count, msg_s, replies, took);
    else if (rc == 0 && cfg->naive)
        printf("client: %zu message%s sent, %d recv() call%s returned them\n", count, msg_s, recvs,
               recv_s);
    else if (rc == 0)
        printf("client: %zu message%s sent, %zu repl%s, all intact (%d recv call%s, %.0f ms)\n",
               count, msg_s, replies, replies == 1 ? "y" : "ies", recvs, recv_s, took);
    free(head_end);
    free(frame_end);
    buf_free(&out);
    buf_free(&in);
    return rc;
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
    struct config cfg = {
        .host = "127.0.0.1",
        .port = 9000,
        .timeout_ms = DEFAULT_TIMEOUT_MS,
        .rules = {.framing = FRAMING_PROTOCOL, .record_bytes = 16, .max_line_bytes = 1024},
        .repeat = 1,
        .expect = -1,
        .seed = 1};
    prog_name = "client";
    parse_args(argc, argv, &cfg);
    ignore_sigpipe();

    size_t kinds = (size_t)(argc - optind) + (cfg.body_bytes > 0 ? 1 : 0);
    if (kinds == 0 && !cfg.connect_only && cfg.expect < 0) {
        fprintf(stderr, "client: nothing to send: give MESSAGEs or --body-bytes\n");
        return 2;
    }
    size_t count = kinds * (size_t)cfg.repeat;
    if (kinds == 0)
        kinds = 1; /* a listener sends nothing */
    if (count > MAX_MESSAGES) {
        fprintf(stderr, "client: at most %d messages\n", MAX_MESSAGES);
        return 2;
    }
    struct message *msgs = calloc(count ? count : 1, sizeof *msgs);
    uint8_t *generated =
        cfg.body_bytes > 0 ? make_body((size_t)cfg.body_bytes, cfg.pattern, cfg.seed) : NULL;
    if (msgs == NULL)
        die("calloc");
    for (size_t i = 0; i < count; i++) {
        size_t k = i % kinds;
        if (k < (size_t)(argc - optind)) {
            msgs[i].body = (uint8_t *)argv[optind + (int)k];
            msgs[i].len = strlen(argv[optind + (int)k]);
        } else {
            msgs[i].body = generated;
            msgs[i].len = (size_t)cfg.body_bytes;
        }
        if (cfg.rules.framing == FRAMING_FIXED && msgs[i].len != cfg.rules.record_bytes) {
            fprintf(stderr, "client: message %zu is %zu bytes; --framing fixed needs %zu\n", k + 1,
                    msgs[i].len, cfg.rules.record_bytes);
            return 2;
        }
    }

    int fd = connect_client(&cfg);
    int rc = 1;
    if (fd != -1) {
        rc = cfg.connect_only ? 0 : exchange(&cfg, fd, msgs, count);
        close(fd);
    }
    free(generated);
    free(msgs);
    return rc;
}
