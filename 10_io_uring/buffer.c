/* buffer.c -- a growable byte buffer: read index, write index, compaction */
#include "buffer.h"

#include <assert.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SPILL_BYTES   65536
#define MIN_CAP_BYTES 256

void buf_check(const struct buffer *b)
{
    assert(b->read_pos <= b->write_pos);
    assert(b->write_pos <= b->cap);
    assert(b->cap == 0 || b->data != NULL);
}

void buf_init(struct buffer *b, size_t max_bytes)
{
    *b = (struct buffer){.max_bytes = max_bytes};
}

void buf_free(struct buffer *b)
{
    free(b->data);
    buf_init(b, b->max_bytes);
}

void buf_consume(struct buffer *b, size_t n)
{
    assert(n <= buf_readable(b));
    b->read_pos += n;
    if (b->read_pos == b->write_pos) /* empty: start again at the front, for free */
        b->read_pos = b->write_pos = 0;
    buf_check(b);
}

/* Make room for n more bytes after write_pos: compact first, grow only if
 * compaction is not enough. IO_OK, IO_FULL or IO_ERROR (malloc set ENOMEM). */
static enum io buf_reserve(struct buffer *b, size_t n)
{
    if (b->cap - b->write_pos >= n)
        return IO_OK;
    size_t readable = buf_readable(b);
    if (b->max_bytes != 0 && readable + n > b->max_bytes)
        return IO_FULL;
    if (b->read_pos > 0 && b->cap - readable >= n) {
        memmove(b->data, b->data + b->read_pos, readable);
        b->read_pos = 0;
        b->write_pos = readable;
        buf_check(b);
        return IO_OK;
    }
    size_t cap = b->cap < MIN_CAP_BYTES ? MIN_CAP_BYTES : b->cap;
    while (cap < readable + n)
        cap *= 2;
    if (b->max_bytes != 0 && cap > b->max_bytes)
        cap = b->max_bytes;
    /* Compact into the new block: the consumed front is not copied. */
    uint8_t *data = malloc(cap);
    if (data == NULL)
        return IO_ERROR;
    if (readable > 0)
        memcpy(data, b->data + b->read_pos, readable);
    free(b->data);
    b->data = data;
    b->cap = cap;
    b->read_pos = 0;
    b->write_pos = readable;
    buf_check(b);
    return IO_OK;
}

enum io buf_append(struct buffer *b, const void *p, size_t n)
{
    if (n == 0)
        return IO_OK;
    enum io r = buf_reserve(b, n);
    if (r != IO_OK)
        return r;
    memcpy(b->data + b->write_pos, p, n);
    b->write_pos += n;
    return IO_OK;
}

enum io buf_read_fd(struct buffer *b, int fd, size_t *n)
{
    *n = 0;
    uint8_t spill[SPILL_BYTES];
    struct iovec iov[2];
    int iovcnt = 0;
    /* Never ask for more than max_bytes lets us keep: a read past the limit
     * would have to be thrown away. */
    size_t room = SIZE_MAX;
    if (b->max_bytes != 0) {
        if (buf_readable(b) >= b->max_bytes)
            return IO_FULL;
        room = b->max_bytes - buf_readable(b);
    }
    size_t in_buffer = b->cap - b->write_pos; /* free space in the buffer itself */
    if (in_buffer > room)
        in_buffer = room;
    size_t spill_len = room - in_buffer < sizeof spill ? room - in_buffer : sizeof spill;
    if (in_buffer > 0)
        iov[iovcnt++] = (struct iovec){.iov_base = b->data + b->write_pos, .iov_len = in_buffer};
    if (spill_len > 0)
        iov[iovcnt++] = (struct iovec){.iov_base = spill, .iov_len = spill_len};
    ssize_t got = readv(fd, iov, iovcnt);
    while (got == -1 && errno == EINTR) /* a signal came first: nothing was read yet */
        got = readv(fd, iov, iovcnt);
    if (got == -1)
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    if (got == 0)
        return IO_CLOSED;
    if ((size_t)got <= in_buffer) {
        b->write_pos += (size_t)got;
        *n = (size_t)got;
        return IO_OK;
    }
    b->write_pos += in_buffer;
    /* Not IO_FULL (room kept the read within max_bytes). IO_ERROR: the
     * spilled bytes are lost, so this stream cannot be decoded any further. */
    enum io r = buf_append(b, spill, (size_t)got - in_buffer);
    if (r != IO_OK)
        return r;
    *n = (size_t)got;
    return IO_OK;
}

enum io buf_send_fd(struct buffer *b, int fd, size_t *n)
{
    *n = 0;
    ssize_t sent = send(fd, buf_peek(b), buf_readable(b), MSG_NOSIGNAL);
    while (sent == -1 && errno == EINTR) /* a signal came first: nothing was sent yet */
        sent = send(fd, buf_peek(b), buf_readable(b), MSG_NOSIGNAL);
    if (sent == -1)
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    buf_consume(b, (size_t)sent);
    *n = (size_t)sent;
    return IO_OK;
}

void buf_release_if_big(struct buffer *b, size_t keep_bytes)
{
    if (buf_readable(b) == 0 && b->cap > keep_bytes)
        buf_free(b);
}
