/* loop_uring.c -- the event loop: the only code that talks to the ring
 *
 * epoll says which sockets are ready, and the loop then makes a system
 * call per socket to read or to write. io_uring turns that around: the
 * loop hands the kernel the operations themselves (receive on this
 * socket, send these bytes, accept), and the kernel says when each one is
 * done, and with what result. Requests and results travel through rings
 * in shared memory (uring.c); one io_uring_enter per turn submits every
 * request queued since the last and waits for results.
 *
 * What a connection has in flight, at most:
 *   one multishot receive: armed once, it completes every time bytes
 *     arrive, in a buffer the kernel took from our buffer ring, until it
 *     ends (the peer's FIN, an error, a dry ring, our cancel);
 *   one send, for the front of its queue (send.c);
 *   one cancel: of the receive (backpressure, draining), or of everything
 *     (closing).
 * A completion carries its request's user_data: the connection's address
 * with the kind of operation in the low 3 bits (a malloc'd record is
 * aligned to 16 bytes, so they are free), or &s->ops for the loop's own.
 *
 * One turn:
 *   1. queue the listener's and the timer's requests, then submit every
 *      request and wait for completions: one io_uring_enter;
 *   2. each completion: its connection's handler (the connection is then
 *      changed), or the listener, a signal, workers' replies, the timer;
 *   3. expired timers;
 *   4. settle every changed connection: what it wants (read, write,
 *      close) becomes requests, submitted by the next turn's enter;
 *   5. cancel what closed connections have in flight; free those that
 *      have nothing left.
 */
#include "loop_uring.h"
#include "accept.h"
#include "handlers.h"
#include "send.h"
#include "service.h"
#include "shutdown.h"
#include "workers.h"

#include <errno.h>
#include <sys/socket.h>

/* Requests queued in one turn before an early submit: a turn may queue a
 * send for every connection. The CQ is 8 times bigger: a multishot request
 * completes many times, and a full CQ costs an overflow. */
#define SQ_ENTRIES     1024
#define CQ_ENTRIES     (8 * SQ_ENTRIES)
#define RECV_GROUP     0          /* the one group of provided buffers */
#define SEND_MAX_BYTES (1u << 30) /* a completion's result is an int: one send names less */

/* What a request is: the low 3 bits of its user_data. */
enum op {
    OP_RECV,    /* a connection's: user_data is the connection */
    OP_SEND,    /* a connection's */
    OP_CANCEL,  /* a connection's, or the loop's (the accept's cancel, a timeout moved) */
    OP_ACCEPT,  /* the loop's own: user_data is &s->ops */
    OP_SIGNAL,  /* the loop's own */
    OP_WAKE,    /* the loop's own: the workers' eventfd */
    OP_TIMEOUT, /* the loop's own */
};
#define OP_MASK 7u

static uint64_t tag(void *p, enum op op)
{
    return (uint64_t)(uintptr_t)p | op;
}

/* ---- a connection's requests: each counted in ops_in_flight until its last completion ---- */

static struct io_uring_sqe *conn_sqe(struct server *s, struct conn *c, enum op op, uint8_t opcode)
{
    struct io_uring_sqe *sqe = uring_get_sqe(&s->ring);
    sqe->opcode = opcode;
    sqe->fd = c->fd;
    sqe->user_data = tag(c, op);
    c->ops_in_flight++;
    return sqe;
}

/* The lesson: one request, a completion for every arrival. No buffer is
 * named: the kernel takes one from group RECV_GROUP when bytes come, and
 * the completion says which (IOSQE_BUFFER_SELECT). An idle connection
 * holds no buffer at all. */
static void arm_recv(struct server *s, struct conn *c)
{
    struct io_uring_sqe *sqe = conn_sqe(s, c, OP_RECV, IORING_OP_RECV);
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = RECV_GROUP;
    c->recv_armed = true;
    c->recv_cancelled = false;
    trace("fd=%d: multishot receive armed", c->fd);
}

/* One send for the front of the queue; the kernel reads those bytes when
 * it gets to them, so send.c keeps them still until the completion. */
