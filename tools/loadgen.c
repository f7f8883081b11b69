/* loadgen.c -- the load generator: many connections, every reply checked, throughput and latency */
//
// One thread drives up to 10000 non-blocking connections through one epoll set. Each connection
// sends messages in the lesson protocol (or, with --raw, plain bytes for lesson 4's echo) and
// checks every byte that comes back. In pingpong mode a connection sends one message and waits
// for its reply; in oneway mode it keeps up to --window body bytes in flight and checks the
// replies as they stream back.
//
// A body is never stored to be compared later: it is generated from (seed, connection, message)
// -- the message's own number as text, then words drawn from a short list -- and generated
// again when its reply arrives. The words make --compress worth something; the number and the
// draws make every message different, so a lost, repeated or reordered reply shows up as a
// wrong byte.
//
// At the end it prints two lines on stdout: a sentence, then `result key=value ...` for
// scripts (tools/bench parses it). Exit status: 0 every connection connected and every reply
// was right, 1 anything else (one line per problem on stderr), 2 bad usage.

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lz4.h" /* the lessons' codec: tools/Makefile adds -I$(LZ4_DIR) */
#include "toolkit.h"

#define DEFAULT_HOST         "127.0.0.1"
#define DEFAULT_SIZE_BYTES   16u
#define DEFAULT_MESSAGES     100u
#define DEFAULT_TIMEOUT_S    60u
#define DEFAULT_WINDOW_BYTES (256u * 1024)
#define MAX_CONNS            10000u
#define MAX_PORT             65535u
#define MAX_SECONDS          86400u
#define MAX_WINDOW_BYTES     (1024u * 1024 * 1024)
#define MAX_PID              4194304u
#define CONNECTS_IN_FLIGHT   128 // more overflow a default listen backlog: 1 s SYN retries
#define RECV_BUFFER_BYTES    (256u * 1024)
#define SEND_BATCH_BYTES     (64u * 1024) // oneway: messages gathered into one send()
#define READS_PER_EVENT      4            // then let the other connections have their turn
#define EVENTS_PER_WAIT      1024
#define LATENCY_SAMPLES      (1u << 20) // reservoir size: enough for exact p99 of most runs
#define ERROR_LINES          10         // then only "and N more"
#define PROXY_START_MS       10000
#define PROXY_STOP_MS        3000

enum mode { MODE_PINGPONG, MODE_ONEWAY };

struct options {
    const char *host, *via_proxy;
    uint64_t port, conns, size_min, size_max, messages, duration_s, timeout_s, window, seed;
    uint64_t proxy_delay_ms, hold_s, server_pid;
    enum mode mode;
    bool compress, raw, no_replies, until_closed, verbose;
    bool unlimited; // --duration without --messages: messages until time is up
};

// A body generator: the text "CONN.MSG ", then text_block from a start drawn from (seed, conn,
// msg), wrapping at its end (see text_init).
struct body_gen {
    uint32_t block_pos; // where the text continues in text_block
    uint8_t len, pos;   // the number in front: pending[pos..len) is still to be copied
    char pending[24];
};

static const char *const words[16] = {
    "the ",   "quick ", "brown ", "fox ",    "jumps ", "over ",  "lazy ", "dog ",
    "epoll ", "echo ",  "frame ", "socket ", "queue ", "bytes ", "wire ", "buffer ",
};

enum conn_state {
    CONN_IDLE,       // not started yet
    CONN_CONNECTING, // non-blocking connect in progress
    CONN_RUNNING,    // sending and checking
    CONN_WAIT_CLOSE, // --until-closed: everything done, waiting for the server's EOF
    CONN_HELD,       // --hold: everything done, kept open
    CONN_CLOSED,     // finished well
    CONN_FAILED,     // an error or a mismatch ended it
};

static const char *conn_state_name(enum conn_state state)
{
    static const char *const names[] = {"idle", "connecting", "running", "waiting for close",
                                        "held", "closed",     "failed"};
    return names[state];
}

struct conn {
    int fd;
    uint32_t index;
    enum conn_state state;
    uint32_t events; // what epoll watches for now: changed only when it must change
    // sending: out[out_pos..out_len) is still to go; it holds out_msgs whole messages
    uint8_t *out;
    uint32_t out_cap, out_len, out_pos, out_msgs;
    uint64_t out_body;           // body bytes of those messages
    uint64_t sent, sent_body;    // messages (and body bytes) generated so far
    uint64_t verified, got_body; // replies checked so far, and their body bytes
    // receiving the reply to message `verified`
    bool reply_started;
    uint8_t header[PROTO_HEADER_BYTES];
    uint32_t header_got, reply_size, wire_size, wire_got; // wire: body bytes on the wire
    uint8_t *packed;                                      // --compress: the compressed body
    struct body_gen check;
    // send times of the messages whose replies are still due, oldest at head
    int64_t *times;
    uint32_t times_cap, times_head, times_count;
};

struct stats {
    uint64_t messages, bytes, errors, mismatches, connected, closed_by_server;
    uint64_t error_lines, suppressed;
};

// Latency samples: a reservoir of at most LATENCY_SAMPLES, and the exact maximum.
struct latency {
    uint32_t *us;
    uint64_t count, seen, max_us, rng;
};

struct run {
    const struct options *opt;
    int epfd;
    struct conn *conns;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char target[NI_MAXHOST + 16]; // host:port we connect to, for messages
    uint32_t next_start, connecting, active, held;
    bool stop_new, timed_out;
    int64_t start_ns, end_ns, duration_end_ns, deadline_ns;
    int64_t end_cpu_us, server_end_ticks; // at end_ns: loadgen's CPU time, the server's
    uint8_t *rbuf;                        // one receive buffer for all connections
    uint8_t *expect;                      // generated expected bytes, RECV_BUFFER_BYTES
    uint8_t *plain;                       // --compress: a whole body, or a decompressed reply
    struct stats stats;
    struct latency lat;
};

// ---- bodies ---------------------------------------------------------------------------------

static uint64_t message_key(const struct options *opt, uint32_t conn, uint64_t msg, uint64_t salt)
{
    uint64_t s = opt->seed ^ ((uint64_t)conn + 1) * 0xd1342543de82ef95u ^
                 (msg + 1) * 0x9e3779b97f4a7c15u ^ salt;
    return splitmix64(&s);
}

