/* timer.h -- timers for the event loop: one list per timeout, kept in deadline order
 *
 * Every connection's idle timeout has the same length, so the order of the
 * deadlines is the order of the last activity: a list where a touched
 * timer moves to the back IS sorted by deadline, with O(1) start, restart
 * and stop. The nearest deadline of a list is its head; the loop gives
 * epoll_wait the nearest of all heads as its timeout. (Timers of mixed
 * lengths would need a heap or a timer wheel; one list per length is enough
 * here, and a reader can see at once why it is correct.)
 *
 *   list->head.next                                        list->head.prev
 *   [oldest: expires first] <-> [..] <-> [..] <-> [touched last: expires last]
 */
#ifndef TIMER_H
#define TIMER_H

#include <stdbool.h>
#include <stddef.h>

struct timer {
    struct timer *prev, *next; /* NULL, NULL: not running */
    long long since_ms;        /* started (or last touched) at; expires at since_ms + list ms */
    void *owner;               /* the connection this timer belongs to */
};

struct timer_list {
    struct timer head; /* sentinel: head.next is the oldest, head.prev the newest */
    int ms;            /* the timeout of every timer in this list; 0: disabled */
    const char *name;  /* for -v traces */
};

void timer_list_init(struct timer_list *l, int ms, const char *name);

/* Start t (or restart it if it runs) at now: it moves to the back of l.
 * Does nothing if the list is disabled. */
void timer_start(struct timer_list *l, struct timer *t, long long now_ms);
static inline bool timer_running(const struct timer *t)
{
    return t->next != NULL;
}
/* Stop t if it runs. Inline (lesson 9): most calls find it stopped, and a
 * test costs less than a call into timer.c. */
void timer_unlink(struct timer *t);
static inline void timer_stop(struct timer *t)
{
    if (timer_running(t))
        timer_unlink(t);
}

/* The nearest deadline in l, or -1 if l has no timer running. */
long long timer_list_deadline(const struct timer_list *l);

/* The oldest timer of l if it has expired at now (stopped, ready to handle), else NULL. */
struct timer *timer_list_pop_expired(struct timer_list *l, long long now_ms);

#endif
