/* badpeer.c -- a client that misbehaves on purpose: reliability tests for the lesson servers */
//
// A server meets peers that lie in their headers, send one byte a second, vanish mid-frame,
// open hundreds of connections and drop them, or reset the connection halfway through a
// message. Each must cost the server that one connection at most, never the process, a file
// descriptor or a byte of memory. This tool plays one such peer per run (the SCENARIO) and
// says what the server did about it, so that a test can check the server's side: its log
// line, its open descriptors, and whether it still serves a well-behaved client afterwards.
//
// The protocol-error scenarios first send one valid message and check its echo (the server is
// up, and it is a lesson-protocol server), then the bad frame, then wait for the server to
// close the connection. signal-storm is not about the network: it sends a process many
// signals, to show that a server's blocking calls survive EINTR.
//
// Output: one line on stdout (see options_usage). Exit status: 0 the server closed the
// connection, or (abandon, rst-mid-frame, signal-storm) the misdeed is done; 1 the connection
// is still open after --wait-ms, or an error (one line on stderr); 2 bad usage.

#include "toolkit.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_HOST        "127.0.0.1"
#define DEFAULT_WAIT_MS     5000u
#define DEFAULT_INTERVAL_MS 1000u
#define DEFAULT_COUNT       100u
#define DEFAULT_RATE        1000u
#define DEFAULT_FOR_MS      3000u
#define MAX_PORT            65535u
#define MAX_TIME_MS         3600000u
#define MAX_COUNT           100000u
#define MAX_RATE            1000000u
#define CONNECT_TIMEOUT_MS  5000
#define CONNECTS_IN_FLIGHT  64 // abandon: at most this many handshakes at once
#define SPARE_FDS           16 // abandon: stdio and the like, besides the connections
#define ABANDON_BYTES       7  // abandon: a header cut off in the middle of origin_size
#define HALF_FRAME_BODY     1000u
#define HALF_FRAME_SENT     500u // body bytes sent of HALF_FRAME_BODY, by the *-mid-frame peers
#define READ_BUFFER_BYTES   4096

enum scenario_kind { KIND_BAD_FRAME, KIND_TRICKLE, KIND_ABANDON, KIND_RST, KIND_HALF, KIND_SIGNAL };

// One frame that breaks one rule of the protocol. The body, if any, goes out in the same
// send() as the header: the server reads it all before it closes, so the close is a FIN, not
// the RST that closing with unread bytes would send.
struct scenario {
    const char *name;
    enum scenario_kind kind;
    uint8_t flags;
    uint32_t origin_size, compress_size;
    const uint8_t *body;
    size_t body_len;
};

static const uint8_t raw_body[] = "a body of no interest";
// An LZ4 sequence: token 0x10 (1 literal, match of 4), the literal 'x', then a match offset of
// 5 where only 1 byte has been written: a copy from in front of the output buffer.
static const uint8_t lz4_bad_offset[] = {0x10, 'x', 0x05, 0x00};
// A valid block: token 0x50, 5 literals and nothing else; it decompresses to 5 bytes.
static const uint8_t lz4_five_bytes[] = {0x50, 'h', 'e', 'l', 'l', 'o'};

static const struct scenario scenarios[] = {
    {"bad-flags", KIND_BAD_FRAME, 7, sizeof raw_body - 1, 0, raw_body, sizeof raw_body - 1},
    {"origin-zero", KIND_BAD_FRAME, 0, 0, 0, NULL, 0},
    {"origin-too-big", KIND_BAD_FRAME, 0, PROTO_MAX_BODY_BYTES + 1, 0, NULL, 0},
    {"compress-zero", KIND_BAD_FRAME, PROTO_FLAG_LZ4, 16, 0, NULL, 0},
    {"compress-too-big", KIND_BAD_FRAME, PROTO_FLAG_LZ4, 16, PROTO_MAX_BODY_BYTES + 1, NULL, 0},
    {"bad-lz4", KIND_BAD_FRAME, PROTO_FLAG_LZ4, 16, sizeof lz4_bad_offset, lz4_bad_offset,
     sizeof lz4_bad_offset},
    {"lz4-wrong-size", KIND_BAD_FRAME, PROTO_FLAG_LZ4, 2 * sizeof lz4_five_bytes,
     sizeof lz4_five_bytes, lz4_five_bytes, sizeof lz4_five_bytes},
    {"trickle", KIND_TRICKLE, 0, 0, 0, NULL, 0},
    {"abandon", KIND_ABANDON, 0, 0, 0, NULL, 0},
    {"rst-mid-frame", KIND_RST, 0, 0, 0, NULL, 0},
    {"half-close-mid-frame", KIND_HALF, 0, 0, 0, NULL, 0},
    {"signal-storm", KIND_SIGNAL, 0, 0, 0, NULL, 0},
};

