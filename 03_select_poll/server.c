/* server.c -- one thread, many clients: the echo server of lesson 3
 *
 * Every socket is non-blocking, and one loop waits for whichever is ready:
 * loop_select.c or loop_poll.c, chosen with --api. This file holds what
 * both loops share: the connection table, accept() and its errors, and the
 * handlers that read, echo and close. A handler never blocks: it does what
 * the kernel allows now and returns what it wants to wait for next.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPTS_PER_TURN 64  /* then let the other connections have a turn */
#define ACCEPT_PAUSE_MS  100 /* when even the spare fd is gone */
#define MAX_CONNS_LIMIT  10000000

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: server [--api select|poll] [--host ADDR] [--port N] [--max-conns N] [-v]\n"
                 "Echo server: one thread serves every client, waiting with select() or poll().\n"
                 "  --api select|poll  how to wait for readiness (default poll)\n"
                 "  --host ADDR        address to bind (default 127.0.0.1)\n"
                 "  --port N           port (default 9000; 0 = let the kernel choose)\n"
                 "  --max-conns N      close connections beyond N at once (default: no limit\n"
                 "                     but the fd limit, ulimit -n)\n"
                 "  -v, --verbose      print every readiness event, accept, recv, send, close\n"
                 "Prints 'listening on HOST:PORT' first. SIGINT/SIGTERM stop it (exit 0).\n");
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"api", required_argument, NULL, 'a'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"max-conns", required_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "a:H:p:m:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            if (strcmp(optarg, "select") == 0) {
                cfg->api = API_SELECT;
            } else if (strcmp(optarg, "poll") == 0) {
                cfg->api = API_POLL;
            } else {
                fprintf(stderr, "server: --api wants select or poll, not '%s'\n", optarg);
                exit(2);
            }
            break;
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
        case 'm': cfg->max_conns = parse_number("--max-conns", optarg, 1, MAX_CONNS_LIMIT); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "server: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
}

/* ---- the connection table: conns[fd] ---- */

