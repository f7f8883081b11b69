/* sender.c -- send each command-line argument as one UDP datagram
 *
 * The writer's view of messages, as in lesson 1's sender: one send() per
 * message. This time the receiver (receiver.c) gets exactly those messages
 * back, one per recv(), because UDP keeps the boundaries TCP erases.
 */
#include "net.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FILL_BYTES 70000 /* over the 65507-byte IPv4 limit, to show the error */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sender [--host ADDR] --port N [--fill BYTES] [MESSAGE...]\n"
            "Sends every MESSAGE as one datagram (one send() call each).\n"
            "  --host ADDR    receiver address (default 127.0.0.1)\n"
            "  --port N       receiver port\n"
            "  --fill BYTES   then one more datagram of BYTES bytes: \"0123456789\" repeated\n");
}

static void send_one(int fd, int number, const char *data, size_t len)
{
    /* One send(), one datagram, sent whole or not at all: there is no
     * partial send on UDP. Too big is an error (EMSGSIZE), not a split. */
    if (send(fd, data, len, 0) == -1)
        die("send");
    printf("sent datagram #%d: %zu bytes\n", number, len);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"fill", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    int port = 0;
    long fill = 0;
    int c;
    prog_name = "sender";
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, even in a pipe */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":H:p:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port = (int)parse_number("--port", optarg, 1, 65535); break;
        case 'f': fill = parse_number("--fill", optarg, 1, MAX_FILL_BYTES); break;
        case 'h': usage(stdout); return 0;
        default: bad_option(c, argv);
        }
    }
    if (port == 0)
        usage_error("--port is required");
    if (optind == argc && fill == 0)
        usage_error("nothing to send: give a MESSAGE or --fill BYTES");

    int fd = udp_connect(host, port);
    int number = 0;
    for (int i = optind; i < argc; i++)
        send_one(fd, ++number, argv[i], strlen(argv[i]));
    if (fill > 0) {
        char *data = malloc((size_t)fill);
        if (data == NULL)
            die("malloc");
        for (long i = 0; i < fill; i++)
            data[i] = (char)('0' + i % 10);
        send_one(fd, ++number, data, (size_t)fill);
        free(data);
    }
    close(fd);
    return 0;
}
