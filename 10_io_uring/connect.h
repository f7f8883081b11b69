/* connect.h -- non-blocking connect with a timeout, and what can come of it */
#ifndef CONNECT_H
#define CONNECT_H

#include <stdbool.h>
#include <sys/socket.h>

enum connect_result {
    CONNECT_OK,          /* connected to a real peer */
    CONNECT_REFUSED,     /* the peer answered with RST: nobody listens there */
    CONNECT_TIMED_OUT,   /* no answer before our deadline (or the kernel's) */
    CONNECT_SELF,        /* TCP self-connect: the socket is connected to itself */
    CONNECT_FAILED,      /* anything else: unreachable, no route... (see err) */
    CONNECT_FD_TOO_HIGH, /* --wait select: the fd is >= FD_SETSIZE, select() cannot watch it */
};

/* "connected", "refused", "timed out", "self-connect", "failed", "fd too high for select" */
const char *connect_result_name(enum connect_result r);

/* How to wait for the connect to finish: both work, poll has no FD_SETSIZE limit. */
enum connect_wait { WAIT_POLL, WAIT_SELECT };

struct connect_request {
    const struct sockaddr *addr; /* where to connect */
    socklen_t addr_len;
    int timeout_ms;         /* > 0 */
    enum connect_wait wait; /* poll or select */
    bool bind_to_peer;      /* demo: bind to the destination address first (self-connect) */
    char *local_out;        /* optional, ADDR_STR_LEN bytes: our local address, for the log */
};

/* Connect without blocking longer than timeout_ms. On CONNECT_OK *fd_out is
 * the connected socket, switched back to blocking mode; otherwise the
 * socket is closed and *err_out holds the errno that explains the result
 * (ECONNREFUSED, ETIMEDOUT, ...). A signal does not cut the wait short. */
enum connect_result connect_with_timeout(const struct connect_request *req, int *fd_out,
                                         int *err_out);

#endif
