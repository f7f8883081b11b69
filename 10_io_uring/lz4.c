/* lz4.c -- the LZ4 block format: a greedy compressor and a decoder that checks every bound
 *
 * A block is a series of sequences. Each sequence says "copy these literal bytes, then copy
 * match_len bytes from offset bytes back in what you have already written":
 *
 *   token        literal length       literals     offset       match length
 *   +--------+   +----------------+   +--------+   +--------+   +----------------+
 *   | LLLL MMMM | | 255 255 ... x  |   | bytes  |   | lo  hi |   | 255 255 ... y  |
 *   +--------+   +----------------+   +--------+   +--------+   +----------------+
 *                only if LLLL = 15                 2 bytes LE   only if MMMM = 15
 *
 * LLLL is the literal count (0..14, or 15 + the extra bytes), MMMM the match length minus 4
 * (the shortest match worth a 3-byte reference is 4 bytes). An extra length byte of 255 means
 * another byte follows. The last sequence stops after its literals: no offset, no match.
 */
#include "lz4.h"

#include <stdbool.h>
#include <string.h>

#define MIN_MATCH_BYTES  4     /* a match of 4 costs 3 bytes (token + offset): the break-even */
#define MAX_OFFSET_BYTES 65535 /* the offset field has 16 bits, and 0 means nothing */
#define NIBBLE_MAX       15    /* a token nibble of 15 means "more length bytes follow" */
#define LENGTH_BYTE_MAX  255   /* an extra length byte of 255 means "and another one" */
/* End-of-block rules every LZ4 compressor respects, so that fast decoders may copy in wide
 * chunks near the end without checking each byte: the last 5 bytes are always literals, and
 * the last match starts at least 12 bytes before the end. Shorter inputs have no room for a
 * match at all. */
#define LAST_LITERAL_BYTES  5
#define MATCH_MARGIN_BYTES  12
#define MIN_INPUT_FOR_MATCH (MATCH_MARGIN_BYTES + 1)
/* The compressor remembers one earlier position per hash of 4 bytes: 4096 entries of 4 bytes,
 * 16 KiB of stack, the same size the reference uses by default. */
#define HASH_BITS    12
#define HASH_ENTRIES (1u << HASH_BITS)
/* After 2^SKIP_SHIFT failed lookups in a row, look at every second position, then every
 * third...: incompressible data costs little time, and the first match resets the pace. */
#define SKIP_SHIFT 6

size_t lz4_compress_bound(size_t n)
{
    return n + n / 255 + 16;
}

/* Four bytes as a little-endian number, one byte at a time: no unaligned load, no pointer
 * cast, the same value on every machine (compilers turn this into a single load). */
static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Multiplicative (Knuth) hashing: the multiplier stirs all 32 bits into the top ones, which
 * become the table index. Equal 4-byte sequences always land in the same slot. */
static unsigned hash4(uint32_t four_bytes)
{
    return (unsigned)((four_bytes * 2654435761u) >> (32 - HASH_BITS));
}

/* The extra bytes of a length that did not fit in its nibble: 255 as often as needed, then
 * the rest (0..254). A rest of 0 still takes a byte: it tells the decoder to stop. */
static uint8_t *put_length(uint8_t *op, size_t extra)
{
    while (extra >= LENGTH_BYTE_MAX) {
        *op++ = LENGTH_BYTE_MAX;
        extra -= LENGTH_BYTE_MAX;
    }
    *op++ = (uint8_t)extra;
    return op;
}

/* The start of every sequence: token, extra literal-length bytes, the literals. The caller
 * gives the match nibble for the token's low half (0 in the last sequence). */
static uint8_t *put_literals(uint8_t *op, const uint8_t *literals, size_t count,
                             unsigned match_nibble)
{
    unsigned literal_nibble = count < NIBBLE_MAX ? (unsigned)count : NIBBLE_MAX;

    *op++ = (uint8_t)(literal_nibble << 4 | match_nibble);
    if (count >= NIBBLE_MAX)
        op = put_length(op, count - NIBBLE_MAX);
    if (count > 0) /* memcpy from a NULL source is undefined even for 0 bytes */
        memcpy(op, literals, count);
    return op + count;
}

/* The end of a sequence with a match: the 2-byte offset, low byte first, then the extra
 * match-length bytes. */
static uint8_t *put_match(uint8_t *op, size_t offset, size_t length)
{
    *op++ = (uint8_t)(offset & 0xff);
    *op++ = (uint8_t)(offset >> 8);
    if (length - MIN_MATCH_BYTES >= NIBBLE_MAX)
        op = put_length(op, length - MIN_MATCH_BYTES - NIBBLE_MAX);
    return op;
}

