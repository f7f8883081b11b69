/* scalebench.c -- N idle connections and one busy one: the cost of a round trip */
//
// Lessons 3 and 4 claim that select() and poll() get slower with every connection the server
// watches, busy or not, while epoll does not. This tool measures the claim. It parks N idle
// connections on an echo server, proves the server really holds each one (one byte there and
// back), then times round trips on A busy connections: write a block, read the echo back,
// check it, repeat. Run it for N = 10, 100, 1000, 10000 and compare (tools/bench does, and
// plots the curve).
//
// It prints one line:
//   idle=N active=A rounds=R size=S median_us=X.XX min_us=Y.YY
// where a run's cost is its elapsed time / (rounds x active), in microseconds per round trip,
// and median and min are taken over the runs.
// Exit status: 0 measured, 1 error (one line on stderr), 2 bad usage, 3 the server closed some
// of our connections (a select() server refusing fds >= FD_SETSIZE): "this API stops here".

#include "toolkit.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_HOST          "127.0.0.1"
#define DEFAULT_ROUNDS        10000u
#define DEFAULT_SIZE_BYTES    16u
#define DEFAULT_RUNS          5u
#define DEFAULT_ACTIVE        1u
#define DEFAULT_WARMUP_ROUNDS 200u
#define MAX_PORT              65535u
#define MAX_IDLE              1000000u
#define MAX_ACTIVE            10000u
#define MAX_ROUNDS            100000000u
#define MAX_SIZE_BYTES        (1024u * 1024)
#define MAX_RUNS              1000u
#define SPARE_FDS             16u   // stdio, and whatever libc opens for getaddrinfo()
#define CONNECT_WINDOW        256u  // connections being set up at the same time
#define IO_TIMEOUT_MS         10000 // the longest we wait without any progress
#define PATTERN_SHIFTS        256u  // distinct blocks: see pattern_block()
#define PING_BYTE             'i'
#define EXIT_REFUSED          3

// What a connection is doing while we set it up; then it is READY, or REFUSED if the server
// closed it (its fd is then closed and set to -1).
enum conn_state { CONN_CONNECTING, CONN_PINGING, CONN_READY, CONN_REFUSED };

struct conn {
    int fd;
    enum conn_state state;
    // The busy connections' progress through the current round trip.
    uint32_t round;
    size_t sent_bytes, received_bytes;
};

struct options {
    const char *host;
    uint32_t port, idle, active, rounds, size_bytes, runs, warmup_rounds;
};

// Where to connect, and the bytes the busy connections send (see pattern_block()).
struct bench {
    const struct options *opt;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned char *pattern;
    unsigned char *scratch; // receives each echo before it is compared
};

// Setup results: done, failed (the reason is already on stderr), or the server closed some.
enum { STEP_OK = 0, STEP_FAILED = -1, STEP_REFUSED = -2 };

// MONOTONIC (toolkit.c): a clock that NTP or an administrator may set (REALTIME) could step
// backwards in the middle of a run.
static double clock_seconds(void)
{
    return (double)clock_ns() / 1e9;
}

