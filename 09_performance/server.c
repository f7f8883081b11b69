/* server.c -- the finished server, made fast (lesson 9): options, accept, the read path, main
 *
 * Every socket is non-blocking, and one loop (loop_epoll.c) waits for
 * whichever is ready. Bytes from a client go into its input buffer; the
 * decoding loop takes whole messages out of it (frame.c), whatever the
 * reads cut them into, and echoes each one as one message. A compressed
 * request (LZ4 block) is answered compressed. A protocol error closes that
 * connection only, with one log line naming the peer and the reason.
 * Replies leave through send.c's send path (direct write, else a send
 * queue and EPOLLOUT), guarded by watermarks (backpressure), an output cap
 * and a stale-output check; --service broadcast makes a chat room.
 *
 * Lesson 7: connections close gracefully (shutdown.c: half-close, then
 * wait for the peer's FIN), idle and slow-frame timeouts run on timer
 * lists, SIGTERM/SIGINT arrive through a signalfd and start a graceful
 * stop, and counters are printed on SIGUSR1 and at exit.
 *
 * Lesson 9 (an appendix) makes it fast without changing what it does: the
 * replies to the messages of one read leave in one send (send.c), a read
 * into an empty input buffer goes to a shared scratch area and is decoded
 * in place (conn_read), and emptied buffers bigger than a few KiB are given
 * back.
 */
#include "lz4.h"
#include "server.h"
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
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
/* A queue may stay over the high-water mark this long: enough for a whole
 * 10 MiB reply at 3 Mbit/s, like the frame timer below for a request. */
#define DEFAULT_SLOW_MS        30000
#define DEFAULT_MAX_LINE_BYTES 1024
/* Lesson 7's timeouts. Idle: a minute of silence. Frame: a whole message,
 * header and body, within 30 s of its first byte (a 10 MiB body at 3 Mbit/s).
 * Linger: after our FIN, 2 s for the peer's. Stop: 5 s to finish everything. */
#define DEFAULT_IDLE_MS   60000
#define DEFAULT_FRAME_MS  30000
#define DEFAULT_LINGER_MS 2000
#define DEFAULT_STOP_MS   5000
/* Reads into an empty input buffer go to a scratch area first (conn_read);
 * an emptied input buffer bigger than KEEP_INPUT_BYTES is given back. */
