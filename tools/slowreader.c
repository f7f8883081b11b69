/* slowreader.c -- a protocol peer that reads slowly, or never: the server's slow-reader problem */
//
// A server cannot make its clients read. Whatever it sends to a client that reads slowly, or
// not at all, piles up: first in that client's receive buffer, then in the server's send
// buffer, then (lesson 6) in the server's own output queue, which grows without bound unless
// the server caps it. This tool is that client. It sends --send messages of --size bytes in the
// lesson protocol and reads the replies, checking each one, in one of three ways:
//   --read-rate R     at most R bytes per second, a steady trickle;
//   --drip BYTES:MS   BYTES bytes, then nothing for MS milliseconds, and again: a slow drip, a
//                     reader that makes a little progress now and then, which a server timer
//                     that looks only for no progress at all does not catch (with MS below it);
//   --never-read      never: it never calls recv() and only watches whether the server gives
//                     up on it.
// (Without any of them it reads as fast as the replies come.)
//
// It prints one line on stdout (B counts every byte received, headers included):
//   slowreader: received M messages (B bytes) in X.X s, all intact
//   slowreader: server closed the connection after M messages (B bytes)   a FIN: recv() gave 0
//   slowreader: server reset the connection after M messages (B bytes)    a RST: ECONNRESET
//   slowreader: never read; server closed the connection after X.X s      FIN or RST alike
//   slowreader: never read; still open after X.X s
// Exit status: 0 done, 1 an error or a bad or missing message (one line on stderr), 2 bad usage;
// a closed or reset connection is 0 unless --expect replies were still missing.

#include "toolkit.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// The lesson protocol (toolkit.h): this tool sends, and accepts, flags 0 (a raw body) only.
#define DEFAULT_HOST            "127.0.0.1"
#define DEFAULT_SIZE_BYTES      1024u
#define DEFAULT_READ_FOR_S      10u
#define MAX_PORT                65535u
#define MAX_SEND                10000000u
#define MAX_RATE_BYTES_PER_S    1000000000u
#define MAX_READ_FOR_S          3600u
#define MAX_DRIP_BYTES          (1u << 30)
#define MAX_DRIP_MS             3600000u
#define NEVER_READ_RCVBUF_BYTES 4096
#define READ_BUFFER_BYTES       4096 // at most one recv(); also the depth of the token bucket
#define READ_MIN_BYTES          1024 // wait for this many tokens, rather than recv() byte by byte
#define CONNECT_TIMEOUT_S       10

struct options {
    const char *host;
    uint64_t port, send_count, size_bytes, read_rate, expect, read_for_s; // read_rate 0: no limit
    uint64_t rcvbuf; // --rcvbuf, 0: the kernel's default (autotuned)
    // --drip BYTES:MS; drip_bytes 0: no drip
    uint64_t drip_bytes, drip_ms;
    bool never_read, has_expect, verbose;
};

// The sending side: one whole frame at a time, handed to the kernel as fast as it takes it.
struct sender {
    uint8_t *frame;         // header and body of message `index`
    size_t frame_len, sent; // sent: bytes of this frame the kernel has taken
    uint64_t index, bytes;  // index == send_count: everything is sent
};

// The receiving side checks each body byte by byte as it arrives and stores nothing but the
// header: a 10 MiB reply costs no more memory than a short one.
struct receiver {
    uint8_t header[PROTO_HEADER_BYTES];
    size_t header_got;
    uint32_t body_len, body_got; // body_len is valid once the header is complete
    uint64_t messages, bytes;
    double tokens; // the token bucket: bytes we may read now
    int64_t refilled_ns;
    uint64_t drip_left;    // the drip: bytes still to read in this burst
    int64_t drip_until_ns; // the drip: no reading before this time (the pause)
};

// Named results of one I/O step; IO_ERROR and IO_BAD have already said why on stderr.
// IO_CLOSED is the server's FIN, IO_RESET its RST.
enum io_result { IO_OK, IO_CLOSED, IO_RESET, IO_ERROR, IO_BAD };

// Byte j of message i's body. Each message is the previous one shifted by one, so a lost,
// repeated or reordered message (within 256 of its place) shows up as a wrong byte.
static uint8_t pattern_byte(uint64_t msg, uint64_t j)
{
    return (uint8_t)((msg + j) & 0xff);
}

