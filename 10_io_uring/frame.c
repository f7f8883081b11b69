/* frame.c -- length-prefixed framing: peek, validate, wait for the whole frame
 *
 * TCP delivers a stream of bytes, not messages: a read may hold half a
 * message (a half packet, 半包) or several (sticky packets, 粘包). Framing
 * is the rule that says where a message ends. frame_decode() only LOOKS at
 * the buffered bytes; the caller consumes f->frame_len bytes once it has
 * handled the message, and calls frame_decode() again for the next one.
 */
#include "frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Read a big-endian integer byte by byte: no alignment or byte-order
 * assumptions, no struct overlaid on the wire (padding differs between
 * compilers, byte order between machines). */
static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A broken rule, and the n header bytes at offset `at` that broke it (n 0:
 * not one field), so that the log can show what arrived (frame_describe). */
static enum frame_status bad_field(struct frame *f, const char **why, const char *reason, size_t at,
                                   size_t n)
{
    f->bad_at = at;
    f->bad_len = n;
    *why = reason;
    return FRAME_ERROR;
}

static enum frame_status error(struct frame *f, const char **why, const char *reason)
{
    return bad_field(f, why, reason, 0, 0);
}

/* The lesson protocol. Each field is checked as soon as its bytes are
 * here, BEFORE waiting for the rest: a peer that announces 1 GB is
 * disconnected at once instead of being buffered until memory runs out,
 * and a text client ("hello") on this binary port at its first byte. */
static enum frame_status decode_protocol(const uint8_t *data, size_t len, struct frame *f,
                                         const char **why)
{
    if (len < 1)
        return FRAME_NEED_MORE;
    uint8_t flags = data[0];
    if (flags != 0 && flags != FLAG_COMPRESSED)
        return bad_field(f, why, "bad flags (not 0 or 1)", 0, 1);
    if (len < 5)
        return FRAME_NEED_MORE;
    uint32_t origin_size = get_be32(data + 1);
    if (origin_size == 0)
        return bad_field(f, why, "origin_size 0", 1, 4);
    if (origin_size > MAX_BODY_BYTES)
        return bad_field(f, why, "origin_size over 10 MiB", 1, 4);
    size_t body_len = origin_size;
    if (flags == FLAG_COMPRESSED) {
        if (len < 9)
            return FRAME_NEED_MORE;
        uint32_t compress_size = get_be32(data + 5);
        if (compress_size == 0)
            return bad_field(f, why, "compress_size 0", 5, 4);
        if (compress_size > MAX_BODY_BYTES)
            return bad_field(f, why, "compress_size over 10 MiB", 5, 4);
        body_len = compress_size;
    }
    /* data[9..24]: reserved, ignored on receipt (room for a later version) */
    if (len < FRAME_HEADER_BYTES || len - FRAME_HEADER_BYTES < body_len)
        return FRAME_NEED_MORE; /* the rest of the header or the body is coming */
    *f = (struct frame){.body = data + FRAME_HEADER_BYTES,
                        .body_len = body_len,
                        .compressed = flags == FLAG_COMPRESSED,
                        .origin_size = origin_size,
                        .frame_len = FRAME_HEADER_BYTES + body_len};
    return FRAME_OK;
}

static enum frame_status decode_length(const uint8_t *data, size_t len, struct frame *f,
                                       const char **why)
{
    if (len < 4)
        return FRAME_NEED_MORE;
    uint32_t body_len = get_be32(data);
    if (body_len > MAX_BODY_BYTES)
        return bad_field(f, why, "length over 10 MiB", 0, 4);
    if (len - 4 < body_len)
        return FRAME_NEED_MORE;
    *f = (struct frame){
        .body = data + 4, .body_len = body_len, .origin_size = body_len, .frame_len = 4 + body_len};
    return FRAME_OK;
}

