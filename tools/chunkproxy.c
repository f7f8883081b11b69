/* chunkproxy.c -- a TCP proxy that re-cuts the stream: sticky and half packets on demand */
//
// On loopback a write usually arrives whole in one read, so code that assumes "one read, one
// message" seems to work. Put this proxy between a client and its server: it forwards every
// byte, in order, but decides where the reads on the far side begin and end. It cuts the
// stream into chunks (--chunk 1, 7,1,300, random:1-4000), spaces them out (--delay-ms) so each
// arrives alone, or gathers bytes (--coalesce-bytes) so several writes arrive in one read.
//
// It must itself be a correct proxy: an EOF from one side becomes shutdown(SHUT_WR) on the
// other while the other direction keeps flowing; a reset on one side resets the other; each
// client gets its own upstream connection; and a direction stops reading while the bytes it
// read are not yet written (backpressure), so memory stays bounded.

#include "toolkit.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_HOST        "127.0.0.1"
#define DEFAULT_COALESCE_MS 200u
#define DEFAULT_SEED        1u
#define BUFFER_BYTES        (64u * 1024) // per direction, or --coalesce-bytes if that is more
#define MAX_PORT            65535u
#define MAX_CHUNK_BYTES     (1024u * 1024)
#define MAX_CHUNK_SIZES     64u
#define MAX_COALESCE_BYTES  (16u * 1024 * 1024)
#define MAX_TIME_MS         3600000u
#define ACCEPTS_PER_TURN    64  // then serve the connections we have before taking more
#define ACCEPT_PAUSE_MS     100 // after EMFILE and the like: give connections time to close
#define ADDR_TEXT_BYTES     (NI_MAXHOST + NI_MAXSERV + 16)

enum chunk_mode { CHUNK_NONE, CHUNK_LIST, CHUNK_RANDOM };

struct chunk_spec {
    enum chunk_mode mode;
    uint32_t sizes[MAX_CHUNK_SIZES]; // CHUNK_LIST: used in turn, cycling
    size_t count;
    uint32_t min, max; // CHUNK_RANDOM
};

struct options {
    const char *upstream, *host;
    uint64_t port, delay_ms, coalesce_bytes, coalesce_ms, seed;
    struct chunk_spec chunk;
    bool shape[2]; // which directions are cut, delayed and coalesced; indexed by enum side
    bool verbose;
};

// A pair joins two sockets. dir[S] carries the bytes read from side S to the other side:
// dir[SIDE_CLIENT] is client -> upstream ("up"), dir[SIDE_UPSTREAM] upstream -> client ("down").
enum side { SIDE_CLIENT, SIDE_UPSTREAM };
static const char *const side_names[] = {"client", "upstream"};

// One direction's bytes, read but not yet written:
//
//   | written | released: to be written | collected: coalescing |   free   |
//   0       start                    released                  end        cap
//
// Invariant: 0 <= start <= released <= end <= cap. Without coalescing, released == end.
struct direction {
    unsigned char *buf;
    size_t cap, start, released, end;
    bool shaped;       // --chunk, --delay-ms and --coalesce-* apply to this direction
    bool eof;          // the source sent EOF: pass it on once the buffer is empty
    bool shut;         // shutdown(SHUT_WR) done on the destination: this direction is over
    bool blocked;      // the destination's send buffer is full: wait for POLLOUT
    size_t chunk_left; // bytes left of the chunk being written; 0: draw the next size
    size_t chunk_index;
    uint64_t rng;
    int64_t next_write_ms;        // --delay-ms: no write before this time
    int64_t coalesce_deadline_ms; // --coalesce-ms: release the collected bytes by this time
};

enum pair_state { PAIR_CONNECTING, PAIR_OPEN };

struct pair {
    int fd[2]; // indexed by enum side
    enum pair_state state;
    struct direction dir[2];
    char client_text[ADDR_TEXT_BYTES];
};