static void submit_send(struct server *s, struct conn *c)
{
    const uint8_t *data;
    size_t len;
    if (!send_next(s, c, &data, &len))
        return;
    struct io_uring_sqe *sqe = conn_sqe(s, c, OP_SEND, IORING_OP_SEND);
    sqe->addr = (uintptr_t)data;
    sqe->len = (uint32_t)(len < SEND_MAX_BYTES ? len : SEND_MAX_BYTES);
    sqe->msg_flags = MSG_NOSIGNAL;
    c->send_in_flight = true;
}

/* Reading stops (backpressure, draining): cancel the receive. Completions
 * already on their way still carry bytes, and are handled like any other. */
static void cancel_recv(struct server *s, struct conn *c)
{
    struct io_uring_sqe *sqe = conn_sqe(s, c, OP_CANCEL, IORING_OP_ASYNC_CANCEL);
    sqe->addr = tag(c, OP_RECV); /* the request to cancel, by its user_data */
    c->recv_cancelled = true;
    c->cancel_in_flight = true;
    trace("fd=%d: reading stops: receive cancelled", c->fd);
}

/* A request holds its own reference to the socket: close() would not end
 * a receive in flight (a multishot one would go on receiving), nor free
 * the socket. So a closed connection's requests are cancelled, every one
 * on its fd (5.19: IORING_ASYNC_CANCEL_FD | ALL), and conn_free_closed
 * closes the fd after the last completion. */
static void cancel_all(struct server *s, struct conn *c)
{
    struct io_uring_sqe *sqe = conn_sqe(s, c, OP_CANCEL, IORING_OP_ASYNC_CANCEL);
    sqe->cancel_flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
    c->cancel_in_flight = true;
    c->cancelled_all = true;
}

/* What a connection wants, made requests: a receive while it wants to
 * read, a send while something is queued. */
static void apply(struct server *s, struct conn *c, enum want want)
{
    if (want & WANT_CLOSE)
        return; /* end_turn cancels what it has in flight */
    if ((want & WANT_READ) && !c->recv_armed)
        arm_recv(s, c); /* a new connection, or its receive ended (ENOBUFS, resumed) */
    else if (!(want & WANT_READ) && c->recv_armed && !c->recv_cancelled && !c->cancel_in_flight)
        cancel_recv(s, c);
    if ((want & WANT_WRITE) && !c->send_in_flight)
        submit_send(s, c);
}

/* ---- a connection's completions ---- */

static void on_recv(struct server *s, struct conn *c, const struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        /* The multishot receive ended: apply() arms another if c still
         * wants to read. */
        c->recv_armed = false;
        c->recv_cancelled = false;
        c->ops_in_flight--;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0 && c->state != CONN_CLOSING)
            conn_on_received(s, c, uring_buffer(&s->ring, id), (size_t)res);
        /* Decoded, or copied into c->in: the buffer goes back to the ring. */
        uring_buffer_return(&s->ring, id);
    }
    if (res > 0 || res == -ECANCELED || c->state == CONN_CLOSING)
        return;
    if (res == 0) {
        conn_on_peer_fin(s, c);
    } else if (res == -ENOBUFS) {
        /* Every buffer was taken: the receive ended, and the bytes wait in
         * the socket. The buffers come back during this turn; settling c
         * arms a new receive. */
        s->count.recv_no_buffers++;
        trace("recv fd=%d: the buffer ring ran dry (ENOBUFS): armed again", c->fd);
    } else {
        conn_on_recv_error(s, c, -res);
    }
}

static void on_conn_cqe(struct server *s, struct conn *c, enum op op,
                        const struct io_uring_cqe *cqe)
{
    if (op == OP_RECV) {
        on_recv(s, c, cqe);
    } else if (op == OP_SEND) {
        c->send_in_flight = false;
        c->ops_in_flight--;
        if (c->state != CONN_CLOSING)
            conn_on_sent(s, c, cqe->res);
    } else {
        c->cancel_in_flight = false;
        c->ops_in_flight--;
        if (cqe->res == -EALREADY) /* the receive was running: cancel again if need be */
            c->recv_cancelled = false;
    }
    conn_changed(s, c); /* settled at the end of the turn */
}