// The body size of message msg on connection conn: --size, or drawn from the range.
static uint32_t message_size(const struct options *opt, uint32_t conn, uint64_t msg)
{
    if (opt->size_min == opt->size_max)
        return (uint32_t)opt->size_min;
    uint64_t span = opt->size_max - opt->size_min + 1;
    return (uint32_t)(opt->size_min + message_key(opt, conn, msg, 0x5151) % span);
}

// Bodies are cut from one block of text, words drawn with the seed, built once. Copying is what
// keeps loadgen fast enough to measure a server (drawing every word of every body took half of
// its CPU); the number in front and the drawn start make each body different, so a lost,
// repeated or misrouted reply still shows, and the words keep --compress meaningful.
#define TEXT_BLOCK_BYTES 65536u
static uint8_t text_block[TEXT_BLOCK_BYTES];

static void text_init(uint64_t seed)
{
    uint64_t rng = seed ^ 0x746578742d626c6bu;
    size_t n = 0;
    while (n < TEXT_BLOCK_BYTES) {
        uint64_t bits = splitmix64(&rng);
        for (int i = 0; i < 16 && n < TEXT_BLOCK_BYTES; i++, bits >>= 4) {
            const char *word = words[bits & 15];
            size_t len = strlen(word);
            if (len > TEXT_BLOCK_BYTES - n)
                len = TEXT_BLOCK_BYTES - n;
            memcpy(text_block + n, word, len);
            n += len;
        }
    }
}

static void gen_start(struct body_gen *g, const struct options *opt, uint32_t conn, uint64_t msg)
{
    g->block_pos = (uint32_t)(message_key(opt, conn, msg, 0) % TEXT_BLOCK_BYTES);
    g->pos = 0;
    g->len = (uint8_t)snprintf(g->pending, sizeof g->pending, "%u.%llu ", (unsigned)conn,
                               (unsigned long long)msg);
}

// The next n bytes of the body. Any split of a body into calls gives the same bytes.
static void gen_fill(struct body_gen *g, uint8_t *dst, size_t n)
{
    while (n > 0) {
        size_t k;
        if (g->pos < g->len) {
            k = (size_t)(g->len - g->pos) < n ? (size_t)(g->len - g->pos) : n;
            memcpy(dst, g->pending + g->pos, k);
            g->pos += (uint8_t)k;
        } else {
            k = TEXT_BLOCK_BYTES - g->block_pos < n ? TEXT_BLOCK_BYTES - g->block_pos : n;
            memcpy(dst, text_block + g->block_pos, k);
            g->block_pos = (uint32_t)((g->block_pos + k) % TEXT_BLOCK_BYTES);
        }
        dst += k;
        n -= k;
    }
}

// ---- reporting ------------------------------------------------------------------------------

static void report(struct run *run, const char *format, ...) __attribute__((format(printf, 2, 3)));

