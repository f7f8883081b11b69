/* net.c -- the helpers every lesson-8 program shares: errors, options, UDP sockets */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *prog_name = "net";
bool verbose = false;

void die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog_name, what, strerror(errno));
    exit(1);
}

void die_msg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (--help lists the options)\n", stderr);
    exit(2);
}

void bad_option(int c, char *const argv[])
{
    /* getopt has already stepped past the bad word: it is argv[optind - 1]. */
    extern int optind;
    if (c == ':')
        usage_error("%s wants a value", argv[optind - 1]);
    usage_error("unknown option '%s'", argv[optind - 1]);
}

void trace(const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    flockfile(stderr); /* one line, even when two threads trace at once */
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

long parse_number(const char *option, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    /* strtol() alone accepts "5x" as 5 and "" as 0: check where it stopped. */
    if (errno != 0 || end == text || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "%s: %s wants a number in %ld..%ld, not '%s'\n", prog_name, option, min,
                max, text);
        exit(2);
    }
    return n;
}

int parse_port(const char *text)
{
    return (int)parse_number("--port", text, 0, 65535);
}

/* getaddrinfo handles IPv4 and IPv6 alike; SOCK_DGRAM asks for UDP. */
static struct addrinfo *udp_resolve(const char *host, int port, bool passive)
{
    struct addrinfo hints = {0}, *res;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        die_msg("cannot resolve '%s': %s", host, gai_strerror(rc));
    return res;
}

int udp_bind(const char *host, int port)
{
    struct addrinfo *ai = udp_resolve(host, port, true);
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd == -1)
        die("socket");
    /* No listen(), no accept(): a bound UDP socket already receives from
     * everyone. (No SO_REUSEADDR either: there is no TIME_WAIT to wait out.) */
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1)
        die("bind");
    freeaddrinfo(ai);
    return fd;
}

int udp_connect(const char *host, int port)
{
    struct addrinfo *ai = udp_resolve(host, port, false);
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd == -1)
        die("socket");
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1)
        die("connect");
    freeaddrinfo(ai);
    return fd;
}

const char *net_addr_str(const struct sockaddr *sa, char *out)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, ADDR_STR_LEN, "%s:%d", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, ADDR_STR_LEN, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, ADDR_STR_LEN, "(family %d)", sa->sa_family);
    }
    return out;
}

void net_print_listening(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[ADDR_STR_LEN];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        die("getsockname");
    printf("listening on %s\n", net_addr_str((struct sockaddr *)&ss, addr));
    fflush(stdout);
}

void print_escaped(const void *buf, size_t n, size_t max_shown)
{
    const unsigned char *p = buf;
    putchar('"');
    for (size_t i = 0; i < n && i < max_shown; i++) {
        switch (p[i]) {
        case '\n': fputs("\\n", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '"': fputs("\\\"", stdout); break;
        default:
            if (p[i] >= 0x20 && p[i] < 0x7f)
                putchar(p[i]);
            else
                printf("\\x%02x", p[i]);
        }
    }
    putchar('"');
    if (n > max_shown)
        fputs("...", stdout);
}

void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}