/* ---- the loop's own requests: accept, signals, workers, the timer ---- */

/* The listener's multishot accept: a completion per connection. No
 * address buffer (accept.c asks the socket). SOCK_NONBLOCK: the ring
 * needs none, but send_flush's rare send() must not block. */
static void arm_accept(struct server *s)
{
    struct io_uring_sqe *sqe = uring_get_sqe(&s->ring);
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = s->listen_fd;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    sqe->user_data = tag(&s->ops, OP_ACCEPT);
    s->ops.accept_armed = true;
    s->ops.accept_cancelled = false;
}

/* The listener follows server_accepting(): an accept in flight while
 * accepting; cancelled once stopping. (While paused it has ended by
 * itself: only an error pauses, and an error ends a multishot accept.) */
static void follow_listener(struct server *s)
{
    bool accepting = server_accepting(s);
    if (accepting && !s->ops.accept_armed) {
        arm_accept(s);
    } else if (!accepting && s->ops.accept_armed && !s->ops.accept_cancelled) {
        struct io_uring_sqe *sqe = uring_get_sqe(&s->ring);
        sqe->opcode = IORING_OP_ASYNC_CANCEL;
        sqe->addr = tag(&s->ops, OP_ACCEPT);
        sqe->user_data = tag(&s->ops, OP_CANCEL);
        s->ops.accept_cancelled = true;
    }
}

static void on_accept(struct server *s, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        s->ops.accept_armed = false; /* ended: armed again next turn, if accepting */
    if (cqe->res >= 0)
        server_accepted(s, cqe->res);
    else if (cqe->res != -ECANCELED)
        server_accept_failed(s, -cqe->res);
}

/* A read of a signalfd or an eventfd into into[0..len), re-armed after
 * each completion. */
static void arm_read(struct server *s, int fd, void *into, unsigned len, enum op op)
{
    struct io_uring_sqe *sqe = uring_get_sqe(&s->ring);
    sqe->opcode = IORING_OP_READ;
    sqe->fd = fd;
    sqe->addr = (uintptr_t)into;
    sqe->len = len;
    sqe->off = (uint64_t)-1; /* the file's own position: these files have none */
    sqe->user_data = tag(&s->ops, op);
}

/* A failed read of the signalfd or the eventfd: EINTR and EAGAIN mean
 * read again; anything else is our bug. */
static void check_read(int res, const char *what)
{
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        errno = -res;
        die(what);
    }
}

static void on_signal(struct server *s, int res)
{
    check_read(res, "read(signalfd)");
    bool stop = res == (int)sizeof s->ops.signal && server_on_signal(s, &s->ops.signal);
    arm_read(s, s->signal_fd, &s->ops.signal, sizeof s->ops.signal, OP_SIGNAL);
    if (!stop)
        return;
    /* The kernel has completed the handshakes of the connections in the
     * accept queue; closing the listener would reset them. Take them in
     * first: the stop then ends them like the others, with a FIN. */
    server_accept(s);
    server_begin_stop(s);
    follow_listener(s); /* no longer accepting: the ring's accept is cancelled */
}

static void on_wake(struct server *s, int res)
{
    check_read(res, "read(eventfd)");
    service_collect(s);
    arm_read(s, workers_eventfd(s->workers), &s->ops.wakeups, sizeof s->ops.wakeups, OP_WAKE);
}

/* The timer follows the nearest deadline: one absolute IORING_OP_TIMEOUT.
 * A deadline later than the armed one changes nothing (that one fires
 * early, harmlessly, and the next is armed then); an earlier one moves it
 * (IORING_TIMEOUT_UPDATE, 5.11). */
