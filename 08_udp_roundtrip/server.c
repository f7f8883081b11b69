/* server.c -- the timestamp server: one UDP socket for every peer, T2 and T3 in each reply
 *
 * Each query is answered with the client's own fields plus T2 (when the
 * query arrived) and T3 (when the reply leaves). There is no accept() and no
 * per-client state: recvfrom() says who sent a datagram, sendto() answers
 * that address. --drop, --delay-ms and --duplicate make the network
 * misbehave on purpose, --forge plays an attacker; --threads N lets N
 * threads share the one socket.
 */
#include "net.h"
#include "probe.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_THREADS 64

struct config {
    const char *host;
    int port;
    int drop_percent; /* --drop: ignore this share of the queries */
    uint64_t seed;    /* --seed: which queries are dropped, reproducibly */
    long delay_ms;    /* --delay-ms: hold every reply this long */
    int duplicate;    /* --duplicate: send every reply twice */
    int forge;        /* --forge: a forged reply before every real one */
    int threads;      /* --threads: how many threads share the socket */
};

/* One thread's view. The counters are its own, summed after the join,
 * so no two threads ever write the same memory. */
struct worker {
    pthread_t thread;
    int index;
    int fd;      /* the UDP socket, shared by every worker */
    int stop_fd; /* an eventfd: readable once the server must stop */
    const struct config *cfg;
    uint64_t rng;
    long received, answered, dropped, ignored;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: server [--host ADDR] [--port N] [--drop PERCENT] [--seed N] [--delay-ms MS]\n"
            "              [--duplicate] [--forge] [--threads N] [-v]\n"
            "Answers every 32-byte query with the receive (T2) and send (T3) times.\n"
            "  --host ADDR       address to bind (default 127.0.0.1; ::1 for IPv6)\n"
            "  --port N          port to bind (default 0: the kernel chooses)\n"
            "  --drop PERCENT    simulate loss: leave this share of queries unanswered\n"
            "  --seed N          seed of the --drop choices (default 1)\n"
            "  --delay-ms MS     hold every reply MS milliseconds before sending it\n"
            "  --duplicate       send every reply twice\n"
            "  --forge           before every reply, send a forged one: right sequence number,\n"
            "                    wrong T1, a clock 1 s ahead (an attacker who guessed the number)\n"
            "  --threads N       N threads share the socket (default 1)\n"
            "  -v                print a line for every datagram\n"
            "SIGINT or SIGTERM stops it (exit status 0) with a summary line.\n");
}

/* xorshift64*: a tiny generator, enough to pick which queries to drop. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void format_ns(int64_t ns, char *out, size_t len)
{
    snprintf(out, len, "%lld.%09lld", (long long)(ns / 1000000000), (long long)(ns % 1000000000));
}

static void send_reply(struct worker *w, const unsigned char *out,
                       const struct sockaddr_storage *peer, socklen_t peer_len, const char *who)
{
    /* A full socket buffer or an unreachable peer loses this one reply:
     * UDP promises nothing, and the client counts it as lost. */
    if (sendto(w->fd, out, PROBE_BYTES, 0, (const struct sockaddr *)peer, peer_len) == -1)
        fprintf(stderr, "server: %s: sendto: %s\n", who, strerror(errno));
}

/* --forge: play an attacker who sends its reply before ours, with our
 * address as its source (off the path, it never saw the query) and the
 * sequence number guessed right. T1 it can only guess: here our clock when
 * the query came, to the millisecond. It claims a clock 1 s ahead. */
static void send_forged(struct worker *w, const struct probe *r,
                        const struct sockaddr_storage *peer, socklen_t peer_len, const char *who)
{
    struct probe f = *r;
    unsigned char out[PROBE_BYTES];
    f.t1_ns = r->t2_ns / 1000000 * 1000000;
    if (f.t1_ns == r->t1_ns) /* a lucky guess would pass; keep the demo repeatable */
        f.t1_ns--;
    f.t2_ns = f.t3_ns = r->t2_ns + 1000000000;
    probe_encode(&f, out);
    send_reply(w, out, peer, peer_len, who);
}

