// ttcp.c -- request/response TCP throughput test (the classic ttcp, with per-message acks)
//
// A transmitter connects to a receiver and sends `number` messages of `length` bytes; after
// each message it waits for a 4-byte ack. Every message therefore pays a full round trip plus
// a few system calls on each side, and the measured MB/s shows how that fixed cost fades as
// messages grow. A "stream" session sends raw bytes with no acks at all: the one-way ceiling
// of the connection (like `dd | nc`). The --table mode runs both, so the gap is easy to see.
//
// Wire format, every integer a uint32 in network byte order:
//   session header   number, length
//   number >= 1      number times: prefix (= length), length payload bytes; receiver acks length
//   number == 0      length raw bytes, then EOF; the receiver acks bytes received (mod 2^32)

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_HOST         "127.0.0.1"
#define DEFAULT_PORT         5001u
#define DEFAULT_NUMBER       8192u
#define DEFAULT_LENGTH_BYTES 65536u
#define DEFAULT_TOTAL_BYTES  (64u * 1024 * 1024)
#define MAX_LENGTH_BYTES     (16u * 1024 * 1024)
#define MAX_NUMBER           10000000u
#define MAX_PORT             65535u
#define TABLE_MIN_MESSAGES   16u
#define TABLE_MAX_MESSAGES   20000u
#define IO_CHUNK_BYTES       (256u * 1024)
#define BYTES_PER_MB         1e6
#define ADDR_TEXT_BYTES      (NI_MAXHOST + NI_MAXSERV + 4)

static const uint32_t table_lengths_bytes[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};
#define TABLE_ROWS (sizeof table_lengths_bytes / sizeof table_lengths_bytes[0])

// Set by SIGINT/SIGTERM. Only a volatile sig_atomic_t may be written safely from a handler.
static volatile sig_atomic_t stop_requested;

// Every diagnostic is a single line: "ttcp: [peer: ]message". The format attribute lets the
// compiler check each call's arguments against its format string, as it does for printf.
static void log_line(const char *peer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void log_line(const char *peer, const char *format, ...)
{
    va_list args;

    fputs("ttcp: ", stderr);
    if (peer != NULL)
        fprintf(stderr, "%s: ", peer);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

static void signal_on_stop(int signo)
{
    (void)signo;
    stop_requested = 1;
}

static int signal_setup(bool catch_stop)
{
    struct sigaction action;

    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    // Writing to a connection the peer has closed raises SIGPIPE, whose default action kills
    // the process without a word. Ignored, the write fails with EPIPE and we can say so.
    action.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &action, NULL) < 0)
        return -1;
    if (!catch_stop)
        return 0;
    // No SA_RESTART: the kernel must interrupt a blocked accept() or read() with EINTR,
    // otherwise it would resume waiting and never look at stop_requested.
    action.sa_handler = signal_on_stop;
    action.sa_flags = 0;
    if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0)
        return -1;
    return 0;
}

// EINTR only means a signal arrived while we were blocked: retry, unless it asked us to stop.
// Callers then see -1 with errno == EINTR, which they treat as "stop quietly".
static bool io_should_retry(void)
{
    return errno == EINTR && !stop_requested;
}

static ssize_t io_read_some(int fd, void *buffer, size_t size)
{
    for (;;) {
        ssize_t n = read(fd, buffer, size);
        if (n >= 0 || !io_should_retry())
            return n;
    }
}

// TCP is a byte stream: read() returns whatever has arrived, which may be part of a field or
// part of a message. Loop until we have `size` bytes. Returns 1 when complete, 0 if the peer
// closed first, -1 on error.
static int io_read_full(int fd, void *buffer, size_t size)
{
    size_t done = 0;

    while (done < size) {
        ssize_t n = io_read_some(fd, (char *)buffer + done, size - done);
        if (n <= 0)
            return (int)n;
        done += (size_t)n;
    }
    return 1;
}

