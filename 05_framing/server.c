/* server.c -- the epoll echo server of lesson 5: messages, not bytes
 *
 * Every socket is non-blocking, and one loop (loop_epoll.c) waits for
 * whichever is ready. Bytes from a client go into its input buffer; the
 * decoding loop takes whole messages out of it (frame.c), whatever the
 * reads cut them into, and echoes each one as one message. A compressed
 * request (LZ4 block) is answered compressed. A protocol error closes that
 * connection only, with one log line naming the peer and the reason.
 */
#include "lz4.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPTS_PER_TURN       64  /* then let the other connections have a turn */
#define ACCEPT_PAUSE_MS        100 /* when even the spare fd is gone */
#define MAX_CONNS_LIMIT        10000000
#define DEFAULT_RECORD_BYTES   16
#define DEFAULT_MAX_LINE_BYTES 1024
/* The input buffer holds at most one incomplete frame plus one read. */
#define MAX_INPUT_BYTES (FRAME_HEADER_BYTES + MAX_BODY_BYTES + 2 * 65536)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: server [--framing protocol|length|lines|fixed] [--record-bytes N]\n"
            "              [--max-line N] [--mode lt|et] [--oneshot] [--sndbuf BYTES]\n"
            "              [--host ADDR] [--port N] [--max-conns N] [-v]\n"
            "Echo server: every message that arrives is sent back as one message.\n"
            "  --framing protocol the lesson protocol: 25-byte header, raw or LZ4 body (default)\n"
            "  --framing length   a 4-byte big-endian length, then the body\n"
            "  --framing lines    lines ending in CRLF, at most --max-line bytes (default %d)\n"
            "  --framing fixed    records of exactly --record-bytes bytes (default %d)\n"
            "  --mode lt|et       level- (default) or edge-triggered epoll\n"
            "  --oneshot          EPOLLONESHOT: each event disables the fd until re-armed\n"
            "  --sndbuf BYTES     set SO_SNDBUF on every connection (small: partial sends)\n"
            "  --host ADDR        address to bind (default 127.0.0.1)\n"
            "  --port N           port (default 9000; 0 = let the kernel choose)\n"
            "  --max-conns N      close connections beyond N at once\n"
            "  -v, --verbose      print every event, read, frame and send\n"
            "Prints 'listening on HOST:PORT' first. SIGINT/SIGTERM stop it (exit 0).\n",
            DEFAULT_MAX_LINE_BYTES, DEFAULT_RECORD_BYTES);
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"framing", required_argument, NULL, 'f'},
        {"record-bytes", required_argument, NULL, 'r'},
        {"max-line", required_argument, NULL, 'L'},
        {"mode", required_argument, NULL, 'M'},
        {"oneshot", no_argument, NULL, 'o'},
        {"sndbuf", required_argument, NULL, 'S'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"max-conns", required_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "f:r:L:M:oS:H:p:m:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': {
            int f = framing_parse(optarg);
            if (f < 0) {
                fprintf(stderr,
                        "server: --framing wants protocol, length, lines or fixed, not '%s'\n",
                        optarg);
                exit(2);
            }
            cfg->rules.framing = (enum framing)f;
            break;
        }
        case 'r':
            cfg->rules.record_bytes =
                (size_t)parse_number("--record-bytes", optarg, 1, MAX_BODY_BYTES);
            break;
        case 'L':
            cfg->rules.max_line_bytes =
                (size_t)parse_number("--max-line", optarg, 1, MAX_BODY_BYTES);
            break;
        case 'M':
            if (strcmp(optarg, "lt") == 0) {
                cfg->mode = MODE_LT;
            } else if (strcmp(optarg, "et") == 0) {
                cfg->mode = MODE_ET;
            } else {
                fprintf(stderr, "server: --mode wants lt or et, not '%s'\n", optarg);
                exit(2);
            }
            break;
        case 'o': cfg->oneshot = true; break;
        case 'S': cfg->sndbuf_bytes = (int)parse_number("--sndbuf", optarg, 1, 1 << 24); break;
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
        case 'm': cfg->max_conns = parse_number("--max-conns", optarg, 1, MAX_CONNS_LIMIT); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "server: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
}

