/* buffer.h -- a growable byte buffer: read index, write index, compaction
 *
 *   0            read_pos            write_pos              cap
 *   +---------------+--------------------+-------------------+
 *   | consumed:     | readable: received | writable: free    |
 *   | free again    | not yet decoded    | for the next recv |
 *   +---------------+--------------------+-------------------+
 *
 * Invariant: 0 <= read_pos <= write_pos <= cap (buf_check asserts it).
 * Bytes are appended at write_pos and consumed at read_pos. Before the
 * buffer grows, the readable bytes are moved to the front (compaction),
 * so a connection that keeps up never needs more than its biggest frame.
 */
#ifndef BUFFER_H
#define BUFFER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buffer {
    uint8_t *data;
    size_t read_pos, write_pos, cap;
    size_t max_bytes; /* never grow beyond this (0: no limit) */
};

void buf_init(struct buffer *b, size_t max_bytes);
void buf_free(struct buffer *b);

static inline size_t buf_readable(const struct buffer *b)
{
    return b->write_pos - b->read_pos;
}
static inline const uint8_t *buf_peek(const struct buffer *b)
{
    return b->data + b->read_pos;
}

/* Drop n readable bytes (they have been decoded or sent). */
void buf_consume(struct buffer *b, size_t n);

enum io { IO_OK, IO_AGAIN, IO_CLOSED, IO_ERROR, IO_FULL };
/* Append n bytes. */
enum io buf_append(struct buffer *b, const void *p, size_t n);

/* Read from fd into the buffer with ONE readv: the buffer's free space plus
 * a 64 KiB spill area on the stack, so a small buffer can still take a big
 * burst in one system call. Returns what read() would: bytes read, 0 at end
 * of stream, -1 with errno (EAGAIN included). ENOBUFS: max_bytes reached. */
enum io buf_read_fd(struct buffer *b, int fd, size_t *n);

/* Send readable bytes to fd (MSG_NOSIGNAL) and consume what the kernel
 * took. Returns bytes sent or -1 with errno (EAGAIN included). */
enum io buf_send_fd(struct buffer *b, int fd, size_t *n);

void buf_check(const struct buffer *b); /* assert the invariant */

#endif