// A blocking writev() can still return early (a signal after some bytes went out), so skip
// what was sent and go again. Modifies `iov`. Returns 0, or -1 with errno set.
static int io_writev_full(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(fd, iov, count);
        if (n < 0) {
            if (io_should_retry())
                continue;
            return -1;
        }
        size_t sent = (size_t)n;
        while (count > 0 && sent >= iov->iov_len) {
            sent -= iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + sent;
            iov->iov_len -= sent;
        }
    }
    return 0;
}

static int io_write_full(int fd, void *buffer, size_t size)
{
    struct iovec iov = {.iov_base = buffer, .iov_len = size};

    return io_writev_full(fd, &iov, 1);
}

// Integers cross the wire one field at a time through htonl/ntohl: the bytes are then the
// same whatever the host's byte order, and no compiler padding can sneak in.
static int io_read_u32(int fd, uint32_t *value)
{
    uint32_t wire;
    int result = io_read_full(fd, &wire, sizeof wire);

    if (result == 1)
        *value = ntohl(wire);
    return result;
}

static int io_write_u32(int fd, uint32_t value)
{
    uint32_t wire = htonl(value);

    return io_write_full(fd, &wire, sizeof wire);
}

static void addr_format(const struct sockaddr *addr, socklen_t addr_len, char *text, size_t size)
{
    char host[NI_MAXHOST];
    char port[NI_MAXSERV];
    int rc = getnameinfo(addr, addr_len, host, sizeof host, port, sizeof port,
                         NI_NUMERICHOST | NI_NUMERICSERV);

    if (rc != 0)
        snprintf(text, size, "(unknown address: %s)", gai_strerror(rc));
    else if (addr->sa_family == AF_INET6) // "::1:5001" would be ambiguous, hence [::1]:5001
        snprintf(text, size, "[%s]:%s", host, port);
    else
        snprintf(text, size, "%s:%s", host, port);
}

// Each message is a request that waits for its ack. Nagle's algorithm holds back a final
// partial segment while earlier data is unacknowledged, and the peer delays its ACK hoping to
// piggyback it on a reply: together they can stall every message by tens of milliseconds.
static int net_set_nodelay(int fd)
{
    int one = 1;

    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// No retry on EINTR: Linux has already released the descriptor when close() returns it, and
// a second close() could hit a descriptor that was reused in between.
static void net_close(int fd, const char *peer)
{
    if (close(fd) < 0 && errno != EINTR)
        log_line(peer, "close: %s", strerror(errno));
}

// Tries one address. On failure names the step that failed and returns -1 with errno kept.
static int net_open_one(const struct addrinfo *ai, bool listening, const char **failed_step)
{
    int one = 1;
    int saved_errno;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);

    *failed_step = "socket";
    if (fd < 0)
        return -1;
    if (listening) {
        // Lets a restarted receiver bind its port while connections from the previous run
        // still sit in TIME_WAIT; without it bind() fails for a minute or two.
        *failed_step = "setsockopt SO_REUSEADDR";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            goto fail;
        *failed_step = "bind";
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
            goto fail;
        *failed_step = "listen";
        if (listen(fd, SOMAXCONN) < 0)
            goto fail;
    } else {
        // We install no signal handlers when transmitting, so connect() cannot see EINTR.
        // (Had it, retrying would be wrong: the handshake carries on in the background.)
        *failed_step = "connect";
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
            goto fail;
        *failed_step = "setsockopt TCP_NODELAY";
        if (net_set_nodelay(fd) < 0)
            goto fail;
    }
    return fd;
fail:
    saved_errno = errno;
    net_close(fd, NULL);
    errno = saved_errno;
    return -1;
}

