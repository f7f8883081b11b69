/* server.c -- the server of lesson 6: echo or broadcast, with a real send path
 *
 * Every socket is non-blocking, and one loop (loop_epoll.c) waits for
 * whichever is ready. Bytes from a client go into its input buffer; the
 * decoding loop takes whole messages out of it (frame.c), whatever the
 * reads cut them into, and echoes each one as one message. A compressed
 * request (LZ4 block) is answered compressed. A protocol error closes that
 * connection only, with one log line naming the peer and the reason.
 *
 * Lesson 6: replies leave through send.c's send path (direct write, else a
 * send queue and EPOLLOUT), guarded by watermarks (backpressure), an output
 * cap and a stale-output check; --service broadcast makes a chat room.
 */
#include "lz4.h"
#include "server.h"
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPTS_PER_TURN     64  /* then let the other connections have a turn */
#define ACCEPT_PAUSE_MS      100 /* when even the spare fd is gone */
#define MAX_CONNS_LIMIT      10000000
#define DEFAULT_RECORD_BYTES 16
/* Watermarks, in bytes queued for one connection. High water 1 MiB: about
 * what a loopback socket's own send buffer holds, so a client that reads
 * at all never meets it; low water a quarter of it, so that once paused a
 * client must drain a good part before we read again (no flapping). */
#define DEFAULT_HIGH_WATER_BYTES (1u << 20)
#define DEFAULT_LOW_WATER_BYTES  (256u << 10)
#define DEFAULT_OUTPUT_CAP_BYTES (2u << 20)
#define DEFAULT_STALE_MS         3000
#define DEFAULT_STALE_CHECK_MS   1000
#define DEFAULT_MAX_LINE_BYTES   1024
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
            "              [--max-line N] [--mode lt|et] [--sndbuf BYTES]\n"
            "              [--host ADDR] [--port N] [--max-conns N] [-v]\n"
            "Echo server: every message that arrives is sent back as one message.\n"
            "  --framing protocol the lesson protocol: 25-byte header, raw or LZ4 body (default)\n"
            "  --framing length   a 4-byte big-endian length, then the body\n"
            "  --framing lines    lines ending in CRLF, at most --max-line bytes (default %d)\n"
            "  --framing fixed    records of exactly --record-bytes bytes (default %d)\n"
            "  --mode lt|et       level- (default) or edge-triggered epoll\n"
            "  --sndbuf BYTES     set SO_SNDBUF on every connection (small: partial sends)\n"
            "  --service S        echo (default): back to the sender; broadcast: to all others\n"
            "  --high-water B     stop reading a client with more than B bytes queued (%u)\n"
            "  --low-water B      read it again at B bytes queued or less (%u)\n"
            "  --output-cap B     close a client whose queue would pass B bytes (%u)\n"
            "  --stale-ms MS      close a client whose queue made no progress for MS ms (%d)\n"
            "  --stale-check-ms MS  how often to look for stale queues (%d)\n"
            "  --nodelay on|off   TCP_NODELAY (default on: no Nagle delay for replies)\n"
            "  --threads N        handle messages on N worker threads (echo; default 0)\n"
            "  --host ADDR        address to bind (default 127.0.0.1)\n"
            "  --port N           port (default 9000; 0 = let the kernel choose)\n"
            "  --max-conns N      close connections beyond N at once\n"
            "  -v, --verbose      print every event, read, frame and send\n"
            "Prints 'listening on HOST:PORT' first. SIGINT/SIGTERM stop it (exit 0).\n",
            DEFAULT_MAX_LINE_BYTES, DEFAULT_RECORD_BYTES, DEFAULT_HIGH_WATER_BYTES,
            DEFAULT_LOW_WATER_BYTES, DEFAULT_OUTPUT_CAP_BYTES, DEFAULT_STALE_MS,
            DEFAULT_STALE_CHECK_MS);
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"framing", required_argument, NULL, 'f'},
        {"record-bytes", required_argument, NULL, 'r'},
        {"max-line", required_argument, NULL, 'L'},
        {"mode", required_argument, NULL, 'M'},
        {"sndbuf", required_argument, NULL, 'S'},
        {"service", required_argument, NULL, 's'},
        {"high-water", required_argument, NULL, 'W'},
        {"low-water", required_argument, NULL, 'w'},
        {"output-cap", required_argument, NULL, 'C'},
        {"stale-ms", required_argument, NULL, 'T'},
        {"stale-check-ms", required_argument, NULL, 'K'},
        {"nodelay", required_argument, NULL, 'N'},
        {"threads", required_argument, NULL, 't'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"max-conns", required_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "f:r:L:M:S:s:W:w:C:T:K:N:t:H:p:m:vh", opts, NULL)) != -1) {
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
        case 's':
            if (strcmp(optarg, "echo") == 0) {
                cfg->service = SERVICE_ECHO;
            } else if (strcmp(optarg, "broadcast") == 0) {
                cfg->service = SERVICE_BROADCAST;
            } else {
                fprintf(stderr, "server: --service wants echo or broadcast, not '%s'\n", optarg);
                exit(2);
            }
            break;
        case 'W':
            cfg->high_water_bytes = (size_t)parse_number("--high-water", optarg, 1, 1L << 30);
            break;
        case 'w':
            cfg->low_water_bytes = (size_t)parse_number("--low-water", optarg, 0, 1L << 30);
            break;
        case 'C':
            cfg->output_cap_bytes = (size_t)parse_number("--output-cap", optarg, 1, 1L << 31);
            break;
        case 'T': cfg->stale_ms = (int)parse_number("--stale-ms", optarg, 1, 3600000); break;
        case 'K':
            cfg->stale_check_ms = (int)parse_number("--stale-check-ms", optarg, 1, 3600000);
            break;
        case 't': cfg->threads = (int)parse_number("--threads", optarg, 0, 64); break;
        case 'N':
            if (strcmp(optarg, "on") == 0 || strcmp(optarg, "off") == 0) {
                cfg->nodelay = strcmp(optarg, "on") == 0;
            } else {
                fprintf(stderr, "server: --nodelay wants on or off\n");
                exit(2);
            }
            break;
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
    if (cfg->threads > 0 && cfg->service != SERVICE_ECHO) {
        fprintf(stderr, "server: --threads works with --service echo only\n");
        exit(2);
    }
    if (cfg->low_water_bytes >= cfg->high_water_bytes) {
        fprintf(stderr, "server: --low-water must be below --high-water\n");
        exit(2);
    }
}