// The header never changes (same size, flags 0); only the body is rewritten per message.
static int sender_init(struct sender *s, const struct options *opt)
{
    uint32_t size = (uint32_t)opt->size_bytes;

    s->frame_len = PROTO_HEADER_BYTES + opt->size_bytes;
    if ((s->frame = calloc(1, s->frame_len)) == NULL) {
        log_line("out of memory for a %zu-byte frame", s->frame_len);
        return -1;
    }
    proto_put_header(s->frame, 0, size, 0);
    for (size_t j = 0; j < opt->size_bytes; j++)
        s->frame[PROTO_HEADER_BYTES + j] = pattern_byte(0, j);
    return 0;
}

// Send until the kernel says EAGAIN. Never blocking here is what keeps us from a deadlock
// against our own slow reading: with the server echoing, a blocked send() would wait for
// the server, which waits for us to read.
static enum io_result sender_step(int fd, struct sender *s, const struct options *opt)
{
    while (s->index < opt->send_count) {
        // MSG_NOSIGNAL: a server that closed on us means EPIPE, not a SIGPIPE that kills us.
        ssize_t n = send(fd, s->frame + s->sent, s->frame_len - s->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_OK; // not an error: POLLOUT says when there is room
        // send() may hear of a RST before recv() does (ECONNRESET, reported once). EPIPE: the
        // server sent its FIN first and reset us for writing on; the FIN was the end.
        if (n < 0 && errno == ECONNRESET)
            return IO_RESET;
        if (n < 0 && errno == EPIPE)
            return IO_CLOSED;
        if (n < 0) {
            log_line("send: %s", strerror(errno));
            return IO_ERROR;
        }
        s->sent += (size_t)n;
        s->bytes += (uint64_t)n;
        if (s->sent < s->frame_len)
            continue;
        s->sent = 0;
        if (++s->index < opt->send_count)
            for (size_t j = 0; j < opt->size_bytes; j++)
                s->frame[PROTO_HEADER_BYTES + j] = pattern_byte(s->index, j);
    }
    return IO_OK;
}

// A header is complete. Our own replies (--send > 0) must be flags 0 and --size bytes long;
// with --send 0 the messages come from others, so only the protocol's own rules apply.
static enum io_result receiver_check_header(struct receiver *r, const struct options *opt)
{
    uint64_t number = r->messages + 1;
    bool ours = opt->send_count > 0;

    r->body_len = get_u32_be(r->header + 1);
    if (r->header[0] != 0)
        log_line("message %llu: flags %u, expected 0 (raw)", (unsigned long long)number,
                 r->header[0]);
    else if (r->body_len == 0 || r->body_len > PROTO_MAX_BODY_BYTES)
        log_line("message %llu: origin_size %u, expected 1..%u", (unsigned long long)number,
                 r->body_len, PROTO_MAX_BODY_BYTES);
    else if (ours && r->messages >= opt->send_count)
        log_line("message %llu: more replies than the %llu messages sent",
                 (unsigned long long)number, (unsigned long long)opt->send_count);
    else if (ours && r->body_len != opt->size_bytes)
        log_line("message %llu: body of %u bytes, expected %llu", (unsigned long long)number,
                 r->body_len, (unsigned long long)opt->size_bytes);
    else
        return IO_OK;
    return IO_BAD;
}

// Take n received bytes: complete the header, then check the body as it comes.
static enum io_result receiver_feed(struct receiver *r, const struct options *opt,
                                    const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r->header_got < PROTO_HEADER_BYTES) {
            r->header[r->header_got++] = data[i];
            if (r->header_got == PROTO_HEADER_BYTES && receiver_check_header(r, opt) != IO_OK)
                return IO_BAD;
            continue;
        }
        uint8_t want = pattern_byte(r->messages, r->body_got);
        if (opt->send_count > 0 && data[i] != want) {
            log_line("message %llu: body byte %u is 0x%02x, expected 0x%02x (lost, reordered "
                     "or corrupted)",
                     (unsigned long long)r->messages + 1, r->body_got, data[i], want);
            return IO_BAD;
        }
        if (++r->body_got == r->body_len) { // a whole message: start on the next header
            r->messages++;
            r->header_got = 0;
            r->body_got = 0;
        }
    }
    return IO_OK;
}

// The token bucket: --read-rate bytes per second flow in, up to READ_BUFFER_BYTES; each byte
// read takes one out. The depth bounds the burst after a pause.
static double bucket_depth(const struct options *opt)
{
    return opt->read_rate < READ_BUFFER_BYTES ? (double)opt->read_rate : READ_BUFFER_BYTES;
}