struct proxy {
    const struct options *opt;
    int listen_fd;
    struct sockaddr_storage upstream_addr;
    socklen_t upstream_len;
    char upstream_label[ADDR_TEXT_BYTES + 16]; // "upstream 127.0.0.1:7000"
    struct pair **pairs;
    struct pollfd *fds; // fds[0]: the listening socket; then two per pair, in pairs[] order
    size_t count, cap;
    int64_t accept_paused_until_ms;
};

// I/O results. IO_ERROR: the failure is logged, the pair must be reset.
enum { IO_OK = 0, IO_ERROR = -1 };

// Set by SIGINT/SIGTERM. Only a volatile sig_atomic_t may be written safely from a handler.
static volatile sig_atomic_t stop_requested;

static const char *pair_state_name(enum pair_state state)
{
    return state == PAIR_CONNECTING ? "connecting" : "open";
}

// For error lines: the upstream is named with its address; the client's is in every prefix.
static const char *side_label(const struct proxy *p, enum side side)
{
    return side == SIDE_CLIENT ? side_names[SIDE_CLIENT] : p->upstream_label;
}

static enum side side_other(enum side side)
{
    return side == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT;
}

static void addr_format(const struct sockaddr *addr, socklen_t len, char *text, size_t size)
{
    char host[NI_MAXHOST], port[NI_MAXSERV];
    int rc = getnameinfo(addr, len, host, sizeof host, port, sizeof port,
                         NI_NUMERICHOST | NI_NUMERICSERV);

    if (rc != 0)
        snprintf(text, size, "(unknown address: %s)", gai_strerror(rc));
    else if (addr->sa_family == AF_INET6) // [::1]:80, since ::1:80 would be ambiguous
        snprintf(text, size, "[%s]:%s", host, port);
    else
        snprintf(text, size, "%s:%s", host, port);
}

// The size of the next chunk. The cuts sit at fixed positions in the stream: a write never
// crosses one, but may stop short of it when fewer bytes are at hand. Random sizes come from
// splitmix64 (toolkit.c), not rand(), so that a --seed gives the same sizes with every libc.
static size_t dir_next_chunk(struct direction *d, const struct chunk_spec *spec)
{
    size_t size;

    switch (d->shaped ? spec->mode : CHUNK_NONE) {
    case CHUNK_LIST:
        size = spec->sizes[d->chunk_index];
        d->chunk_index = (d->chunk_index + 1) % spec->count;
        return size;
    case CHUNK_RANDOM: // the modulo bias is far below anything a test could notice
        return spec->min + (size_t)(splitmix64(&d->rng) % (spec->max - spec->min + 1));
    default: return d->released - d->start; // no cutting: forward what is there
    }
}

// Backpressure: a source is read only while its buffer has room. The upstream is read only
// once it is connected.
static bool dir_wants_read(const struct pair *pr, enum side from)
{
    const struct direction *d = &pr->dir[from];

    return !d->eof && d->end - d->start < d->cap && (from == SIDE_CLIENT || pr->state == PAIR_OPEN);
}

