/* server.c -- the finished server on io_uring (appendix 10): options, signals, main
 *
 * One loop (loop_uring.c) hands the kernel its requests (receive, send,
 * accept) and takes their completions, all through io_uring. Bytes from a
 * client go into its input buffer; the decoding loop (service.c) takes
 * whole messages out of it and echoes each one as one message. Replies
 * leave through send.c's send path (a send queue, one send in flight),
 * guarded by watermarks (backpressure), an output cap and the stale and
 * slow timers; --service broadcast makes a chat room.
 *
 * Lesson 7: connections close gracefully (shutdown.c: half-close, then
 * wait for the peer's FIN), idle and slow-frame timeouts run on timer
 * lists, SIGTERM/SIGINT arrive through a signalfd and start a graceful
 * stop, and counters are printed on SIGUSR1 and at exit.
 *
 * Lesson 9 (an appendix) makes it fast without changing what it does: the
 * replies to the messages of one read leave in one send (send.c), a read
 * into an empty input buffer is decoded in place (handlers.c, service.c),
 * and emptied buffers bigger than a few KiB are given back.
 *
 * Appendix 10 moves it from readiness (epoll: "you may read now", then a
 * recv per socket) to completions (io_uring: "these bytes arrived, in this
 * buffer"): one io_uring_enter per turn submits every request and reaps
 * every result, however many connections took part.
 */
#include "loop_uring.h"
#include "shutdown.h"
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
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

static void usage(FILE *out)
{
    fprintf(out,
            "usage: server [--framing protocol|length|lines|fixed] [--record-bytes N]\n"
            "              [--max-line N] [--sndbuf BYTES]\n"
            "              [--host ADDR] [--port N] [--max-conns N] [-v]\n"
            "Echo server: every message that arrives is sent back as one message.\n"
            "  --framing protocol the lesson protocol: 25-byte header, raw or LZ4 body (default)\n"
            "  --framing length   a 4-byte big-endian length, then the body\n"
            "  --framing lines    lines ending in CRLF, at most --max-line bytes (default %d)\n"
            "  --framing fixed    records of exactly --record-bytes bytes (default %d)\n"
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
            "  --budgets on|off   cap what one send names at 1 MiB (default on; off: a send\n"
            "                     names the whole queue)\n"
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
            "a second signal stops at once). SIGUSR1 prints the counters. Needs io_uring\n"
            "(Linux >= 6.0): without it, one line and exit status 3.\n",
            DEFAULT_MAX_LINE_BYTES, DEFAULT_RECORD_BYTES, DEFAULT_HIGH_WATER_BYTES,
            DEFAULT_LOW_WATER_BYTES, DEFAULT_OUTPUT_CAP_BYTES, DEFAULT_STALE_MS, DEFAULT_SLOW_MS,
            DEFAULT_IDLE_MS, DEFAULT_FRAME_MS, DEFAULT_LINGER_MS, DEFAULT_STOP_MS);
}