static void bucket_refill(struct receiver *r, const struct options *opt, int64_t now)
{
    r->tokens += (double)opt->read_rate * (double)(now - r->refilled_ns) / 1e9;
    if (r->tokens > bucket_depth(opt))
        r->tokens = bucket_depth(opt);
    r->refilled_ns = now;
}

// The drip: n bytes read come off the burst. The last byte of a burst starts the pause, so
// for MS the reader takes nothing at all.
static void drip_take(struct receiver *r, const struct options *opt, uint64_t n)
{
    if (n < r->drip_left) {
        r->drip_left -= n;
        return;
    }
    r->drip_left = opt->drip_bytes;
    r->drip_until_ns = clock_ns() + (int64_t)opt->drip_ms * 1000000;
}

// How long the reading mode says to wait before the next read, 0 to read now: until the bucket
// holds `want` tokens (rounded up, so never too early), or until the drip's pause is over.
static int64_t receiver_pause_ns(const struct receiver *r, const struct options *opt, int64_t now,
                                 double want)
{
    if (opt->read_rate > 0 && r->tokens < want)
        return 1 + (int64_t)((want - r->tokens) * 1e9 / (double)opt->read_rate);
    if (opt->drip_bytes > 0 && r->drip_until_ns > now)
        return r->drip_until_ns - now;
    return 0;
}

// How much the next read may take: what the bucket holds, what is left of the burst, or all.
static size_t receiver_budget(const struct receiver *r, const struct options *opt)
{
    if (opt->read_rate > 0)
        return (size_t)r->tokens;
    if (opt->drip_bytes > 0)
        return (size_t)r->drip_left;
    return SIZE_MAX;
}

// Read once, at most `budget` bytes. A FIN and a RST both end the stream, but they are not the
// same news: a FIN says the server sent all it meant to; a RST may have thrown away replies it
// had already queued for us.
static enum io_result receiver_step(int fd, struct receiver *r, const struct options *opt,
                                    size_t budget)
{
    uint8_t buf[READ_BUFFER_BYTES];
    ssize_t n;

    do
        n = recv(fd, buf, budget < sizeof buf ? budget : sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return IO_OK;
    if (n == 0)
        return IO_CLOSED;
    if (n < 0 && errno == ECONNRESET)
        return IO_RESET;
    if (n < 0) {
        log_line("recv: %s", strerror(errno));
        return IO_ERROR;
    }
    r->bytes += (uint64_t)n;
    r->tokens -= (double)n;
    if (opt->drip_bytes > 0)
        drip_take(r, opt, (uint64_t)n);
    return receiver_feed(r, opt, buf, (size_t)n);
}

// Setup: a blocking connect, bounded, then a non-blocking socket. A small receive buffer for
// --never-read, so the server's output backs up after a few KB instead of the megabyte or so
// autotuning would grant (tcp_connect sets it before connect(): the window scale is agreed in
// the SYN and cannot shrink afterwards). Returns the fd, or -1 after one line on stderr.
static int connect_to(const struct options *opt)
{
    int rcvbuf = opt->never_read ? NEVER_READ_RCVBUF_BYTES : (int)opt->rcvbuf;
    return tcp_connect(opt->host, opt->port, CONNECT_TIMEOUT_S * 1000, rcvbuf, true);
}

enum outcome { RUNNING, DONE, TIMED_OUT, CLOSED, RESET, FAILED };

// The loop: send while the socket takes it, read when the bucket or the drip allows, until
// --expect messages are in, the server closes, or --read-for runs out. Every poll() is bounded
// by it.
static enum outcome run(int fd, const struct options *opt, struct sender *s, struct receiver *r,
                        int64_t start)
{
    int64_t deadline = start + (int64_t)opt->read_for_s * 1000000000;
    double want = bucket_depth(opt) < READ_MIN_BYTES ? bucket_depth(opt) : READ_MIN_BYTES;

    r->tokens = bucket_depth(opt);
    r->refilled_ns = start;
    r->drip_left = opt->drip_bytes;
    r->drip_until_ns = start; // the first burst at once
    for (;;) {
        int64_t now = clock_ns(), wait_ns = deadline - now;
        struct pollfd pfd = {.fd = fd};
        enum io_result io = IO_OK;

        if (opt->has_expect && r->messages >= opt->expect)
            return DONE;
        if (wait_ns <= 0)
            return TIMED_OUT;
        if (s->index < opt->send_count)
            pfd.events |= POLLOUT;
        // Only --never-read asks for POLLRDHUP: a reader would see it on every turn while it
        // waits for tokens or sits out a pause, a busy loop; it learns of the FIN from recv()
        // returning 0.
        if (opt->never_read)
            pfd.events |= POLLRDHUP;
        else if (opt->read_rate > 0)
            bucket_refill(r, opt, now);
        int64_t pause_ns = opt->never_read ? 0 : receiver_pause_ns(r, opt, now, want);
        if (!opt->never_read && pause_ns == 0)
            pfd.events |= POLLIN;
        else if (!opt->never_read && pause_ns < wait_ns)
            wait_ns = pause_ns;
        int ready = poll(&pfd, 1, (int)((wait_ns + 999999) / 1000000));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            log_line("poll: %s", strerror(errno));
            return FAILED;
        }
        bool gone = pfd.revents & (POLLHUP | POLLERR);
        if (opt->never_read && (gone || (pfd.revents & POLLRDHUP)))
            return CLOSED;
        // A server that is gone (POLLHUP/POLLERR) takes nothing more, and there is no reason
        // left to be slow: read what it sent before it went, at once.
        if ((pfd.revents & POLLOUT) && !gone)
            io = sender_step(fd, s, opt);
        if (io == IO_OK && !opt->never_read && (pfd.revents & POLLIN || gone))
            io = receiver_step(fd, r, opt, gone ? SIZE_MAX : receiver_budget(r, opt));
        if (io == IO_CLOSED)
            return CLOSED;
        if (io == IO_RESET)
            return RESET;
        if (io != IO_OK)
            return FAILED;
    }
}

