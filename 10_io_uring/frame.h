/* frame.h -- where one message ends: four framings, and the lesson protocol */
#ifndef FRAME_H
#define FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The lesson protocol (lessons 5 to 7): a 25-byte header, then the body.
 *   offset 0  flags          1 byte   0: raw body, 1: LZ4 block
 *   offset 1  origin_size    4 bytes  body size before compression, 1..10 MiB
 *   offset 5  compress_size  4 bytes  flags 1: body size on the wire, 1..10 MiB; flags 0: 0
 *   offset 9  reserved      16 bytes  zeros, ignored on receipt
 * Integers are unsigned and big-endian. */
#define FRAME_HEADER_BYTES 25
#define MAX_BODY_BYTES     (10u * 1024 * 1024)
#define FLAG_COMPRESSED    1

enum framing {
    FRAMING_FIXED,    /* every message is exactly `record_bytes` long */
    FRAMING_LINES,    /* messages end with CRLF ("\r\n"), at most `max_line_bytes` */
    FRAMING_LENGTH,   /* a 4-byte big-endian length, then that many bytes */
    FRAMING_PROTOCOL, /* the lesson protocol above */
};

struct frame_rules {
    enum framing framing;
    size_t record_bytes;   /* FRAMING_FIXED */
    size_t max_line_bytes; /* FRAMING_LINES, CRLF not counted */
};

/* One decoded message: where its body is in the input, how much input it used. */
struct frame {
    const uint8_t *body; /* points into the input: valid until it is consumed */
    size_t body_len;     /* bytes of body on the wire */
    bool compressed;     /* FRAMING_PROTOCOL with flags 1 */
    uint32_t origin_size;
    size_t frame_len; /* header + body: what to consume */
    /* FRAME_ERROR: the bytes of the header field that broke a rule */
    size_t bad_at, bad_len; /* offset and size; bad_len 0: no one field */
};

enum frame_status { FRAME_NEED_MORE, FRAME_OK, FRAME_ERROR };

/* Look at the start of data[0..len) without consuming anything: is a whole
 * message there? FRAME_OK fills *f; FRAME_NEED_MORE means wait for more
 * bytes; FRAME_ERROR sets *why (a protocol error: close the connection). */
enum frame_status frame_decode(const struct frame_rules *rules, const uint8_t *data, size_t len,
                               struct frame *f, const char **why);

/* After FRAME_ERROR, for the log: what arrived in the field that broke the
 * rule, e.g. ': got 1751477356 = 68 65 6c 6c "hell" (text on a binary
 * port?)' (the text only when every byte is printable); "" if no one field. */
void frame_describe(const struct frame *f, const uint8_t *data, char *out, size_t cap);

/* Write the 25-byte protocol header for a body. */
void frame_put_header(uint8_t out[FRAME_HEADER_BYTES], uint8_t flags, uint32_t origin_size,
                      uint32_t compress_size);

/* Bytes that go before and after a body of body_len bytes in this framing
 * (header, length, CRLF). *prefix_len <= FRAME_HEADER_BYTES, *suffix_len <= 2. */
void frame_wrap(const struct frame_rules *rules, size_t body_len, uint8_t flags,
                uint32_t origin_size, uint8_t *prefix, size_t *prefix_len, const uint8_t **suffix,
                size_t *suffix_len);

/* "fixed", "lines", "length", "protocol" <-> enum framing. -1 if unknown. */
int framing_parse(const char *name);
const char *framing_name(enum framing f);

#endif
