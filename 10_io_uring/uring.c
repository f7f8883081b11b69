/* uring.c -- an io_uring instance, with no library: setup, the three mappings, SQEs, CQEs, buffers
 *
 * The rings are memory we share with the kernel, so the order in which
 * their words become visible matters as much as what they say. The rules:
 * - an SQE is written first, then the SQ tail is published with a release
 *   store: the kernel, which reads the tail with an acquire load, then
 *   sees the whole SQE;
 * - the CQ tail is read with an acquire load, so the CQEs before it are
 *   complete when we read them; the CQ head is given back with a release
 *   store, once we are done with the slot;
 * - a provided buffer's entry is written first, then the buffer ring's
 *   tail is published with a release store.
 * On x86 these are plain loads and stores, but the compiler must not
 * reorder them either; the __atomic built-ins say so to both.
 */
#include "uring.h"
#include "net.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int setup(unsigned entries, unsigned cq_entries, unsigned flags, struct io_uring_params *p)
{
    *p = (struct io_uring_params){.flags = flags, .cq_entries = cq_entries};
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

/* Map one of the ring's regions; a failure here is a setup failure. */
static void *map(int fd, size_t bytes, off_t offset)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
    if (p == MAP_FAILED)
        die("mmap(io_uring)");
    return p;
}

int uring_init(struct uring *r, unsigned sq_entries, unsigned cq_entries, const char **failed)
{
    *r = (struct uring){.fd = -1};
    *failed = "io_uring_setup";
    /* CQSIZE: a CQ bigger than the SQ (one multishot request completes
     * many times). SUBMIT_ALL: a bad SQE does not stop the ones after it.
     * SINGLE_ISSUER (6.0): only this thread submits. DEFER_TASKRUN (6.1):
     * the kernel finishes our requests' work when we enter, instead of
     * interrupting the thread whenever it likes. A kernel that refuses
     * SINGLE_ISSUER is older than 6.0, and lacks the multishot receive the
     * server needs: EINVAL then means "not available here". */
    unsigned flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER;
    struct io_uring_params p;
    int fd = setup(sq_entries, cq_entries, flags | IORING_SETUP_DEFER_TASKRUN, &p);
    if (fd == -1 && errno == EINVAL)
        fd = setup(sq_entries, cq_entries, flags, &p);
    if (fd == -1)
        return -errno;
    r->fd = fd;
    r->features = p.features;
    r->sq_ring_bytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_ring_bytes = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    /* SINGLE_MMAP (5.4): both rings live in one mapping, at the SQ's offset. */
    if (r->features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_ring_bytes > r->sq_ring_bytes)
            r->sq_ring_bytes = r->cq_ring_bytes;
        r->cq_ring_bytes = 0;
    }
    r->sq_ring = map(fd, r->sq_ring_bytes, IORING_OFF_SQ_RING);
    r->cq_ring = r->cq_ring_bytes == 0 ? r->sq_ring : map(fd, r->cq_ring_bytes, IORING_OFF_CQ_RING);
    r->sqes_bytes = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = map(fd, r->sqes_bytes, IORING_OFF_SQES);

    uint8_t *sq = r->sq_ring, *cq = r->cq_ring;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_entries = p.sq_entries;
    /* The SQ ring holds indexes into the SQE array; slot i always names SQE i. */
    unsigned *array = (unsigned *)(sq + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++)
        array[i] = i;
    r->sqe_tail = *r->sq_tail;
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