// One line per problem, the first ERROR_LINES of them; the rest are only counted.
static void report(struct run *run, const char *format, ...)
{
    va_list args;

    if (run->stats.error_lines >= ERROR_LINES) {
        run->stats.suppressed++;
        return;
    }
    run->stats.error_lines++;
    fprintf(stderr, "%s: ", tool_name);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

static void latency_add(struct latency *lat, int64_t ns)
{
    uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;

    if (us > lat->max_us)
        lat->max_us = us;
    if (us > UINT32_MAX)
        us = UINT32_MAX;
    lat->seen++;
    if (lat->count < LATENCY_SAMPLES) {
        lat->us[lat->count++] = (uint32_t)us;
        return;
    }
    // reservoir sampling: the i-th sample replaces a random one with probability size/i
    uint64_t j = splitmix64(&lat->rng) % lat->seen;
    if (j < LATENCY_SAMPLES)
        lat->us[j] = (uint32_t)us;
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t latency_percentile(const struct latency *lat, double p)
{
    if (lat->count == 0)
        return 0;
    size_t i = (size_t)(p * (double)(lat->count - 1) + 0.5);
    return lat->us[i];
}

// ---- connections ----------------------------------------------------------------------------

static void conn_watch(struct run *run, struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(run->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
        report(run, "conn %u: epoll_ctl: %s", c->index, strerror(errno));
    c->events = events;
}

static void conn_release(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->out);
    free(c->packed);
    free(c->times);
    c->out = c->packed = NULL;
    c->times = NULL;
    c->out_cap = c->times_cap = 0;
}

// The connection is over: it leaves the count of those the run waits for.
static void conn_finish(struct run *run, struct conn *c, enum conn_state state, const char *why)
{
    bool was_active = c->state != CONN_HELD;

    if (c->state == CONN_CONNECTING)
        run->connecting--;
    if (c->state == CONN_HELD)
        run->held--;
    if (run->opt->verbose)
        log_line("conn %u: %s (%s, %llu sent, %llu replies checked)", c->index,
                 state == CONN_FAILED ? "failed" : "closed", why, (unsigned long long)c->sent,
                 (unsigned long long)c->verified);
    c->state = state;
    conn_release(c);
    if (was_active)
        run->active--;
}

static void conn_error(struct run *run, struct conn *c, const char *what)
{
    run->stats.errors++;
    report(run, "conn %u: %s (%s, %llu sent, %llu replies checked)", c->index, what,
           conn_state_name(c->state), (unsigned long long)c->sent, (unsigned long long)c->verified);
    conn_finish(run, c, CONN_FAILED, what);
}

static void conn_mismatch(struct run *run, struct conn *c)
{
    run->stats.mismatches++;
    conn_finish(run, c, CONN_FAILED, "mismatch");
}

static int conn_reserve(struct conn *c, uint64_t need)
{
    if (need <= c->out_cap)
        return 0;
    uint64_t cap = c->out_cap ? c->out_cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (p == NULL)
        return -1;
    c->out = p;
    c->out_cap = (uint32_t)cap;
    return 0;
}

static int times_push(struct conn *c, int64_t t)
{
    if (c->times_count == c->times_cap) {
        uint32_t cap = c->times_cap ? c->times_cap * 2 : 1;
        int64_t *p = malloc(sizeof *p * cap);
        if (p == NULL)
            return -1;
        for (uint32_t i = 0; i < c->times_count; i++)
            p[i] = c->times[(c->times_head + i) % c->times_cap];
        free(c->times);
        c->times = p;
        c->times_cap = cap;
        c->times_head = 0;
    }
    c->times[(c->times_head + c->times_count) % c->times_cap] = t;
    c->times_count++;
    return 0;
}

static bool conn_may_start(const struct run *run, const struct conn *c)
{
    return c->state == CONN_RUNNING && !run->stop_new &&
           (run->opt->unlimited || c->sent < run->opt->messages);
}

// Append the next message to the output. Returns 0, or -1 out of memory.
static int conn_append(struct run *run, struct conn *c, int64_t now)
{
    const struct options *opt = run->opt;
    uint32_t size = message_size(opt, c->index, c->sent);
    struct body_gen g;

    gen_start(&g, opt, c->index, c->sent);
    if (opt->raw) {
        if (conn_reserve(c, (uint64_t)c->out_len + size) < 0)
            return -1;
        gen_fill(&g, c->out + c->out_len, size);
        c->out_len += size;
    } else if (!opt->compress) {
        if (conn_reserve(c, (uint64_t)c->out_len + PROTO_HEADER_BYTES + size) < 0)
            return -1;
        proto_put_header(c->out + c->out_len, 0, size, 0);
        gen_fill(&g, c->out + c->out_len + PROTO_HEADER_BYTES, size);
        c->out_len += PROTO_HEADER_BYTES + size;
    } else {
        if (conn_reserve(c, (uint64_t)c->out_len + PROTO_HEADER_BYTES + lz4_compress_bound(size)) <
            0)
            return -1;
        gen_fill(&g, run->plain, size);
        uint8_t *frame = c->out + c->out_len;
        size_t packed = lz4_compress(run->plain, size, frame + PROTO_HEADER_BYTES);
        proto_put_header(frame, PROTO_FLAG_LZ4, size, (uint32_t)packed);
        c->out_len += (uint32_t)(PROTO_HEADER_BYTES + packed);
    }
    if (!opt->no_replies && times_push(c, now) < 0)
        return -1;
    c->sent++;
    c->sent_body += size;
    c->out_msgs++;
    c->out_body += size;
    return 0;
}

// Refill the (empty) output: one message in pingpong once the last reply is in; in oneway as
// many as fit in a batch and in the window (always one when nothing is in flight).
static int conn_refill(struct run *run, struct conn *c)
{
    const struct options *opt = run->opt;
    int64_t now = 0;

    c->out_len = c->out_pos = c->out_msgs = 0;
    c->out_body = 0;
    while (conn_may_start(run, c)) {
        uint64_t in_flight = c->sent_body - c->got_body;
        if (opt->mode == MODE_PINGPONG && c->sent > c->verified)
            break;
        if (opt->mode == MODE_ONEWAY && c->out_len > 0 && c->out_len >= SEND_BATCH_BYTES)
            break;
        if (opt->mode == MODE_ONEWAY && !opt->no_replies && in_flight > 0 &&
            in_flight + message_size(opt, c->index, c->sent) > opt->window)
            break;
        if (now == 0)
            now = clock_ns(); // one clock per batch: the time it is handed to send()
        if (conn_append(run, c, now) < 0)
            return -1;
    }
    return 0;
}

// Everything sent and every reply in: the connection is done, one way or another.
static void conn_check_done(struct run *run, struct conn *c)
{
    const struct options *opt = run->opt;

    if (c->state != CONN_RUNNING || conn_may_start(run, c) || c->out_pos < c->out_len)
        return;
    if (!opt->no_replies && c->verified < c->sent)
        return;
    if (opt->until_closed) {
        c->state = CONN_WAIT_CLOSE;
        conn_watch(run, c, EPOLLIN);
    } else if (opt->hold_s > 0) {
        c->state = CONN_HELD;
        conn_watch(run, c, EPOLLIN);
        run->held++;
        run->active--;
    } else {
        conn_finish(run, c, CONN_CLOSED, "done");
    }
}

// Send until the socket is full or there is nothing (more) to send; one send() per message in
// pingpong. EPOLLOUT is watched only while bytes wait for room.
static void conn_send(struct run *run, struct conn *c)
{
    while (c->state == CONN_RUNNING) {
        if (c->out_pos == c->out_len) {
            if (conn_refill(run, c) < 0) {
                conn_error(run, c, "out of memory");
                return;
            }
            if (c->out_len == 0)
                break;
        }
        ssize_t n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_watch(run, c, EPOLLIN | EPOLLOUT);
                return;
            }
            char what[128];
            snprintf(what, sizeof what, "send: %s", strerror(errno));
            conn_error(run, c, what);
            return;
        }
        c->out_pos += (uint32_t)n;
        if (c->out_pos == c->out_len && run->opt->no_replies) {
            run->stats.messages += c->out_msgs; // --no-replies counts what the kernel took
            run->stats.bytes += c->out_body;
        }
    }
    if (c->state == CONN_RUNNING)
        conn_watch(run, c, EPOLLIN);
    conn_check_done(run, c);
}

// ---- checking replies -----------------------------------------------------------------------

// Compare n received body bytes, starting at body offset `at`, with the message sent. In
// pingpong (uncompressed) the output still holds it, the only message in it; otherwise the
// generator makes it again.
static bool body_matches(struct run *run, struct conn *c, const uint8_t *data, size_t n,
                         uint32_t at)
{
    const struct options *opt = run->opt;
    bool kept = opt->mode == MODE_PINGPONG && !opt->compress && c->out_msgs == 1 &&
                c->sent == c->verified + 1;
    const uint8_t *sent = kept ? c->out + (opt->raw ? 0 : PROTO_HEADER_BYTES) + at : NULL;

    while (n > 0) {
        size_t k = n < RECV_BUFFER_BYTES ? n : RECV_BUFFER_BYTES;
        const uint8_t *want = sent != NULL ? sent : run->expect;
        if (sent == NULL)
            gen_fill(&c->check, run->expect, k);
        if (memcmp(want, data, k) != 0) {
            size_t i = 0;
            while (want[i] == data[i])
                i++;
            report(run,
                   "conn %u message %llu: body byte %zu is 0x%02x, expected 0x%02x (lost, "
                   "repeated, reordered or corrupted)",
                   c->index, (unsigned long long)c->verified, at + i, data[i], want[i]);
            return false;
        }
        data += k;
        n -= k;
        at += (uint32_t)k;
        if (sent != NULL)
            sent += k;
    }
    return true;
}

