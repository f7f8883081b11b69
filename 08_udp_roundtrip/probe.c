/* probe.c -- the probe datagram: encode, validate, and the round-trip and offset formulas */
#include "probe.h"

#include <string.h>
#include <time.h>

static const char magic[3] = {'R', 'T', 'T'};

static void put_be32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint32_t get_be32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void probe_encode(const struct probe *p, unsigned char out[PROBE_BYTES])
{
    memcpy(out, magic, sizeof magic);
    out[3] = (unsigned char)p->kind;
    put_be32(out + 4, p->seq);
    /* Signed nanoseconds travel as their two's-complement bit pattern. */
    put_be64(out + 8, (uint64_t)p->t1_ns);
    put_be64(out + 16, (uint64_t)p->t2_ns);
    put_be64(out + 24, (uint64_t)p->t3_ns);
}

const char *probe_decode(const unsigned char *buf, size_t len, char want_kind, struct probe *p)
{
    /* UDP hands us whole datagrams, so the size is a first, cheap check:
     * anything but exactly 32 bytes is not ours. */
    if (len != PROBE_BYTES)
        return "wrong size (a probe is 32 bytes)";
    if (memcmp(buf, magic, sizeof magic) != 0)
        return "bad magic (not \"RTT\")";
    /* A server that answered replies could be pointed at another server
     * (with a forged source address) and the two would ping-pong forever. */
    if (buf[3] != (unsigned char)want_kind)
        return want_kind == PROBE_QUERY ? "not a query" : "not a reply";
    p->kind = (char)buf[3];
    p->seq = get_be32(buf + 4);
    p->t1_ns = (int64_t)get_be64(buf + 8);
    p->t2_ns = (int64_t)get_be64(buf + 16);
    p->t3_ns = (int64_t)get_be64(buf + 24);
    return NULL;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t realtime_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

int64_t monotonic_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t probe_round_trip_ns(const struct probe *r, int64_t t4_ns)
{
    /* the whole wait, minus the time the server held the query */
    return (t4_ns - r->t1_ns) - (r->t3_ns - r->t2_ns);
}

int64_t probe_offset_ns(const struct probe *r, int64_t t4_ns)
{
    /* the midpoint of the server's stamps minus the midpoint of ours */
    return ((r->t2_ns - r->t1_ns) + (r->t3_ns - t4_ns)) / 2;
}