// getaddrinfo() turns "127.0.0.1", "::1" or a host name into socket addresses, so the same
// code serves IPv4 and IPv6. A name may yield several addresses: use the first that works.
static int net_open(const char *host, uint32_t port, bool listening)
{
    char service[16];
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    const char *failed_step = "getaddrinfo";
    int fd = -1;
    int saved_errno = 0;

    snprintf(service, sizeof service, "%u", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        log_line(NULL, "%s: %s", host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    for (const struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = net_open_one(ai, listening, &failed_step);
        saved_errno = errno;
    }
    freeaddrinfo(list);
    if (fd < 0)
        log_line(NULL, "%s: %s", failed_step, strerror(saved_errno));
    return fd;
}

enum session_result { SESSION_OK, SESSION_FAILED, SESSION_STOPPED };

// An io_ helper did not move every byte: result -1 is an error in errno, 0 an early EOF.
// A stop signal (EINTR) ends the session quietly; anything else earns one line on stderr.
static enum session_result session_fail_io(const char *peer, const char *what, long result)
{
    if (result < 0 && errno == EINTR)
        return SESSION_STOPPED;
    if (result < 0)
        log_line(peer, "%s: %s", what, strerror(errno));
    else
        log_line(peer, "%s: connection closed by peer", what);
    return SESSION_FAILED;
}

static enum session_result session_serve_requests(int fd, const char *peer, uint32_t number,
                                                  uint32_t length, char *buffer)
{
    for (uint32_t i = 0; i < number; i++) {
        uint32_t prefix;
        int result = io_read_u32(fd, &prefix);
        if (result != 1)
            return session_fail_io(peer, "read length prefix", result);
        if (prefix != length) {
            log_line(peer, "message %u: length prefix %u, header said %u", i, prefix, length);
            return SESSION_FAILED;
        }
        // The payload is counted, never kept, so one fixed buffer serves every length and a
        // hostile header cannot make us allocate 16 MiB.
        for (uint32_t left = length; left > 0;) {
            uint32_t chunk = left < IO_CHUNK_BYTES ? left : IO_CHUNK_BYTES;
            result = io_read_full(fd, buffer, chunk);
            if (result != 1)
                return session_fail_io(peer, "read payload", result);
            left -= chunk;
        }
        result = io_write_u32(fd, length);
        if (result < 0)
            return session_fail_io(peer, "write ack", result);
    }
    return SESSION_OK;
}

static enum session_result session_serve_stream(int fd, const char *peer, uint32_t length,
                                                char *buffer)
{
    uint64_t received_bytes = 0;

    for (;;) { // the transmitter's shutdown(SHUT_WR) arrives here as EOF, read() == 0
        ssize_t n = io_read_some(fd, buffer, IO_CHUNK_BYTES);
        if (n < 0)
            return session_fail_io(peer, "read stream", n);
        if (n == 0)
            break;
        received_bytes += (uint64_t)n;
    }
    // The ack carries what we actually counted (mod 2^32, all a uint32 can hold), so the
    // transmitter can check it too.
    int result = io_write_u32(fd, (uint32_t)received_bytes);
    if (result < 0)
        return session_fail_io(peer, "write ack", result);
    if (received_bytes != length) {
        log_line(peer, "stream carried %llu bytes, header said %u",
                 (unsigned long long)received_bytes, length);
        return SESSION_FAILED;
    }
    return SESSION_OK;
}

static enum session_result session_serve(int fd, const char *peer, bool verbose, char *buffer)
{
    uint32_t number = 0;
    uint32_t length = 0;
    int result = io_read_u32(fd, &number);

    if (result == 1)
        result = io_read_u32(fd, &length);
    if (result != 1)
        return session_fail_io(peer, "read session header", result);
    // Everything a peer sends is untrusted: check it before acting on it.
    if (number > MAX_NUMBER) {
        log_line(peer, "bad message count %u", number);
        return SESSION_FAILED;
    }
    if (number > 0 && (length < 1 || length > MAX_LENGTH_BYTES)) {
        log_line(peer, "bad message length %u", length);
        return SESSION_FAILED;
    }
    if (verbose && number == 0)
        fprintf(stderr, "session from %s: stream %u bytes\n", peer, length);
    else if (verbose)
        fprintf(stderr, "session from %s: %u x %u bytes\n", peer, number, length);
    if (number == 0)
        return session_serve_stream(fd, peer, length, buffer);
    return session_serve_requests(fd, peer, number, length, buffer);
}

struct options {
    bool receive, transmit, stream, table, once, verbose;
    const char *host;
    uint32_t port, number, length_bytes, total_bytes;
};

static int receiver_run(const struct options *opt)
{
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof addr;
    char text[ADDR_TEXT_BYTES];
    char *buffer = NULL;
    int status = 1;

    if (signal_setup(true) < 0) {
        log_line(NULL, "sigaction: %s", strerror(errno));
        return 1;
    }
    int listen_fd = net_open(opt->host, opt->port, true);
    if (listen_fd < 0)
        return 1;
    // Ask the kernel for the real address: with --port 0 only it knows which port it chose.
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        log_line(NULL, "getsockname: %s", strerror(errno));
        goto out;
    }
    addr_format((struct sockaddr *)&addr, addr_len, text, sizeof text);
    // Scripts wait for this line to learn the port. stdout is block-buffered into a pipe, so
    // without the flush it would sit in our buffer while they wait forever.
    printf("listening on %s\n", text);
    if (fflush(stdout) == EOF) {
        log_line(NULL, "write stdout: %s", strerror(errno));
        goto out;
    }
    buffer = malloc(IO_CHUNK_BYTES);
    if (buffer == NULL) {
        log_line(NULL, "malloc: %s", strerror(errno));
        goto out;
    }
    status = 0;
    // A signal landing between this test and accept() is only noticed at the next connection;
    // closing that window needs ppoll() with a signal mask, beyond this tool.
    while (!stop_requested) {
        addr_len = sizeof addr;
        int fd = accept(listen_fd, (struct sockaddr *)&addr, &addr_len);
        if (fd < 0) {
            // ECONNABORTED: a client gave up while still queued. That is its problem, not
            // the listening socket's, so keep serving; anything else is fatal.
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            log_line(NULL, "accept: %s", strerror(errno));
            status = 1;
            break;
        }
        addr_format((struct sockaddr *)&addr, addr_len, text, sizeof text);
        enum session_result result = SESSION_FAILED;
        if (net_set_nodelay(fd) < 0)
            log_line(text, "setsockopt TCP_NODELAY: %s", strerror(errno));
        else
            result = session_serve(fd, text, opt->verbose, buffer);
        net_close(fd, text);
        if (result == SESSION_STOPPED)
            break;
        if (opt->once) {
            status = result == SESSION_OK ? 0 : 1;
            break;
        }
    }
out:
    free(buffer);
    net_close(listen_fd, NULL);
    return status;
}

static double ttcp_clock_seconds(void)
{
    struct timespec now;

    // CLOCK_MONOTONIC never jumps when NTP or an administrator sets the wall clock.
    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0) {
        log_line(NULL, "clock_gettime: %s", strerror(errno));
        exit(1);
    }
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double ttcp_mb_per_second(uint64_t bytes, double seconds)
{
    return seconds > 0 ? (double)bytes / BYTES_PER_MB / seconds : 0.0;
}

static int ttcp_send_requests(int fd, uint32_t number, uint32_t length, char *payload)
{
    for (uint32_t i = 0; i < number; i++) {
        uint32_t prefix = htonl(length);
        // One writev() per message: prefix and payload leave in one system call, without first
        // copying them into one buffer.
        struct iovec iov[2] = {{&prefix, sizeof prefix}, {payload, length}};
        if (io_writev_full(fd, iov, 2) < 0) {
            log_line(NULL, "write message %u: %s", i, strerror(errno));
            return -1;
        }
        uint32_t ack = 0;
        int result = io_read_u32(fd, &ack);
        if (result != 1) {
            session_fail_io(NULL, "read ack", result);
            return -1;
        }
        if (ack != length) {
            log_line(NULL, "message %u: wrong ack %u, expected %u", i, ack, length);
            return -1;
        }
    }
    return 0;
}

static int ttcp_send_stream(int fd, uint32_t total_bytes, char *buffer)
{
    for (uint32_t left = total_bytes; left > 0;) {
        uint32_t chunk = left < IO_CHUNK_BYTES ? left : IO_CHUNK_BYTES;
        if (io_write_full(fd, buffer, chunk) < 0) {
            log_line(NULL, "write stream: %s", strerror(errno));
            return -1;
        }
        left -= chunk;
    }
    // Half-close: the receiver reads until EOF, so we must send one, yet keep our reading
    // side open for its ack. close() would do the first and ruin the second.
    if (shutdown(fd, SHUT_WR) < 0) {
        log_line(NULL, "shutdown: %s", strerror(errno));
        return -1;
    }
    uint32_t ack = 0;
    int result = io_read_u32(fd, &ack);
    if (result != 1) {
        session_fail_io(NULL, "read stream ack", result);
        return -1;
    }
    if (ack != total_bytes) {
        log_line(NULL, "stream: wrong ack %u, expected %u", ack, total_bytes);
        return -1;
    }
    return 0;
}

// One session on a fresh connection; number == 0 means a stream of `length` bytes.
// The clock runs from just before the header is sent until the last ack is in.
static int ttcp_session(const struct options *opt, uint32_t number, uint32_t length, char *buffer,
                        double *seconds)
{
    int fd = net_open(opt->host, opt->port, false);
    if (fd < 0)
        return -1;
    double start = ttcp_clock_seconds();
    uint32_t header[2] = {htonl(number), htonl(length)};
    struct iovec iov[2] = {{&header[0], sizeof header[0]}, {&header[1], sizeof header[1]}};
    int rc = io_writev_full(fd, iov, 2);
    if (rc < 0)
        log_line(NULL, "write session header: %s", strerror(errno));
    else if (number > 0)
        rc = ttcp_send_requests(fd, number, length, buffer);
    else
        rc = ttcp_send_stream(fd, length, buffer);
    *seconds = ttcp_clock_seconds() - start;
    net_close(fd, NULL);
    return rc;
}

// Rows appear as they finish; a student watches the table fill in, so flush each one.
static int ttcp_flush(void)
{
    if (fflush(stdout) == EOF) {
        log_line(NULL, "write stdout: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int ttcp_run_table(const struct options *opt, char *buffer)
{
    double seconds;

    printf("%8s%10s%10s%10s\n", "length", "messages", "seconds", "MB/s");
    if (ttcp_flush() < 0)
        return -1;
    for (size_t row = 0; row < TABLE_ROWS; row++) {
        uint32_t length = table_lengths_bytes[row];
        uint32_t number = opt->total_bytes / length;
        number = number < TABLE_MIN_MESSAGES ? TABLE_MIN_MESSAGES : number;
        number = number > TABLE_MAX_MESSAGES ? TABLE_MAX_MESSAGES : number;
        if (ttcp_session(opt, number, length, buffer, &seconds) < 0)
            return -1;
        printf("%8u%10u%10.3f%10.2f\n", length, number, seconds,
               ttcp_mb_per_second((uint64_t)number * length, seconds));
        if (ttcp_flush() < 0)
            return -1;
    }
    if (ttcp_session(opt, 0, opt->total_bytes, buffer, &seconds) < 0)
        return -1;
    printf("%8s%10s%10.3f%10.2f\n", "stream", "-", seconds,
           ttcp_mb_per_second(opt->total_bytes, seconds));
    return ttcp_flush();
}

static int ttcp_run(const struct options *opt)
{
    double seconds = 0;
    int rc;

    if (signal_setup(false) < 0) {
        log_line(NULL, "sigaction: %s", strerror(errno));
        return 1;
    }
    // The buffer is payload for request mode and a chunk for streams. Its contents do not
    // matter, but they must be initialised: we never send uninitialised memory.
    size_t buffer_bytes = opt->table ? table_lengths_bytes[TABLE_ROWS - 1] : opt->length_bytes;
    buffer_bytes = buffer_bytes < IO_CHUNK_BYTES ? IO_CHUNK_BYTES : buffer_bytes;
    char *buffer = malloc(buffer_bytes);
    if (buffer == NULL) {
        log_line(NULL, "malloc: %s", strerror(errno));
        return 1;
    }
    memset(buffer, 'x', buffer_bytes);
    if (opt->table) {
        rc = ttcp_run_table(opt, buffer);
    } else if (opt->stream) {
        rc = ttcp_session(opt, 0, opt->total_bytes, buffer, &seconds);
        if (rc == 0)
            printf("stream %u bytes: %.3f s, %.2f MB/s\n", opt->total_bytes, seconds,
                   ttcp_mb_per_second(opt->total_bytes, seconds));
    } else {
        rc = ttcp_session(opt, opt->number, opt->length_bytes, buffer, &seconds);
        if (rc == 0)
            printf("%u x %u bytes: %.3f s, %.2f MB/s\n", opt->number, opt->length_bytes, seconds,
                   ttcp_mb_per_second((uint64_t)opt->number * opt->length_bytes, seconds));
    }
    free(buffer);
    if (rc == 0)
        rc = ttcp_flush();
    return rc < 0 ? 1 : 0;
}

static void options_usage(FILE *out)
{
    fprintf(out,
            "usage: ttcp --receive [--host ADDR] [--port N] [--once] [--verbose]\n"
            "       ttcp --transmit [--host ADDR] --port N [--number N] [--length BYTES]\n"
            "       ttcp --transmit --stream [--host ADDR] --port N [--bytes TOTAL]\n"
            "       ttcp --transmit --table [--host ADDR] --port N [--bytes TOTAL]\n"
            "\n"
            "  -r, --receive       serve sessions one after another until SIGINT/SIGTERM\n"
            "  -t, --transmit      run one test against a receiver and print the result\n"
            "  -H, --host ADDR     address to bind or connect to (default %s; ::1 for IPv6)\n"
            "  -p, --port N        TCP port (receiver default %u; 0 lets the kernel choose)\n"
            "  -n, --number N      messages per session, 1..%u (default %u)\n"
            "  -l, --length BYTES  bytes per message, 1..%u (default %u)\n"
            "  -s, --stream        send TOTAL bytes as one raw stream: no prefixes, no acks\n"
            "  -T, --table         one session per length 64 B..1 MiB with TOTAL/length\n"
            "                      messages (clamped to %u..%u), then one stream session\n"
            "  -b, --bytes TOTAL   bytes for --stream and --table; suffix K or M for KiB or MiB\n"
            "                      (default %u = 64M)\n"
            "  -o, --once          receiver: exit after the first session\n"
            "  -v, --verbose       receiver: one line per session on stderr\n"
            "  -h, --help          show this help\n"
            "\n"
            "Throughput counts payload bytes only, and MB/s means 1,000,000 bytes per second.\n",
            DEFAULT_HOST, DEFAULT_PORT, MAX_NUMBER, DEFAULT_NUMBER, MAX_LENGTH_BYTES,
            DEFAULT_LENGTH_BYTES, TABLE_MIN_MESSAGES, TABLE_MAX_MESSAGES, DEFAULT_TOTAL_BYTES);
}

static int options_parse_u32(const char *option, const char *text, uint32_t min, uint32_t max,
                             bool allow_suffix, uint32_t *out)
{
    unsigned long long multiplier = 1;
    char *end = NULL;

    // strtoull() skips blanks and accepts "-1" (wrapping it to a huge value): demand a digit.
    errno = 0;
    unsigned long long value = isdigit((unsigned char)text[0]) ? strtoull(text, &end, 10) : 0;
    if (end != NULL && allow_suffix && (*end == 'K' || *end == 'k')) {
        multiplier = 1024;
        end++;
    } else if (end != NULL && allow_suffix && (*end == 'M' || *end == 'm')) {
        multiplier = 1024 * 1024;
        end++;
    }
    if (end == NULL || *end != '\0' || errno != 0 || value > max / multiplier ||
        value * multiplier < min) {
        log_line(NULL, "%s: invalid value '%s' (allowed %u..%u)", option, text, min, max);
        return -1;
    }
    *out = (uint32_t)(value * multiplier);
    return 0;
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"receive", no_argument, NULL, 'r'},
        {"transmit", no_argument, NULL, 't'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"number", required_argument, NULL, 'n'},
        {"length", required_argument, NULL, 'l'},
        {"bytes", required_argument, NULL, 'b'},
        {"stream", no_argument, NULL, 's'},
        {"table", no_argument, NULL, 'T'},
        {"once", no_argument, NULL, 'o'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool port_given = false;
    int c;

    // opterr = 0 and the leading ':' make getopt_long report problems to us ('?' for an
    // unknown option, ':' for a missing value) instead of printing argv[0]-prefixed messages.
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":rtH:p:n:l:b:sTovh", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'r': opt->receive = true; break;
        case 't': opt->transmit = true; break;
        case 'H': opt->host = optarg; break;
        case 's': opt->stream = true; break;
        case 'T': opt->table = true; break;
        case 'o': opt->once = true; break;
        case 'v': opt->verbose = true; break;
        case 'h': options_usage(stdout); return 0;
        case 'p':
            rc = options_parse_u32("--port", optarg, 0, MAX_PORT, false, &opt->port);
            port_given = true;
            break;
        case 'n':
            rc = options_parse_u32("--number", optarg, 1, MAX_NUMBER, false, &opt->number);
            break;
        case 'l':
            rc = options_parse_u32("--length", optarg, 1, MAX_LENGTH_BYTES, true,
                                   &opt->length_bytes);
            break;
        case 'b':
            rc = options_parse_u32("--bytes", optarg, 1, UINT32_MAX, true, &opt->total_bytes);
            break;
        case ':':
            log_line(NULL, "option '%s' needs a value (try --help)", argv[optind - 1]);
            return 2;
        default: // a long option has been stepped over; a short one may sit inside "-rx"
            if (strncmp(argv[optind - 1], "--", 2) == 0)
                log_line(NULL, "bad option '%s' (try --help)", argv[optind - 1]);
            else
                log_line(NULL, "unknown option '-%c' (try --help)", optopt);
            return 2;
        }
        if (rc < 0)
            return 2;
    }
    const char *problem = NULL;
    if (optind < argc) {
        log_line(NULL, "unexpected argument '%s' (try --help)", argv[optind]);
        return 2;
    }
    if (opt->receive == opt->transmit)
        problem = "choose exactly one of --receive or --transmit (try --help)";
    else if (opt->transmit && (!port_given || opt->port == 0))
        problem = "--transmit needs --port 1..65535";
    else if (opt->stream && opt->table)
        problem = "--stream and --table exclude each other";
    if (problem != NULL) {
        log_line(NULL, "%s", problem);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct options opt = {
        .host = DEFAULT_HOST,
        .port = DEFAULT_PORT,
        .number = DEFAULT_NUMBER,
        .length_bytes = DEFAULT_LENGTH_BYTES,
        .total_bytes = DEFAULT_TOTAL_BYTES,
    };
    int rc = options_parse(argc, argv, &opt);

    if (rc >= 0)
        return rc;
    return opt.receive ? receiver_run(&opt) : ttcp_run(&opt);
}