static bool header_ok(struct run *run, struct conn *c)
{
    const struct options *opt = run->opt;
    uint8_t flags = c->header[0];
    uint32_t origin = get_u32_be(c->header + 1), packed = get_u32_be(c->header + 5);
    uint8_t want = opt->compress ? PROTO_FLAG_LZ4 : 0;

    if (flags != want) {
        report(run, "conn %u message %llu: reply header byte 0 (flags) is %u, expected %u",
               c->index, (unsigned long long)c->verified, flags, want);
        return false;
    }
    if (origin != c->reply_size) {
        report(run, "conn %u message %llu: reply header byte 1 (origin_size) says %u, expected %u",
               c->index, (unsigned long long)c->verified, origin, c->reply_size);
        return false;
    }
    if (opt->compress && (packed == 0 || packed > PROTO_MAX_BODY_BYTES)) {
        report(run, "conn %u message %llu: reply header byte 5 (compress_size) is %u, not 1..%u",
               c->index, (unsigned long long)c->verified, packed, PROTO_MAX_BODY_BYTES);
        return false;
    }
    c->wire_size = opt->compress ? packed : origin;
    if (opt->compress && (c->packed = malloc(packed)) == NULL) {
        report(run, "conn %u: out of memory for a %u-byte reply", c->index, packed);
        return false;
    }
    return true;
}

static bool packed_matches(struct run *run, struct conn *c)
{
    const char *why = lz4_decompress(c->packed, c->wire_size, run->plain, c->reply_size);

    free(c->packed);
    c->packed = NULL;
    if (why != NULL) {
        report(run, "conn %u message %llu: the reply does not decompress: %s", c->index,
               (unsigned long long)c->verified, why);
        return false;
    }
    return body_matches(run, c, run->plain, c->reply_size, 0);
}

static void reply_done(struct run *run, struct conn *c)
{
    int64_t now = clock_ns();

    latency_add(&run->lat, now - c->times[c->times_head]);
    c->times_head = (c->times_head + 1) % c->times_cap;
    c->times_count--;
    c->verified++;
    c->got_body += c->reply_size;
    run->stats.messages++;
    run->stats.bytes += c->reply_size;
    c->reply_started = false;
}

// Take n received bytes: headers, bodies, one reply after the other. Returns false on a
// mismatch (already reported).
static bool conn_feed(struct run *run, struct conn *c, const uint8_t *data, size_t n)
{
    const struct options *opt = run->opt;

    while (n > 0) {
        if (!c->reply_started) {
            if (opt->no_replies || c->verified == c->sent) {
                report(run, "conn %u: %zu bytes beyond the reply to its last message %llu",
                       c->index, n, (unsigned long long)c->sent);
                return false;
            }
            c->reply_started = true;
            c->reply_size = message_size(opt, c->index, c->verified);
            c->header_got = c->wire_got = 0;
            c->wire_size = c->reply_size; // --raw: no header says otherwise
            gen_start(&c->check, opt, c->index, c->verified);
        }
        if (!opt->raw && c->header_got < PROTO_HEADER_BYTES) {
            size_t k = PROTO_HEADER_BYTES - c->header_got;
            k = k < n ? k : n;
            memcpy(c->header + c->header_got, data, k);
            c->header_got += (uint32_t)k;
            data += k;
            n -= k;
            if (c->header_got == PROTO_HEADER_BYTES && !header_ok(run, c))
                return false;
            continue;
        }
        size_t k = c->wire_size - c->wire_got;
        k = k < n ? k : n;
        if (opt->compress)
            memcpy(c->packed + c->wire_got, data, k);
        else if (!body_matches(run, c, data, k, c->wire_got))
            return false;
        c->wire_got += (uint32_t)k;
        data += k;
        n -= k;
        if (c->wire_got < c->wire_size)
            continue;
        if (opt->compress && !packed_matches(run, c))
            return false;
        reply_done(run, c);
    }
    return true;
}

// The server closed the connection (recv returned 0).
static void conn_eof(struct run *run, struct conn *c)
{
    char what[160];

    if (c->reply_started) {
        snprintf(what, sizeof what,
                 "server closed the connection in the middle of reply %llu "
                 "(%u of its %u body bytes in)",
                 (unsigned long long)c->verified, c->wire_got, c->wire_size);
        conn_error(run, c, what);
    } else if (run->opt->until_closed) {
        run->stats.closed_by_server++;
        conn_finish(run, c, CONN_CLOSED, "closed by the server");
    } else if (c->state == CONN_HELD) {
        conn_error(run, c, "server closed the connection during the hold");
    } else {
        snprintf(what, sizeof what, "server closed the connection with %llu replies due",
                 (unsigned long long)(c->sent - c->verified));
        conn_error(run, c, what);
    }
}

static void conn_read(struct run *run, struct conn *c)
{
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = recv(c->fd, run->rbuf, RECV_BUFFER_BYTES, 0);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            char what[128];
            snprintf(what, sizeof what, "recv: %s", strerror(errno));
            conn_error(run, c, what);
            return;
        }
        if (n == 0) {
            conn_eof(run, c);
            return;
        }
        if (!conn_feed(run, c, run->rbuf, (size_t)n)) {
            conn_mismatch(run, c);
            return;
        }
        if ((size_t)n < RECV_BUFFER_BYTES)
            break; // a short read: the socket is (almost surely) empty, skip the EAGAIN call
    }
    if (c->state == CONN_RUNNING && c->out_pos == c->out_len)
        conn_send(run, c); // replies in: the next message, or more of the window
    else
        conn_check_done(run, c);
}

static void conn_start(struct run *run, struct conn *c)
{
    int one = 1;

    c->state = CONN_CONNECTING;
    run->connecting++;
    c->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd == -1) {
        char what[128];
        snprintf(what, sizeof what, "socket: %s", strerror(errno));
        conn_error(run, c, what);
        return;
    }
    // No Nagle: a pingpong message must leave at once, not wait for the previous one's ACK.
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)&run->addr, run->addr_len) == -1 &&
        errno != EINPROGRESS) {
        char what[sizeof run->target + 128];
        snprintf(what, sizeof what, "connect to %s: %s", run->target, strerror(errno));
        conn_error(run, c, what);
        return;
    }
    // EPOLLOUT says the connect finished, either way; SO_ERROR says which way.
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(run->epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
        char what[128];
        snprintf(what, sizeof what, "epoll_ctl: %s", strerror(errno));
        conn_error(run, c, what);
        return;
    }
    c->events = EPOLLOUT;
}

