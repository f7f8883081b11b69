/* server.c -- a blocking, iterative echo server: one client after another
 *
 * accept() a client, echo every byte it sends until it closes its side, close,
 * accept the next one. While one client is served, the others wait in the
 * listen queue: that is what "iterative" means, and why lesson 3 exists.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CHUNK_BYTES 4096 /* how much one recv() may return to us */
#define MAX_CHUNK_BYTES     (1 << 20)
#define MAX_BACKLOG         (1 << 20) /* far above any somaxconn: shows the cap */

struct config {
    const char *host;
    int port;
    size_t chunk_bytes;
    bool reuse_addr;
    bool reuse_port;   /* --reuseport: share the port with other servers */
    bool keep_sigpipe; /* --keep-sigpipe: leave SIGPIPE's default (death) */
    int backlog;       /* --backlog: 0 keeps net_listen's SOMAXCONN */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: server [--host ADDR] [--port N] [--chunk BYTES] [--no-reuseaddr]\n"
            "              [--reuseport] [--backlog N] [--keep-sigpipe] [-v]\n"
            "Blocking echo server: serves one client at a time, echoing what it sends.\n"
            "  --host ADDR     address to bind (default 127.0.0.1; 0.0.0.0 = every interface)\n"
            "  --port N        port to listen on (default 9000; 0 = let the kernel choose)\n"
            "  --chunk BYTES   echo in steps of at most BYTES (default %d)\n"
            "  --no-reuseaddr  do not set SO_REUSEADDR (a restart then fails while old\n"
            "                  connections are in TIME_WAIT)\n"
            "  --reuseport     set SO_REUSEPORT: servers that all set it share the port\n"
            "  --backlog N     listen() backlog (default SOMAXCONN; the kernel caps it\n"
            "                  at net.core.somaxconn)\n"
            "  --keep-sigpipe  do not ignore SIGPIPE: a send to a vanished client kills\n"
            "                  the server (the bug every server must avoid)\n"
            "  -v, --verbose   print every accept, recv, send and close\n"
            "Prints 'listening on HOST:PORT' first. SIGINT/SIGTERM stop it (exit 0).\n",
            DEFAULT_CHUNK_BYTES);
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"chunk", required_argument, NULL, 'c'},   {"verbose", no_argument, NULL, 'v'},
        {"no-reuseaddr", no_argument, NULL, 'R'},  {"reuseport", no_argument, NULL, 'P'},
        {"backlog", required_argument, NULL, 'b'}, {"keep-sigpipe", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "H:p:c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': cfg->host = optarg; break;
        case 'p': cfg->port = parse_port(optarg); break;
        case 'c':
            cfg->chunk_bytes = (size_t)parse_number("--chunk", optarg, 1, MAX_CHUNK_BYTES);
            break;
        case 'v': verbose = true; break;
        case 'R': cfg->reuse_addr = false; break;
        case 'P': cfg->reuse_port = true; break;
        case 'b': cfg->backlog = (int)parse_number("--backlog", optarg, 1, MAX_BACKLOG); break;
        case 'K': cfg->keep_sigpipe = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "server: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
}

/* Echo until the client closes its sending side (recv returns 0) or the
 * connection breaks. A broken connection ends this client, never the server. */
static void echo_client(int fd, const char *peer, char *buf, size_t chunk_bytes)
{
    for (;;) {
        ssize_t n = recv(fd, buf, chunk_bytes, 0);
        if (n == -1) {
            if (errno == EINTR && !stop_requested)
                continue;
            if (errno != EINTR)
                fprintf(stderr, "server: %s: recv: %s\n", peer, strerror(errno));
            return;
        }
        if (n == 0) {
            trace("recv fd=%d -> 0 bytes: %s closed its side", fd, peer);
            return;
        }
        trace("recv fd=%d -> %zd bytes", fd, n);
        /* send() may take fewer bytes than asked; writen() loops until all
         * are gone. With SIGPIPE ignored, a vanished client gives EPIPE or
         * ECONNRESET here instead of killing the process. */
        if (writen(fd, buf, (size_t)n) == -1) {
            if (errno != EINTR)
                fprintf(stderr, "server: %s: send: %s\n", peer, strerror(errno));
            return;
        }
        trace("send fd=%d <- %zd bytes", fd, n);
    }
}

int main(int argc, char **argv)
{
    struct config cfg = {
        .host = "127.0.0.1", .port = 9000, .chunk_bytes = DEFAULT_CHUNK_BYTES, .reuse_addr = true};
    prog_name = "server";
    parse_args(argc, argv, &cfg);
    if (!cfg.keep_sigpipe)
        ignore_sigpipe();
    on_stop_signals();

    int listen_fd = cfg.reuse_port ? net_listen_shared(cfg.host, cfg.port, cfg.reuse_addr)
                                   : net_listen(cfg.host, cfg.port, cfg.reuse_addr);
    /* listen() again on a listening socket only changes its backlog; the
     * kernel silently takes the smaller of it and net.core.somaxconn. */
    if (cfg.backlog > 0 && listen(listen_fd, cfg.backlog) == -1)
        die("listen");
    net_print_listening(listen_fd);

    char *buf = malloc(cfg.chunk_bytes);
    if (buf == NULL)
        die("malloc");

    while (!stop_requested) {
        struct sockaddr_storage peer_addr;
        socklen_t len = sizeof peer_addr;
        int fd = accept(listen_fd, (struct sockaddr *)&peer_addr, &len);
        if (fd == -1) {
            /* EINTR: a signal (check stop_requested). ECONNABORTED: the
             * client gave up while still in the queue. Neither is fatal. */
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        char peer[ADDR_STR_LEN];
        net_addr_str((struct sockaddr *)&peer_addr, peer);
        trace("accept fd=%d from %s", fd, peer);
        echo_client(fd, peer, buf, cfg.chunk_bytes);
        if (close(fd) == -1)
            fprintf(stderr, "server: close: %s\n", strerror(errno));
        trace("close fd=%d", fd);
    }
    fprintf(stderr, "server: stopping\n");
    free(buf);
    close(listen_fd);
    return 0;
}
