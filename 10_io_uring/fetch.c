/* fetch.c -- ask for N bytes, pipeline a second request, and count what really arrives
 *
 * The client side of the RST experiment (closer.c): it sends "GET N\n" and,
 * right behind it, a second request the server will never read. Then it
 * reads until the end of the stream and checks every byte. Whether the
 * answer arrives whole depends only on how the server hangs up: after a
 * FIN, recv() returns every byte and then 0; after a RST, recv() fails
 * with ECONNRESET, and the bytes the server had not yet sent are gone.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BYTES (4L << 20)
#define MAX_BYTES     (1L << 30)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fetch --port N [--host ADDR] [--bytes N] [--read-delay-ms MS] [-v]\n"
            "Sends \"GET N\\n\" and a second request behind it, reads the answer to the end\n"
            "and checks every byte. Exit 0 if all N bytes arrived intact, then end of stream.\n"
            "  --bytes N          how many bytes to ask for (default %ld)\n"
            "  --read-delay-ms MS start reading only after MS ms (a busy client)\n",
            DEFAULT_BYTES);
}

/* The same pattern as closer.c's answer_byte(). */
static uint8_t answer_byte(uint64_t i)
{
    return (uint8_t)('a' + i % 251 % 26);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = -1;
    long want = DEFAULT_BYTES, delay_ms = 0;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"bytes", required_argument, NULL, 'b'},
        {"verbose", no_argument, NULL, 'v'},
        {"read-delay-ms", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    prog_name = "fetch";
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:b:d:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = parse_port(optarg); break;
        case 'b': want = parse_number("--bytes", optarg, 0, MAX_BYTES); break;
        case 'd': delay_ms = parse_number("--read-delay-ms", optarg, 0, 60000); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || port < 0) {
        fprintf(stderr, "fetch: %s\n", port < 0 ? "--port is required" : "unexpected argument");
        return 2;
    }
    ignore_sigpipe();
    int fd = net_connect(host, port);
    if (fd == -1)
        die("connect");
    /* Two requests in one write: HTTP/1.1 pipelining does exactly this. */
    char requests[64];
    int len = snprintf(requests, sizeof requests, "GET %ld\nGET 16\n", want);
    if (writen(fd, requests, (size_t)len) != len)
        die("send");
    trace("sent \"GET %ld\\n\" and a second request, \"GET 16\\n\"", want);
    if (delay_ms > 0) {
        struct timespec ts = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
    }
    uint8_t buf[65536];
    long got = 0;
    int err = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            err = errno;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (got + i >= want || buf[i] != answer_byte((uint64_t)(got + i))) {
                fprintf(stderr, "fetch: byte %ld is wrong (or one too many)\n", got + (long)i);
                return 1;
            }
        }
        got += n;
    }
    close(fd);
    if (err != 0) {
        printf("fetch: received %ld of %ld bytes, then %s (%s): %ld bytes lost\n", got, want,
               err == ECONNRESET ? "ECONNRESET" : "an error", strerror(err), want - got);
        return 1;
    }
    if (got < want) {
        printf("fetch: received %ld of %ld bytes, then end of stream: %ld bytes missing\n", got,
               want, want - got);
        return 1;
    }
    printf("fetch: received %ld of %ld bytes, then end of stream: complete\n", got, want);
    return 0;
}