static void options_usage(FILE *out)
{
    fprintf(out,
            "usage: slowreader --port P [--host H] [--send N] [--size BYTES]\n"
            "         [--read-rate BYTES_PER_S | --drip BYTES:MS | --never-read]\n"
            "         [--read-for SECONDS] [--expect N] [-v]\n"
            "Sends N protocol messages (flags 0) and then reads the replies slowly, or never,\n"
            "to show what a server does with a peer that does not keep up.\n"
            "  --host H, --port P   the server (default host %s)\n"
            "  --send N             messages to send (default 0); byte j of message i is i+j\n"
            "  --size BYTES         body size of each message (default %u, at most 10 MiB)\n"
            "  --read-rate R        read at most R bytes per second and check every reply\n"
            "                       (default: no limit); B in the result counts header bytes\n"
            "  --drip BYTES:MS      read and check BYTES bytes, then nothing for MS ms, again\n"
            "                       and again: a slow drip (e.g. 65536:1500)\n"
            "  --never-read         never call recv() (with a %d-byte SO_RCVBUF); report whether\n"
            "                       the server closed the connection\n"
            "  --rcvbuf BYTES       a fixed SO_RCVBUF (no autotuning): the kernel then holds\n"
            "                       at most that much of the replies for this reader\n"
            "  --read-for SECONDS   stop after this long (default %u)\n"
            "  --expect N           stop once N replies are in; fewer is a failure\n"
            "  -v, --verbose        say what was sent and received at the end\n"
            "The result tells a FIN ('server closed the connection') from a RST ('server reset\n"
            "the connection').\n",
            DEFAULT_HOST, DEFAULT_SIZE_BYTES, NEVER_READ_RCVBUF_BYTES, DEFAULT_READ_FOR_S);
}