struct options {
    const char *host;
    const struct scenario *scenario;
    uint64_t port, wait_ms, interval_ms, count, pid, rate, for_ms;
    int signo;
    const char *signal_name;
    bool verbose;
    int64_t start_ms; // -v: trace lines show the time since then
};

// How a wait for the server's close ended. PEER_ERROR: already said why on stderr.
enum peer_state { PEER_OPEN, PEER_EOF, PEER_RESET, PEER_ERROR };

static void trace(const struct options *opt, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

// -v: one line on stderr per step, with the time since the start of the run.
static void trace(const struct options *opt, const char *format, ...)
{
    char text[256];
    va_list args;

    if (!opt->verbose)
        return;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    log_line("%6lld ms: %s", (long long)(clock_ms() - opt->start_ms), text);
}

// send() all of it on a blocking socket. MSG_NOSIGNAL: a server that has closed on us means
// EPIPE, not a SIGPIPE that kills us. Returns 0, or a positive errno.
static int send_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

// Read and drop whatever the server sends until it closes or until deadline_ms. Anything it
// sends after our bad frame does not matter; only its close does.
static enum peer_state wait_closed(int fd, int64_t deadline_ms)
{
    uint8_t buf[READ_BUFFER_BYTES];

    for (;;) {
        int64_t left = deadline_ms - clock_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
        if (left <= 0)
            return PEER_OPEN;
        int ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            log_line("poll: %s", strerror(errno));
            return PEER_ERROR;
        }
        if (ready == 0)
            continue; // the loop's first test decides
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            return PEER_EOF;
        if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
            return PEER_RESET;
        if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            log_line("recv: %s", strerror(errno));
            return PEER_ERROR;
        }
    }
}

// The valid message first: send it, read the echo whole and check it, bounded by --wait-ms.
static int hello_exchange(int fd, const struct options *opt)
{
    static const uint8_t hello[] = "badpeer says hello";
    const size_t body_len = sizeof hello - 1, want = PROTO_HEADER_BYTES + body_len;
    uint8_t frame[PROTO_HEADER_BYTES + sizeof hello], echo[PROTO_HEADER_BYTES + sizeof hello];
    int64_t deadline = clock_ms() + (int64_t)opt->wait_ms;
    size_t got = 0;

    proto_put_header(frame, 0, (uint32_t)body_len, 0);
    memcpy(frame + PROTO_HEADER_BYTES, hello, body_len);
    int err = send_all(fd, frame, want);
    if (err != 0) {
        log_line("%s: send the valid message: %s", opt->scenario->name, strerror(err));
        return -1;
    }
    while (got < want) {
        int64_t left = deadline - clock_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            log_line("%s: no echo of the valid message within %llu ms%s%s", opt->scenario->name,
                     (unsigned long long)opt->wait_ms, ready < 0 ? ": " : "",
                     ready < 0 ? strerror(errno) : "");
            return -1;
        }
        ssize_t n = recv(fd, echo + got, want - got, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0) {
            log_line("%s: server closed the connection before echoing the valid message%s%s",
                     opt->scenario->name, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            return -1;
        }
        got += (size_t)n;
    }
    if (echo[0] != 0 || get_u32_be(echo + 1) != body_len ||
        memcmp(echo + PROTO_HEADER_BYTES, hello, body_len) != 0) {
        log_line("%s: the echo of the valid message differs from it: not a lesson-protocol server?",
                 opt->scenario->name);
        return -1;
    }
    trace(opt, "the valid message came back intact");
    return 0;
}

// Print the outcome of a wait for the server's close; the exit status.
static int report_close(const struct options *opt, enum peer_state state, int64_t since_ms)
{
    long long ms = (long long)(clock_ms() - since_ms);

    if (state == PEER_ERROR)
        return 1;
    if (state == PEER_OPEN) {
        printf("badpeer: %s: still open after %lld ms\n", opt->scenario->name, ms);
        return 1;
    }
    printf("badpeer: %s: server closed the connection after %lld ms (%s)\n", opt->scenario->name,
           ms, state == PEER_EOF ? "EOF" : "reset");
    return 0;
}