static const struct option long_options[] = {
    {"framing", required_argument, NULL, 'f'},
    {"record-bytes", required_argument, NULL, 'r'},
    {"max-line", required_argument, NULL, 'L'},
    {"sndbuf", required_argument, NULL, 'S'},
    {"service", required_argument, NULL, 's'},
    {"high-water", required_argument, NULL, 'W'},
    {"low-water", required_argument, NULL, 'w'},
    {"output-cap", required_argument, NULL, 'C'},
    {"stale-ms", required_argument, NULL, 'T'},
    {"slow-ms", required_argument, NULL, 'K'},
    {"drop", required_argument, NULL, 'D'},
    {"nodelay", required_argument, NULL, 'N'},
    {"budgets", required_argument, NULL, 'B'},
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
static const char *const services[] = {"echo", "broadcast", NULL}; /* enum service */
static const char *const off_on[] = {"off", "on", NULL};
static const char *const drops[] = {"close", "abort", NULL}; /* drop_abort false, true */

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
    case 's': cfg->service = (enum service)choose("--service", v, services); break;
    case 'W': cfg->high_water_bytes = (size_t)parse_number("--high-water", v, 1, 1L << 30); break;
    case 'w': cfg->low_water_bytes = (size_t)parse_number("--low-water", v, 0, 1L << 30); break;
    case 'C': cfg->output_cap_bytes = (size_t)parse_number("--output-cap", v, 1, 1L << 31); break;
    case 'T': cfg->stale_ms = (int)parse_number("--stale-ms", v, 1, 3600000); break;
    case 'K': cfg->slow_ms = (int)parse_number("--slow-ms", v, 1, 3600000); break;
    case 'D': cfg->drop_abort = choose("--drop", v, drops) == 1; break;
    case 'N': cfg->nodelay = choose("--nodelay", v, off_on) == 1; break;
    case 'B': cfg->budgets = choose("--budgets", v, off_on) == 1; break;
    case 't': cfg->threads = (int)parse_number("--threads", v, 0, 64); break;
    case 'I': cfg->idle_ms = (int)parse_number("--idle-ms", v, 0, 86400000); break;
    case 'F': cfg->frame_ms = (int)parse_number("--frame-ms", v, 0, 86400000); break;
    case 'G': cfg->linger_ms = (int)parse_number("--linger-ms", v, 1, 3600000); break;
    case 'O': cfg->stop_ms = (int)parse_number("--stop-timeout-ms", v, 1, 3600000); break;
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
    while ((opt = getopt_long(argc, argv, "f:r:L:S:s:W:w:C:T:K:D:N:t:I:F:G:O:H:p:m:vh",
                              long_options, NULL)) != -1)
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
    /* Blocking, on purpose: only the ring reads it (see workers.c's eventfd). */
    int fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (fd == -1)
        die("signalfd");
    struct sigaction sa = {.sa_handler = on_usr2};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART, on purpose */
    if (sigaction(SIGUSR2, &sa, NULL) == -1)
        die("sigaction(SIGUSR2)");
    return fd;
}

/* Appendix 10: the ring, set up before 'listening on'. A kernel without
 * io_uring (too old, kernel.io_uring_disabled, a container's seccomp
 * filter) gets one line and exit status 3, before any client could
 * connect. SERVER_NO_URING=ENOSYS or EPERM fakes that failure (a test hook,
 * server.h). */
static void ring_setup_or_exit(struct server *s)
{
    const char *failed = "io_uring_setup";
    const char *fake = getenv("SERVER_NO_URING");
    int err;
    if (fake != NULL && strcmp(fake, "ENOSYS") == 0)
        err = -ENOSYS;
    else if (fake != NULL && strcmp(fake, "EPERM") == 0)
        err = -EPERM;
    else
        err = loop_uring_setup(s, &failed);
    if (err == 0)
        return;
    fprintf(stderr,
            "server: io_uring is not available here: %s: %s (needs Linux >= 6.0; "
            "see sysctl kernel.io_uring_disabled, and seccomp in a container)\n",
            failed, strerror(-err));
    exit(3);
}

int main(int argc, char **argv)
{
    static struct server s;
    s.cfg = (struct config){.host = "127.0.0.1",
                            .port = 9000,
                            .service = SERVICE_ECHO,
                            .nodelay = true,
                            .budgets = true,
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
    alloc_hook_init();
    ignore_sigpipe();
    s.signal_fd = signals_setup();
    ring_setup_or_exit(&s);
    s.now_ms = server_now_ms();
    timer_list_init(&s.idle_timers, s.cfg.idle_ms, "idle");
    timer_list_init(&s.frame_timers, s.cfg.frame_ms, "frame");
    timer_list_init(&s.linger_timers, s.cfg.linger_ms, "linger");
    timer_list_init(&s.stale_timers, s.cfg.stale_ms, "stale");
    timer_list_init(&s.slow_timers, s.cfg.slow_ms, "slow");

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
    loop_uring(&s); /* returns once the graceful stop is over: every connection closed */
    workers_stop(s.workers);

    server_print_counters(&s, "at exit");
    free(s.conns);
    uring_exit(&s.ring);
    close(s.spare_fd);
    close(s.signal_fd);
    fprintf(stderr, "server: stopped\n");
    return 0;
}
