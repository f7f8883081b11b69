/* timer.c -- timers for the event loop: one list per timeout, in deadline order */
#include "timer.h"

#include <stddef.h>

void timer_list_init(struct timer_list *l, int ms, const char *name)
{
    l->head.prev = l->head.next = &l->head; /* empty: the sentinel points at itself */
    l->head.owner = NULL;
    l->ms = ms;
    l->name = name;
}

void timer_unlink(struct timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

void timer_start(struct timer_list *l, struct timer *t, long long now_ms)
{
    if (l->ms <= 0)
        return;
    timer_stop(t);
    t->since_ms = now_ms;
    /* Append at the back: nobody in the list started later than now. */
    t->prev = l->head.prev;
    t->next = &l->head;
    l->head.prev->next = t;
    l->head.prev = t;
}

long long timer_list_deadline(const struct timer_list *l)
{
    if (l->head.next == &l->head)
        return -1;
    return l->head.next->since_ms + l->ms;
}

struct timer *timer_list_pop_expired(struct timer_list *l, long long now_ms)
{
    long long deadline = timer_list_deadline(l);
    if (deadline < 0 || deadline > now_ms)
        return NULL;
    struct timer *t = l->head.next;
    timer_stop(t);
    return t;
}