const char ERR_NO_MEMORY[] = "out of memory";
static const char *fail_alloc_sites; /* SERVER_FAIL_ALLOC, read once before any thread starts */

bool alloc_may_fail(const char *site)
{
    if (fail_alloc_sites == NULL)
        return false;
    size_t n = strlen(site);
    for (const char *p = strstr(fail_alloc_sites, site); p != NULL; p = strstr(p + 1, site))
        if ((p == fail_alloc_sites || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return true;
    return false;
}

/* ---- the connection table: conns[fd] ---- */

/* Make room for fd in conns[]. Out of memory refuses that one connection:
 * one client must never take the server down. */
static int table_reserve(struct server *s, int fd)
{
    if (fd < s->conns_cap)
        return 0;
    int cap = s->conns_cap == 0 ? 64 : s->conns_cap;
    while (cap <= fd)
        cap *= 2;
    struct conn **grown =
        alloc_may_fail("table") ? NULL : realloc(s->conns, (size_t)cap * sizeof *grown);
    if (grown == NULL)
        return -1;
    memset(grown + s->conns_cap, 0, (size_t)(cap - s->conns_cap) * sizeof *grown);
    s->conns = grown;
    s->conns_cap = cap;
    return 0;
}

static void table_put(struct server *s, struct conn *c)
{
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
    if (c->more_work) /* never leave a freed connection on s->more */
        for (struct conn **p = &s->more; *p != NULL; p = &(*p)->next_more)
            if (*p == c) {
                *p = c->next_more;
                break;
            }
    trace("close fd=%d (%s)", c->fd, why);
    table_remove(s, c->fd);
    if (close(c->fd) == -1)
        fprintf(stderr, "server: %s: close: %s\n", c->peer, strerror(errno));
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

/* ---- accept ---- */

/* Running out of file descriptors (EMFILE: this process, ENFILE: the whole
 * system) is the classic accept trap: the connection stays in the queue,
 * the listening socket stays readable, and a naive loop spins at 100% CPU.
 * The remedy: keep one fd in reserve. When accept() says EMFILE, give the
 * reserve back, accept the connection with it, close it at once (the
 * client sees a clean end of stream instead of waiting forever), and take
 * the reserve again. */
static bool accept_with_spare(struct server *s)
{
    if (s->spare_fd == -1) {
        /* No reserve left (we could not reopen it): stop watching the
         * listener for a moment instead of spinning. */
        fprintf(stderr, "server: accept: out of file descriptors, pausing accept for %d ms\n",
                ACCEPT_PAUSE_MS);
        s->accept_paused_until_ms = now_ms() + ACCEPT_PAUSE_MS;
        return false;
    }
    close(s->spare_fd);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept(s->listen_fd, (struct sockaddr *)&addr, &len);
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
    c->out_progress_ms = server_now_ms();
    /* Buffers start empty and grow as bytes arrive: a header that claims
     * 10 MiB costs nothing until the 10 MiB are really here. */
    buf_init(&c->in, MAX_INPUT_BYTES);
    buf_init(&c->out, 0);
    net_addr_str(peer, c->peer);
    return c;
}

/* Refuse a connection we cannot or will not serve: close it at once, so the
 * client sees the end of the stream, and say why in one line. */
static void refuse(int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
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
            if (errno == EINTR || errno == ECONNABORTED)
                continue; /* a signal; a client that gave up while queued */
            if (errno == EMFILE || errno == ENFILE) {
                if (!accept_with_spare(s))
                    return;
                continue;
            }
            fprintf(stderr, "server: accept: %s\n", strerror(errno));
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
        /* Nagle's algorithm holds a small write while an earlier one is
         * unacknowledged; with the peer's delayed ACK, a reply can wait
         * ~40 ms. A request/response server turns it off. */
        int on = 1;
        if (s->cfg.nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
            fprintf(stderr, "server: %s: setsockopt(TCP_NODELAY): %s\n", peer, strerror(errno));
        struct conn *c = table_reserve(s, fd) == 0 ? conn_new(fd, (struct sockaddr *)&addr) : NULL;
        if (c == NULL) {
            refuse(fd, peer, ERR_NO_MEMORY);
            continue;
        }
        c->gen = ++s->next_gen;
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
    /* The nearest deadline: the stale-output check, or the end of an
     * accept pause. epoll_wait's timeout is our timer. */
    long long deadline = s->next_stale_check_ms;
    if (s->accept_paused_until_ms != 0 && s->accept_paused_until_ms < deadline)
        deadline = s->accept_paused_until_ms;
    long long left = deadline - now_ms();
    return left < 0 ? 0 : (int)left;
}

/* ---- the handlers ---- */

/* Send one message in the configured framing to `to`. */
static bool deliver(struct server *s, struct conn *to, const uint8_t *body, size_t len,
                    uint8_t flags, uint32_t origin_size)
{
    uint8_t prefix[FRAME_HEADER_BYTES];
    size_t prefix_len, suffix_len;
    const uint8_t *suffix;
    frame_wrap(&s->cfg.rules, len, flags, origin_size, prefix, &prefix_len, &suffix, &suffix_len);
    return conn_send(s, to, prefix, prefix_len, body, len, suffix, suffix_len);
}

/* Broadcast: every other member gets the message as it came (it has been
 * validated). A slow member's queue grows with other people's messages:
 * this is where the output cap earns its keep. */
static void broadcast(struct server *s, struct conn *from, const struct frame *f)
{
    for (int fd = 0; fd <= s->max_fd; fd++) {
        struct conn *to = s->conns[fd];
        if (to == NULL || to == from || to->closing != NULL)
            continue;
        if (deliver(s, to, f->body, f->body_len, f->compressed ? FLAG_COMPRESSED : 0,
                    f->origin_size))
            conn_update(s, to); /* EPOLLOUT on, if its queue is no longer empty */
    }
}

/* The service. A compressed request is decompressed first (which checks it). */
static const char *handle_message(struct server *s, struct conn *c, const struct frame *f)
{
    uint8_t *plain = NULL;
    if (f->compressed && s->workers == NULL) {
        /* origin_size was validated (<= 10 MiB) before the body was waited for. */
        plain = alloc_may_fail("decompress") ? NULL : malloc(f->origin_size);
        if (plain == NULL)
            return ERR_NO_MEMORY;
        const char *err = lz4_decompress(f->body, f->body_len, plain, f->origin_size);
        if (err != NULL) {
            free(plain);
            return err;
        }
    }
    trace("frame complete fd=%d: %zu bytes%s", c->fd, f->body_len, f->compressed ? " (LZ4)" : "");
    if (s->workers != NULL) {
        /* A worker decompresses (which checks the body) and builds the reply. */
        return workers_submit(s->workers, c, f) == 0 ? NULL : ERR_NO_MEMORY;
    }
    if (s->cfg.service == SERVICE_BROADCAST) {
        broadcast(s, c, f);
    } else if (!f->compressed) {
        deliver(s, c, f->body, f->body_len, 0, f->origin_size);
    } else {
        uint8_t *packed = malloc(lz4_compress_bound(f->origin_size));
        if (packed == NULL) {
            free(plain);
            return ERR_NO_MEMORY;
        }
        size_t packed_len = lz4_compress(plain, f->origin_size, packed);
        if (packed_len <= MAX_BODY_BYTES)
            deliver(s, c, packed, packed_len, FLAG_COMPRESSED, f->origin_size);
        else /* incompressible near 10 MiB: the client's own block stays within the limit */
            deliver(s, c, f->body, f->body_len, FLAG_COMPRESSED, f->origin_size);
        free(packed);
    }
    free(plain);
    return NULL;
}

void conn_decode(struct server *s, struct conn *c)
{
    /* The decoding loop of lesson 5, with one more exit: once this
     * client's own queue passes the high-water mark, stop taking its
     * messages (they wait in c->in) until the queue drains. */
    while (c->closing == NULL &&
           buf_readable(&c->out) + c->inflight_bytes <= s->cfg.high_water_bytes) {
        struct frame f;
        const char *why = NULL;
        enum frame_status st =
            frame_decode(&s->cfg.rules, buf_peek(&c->in), buf_readable(&c->in), &f, &why);
        if (st == FRAME_NEED_MORE)
            return;
        if (st == FRAME_OK)
            why = handle_message(s, c, &f);
        if (why == ERR_NO_MEMORY) { /* our failure, not a broken protocol */
            fprintf(stderr, "server: %s: closed: out of memory for a message\n", c->peer);
            conn_mark_closing(s, c, ERR_NO_MEMORY);
            return;
        }
        if (why != NULL) {
            fprintf(stderr, "server: %s: protocol error: %s\n", c->peer, why);
            conn_mark_closing(s, c, "protocol error");
            return;
        }
        if (c->closing == NULL)
            buf_consume(&c->in, f.frame_len);
    }
}

void conn_on_readable(struct server *s, struct conn *c)
{
    /* Fairness: lt reads once per wake-up (epoll reports the socket again
     * if more is waiting), so one flooding client cannot starve the rest.
     * et reads until EAGAIN, READ_BUDGET_BYTES at most per wake-up (then
     * conn_want_more), and stops as soon as this client's queue (with what
     * its workers hold) passes the high-water mark: the rest waits in the
     * kernel, and the MOD that resumes reading reports it. */
    size_t budget = READ_BUDGET_BYTES;
    while (c->closing == NULL && !c->reading_paused && !c->read_eof &&
           buf_readable(&c->out) + c->inflight_bytes <= s->cfg.high_water_bytes) {
        if (budget == 0) { /* et: enough for this wake-up; come back after the others */
            conn_want_more(s, c);
            return;
        }
        size_t n;
        enum io r = buf_read_fd(&c->in, c->fd, &n);
        if (r == IO_AGAIN)
            return;
        if (r == IO_ERROR || r == IO_FULL) {
            fprintf(stderr, "server: %s: recv: %s\n", c->peer,
                    r == IO_FULL ? "input buffer full" : strerror(errno));
            conn_mark_closing(s, c, "recv failed");
            return;
        }
        if (r == IO_CLOSED) {
            trace("recv fd=%d -> 0 bytes: %s closed its side", c->fd, c->peer);
            if (buf_readable(&c->in) > 0)
                fprintf(stderr, "server: %s: closed in the middle of a message (%zu bytes left)\n",
                        c->peer, buf_readable(&c->in));
            c->read_eof = true; /* closed once everything queued for it is sent */
            return;
        }
        trace("recv fd=%d -> %zu bytes (%zu buffered)", c->fd, n, buf_readable(&c->in));
        budget -= (size_t)n < budget ? (size_t)n : budget;
        conn_decode(s, c);
        if (s->cfg.mode == MODE_LT)
            return;
    }
}

void conn_on_writable(struct server *s, struct conn *c)
{
    conn_flush(s, c);
}

/* ---- setup ---- */

int main(int argc, char **argv)
{
    static struct server s;
    s.cfg = (struct config){.host = "127.0.0.1",
                            .port = 9000,
                            .mode = MODE_LT,
                            .service = SERVICE_ECHO,
                            .nodelay = true,
                            .high_water_bytes = DEFAULT_HIGH_WATER_BYTES,
                            .low_water_bytes = DEFAULT_LOW_WATER_BYTES,
                            .output_cap_bytes = DEFAULT_OUTPUT_CAP_BYTES,
                            .stale_ms = DEFAULT_STALE_MS,
                            .stale_check_ms = DEFAULT_STALE_CHECK_MS,
                            .rules = {.framing = FRAMING_PROTOCOL,
                                      .record_bytes = DEFAULT_RECORD_BYTES,
                                      .max_line_bytes = DEFAULT_MAX_LINE_BYTES}};
    prog_name = "server";
    parse_args(argc, argv, &s.cfg);
    fail_alloc_sites = getenv("SERVER_FAIL_ALLOC");
    ignore_sigpipe();
    on_stop_signals();

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

    if (s.cfg.threads > 0) {
        s.workers = workers_start(&s, s.cfg.threads);
        if (s.workers == NULL)
            die("starting worker threads");
    }
    loop_epoll(&s);
    workers_stop(s.workers); /* first: no reply may arrive for a freed connection */

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
