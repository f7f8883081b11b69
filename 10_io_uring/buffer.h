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

/* What an I/O helper did. A read ends in one of four ways (bytes, not now,
 * end of stream, failure) and each asks the caller for something else: use
 * the bytes, wait for readiness, finish the connection, close it with a
 * reason. read()'s -1 with errno files "not now" among the failures, and our
 * own size limit is not something the system said: no errno would be true
 * for it, so it has a name of its own.
 *   IO_OK      bytes moved: *n says how many (more than 0 whenever there
 *              was something to move)
 *   IO_AGAIN   nothing now: EAGAIN/EWOULDBLOCK; wait until the socket is
 *              reported ready again
 *   IO_CLOSED  end of stream: the peer sent its FIN (reads only)
 *   IO_ERROR   failed: errno is what the kernel said, or ENOMEM from malloc
 *   IO_FULL    max_bytes leaves no room: our own limit, errno means nothing
 * These functions never set errno themselves, and never return for EINTR:
 * a signal that arrives before any byte moved says nothing about the
 * socket, so the call is simply made again. */
enum io { IO_OK, IO_AGAIN, IO_CLOSED, IO_ERROR, IO_FULL };

/* Append n bytes: IO_OK, IO_FULL (max_bytes says no) or IO_ERROR (no memory). */
enum io buf_append(struct buffer *b, const void *p, size_t n);

/* Read from fd into the buffer with ONE readv: the buffer's free space plus
 * a 64 KiB spill area on the stack, so a small buffer can still take a big
 * burst in one system call. *n is the number of bytes read (0 unless IO_OK). */
enum io buf_read_fd(struct buffer *b, int fd, size_t *n);

/* Send readable bytes to fd (MSG_NOSIGNAL) and consume what the kernel
 * took. *n is the number of bytes sent (0 unless IO_OK); IO_CLOSED never
 * comes back from a send: a peer that is gone makes it fail (EPIPE,
 * ECONNRESET). */
enum io buf_send_fd(struct buffer *b, int fd, size_t *n);

void buf_check(const struct buffer *b); /* assert the invariant */

/* Lesson 9: an EMPTY buffer bigger than keep_bytes gives its memory back.
 * Thousands of connections that each keep the biggest buffer they ever
 * needed cost memory and spread every message over memory the CPU cache
 * cannot hold; a freed block is reused, still hot, by the next malloc. */
void buf_release_if_big(struct buffer *b, size_t keep_bytes);

#endif