/* Read and answer one datagram. Returns false when none is waiting. */
static bool serve_one(struct worker *w)
{
    const struct config *cfg = w->cfg;
    unsigned char buf[PROBE_BYTES];
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    char who[ADDR_STR_LEN], t2s[32], t3s[32];

    /* MSG_TRUNC: the result is the datagram's real size, even when it is
     * bigger than buf (the rest is discarded: one recv, one datagram). */
    ssize_t n = recvfrom(w->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&peer,
                         &peer_len);
    int64_t t2 = realtime_ns(); /* T2: as soon as the query is ours */
    if (n == -1) {
        /* EAGAIN: another thread took the datagram that woke us all. */
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
        if (errno != EINTR)
            fprintf(stderr, "server: recvfrom: %s\n", strerror(errno));
        return errno == EINTR;
    }
    w->received++;
    net_addr_str((struct sockaddr *)&peer, who);

    struct probe q;
    const char *bad = probe_decode(buf, (size_t)n, PROBE_QUERY, &q);
    if (bad != NULL) {
        /* One line for a peer's mistake, and on with the next datagram. */
        fprintf(stderr, "server: %s: ignored a %zd-byte datagram: %s\n", who, n, bad);
        w->ignored++;
        return true;
    }
    if (cfg->drop_percent > 0 && (int)(rng_next(&w->rng) % 100) < cfg->drop_percent) {
        w->dropped++;
        trace("%s: probe %u dropped (--drop %d)", who, (unsigned)q.seq, cfg->drop_percent);
        return true;
    }
    if (cfg->delay_ms > 0)
        sleep_ms(cfg->delay_ms);

    struct probe r = q;
    r.kind = PROBE_REPLY;
    r.t2_ns = t2;
    unsigned char out[PROBE_BYTES];
    if (cfg->forge)
        send_forged(w, &r, &peer, peer_len, who);
    r.t3_ns = realtime_ns(); /* T3: the last thing before sendto */
    probe_encode(&r, out);
    send_reply(w, out, &peer, peer_len, who);
    if (cfg->duplicate)
        send_reply(w, out, &peer, peer_len, who);
    w->answered++;

    format_ns(r.t2_ns, t2s, sizeof t2s);
    format_ns(r.t3_ns, t3s, sizeof t3s);
    if (cfg->threads > 1)
        trace("thread %d: %s: %zd bytes, probe %u: T2 %s T3 %s", w->index, who, n, (unsigned)q.seq,
              t2s, t3s);
    else
        trace("%s: %zd bytes, probe %u: T2 %s T3 %s", who, n, (unsigned)q.seq, t2s, t3s);
    return true;
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct pollfd p[2] = {{.fd = w->fd, .events = POLLIN}, {.fd = w->stop_fd, .events = POLLIN}};
    for (;;) {
        /* Every waiting thread wakes for a datagram; exactly one gets it. */
        if (poll(p, 2, -1) == -1) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (p[1].revents != 0)
            return NULL;
        while (serve_one(w))
            ;
    }
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"drop", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},
        {"delay-ms", required_argument, NULL, 'D'},
        {"duplicate", no_argument, NULL, 'u'},
        {"forge", no_argument, NULL, 'f'},
        {"threads", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":H:p:d:s:D:uft:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
        case 'd': cfg->drop_percent = (int)parse_number("--drop", optarg, 0, 100); break;
        case 's': cfg->seed = (uint64_t)parse_number("--seed", optarg, 1, 1000000000); break;
        case 'D': cfg->delay_ms = parse_number("--delay-ms", optarg, 0, 10000); break;
        case 'u': cfg->duplicate = 1; break;
        case 'f': cfg->forge = 1; break;
        case 't': cfg->threads = (int)parse_number("--threads", optarg, 1, MAX_THREADS); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: bad_option(c, argv);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
}

int main(int argc, char **argv)
{
    struct config cfg = {.host = "127.0.0.1", .port = 0, .seed = 1, .threads = 1};
    prog_name = "server";
    parse_args(argc, argv, &cfg);

    /* Block the stop signals before any thread exists (threads inherit the
     * mask): only sigwait() below receives them, at a moment of our choosing. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0)
        die_msg("pthread_sigmask failed");

    int fd = udp_bind(cfg.host, cfg.port);
    net_print_listening(fd);
    int stop_fd = eventfd(0, EFD_CLOEXEC);
    if (stop_fd == -1)
        die("eventfd");

    struct worker workers[MAX_THREADS];
    for (int i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];
        *w = (struct worker){.index = i + 1, .fd = fd, .stop_fd = stop_fd, .cfg = &cfg};
        w->rng = cfg.seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i; /* never 0 */
        int rc = pthread_create(&w->thread, NULL, worker_run, w);
        if (rc != 0) {
            errno = rc;
            die("pthread_create");
        }
    }

    int sig = 0;
    sigwait(&stop_signals, &sig);
    /* An eventfd holding a non-zero count stays readable: one write wakes
     * every worker, now and in any later poll. */
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof one) != (ssize_t)sizeof one)
        die("write(eventfd)");

    long received = 0, answered = 0, dropped = 0, ignored = 0;
    char per_thread[MAX_THREADS * 12] = "";
    size_t used = 0;
    for (int i = 0; i < cfg.threads; i++) {
        pthread_join(workers[i].thread, NULL);
        received += workers[i].received;
        answered += workers[i].answered;
        dropped += workers[i].dropped;
        ignored += workers[i].ignored;
        used += (size_t)snprintf(per_thread + used, sizeof per_thread - used, " %ld",
                                 workers[i].answered);
    }
    fprintf(stderr, "server: %s: stopping: %ld datagrams, %ld answered, %ld dropped, %ld ignored",
            strsignal(sig), received, answered, dropped, ignored);
    if (cfg.threads > 1)
        fprintf(stderr, " (answered per thread:%s)", per_thread);
    fputc('\n', stderr);
    close(stop_fd);
    close(fd);
    return 0;
}