int uring_buffers_init(struct uring *r, unsigned count, unsigned bytes, uint16_t group,
                       const char **failed)
{
    /* Anonymous mappings: page-aligned, as the kernel wants the ring to be,
     * and memory valgrind counts as initialised (the kernel fills it). The
     * buffers are faulted in now (MAP_POPULATE): the kernel takes them in
     * turn round the ring, so under load every one is touched anyway, and
     * their memory is then a fixed cost the server shows from the start. */
    size_t ring_bytes = count * sizeof(struct io_uring_buf);
    r->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r->bufs = mmap(NULL, (size_t)count * bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (r->br == MAP_FAILED || r->bufs == MAP_FAILED)
        die("mmap(buffers)");
    r->buf_count = count;
    r->buf_bytes = bytes;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)r->br, .ring_entries = count, .bgid = group};
    *failed = "io_uring_register";
    if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_PBUF_RING, &reg, 1) == -1)
        return -errno; /* EINVAL: older than 5.19, no provided-buffer rings */
    for (unsigned id = 0; id < count; id++)
        uring_buffer_return(r, id);
    return 0;
}

void uring_buffer_return(struct uring *r, unsigned id)
{
    /* Field by field: the ring's tail shares its 16 bits with the first
     * entry's resv field, and a whole-struct assignment would clobber it. */
    struct io_uring_buf *b = &r->br->bufs[r->br_tail & (r->buf_count - 1)];
    b->addr = (uintptr_t)uring_buffer(r, id);
    b->len = r->buf_bytes;
    b->bid = (uint16_t)id;
    r->br_tail++;
    __atomic_store_n(&r->br->tail, r->br_tail, __ATOMIC_RELEASE);
}

/* Publish the SQEs written since the last call, and enter: submit them,
 * and with IORING_ENTER_GETEVENTS also run the work the kernel deferred
 * to us and wait for min_complete completions. Returns the number
 * submitted, or a negative errno. */
static int enter(struct uring *r, unsigned flags, unsigned min_complete)
{
    __atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
    unsigned to_submit = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    long n = syscall(__NR_io_uring_enter, r->fd, to_submit, min_complete, flags, NULL, 0);
    return n == -1 ? -errno : (int)n;
}

struct io_uring_sqe *uring_get_sqe(struct uring *r)
{
    /* Full: everything written so far goes to the kernel now (the loop
     * queues a request per connection, and a turn may touch thousands).
     * Only a submit: the completions are the turn's business. */
    while (r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE) == r->sq_entries) {
        int n = enter(r, 0, 0);
        if (n < 0 && n != -EINTR) {
            errno = -n;
            die("io_uring_enter");
        }
    }
    struct io_uring_sqe *sqe = &r->sqes[r->sqe_tail & r->sq_mask];
    memset(sqe, 0, sizeof *sqe);
    r->sqe_tail++;
    return sqe;
}

int uring_submit_and_wait(struct uring *r)
{
    /* Do not sleep when completions are ready already: left by a submit
     * that ran out of SQ room, or kept in the kernel's overflow list. CQ
     * overflow means the kernel had more completions than the CQ has
     * slots; with IORING_FEAT_NODROP (every kernel we run on) it keeps
     * them, raises IORING_SQ_CQ_OVERFLOW, and moves them into the CQ when
     * we enter with GETEVENTS: the enter below does that, with room made
     * by the completions we took. */
    bool ready = uring_cq_ready(r) > 0 ||
                 (__atomic_load_n(r->sq_flags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW);
    return enter(r, IORING_ENTER_GETEVENTS, ready ? 0 : 1);
}

bool uring_next_cqe(struct uring *r, struct io_uring_cqe *cqe)
{
    unsigned head = *r->cq_head; /* only we move it */
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        return false;
    *cqe = r->cqes[head & r->cq_mask];
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return true;
}

void uring_exit(struct uring *r)
{
    if (r->fd == -1)
        return;
    close(r->fd); /* the kernel cancels what is still in flight */
    munmap(r->sqes, r->sqes_bytes);
    if (r->cq_ring != r->sq_ring)
        munmap(r->cq_ring, r->cq_ring_bytes);
    munmap(r->sq_ring, r->sq_ring_bytes);
    if (r->br != NULL) {
        munmap(r->br, r->buf_count * sizeof(struct io_uring_buf));
        munmap(r->bufs, (size_t)r->buf_count * r->buf_bytes);
    }
    r->fd = -1;
}
