/* tfo_connect.c -- what a non-blocking connect() returns on loopback, with and without Fast Open */
//
// A probe for tests/02_nonblocking_connect.bats, built by the top-level make sanitize into
// build/asan/tests/ (not a tool: make lesson-N does not build it).
//
// Lesson 2 says a non-blocking TCP connect() returns -1 with EINPROGRESS, even on loopback,
// unless TCP_FASTOPEN_CONNECT is set and a Fast Open cookie for the server (or
// TCP_FASTOPEN_NO_COOKIE, which needs none) lets the kernel put off the SYN until the first
// write: then it returns 0 at once. This tool measures it against a listener of its own on
// 127.0.0.1 (port 0, with TCP_FASTOPEN set, so that it hands out cookies when the kernel's
// net.ipv4.tcp_fastopen has the server bit, 2). It prints one line per attempt, in this order:
//
//   plain: connect() = -1 EINPROGRESS, SYN sent
//   TCP_FASTOPEN_CONNECT, first: connect() = ...
//   TCP_FASTOPEN_CONNECT, after a handshake: connect() = ...
//   TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE: connect() = ...
//
// "SYN sent" or "SYN not sent": whether the socket had sent a segment (TCP_INFO's
// tcpi_segs_out) when connect() returned. Each attempt that returned EINPROGRESS is waited for
// (poll, then SO_ERROR) before the next, so the first TCP_FASTOPEN_CONNECT handshake is over,
// and a cookie the listener gave is cached, when the second begins. No attempt writes a byte.
// Exit status: 0 measured; 1 a failure (one line on stderr), including a kernel without the
// client bit (1) in net.ipv4.tcp_fastopen: setting TCP_FASTOPEN_CONNECT fails with EOPNOTSUPP.

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h> // not netinet/tcp.h: its struct tcp_info lacks tcpi_segs_out
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS         5000
#define FASTOPEN_QUEUE  16 // the listener's Fast Open queue: any positive length enables it
#define ATTEMPT_NO_TFO  0
#define ATTEMPT_TFO     1
#define ATTEMPT_NO_COOK 2

static void die(const char *what)
{
    fprintf(stderr, "tfo_connect: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value);
}

/* attempt: one non-blocking connect to addr, with the options `kind` names; print the line;
 * if the handshake began, wait for it to finish, then accept it on the listener. */
static void attempt(const char *label, int kind, int listener, const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        die("socket");
    if (kind != ATTEMPT_NO_TFO && set_int(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1) == -1)
        die("setsockopt TCP_FASTOPEN_CONNECT");
    if (kind == ATTEMPT_NO_COOK && set_int(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1) == -1)
        die("setsockopt TCP_FASTOPEN_NO_COOKIE");

    int rc = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
    int err = errno;
    struct tcp_info info;
    socklen_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == -1)
        die("getsockopt TCP_INFO");
    const char *syn = info.tcpi_segs_out > 0 ? "SYN sent" : "SYN not sent";
    if (rc == 0)
        printf("%s: connect() = 0, %s\n", label, syn);
    else if (err == EINPROGRESS)
        printf("%s: connect() = -1 EINPROGRESS, %s\n", label, syn);
    else
        printf("%s: connect() = -1 %s, %s\n", label, strerror(err), syn);
    fflush(stdout);

    if (rc == -1 && err == EINPROGRESS) {
        /* finish the handshake: the cookie, if the listener gave one, comes in its SYN-ACK */
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int ready = poll(&pfd, 1, WAIT_MS);
        if (ready == -1)
            die("poll");
        if (ready == 0) {
            fprintf(stderr, "tfo_connect: %s: no handshake within %d ms\n", label, WAIT_MS);
            exit(1);
        }
        int so_error = 0;
        len = sizeof so_error;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == -1)
            die("getsockopt SO_ERROR");
        if (so_error != 0) {
            errno = so_error;
            die(label);
        }
        int conn = accept(listener, NULL, NULL);
        if (conn == -1)
            die("accept");
        close(conn);
    }
    close(fd);
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: tfo_connect (no arguments; see the comment at the top of "
                        "tests/tfo_connect.c)\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener == -1)
        die("socket");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) == -1 ||
        getsockname(listener, (struct sockaddr *)&addr, &len) == -1)
        die("bind");
    if (set_int(listener, IPPROTO_TCP, TCP_FASTOPEN, FASTOPEN_QUEUE) == -1)
        die("setsockopt TCP_FASTOPEN");
    if (listen(listener, 16) == -1)
        die("listen");

    attempt("plain", ATTEMPT_NO_TFO, listener, &addr);
    attempt("TCP_FASTOPEN_CONNECT, first", ATTEMPT_TFO, listener, &addr);
    attempt("TCP_FASTOPEN_CONNECT, after a handshake", ATTEMPT_TFO, listener, &addr);
    attempt("TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE", ATTEMPT_NO_COOK, listener, &addr);
    close(listener);
    return 0;
}
