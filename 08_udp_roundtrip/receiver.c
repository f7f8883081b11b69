/* receiver.c -- receive datagrams and show that each recv() returns exactly one
 *
 * The reader's view: one recv() per datagram, whatever size the buffer has.
 * A datagram bigger than the buffer is cut to fit and the rest is thrown
 * away; MSG_TRUNC tells the receiver it happened and how big it really was.
 */
#include "net.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAX_BUFFER_BYTES 65536

static void usage(FILE *out)
{
    fprintf(out, "usage: receiver [--host ADDR] [--port N] [--count N] [--buffer BYTES] "
                 "[--late-ms MS]\n"
                 "Binds a UDP socket and prints every datagram it receives, one recv() each.\n"
                 "  --host ADDR      address to bind (default 127.0.0.1)\n"
                 "  --port N         port to bind (default 0: the kernel chooses)\n"
                 "  --count N        stop after N datagrams (default 0: run until stopped)\n"
                 "  --buffer BYTES   receive buffer size (default 65536)\n"
                 "  --late-ms MS     wait MS milliseconds before the first recv(), so that\n"
                 "                   everything sent meanwhile is queued (like a busy program)\n");
}

/* Receive one datagram into buf (size bytes) and print it. */
static void receive_one(int fd, long number, char *buf, size_t size)
{
    struct sockaddr_storage peer;
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr msg = {
        .msg_name = &peer, .msg_namelen = sizeof peer, .msg_iov = &iov, .msg_iovlen = 1};
    char who[ADDR_STR_LEN];

    /* MSG_TRUNC as a flag (Linux): return the datagram's real length even
     * when it did not fit. msg_flags & MSG_TRUNC (POSIX) says it was cut. */
    ssize_t n = recvmsg(fd, &msg, MSG_TRUNC);
    if (n == -1)
        die("recvmsg");
    net_addr_str((struct sockaddr *)&peer, who);
    size_t kept = (size_t)n < size ? (size_t)n : size;
    printf("recv #%ld from %s: %zd bytes", number, who, n);
    if (msg.msg_flags & MSG_TRUNC)
        printf(", truncated to %zu (MSG_TRUNC): ", kept);
    else
        printf(": ");
    print_escaped(buf, kept, 40);
    if (msg.msg_flags & MSG_TRUNC)
        printf("; the other %zu bytes are gone", (size_t)n - kept);
    putchar('\n');
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"count", required_argument, NULL, 'c'},
        {"buffer", required_argument, NULL, 'b'},
        {"late-ms", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    int port = 0;
    long count = 0, buffer = MAX_BUFFER_BYTES, late_ms = 0;
    int c;
    prog_name = "receiver";
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, even in a pipe */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":H:p:c:b:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port = parse_port(optarg); break;
        case 'c': count = parse_number("--count", optarg, 0, 1000000); break;
        case 'b': buffer = parse_number("--buffer", optarg, 1, MAX_BUFFER_BYTES); break;
        case 'l': late_ms = parse_number("--late-ms", optarg, 0, 60000); break;
        case 'h': usage(stdout); return 0;
        default: bad_option(c, argv);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);

    int fd = udp_bind(host, port);
    net_print_listening(fd);
    char *buf = malloc((size_t)buffer);
    if (buf == NULL)
        die("malloc");
    if (late_ms > 0) {
        sleep_ms(late_ms);
        /* On a UDP socket FIONREAD is the size of the NEXT datagram, not the
         * total queued (on TCP it is every byte waiting). */
        int next = 0;
        if (ioctl(fd, FIONREAD, &next) == -1)
            die("ioctl(FIONREAD)");
        printf("after %ld ms: FIONREAD says %d bytes (the size of the next datagram only)\n",
               late_ms, next);
    }
    long number = 0;
    while (count == 0 || number < count)
        receive_one(fd, ++number, buf, (size_t)buffer);
    printf("receiver: %ld datagrams, %ld recv() calls, buffer %ld bytes\n", number, number, buffer);
    free(buf);
    close(fd);
    return 0;
}
