/* server.c -- the server of lesson 6: options, main
 *
 * Every socket is non-blocking, and one loop (loop_epoll.c) waits for
 * whichever is ready. Bytes from a client go into its input buffer; the
 * decoding loop (service.c) takes whole messages out of it and echoes
 * each one as one message. Replies leave through send.c's send path
 * (direct write, else a send queue and EPOLLOUT), guarded by watermarks
 * (backpressure), an output cap and a stale-output check;
 * --service broadcast makes a chat room.
 */
#include "loop_epoll.h"
#include "workers.h"

#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONNS_LIMIT      10000000
#define DEFAULT_RECORD_BYTES 16
/* Watermarks, in bytes queued for one connection. High water 1 MiB: less
 * than the kernel itself buffers on loopback, so only a client that sends
 * faster than it reads, for megabytes, meets it; low water a quarter of
 * it, so that once paused a client must drain a good part before we read
 * again (no flapping). */
#define DEFAULT_HIGH_WATER_BYTES (1u << 20)
#define DEFAULT_LOW_WATER_BYTES  (256u << 10)
#define DEFAULT_OUTPUT_CAP_BYTES (2u << 20)
#define DEFAULT_STALE_MS         3000
#define DEFAULT_STALE_CHECK_MS   1000
#define DEFAULT_MAX_LINE_BYTES   1024

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
            "  --budgets on|off   per-wake-up caps on reading and writing one client (default\n"
            "                     on; off: et reads and writes until EAGAIN, for ./run fairness)\n"
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

static const struct option long_options[] = {
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
    {"budgets", required_argument, NULL, 'B'},
    {"threads", required_argument, NULL, 't'},
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"max-conns", required_argument, NULL, 'm'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* An option that takes one word of a list: the word's index in names[]
 * (NULL-terminated), or a one-line error and exit status 2. */
static int choose(const char *option, const char *value, const char *const names[])
{
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(value, names[i]) == 0)
            return i;
    fprintf(stderr, "server: %s wants ", option);
    for (int i = 0; names[i] != NULL; i++)
        fprintf(stderr, "%s%s", i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ", names[i]);
    fprintf(stderr, ", not '%s'\n", value);
    exit(2);
}

static const char *const framings[] = {"fixed", "lines", "length", "protocol", NULL};
static const char *const modes[] = {"lt", "et", NULL};             /* enum mode */
static const char *const services[] = {"echo", "broadcast", NULL}; /* enum service */
static const char *const off_on[] = {"off", "on", NULL};

/* One option and its value into cfg (numbers are range-checked). */
static void set_option(struct config *cfg, int opt, const char *v)
{
    switch (opt) {
    case 'f': cfg->rules.framing = (enum framing)choose("--framing", v, framings); break;
    case 'r':
        cfg->rules.record_bytes = (size_t)parse_number("--record-bytes", v, 1, MAX_BODY_BYTES);
        break;
    case 'L':
        cfg->rules.max_line_bytes = (size_t)parse_number("--max-line", v, 1, MAX_BODY_BYTES);
        break;
    case 'M': cfg->mode = (enum mode)choose("--mode", v, modes); break;
    case 's': cfg->service = (enum service)choose("--service", v, services); break;
    case 'W': cfg->high_water_bytes = (size_t)parse_number("--high-water", v, 1, 1L << 30); break;
    case 'w': cfg->low_water_bytes = (size_t)parse_number("--low-water", v, 0, 1L << 30); break;
    case 'C': cfg->output_cap_bytes = (size_t)parse_number("--output-cap", v, 1, 1L << 31); break;
    case 'T': cfg->stale_ms = (int)parse_number("--stale-ms", v, 1, 3600000); break;
    case 'K': cfg->stale_check_ms = (int)parse_number("--stale-check-ms", v, 1, 3600000); break;
    case 'N': cfg->nodelay = choose("--nodelay", v, off_on) == 1; break;
    case 'B': cfg->budgets = choose("--budgets", v, off_on) == 1; break;
    case 't': cfg->threads = (int)parse_number("--threads", v, 0, 64); break;
    case 'S': cfg->sndbuf_bytes = (int)parse_number("--sndbuf", v, 1, 1 << 24); break;
    case 'H': cfg->host = v; break;
    case 'p': cfg->port = parse_port(v); break;
    case 'm': cfg->max_conns = parse_number("--max-conns", v, 1, MAX_CONNS_LIMIT); break;
    case 'v': verbose = true; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); exit(2);
    }
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    int opt;
    while ((opt = getopt_long(argc, argv, "f:r:L:M:S:s:W:w:C:T:K:N:t:H:p:m:vh", long_options,
                              NULL)) != -1)
        set_option(cfg, opt, optarg);
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
                            .service = SERVICE_ECHO,
                            .nodelay = true,
                            .budgets = true,
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
    alloc_hook_init();
    ignore_sigpipe();
    on_stop_signals();
    block_stop_signals(&s.wait_mask);

    s.listen_fd = net_listen(s.cfg.host, s.cfg.port, true);
    /* A non-blocking listener: see accept.c. */
    int flags = fcntl(s.listen_fd, F_GETFL);
    if (flags == -1 || fcntl(s.listen_fd, F_SETFL, flags | O_NONBLOCK) == -1)
        die("fcntl(O_NONBLOCK)");
    s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (s.spare_fd == -1)
        die("open(/dev/null)");
    s.max_fd = -1;
    net_print_listening(s.listen_fd);

    if (s.cfg.threads > 0) {
        s.workers = workers_start(&s.cfg.rules, s.cfg.threads);
        if (s.workers == NULL)
            die("starting worker threads");
    }
    loop_epoll(&s); /* returns once SIGINT or SIGTERM has arrived */
    workers_stop(s.workers);

    fprintf(stderr, "server: stopping (%ld connections open)\n", s.nconns);
    for (int fd = s.max_fd; fd >= 0; fd--)
        if (s.conns[fd] != NULL)
            conn_close(&s, s.conns[fd], CLOSE_STOP);
    conn_free_closed(&s);
    free(s.conns);
    free(s.watches);
    close(s.spare_fd);
    close(s.listen_fd);
    close(s.epfd);
    return 0;
}