static int dir_read(const struct proxy *p, struct pair *pr, enum side from, int64_t now)
{
    struct direction *d = &pr->dir[from];
    ssize_t n;

    if (d->end == d->cap) { // the free space is all in front: move the bytes down
        memmove(d->buf, d->buf + d->start, d->end - d->start);
        d->released -= d->start;
        d->end -= d->start;
        d->start = 0;
    }
    do
        n = recv(pr->fd[from], d->buf + d->end, d->cap - d->end, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return IO_OK;
    if (n < 0) {
        log_line("client %s: recv from %s: %s", pr->client_text, side_label(p, from),
                 strerror(errno));
        return IO_ERROR;
    }
    if (n == 0) {
        d->eof = true; // passed on after the last byte: see pair_step()
        return IO_OK;
    }
    if (d->end == d->released) // the first collected byte starts the --coalesce-ms clock
        d->coalesce_deadline_ms = now + (int64_t)p->opt->coalesce_ms;
    d->end += (size_t)n;
    if (p->opt->verbose)
        log_line("client %s: read %zd bytes from %s", pr->client_text, n, side_names[from]);
    return IO_OK;
}

// Coalescing: hold the collected bytes back until there are enough, the time is up, or no
// more will come. Then release them all at once: they leave in as few writes as the cuts allow.
static void dir_release(const struct options *opt, struct direction *d, int64_t now)
{
    size_t collected = d->end - d->released;

    if (collected > 0 && (!d->shaped || collected >= opt->coalesce_bytes || d->eof ||
                          now >= d->coalesce_deadline_ms))
        d->released = d->end;
}

// Write the released bytes, one chunk per send(), as far as the kernel and the delay allow.
static int dir_write(const struct proxy *p, struct pair *pr, enum side from, int64_t now)
{
    struct direction *d = &pr->dir[from];
    enum side to = side_other(from);

    while (d->released > d->start && !d->blocked && now >= d->next_write_ms) {
        if (d->chunk_left == 0)
            d->chunk_left = dir_next_chunk(d, &p->opt->chunk);
        size_t len = d->released - d->start;
        if (len > d->chunk_left)
            len = d->chunk_left;
        // MSG_NOSIGNAL: a vanished peer gives EPIPE, not a SIGPIPE that would kill us all.
        ssize_t n = send(pr->fd[to], d->buf + d->start, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            d->blocked = true; // not an error: POLLOUT tells us when there is room
            break;
        }
        if (n < 0) {
            log_line("client %s: send to %s: %s", pr->client_text, side_label(p, to),
                     strerror(errno));
            return IO_ERROR;
        }
        if (p->opt->verbose)
            log_line("client %s: write %zd bytes to %s", pr->client_text, n, side_names[to]);
        d->start += (size_t)n;
        d->chunk_left -= (size_t)n;
        // The delay goes between whole chunks: the rest of a chunk that the kernel cut short
        // follows as soon as there is room.
        if (d->chunk_left == 0 && d->shaped && p->opt->delay_ms > 0)
            d->next_write_ms = now + (int64_t)p->opt->delay_ms;
    }
    if (d->start == d->end) // empty: start again at the front, nothing to move
        d->start = d->released = d->end = 0;
    assert(d->start <= d->released && d->released <= d->end && d->end <= d->cap);
    return IO_OK;
}

// When this direction has something to do without any event, or INT64_MAX.
static int64_t dir_deadline(const struct pair *pr, enum side from)
{
    const struct direction *d = &pr->dir[from];

    if (pr->state == PAIR_OPEN && d->released > d->start && !d->blocked)
        return d->next_write_ms;
    if (d->end > d->released)
        return d->coalesce_deadline_ms;
    return INT64_MAX;
}

// What to wait for on one side: readable if we read from it; writable if a write to it is
// stuck, or its connect is under way.
static short pair_events(const struct pair *pr, enum side side)
{
    short events = dir_wants_read(pr, side) ? POLLIN : 0;

    if (pr->state == PAIR_OPEN ? pr->dir[side_other(side)].blocked : side == SIDE_UPSTREAM)
        events |= POLLOUT;
    return events;
}

// reset: the stream broke. The other side then gets a reset too, not a FIN that would tell it
// the stream ended well when bytes may have been lost.
static void pair_close(const struct proxy *p, struct pair *pr, bool reset)
{
    struct linger abortive = {.l_onoff = 1, .l_linger = 0}; // close() then sends RST

    if (p->opt->verbose)
        log_line("client %s: close (%s%s)", pr->client_text, pair_state_name(pr->state),
                 reset ? ", reset" : "");
    for (int side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++) {
        if (pr->fd[side] >= 0 && reset &&
            setsockopt(pr->fd[side], SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) < 0)
            log_line("client %s: SO_LINGER on %s: %s", pr->client_text, side_names[side],
                     strerror(errno));
        // No retry on EINTR: Linux has released the descriptor whatever close() returned.
        if (pr->fd[side] >= 0)
            close(pr->fd[side]);
        free(pr->dir[side].buf);
    }
    free(pr);
}

// The non-blocking connect is over: SO_ERROR holds how it went.
static int pair_connected(const struct proxy *p, struct pair *pr)
{
    int error = 0;
    socklen_t len = sizeof error;

    if (getsockopt(pr->fd[SIDE_UPSTREAM], SOL_SOCKET, SO_ERROR, &error, &len) < 0)
        error = errno;
    if (error != 0) {
        log_line("client %s: connect to %s: %s", pr->client_text, p->upstream_label,
                 strerror(error));
        return IO_ERROR;
    }
    pr->state = PAIR_OPEN;
    if (p->opt->verbose)
        log_line("client %s: connected to %s", pr->client_text, p->upstream_label);
    return IO_OK;
}

// One loop turn for one pair: read what poll() reported, release and write what is due, pass
// EOFs on. Returns false when the pair is over (and freed).
static bool pair_step(const struct proxy *p, struct pair *pr, const short revents[2], int64_t now)
{
    // A failed connect closes the client gently: it sees EOF, nothing was lost.
    if (pr->state == PAIR_CONNECTING && revents[SIDE_UPSTREAM] != 0 && pair_connected(p, pr) < 0) {
        pair_close(p, pr, false);
        return false;
    }
    for (int from = SIDE_CLIENT; from <= SIDE_UPSTREAM; from++) {
        struct direction *d = &pr->dir[from];
        enum side to = side_other(from);
        // POLLHUP and POLLERR too: recv() and send() then say what happened.
        if ((revents[from] & (POLLIN | POLLHUP | POLLERR)) && dir_wants_read(pr, from) &&
            dir_read(p, pr, from, now) < 0)
            goto reset;
        if (revents[to] & (POLLOUT | POLLHUP | POLLERR))
            d->blocked = false;
        dir_release(p->opt, d, now);
        if (pr->state != PAIR_OPEN)
            continue;
        if (dir_write(p, pr, from, now) < 0)
            goto reset;
        // Half-close: the EOF follows the last byte, and ends this direction only; the other
        // one flows on until its own EOF.
        if (d->eof && d->start == d->end && !d->shut) {
            if (shutdown(pr->fd[to], SHUT_WR) < 0) {
                log_line("client %s: shutdown(SHUT_WR) to %s: %s", pr->client_text,
                         side_label(p, to), strerror(errno));
                goto reset;
            }
            d->shut = true;
            if (p->opt->verbose)
                log_line("client %s: EOF from %s -> shutdown(SHUT_WR) to %s", pr->client_text,
                         side_names[from], side_names[to]);
        }
    }
    if (!pr->dir[SIDE_CLIENT].shut || !pr->dir[SIDE_UPSTREAM].shut)
        return true;
    pair_close(p, pr, false); // both directions ended well
    return false;
reset:
    pair_close(p, pr, true);
    return false;
}

// Room for one more pair in pairs[] and its two entries in fds[].
static int proxy_reserve(struct proxy *p)
{
    size_t cap = p->cap == 0 ? 16 : p->cap * 2;
    struct pair **pairs;
    struct pollfd *fds;

    if (p->count < p->cap)
        return 0;
    if ((pairs = realloc(p->pairs, cap * sizeof *pairs)) != NULL)
        p->pairs = pairs;
    if ((fds = realloc(p->fds, (1 + 2 * cap) * sizeof *fds)) != NULL)
        p->fds = fds;
    if (pairs == NULL || fds == NULL)
        return -1;
    p->cap = cap;
    return 0;
}

// A new client: make its pair and start the non-blocking connect to the upstream. A failure
// here closes this client only.
static void proxy_add(struct proxy *p, int fd, const struct sockaddr *addr, socklen_t addr_len)
{
    const struct options *opt = p->opt;
    struct pair *pr = calloc(1, sizeof *pr);
    int one = 1;

    if (pr == NULL || proxy_reserve(p) < 0) {
        log_line("accept: out of memory, closing the new connection");
        free(pr);
        close(fd);
        return;
    }
    pr->fd[SIDE_CLIENT] = fd;
    pr->fd[SIDE_UPSTREAM] = -1;
    addr_format(addr, addr_len, pr->client_text, sizeof pr->client_text);
    if (opt->verbose)
        log_line("client %s: accepted", pr->client_text);
    for (int side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++) {
        struct direction *d = &pr->dir[side];
        d->shaped = opt->shape[side];
        d->cap =
            d->shaped && opt->coalesce_bytes > BUFFER_BYTES ? opt->coalesce_bytes : BUFFER_BYTES;
        // Every direction of every connection starts afresh from the seed: a run cuts the
        // same way, whatever the other connections do.
        d->rng = opt->seed + (uint64_t)side;
        if ((d->buf = malloc(d->cap)) == NULL) {
            log_line("client %s: out of memory", pr->client_text);
            goto fail;
        }
    }
    pr->fd[SIDE_UPSTREAM] =
        socket(p->upstream_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (pr->fd[SIDE_UPSTREAM] < 0) {
        log_line("client %s: socket: %s", pr->client_text, strerror(errno));
        goto fail;
    }
    // The point of the tool: each chunk leaves as a segment of its own. With Nagle's
    // algorithm, a small write waits while an earlier one is unacknowledged, and the chunks
    // written in the meantime would go out merged into one segment again.
    for (int side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++) {
        if (setsockopt(pr->fd[side], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
            log_line("client %s: TCP_NODELAY on %s: %s", pr->client_text, side_names[side],
                     strerror(errno));
            goto fail;
        }
    }
    // No EINTR to fear: the stop signals are blocked outside ppoll().
    if (connect(pr->fd[SIDE_UPSTREAM], (const struct sockaddr *)&p->upstream_addr,
                p->upstream_len) == 0) {
        pr->state = PAIR_OPEN; // loopback may finish the handshake at once
    } else if (errno == EINPROGRESS) {
        pr->state = PAIR_CONNECTING; // POLLOUT on the upstream will tell the outcome
    } else {
        log_line("client %s: connect to %s: %s", pr->client_text, p->upstream_label,
                 strerror(errno));
        goto fail;
    }
    if (opt->verbose)
        log_line("client %s: %s %s", pr->client_text,
                 pr->state == PAIR_OPEN ? "connected to" : "connecting to", p->upstream_label);
    p->pairs[p->count++] = pr;
    return;
fail:
    pair_close(p, pr, false);
}

static void proxy_accept(struct proxy *p, int64_t now)
{
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        int fd = accept4(p->listen_fd, (struct sockaddr *)&addr, &addr_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            proxy_add(p, fd, (const struct sockaddr *)&addr, addr_len);
            continue;
        }
        // ECONNABORTED: a client gave up while still queued; that is its business.
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        // Out of descriptors or memory. The connection stays queued, the listening socket
        // stays readable, and poll() would return at once for ever: pause instead.
        log_line("accept: %s (pausing for %d ms)", strerror(errno), ACCEPT_PAUSE_MS);
        p->accept_paused_until_ms = now + ACCEPT_PAUSE_MS;
        return;
    }
}

// Fill fds[] from every pair's state; return the earliest timer, or INT64_MAX.
//
// Why poll() and not epoll: what we wait for changes on nearly every turn (a full buffer stops
// reading, a delay stops writing, an EOF ends a direction), and the timers need a walk over
// all pairs anyway. Deriving each fd's events from its state is one line here; with epoll it
// would be an epoll_ctl() at each change, easy to miss. A test tool serves tens of
// connections, where poll's cost per watched fd does not matter.
static int64_t proxy_prepare(struct proxy *p, int64_t now)
{
    bool accepting = now >= p->accept_paused_until_ms;
    int64_t deadline = accepting ? INT64_MAX : p->accept_paused_until_ms;

    p->fds[0] = (struct pollfd){.fd = accepting ? p->listen_fd : -1, .events = POLLIN};
    for (size_t i = 0; i < p->count; i++) {
        for (int side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++) {
            struct pollfd *f = &p->fds[1 + 2 * i + (size_t)side];
            int64_t due = dir_deadline(p->pairs[i], side);
            // A side we want nothing from is left out (fd -1): poll() reports POLLHUP even
            // when not asked, and would wake us over and over for a paused source.
            f->events = pair_events(p->pairs[i], side);
            f->fd = f->events != 0 ? p->pairs[i]->fd[side] : -1;
            f->revents = 0;
            deadline = due < deadline ? due : deadline;
        }
    }
    return deadline;
}

// The event loop: one thread, every socket non-blocking, one ppoll() per turn.
static int proxy_run(struct proxy *p, const sigset_t *wait_mask)
{
    while (!stop_requested) {
        int64_t now = clock_ms();
        int64_t deadline = proxy_prepare(p, now);
        int64_t wait_ms = deadline > now ? deadline - now : 0;
        struct timespec wait = {.tv_sec = wait_ms / 1000, .tv_nsec = wait_ms % 1000 * 1000000};
        // SIGINT and SIGTERM are unblocked only while ppoll() waits: one cannot slip in between
        // the stop_requested test above and the wait, and go unnoticed until the next event.
        int ready =
            ppoll(p->fds, 1 + 2 * p->count, deadline == INT64_MAX ? NULL : &wait, wait_mask);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            log_line("ppoll: %s", strerror(errno));
            return 1;
        }
        now = clock_ms();
        // Every pair takes a step, events or not: its timers may be due. Walk backwards: a
        // finished pair is replaced by the last one, which has had its step already.
        for (size_t i = p->count; i-- > 0;) {
            const short revents[2] = {p->fds[1 + 2 * i].revents, p->fds[2 + 2 * i].revents};
            if (!pair_step(p, p->pairs[i], revents, now))
                p->pairs[i] = p->pairs[--p->count];
        }
        // Last: the new pairs have no entries in fds[] before the next turn.
        if (p->fds[0].revents & POLLIN)
            proxy_accept(p, now);
    }
    return 0;
}

static void signal_on_stop(int signo)
{
    (void)signo;
    stop_requested = 1;
}

// Install the stop handler and block the stop signals; *wait_mask is the mask ppoll() waits
// with: the old one, stop signals unblocked.
static int signal_setup(sigset_t *wait_mask)
{
    struct sigaction action;
    sigset_t stop;

    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_handler = signal_on_stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0 ||
        sigprocmask(SIG_BLOCK, &stop, wait_mask) < 0) {
        log_line("signal setup: %s", strerror(errno));
        return -1;
    }
    sigdelset(wait_mask, SIGINT);
    sigdelset(wait_mask, SIGTERM);
    return 0;
}