#define SCRATCH_BYTES    (64u << 10)
#define KEEP_INPUT_BYTES 4096u
/* The input buffer holds at most one incomplete frame plus one read. */
#define MAX_INPUT_BYTES (FRAME_HEADER_BYTES + MAX_BODY_BYTES + 2 * 65536)

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
            "  --slow-ms MS       close a client whose queue stays over --high-water MS ms (%d)\n"
            "  --drop abort|close how to end a client dropped for not reading (cap, stale,\n"
            "                     slow): abort (default; RST, kernel buffers freed at once)\n"
            "                     or close (FIN after everything the kernel still holds)\n"
            "  --nodelay on|off   TCP_NODELAY (default on: no Nagle delay for replies)\n"
            "  --threads N        handle messages on N worker threads (echo; default 0)\n"
            "  --idle-ms MS       close a connection quiet for MS ms, gracefully (%d; 0: never)\n"
            "  --frame-ms MS      close one whose message takes over MS ms to arrive (%d; 0: off)\n"
            "  --linger-ms MS     after our FIN, wait MS ms for the peer's (%d)\n"
            "  --stop-timeout-ms MS  a graceful stop closes what is left after MS ms (%d)\n"
            "  --host ADDR        address to bind (default 127.0.0.1)\n"
            "  --port N           port (default 9000; 0 = let the kernel choose)\n"
            "  --max-conns N      close connections beyond N at once\n"
            "  -v, --verbose      print every event, read, frame and send\n"
            "Prints 'listening on HOST:PORT' first. SIGINT/SIGTERM: a graceful stop (exit 0;\n"
            "a second signal stops at once). SIGUSR1 prints the counters.\n",
            DEFAULT_MAX_LINE_BYTES, DEFAULT_RECORD_BYTES, DEFAULT_HIGH_WATER_BYTES,
            DEFAULT_LOW_WATER_BYTES, DEFAULT_OUTPUT_CAP_BYTES, DEFAULT_STALE_MS, DEFAULT_SLOW_MS,
            DEFAULT_IDLE_MS, DEFAULT_FRAME_MS, DEFAULT_LINGER_MS, DEFAULT_STOP_MS);
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
        {"slow-ms", required_argument, NULL, 'K'},
        {"drop", required_argument, NULL, 'D'},
        {"nodelay", required_argument, NULL, 'N'},
        {"threads", required_argument, NULL, 't'},
        {"idle-ms", required_argument, NULL, 'I'},
        {"frame-ms", required_argument, NULL, 'F'},
        {"linger-ms", required_argument, NULL, 'G'},
        {"stop-timeout-ms", required_argument, NULL, 'O'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"max-conns", required_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "f:r:L:M:S:s:W:w:C:T:K:D:N:t:I:F:G:O:H:p:m:vh", opts,
                            NULL)) != -1) {
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
        case 'K': cfg->slow_ms = (int)parse_number("--slow-ms", optarg, 1, 3600000); break;
        case 'D':
            if (strcmp(optarg, "abort") == 0 || strcmp(optarg, "close") == 0) {
                cfg->drop_abort = strcmp(optarg, "abort") == 0;
            } else {
                fprintf(stderr, "server: --drop wants abort or close, not '%s'\n", optarg);
                exit(2);
            }
            break;
        case 't': cfg->threads = (int)parse_number("--threads", optarg, 0, 64); break;
        case 'I': cfg->idle_ms = (int)parse_number("--idle-ms", optarg, 0, 86400000); break;
        case 'F': cfg->frame_ms = (int)parse_number("--frame-ms", optarg, 0, 86400000); break;
        case 'G': cfg->linger_ms = (int)parse_number("--linger-ms", optarg, 1, 3600000); break;
        case 'O': cfg->stop_ms = (int)parse_number("--stop-timeout-ms", optarg, 1, 3600000); break;
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

void conn_close(struct server *s, struct conn *c)
{
    if (c->more_work) /* never leave a freed connection on s->more */
        for (struct conn **p = &s->more; *p != NULL; p = &(*p)->next_more)
            if (*p == c) {
                *p = c->next_more;
                break;
            }
    trace("close fd=%d (%s, %s)", c->fd, conn_state_name(c->state), close_reason_name(c->reason));
    timer_stop(&c->activity);
    timer_stop(&c->frame);
    timer_stop(&c->stale);
    timer_stop(&c->slow);
    /* Replies still queued will never be sent: count them as dropped. */
    s->count.msgs_dropped += buf_readable(&c->marks) / sizeof(uint64_t);
    s->count.closed[c->reason]++;
    table_remove(s, c->fd);
    bool not_reading =
        c->reason == CLOSE_OUTPUT_CAP || c->reason == CLOSE_STALE || c->reason == CLOSE_SLOW;
    if (not_reading && s->cfg.drop_abort) {
        /* A peer dropped for not reading: close() would leave what the
         * kernel still holds for it (up to tcp_wmem's maximum) in an orphan
         * socket, trickling out through the peer's window for minutes. It
         * would never read it all anyway: SO_LINGER {1, 0} makes close()
         * send RST and free those buffers now. */
        struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
        if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now) == -1)
            fprintf(stderr, "server: %s: setsockopt(SO_LINGER): %s\n", c->peer, strerror(errno));
    }
    if (close(c->fd) == -1)
        fprintf(stderr, "server: %s: close: %s\n", c->peer, strerror(errno));
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->marks);
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
        s->accept_paused_until_ms = server_now_ms() + ACCEPT_PAUSE_MS;
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
        s->count.refused++;
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* fd == -1: the queue was empty after all (accept4 reports EMFILE
     * before it looks at the queue). */
    return fd != -1;
}

static struct conn *conn_new(struct server *s, int fd, const struct sockaddr *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->state = CONN_OPEN;
    /* Buffers start empty and grow as bytes arrive: a header that claims
     * 10 MiB costs nothing until the 10 MiB are really here. An idle
     * connection costs this struct and the small buffers it has used. */
    buf_init(&c->in, MAX_INPUT_BYTES);
    buf_init(&c->out, 0);
    buf_init(&c->marks, 0);
    c->activity.owner = c->frame.owner = c->stale.owner = c->slow.owner = c;
    timer_start(&s->idle_timers, &c->activity, s->now_ms);
    net_addr_str(peer, c->peer);
    return c;
}

