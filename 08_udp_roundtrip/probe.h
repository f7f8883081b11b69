/* probe.h -- the probe datagram (layout, encode, validate) and the clocks that stamp it
 *
 * A query and its reply have the same 32 bytes; integers are big-endian:
 *
 *   0     3    4        8                16               24               32
 *   +-----+----+--------+----------------+----------------+----------------+
 *   |"RTT"|kind|  seq   |       T1       |       T2       |       T3       |
 *   +-----+----+--------+----------------+----------------+----------------+
 *    3 B   1 B   4 B      8 B, ns          8 B, ns          8 B, ns
 *
 * kind 'q': a query, from the client (T2 and T3 sent as 0, ignored);
 * kind 'r': the reply, the query with T2 and T3 filled in.
 * T1..T3 are CLOCK_REALTIME readings in nanoseconds since 1970-01-01 UTC.
 */
#ifndef PROBE_H
#define PROBE_H

#include <stddef.h>
#include <stdint.h>

#define PROBE_BYTES 32
#define PROBE_QUERY 'q'
#define PROBE_REPLY 'r'

struct probe {
    char kind;     /* PROBE_QUERY or PROBE_REPLY */
    uint32_t seq;  /* the client's probe number, echoed by the server */
    int64_t t1_ns; /* client: just before send */
    int64_t t2_ns; /* server: just after the query was received */
    int64_t t3_ns; /* server: just before the reply is sent */
};

void probe_encode(const struct probe *p, unsigned char out[PROBE_BYTES]);

/* Check and decode a datagram of len bytes (len is its real size, even if
 * only part of it was read). Returns NULL for a well-formed probe of the
 * wanted kind, else the reason it is not one, for a log line. */
const char *probe_decode(const unsigned char *buf, size_t len, char want_kind, struct probe *p);

/* The two clocks. Offsets between machines need the wall clock (the one NTP
 * sets); timeouts and intervals need the clock nobody sets. */
int64_t realtime_ns(void);
int64_t monotonic_ns(void);

/* Round trip and offset of one answered probe, T4 being its arrival time:
 *   round trip = (T4 - T1) - (T3 - T2)
 *   offset     = ((T2 - T1) + (T3 - T4)) / 2   (server clock minus client clock) */
int64_t probe_round_trip_ns(const struct probe *reply, int64_t t4_ns);
int64_t probe_offset_ns(const struct probe *reply, int64_t t4_ns);

#endif
