/* frame_fuzz.c -- libFuzzer harness for the lesson-5 decoding loop
 *
 * The input is a byte stream as a peer could send it. The first byte picks
 * the framing and how the stream is cut into "reads"; the rest is fed to a
 * struct buffer piece by piece, and after every piece the decoding loop
 * runs exactly as in server.c: decode, handle (decompress LZ4 bodies),
 * consume, repeat. Whatever the bytes, nothing may crash, read out of
 * bounds, or break the buffer invariant; every decoded frame must lie
 * inside the bytes that were buffered.
 */
/* The lesson's sources themselves, compiled into the harness. */
#include "buffer.c"
#include "frame.c"
#include "lz4.c"

#include <stdlib.h>
#include <string.h>

static void check_frame(const struct frame *f, const uint8_t *data, size_t len)
{
    if (f->frame_len == 0 || f->frame_len > len || f->body < data ||
        f->body + f->body_len > data + len)
        abort();
    if (f->compressed) {
        uint8_t *plain = malloc(f->origin_size);
        if (plain == NULL)
            return;
        (void)lz4_decompress(f->body, f->body_len, plain, f->origin_size);
        free(plain);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct frame_rules rules = {.record_bytes = 1 + data[0] % 32,
                                .max_line_bytes = 1 + data[0] % 64};
    rules.framing = (enum framing)(data[0] % 4);
    size_t piece = 1 + (data[0] >> 2); /* 1..64 bytes per "read" */
    data++, size--;

    struct buffer in;
    buf_init(&in, FRAME_HEADER_BYTES + MAX_BODY_BYTES + 2 * 65536);
    bool closed = false;
    for (size_t off = 0; off < size && !closed; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        if (buf_append(&in, data + off, n) != IO_OK)
            break;
        for (;;) {
            struct frame f;
            const char *why = NULL;
            enum frame_status st = frame_decode(&rules, buf_peek(&in), buf_readable(&in), &f, &why);
            if (st == FRAME_NEED_MORE)
                break;
            if (st == FRAME_ERROR) {
                if (why == NULL)
                    abort(); /* every error must have a reason for the log line */
                /* the field it names lies within what was buffered */
                if (f.bad_at + f.bad_len > buf_readable(&in))
                    abort();
                char got[96];
                frame_describe(&f, buf_peek(&in), got, sizeof got);
                closed = true;
                break;
            }
            check_frame(&f, buf_peek(&in), buf_readable(&in));
            buf_consume(&in, f.frame_len);
        }
        buf_check(&in);
    }
    buf_free(&in);
    return 0;
}
