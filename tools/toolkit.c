/* toolkit.c -- the few helpers every tool in tools/ shares (see toolkit.h) */
#include "toolkit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *tool_name = "tool";

void log_line(const char *format, ...)
{
    va_list args;

    fprintf(stderr, "%s: ", tool_name);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

int options_number(const char *option, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;

    errno = 0;
    unsigned long long value = isdigit((unsigned char)text[0]) ? strtoull(text, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno != 0 || value < min || value > max) {
        log_line("%s wants a number in %llu..%llu, not '%s'", option, (unsigned long long)min,
                 (unsigned long long)max, text);
        return -1;
    }
    *out = value;
    return 0;
}

int64_t clock_ns(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t clock_ms(void)
{
    return clock_ns() / 1000000;
}

void put_u32_be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t get_u32_be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void proto_put_header(uint8_t out[PROTO_HEADER_BYTES], uint8_t flags, uint32_t origin_size,
                      uint32_t compress_size)
{
    memset(out, 0, PROTO_HEADER_BYTES);
    out[0] = flags;
    put_u32_be(out + 1, origin_size);
    put_u32_be(out + 5, compress_size);
}

int tcp_connect(const char *host, uint64_t port, int timeout_ms, int rcvbuf_bytes, bool nonblocking)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    struct timeval limit = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    char service[16];

    snprintf(service, sizeof service, "%llu", (unsigned long long)port);
    int rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        log_line("%s: %s", host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int fd = socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) == 0 &&
              (rcvbuf_bytes <= 0 ||
               setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes) == 0) &&
              connect(fd, list->ai_addr, list->ai_addrlen) == 0;
    int saved_errno = errno;
    freeaddrinfo(list);
    if (!ok) {
        log_line("connect to %s port %s: %s", host, service,
                 saved_errno == EINPROGRESS ? "timed out" : strerror(saved_errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (nonblocking) {
        int flags = fcntl(fd, F_GETFL);
        if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
            log_line("fcntl O_NONBLOCK: %s", strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t raise_fd_limit(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == -1)
        return 0;
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    getrlimit(RLIMIT_NOFILE, &lim);
    return (uint64_t)lim.rlim_cur;
}