// --drip BYTES:MS, two numbers. Returns 0, or -1 after one line on stderr.
static int options_drip(const char *text, struct options *opt)
{
    const char *colon = strchr(text, ':');

    if (colon == NULL) {
        log_line("--drip wants BYTES:MS (e.g. 65536:1500), not '%s'", text);
        return -1;
    }
    char *bytes = strndup(text, (size_t)(colon - text));
    if (bytes == NULL) {
        log_line("out of memory");
        return -1;
    }
    int rc = options_number("--drip BYTES", bytes, 1, MAX_DRIP_BYTES, &opt->drip_bytes);
    free(bytes);
    if (rc < 0)
        return -1;
    return options_number("--drip MS", colon + 1, 1, MAX_DRIP_MS, &opt->drip_ms);
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"send", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"read-rate", required_argument, NULL, 'r'},
        {"drip", required_argument, NULL, 'd'},
        {"never-read", no_argument, NULL, 'N'},
        {"rcvbuf", required_argument, NULL, 'b'},
        {"read-for", required_argument, NULL, 't'},
        {"expect", required_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool has_port = false, has_rate = false;
    int c;

    opterr = 0; // with the leading ':', getopt_long reports problems to us instead of printing
    while ((c = getopt_long(argc, argv, ":H:p:n:s:r:d:Nb:t:e:vh", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'H': opt->host = optarg; break;
        case 'p':
            rc = options_number("--port", optarg, 1, MAX_PORT, &opt->port);
            has_port = true;
            break;
        case 'n': rc = options_number("--send", optarg, 0, MAX_SEND, &opt->send_count); break;
        case 's':
            rc = options_number("--size", optarg, 1, PROTO_MAX_BODY_BYTES, &opt->size_bytes);
            break;
        case 'r':
            rc = options_number("--read-rate", optarg, 1, MAX_RATE_BYTES_PER_S, &opt->read_rate);
            has_rate = true;
            break;
        case 'd': rc = options_drip(optarg, opt); break;
        case 'N': opt->never_read = true; break;
        case 'b': rc = options_number("--rcvbuf", optarg, 1024, 1u << 30, &opt->rcvbuf); break;
        case 't':
            rc = options_number("--read-for", optarg, 1, MAX_READ_FOR_S, &opt->read_for_s);
            break;
        case 'e':
            rc = options_number("--expect", optarg, 1, UINT32_MAX, &opt->expect);
            opt->has_expect = true;
            break;
        case 'v': opt->verbose = true; break;
        case 'h': options_usage(stdout); return 0;
        case ':': log_line("option '%s' needs a value (try --help)", argv[optind - 1]); return 2;
        default: log_line("bad option '%s' (try --help)", argv[optind - 1]); return 2;
        }
        if (rc < 0)
            return 2;
    }
    if (optind < argc)
        log_line("unexpected argument '%s' (try --help)", argv[optind]);
    else if (!has_port)
        log_line("--port P is required (try --help)");
    else if (opt->never_read && (has_rate || opt->has_expect))
        log_line("--never-read reads nothing: not with --%s", has_rate ? "read-rate" : "expect");
    else if (opt->never_read && opt->rcvbuf > 0)
        log_line("--never-read sets its own SO_RCVBUF: not with --rcvbuf");
    else if (opt->drip_bytes > 0 && (has_rate || opt->never_read))
        log_line("--drip reads in bursts: not with --%s", has_rate ? "read-rate" : "never-read");
    else
        return -1;
    return 2;
}

int main(int argc, char **argv)
{
    struct options opt = {
        .host = DEFAULT_HOST, .size_bytes = DEFAULT_SIZE_BYTES, .read_for_s = DEFAULT_READ_FOR_S};
    struct sender s = {0};
    struct receiver r = {0};
    int rc;

    tool_name = "slowreader";
    rc = options_parse(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    if (opt.send_count > 0 && sender_init(&s, &opt) < 0)
        return 1;
    int fd = connect_to(&opt);
    if (fd < 0) {
        free(s.frame);
        return 1;
    }
    int64_t start = clock_ns();
    enum outcome outcome = run(fd, &opt, &s, &r, start);
    double seconds = (double)(clock_ns() - start) / 1e9;
    close(fd);
    free(s.frame);
    if (opt.verbose)
        log_line("sent %llu of %llu messages (%llu bytes); received %llu bytes",
                 (unsigned long long)s.index, (unsigned long long)opt.send_count,
                 (unsigned long long)s.bytes, (unsigned long long)r.bytes);
    if (outcome == FAILED)
        return 1;
    if (opt.never_read) {
        printf("slowreader: never read; %s after %.1f s\n",
               outcome == CLOSED || outcome == RESET ? "server closed the connection"
                                                     : "still open",
               seconds);
        return 0;
    }
    bool short_of_expect = opt.has_expect && r.messages < opt.expect;
    if (outcome == CLOSED || outcome == RESET) {
        printf("slowreader: server %s the connection after %llu messages (%llu bytes)\n",
               outcome == RESET ? "reset" : "closed", (unsigned long long)r.messages,
               (unsigned long long)r.bytes);
        return short_of_expect ? 1 : 0;
    }
    printf("slowreader: received %llu messages (%llu bytes) in %.1f s, all intact\n",
           (unsigned long long)r.messages, (unsigned long long)r.bytes, seconds);
    if (!short_of_expect)
        return 0;
    fflush(stdout);
    log_line("expected %llu messages, got %llu within %.1f s", (unsigned long long)opt.expect,
             (unsigned long long)r.messages, seconds);
    return 1;
}