static int run_bad_frame(int fd, const struct options *opt)
{
    const struct scenario *sc = opt->scenario;
    uint8_t frame[PROTO_HEADER_BYTES + 64];

    if (hello_exchange(fd, opt) < 0)
        return 1;
    proto_put_header(frame, sc->flags, sc->origin_size, sc->compress_size);
    if (sc->body_len > 0)
        memcpy(frame + PROTO_HEADER_BYTES, sc->body, sc->body_len);
    int err = send_all(fd, frame, PROTO_HEADER_BYTES + sc->body_len);
    if (err != 0) {
        log_line("%s: send the bad frame: %s", sc->name, strerror(err));
        return 1;
    }
    trace(opt, "sent the bad frame: flags %u, origin_size %u, compress_size %u, %zu body bytes",
          sc->flags, sc->origin_size, sc->compress_size, sc->body_len);
    int64_t sent_ms = clock_ms();
    return report_close(opt, wait_closed(fd, sent_ms + (int64_t)opt->wait_ms), sent_ms);
}

// A valid frame, one byte every --interval-ms: a slowloris. When the frame is done the next one
// starts, so the trickle never ends on its own; only the server or --wait-ms end it.
static int run_trickle(int fd, const struct options *opt)
{
    uint8_t frame[PROTO_HEADER_BYTES + sizeof raw_body - 1];
    int64_t start = clock_ms(), deadline = start + (int64_t)opt->wait_ms, next = start;
    uint64_t sent = 0;
    enum peer_state state = PEER_OPEN;

    proto_put_header(frame, 0, sizeof raw_body - 1, 0);
    memcpy(frame + PROTO_HEADER_BYTES, raw_body, sizeof raw_body - 1);
    while (state == PEER_OPEN && clock_ms() < deadline) {
        if (clock_ms() >= next) {
            int err = send_all(fd, &frame[sent % sizeof frame], 1);
            if (err == EPIPE || err == ECONNRESET) {
                state = PEER_RESET;
                break;
            }
            if (err != 0) {
                log_line("trickle: send: %s", strerror(err));
                return 1;
            }
            sent++;
            next += (int64_t)opt->interval_ms;
            trace(opt, "sent byte %llu", (unsigned long long)sent);
        }
        state = wait_closed(fd, next < deadline ? next : deadline);
    }
    long long ms = (long long)(clock_ms() - start);
    if (state == PEER_ERROR)
        return 1;
    if (state != PEER_OPEN)
        trace(opt, "the server's %s", state == PEER_EOF ? "FIN (EOF)" : "RST (reset)");
    printf("badpeer: trickle: %s after %lld ms, %llu bytes sent\n",
           state == PEER_OPEN ? "still open" : "server closed the connection", ms,
           (unsigned long long)sent);
    return state == PEER_OPEN ? 1 : 0;
}

// A header announcing HALF_FRAME_BODY raw bytes, and HALF_FRAME_SENT of them.
static int send_half_frame(int fd, const char *name)
{
    uint8_t frame[PROTO_HEADER_BYTES + HALF_FRAME_SENT];

    proto_put_header(frame, 0, HALF_FRAME_BODY, 0);
    memset(frame + PROTO_HEADER_BYTES, 'h', HALF_FRAME_SENT);
    int err = send_all(fd, frame, sizeof frame);
    if (err != 0)
        log_line("%s: send: %s", name, strerror(err));
    return err == 0 ? 0 : -1;
}

// Half a frame, then an RST. First wait (bounded) until the server's kernel has acknowledged
// every byte: an RST throws away whatever is still in our send queue, and the server should
// be holding a partial frame when the reset hits it.
static int run_rst(int fd, const struct options *opt)
{
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    int64_t deadline = clock_ms() + (int64_t)opt->wait_ms;
    int queued = 0;

    if (send_half_frame(fd, "rst-mid-frame") < 0) {
        close(fd);
        return 1;
    }
    while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 && clock_ms() < deadline) {
        struct timespec tick = {.tv_nsec = 1000000};
        nanosleep(&tick, NULL);
    }
    // The lesson: SO_LINGER on, timeout 0 turns close() into an abort: an RST, no FIN.
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) < 0) {
        log_line("rst-mid-frame: SO_LINGER: %s", strerror(errno));
        close(fd);
        return 1;
    }
    trace(opt, "%d bytes unacknowledged; closing with SO_LINGER {1, 0}", queued);
    close(fd);
    printf("badpeer: rst-mid-frame: sent %u bytes, then reset\n",
           PROTO_HEADER_BYTES + HALF_FRAME_SENT);
    return 0;
}