static void conn_connected(struct run *run, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        char what[sizeof run->target + 128];
        snprintf(what, sizeof what, "connect to %s: %s", run->target, strerror(err));
        conn_error(run, c, what);
        return;
    }
    run->connecting--;
    run->stats.connected++;
    c->state = CONN_RUNNING;
    if (run->opt->verbose)
        log_line("conn %u: connected to %s", c->index, run->target);
    conn_send(run, c);
}

static void conn_event(struct run *run, struct conn *c, uint32_t events)
{
    if (c->state == CONN_CONNECTING) {
        conn_connected(run, c);
        return;
    }
    // errors and hang-ups are read: recv() says what happened (EOF, ECONNRESET)
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_read(run, c);
    if ((events & EPOLLOUT) && c->state == CONN_RUNNING)
        conn_send(run, c);
}

// ---- the run --------------------------------------------------------------------------------

static void start_connects(struct run *run)
{
    while (run->next_start < run->opt->conns && run->connecting < CONNECTS_IN_FLIGHT)
        conn_start(run, &run->conns[run->next_start++]);
}

static void report_timeout(struct run *run)
{
    uint64_t due = 0, unfinished = 0;

    for (uint32_t i = 0; i < run->opt->conns; i++) {
        const struct conn *c = &run->conns[i];
        if (c->state == CONN_CLOSED || c->state == CONN_FAILED || c->state == CONN_HELD)
            continue;
        unfinished++;
        due += c->sent - c->verified;
    }
    run->stats.errors++;
    report(run,
           "timed out after %llu s: %llu connections unfinished (%u still connecting, %llu "
           "never started), %llu replies due",
           (unsigned long long)run->opt->timeout_s, (unsigned long long)unfinished, run->connecting,
           (unsigned long long)(run->opt->conns - run->next_start), (unsigned long long)due);
}

static int64_t process_cpu_ticks(uint64_t pid);
static int64_t self_cpu_us(void);

// The messages are over (the hold, if any, is not measured): note the time and the CPU used.
static void run_mark_end(struct run *run, int64_t now)
{
    run->end_ns = now;
    run->end_cpu_us = self_cpu_us();
    run->server_end_ticks = run->opt->server_pid ? process_cpu_ticks(run->opt->server_pid) : -1;
}

static int64_t ms_until(int64_t now, int64_t then)
{
    return then <= now ? 0 : (then - now + 999999) / 1000000;
}

// The loop: one epoll_wait per turn over every connection, until every connection is done,
// the hold is over, or the timeout strikes.
static void run_loop(struct run *run)
{
    struct epoll_event events[EVENTS_PER_WAIT];
    int64_t hold_end = 0;

    for (;;) {
        start_connects(run);
        int64_t now = clock_ns();
        if (run->active == 0 && run->next_start == run->opt->conns && hold_end == 0) {
            run_mark_end(run, now);
            if (run->held == 0)
                return;
            hold_end = now + (int64_t)run->opt->hold_s * 1000000000;
            printf("loadgen: holding %u connections\n", run->held);
            fflush(stdout);
        }
        if (hold_end != 0 && now >= hold_end)
            return;
        if (hold_end == 0 && now >= run->deadline_ns) {
            run->timed_out = true;
            run_mark_end(run, now);
            report_timeout(run);
            return;
        }
        if (run->duration_end_ns != 0 && now >= run->duration_end_ns && !run->stop_new) {
            // No new messages from here on. Connections waiting for replies finish when they
            // come; only the idle ones need telling (in oneway with --no-replies, all are).
            run->stop_new = true;
            for (uint32_t i = 0; i < run->next_start; i++)
                if (run->conns[i].state == CONN_RUNNING)
                    conn_check_done(run, &run->conns[i]);
            continue;
        }
        int64_t wake = hold_end != 0 ? hold_end : run->deadline_ns;
        if (!run->stop_new && run->duration_end_ns != 0 && run->duration_end_ns < wake)
            wake = run->duration_end_ns;
        int n = epoll_wait(run->epfd, events, EVENTS_PER_WAIT, (int)ms_until(now, wake));
        if (n == -1 && errno != EINTR) {
            run->stats.errors++;
            report(run, "epoll_wait: %s", strerror(errno));
            run_mark_end(run, clock_ns());
            return;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd >= 0) // closed earlier in this turn? its event is stale
                conn_event(run, c, events[i].events);
        }
    }
}

// ---- the proxy ------------------------------------------------------------------------------

struct proxy {
    pid_t pid;
    int out_fd; // its stdout: the "listening on" line, then kept open until it is stopped
};

