/* full_listener.c -- a listening socket that never answers a new SYN
 *
 * For the "timed out" outcome without leaving the machine: listen with a
 * backlog of 0 and never accept. One connection fills the accept queue;
 * while it is full, Linux drops every new SYN (the client's kernel keeps
 * retransmitting it, at longer and longer intervals, for about two
 * minutes), so a connect to this port hangs like one to a vanished host.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: full_listener [--host ADDR] [--port N]\n"
                 "Listens, fills its own accept queue and never accepts: connects to it hang.\n"
                 "Prints 'listening on HOST:PORT'; SIGINT/SIGTERM stop it.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    int port = 0, c;
    prog_name = "full_listener";
    while ((c = getopt_long(argc, argv, "H:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port = parse_port(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    on_stop_signals();

    int listen_fd = net_listen(host, port, true);
    /* net_listen() asked for SOMAXCONN; listen() again to shrink the queue. */
    if (listen(listen_fd, 0) == -1)
        die("listen");

    /* Fill the queue ourselves: this connect completes (the queue had room),
     * and nobody will ever accept it. */
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) == -1)
        die("getsockname");
    int filler = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (filler == -1)
        die("socket");
    if (connect(filler, (struct sockaddr *)&addr, len) == -1)
        die("connect (filling the accept queue)");

    net_print_listening(listen_fd);
    fprintf(stderr, "full_listener: accept queue full: new connections will hang\n");
    while (!stop_requested)
        pause(); /* returns when a signal handler ran */
    close(filler);
    close(listen_fd);
    return 0;
}