// Half a frame, then our FIN: the rest of the frame can never come. A server that waits for it
// anyway holds the connection for ever.
static int run_half_close(int fd, const struct options *opt)
{
    if (send_half_frame(fd, "half-close-mid-frame") < 0)
        return 1;
    if (shutdown(fd, SHUT_WR) < 0) {
        log_line("half-close-mid-frame: shutdown: %s", strerror(errno));
        return 1;
    }
    trace(opt, "sent %u bytes, then shutdown(SHUT_WR)", PROTO_HEADER_BYTES + HALF_FRAME_SENT);
    int64_t shut_ms = clock_ms();
    return report_close(opt, wait_closed(fd, shut_ms + (int64_t)opt->wait_ms), shut_ms);
}

// One connect() started, not waited for. Returns the fd (its handshake in progress or done),
// or -1 with errno set.
static int connect_start(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
        return fd;
    int saved_errno = errno;
    close(fd);
    errno = saved_errno;
    return -1;
}

// Wait for the handshakes in pending[] and move each one done to fds[*done]. Returns 0, or -1
// after one line on stderr.
static int connect_finish(struct pollfd *pending, size_t *n_pending, int *fds, size_t *done,
                          int64_t deadline)
{
    int64_t left = deadline - clock_ms();
    int ready = left > 0 ? poll(pending, *n_pending, (int)left) : 0;

    if (ready < 0 && errno == EINTR)
        return 0;
    if (ready <= 0) {
        log_line("abandon: %zu connected, %zu more not within the --wait-ms%s%s", *done, *n_pending,
                 ready < 0 ? ": poll: " : "", ready < 0 ? strerror(errno) : "");
        return -1;
    }
    // Backwards: a finished entry is replaced by the last one, which has been looked at.
    for (size_t i = *n_pending; i-- > 0;) {
        int err = 0;
        socklen_t len = sizeof err;
        if (pending[i].revents == 0)
            continue;
        if (getsockopt(pending[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            log_line("abandon: connect: %s (%zu connected)", strerror(err), *done);
            return -1;
        }
        fds[(*done)++] = pending[i].fd;
        pending[i] = pending[--*n_pending];
    }
    return 0;
}

// --count connections, all established, each with a few bytes of a header, then all closed at
// once: the server must give back every descriptor and buffer it spent on them.
static int run_abandon(const struct options *opt)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    struct pollfd pending[CONNECTS_IN_FLIGHT];
    uint8_t header[PROTO_HEADER_BYTES];
    char port[16];
    size_t n_pending = 0, done = 0, count = (size_t)opt->count;
    int64_t deadline = clock_ms() + (int64_t)opt->wait_ms;
    int status = 1;

    uint64_t limit = raise_fd_limit();
    if (limit < opt->count + SPARE_FDS) {
        log_line("abandon: %llu connections need more than the open-file limit of %llu",
                 (unsigned long long)opt->count, (unsigned long long)limit);
        return 1;
    }
    snprintf(port, sizeof port, "%llu", (unsigned long long)opt->port);
    int rc = getaddrinfo(opt->host, port, &hints, &list);
    if (rc != 0) {
        log_line("%s: %s", opt->host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return 1;
    }
    int *fds = calloc(count, sizeof *fds);
    if (fds == NULL) {
        log_line("abandon: out of memory");
        freeaddrinfo(list);
        return 1;
    }
    // A bounded number of handshakes at a time: a burst of thousands of SYNs would overflow
    // the server's accept queue, and the kernel would drop SYNs, not refuse them.
    while (done < count) {
        while (done + n_pending < count && n_pending < CONNECTS_IN_FLIGHT) {
            int fd = connect_start(list);
            if (fd < 0) {
                log_line("abandon: connect: %s (%zu connected)", strerror(errno), done);
                goto out;
            }
            pending[n_pending++] = (struct pollfd){.fd = fd, .events = POLLOUT};
        }
        if (connect_finish(pending, &n_pending, fds, &done, deadline) < 0)
            goto out;
    }
    trace(opt, "%zu connections established", done);
    proto_put_header(header, 0, HALF_FRAME_BODY, 0);
    for (size_t i = 0; i < count; i++) {
        ssize_t n = send(fds[i], header, ABANDON_BYTES, MSG_NOSIGNAL);
        if (n != ABANDON_BYTES) {
            log_line("abandon: send on connection %zu: %s", i + 1,
                     n < 0 ? strerror(errno) : "short send");
            goto out;
        }
    }
    trace(opt, "sent %d header bytes on each; closing them all", ABANDON_BYTES);
    status = 0;
out:
    for (size_t i = 0; i < done; i++)
        close(fds[i]);
    for (size_t i = 0; i < n_pending; i++)
        close(pending[i].fd);
    free(fds);
    freeaddrinfo(list);
    if (status == 0)
        printf("badpeer: abandon: opened and abandoned %zu connections\n", count);
    return status;
}

// --rate signals a second for --for-ms, each at its own absolute deadline: sleeping for a
// relative period would add every loop's own running time and drift below the rate.
static int run_signal_storm(const struct options *opt)
{
    const int64_t period_ns = 1000000000 / (int64_t)opt->rate;
    const int64_t start = clock_ns(), end = start + (int64_t)opt->for_ms * 1000000;
    uint64_t sent = 0;

    for (int64_t due = start; due < end; due = start + (int64_t)sent * period_ns) {
        struct timespec at = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
        int rc;
        while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL)) == EINTR)
            continue;
        if (rc != 0) {
            log_line("signal-storm: clock_nanosleep: %s", strerror(rc));
            return 1;
        }
        if (kill((pid_t)opt->pid, opt->signo) < 0) {
            log_line("signal-storm: kill %llu: %s, after %llu signals",
                     (unsigned long long)opt->pid, strerror(errno), (unsigned long long)sent);
            return 1;
        }
        sent++;
    }
    trace(opt, "%llu x SIG%s in %lld ms", (unsigned long long)sent, opt->signal_name,
          (long long)((clock_ns() - start) / 1000000));
    printf("badpeer: signal-storm: sent %llu signals to %llu\n", (unsigned long long)sent,
           (unsigned long long)opt->pid);
    return 0;
}

