/* receiver.c -- the classic recv() bug and its fix, side by side
 *
 * --mode naive: what beginners write. It assumes one recv() returns one
 *   message, and prints the buffer with printf("%s") although recv() never
 *   adds a terminating '\0'.
 * --mode readn --size N: the fix for messages of a known size: loop until
 *   exactly N bytes have arrived (readn), then print exactly N bytes.
 *
 * Both accept one connection, print what they receive, and exit when the
 * sender closes.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAIVE_BUF_BYTES   50
#define MAX_MESSAGE_BYTES (1 << 20)
#define LATE_WAIT_MS      5000

/* Stand-in for the stack around the naive buffer. In real naive code,
 * `char buf[50]` holds leftover garbage and is followed by other variables;
 * printf("%s") walks on until it happens to find a 0 byte. Here the buffer
 * is the first 50 bytes of a bigger array whose contents we chose, so the
 * over-read is visible, identical on every run, and stays inside memory we
 * own (AddressSanitizer has nothing to object to). */
#define NEXT_VARIABLE "<next variable>"
struct fake_stack {
    char bytes[NAIVE_BUF_BYTES + sizeof NEXT_VARIABLE];
};

static void naive_receive(int fd)
{
    struct fake_stack stack;
    memset(stack.bytes, '?', NAIVE_BUF_BYTES); /* "uninitialised": shown as '?' */
    memcpy(stack.bytes + NAIVE_BUF_BYTES, NEXT_VARIABLE, sizeof NEXT_VARIABLE);
    char *buf = stack.bytes;

    for (int call = 1;; call++) {
        /* THE BUG, part 1: one recv() is not one message. It returns
         * whatever the kernel has right now: part of a message, several
         * messages glued together, or 50 bytes of something longer. */
        ssize_t n = recv(fd, buf, NAIVE_BUF_BYTES, 0);
        if (n == -1) {
            if (errno == EINTR && !stop_requested)
                continue;
            die("recv");
        }
        if (n == 0) {
            printf("recv #%d -> 0 bytes: the sender closed the connection\n", call);
            return;
        }
        printf("recv #%d -> %zd bytes: ", call, n);
        fput_escaped(stdout, buf, (size_t)n);
        /* THE BUG, part 2: recv() does not write a '\0', so %s prints the
         * received bytes, then stale bytes, then whatever lies beyond. */
        printf("\n  printf(\"%%s\") shows: %s\n", buf);
    }
}

static void readn_receive(int fd, size_t size)
{
    char *msg = malloc(size + 1);
    if (msg == NULL)
        die("malloc");
    for (int number = 1;; number++) {
        /* THE FIX: keep calling recv() until the whole message is here. */
        ssize_t n = readn(fd, msg, size);
        if (n == -1)
            die("recv");
        if (n == 0) {
            printf("end of stream after %d message%s\n", number - 1, number == 2 ? "" : "s");
            break;
        }
        if ((size_t)n < size) {
            printf("end of stream in the middle of message #%d (%zd of %zu bytes)\n", number, n,
                   size);
            break;
        }
        msg[size] = '\0'; /* we own the terminator; the wire never sends one */
        printf("message #%d (%zu bytes): ", number, size);
        fput_escaped(stdout, msg, size);
        putchar('\n');
    }
    free(msg);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: receiver [--host ADDR] [--port N] --mode naive|readn [--size N] [--late]\n"
            "Accepts one connection, prints what arrives, exits when the sender closes.\n"
            "  --mode naive   one recv() into a 50-byte buffer per 'message', printed with %%s\n"
            "  --mode readn   read exactly --size bytes per message (readn loop)\n"
            "  --size N       message size for readn mode (1..%d)\n"
            "  --late         start reading only once the sender has finished (a busy receiver)\n"
            "  --host ADDR    address to bind (default 127.0.0.1)\n"
            "  --port N       port (default 9000; 0 = let the kernel choose)\n"
            "  -v             trace accept and close\n",
            MAX_MESSAGE_BYTES);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'}, {"port", required_argument, NULL, 'p'},
        {"mode", required_argument, NULL, 'm'}, {"size", required_argument, NULL, 's'},
        {"late", no_argument, NULL, 'l'},       {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1", *mode = NULL;
    int port = 9000;
    long size = 0;
    bool late = false;
    int c;
    prog_name = "receiver";
    while ((c = getopt_long(argc, argv, "H:p:m:s:lvh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port = parse_port(optarg); break;
        case 'm': mode = optarg; break;
        case 's': size = parse_number("--size", optarg, 1, MAX_MESSAGE_BYTES); break;
        case 'l': late = true; break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    bool naive = mode != NULL && strcmp(mode, "naive") == 0;
    bool with_readn = mode != NULL && strcmp(mode, "readn") == 0;
    if ((!naive && !with_readn) || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (with_readn && (size < 1 || size > MAX_MESSAGE_BYTES)) {
        fprintf(stderr, "receiver: readn mode needs --size 1..%d\n", MAX_MESSAGE_BYTES);
        return 2;
    }
    on_stop_signals();

    int listen_fd = net_listen(host, port, true);
    net_print_listening(listen_fd);
    int fd;
    while ((fd = accept(listen_fd, NULL, NULL)) == -1) {
        if (errno != EINTR && errno != ECONNABORTED)
            die("accept");
        if (stop_requested)
            return 0;
    }
    close(listen_fd);
    char peer[ADDR_STR_LEN];
    trace("accept fd=%d from %s", fd, net_peer_str(fd, peer));
    if (late && !net_wait_peer_done(fd, LATE_WAIT_MS))
        fprintf(stderr, "receiver: sender still busy after %d ms, reading anyway\n", LATE_WAIT_MS);

    if (naive)
        naive_receive(fd);
    else
        readn_receive(fd, (size_t)size);
    close(fd);
    return 0;
}