/* ---- the connection table: conns[fd] ---- */

static void table_put(struct server *s, struct conn *c)
{
    if (c->fd >= s->conns_cap) {
        int cap = s->conns_cap == 0 ? 64 : s->conns_cap;
        while (cap <= c->fd)
            cap *= 2;
        struct conn **grown = realloc(s->conns, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            die("realloc");
        memset(grown + s->conns_cap, 0, (size_t)(cap - s->conns_cap) * sizeof *grown);
        s->conns = grown;
        s->conns_cap = cap;
    }
    s->conns[c->fd] = c;
    if (c->fd > s->max_fd)
        s->max_fd = c->fd;
    s->nconns++;
}

static void table_remove(struct server *s, int fd)
{
    s->conns[fd] = NULL;
    s->nconns--;
    while (s->max_fd >= 0 && s->conns[s->max_fd] == NULL)
        s->max_fd--;
}

void conn_close(struct server *s, struct conn *c, const char *why)
{
    trace("close fd=%d (%s)", c->fd, why);
    table_remove(s, c->fd);
    if (close(c->fd) == -1)
        fprintf(stderr, "server: %s: close: %s\n", c->peer, strerror(errno));
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

/* ---- accept ---- */

/* Stop watching the listener for ACCEPT_PAUSE_MS instead of spinning on an
 * accept() that keeps failing; server_accepting() resumes. */
static void pause_accept(struct server *s, const char *why)
{
    fprintf(stderr, "server: accept: %s, pausing accept for %d ms\n", why, ACCEPT_PAUSE_MS);
    s->accept_paused_until_ms = now_ms() + ACCEPT_PAUSE_MS;
}

/* Running out of file descriptors (EMFILE: this process, ENFILE: the whole
 * system) is the classic accept trap: the connection stays in the queue,
 * the listening socket stays readable, and a naive loop spins at 100% CPU.
 * The remedy: keep one fd in reserve. When accept() says EMFILE, give the
 * reserve back, accept the connection with it, close it at once, and take
 * the reserve again. The client learns it was refused: the end of the
 * stream if it has sent nothing yet, a reset if it has (see refuse()). */
static bool accept_with_spare(struct server *s)
{
    if (s->spare_fd == -1) {
        /* No reserve left (we could not reopen it). */
        pause_accept(s, "out of file descriptors");
        return false;
    }
    close(s->spare_fd);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_CLOEXEC);
    if (fd != -1) {
        char peer[ADDR_STR_LEN];
        fprintf(stderr, "server: %s: refused: out of file descriptors\n",
                net_addr_str((struct sockaddr *)&addr, peer));
        close(fd);
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* fd == -1: the queue was empty after all (accept4 reports EMFILE
     * before it looks at the queue). */
    return fd != -1;
}

static struct conn *conn_new(int fd, const struct sockaddr *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->want = WANT_READ;
    /* Buffers start empty and grow as bytes arrive: a header that claims
     * 10 MiB costs nothing until the 10 MiB are really here. */
    buf_init(&c->in, MAX_INPUT_BYTES);
    buf_init(&c->out, 0);
    net_addr_str(peer, c->peer);
    return c;
}

/* Refuse a connection we cannot or will not serve: close it at once and say
 * why in one line. Accepting it first is the only way to tell the client:
 * left in the queue, it would wait for an answer that never comes. What the
 * client sees depends on what it did: if it has sent nothing, close() sends
 * a FIN and it reads the end of the stream; if its bytes already sit unread
 * in our receive buffer, close() sends a reset instead, and its next recv()
 * fails with ECONNRESET ("Connection reset by peer"). */
static void refuse(int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
}

/* Errors accept() reports for one connection only: the client gave up while
 * queued (ECONNABORTED), a firewall rule refused it (EPERM), or, on Linux, a
 * network error already pending on the new socket (accept(2), "Error
 * handling"). The connection is gone; the ones behind it are not. */
static bool accept_error_is_one_connection(int err)
{
    switch (err) {
    case ECONNABORTED:
    case EPERM:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH: return true;
    default: return false;
    }
}

void server_accept(struct server *s, void (*new_cb)(struct server *, struct conn *, void *),
                   void *arg)
{
    /* Edge-triggered: the listener reports readable once for a whole burst
     * of connections; stopping before EAGAIN would strand the rest until
     * the next client arrives. Level-triggered: it reports again, so we
     * may stop early and let the other connections have their turn. */
    int max_accepts = s->cfg.mode == MODE_LT ? ACCEPTS_PER_TURN : INT_MAX;
    for (int i = 0; i < max_accepts; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        /* accept4: the new socket is born non-blocking and close-on-exec
         * (a plain accept() does not inherit O_NONBLOCK on Linux). */
        int fd =
            accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the queue is empty */
            if (errno == EINTR || accept_error_is_one_connection(errno))
                continue; /* a signal; one connection failed: the next may be fine */
            if (errno == EMFILE || errno == ENFILE) {
                if (!accept_with_spare(s))
                    return;
                continue;
            }
            /* Not about one connection (ENOBUFS, ENOMEM...): it would fail
             * again at once. Even with ET the connections left in the queue
             * are not stranded: when the pause ends, the loop registers the
             * listener again, and epoll_ctl reports what is already waiting. */
            pause_accept(s, strerror(errno));
            return;
        }
        char peer[ADDR_STR_LEN];
        net_addr_str((struct sockaddr *)&addr, peer);
        if (s->cfg.max_conns > 0 && s->nconns >= s->cfg.max_conns) {
            refuse(fd, peer, "--max-conns reached");
            continue;
        }
        /* A fixed SO_SNDBUF turns autotuning off for this socket (the
         * kernel doubles the value for its bookkeeping). */
        if (s->cfg.sndbuf_bytes > 0 &&
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s->cfg.sndbuf_bytes, sizeof(int)) == -1)
            fprintf(stderr, "server: %s: setsockopt(SO_SNDBUF): %s\n", peer, strerror(errno));
        struct conn *c = conn_new(fd, (struct sockaddr *)&addr);
        if (c == NULL) {
            refuse(fd, peer, "out of memory");
            continue;
        }
        table_put(s, c);
        trace("accept fd=%d from %s (%ld connections)", fd, c->peer, s->nconns);
        new_cb(s, c, arg);
    }
}