static void table_put(struct server *s, struct conn *c)
{
    if (c->fd >= s->conns_cap) {
        int cap = s->conns_cap == 0 ? 64 : s->conns_cap;
        while (cap <= c->fd)
            cap *= 2;
        struct conn **grown = realloc(s->conns, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            die("realloc");
        memset(grown + s->conns_cap, 0, (size_t)(cap - s->conns_cap) * sizeof *grown);
        s->conns = grown;
        s->conns_cap = cap;
    }
    s->conns[c->fd] = c;
    if (c->fd > s->max_fd)
        s->max_fd = c->fd;
    s->nconns++;
}

static void table_remove(struct server *s, int fd)
{
    s->conns[fd] = NULL;
    s->nconns--;
    while (s->max_fd >= 0 && s->conns[s->max_fd] == NULL)
        s->max_fd--;
}

void conn_close(struct server *s, struct conn *c, const char *why)
{
    trace("close fd=%d (%s)", c->fd, why);
    table_remove(s, c->fd);
    if (close(c->fd) == -1)
        fprintf(stderr, "server: %s: close: %s\n", c->peer, strerror(errno));
    free(c->pending);
    free(c);
}

/* ---- accept ---- */

/* Stop watching the listener for ACCEPT_PAUSE_MS instead of spinning on an
 * accept() that keeps failing; server_accepting() resumes. */
static void pause_accept(struct server *s, const char *why)
{
    fprintf(stderr, "server: accept: %s, pausing accept for %d ms\n", why, ACCEPT_PAUSE_MS);
    s->accept_paused_until_ms = now_ms() + ACCEPT_PAUSE_MS;
}

/* Running out of file descriptors (EMFILE: this process, ENFILE: the whole
 * system) is the classic accept trap: the connection stays in the queue,
 * the listening socket stays readable, and a naive loop spins at 100% CPU.
 * The remedy: keep one fd in reserve. When accept() says EMFILE, give the
 * reserve back, accept the connection with it, close it at once, and take
 * the reserve again. The client learns it was refused: the end of the
 * stream if it has sent nothing yet, a reset if it has (see refuse()). */
static bool accept_with_spare(struct server *s)
{
    if (s->spare_fd == -1) {
        /* No reserve left (we could not reopen it). */
        pause_accept(s, "out of file descriptors");
        return false;
    }
    close(s->spare_fd);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_CLOEXEC);
    if (fd != -1) {
        char peer[ADDR_STR_LEN];
        fprintf(stderr, "server: %s: refused: out of file descriptors\n",
                net_addr_str((struct sockaddr *)&addr, peer));
        close(fd);
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* fd == -1: the queue was empty after all (accept4 reports EMFILE
     * before it looks at the queue). */
    return fd != -1;
}

static struct conn *conn_new(int fd, const struct sockaddr *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->want = WANT_READ;
    net_addr_str(peer, c->peer);
    return c;
}

/* Refuse a connection we cannot or will not serve: close it at once and say
 * why in one line. Accepting it first is the only way to tell the client:
 * left in the queue, it would wait for an answer that never comes. What the
 * client sees depends on what it did: if it has sent nothing, close() sends
 * a FIN and it reads the end of the stream; if its bytes already sit unread
 * in our receive buffer, close() sends a reset instead, and its next recv()
 * fails with ECONNRESET ("Connection reset by peer"). */
static void refuse(int fd, const char *peer, const char *why)
{
    fprintf(stderr, "server: %s: refused: %s\n", peer, why);
    close(fd);
}

/* Errors accept() reports for one connection only: the client gave up while
 * queued (ECONNABORTED), a firewall rule refused it (EPERM), or, on Linux, a
 * network error already pending on the new socket (accept(2), "Error
 * handling"). The connection is gone; the ones behind it are not. */
static bool accept_error_is_one_connection(int err)
{
    switch (err) {
    case ECONNABORTED:
    case EPERM:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH: return true;
    default: return false;
    }
}

void server_accept(struct server *s, void (*new_cb)(struct server *, struct conn *, void *),
                   void *arg)
{
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        /* accept4: the new socket is born non-blocking and close-on-exec
         * (a plain accept() does not inherit O_NONBLOCK on Linux). */
        int fd =
            accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the queue is empty */
            if (errno == EINTR || accept_error_is_one_connection(errno))
                continue; /* a signal; one connection failed: the next may be fine */
            if (errno == EMFILE || errno == ENFILE) {
                if (!accept_with_spare(s))
                    return;
                continue;
            }
            /* Not about one connection (ENOBUFS, ENOMEM...): it would fail
             * again at once. */
            pause_accept(s, strerror(errno));
            return;
        }
        char peer[ADDR_STR_LEN];
        net_addr_str((struct sockaddr *)&addr, peer);
        if (fd >= s->fd_limit) {
            /* select's fd_set has FD_SETSIZE bits: FD_SET(fd) with a larger
             * fd writes past its end. Never let such an fd into the loop. */
            char why[64];
            snprintf(why, sizeof why, "fd %d >= FD_SETSIZE (%d)", fd, s->fd_limit);
            refuse(fd, peer, why);
            continue;
        }
        if (s->cfg.max_conns > 0 && s->nconns >= s->cfg.max_conns) {
            refuse(fd, peer, "--max-conns reached");
            continue;
        }
        struct conn *c = conn_new(fd, (struct sockaddr *)&addr);
        if (c == NULL) {
            refuse(fd, peer, "out of memory");
            continue;
        }
        table_put(s, c);
        trace("accept fd=%d from %s (%ld connections)", fd, c->peer, s->nconns);
        new_cb(s, c, arg);
    }
}

bool server_accepting(struct server *s)
{
    if (s->accept_paused_until_ms != 0 && now_ms() >= s->accept_paused_until_ms) {
        s->accept_paused_until_ms = 0;
        if (s->spare_fd == -1)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    return s->accept_paused_until_ms == 0;
}

int server_wait_ms(const struct server *s)
{
    if (s->accept_paused_until_ms == 0)
        return -1;
    long long left = s->accept_paused_until_ms - now_ms();
    return left < 0 ? 0 : (int)left;
}

/* ---- the handlers ---- */

/* Send what is pending. Returns WANT_READ when all of it went out. */
static enum want conn_flush(struct conn *c)
{
    while (c->pending_off < c->pending_len) {
        /* MSG_NOSIGNAL: EPIPE instead of SIGPIPE, for this call (we also
         * ignore SIGPIPE, but this way the handler is safe on its own). */
        ssize_t n =
            send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                trace("send fd=%d: EAGAIN with %zu bytes pending: wait for writable", c->fd,
                      c->pending_len - c->pending_off);
                return WANT_WRITE;
            }
            fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
            return WANT_CLOSE;
        }
        trace("send fd=%d <- %zd bytes", c->fd, n);
        c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_off = c->pending_len = 0;
    return WANT_READ;
}