static int resolve(const char *host, const char *port, int flags, struct addrinfo **list)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    hints.ai_flags = AI_NUMERICSERV | flags;
    int rc = getaddrinfo(host, port, &hints, list);
    if (rc != 0)
        log_line("%s: %s", host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    return rc == 0 ? 0 : -1;
}

// --upstream HOST:PORT or [IPV6]:PORT, resolved once: every client goes to the first address.
static int proxy_resolve_upstream(struct proxy *p)
{
    const char *spec = p->opt->upstream;
    const char *colon = strrchr(spec, ':');
    char host[NI_MAXHOST], text[ADDR_TEXT_BYTES];
    struct addrinfo *list = NULL;
    size_t len = colon == NULL ? 0 : (size_t)(colon - spec);

    if (len == 0 || len >= sizeof host || !isdigit((unsigned char)colon[1])) {
        log_line("--upstream wants HOST:PORT, not '%s'", spec);
        return -1;
    }
    memcpy(host, spec, len);
    host[len] = '\0';
    bool bracketed = len >= 2 && host[0] == '[' && host[len - 1] == ']';
    if (bracketed)
        host[len - 1] = '\0';
    if (resolve(bracketed ? host + 1 : host, colon + 1, 0, &list) < 0)
        return -1;
    memcpy(&p->upstream_addr, list->ai_addr, list->ai_addrlen);
    p->upstream_len = list->ai_addrlen;
    freeaddrinfo(list);
    addr_format((const struct sockaddr *)&p->upstream_addr, p->upstream_len, text, sizeof text);
    snprintf(p->upstream_label, sizeof p->upstream_label, "upstream %s", text);
    return 0;
}

