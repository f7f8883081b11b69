/* client.c -- send N timestamped probes over UDP; print round trip and clock offset
 *
 * Each probe carries its send time T1 and a sequence number. The reply
 * brings back the server's T2 and T3; the arrival time is T4. A probe whose
 * reply does not come within --timeout-ms is counted lost; a reply that
 * comes later, or twice, is recognised by its sequence number and ignored.
 * A reply must also echo the T1 that was sent with its sequence number
 * (NTP's origin-timestamp check): one that does not is forged or stale.
 */
#include "net.h"
#include "probe.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct config {
    const char *host;
    int port;
    size_t count;     /* --count: probes to send */
    long interval_ms; /* --interval-ms: from one probe's start to the next */
    long timeout_ms;  /* --timeout-ms: how long each probe waits for its reply */
};

/* What one probe came to. */
enum probe_outcome { PROBE_ANSWERED, PROBE_TIMED_OUT, PROBE_REFUSED, PROBE_FAILED };

struct result {
    enum probe_outcome outcome;
    int64_t t1_ns; /* the T1 this probe was sent with: its reply must echo it */
    int64_t round_trip_ns;
    int64_t offset_ns;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: client [--host ADDR] --port N [--count N] [--interval-ms MS] [--timeout-ms MS] "
            "[-v]\n"
            "Sends N probes to the timestamp server; prints each one's round trip and clock\n"
            "offset, then min/median/max and the best estimate of the offset.\n"
            "  --host ADDR        server address (default 127.0.0.1; ::1 for IPv6)\n"
            "  --port N           server port\n"
            "  --count N          probes to send (default 10)\n"
            "  --interval-ms MS   time from one probe to the next (default 100)\n"
            "  --timeout-ms MS    how long each probe waits for its reply (default 1000)\n"
            "  -v                 print T1..T4 of every probe\n"
            "Exit status 0 if at least one reply came back.\n");
}

static double us(int64_t ns)
{
    return (double)ns / 1000.0;
}

/* Replies ignored while waiting: genuine ones at the wrong moment (stale),
 * and ones that answer nothing we sent (forged). */
struct ignored {
    long stale;  /* late or duplicate */
    long forged; /* a probe never sent, or a T1 we did not send */
};

/* Wait for the reply to probe seq until deadline (CLOCK_MONOTONIC, ns).
 * Whatever else arrives meanwhile is reported and skipped. */
static enum probe_outcome wait_reply(int fd, uint32_t seq, int64_t deadline,
                                     const struct result *results, struct probe *reply, int64_t *t4,
                                     struct ignored *ignored)
{
    for (;;) {
        int64_t left_ns = deadline - monotonic_ns();
        if (left_ns <= 0)
            return PROBE_TIMED_OUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)((left_ns + 999999) / 1000000));
        if (n == -1 && errno != EINTR) {
            fprintf(stderr, "client: poll: %s\n", strerror(errno));
            return PROBE_FAILED;
        }
        if (n <= 0)
            continue;

        unsigned char buf[PROBE_BYTES];
        ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
        *t4 = realtime_ns(); /* T4: as soon as the reply is ours */
        if (got == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            /* On a connected UDP socket, the ICMP "port unreachable" that
             * answered an earlier datagram comes back here. */
            if (errno == ECONNREFUSED)
                return PROBE_REFUSED;
            fprintf(stderr, "client: recv: %s\n", strerror(errno));
            return PROBE_FAILED;
        }
        const char *bad = probe_decode(buf, (size_t)got, PROBE_REPLY, reply);
        if (bad != NULL) {
            printf("ignored a %zd-byte datagram: %s\n", got, bad);
            continue;
        }
        if (reply->seq < 1 || reply->seq > seq) {
            printf("reply to probe %u, which was never sent, ignored\n", (unsigned)reply->seq);
            ignored->forged++;
            continue;
        }
        /* The origin check (NTP's, RFC 5905 section 8): a small counter is
         * easy to guess, a T1 in nanoseconds is not. Whoever answers without
         * having seen our query cannot echo it. */
        const struct result *sent = &results[reply->seq - 1];
        if (reply->t1_ns != sent->t1_ns) {
            printf("reply to probe %u with origin T1 %lld but we sent %lld: forged or stale, "
                   "ignored\n",
                   (unsigned)reply->seq, (long long)reply->t1_ns, (long long)sent->t1_ns);
            ignored->forged++;
            continue;
        }
        if (reply->seq == seq)
            return PROBE_ANSWERED;
        /* The lesson: without the sequence number, this old reply would be
         * taken for the current probe's and give a wrong round trip. */
        if (sent->outcome == PROBE_ANSWERED)
            printf("duplicate reply to probe %u, ignored\n", (unsigned)reply->seq);
        else
            printf("late reply to probe %u (it had timed out), ignored\n", (unsigned)reply->seq);
        ignored->stale++;
    }
}

static void print_trace(uint32_t seq, const struct probe *r, int64_t t4)
{
    trace("probe %u: T1 %lld  T2 %lld  T3 %lld  T4 %lld (ns)", (unsigned)seq, (long long)r->t1_ns,
          (long long)r->t2_ns, (long long)r->t3_ns, (long long)t4);
    trace("probe %u: T4-T1 %lld, T3-T2 %lld, T2-T1 %lld, T3-T4 %lld (ns)", (unsigned)seq,
          (long long)(t4 - r->t1_ns), (long long)(r->t3_ns - r->t2_ns),
          (long long)(r->t2_ns - r->t1_ns), (long long)(r->t3_ns - t4));
}