size_t lz4_compress(const uint8_t *src, size_t n, uint8_t *dst)
{
    uint8_t *op = dst;
    size_t anchor = 0; /* the first input byte not yet written out */

    if (n >= MIN_INPUT_FOR_MATCH) {
        /* Positions are stored as 32 bits: for inputs past 4 GiB they wrap, and unsigned
         * subtraction still gives the right distance to any recent position. A stale slot
         * can only suggest a wrong candidate, and every candidate is compared byte for byte
         * before it is used, so a wrong one costs a lookup, never a wrong block. */
        uint32_t table[HASH_ENTRIES];
        size_t last_match_start = n - MATCH_MARGIN_BYTES;
        size_t match_end_limit = n - LAST_LITERAL_BYTES;
        size_t pos = 0;
        unsigned misses = 0;

        memset(table, 0, sizeof table);
        while (pos <= last_match_start) {
            uint32_t here = load_le32(src + pos);
            unsigned slot = hash4(here);
            size_t distance = (uint32_t)((uint32_t)pos - table[slot]);

            table[slot] = (uint32_t)pos;
            if (distance == 0 || distance > MAX_OFFSET_BYTES || distance > pos ||
                load_le32(src + pos - distance) != here) {
                misses++;
                pos += 1 + (misses >> SKIP_SHIFT);
                continue;
            }
            /* Greedy: take the first match found and make it as long as it goes, stopping
             * where the last 5 bytes (always literals) begin. */
            const uint8_t *match = src + pos - distance;
            size_t length = MIN_MATCH_BYTES;
            while (pos + length < match_end_limit && match[length] == src[pos + length])
                length++;

            size_t match_nibble = length - MIN_MATCH_BYTES;
            if (match_nibble > NIBBLE_MAX)
                match_nibble = NIBBLE_MAX;
            op = put_literals(op, src + anchor, pos - anchor, (unsigned)match_nibble);
            op = put_match(op, distance, length);
            pos += length;
            anchor = pos;
            misses = 0;
        }
    }
    /* The last sequence: whatever is left, as literals. An empty input still gets its token,
     * so every block is at least one byte long. */
    op = put_literals(op, src + anchor, n - anchor, 0);
    return (size_t)(op - dst);
}

/* Add the extra length bytes that follow a nibble of 15 to *length, stopping as soon as the
 * total passes `limit` (the room left in the output). Checking on every byte, not at the end,
 * is what keeps a long run of 255s from wrapping *length around to a small, harmless-looking
 * number that would pass the later checks. */
static const char *read_length(const uint8_t *src, size_t src_len, size_t *ip, size_t limit,
                               size_t *length)
{
    uint8_t byte;

    do {
        if (*ip >= src_len)
            return "lz4: truncated sequence";
        byte = src[(*ip)++];
        *length += byte;
        if (*length > limit)
            return "lz4: output longer than origin_size";
    } while (byte == LENGTH_BYTE_MAX);
    return NULL;
}

/* The lesson: every number in the block comes from the peer. Each one is checked against the
 * input left and the output left *before* the copy it controls; without the checks a crafted
 * block could read past the received bytes or write past the buffer we sized from
 * origin_size -- a heap overflow driven by anyone who can open a connection. */
const char *lz4_decompress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t origin_size)
{
    size_t ip = 0, op = 0; /* read position in src, write position in dst */
    const char *error;

    for (;;) {
        /* Every block ends with a literals-only sequence, so input may not run out here. */
        if (ip >= src_len)
            return "lz4: truncated sequence";
        uint8_t token = src[ip++];

        size_t literals = token >> 4;
        if (literals == NIBBLE_MAX) {
            error = read_length(src, src_len, &ip, origin_size - op, &literals);
            if (error != NULL)
                return error;
        }
        if (literals > src_len - ip)
            return "lz4: literal run past the end of the input";
        if (literals > origin_size - op)
            return "lz4: output longer than origin_size";
        if (literals > 0)
            memcpy(dst + op, src + ip, literals);
        ip += literals;
        op += literals;

        /* The input ends right after the literals: that was the last sequence. */
        if (ip == src_len)
            break;
        /* Bytes follow, but the output is already full: any match would overflow it (a
         * match is at least 4 bytes), so what follows can only be garbage. */
        if (op == origin_size)
            return "lz4: trailing bytes after the last sequence";

        if (src_len - ip < 2)
            return "lz4: truncated sequence";
        size_t offset = (size_t)src[ip] | (size_t)src[ip + 1] << 8;
        ip += 2;
        /* Offset 0 would copy the byte being written from itself: uninitialised memory. */
        if (offset == 0)
            return "lz4: match offset 0";
        /* An offset past what was written would read in front of dst: another connection's
         * data, or an allocator header, copied into the reply -- an information leak. */
        if (offset > op)
            return "lz4: match offset before the start of the output";

        size_t length = (size_t)(token & NIBBLE_MAX) + MIN_MATCH_BYTES;
        if ((token & NIBBLE_MAX) == NIBBLE_MAX) {
            error = read_length(src, src_len, &ip, origin_size - op, &length);
            if (error != NULL)
                return error;
        }
        if (length > origin_size - op)
            return "lz4: output longer than origin_size";

        /* A match may overlap the bytes it produces: offset 1, length 100 repeats one byte
         * 100 times. Each byte must be read after the one before it was written: memcpy does
         * not promise that order, and memmove copies as if through a temporary buffer, which
         * does not repeat the pattern. So go byte by byte. */
        uint8_t *out = dst + op;
        const uint8_t *from = out - offset;
        if (offset >= length) {
            memcpy(out, from, length);
        } else {
            for (size_t i = 0; i < length; i++)
                out[i] = from[i];
        }
        op += length;
    }

    /* Every byte the peer promised in origin_size must be there: a short result would leave
     * the end of the buffer uninitialised, to be handed on as if it were the message. */
    if (op != origin_size)
        return "lz4: output shorter than origin_size";
    return NULL;
}