/* Refuse a connection we cannot or will not serve: close it at once, so the
 * client sees the end of the stream, and say why in one line. */
static void refuse(struct server *s, int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
    s->count.refused++;
}

void server_accept(struct server *s, void (*new_cb)(struct server *, struct conn *, void *),
                   void *arg, bool until_empty)
{
    /* Edge-triggered: the listener reports readable once for a whole burst
     * of connections; stopping before EAGAIN would strand the rest until
     * the next client arrives. Level-triggered: it reports again, so we
     * may stop early and let the other connections have their turn. */
    int max_accepts = s->cfg.mode == MODE_LT && !until_empty ? ACCEPTS_PER_TURN : INT_MAX;
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
            refuse(s, fd, peer, "--max-conns reached");
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
        struct conn *c =
            table_reserve(s, fd) == 0 ? conn_new(s, fd, (struct sockaddr *)&addr) : NULL;
        if (c == NULL) {
            refuse(s, fd, peer, ERR_NO_MEMORY);
            continue;
        }
        s->count.accepted++;
        c->gen = ++s->next_gen;
        table_put(s, c);
        trace("accept fd=%d from %s (%ld connections)", fd, c->peer, s->nconns);
        new_cb(s, c, arg);
    }
}

bool server_accepting(struct server *s)
{
    if (s->stopping)
        return false;
    if (s->accept_paused_until_ms != 0 && s->now_ms >= s->accept_paused_until_ms) {
        s->accept_paused_until_ms = 0;
        if (s->spare_fd == -1)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    return s->accept_paused_until_ms == 0;
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
        if (to == NULL || to == from || to->closing || to->state != CONN_OPEN)
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
    if (plain != NULL) /* only compressed requests have one: skip the call */
        free(plain);
    return NULL;
}

/* The decoding loop of lesson 5 over data[0..len), with one more exit:
 * once this client's own queue passes the high-water mark, stop taking its
 * messages until the queue drains. Returns the bytes of whole frames used;
 * the caller keeps the rest. */
static size_t decode_frames(struct server *s, struct conn *c, const uint8_t *data, size_t len,
                            bool *frame_done)
{
    size_t used = 0;
    while (used < len && !c->closing && !conn_over_high_water(s, c)) {
        struct frame f;
        const char *why = NULL;
        enum frame_status st = frame_decode(&s->cfg.rules, data + used, len - used, &f, &why);
        if (st == FRAME_NEED_MORE)
            break;
        /* The read's only message (a client that does not pipeline): its
         * reply goes out directly; collecting it would add a copy and a
         * flush, and save no system call. */
        if (st == FRAME_OK && f.frame_len == len - used && buf_readable(&c->out) == 0)
            c->batching = false;
        if (st == FRAME_OK)
            why = handle_message(s, c, &f);
        if (why != NULL) /* the connection ends: what was collected goes first */
            conn_batch_end(s, c);
        if (why == ERR_NO_MEMORY) { /* our failure: this message stays unanswered */
            fprintf(stderr, "server: %s: closed: out of memory for a message\n", c->peer);
            conn_mark_closing(s, c, CLOSE_ERROR); /* counts it with the rest of c->in */
            break;
        }
        if (why != NULL) {
            fprintf(stderr, "server: %s: protocol error: %s\n", c->peer, why);
            conn_mark_closing(s, c, CLOSE_PROTOCOL);
            break;
        }
        s->count.msgs_in++;
        *frame_done = true;
        used += f.frame_len;
    }
    return used;
}

/* Received bytes thrown away unhandled: count them, and the whole messages
 * among them (a protocol error stops the count at the bad frame). */
static void count_unanswered(struct server *s, const uint8_t *data, size_t len)
{
    size_t at = 0;
    struct frame f;
    const char *why;
    while (frame_decode(&s->cfg.rules, data + at, len - at, &f, &why) == FRAME_OK) {
        s->count.msgs_unanswered++;
        at += f.frame_len;
    }
    s->count.bytes_unanswered += len;
}

void conn_drop_input(struct server *s, struct conn *c)
{
    count_unanswered(s, buf_peek(&c->in), buf_readable(&c->in));
    buf_free(&c->in);
}

void conn_decode(struct server *s, struct conn *c)
{
    /* Lesson 9: the replies to all the messages of this pass leave in one send.
     * Decoding stops at the high-water mark, and that send may empty the
     * queue again: then the whole messages still in c->in are decoded now,
     * because no new byte and no epoll event would bring us back for them. */
    bool frame_done = false;
    size_t used;
    do {
        conn_batch_begin(c);
        used = decode_frames(s, c, buf_peek(&c->in), buf_readable(&c->in), &frame_done);
        if (!c->closing)
            buf_consume(&c->in, used);
        conn_batch_end(s, c);
    } while (used > 0 && !c->closing && buf_readable(&c->in) > 0 && !conn_over_high_water(s, c));
    if (!c->closing) {
        buf_release_if_big(&c->in, KEEP_INPUT_BYTES); /* all decoded: give a big buffer back */
        conn_frame_timer_update(s, c, frame_done);
    }
}

/* One read, then decode. The common case is a connection with nothing
 * buffered whose read brings whole messages: then the bytes are read into
 * a scratch area shared by all connections, decoded right there, and only
 * an unfinished frame is copied into c->in. No copy and no buffer of its
 * own for a connection that keeps up, so 10000 busy connections do not
 * spread their messages over 10000 buffers the CPU cache cannot hold.
 * Returns what buf_read_fd would (*got: the bytes read); *decoded says
 * whether it decoded already. */
static enum io conn_read(struct server *s, struct conn *c, size_t *got, bool *decoded)
{
    *decoded = false;
    if (buf_readable(&c->in) > 0) { /* a frame is half here: read behind it */
        enum io r = buf_read_fd(&c->in, c->fd, got);
        if (r == IO_OK)
            trace("recv fd=%d -> %zu bytes (%zu buffered)", c->fd, *got, buf_readable(&c->in));
        return r;
    }
    *got = 0;
    static uint8_t scratch[SCRATCH_BYTES]; /* the loop thread's: emptied before we return */
    ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
    while (n == -1 && errno == EINTR) /* a signal came first: nothing was read yet */
        n = recv(c->fd, scratch, sizeof scratch, 0);
    if (n == -1)
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    if (n == 0)
        return IO_CLOSED;
    *got = (size_t)n;
    trace("recv fd=%d -> %zd bytes (%zd buffered)", c->fd, n, n);
    /* Replies leave before scratch is reused: sent, or copied into c->out. */
    bool frame_done = false;
    conn_batch_begin(c);
    size_t used = decode_frames(s, c, scratch, (size_t)n, &frame_done);
    conn_batch_end(s, c);
    if (!c->closing && used < (size_t)n &&
        buf_append(&c->in, scratch + used, (size_t)n - used) != IO_OK) {
        fprintf(stderr, "server: %s: closed: out of memory for the input buffer\n", c->peer);
        conn_mark_closing(s, c, CLOSE_ERROR);
    }
    *decoded = true;
    if (c->closing) { /* the rest of this read will never be handled */
        count_unanswered(s, scratch + used, (size_t)n - used);
        return IO_OK;
    }
    conn_frame_timer_update(s, c, frame_done);
    /* Stopped at the high-water mark, and the batch's send brought the
     * queue back under it: what is left may hold whole messages. */
    if (used > 0 && used < (size_t)n && !conn_over_high_water(s, c))
        conn_decode(s, c);
    return IO_OK;
}

void conn_on_readable(struct server *s, struct conn *c)
{
    if (c->state == CONN_LINGERING) {
        conn_linger_read(s, c); /* after our FIN: only waiting for the peer's */
        return;
    }
    if (c->state != CONN_OPEN)
        return; /* DRAINING: what was read is answered; nothing more is read */
    /* Fairness: lt reads once per wake-up (epoll reports the socket again
     * if more is waiting), so one flooding client cannot starve the rest.
     * et reads until EAGAIN, READ_BUDGET_BYTES at most per wake-up (then
     * conn_want_more), and stops as soon as this client's queue (with what
     * its workers hold) passes the high-water mark: the rest waits in the
     * kernel, and the MOD that resumes reading reports it. */
    size_t budget = READ_BUDGET_BYTES;
    while (!c->closing && !c->reading_paused && !c->read_eof && !conn_over_high_water(s, c)) {
        if (budget == 0) { /* et: enough for this wake-up; come back after the others */
            conn_want_more(s, c);
            return;
        }
        bool decoded;
        size_t n;
        enum io r = conn_read(s, c, &n, &decoded);
        if (r == IO_AGAIN)
            return;
        if (r == IO_ERROR || r == IO_FULL) {
            fprintf(stderr, "server: %s: recv: %s\n", c->peer,
                    r == IO_FULL ? "input buffer full" : strerror(errno));
            conn_mark_closing(s, c, CLOSE_ERROR);
            return;
        }
        if (r == IO_CLOSED) {
            trace("recv fd=%d -> 0 bytes: %s closed its side", c->fd, c->peer);
            if (buf_readable(&c->in) > 0)
                fprintf(stderr, "server: %s: closed in the middle of a message (%zu bytes left)\n",
                        c->peer, buf_readable(&c->in));
            c->read_eof = true;    /* closed once everything queued for it is sent */
            timer_stop(&c->frame); /* that frame will never be finished */
            return;
        }
        s->count.bytes_in += (uint64_t)n;
        conn_touch(s, c);
        budget -= (size_t)n < budget ? (size_t)n : budget;
        if (!decoded)
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

static void on_usr2(int signo)
{
    (void)signo;
    /* Async-signal-safe: only this handler writes usr2_count, and it runs on
     * the loop thread only (workers block every signal), with SIGUSR2
     * blocked while it runs: the increment never races with another. */
    usr2_count++;
}

/* Signals, the lesson-7 way. SIGINT, SIGTERM and SIGUSR1 are blocked in
 * every thread (workers inherit the mask: call this before they start)
 * and read from a signalfd in the loop, so stopping is ordinary code, not
 * a handler. SIGUSR2 keeps a real handler, installed WITHOUT SA_RESTART:
 * it is the harmless signal of the EINTR tests, interrupting our system
 * calls, which must all shrug EINTR off. */
static int signals_setup(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGUSR1);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        die_msg("pthread_sigmask failed");
    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd == -1)
        die("signalfd");
    struct sigaction sa = {.sa_handler = on_usr2};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART, on purpose */
    if (sigaction(SIGUSR2, &sa, NULL) == -1)
        die("sigaction(SIGUSR2)");
    return fd;
}

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
                            .slow_ms = DEFAULT_SLOW_MS,
                            .drop_abort = true,
                            .idle_ms = DEFAULT_IDLE_MS,
                            .frame_ms = DEFAULT_FRAME_MS,
                            .linger_ms = DEFAULT_LINGER_MS,
                            .stop_ms = DEFAULT_STOP_MS,
                            .rules = {.framing = FRAMING_PROTOCOL,
                                      .record_bytes = DEFAULT_RECORD_BYTES,
                                      .max_line_bytes = DEFAULT_MAX_LINE_BYTES}};
    prog_name = "server";
    parse_args(argc, argv, &s.cfg);
    fail_alloc_sites = getenv("SERVER_FAIL_ALLOC");
    ignore_sigpipe();
    s.signal_fd = signals_setup();
    s.now_ms = server_now_ms();
    timer_list_init(&s.idle_timers, s.cfg.idle_ms, "idle");
    timer_list_init(&s.frame_timers, s.cfg.frame_ms, "frame");
    timer_list_init(&s.linger_timers, s.cfg.linger_ms, "linger");
    timer_list_init(&s.stale_timers, s.cfg.stale_ms, "stale");
    timer_list_init(&s.slow_timers, s.cfg.slow_ms, "slow");

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
    loop_epoll(&s); /* returns once the graceful stop is over: every connection closed */
    workers_stop(s.workers);

    server_print_counters(&s, "at exit");
    free(s.conns);
    close(s.spare_fd);
    close(s.signal_fd);
    close(s.epfd);
    fprintf(stderr, "server: stopped\n");
    return 0;
}