static const struct {
    const char *name;
    int signo;
} signal_names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},   {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"WINCH", SIGWINCH},
};

// --signal USR2, SIGUSR2 or a number.
static int signal_parse(const char *text, struct options *opt)
{
    const char *name = strncmp(text, "SIG", 3) == 0 ? text + 3 : text;
    uint64_t number;

    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++) {
        if (strcmp(name, signal_names[i].name) == 0) {
            opt->signo = signal_names[i].signo;
            opt->signal_name = signal_names[i].name;
            return 0;
        }
    }
    if (!isdigit((unsigned char)text[0])) {
        log_line("--signal wants a name (USR2, SIGUSR2, ...) or a number, not '%s'", text);
        return -1;
    }
    if (options_number("--signal", text, 1, (uint64_t)SIGRTMAX, &number) < 0)
        return -1;
    opt->signo = (int)number;
    opt->signal_name = text;
    return 0;
}

static void options_usage(FILE *out)
{
    fprintf(out,
            "usage: badpeer [--host H] --port P SCENARIO [--wait-ms MS] [--interval-ms MS]\n"
            "               [--count N] [-v]\n"
            "       badpeer signal-storm --pid PID [--signal SIG] [--rate N] [--for-ms MS]\n"
            "Plays one misbehaving peer against a lesson-protocol server and reports what the\n"
            "server did about it.\n"
            "  bad-flags, origin-zero, origin-too-big, compress-zero, compress-too-big,\n"
            "  bad-lz4, lz4-wrong-size\n"
            "                 one valid message (its echo checked), then a frame that breaks\n"
            "                 that rule; prints 'server closed the connection after N ms (EOF)'\n"
            "                 or '(reset)', or 'still open after N ms' (exit 1)\n"
            "  trickle        valid frames, one byte every --interval-ms (default %u); prints\n"
            "                 when the server closed, or that it is still open (exit 1)\n"
            "  abandon        --count N connections (default %u), a few header bytes on each,\n"
            "                 then all closed at once\n"
            "  rst-mid-frame  a header for %u body bytes and %u of them, then an RST\n"
            "  half-close-mid-frame  the same, then shutdown(SHUT_WR); waits for the close\n"
            "  signal-storm   --signal (default USR2) to --pid, --rate a second (default %u)\n"
            "                 for --for-ms (default %u)\n"
            "  --host H, --port P  the server (default host %s)\n"
            "  --wait-ms MS   how long to wait for the server (default %u): its close, an\n"
            "                 echo, the connections of abandon, or the whole trickle\n"
            "  -v, --verbose  trace every step on stderr\n",
            DEFAULT_INTERVAL_MS, DEFAULT_COUNT, HALF_FRAME_BODY, HALF_FRAME_SENT, DEFAULT_RATE,
            DEFAULT_FOR_MS, DEFAULT_HOST, DEFAULT_WAIT_MS);
}