static void follow_deadline(struct server *s)
{
    struct loop_ops *l = &s->ops;
    long long deadline = server_deadline_ms(s);
    if (deadline < 0 || (l->timeout_ms >= 0 && deadline >= l->timeout_ms))
        return;
    l->when = (struct __kernel_timespec){deadline / 1000, deadline % 1000 * 1000000};
    struct io_uring_sqe *sqe = uring_get_sqe(&s->ring);
    if (l->timeout_ms < 0) {
        sqe->opcode = IORING_OP_TIMEOUT;
        sqe->addr = (uintptr_t)&l->when;
        sqe->len = 1;
        sqe->user_data = tag(l, OP_TIMEOUT);
    } else {
        sqe->opcode = IORING_OP_TIMEOUT_REMOVE;
        sqe->addr = tag(l, OP_TIMEOUT); /* the timeout to move */
        sqe->addr2 = (uintptr_t)&l->when;
        sqe->timeout_flags = IORING_TIMEOUT_UPDATE;
        sqe->user_data = tag(l, OP_CANCEL);
    }
    /* CLOCK_MONOTONIC, the clock of server_now_ms() */
    sqe->timeout_flags |= IORING_TIMEOUT_ABS;
    l->timeout_ms = deadline;
}

/* One completion, to whom it concerns. */
static void dispatch(struct server *s, const struct io_uring_cqe *cqe)
{
    enum op op = (enum op)(cqe->user_data & OP_MASK);
    void *owner = (void *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_MASK);
    if (owner != &s->ops) {
        on_conn_cqe(s, owner, op, cqe);
        return;
    }
    switch (op) {
    case OP_ACCEPT: on_accept(s, cqe); break;
    case OP_SIGNAL: on_signal(s, cqe->res); break;
    case OP_WAKE: on_wake(s, cqe->res); break;
    case OP_TIMEOUT: s->ops.timeout_ms = -1; break; /* -ETIME: the timers run every turn */
    case OP_RECV:
    case OP_SEND:
    case OP_CANCEL: break; /* the accept's cancel, or a timeout moved: nothing to do */
    }
}

/* The end of a turn: settle what the completions and other work changed
 * (settling one may change others: a resumed client's broadcast), then
 * cancel what closed connections have in flight (one cancel at a time:
 * after a receive's cancel, the next turn cancels the rest), and free
 * those with nothing left. */
static void end_turn(struct server *s)
{
    struct conn *c;
    while ((c = conn_next_changed(s)) != NULL)
        apply(s, c, conn_settle(s, c));
    for (c = s->closed; c != NULL; c = c->next_closed)
        if (c->ops_in_flight > 0 && !c->cancelled_all && !c->cancel_in_flight)
            cancel_all(s, c);
    conn_free_closed(s);
}

int loop_uring_setup(struct server *s, const char **failed)
{
    int err = uring_init(&s->ring, SQ_ENTRIES, CQ_ENTRIES, failed);
    if (err == 0)
        err = uring_buffers_init(&s->ring, RECV_BUFFERS, RECV_BUFFER_BYTES, RECV_GROUP, failed);
    return err;
}

void loop_uring(struct server *s)
{
    s->ops.timeout_ms = -1;
    /* Signals arrive as reads of a signalfd, and worker replies announce
     * themselves through an eventfd: more requests on the same ring, so
     * the loop sleeps in one place for everything. */
    arm_read(s, s->signal_fd, &s->ops.signal, sizeof s->ops.signal, OP_SIGNAL);
    if (s->workers != NULL)
        arm_read(s, workers_eventfd(s->workers), &s->ops.wakeups, sizeof s->ops.wakeups, OP_WAKE);

    while (!server_stop_done(s)) {
        follow_listener(s);
        follow_deadline(s);
        /* The lesson: every request of the last turn goes in, and every
         * result comes out, through one system call. */
        int n = uring_submit_and_wait(&s->ring);
        /* One clock reading per turn: timers and counters use it. */
        s->now_ms = server_now_ms();
        /* EINTR: a signal (SIGUSR2, say); EAGAIN, EBUSY: the kernel is
         * short of room for now. Not errors: the completions are taken,
         * and the next turn submits again. */
        if (n < 0 && n != -EINTR && n != -EAGAIN && n != -EBUSY) {
            errno = -n;
            die("io_uring_enter");
        }
        trace("io_uring_enter -> %u completions", uring_cq_ready(&s->ring));
        struct io_uring_cqe cqe;
        while (uring_next_cqe(&s->ring, &cqe))
            dispatch(s, &cqe);
        server_run_timers(s);
        end_turn(s);
    }
}