// Setup: open the listening socket, print "listening on HOST:PORT". Returns the fd or -1.
static int proxy_listen(const struct options *opt)
{
    char port[16], text[ADDR_TEXT_BYTES];
    struct addrinfo *list = NULL;
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof addr;
    int one = 1;

    snprintf(port, sizeof port, "%u", (unsigned)opt->port);
    if (resolve(opt->host, port, AI_PASSIVE, &list) < 0)
        return -1;
    // SO_REUSEADDR: a restarted proxy may bind while old connections sit in TIME_WAIT.
    int fd = socket(list->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              bind(fd, list->ai_addr, list->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0 &&
              getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0;
    int saved_errno = errno;
    freeaddrinfo(list);
    if (!ok) {
        log_line("listen on %s port %s: %s", opt->host, port, strerror(saved_errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    // With --port 0 only the kernel knows the port; scripts read it from this line, so it
    // must not wait in stdio's buffer.
    addr_format((const struct sockaddr *)&addr, addr_len, text, sizeof text);
    printf("listening on %s\n", text);
    if (fflush(stdout) == 0)
        return fd;
    log_line("write stdout: %s", strerror(errno));
    close(fd);
    return -1;
}

static void options_usage(FILE *out)
{
    fprintf(out,
            "usage: chunkproxy --upstream HOST:PORT [--host ADDR] [--port N] [--chunk SPEC]\n"
            "         [--delay-ms MS] [--coalesce-bytes N] [--coalesce-ms MS] [--seed S]\n"
            "         [--direction both|up|down] [-v]\n"
            "Forwards every byte between its clients and the upstream, but re-cuts the stream,\n"
            "so that the receiver sees half packets and sticky packets.\n"
            "  --host ADDR, --port N  where to listen (default %s, port 0: the kernel chooses)\n"
            "  --chunk SPEC           writes of 1 byte, N bytes, N,M,K bytes in turn, or\n"
            "                         random:MIN-MAX bytes (default: as the reads returned them)\n"
            "  --delay-ms MS          wait MS ms between chunks, so that each arrives alone\n"
            "  --coalesce-bytes N     hold bytes back until N are there, --coalesce-ms passed\n"
            "                         (default %u) or the sender's EOF; then cut with --chunk\n"
            "  --seed S               seed of random:MIN-MAX (default %u)\n"
            "  --direction DIR        shape client->upstream (up), upstream->client (down) or\n"
            "                         both (default)\n"
            "  -v, --verbose          one line per accept, connect, read, write, EOF, close\n",
            DEFAULT_HOST, DEFAULT_COALESCE_MS, DEFAULT_SEED);
}

// --chunk N | N,M,K | random:MIN-MAX, every size in 1..MAX_CHUNK_BYTES.
static int chunk_parse(const char *text, struct chunk_spec *spec)
{
    bool is_random = strncmp(text, "random:", 7) == 0;
    const char *s = is_random ? text + 7 : text;

    // Sizes separated by ',' (a list) or by '-' (random's MIN-MAX); digits only.
    for (spec->count = 0; spec->count < MAX_CHUNK_SIZES;) {
        char *end = NULL;
        errno = 0;
        unsigned long size = isdigit((unsigned char)*s) ? strtoul(s, &end, 10) : 0;
        if (end == NULL || errno != 0 || size < 1 || size > MAX_CHUNK_BYTES)
            break;
        spec->sizes[spec->count++] = (uint32_t)size;
        if (*end == '\0' && !is_random) {
            spec->mode = CHUNK_LIST;
            return 0;
        }
        if (*end == '\0' && spec->count == 2 && spec->sizes[0] <= spec->sizes[1]) {
            spec->mode = CHUNK_RANDOM;
            spec->min = spec->sizes[0];
            spec->max = spec->sizes[1];
            return 0;
        }
        if (*end != (is_random ? '-' : ','))
            break;
        s = end + 1;
    }
    log_line("--chunk wants N, N,M,... (up to %u sizes) or random:MIN-MAX, each size in 1..%u, "
             "not '%s'",
             MAX_CHUNK_SIZES, MAX_CHUNK_BYTES, text);
    return -1;
}

// Returns -1 to run, 0 after --help, 2 on bad usage (one line already on stderr).
static int options_parse(int argc, char **argv, struct options *opt)
{
    static const struct option long_options[] = {
        {"upstream", required_argument, NULL, 'u'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"chunk", required_argument, NULL, 'c'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"coalesce-bytes", required_argument, NULL, 'b'},
        {"coalesce-ms", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 's'},
        {"direction", required_argument, NULL, 'D'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    // A leading ':' and opterr = 0: getopt_long reports problems to us instead of printing.
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":u:H:p:c:d:b:m:s:D:vh", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'u': opt->upstream = optarg; break;
        case 'H': opt->host = optarg; break;
        case 'p': rc = options_number("--port", optarg, 0, MAX_PORT, &opt->port); break;
        case 'c': rc = chunk_parse(optarg, &opt->chunk); break;
        case 'd': rc = options_number("--delay-ms", optarg, 0, MAX_TIME_MS, &opt->delay_ms); break;
        case 'b':
            rc = options_number("--coalesce-bytes", optarg, 1, MAX_COALESCE_BYTES,
                                &opt->coalesce_bytes);
            break;
        case 'm':
            rc = options_number("--coalesce-ms", optarg, 0, MAX_TIME_MS, &opt->coalesce_ms);
            break;
        case 's': rc = options_number("--seed", optarg, 0, UINT64_MAX, &opt->seed); break;
        case 'D':
            opt->shape[SIDE_CLIENT] = strcmp(optarg, "up") == 0 || strcmp(optarg, "both") == 0;
            opt->shape[SIDE_UPSTREAM] = strcmp(optarg, "down") == 0 || strcmp(optarg, "both") == 0;
            if (!opt->shape[SIDE_CLIENT] && !opt->shape[SIDE_UPSTREAM]) {
                log_line("--direction wants both, up or down, not '%s'", optarg);
                rc = -1;
            }
            break;
        case 'v': opt->verbose = true; break;
        case 'h': options_usage(stdout); return 0;
        case ':': log_line("option '%s' needs a value (try --help)", argv[optind - 1]); return 2;
        default: log_line("bad option '%s' (try --help)", argv[optind - 1]); return 2;
        }
        if (rc < 0)
            return 2;
    }
    if (optind < argc || opt->upstream == NULL) {
        log_line("%s%s (try --help)", optind < argc ? "unexpected argument " : "--upstream",
                 optind < argc ? argv[optind] : " HOST:PORT is required");
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct options opt = {
        .host = DEFAULT_HOST,
        .coalesce_ms = DEFAULT_COALESCE_MS,
        .seed = DEFAULT_SEED,
        .shape = {true, true},
    };
    struct proxy proxy = {.opt = &opt, .listen_fd = -1};
    sigset_t wait_mask;
    int status = 1;
    int rc;

    tool_name = "chunkproxy";
    rc = options_parse(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    if (signal_setup(&wait_mask) == 0 && proxy_resolve_upstream(&proxy) == 0 &&
        proxy_reserve(&proxy) == 0 && (proxy.listen_fd = proxy_listen(&opt)) >= 0)
        status = proxy_run(&proxy, &wait_mask);
    // Stopping: close every connection (the peers see EOF) and free everything, so that the
    // leak checker has nothing to report.
    for (size_t i = 0; i < proxy.count; i++)
        pair_close(&proxy, proxy.pairs[i], false);
    if (proxy.listen_fd >= 0)
        close(proxy.listen_fd);
    free(proxy.pairs);
    free(proxy.fds);
    return status;
}