bool server_accepting(struct server *s)
{
    if (s->accept_paused_until_ms != 0 && now_ms() >= s->accept_paused_until_ms) {
        s->accept_paused_until_ms = 0;
        if (s->spare_fd == -1)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    return s->accept_paused_until_ms == 0;
}

int server_wait_ms(const struct server *s)
{
    if (s->accept_paused_until_ms == 0)
        return -1;
    long long left = s->accept_paused_until_ms - now_ms();
    return left < 0 ? 0 : (int)left;
}

/* ---- the handlers ---- */

/* Append one reply: prefix (header, length), body, suffix (CRLF). */
static int reply(struct server *s, struct conn *c, const uint8_t *body, size_t len, uint8_t flags,
                 uint32_t origin_size)
{
    uint8_t prefix[FRAME_HEADER_BYTES];
    size_t prefix_len, suffix_len;
    const uint8_t *suffix;
    frame_wrap(&s->cfg.rules, len, flags, origin_size, prefix, &prefix_len, &suffix, &suffix_len);
    if (buf_append(&c->out, prefix, prefix_len) != IO_OK ||
        buf_append(&c->out, body, len) != IO_OK || buf_append(&c->out, suffix, suffix_len) != IO_OK)
        return -1; /* IO_ERROR: out has no max_bytes, so only memory can run out */
    return 0;
}

/* The echo service: send the message back. A compressed request is
 * decompressed (which checks it) and the answer compressed again by us. */
static const char *handle_message(struct server *s, struct conn *c, const struct frame *f)
{
    if (!f->compressed) {
        trace("frame complete fd=%d: %zu bytes", c->fd, f->body_len);
        return reply(s, c, f->body, f->body_len, 0, f->origin_size) == 0 ? NULL : "out of memory";
    }
    /* origin_size was validated (<= 10 MiB) before the body was waited for. */
    uint8_t *plain = malloc(f->origin_size);
    if (plain == NULL)
        return "out of memory";
    const char *err = lz4_decompress(f->body, f->body_len, plain, f->origin_size);
    if (err != NULL) {
        free(plain);
        return err;
    }
    trace("frame complete fd=%d: %zu bytes, LZ4 -> %u bytes", c->fd, f->body_len, f->origin_size);
    uint8_t *packed = malloc(lz4_compress_bound(f->origin_size));
    if (packed == NULL) {
        free(plain);
        return "out of memory";
    }
    size_t packed_len = lz4_compress(plain, f->origin_size, packed);
    int rc;
    if (packed_len <= MAX_BODY_BYTES) {
        rc = reply(s, c, packed, packed_len, FLAG_COMPRESSED, f->origin_size);
    } else {
        /* Incompressible data near 10 MiB grows past the limit when we
         * compress it: send back the client's own block instead (valid, and
         * within the limit, since we just checked it). */
        rc = reply(s, c, f->body, f->body_len, FLAG_COMPRESSED, f->origin_size);
    }
    free(packed);
    free(plain);
    return rc == 0 ? NULL : "out of memory";
}

/* The decoding loop: peek, validate, wait for the whole frame, handle,
 * consume, repeat. Without the loop, a read holding several frames (sticky
 * packets) would answer only the first. Returns false on a protocol error. */
static bool decode_all(struct server *s, struct conn *c)
{
    for (;;) {
        struct frame f;
        const char *why = NULL;
        enum frame_status st =
            frame_decode(&s->cfg.rules, buf_peek(&c->in), buf_readable(&c->in), &f, &why);
        if (st == FRAME_NEED_MORE)
            return true; /* a half frame (or nothing): wait for more bytes */
        if (st == FRAME_OK)
            why = handle_message(s, c, &f);
        if (why != NULL) {
            char got[96];
            frame_describe(&f, buf_peek(&c->in), got, sizeof got);
            fprintf(stderr, "server: %s: protocol error: %s%s\n", c->peer, why, got);
            return false;
        }
        buf_consume(&c->in, f.frame_len);
    }
}

/* Send what is queued. Returns WANT_READ when all of it went out. */
static enum want conn_flush(struct conn *c)
{
    while (buf_readable(&c->out) > 0) {
        size_t n;
        enum io r = buf_send_fd(&c->out, c->fd, &n);
        if (r == IO_AGAIN) {
            trace("send fd=%d: EAGAIN with %zu bytes queued: wait for writable", c->fd,
                  buf_readable(&c->out));
            return WANT_WRITE;
        }
        if (r == IO_ERROR) {
            fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
            return WANT_CLOSE;
        }
        trace("send fd=%d <- %zu bytes", c->fd, n);
    }
    return WANT_READ;
}

/* One read into the input buffer. *drained is set when recv said EAGAIN. */
static enum want read_once(struct conn *c, bool *drained)
{
    size_t n;
    enum io r = buf_read_fd(&c->in, c->fd, &n);
    if (r == IO_AGAIN) {
        *drained = true;
        return WANT_READ;
    }
    if (r == IO_ERROR || r == IO_FULL) {
        fprintf(stderr, "server: %s: recv: %s\n", c->peer,
                r == IO_FULL ? "input buffer full" : strerror(errno));
        return WANT_CLOSE;
    }
    if (r == IO_CLOSED) {
        trace("recv fd=%d -> 0 bytes: %s closed its side", c->fd, c->peer);
        if (buf_readable(&c->in) > 0)
            fprintf(stderr, "server: %s: closed in the middle of a message (%zu bytes left)\n",
                    c->peer, buf_readable(&c->in));
        return WANT_CLOSE;
    }
    trace("recv fd=%d -> %zu bytes (%zu buffered)", c->fd, n, buf_readable(&c->in));
    return WANT_READ;
}

enum want conn_on_readable(struct server *s, struct conn *c)
{
    /* lt: one read per event, epoll reports the socket again while data is
     * left. et: read until EAGAIN, or ET never wakes us again for this data. */
    for (;;) {
        bool drained = false;
        enum want next = read_once(c, &drained);
        if (next == WANT_CLOSE)
            return next;
        if (!decode_all(s, c))
            return WANT_CLOSE;
        next = conn_flush(c);
        /* WANT_WRITE: the client does not read its replies; stop reading it
         * until they are gone (the loop re-arms EPOLLIN, which reports data
         * that is already waiting, even with ET). */
        if (next != WANT_READ || drained || s->cfg.mode == MODE_LT)
            return next;
    }
}

enum want conn_on_writable(struct conn *c)
{
    return conn_flush(c);
}

/* ---- setup ---- */

/* Lesson 1's loop checks stop_requested, then blocks: a signal that lands
 * between the two is noticed only at the next event, maybe never. The fix:
 * keep SIGINT and SIGTERM blocked (pending, not lost) everywhere but inside
 * the wait, and let the wait call unblock them for its duration only:
 * epoll_pwait() swaps in *wait_mask atomically, so a pending signal
 * interrupts the wait at once (EINTR) and the loop sees the flag. */
static void block_stop_signals(sigset_t *wait_mask)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop, wait_mask) == -1)
        die("sigprocmask");
    /* wait_mask: the mask we had, with the stop signals surely unblocked */
    sigdelset(wait_mask, SIGINT);
    sigdelset(wait_mask, SIGTERM);
}