enum want conn_on_readable(struct server *s, struct conn *c)
{
    /* One recv per readiness report is enough with select and poll: they
     * are level-triggered, and report the socket again if more is left. */
    ssize_t n = recv(c->fd, s->io_buf, sizeof s->io_buf, 0);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return WANT_READ; /* nothing after all: not an error */
        fprintf(stderr, "server: %s: recv: %s\n", c->peer, strerror(errno));
        return WANT_CLOSE;
    }
    if (n == 0) {
        trace("recv fd=%d -> 0 bytes: %s closed its side", c->fd, c->peer);
        return WANT_CLOSE;
    }
    trace("recv fd=%d -> %zd bytes", c->fd, n);
    /* Echo straight from the shared buffer; only what the kernel refuses
     * is copied into the connection's own pending buffer. */
    ssize_t sent = send(c->fd, s->io_buf, (size_t)n, MSG_NOSIGNAL);
    if (sent == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fprintf(stderr, "server: %s: send: %s\n", c->peer, strerror(errno));
            return WANT_CLOSE;
        }
        sent = 0;
    }
    if (sent > 0)
        trace("send fd=%d <- %zd bytes", c->fd, sent);
    if (sent == n)
        return WANT_READ;
    c->pending_len = (size_t)(n - sent);
    c->pending_off = 0;
    c->pending = malloc(c->pending_len);
    if (c->pending == NULL) {
        fprintf(stderr, "server: %s: out of memory\n", c->peer);
        return WANT_CLOSE;
    }
    memcpy(c->pending, s->io_buf + sent, c->pending_len);
    trace("send fd=%d: kernel took %zd of %zd bytes: wait for writable", c->fd, sent, n);
    return WANT_WRITE;
}

enum want conn_on_writable(struct conn *c)
{
    return conn_flush(c);
}

/* ---- setup ---- */

/* Lesson 1's loop checks stop_requested, then blocks: a signal that lands
 * between the two is noticed only at the next event, maybe never. The fix:
 * keep SIGINT and SIGTERM blocked (pending, not lost) everywhere but inside
 * the wait, and let the wait call unblock them for its duration only:
 * pselect() and ppoll() swap in *wait_mask atomically, so a pending signal
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
    static struct server s; /* static: the 64 KiB buffer does not belong on the stack */
    s.cfg = (struct config){.host = "127.0.0.1", .port = 9000, .api = API_POLL};
    prog_name = "server";
    parse_args(argc, argv, &s.cfg);
    ignore_sigpipe();
    on_stop_signals();
    block_stop_signals(&s.wait_mask);

    s.listen_fd = net_listen(s.cfg.host, s.cfg.port, true);
    /* A non-blocking listener: accept() in server_accept() stops at EAGAIN
     * instead of blocking when the queue is empty (another process, or a
     * client that gave up, may have emptied it since select said so). */
    int flags = fcntl(s.listen_fd, F_GETFL);
    if (flags == -1 || fcntl(s.listen_fd, F_SETFL, flags | O_NONBLOCK) == -1)
        die("fcntl(O_NONBLOCK)");
    s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (s.spare_fd == -1)
        die("open(/dev/null)");
    s.fd_limit = s.cfg.api == API_SELECT ? FD_SETSIZE : INT_MAX;
    s.max_fd = -1;
    net_print_listening(s.listen_fd);

    if (s.cfg.api == API_SELECT)
        loop_select(&s);
    else
        loop_poll(&s);

    fprintf(stderr, "server: stopping (%ld connections open)\n", s.nconns);
    for (int fd = s.max_fd; fd >= 0; fd--)
        if (s.conns[fd] != NULL)
            conn_close(&s, s.conns[fd], "server stopping");
    free(s.conns);
    close(s.spare_fd);
    close(s.listen_fd);
    return 0;
}