// Every connection needs a descriptor, and the default soft limit (often 1024) is far below
// 10000. An unprivileged process may raise its soft limit up to the hard one, no further.
static int fd_limit_raise(uint64_t needed)
{
    struct rlimit limit;

    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) {
        log_line("getrlimit: %s", strerror(errno));
        return -1;
    }
    if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= needed)
        return 0;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed) {
        log_line("%llu file descriptors needed, but the hard limit (ulimit -Hn) is %llu",
                 (unsigned long long)needed, (unsigned long long)limit.rlim_max);
        return -1;
    }
    limit.rlim_cur = needed;
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0) {
        log_line("setrlimit: raising the fd limit to %llu: %s", (unsigned long long)needed,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int bench_resolve(struct bench *b)
{
    char service[16];
    struct addrinfo hints;
    struct addrinfo *list = NULL;

    snprintf(service, sizeof service, "%u", b->opt->port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(b->opt->host, service, &hints, &list);
    if (rc != 0) {
        log_line("%s: %s", b->opt->host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    // Thousands of connections to one server: they all go to its first address.
    memcpy(&b->addr, list->ai_addr, list->ai_addrlen);
    b->addr_len = list->ai_addrlen;
    freeaddrinfo(list);
    return 0;
}

static void conn_close(struct conn *c)
{
    // No retry on EINTR: Linux has released the descriptor whatever close() returned.
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

// The server closed this connection while we set it up. Returns STEP_REFUSED if that is what
// an error means (reset or broken pipe), STEP_FAILED otherwise.
static int conn_refused_by(struct conn *c, int error)
{
    if (error != 0 && error != ECONNRESET && error != EPIPE) {
        log_line("connection setup: %s", strerror(error));
        return STEP_FAILED;
    }
    conn_close(c);
    c->state = CONN_REFUSED;
    return STEP_REFUSED;
}

// The handshake is done: send the ping that the server must echo before we count the
// connection as held. A completed connect() only means the kernel queued it for accept().
static int conn_ping(struct conn *c)
{
    const char ping = PING_BYTE;
    ssize_t n;

    do // MSG_NOSIGNAL: a closed connection fails with EPIPE instead of a deadly SIGPIPE
        n = send(c->fd, &ping, 1, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return conn_refused_by(c, errno);
    c->state = CONN_PINGING;
    return STEP_OK;
}

// Non-blocking connect: thousands of handshakes proceed in parallel instead of one by one.
static int conn_start(const struct bench *b, struct conn *c)
{
    c->fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        log_line("socket: %s", strerror(errno));
        return STEP_FAILED;
    }
    if (connect(c->fd, (const struct sockaddr *)&b->addr, b->addr_len) == 0)
        return conn_ping(c); // loopback may finish the handshake at once
    if (errno != EINPROGRESS) {
        log_line("connect to %s port %u: %s", b->opt->host, b->opt->port, strerror(errno));
        return STEP_FAILED;
    }
    c->state = CONN_CONNECTING;
    return STEP_OK;
}

// poll() said something happened on a connection being set up: take it one step further.
static int conn_advance(const struct bench *b, struct conn *c)
{
    int error = 0;
    socklen_t len = sizeof error;
    char echo;

    if (c->state == CONN_CONNECTING) {
        // The outcome of a non-blocking connect is read from SO_ERROR once it is writable.
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) {
            log_line("getsockopt SO_ERROR: %s", strerror(errno));
            return STEP_FAILED;
        }
        if (error != 0) {
            log_line("connect to %s port %u: %s", b->opt->host, b->opt->port, strerror(error));
            return STEP_FAILED;
        }
        return conn_ping(c);
    }
    ssize_t n = recv(c->fd, &echo, 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return STEP_OK; // not yet
    if (n < 0)
        return conn_refused_by(c, errno);
    if (n == 0)
        return conn_refused_by(c, 0); // a clean close: the server did not want it
    if (echo != PING_BYTE) {
        log_line("connection setup: the server echoed %#x instead of %#x", (unsigned char)echo,
                 PING_BYTE);
        return STEP_FAILED;
    }
    c->state = CONN_READY;
    return STEP_OK;
}

// Connect `count` connections and ping each one, at most CONNECT_WINDOW at a time, so the
// server's listen queue never overflows (an overflow drops SYNs and costs seconds of
// retransmission). Every wait is bounded: IO_TIMEOUT_MS without progress is an error.
// Returns STEP_OK, STEP_FAILED, or STEP_REFUSED with *refused set when the server closed some.
static int conns_open(const struct bench *b, struct conn *conns, size_t count, size_t *refused)
{
    struct pollfd fds[CONNECT_WINDOW];
    size_t busy[CONNECT_WINDOW]; // indexes into conns of the connections being set up
    size_t busy_count = 0;
    size_t next = 0;

    *refused = 0;
    while (next < count || busy_count > 0) {
        while (busy_count < CONNECT_WINDOW && next < count) {
            int rc = conn_start(b, &conns[next]);
            if (rc == STEP_FAILED)
                return STEP_FAILED;
            if (rc == STEP_REFUSED)
                (*refused)++;
            else
                busy[busy_count++] = next;
            next++;
        }
        if (busy_count == 0)
            continue; // all refused at once: poll() on nothing would just sleep
        for (size_t i = 0; i < busy_count; i++) {
            const struct conn *c = &conns[busy[i]];
            fds[i].fd = c->fd;
            fds[i].events = c->state == CONN_CONNECTING ? POLLOUT : POLLIN;
            fds[i].revents = 0;
        }
        int ready = poll(fds, busy_count, IO_TIMEOUT_MS);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            log_line("poll: %s", strerror(errno));
            return STEP_FAILED;
        }
        if (ready == 0) {
            log_line("%zu of %zu connections not set up after %d s without progress "
                     "(is the server accepting?)",
                     count - next + busy_count, count, IO_TIMEOUT_MS / 1000);
            return STEP_FAILED;
        }
        // Walk backwards: a finished entry is replaced by the last one, which sits behind us
        // and has already been looked at, so no entry is skipped or visited twice.
        for (size_t i = busy_count; i-- > 0;) {
            struct conn *c = &conns[busy[i]];
            if (fds[i].revents == 0)
                continue;
            int rc = conn_advance(b, c);
            if (rc == STEP_FAILED)
                return STEP_FAILED;
            if (rc == STEP_REFUSED)
                (*refused)++;
            if (c->state == CONN_READY || c->state == CONN_REFUSED)
                busy[i] = busy[--busy_count];
        }
    }
    return *refused > 0 ? STEP_REFUSED : STEP_OK;
}

// The bytes of round `round` on busy connection `index`: a window into a pattern that slides
// by one byte per round, so an echo of the previous round, or one shifted by a byte, fails.
static const unsigned char *pattern_block(const struct bench *b, size_t index, uint32_t round)
{
    return b->pattern + (index * 31 + round) % PATTERN_SHIFTS;
}

// Send what is left of this round's block. Never waits: poll() tells us when to go on.
static int active_send(const struct bench *b, struct conn *c, size_t index)
{
    const unsigned char *block = pattern_block(b, index, c->round);
    size_t size = b->opt->size_bytes;

    while (c->sent_bytes < size) {
        ssize_t n = send(c->fd, block + c->sent_bytes, size - c->sent_bytes, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0; // the send buffer is full: wait for POLLOUT
        if (n < 0) {
            log_line("busy connection %zu, round %u: send: %s", index, c->round, strerror(errno));
            return -1;
        }
        c->sent_bytes += (size_t)n;
    }
    return 0;
}

// Read what has come back of the block and check it. Returns 1 when the whole echo is in,
// 0 when more is to come, -1 on error.
static int active_receive(const struct bench *b, struct conn *c, size_t index)
{
    size_t size = b->opt->size_bytes;
    // Never ask for more than this round's remainder: bytes past it would belong to no block.
    ssize_t n = recv(c->fd, b->scratch, size - c->received_bytes, 0);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        log_line("busy connection %zu, round %u: %s", index, c->round,
                 n == 0 ? "the server closed the connection" : strerror(errno));
        return -1;
    }
    const unsigned char *expected = pattern_block(b, index, c->round) + c->received_bytes;
    if (memcmp(b->scratch, expected, (size_t)n) != 0) {
        log_line("busy connection %zu, round %u: the echo differs from what was sent", index,
                 c->round);
        return -1;
    }
    c->received_bytes += (size_t)n;
    return c->received_bytes == size;
}

// poll() reported `revents` on busy connection `index`: send more of the block, take in
// what came back. We read even while still sending: the server echoes a big block as it
// arrives, and if we did not read, its send buffer and then ours would fill and both wait.
// Returns 1 when the connection has finished `rounds` round trips, 0 if not, -1 on error.
static int active_step(const struct bench *b, struct conn *c, size_t index, short revents,
                       uint32_t rounds)
{
    if ((revents & POLLOUT) && active_send(b, c, index) < 0)
        return -1;
    if (!(revents & (POLLIN | POLLERR | POLLHUP))) // errors and hang-ups: recv() says which
        return 0;
    int rc = active_receive(b, c, index);
    if (rc <= 0)
        return rc;
    c->round++;
    c->sent_bytes = c->received_bytes = 0;
    if (c->round == rounds)
        return 1;
    return active_send(b, c, index); // the next round starts at once
}

// Every busy connection does `rounds` round trips, each starting as soon as its previous echo
// is complete; one thread drives them all with poll(). Stores the elapsed time in *seconds.
static int active_run(const struct bench *b, struct conn *active, size_t count, uint32_t rounds,
                      struct pollfd *fds, double *seconds)
{
    size_t finished = 0;
    double start = clock_seconds();

    for (size_t i = 0; i < count; i++) {
        active[i].round = 0;
        active[i].sent_bytes = active[i].received_bytes = 0;
        fds[i].fd = active[i].fd;
        if (active_send(b, &active[i], i) < 0)
            return -1;
    }
    while (finished < count) {
        for (size_t i = 0; i < count; i++) {
            bool sending = active[i].sent_bytes < b->opt->size_bytes;
            fds[i].events = sending ? POLLIN | POLLOUT : POLLIN;
            fds[i].revents = 0;
        }
        int ready = poll(fds, count, IO_TIMEOUT_MS);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            log_line("poll: %s", strerror(errno));
            return -1;
        }
        if (ready == 0) {
            log_line("no echo for %d s: is the server stuck?", IO_TIMEOUT_MS / 1000);
            return -1;
        }
        for (size_t i = 0; i < count; i++) {
            if (fds[i].revents == 0)
                continue;
            int rc = active_step(b, &active[i], i, fds[i].revents, rounds);
            if (rc < 0)
                return -1;
            if (rc == 1) {
                fds[i].fd = -1; // poll() skips negative fds: this one is done
                finished++;
            }
        }
    }
    *seconds = clock_seconds() - start;
    return 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

// The warm-up fills caches and wakes the CPU from its power-saving states. Then `runs`
// measurements on the same connections; the median resists the odd run that a noisy
// neighbour slowed down, and the min shows what the machine can do.
static int bench_measure(const struct bench *b, struct conn *active)
{
    const struct options *opt = b->opt;
    struct pollfd *fds = calloc(opt->active, sizeof *fds);
    double *costs_us = calloc(opt->runs, sizeof *costs_us);
    double seconds = 0;
    int rc = -1;

    if (fds == NULL || costs_us == NULL) {
        log_line("out of memory");
        goto out;
    }
    if (opt->warmup_rounds > 0 &&
        active_run(b, active, opt->active, opt->warmup_rounds, fds, &seconds) < 0)
        goto out;
    for (uint32_t run = 0; run < opt->runs; run++) {
        if (active_run(b, active, opt->active, opt->rounds, fds, &seconds) < 0)
            goto out;
        costs_us[run] = seconds * 1e6 / ((double)opt->rounds * opt->active);
    }
    qsort(costs_us, opt->runs, sizeof *costs_us, compare_doubles);
    uint32_t mid = opt->runs / 2;
    double median = opt->runs % 2 ? costs_us[mid] : (costs_us[mid - 1] + costs_us[mid]) / 2;
    printf("idle=%u active=%u rounds=%u size=%u median_us=%.2f min_us=%.2f\n", opt->idle,
           opt->active, opt->rounds, opt->size_bytes, median, costs_us[0]);
    if (fflush(stdout) == EOF) {
        log_line("write stdout: %s", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(fds);
    free(costs_us);
    return rc;
}

static int bench_run(struct bench *b)
{
    const struct options *opt = b->opt;
    size_t total = (size_t)opt->idle + opt->active;
    size_t refused = 0;
    struct conn *active = NULL;
    int one = 1;
    int rc;
    int status = 1;

    if (fd_limit_raise((uint64_t)total + SPARE_FDS) < 0 || bench_resolve(b) < 0)
        return 1;
    struct conn *conns = calloc(total, sizeof *conns);
    b->pattern = malloc(opt->size_bytes + PATTERN_SHIFTS);
    b->scratch = malloc(opt->size_bytes);
    if (conns == NULL || b->pattern == NULL || b->scratch == NULL) {
        log_line("out of memory");
        goto out;
    }
    for (size_t i = 0; i < total; i++)
        conns[i].fd = -1;
    for (size_t i = 0; i < opt->size_bytes + PATTERN_SHIFTS; i++)
        b->pattern[i] = (unsigned char)(i * 7);

    // Idle first, so the busy connections get the highest fds: the ones a select() server
    // would refuse first, and the ones at the far end of a poll() server's array.
    rc = conns_open(b, conns, opt->idle, &refused);
    if (rc == STEP_REFUSED) {
        log_line("server refused %zu of %u idle connections (select's FD_SETSIZE limit?)", refused,
                 opt->idle);
        status = EXIT_REFUSED;
        goto out;
    }
    if (rc == STEP_FAILED)
        goto out;
    active = conns + opt->idle;
    rc = conns_open(b, active, opt->active, &refused);
    if (rc == STEP_REFUSED) {
        log_line("server refused %zu of %u busy connections (select's FD_SETSIZE limit?)", refused,
                 opt->active);
        status = EXIT_REFUSED;
        goto out;
    }
    if (rc == STEP_FAILED)
        goto out;
    // Small blocks, each waiting for its echo: without TCP_NODELAY, Nagle's algorithm could
    // hold a block back until the previous one is acknowledged.
    for (uint32_t i = 0; i < opt->active; i++) {
        if (setsockopt(active[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
            log_line("setsockopt TCP_NODELAY: %s", strerror(errno));
            goto out;
        }
    }
    if (bench_measure(b, active) == 0)
        status = 0;
out:
    if (conns != NULL) {
        for (size_t i = 0; i < total; i++)
            conn_close(&conns[i]);
    }
    free(conns);
    free(b->pattern);
    free(b->scratch);
    return status;
}

static void options_usage(FILE *out)
{
    fprintf(out,
            "usage: scalebench [--host H] --port P --idle N [--rounds R] [--size BYTES]\n"
            "                  [--runs K] [--active A] [--warmup W]\n"
            "\n"
            "Opens N idle connections to an echo server and checks that it holds them (one\n"
            "byte there and back on each), then times round trips on A busy connections.\n"
            "\n"
            "  -H, --host H        server address (default %s)\n"
            "  -p, --port P        server port, 1..%u\n"
            "  -i, --idle N        idle connections, 0..%u\n"
            "  -r, --rounds R      round trips per busy connection and run (default %u)\n"
            "  -s, --size BYTES    bytes per round trip, 1..%u (default %u)\n"
            "  -k, --runs K        measurements, on the same connections (default %u)\n"
            "  -a, --active A      busy connections, driven by one thread with poll(),\n"
            "                      1..%u (default %u)\n"
            "  -w, --warmup W      untimed round trips per busy connection first (default %u)\n"
            "  -h, --help          show this help\n"
            "\n"
            "Prints: idle=N active=A rounds=R size=S median_us=X.XX min_us=Y.YY\n"
            "(microseconds per round trip: a run's time / (R x A); median and min of K runs).\n"
            "Exit status 3: the server closed some connections (select's FD_SETSIZE limit).\n",
            DEFAULT_HOST, MAX_PORT, MAX_IDLE, DEFAULT_ROUNDS, MAX_SIZE_BYTES, DEFAULT_SIZE_BYTES,
            DEFAULT_RUNS, MAX_ACTIVE, DEFAULT_ACTIVE, DEFAULT_WARMUP_ROUNDS);
}

// toolkit's options_number(), for the uint32_t fields of struct options.
static int options_u32(const char *option, const char *text, uint32_t min, uint32_t max,
                       uint32_t *out)
{
    uint64_t value;

    if (options_number(option, text, min, max, &value) < 0)
        return -1;
    *out = (uint32_t)value;
    return 0;
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},   {"port", required_argument, NULL, 'p'},
        {"idle", required_argument, NULL, 'i'},   {"rounds", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 's'},   {"runs", required_argument, NULL, 'k'},
        {"active", required_argument, NULL, 'a'}, {"warmup", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    bool port_given = false;
    bool idle_given = false;
    int c;

    // A leading ':' and opterr = 0: getopt_long reports problems to us instead of printing.
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":H:p:i:r:s:k:a:w:h", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'H': opt->host = optarg; break;
        case 'p':
            rc = options_u32("--port", optarg, 1, MAX_PORT, &opt->port);
            port_given = true;
            break;
        case 'i':
            rc = options_u32("--idle", optarg, 0, MAX_IDLE, &opt->idle);
            idle_given = true;
            break;
        case 'r': rc = options_u32("--rounds", optarg, 1, MAX_ROUNDS, &opt->rounds); break;
        case 's': rc = options_u32("--size", optarg, 1, MAX_SIZE_BYTES, &opt->size_bytes); break;
        case 'k': rc = options_u32("--runs", optarg, 1, MAX_RUNS, &opt->runs); break;
        case 'a': rc = options_u32("--active", optarg, 1, MAX_ACTIVE, &opt->active); break;
        case 'w': rc = options_u32("--warmup", optarg, 0, MAX_ROUNDS, &opt->warmup_rounds); break;
        case 'h': options_usage(stdout); return 0;
        case ':': log_line("option '%s' needs a value (try --help)", argv[optind - 1]); return 2;
        default: log_line("bad option '%s' (try --help)", argv[optind - 1]); return 2;
        }
        if (rc < 0)
            return 2;
    }
    if (optind < argc) {
        log_line("unexpected argument '%s' (try --help)", argv[optind]);
        return 2;
    }
    if (!port_given || !idle_given) {
        log_line("--port and --idle are required (try --help)");
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct options opt = {
        .host = DEFAULT_HOST,
        .rounds = DEFAULT_ROUNDS,
        .size_bytes = DEFAULT_SIZE_BYTES,
        .runs = DEFAULT_RUNS,
        .active = DEFAULT_ACTIVE,
        .warmup_rounds = DEFAULT_WARMUP_ROUNDS,
    };
    struct bench bench = {.opt = &opt};
    int rc;

    tool_name = "scalebench";
    rc = options_parse(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    return bench_run(&bench);
}