int main(int argc, char **argv)
{
    static struct server s;
    s.cfg = (struct config){.host = "127.0.0.1",
                            .port = 9000,
                            .mode = MODE_LT,
                            .rules = {.framing = FRAMING_PROTOCOL,
                                      .record_bytes = DEFAULT_RECORD_BYTES,
                                      .max_line_bytes = DEFAULT_MAX_LINE_BYTES}};
    prog_name = "server";
    parse_args(argc, argv, &s.cfg);
    ignore_sigpipe();
    on_stop_signals();
    block_stop_signals(&s.wait_mask);

    s.listen_fd = net_listen(s.cfg.host, s.cfg.port, true);
    /* A non-blocking listener: accept() in server_accept() stops at EAGAIN
     * instead of blocking when the queue is empty (another process, or a
     * client that gave up, may have emptied it since epoll said so). */
    int flags = fcntl(s.listen_fd, F_GETFL);
    if (flags == -1 || fcntl(s.listen_fd, F_SETFL, flags | O_NONBLOCK) == -1)
        die("fcntl(O_NONBLOCK)");
    s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (s.spare_fd == -1)
        die("open(/dev/null)");
    s.max_fd = -1;
    net_print_listening(s.listen_fd);

    loop_epoll(&s);

    fprintf(stderr, "server: stopping (%ld connections open)\n", s.nconns);
    for (int fd = s.max_fd; fd >= 0; fd--)
        if (s.conns[fd] != NULL)
            conn_close(&s, s.conns[fd], "server stopping");
    free(s.conns);
    close(s.spare_fd);
    close(s.listen_fd);
    close(s.epfd);
    return 0;
}