// Start tools/chunkproxy (next to this binary) in front of host:port, and learn its address.
// Returns 0 with *host_out and *port_out set (host_out has NI_MAXHOST bytes), or -1.
static int proxy_start(struct proxy *p, const struct options *opt, char *host_out,
                       uint64_t *port_out)
{
    char self[4096], upstream[NI_MAXHOST + 16], seed[24], delay[24];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 16);
    int pipe_fds[2];

    if (len <= 0) {
        log_line("readlink /proc/self/exe: %s", len == 0 ? "empty" : strerror(errno));
        return -1;
    }
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    strcpy(slash != NULL ? slash + 1 : self, "chunkproxy");
    if (access(self, X_OK) != 0) {
        log_line("%s: %s (build it: make -C tools chunkproxy)", self, strerror(errno));
        return -1;
    }
    snprintf(upstream, sizeof upstream, "%s:%llu", opt->host, (unsigned long long)opt->port);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)opt->seed);
    snprintf(delay, sizeof delay, "%llu", (unsigned long long)opt->proxy_delay_ms);
    char *argv[] = {
        self,     "--upstream", upstream,     "--port", "0", "--chunk", (char *)opt->via_proxy,
        "--seed", seed,         "--delay-ms", delay,    NULL};
    if (opt->proxy_delay_ms == 0)
        argv[9] = NULL;
    if (pipe2(pipe_fds, O_CLOEXEC) == -1) {
        log_line("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    p->pid = fork();
    if (p->pid == -1) {
        log_line("fork: %s", strerror(errno));
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return -1;
    }
    if (p->pid == 0) {
        dup2(pipe_fds[1], STDOUT_FILENO); // dup2 clears O_CLOEXEC on the copy
        execv(self, argv);
        fprintf(stderr, "loadgen: exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    close(pipe_fds[1]);
    p->out_fd = pipe_fds[0];

    char line[256] = "";
    size_t got = 0;
    int64_t give_up = clock_ms() + PROXY_START_MS;
    while (got < sizeof line - 1 && memchr(line, '\n', got) == NULL) {
        struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
        int64_t left = give_up - clock_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            log_line("chunkproxy did not say 'listening on' within %d ms", PROXY_START_MS);
            return -1;
        }
        ssize_t n = read(p->out_fd, line + got, sizeof line - 1 - got);
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_line("chunkproxy exited before saying 'listening on'");
            return -1;
        }
        got += (size_t)n;
    }
    line[got] = '\0';
    char *colon = strrchr(line, ':');
    if (strncmp(line, "listening on ", 13) != 0 || colon == NULL ||
        (size_t)(colon - line - 13) >= NI_MAXHOST) {
        log_line("chunkproxy said '%.*s', not 'listening on HOST:PORT'", (int)strcspn(line, "\n"),
                 line);
        return -1;
    }
    *colon = '\0';
    colon[1 + strcspn(colon + 1, "\n")] = '\0';
    strcpy(host_out, line + 13);
    return options_number("chunkproxy's port", colon + 1, 1, MAX_PORT, port_out);
}

// SIGTERM, then SIGKILL if it has not gone within PROXY_STOP_MS.
static void proxy_stop(struct proxy *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    int64_t give_up = clock_ms() + PROXY_STOP_MS;
    while (waitpid(p->pid, NULL, WNOHANG) == 0) {
        if (clock_ms() >= give_up) {
            log_line("chunkproxy (pid %d) ignored SIGTERM: killed", (int)p->pid);
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            break;
        }
        struct timespec tick = {.tv_nsec = 10000000};
        nanosleep(&tick, NULL);
    }
    p->pid = 0;
    if (p->out_fd >= 0)
        close(p->out_fd);
}

// ---- measurements ---------------------------------------------------------------------------

// The CPU time (user + system) process pid has used, in clock ticks; -1 if unreadable.
static int64_t process_cpu_ticks(uint64_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%llu/stat", (unsigned long long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    // The command name in parentheses may hold spaces: count fields after the last ')'.
    const char *p = strrchr(text, ')');
    unsigned long long utime, stime;
    if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                            &stime) != 2)
        return -1;
    return (int64_t)(utime + stime);
}

static int64_t self_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

// ---- options --------------------------------------------------------------------------------

static void options_usage(FILE *out)
{
    fprintf(
        out,
        "usage: loadgen --port P [--host H] [--conns N] [--mode pingpong|oneway]\n"
        "         [--size B | --size MIN-MAX] [--compress | --raw] [--messages N]\n"
        "         [--duration SEC] [--timeout SEC] [--window BYTES] [--seed S]\n"
        "         [--via-proxy CHUNKSPEC [--proxy-delay-ms MS]] [--no-replies]\n"
        "         [--until-closed | --hold SEC] [--server-pid PID] [-v]\n"
        "Drives an echo server with N connections and checks every byte of every reply.\n"
        "  --host H, --port P  the server (default host %s)\n"
        "  --conns N           connections, 1..%u (default 1); at most %d connect at once\n"
        "  --mode pingpong     each connection sends a message, waits for its reply (default)\n"
        "  --mode oneway       each connection keeps --window body bytes in flight\n"
        "  --size B, MIN-MAX   body bytes, 1..%u (default %u); a range: drawn per message\n"
        "  --compress          send LZ4 bodies (flags 1); replies must be LZ4 too\n"
        "  --raw               no protocol header: plain bytes, for lesson 4's echo server\n"
        "  --messages N        per connection (default %u; 0: connect only, with --hold or\n"
        "                      --until-closed; no limit if only --duration is given)\n"
        "  --duration SEC      start no new message after SEC s, then collect the replies\n"
        "  --timeout SEC       give up after SEC s (the hold aside), say what is due, exit 1\n"
        "                      (default %u)\n"
        "  --window BYTES      oneway: body bytes in flight per connection (default %u)\n"
        "  --seed S            seed of the bodies and sizes (default 1)\n"
        "  --via-proxy SPEC    go through tools/chunkproxy --chunk SPEC (found next to loadgen)\n"
        "  --proxy-delay-ms MS and its --delay-ms\n"
        "  --no-replies        oneway only: expect no replies (tools/sink); count bytes sent\n"
        "  --until-closed      run until the server closes each connection; an EOF between\n"
        "                      replies is then the expected end, not an error\n"
        "  --hold SEC          keep every connection open SEC s after its messages, after\n"
        "                      printing 'loadgen: holding N connections'\n"
        "  --server-pid PID    also report the server's CPU time per message\n"
        "  -v, --verbose       one line per connect, close and error\n"
        "Prints a sentence and a 'result key=value ...' line. Exit status: 0 every reply\n"
        "right, 1 an error or a mismatch, 2 bad usage.\n",
        DEFAULT_HOST, MAX_CONNS, CONNECTS_IN_FLIGHT, PROTO_MAX_BODY_BYTES, DEFAULT_SIZE_BYTES,
        DEFAULT_MESSAGES, DEFAULT_TIMEOUT_S, DEFAULT_WINDOW_BYTES);
}