static const struct scenario *scenario_find(const char *name)
{
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        if (strcmp(name, scenarios[i].name) == 0)
            return &scenarios[i];
    return NULL;
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"wait-ms", required_argument, NULL, 'w'}, {"interval-ms", required_argument, NULL, 'i'},
        {"count", required_argument, NULL, 'n'},   {"pid", required_argument, NULL, 'P'},
        {"signal", required_argument, NULL, 's'},  {"rate", required_argument, NULL, 'r'},
        {"for-ms", required_argument, NULL, 'f'},  {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    bool has_port = false;
    int c;

    opterr = 0; // with the leading ':', getopt_long reports problems to us instead of printing
    while ((c = getopt_long(argc, argv, ":H:p:w:i:n:P:s:r:f:vh", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'H': opt->host = optarg; break;
        case 'p':
            rc = options_number("--port", optarg, 1, MAX_PORT, &opt->port);
            has_port = true;
            break;
        case 'w': rc = options_number("--wait-ms", optarg, 1, MAX_TIME_MS, &opt->wait_ms); break;
        case 'i':
            rc = options_number("--interval-ms", optarg, 1, MAX_TIME_MS, &opt->interval_ms);
            break;
        case 'n': rc = options_number("--count", optarg, 1, MAX_COUNT, &opt->count); break;
        case 'P': rc = options_number("--pid", optarg, 1, INT32_MAX, &opt->pid); break;
        case 's': rc = signal_parse(optarg, opt); break;
        case 'r': rc = options_number("--rate", optarg, 1, MAX_RATE, &opt->rate); break;
        case 'f': rc = options_number("--for-ms", optarg, 1, MAX_TIME_MS, &opt->for_ms); break;
        case 'v': opt->verbose = true; break;
        case 'h': options_usage(stdout); return 0;
        case ':': log_line("option '%s' needs a value (try --help)", argv[optind - 1]); return 2;
        default: log_line("bad option '%s' (try --help)", argv[optind - 1]); return 2;
        }
        if (rc < 0)
            return 2;
    }
    if (optind == argc)
        log_line("which SCENARIO? (try --help)");
    else if (optind + 1 < argc)
        log_line("unexpected argument '%s' (try --help)", argv[optind + 1]);
    else if ((opt->scenario = scenario_find(argv[optind])) == NULL)
        log_line("no scenario '%s' (try --help)", argv[optind]);
    else if (opt->scenario->kind == KIND_SIGNAL && opt->pid == 0)
        log_line("signal-storm: --pid PID is required (try --help)");
    else if (opt->scenario->kind != KIND_SIGNAL && !has_port)
        log_line("%s: --port P is required (try --help)", opt->scenario->name);
    else
        return -1;
    return 2;
}

int main(int argc, char **argv)
{
    struct options opt = {
        .host = DEFAULT_HOST,
        .wait_ms = DEFAULT_WAIT_MS,
        .interval_ms = DEFAULT_INTERVAL_MS,
        .count = DEFAULT_COUNT,
        .rate = DEFAULT_RATE,
        .for_ms = DEFAULT_FOR_MS,
        .signo = SIGUSR2,
        .signal_name = "USR2",
        .start_ms = clock_ms(),
    };
    int rc, fd;

    tool_name = "badpeer";
    rc = options_parse(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    // The scenarios that need no single connection of their own.
    if (opt.scenario->kind == KIND_SIGNAL)
        return run_signal_storm(&opt);
    if (opt.scenario->kind == KIND_ABANDON)
        return run_abandon(&opt);

    if ((fd = tcp_connect(opt.host, opt.port, CONNECT_TIMEOUT_MS, 0, false)) < 0)
        return 1;
    trace(&opt, "connected to %s port %llu", opt.host, (unsigned long long)opt.port);
    switch (opt.scenario->kind) {
    case KIND_BAD_FRAME: rc = run_bad_frame(fd, &opt); break;
    case KIND_TRICKLE: rc = run_trickle(fd, &opt); break;
    case KIND_RST: return run_rst(fd, &opt); // it closes fd itself, with the RST
    case KIND_HALF: rc = run_half_close(fd, &opt); break;
    default: rc = 1; break;
    }
    close(fd);
    return rc;
}