/* Send probe seq and wait for its reply; fill in *res and print one line. */
static void run_probe(int fd, const struct config *cfg, uint32_t seq, struct result *results,
                      struct ignored *ignored)
{
    struct result *res = &results[seq - 1];
    struct probe q = {.kind = PROBE_QUERY, .seq = seq}, reply;
    unsigned char out[PROBE_BYTES];
    int64_t t4 = 0;

    q.t1_ns = realtime_ns(); /* T1: the last thing before send */
    res->t1_ns = q.t1_ns;
    probe_encode(&q, out);
    if (send(fd, out, sizeof out, 0) == -1) {
        res->outcome = errno == ECONNREFUSED ? PROBE_REFUSED : PROBE_FAILED;
        if (res->outcome == PROBE_FAILED)
            fprintf(stderr, "client: send: %s\n", strerror(errno));
    } else {
        int64_t deadline = monotonic_ns() + cfg->timeout_ms * 1000000;
        res->outcome = wait_reply(fd, seq, deadline, results, &reply, &t4, ignored);
    }

    switch (res->outcome) {
    case PROBE_ANSWERED:
        res->round_trip_ns = probe_round_trip_ns(&reply, t4);
        res->offset_ns = probe_offset_ns(&reply, t4);
        print_trace(seq, &reply, t4);
        printf("probe %u: round trip %.1f µs, offset %.1f µs\n", (unsigned)seq,
               us(res->round_trip_ns), us(res->offset_ns));
        break;
    case PROBE_TIMED_OUT:
        printf("probe %u: lost (timeout after %ld ms)\n", (unsigned)seq, cfg->timeout_ms);
        break;
    case PROBE_REFUSED:
        printf("probe %u: lost (refused: ICMP port unreachable, nobody listens on %s port %d)\n",
               (unsigned)seq, cfg->host, cfg->port);
        break;
    case PROBE_FAILED: printf("probe %u: lost (error)\n", (unsigned)seq); break;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sort v (n > 0 values) and print its min, median and max in µs. */
static void print_spread(const char *what, int64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_i64);
    double median = n % 2 ? us(v[n / 2]) : (us(v[n / 2 - 1]) + us(v[n / 2])) / 2;
    printf("%-11s min %.1f µs, median %.1f µs, max %.1f µs\n", what, us(v[0]), median,
           us(v[n - 1]));
}

/* The summary. Returns how many probes were answered. */
static size_t print_summary(const struct result *results, size_t count,
                            const struct ignored *ignored)
{
    int64_t *rtts = calloc(count, sizeof *rtts);
    int64_t *offsets = calloc(count, sizeof *offsets);
    if (rtts == NULL || offsets == NULL)
        die("calloc");
    size_t n = 0;
    size_t best = count; /* none yet */
    for (size_t i = 0; i < count; i++) {
        if (results[i].outcome != PROBE_ANSWERED)
            continue;
        rtts[n] = results[i].round_trip_ns;
        offsets[n] = results[i].offset_ns;
        n++;
        if (best == count || results[i].round_trip_ns < results[best].round_trip_ns)
            best = i;
    }
    printf(
        "%zu probes: %zu replies, %zu lost, %ld late or duplicate and %ld forged replies ignored\n",
        count, n, count - n, ignored->stale, ignored->forged);
    if (n > 0) {
        print_spread("round trip:", rtts, n);
        print_spread("offset:", offsets, n);
        /* The lesson: the smallest round trip had the least time to be
         * delayed on one leg more than the other, so its offset is the
         * most trustworthy; the true offset is within half its round trip. */
        const struct result *b = &results[best];
        printf("best estimate: probe %zu (smallest round trip, %.1f µs): offset %.1f µs, "
               "within ±%.1f µs\n",
               best + 1, us(b->round_trip_ns), us(b->offset_ns), us(b->round_trip_ns) / 2);
    }
    free(rtts);
    free(offsets);
    return n;
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"count", required_argument, NULL, 'c'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":H:p:c:i:t:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = (int)parse_number("--port", optarg, 1, 65535); break;
        case 'c': cfg->count = (size_t)parse_number("--count", optarg, 1, 100000); break;
        case 'i': cfg->interval_ms = parse_number("--interval-ms", optarg, 0, 60000); break;
        case 't': cfg->timeout_ms = parse_number("--timeout-ms", optarg, 1, 60000); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: bad_option(c, argv);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (cfg->port == 0)
        usage_error("--port is required");
}

int main(int argc, char **argv)
{
    struct config cfg = {.host = "127.0.0.1", .count = 10, .interval_ms = 100, .timeout_ms = 1000};
    prog_name = "client";
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, even in a pipe */
    parse_args(argc, argv, &cfg);

    int fd = udp_connect(cfg.host, cfg.port);
    struct result *results = calloc(cfg.count, sizeof *results);
    if (results == NULL)
        die("calloc");
    struct ignored ignored = {0};
    /* Probes start on a fixed schedule (CLOCK_MONOTONIC: no clock setting
     * can stretch it), unless a timeout already made us late. */
    int64_t next = monotonic_ns();
    for (size_t i = 1; i <= cfg.count; i++) {
        int64_t wait_ns = next - monotonic_ns();
        if (wait_ns > 0)
            sleep_ms((long)(wait_ns / 1000000));
        next = monotonic_ns() + cfg.interval_ms * 1000000;
        run_probe(fd, &cfg, (uint32_t)i, results, &ignored);
    }
    size_t answered = print_summary(results, cfg.count, &ignored);
    free(results);
    close(fd);
    if (answered == 0) {
        fprintf(stderr, "client: no reply to any of the %zu probes\n", cfg.count);
        return 1;
    }
    return 0;
}