// --size B or MIN-MAX. Returns 0, or -1 after one line.
static int options_size(const char *text, struct options *opt)
{
    const char *dash = strchr(text, '-');
    if (dash == NULL) {
        if (options_number("--size", text, 1, PROTO_MAX_BODY_BYTES, &opt->size_min) < 0)
            return -1;
        opt->size_max = opt->size_min;
        return 0;
    }
    char low[32];
    if ((size_t)(dash - text) >= sizeof low) {
        log_line("--size wants B or MIN-MAX, not '%s'", text);
        return -1;
    }
    memcpy(low, text, (size_t)(dash - text));
    low[dash - text] = '\0';
    if (options_number("--size", low, 1, PROTO_MAX_BODY_BYTES, &opt->size_min) < 0 ||
        options_number("--size", dash + 1, 1, PROTO_MAX_BODY_BYTES, &opt->size_max) < 0)
        return -1;
    if (opt->size_min > opt->size_max) {
        log_line("--size %s: MIN is more than MAX", text);
        return -1;
    }
    return 0;
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"conns", required_argument, NULL, 'c'},
        {"mode", required_argument, NULL, 'm'},
        {"size", required_argument, NULL, 's'},
        {"compress", no_argument, NULL, 'z'},
        {"raw", no_argument, NULL, 'r'},
        {"messages", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"timeout", required_argument, NULL, 't'},
        {"window", required_argument, NULL, 'w'},
        {"seed", required_argument, NULL, 'S'},
        {"via-proxy", required_argument, NULL, 'P'},
        {"proxy-delay-ms", required_argument, NULL, 'D'},
        {"no-replies", no_argument, NULL, 'N'},
        {"until-closed", no_argument, NULL, 'u'},
        {"hold", required_argument, NULL, 'o'},
        {"server-pid", required_argument, NULL, 'i'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool has_port = false, has_messages = false, has_window = false, has_delay = false;
    int c;

    opterr = 0; // with the leading ':', getopt_long reports problems to us instead of printing
    while ((c = getopt_long(argc, argv, ":H:p:c:m:s:zrn:d:t:w:S:P:D:Nuo:i:vh", long_options,
                            NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'H': opt->host = optarg; break;
        case 'p':
            rc = options_number("--port", optarg, 1, MAX_PORT, &opt->port);
            has_port = true;
            break;
        case 'c': rc = options_number("--conns", optarg, 1, MAX_CONNS, &opt->conns); break;
        case 'm':
            if (strcmp(optarg, "pingpong") == 0) {
                opt->mode = MODE_PINGPONG;
            } else if (strcmp(optarg, "oneway") == 0) {
                opt->mode = MODE_ONEWAY;
            } else {
                log_line("--mode wants pingpong or oneway, not '%s'", optarg);
                rc = -1;
            }
            break;
        case 's': rc = options_size(optarg, opt); break;
        case 'z': opt->compress = true; break;
        case 'r': opt->raw = true; break;
        case 'n':
            rc = options_number("--messages", optarg, 0, UINT32_MAX, &opt->messages);
            has_messages = true;
            break;
        case 'd':
            rc = options_number("--duration", optarg, 1, MAX_SECONDS, &opt->duration_s);
            break;
        case 't': rc = options_number("--timeout", optarg, 1, MAX_SECONDS, &opt->timeout_s); break;
        case 'w':
            rc = options_number("--window", optarg, 1, MAX_WINDOW_BYTES, &opt->window);
            has_window = true;
            break;
        case 'S': rc = options_number("--seed", optarg, 0, UINT64_MAX, &opt->seed); break;
        case 'P': opt->via_proxy = optarg; break;
        case 'D':
            rc = options_number("--proxy-delay-ms", optarg, 0, MAX_SECONDS * 1000,
                                &opt->proxy_delay_ms);
            has_delay = true;
            break;
        case 'N': opt->no_replies = true; break;
        case 'u': opt->until_closed = true; break;
        case 'o': rc = options_number("--hold", optarg, 1, MAX_SECONDS, &opt->hold_s); break;
        case 'i': rc = options_number("--server-pid", optarg, 1, MAX_PID, &opt->server_pid); break;
        case 'v': opt->verbose = true; break;
        case 'h': options_usage(stdout); return 0;
        case ':': log_line("option '%s' needs a value (try --help)", argv[optind - 1]); return 2;
        default: log_line("bad option '%s' (try --help)", argv[optind - 1]); return 2;
        }
        if (rc < 0)
            return 2;
    }
    opt->unlimited = opt->duration_s > 0 && !has_messages;
    if (optind < argc)
        log_line("unexpected argument '%s' (try --help)", argv[optind]);
    else if (!has_port)
        log_line("--port P is required (try --help)");
    else if (opt->compress && opt->raw)
        log_line("--compress and --raw do not mix: --raw sends no header to say flags 1");
    else if (opt->no_replies && opt->mode != MODE_ONEWAY)
        log_line("--no-replies needs --mode oneway");
    else if (has_window && opt->mode != MODE_ONEWAY)
        log_line("--window needs --mode oneway");
    else if (opt->until_closed && opt->hold_s > 0)
        log_line("--until-closed and --hold do not mix");
    else if (has_messages && opt->messages == 0 && opt->hold_s == 0 && !opt->until_closed)
        log_line("--messages 0 needs --hold or --until-closed");
    else if (has_delay && opt->via_proxy == NULL)
        log_line("--proxy-delay-ms needs --via-proxy");
    else
        return -1;
    return 2;
}

// ---- main -----------------------------------------------------------------------------------

static int resolve(struct run *run, const char *host, uint64_t port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    char service[16];

    snprintf(service, sizeof service, "%llu", (unsigned long long)port);
    int rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        log_line("%s: %s", host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    memcpy(&run->addr, list->ai_addr, list->ai_addrlen);
    run->addr_len = list->ai_addrlen;
    freeaddrinfo(list);
    snprintf(run->target, sizeof run->target, "%s port %s", host, service);
    return 0;
}

static void print_result(const struct run *run, double cpu_pct, double server_us_per_msg)
{
    const struct options *opt = run->opt;
    const struct stats *st = &run->stats;
    double seconds = (double)(run->end_ns - run->start_ns) / 1e9;
    char size[48], server[32];
    const char *mode = opt->mode == MODE_PINGPONG ? "pingpong" : "oneway";
    const char *kind = opt->raw ? "stream" : opt->compress ? "lz4" : "raw";

    if (opt->size_min == opt->size_max)
        snprintf(size, sizeof size, "%llu", (unsigned long long)opt->size_min);
    else
        snprintf(size, sizeof size, "%llu-%llu", (unsigned long long)opt->size_min,
                 (unsigned long long)opt->size_max);
    if (seconds <= 0)
        seconds = 1e-9;
    double msg_per_s = (double)st->messages / seconds, mb_per_s = (double)st->bytes / seconds / 1e6;
    uint64_t p50 = latency_percentile(&run->lat, 0.50), p99 = latency_percentile(&run->lat, 0.99);
    if (server_us_per_msg >= 0)
        snprintf(server, sizeof server, "%.2f", server_us_per_msg);
    else
        snprintf(server, sizeof server, "-");

    printf("loadgen: %llu conns, %s, %s bytes, %s: %llu messages, %llu bytes in %.2f s: %.0f "
           "msg/s, %.2f MB/s, latency p50 %llu us, p99 %llu us, max %llu us; %llu errors",
           (unsigned long long)opt->conns, mode, size, kind, (unsigned long long)st->messages,
           (unsigned long long)st->bytes, seconds, msg_per_s, mb_per_s, (unsigned long long)p50,
           (unsigned long long)p99, (unsigned long long)run->lat.max_us,
           (unsigned long long)st->errors);
    if (st->mismatches > 0)
        printf(", %llu mismatches", (unsigned long long)st->mismatches);
    if (opt->until_closed)
        printf("; %llu connections closed by the server", (unsigned long long)st->closed_by_server);
    printf("\n");
    printf("result conns=%llu mode=%s size=%s compress=%d raw=%d messages=%llu bytes=%llu "
           "seconds=%.3f msg_per_s=%.0f mb_per_s=%.2f p50_us=%llu p99_us=%llu max_us=%llu "
           "errors=%llu mismatches=%llu closed_by_server=%llu loadgen_cpu_pct=%.0f "
           "server_cpu_us_per_msg=%s\n",
           (unsigned long long)opt->conns, mode, size, opt->compress, opt->raw,
           (unsigned long long)st->messages, (unsigned long long)st->bytes, seconds, msg_per_s,
           mb_per_s, (unsigned long long)p50, (unsigned long long)p99,
           (unsigned long long)run->lat.max_us, (unsigned long long)st->errors,
           (unsigned long long)st->mismatches, (unsigned long long)st->closed_by_server, cpu_pct,
           server);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct options opt = {.host = DEFAULT_HOST,
                          .conns = 1,
                          .size_min = DEFAULT_SIZE_BYTES,
                          .size_max = DEFAULT_SIZE_BYTES,
                          .messages = DEFAULT_MESSAGES,
                          .timeout_s = DEFAULT_TIMEOUT_S,
                          .window = DEFAULT_WINDOW_BYTES,
                          .seed = 1,
                          .mode = MODE_PINGPONG};
    struct run run = {.opt = &opt, .epfd = -1};
    struct proxy proxy = {.pid = 0, .out_fd = -1};
    int status = 1;

    tool_name = "loadgen";
    int rc = options_parse(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    text_init(opt.seed);
    if (raise_fd_limit() < opt.conns + 64)
        log_line("warning: the open-file limit is below %llu: some connections will fail",
                 (unsigned long long)opt.conns + 64);

    size_t plain_bytes = opt.compress ? opt.size_max : 1;
    run.conns = calloc(opt.conns, sizeof *run.conns);
    run.rbuf = malloc(RECV_BUFFER_BYTES);
    run.expect = malloc(RECV_BUFFER_BYTES);
    run.plain = malloc(plain_bytes);
    run.lat.us = malloc(sizeof *run.lat.us * LATENCY_SAMPLES);
    run.lat.rng = opt.seed;
    if (run.conns == NULL || run.rbuf == NULL || run.expect == NULL || run.plain == NULL ||
        run.lat.us == NULL) {
        log_line("out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < opt.conns; i++) {
        run.conns[i].fd = -1;
        run.conns[i].index = i;
    }
    if (opt.via_proxy != NULL) {
        char host[NI_MAXHOST];
        uint64_t port;
        if (proxy_start(&proxy, &opt, host, &port) < 0 || resolve(&run, host, port) < 0)
            goto out;
    } else if (resolve(&run, opt.host, opt.port) < 0) {
        goto out;
    }
    run.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (run.epfd == -1) {
        log_line("epoll_create1: %s", strerror(errno));
        goto out;
    }

    int64_t server_before = opt.server_pid ? process_cpu_ticks(opt.server_pid) : -1;
    if (opt.server_pid && server_before < 0)
        log_line("cannot read /proc/%llu/stat: no server CPU figures",
                 (unsigned long long)opt.server_pid);
    int64_t self_before = self_cpu_us();
    run.start_ns = clock_ns();
    run.deadline_ns = run.start_ns + (int64_t)opt.timeout_s * 1000000000;
    if (opt.duration_s > 0)
        run.duration_end_ns = run.start_ns + (int64_t)opt.duration_s * 1000000000;
    run.active = (uint32_t)opt.conns;

    run_loop(&run);

    // The figures cover the messages, not the hold: run_mark_end() took them when they ended.
    int64_t wall_ns = run.end_ns > run.start_ns ? run.end_ns - run.start_ns : 1;
    double cpu_pct = (double)(run.end_cpu_us - self_before) * 1000.0 / (double)wall_ns * 100.0;
    double server_us = -1;
    if (server_before >= 0 && run.server_end_ticks >= 0 && run.stats.messages > 0)
        server_us = (double)(run.server_end_ticks - server_before) * 1e6 /
                    (double)sysconf(_SC_CLK_TCK) / (double)run.stats.messages;
    qsort(run.lat.us, run.lat.count, sizeof *run.lat.us, compare_u32);
    for (uint32_t i = 0; i < opt.conns; i++)
        if (run.conns[i].fd >= 0)
            conn_release(&run.conns[i]);
    if (run.stats.suppressed > 0)
        log_line("and %llu more errors", (unsigned long long)run.stats.suppressed);
    print_result(&run, cpu_pct, server_us);
    status = run.stats.errors == 0 && run.stats.mismatches == 0 && !run.timed_out &&
                     run.stats.connected == opt.conns
                 ? 0
                 : 1;
out:
    proxy_stop(&proxy);
    if (run.conns != NULL)
        for (uint32_t i = 0; i < opt.conns; i++)
            conn_release(&run.conns[i]);
    if (run.epfd >= 0)
        close(run.epfd);
    free(run.conns);
    free(run.rbuf);
    free(run.expect);
    free(run.plain);
    free(run.lat.us);
    return status;
}
