/* uring.h -- an io_uring instance, with no library: its rings, submissions, completions, buffers
 *
 * Two rings shared with the kernel. We write requests (SQEs) into the
 * submission queue and move its tail; the kernel writes results (CQEs)
 * into the completion queue and moves that tail; each side moves the head
 * of the ring it reads. One io_uring_enter() both hands over what was
 * written and waits for results. A third ring, of buffers we provide,
 * lets the kernel choose where a receive lands when the data arrives.
 *
 *   submission queue:  [sqe][sqe][sqe][   ][   ]   we write at tail, the kernel reads at head
 *   completion queue:  [cqe][cqe][   ][   ][   ]   the kernel writes at tail, we read at head
 *   buffer ring:       [buf][buf][buf][buf][   ]   we give back at tail, the kernel takes at head
 *
 * Nothing here knows about connections: user_data is the caller's.
 */
#ifndef URING_H
#define URING_H

#include <linux/io_uring.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uring {
    int fd;
    unsigned features; /* IORING_FEAT_* the kernel offered */
    /* submission queue: head and tail shared with the kernel, sqe_tail ours */
    unsigned *sq_head, *sq_tail, *sq_flags, sq_mask, sq_entries;
    unsigned sqe_tail; /* SQEs written so far; published to *sq_tail on submit */
    struct io_uring_sqe *sqes;
    /* completion queue */
    unsigned *cq_head, *cq_tail, cq_mask;
    struct io_uring_cqe *cqes;
    /* the mappings, to unmap at the end */
    void *sq_ring, *cq_ring;
    size_t sq_ring_bytes, cq_ring_bytes, sqes_bytes;
    /* the provided-buffer ring: one buffer group, buf_count buffers of buf_bytes */
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    unsigned buf_count, buf_bytes;
    uint16_t br_tail; /* buffers given to the kernel so far (it wraps, as the kernel's does) */
};

/* Set up the ring: sq_entries SQEs, a CQ of cq_entries (bigger: one
 * multishot request completes many times). Returns 0, or a negative errno
 * if the kernel says no; *failed names the call. The mappings failing is a
 * setup failure: die(). */
int uring_init(struct uring *r, unsigned sq_entries, unsigned cq_entries, const char **failed);

/* Provide count buffers of bytes each (count a power of two) as buffer
 * group group. Returns 0 or a negative errno (*failed names the call). */
int uring_buffers_init(struct uring *r, unsigned count, unsigned bytes, uint16_t group,
                       const char **failed);

/* A zeroed SQE to fill in, queued for the next submit. A full submission
 * queue is submitted first (the only time this enters the kernel). */
struct io_uring_sqe *uring_get_sqe(struct uring *r);

/* Completions waiting in the CQ. */
static inline unsigned uring_cq_ready(const struct uring *r)
{
    return __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) - *r->cq_head;
}

/* The loop's one system call per turn: submit what was queued, and wait
 * for at least one completion, unless some are ready already. Returns the
 * number submitted, or a negative errno (-EINTR: a signal; just go on). */
int uring_submit_and_wait(struct uring *r);

/* Take the next completion, if there is one: copied into *cqe, and its
 * slot given back to the kernel at once. */
bool uring_next_cqe(struct uring *r, struct io_uring_cqe *cqe);

/* The provided buffer the kernel named in a completion, and giving it
 * back to the ring once its bytes are used. */
static inline uint8_t *uring_buffer(const struct uring *r, unsigned id)
{
    return r->bufs + (size_t)id * r->buf_bytes;
}
void uring_buffer_return(struct uring *r, unsigned id);

/* Close the ring and free what it mapped. */
void uring_exit(struct uring *r);

#endif
