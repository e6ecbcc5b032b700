/* SPDX-License-Identifier: MIT */
/* queue_join.c - JoinableQueue: the taker slots that count, per process, the items taken and
 * marked done, reaping the slots of gone takers, task_done and join (queue_private.h). */
#include "queue_private.h"

/* Marks the slots of gone takers dead: their items count as finished from now on, the ones not
 * marked done as lost. all: also slots without unfinished items (to free them for reuse). */
static void reap_takers(mp_queue *q, bool all)
{
    struct qshm *s = q->s;
    uint32_t hw = mp__load_acq(&s->slots_hw);
    for (uint32_t i = 0; i < hw && i < JSLOTS; i++) {
        struct jslot *js = &q->slots[i];
        uint64_t v = mp__load_acq(&js->state);
        if (v & SLOT_DEAD) continue;
        if (!all && mp__load_acq(&js->taken) == mp__load_acq(&js->done)) continue;
        if (!mp__pid_gone((pid_t)(uint32_t)v, js->start)) continue;
        if (!mp__cas(&js->state, &v, v | SLOT_DEAD)) continue;
        uint64_t taken = mp__load_acq(&js->taken), done = mp__load_acq(&js->done);
        if (taken > done) {
            mp__fetch_add(&s->tasks_lost, taken - done);
            wake_join(s);
        }
    }
}

/* Claims a taker slot for process me on its first joinable get through this handle (see
 * taker_slot in queue_private.h): a free one, or one whose process is gone. */
int mp__queue_claim_slot(mp_queue *q, pid_t me)
{
    struct qshm *s = q->s;
    q->slot_pid = me;
    q->slot = -1;
    uint64_t start = mp__pid_start_time(me);
    for (int pass = 0; pass < 2 && q->slot < 0; pass++) {
        if (pass) reap_takers(q, true);
        for (uint32_t i = 0; i < JSLOTS; i++) {
            struct jslot *js = &q->slots[i];
            uint64_t v = mp__load_relaxed(&js->state);
            if (!(v & SLOT_DEAD)) continue;
            /* A taker killed in the middle of a consumer commit: its slot's count is rolled
             * forward by whoever repairs the consumer side; leave the slot to it until then
             * (only a dead owner's journal can name a dead slot, so this cannot change under
             * us). */
            if (mp__load_acq(&s->cj.armed) && s->cj.slot == (int32_t)i) continue;
            if (!mp__cas(&js->state, &v, SLOT_DEAD | (uint32_t)me)) continue;
            /* Still dead (its `taken` counts as finished): take over the counts, then go live
             * with done = taken, so the slot's share of the finished count does not move. */
            js->start = start;
            mp__store_rel(&js->done, mp__load_acq(&js->taken));
            uint32_t hw = mp__load_relaxed(&s->slots_hw);
            while (hw < i + 1 && !mp__cas_weak(&s->slots_hw, &hw, i + 1)) {
            }
            mp__store(&js->state, (uint64_t)(uint32_t)me);
            q->slot = (int)i;
            break;
        }
    }
    return q->slot;
}

/* Items finished: marked done by a live taker, taken by a gone one, discarded with a consumer that
 * died mid-stream, or task_done calls no taker was there to be credited with. */
static uint64_t finished(mp_queue *q)
{
    struct qshm *s = q->s;
    uint64_t n = mp__load_acq(&s->foreign_done) + mp__load_acq(&s->discarded);
    uint32_t hw = mp__load_acq(&s->slots_hw);
    for (uint32_t i = 0; i < hw && i < JSLOTS; i++) {
        struct jslot *js = &q->slots[i];
        n += (mp__load_acq(&js->state) & SLOT_DEAD) ? mp__load_acq(&js->taken)
                                                    : mp__load_acq(&js->done);
    }
    return n;
}

static uint64_t unfinished(mp_queue *q)
{
    uint64_t done = finished(q);
    uint64_t put = mp__load_acq(&q->s->msgs_put);
    return put > done ? put - done : 0;
}

ssize_t mp_queue_unfinished(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    if (!q->s->joinable) return MP_ETYPE;
    check_stream_producer((mp_queue *)q); /* as count(): shared state only */
    return (ssize_t)unfinished((mp_queue *)q);
}

ssize_t mp_queue_tasks_lost(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    if (!q->s->joinable) return MP_ETYPE;
    return (ssize_t)mp__load_acq(&q->s->tasks_lost);
}

/* Credits one item of slot i as done, if it has one taken and not done. */
static bool credit(mp_queue *q, int i)
{
    struct jslot *js = &q->slots[i];
    uint64_t d = mp__load_acq(&js->done);
    while (!(mp__load_acq(&js->state) & SLOT_DEAD) && d < mp__load_acq(&js->taken))
        if (mp__cas_weak(&js->done, &d, d + 1)) return true;
    return false;
}

int mp_queue_task_done(mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    struct qshm *s = q->s;
    if (!s->joinable) return MP_ETYPE;
    /* The caller's own items first; then any live taker's (the getter handed the item on). */
    int own = q->slot_pid == mp__getpid_cached() ? q->slot : -1;
    bool ok = own >= 0 && credit(q, own);
    uint32_t hw = mp__load_acq(&s->slots_hw);
    for (uint32_t i = 0; !ok && i < hw && i < JSLOTS; i++)
        ok = (int)i != own && credit(q, (int)i);
    if (!ok) {
        uint64_t fd = mp__load_acq(&s->foreign_done);
        for (;;) {
            if (finished(q) >= mp__load_acq(&s->msgs_put)) return MP_EOVERRELEASE;
            if (mp__cas_weak(&s->foreign_done, &fd, fd + 1)) break;
        }
    }
    if (unfinished(q) == 0) wake_join(s);
    return 0;
}

int mp_queue_join(mp_queue *q, double timeout)
{
    if (!valid(q)) return -EINVAL;
    struct qshm *s = q->s;
    if (!s->joinable) return MP_ETYPE;
    mp__deadline dl = mp__deadline_in(timeout);
    bool check = true;
    for (;;) {
        if (check) {
            /* A side whose owner died mid-commit holds counters that only its repair fixes; a
             * taker that died holds items that only reap_takers counts finished. */
            mp__queue_check_producer_alive(q);
            mp__queue_check_consumer_alive(q);
            reap_takers(q, false);
        }
        uint32_t seq = mp__load_acq(&s->join_seq);
        if (unfinished(q) == 0) return 0;
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
        mp__fetch_add(&s->join_waiters, 1);
        mp__deadline slice = mp__deadline_slice(&dl);
        int rc = unfinished(q) ? mp__futex_wait(&s->join_seq, seq, &slice) : 0;
        mp__fetch_sub(&s->join_waiters, 1);
        check = rc == -ETIMEDOUT;
    }
}