static enum frame_status decode_lines(const struct frame_rules *rules, const uint8_t *data,
                                      size_t len, struct frame *f, const char **why)
{
    /* Look for CRLF only within the allowed length: a peer that never sends
     * one must not make us buffer (and scan) forever. */
    size_t limit = rules->max_line_bytes + 2;
    size_t scan = len < limit ? len : limit;
    for (size_t i = 0; i + 1 < scan; i++) {
        if (data[i] == '\r' && data[i + 1] == '\n') {
            *f = (struct frame){
                .body = data, .body_len = i, .origin_size = (uint32_t)i, .frame_len = i + 2};
            return FRAME_OK;
        }
    }
    if (len >= limit)
        return error(f, why, "line too long (no CRLF within --max-line bytes)");
    return FRAME_NEED_MORE;
}

enum frame_status frame_decode(const struct frame_rules *rules, const uint8_t *data, size_t len,
                               struct frame *f, const char **why)
{
    switch (rules->framing) {
    case FRAMING_FIXED:
        if (len < rules->record_bytes)
            return FRAME_NEED_MORE;
        *f = (struct frame){.body = data,
                            .body_len = rules->record_bytes,
                            .origin_size = (uint32_t)rules->record_bytes,
                            .frame_len = rules->record_bytes};
        return FRAME_OK;
    case FRAMING_LINES: return decode_lines(rules, data, len, f, why);
    case FRAMING_LENGTH: return decode_length(data, len, f, why);
    case FRAMING_PROTOCOL: return decode_protocol(data, len, f, why);
    }
    return error(f, why, "unknown framing");
}

void frame_describe(const struct frame *f, const uint8_t *data, char *out, size_t cap)
{
    char hex[4 * 3] = "", text[4 + 1] = ""; /* "68 65 6c 6c", "hell" */
    size_t used = 0;
    uint32_t value = 0;
    bool printable = true;
    if (f->bad_len == 0 || f->bad_len > 4) {
        snprintf(out, cap, "%s", "");
        return;
    }
    for (size_t i = 0; i < f->bad_len; i++) {
        uint8_t b = data[f->bad_at + i];
        value = value << 8 | b;
        used += (size_t)snprintf(hex + used, sizeof hex - used, "%s%02x", i > 0 ? " " : "", b);
        text[i] = (char)b;
        printable = printable && b >= 0x20 && b < 0x7f;
    }
    text[f->bad_len] = '\0';
    if (printable)
        snprintf(out, cap, ": got %" PRIu32 " = %s \"%s\" (text on a binary port?)", value, hex,
                 text);
    else
        snprintf(out, cap, ": got %" PRIu32 " = %s", value, hex);
}

void frame_put_header(uint8_t out[FRAME_HEADER_BYTES], uint8_t flags, uint32_t origin_size,
                      uint32_t compress_size)
{
    memset(out, 0, FRAME_HEADER_BYTES); /* reserved bytes are sent as zeros */
    out[0] = flags;
    put_be32(out + 1, origin_size);
    put_be32(out + 5, compress_size);
}

void frame_wrap(const struct frame_rules *rules, size_t body_len, uint8_t flags,
                uint32_t origin_size, uint8_t *prefix, size_t *prefix_len, const uint8_t **suffix,
                size_t *suffix_len)
{
    static const uint8_t crlf[2] = {'\r', '\n'};
    *prefix_len = 0;
    *suffix = NULL;
    *suffix_len = 0;
    switch (rules->framing) {
    case FRAMING_FIXED: break;
    case FRAMING_LINES:
        *suffix = crlf;
        *suffix_len = 2;
        break;
    case FRAMING_LENGTH:
        put_be32(prefix, (uint32_t)body_len);
        *prefix_len = 4;
        break;
    case FRAMING_PROTOCOL:
        frame_put_header(prefix, flags, origin_size,
                         flags == FLAG_COMPRESSED ? (uint32_t)body_len : 0);
        *prefix_len = FRAME_HEADER_BYTES;
        break;
    }
}

int framing_parse(const char *name)
{
    static const char *names[] = {"fixed", "lines", "length", "protocol"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *framing_name(enum framing f)
{
    switch (f) {
    case FRAMING_FIXED: return "fixed";
    case FRAMING_LINES: return "lines";
    case FRAMING_LENGTH: return "length";
    case FRAMING_PROTOCOL: return "protocol";
    }
    return "?";
}
