/* toolkit.h -- the few helpers every tool in tools/ shares: log lines, numbers, clocks, the
 * lesson protocol's header, a bounded connect */
#ifndef TOOLKIT_H
#define TOOLKIT_H

#include <stdbool.h>
#include <stdint.h>

// The lesson protocol (lessons/protocol.md): a 25-byte header -- flags u8, origin_size u32 BE,
// compress_size u32 BE, 16 reserved zero bytes -- then the body.
#define PROTO_HEADER_BYTES   25
#define PROTO_MAX_BODY_BYTES (10u * 1024 * 1024)
#define PROTO_FLAG_LZ4       1

// The name log_line() puts in front of every line ("loadgen: ..."); set it first thing in main.
extern const char *tool_name;

// One line on stderr: "NAME: text\n".
void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));

// Digits only, in min..max: strtoull() alone would accept " 5", "-5" and "5x". Returns 0, or
// -1 after "OPTION wants a number in MIN..MAX, not 'TEXT'" on stderr.
int options_number(const char *option, const char *text, uint64_t min, uint64_t max, uint64_t *out);

// CLOCK_MONOTONIC (immune to someone setting the clock), in ns and in ms.
int64_t clock_ns(void);
int64_t clock_ms(void);

void put_u32_be(uint8_t *p, uint32_t v);
uint32_t get_u32_be(const uint8_t *p);

// Write a protocol header: flags, origin_size, compress_size, reserved zeros.
void proto_put_header(uint8_t out[PROTO_HEADER_BYTES], uint8_t flags, uint32_t origin_size,
                      uint32_t compress_size);

// A TCP connection to host:port (numeric port), blocking connect bounded by timeout_ms (SO_SNDTIMEO
// bounds connect() on Linux). rcvbuf_bytes > 0 sets SO_RCVBUF first (before connect: the window
// scale is agreed in the SYN). nonblocking: O_NONBLOCK once connected. Returns the fd, or -1
// after one line on stderr.
int tcp_connect(const char *host, uint64_t port, int timeout_ms, int rcvbuf_bytes,
                bool nonblocking);

// splitmix64: a small seeded generator, the same sequence on every machine.
uint64_t splitmix64(uint64_t *state);

// Raise the soft limit on open files to the hard limit (many connections); returns the limit.
uint64_t raise_fd_limit(void);

#endif
