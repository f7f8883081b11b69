/* sender.c -- send each command-line argument with its own send() call
 *
 * The writer's view of "messages": one send() per message. The receiver
 * (receiver.c) shows that TCP keeps none of these boundaries.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sender [--host ADDR] --port N [--gap-ms MS] [-v] MESSAGE...\n"
                 "Connects, sends every MESSAGE with one send() call each, then closes.\n"
                 "  --host ADDR   receiver address (default 127.0.0.1)\n"
                 "  --port N      receiver port\n"
                 "  --gap-ms MS   pause MS milliseconds between two messages (default 0)\n"
                 "  -v            print every send\n");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},   {"port", required_argument, NULL, 'p'},
        {"gap-ms", required_argument, NULL, 'g'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    int port = -1;
    long gap_ms = 0;
    int c;
    prog_name = "sender";
    while ((c = getopt_long(argc, argv, "H:p:g:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port = parse_port(optarg); break;
        case 'g': gap_ms = parse_number("--gap-ms", optarg, 0, 60000); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (port < 1 || optind == argc) {
        usage(stderr);
        return 2;
    }
    ignore_sigpipe();

    int fd = net_connect(host, port);
    if (fd == -1)
        die_msg("connect to %s port %d: %s", host, port, strerror(errno));
    for (int i = optind; i < argc; i++) {
        if (i > optind && gap_ms > 0)
            sleep_ms(gap_ms);
        size_t len = strlen(argv[i]);
        if (len == 0) {
            /* An empty message: send() of 0 bytes returns 0 and puts
             * nothing on the wire; the receiver never learns of it. */
            ssize_t n = send(fd, argv[i], 0, 0);
            if (n == -1)
                die("send");
            trace("send #%d: 0 bytes -> send() returned %zd", i - optind + 1, n);
            continue;
        }
        if (writen(fd, argv[i], len) == -1)
            die("send");
        trace("send #%d: %zu bytes", i - optind + 1, len);
    }
    if (close(fd) == -1)
        die("close");
    return 0;
}
