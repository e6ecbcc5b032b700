/* SPDX-License-Identifier: MIT */
/* queue_wait.c - waiting for the other side of a queue: spinning while the peer runs on another
 * CPU, then sleeping on a futex in slices (queue_private.h). */
#include "queue_private.h"

/* How long this handle may spin for a peer last seen on *peer_cpu: 0 when the handle's switch
 * (mp_queue_set_spin) or the program-wide one is off, or the peer shares our CPU. */
static int64_t spin_ns(const mp_queue *q, int peer_cpu)
{
    if (!mp__load_relaxed(&q->spin)) return 0;
    return mp__spin_budget(peer_cpu);
}

static int64_t spin_budget(const mp_queue *q, _Atomic int32_t *peer_cpu)
{
    return spin_ns(q, mp__load_relaxed(peer_cpu));
}

#ifdef MP_TEST_HOOKS
int64_t mp__queue_spin_ns(const mp_queue *q, int peer_cpu)
{
    return spin_ns(q, peer_cpu);
}
#endif

/* Spin while *w == v for up to ns; true when it changed. */
static bool spin64(_Atomic uint64_t *w, uint64_t v, int64_t ns)
{
    if (ns <= 0) return false;
    int64_t until = mp__now_ns() + ns;
    for (;;) {
        /* a few pauses between reads: each read pulls the line away from its writer */
        for (int i = 0; i < 16; i++) {
            if (mp__load_acq(w) != v) return true;
            mp__cpu_relax();
            mp__cpu_relax();
            mp__cpu_relax();
            mp__cpu_relax();
        }
        if (mp__now_ns() >= until) return false;
    }
}

/* Sleeps on seq while *index == seen, in slices. waiting is the side's "someone sleeps" flag,
 * which tells the other side to wake us; it is set before the final re-check (seq_cst against
 * the other side's index store) so a wake-up cannot slip between check and sleep.
 * Returns 0 when it is time to re-check, -ETIMEDOUT when dl passed. */
static int sleep_on(struct qshm *s, _Atomic uint32_t *seq, _Atomic uint32_t *waiting,
                    _Atomic uint64_t *index, uint64_t seen, const mp__deadline *dl, bool ignore_dl)
{
    uint32_t sv = mp__load_acq(seq);
    mp__store_relaxed(waiting, 1);
    mp__fence();
    if (mp__load_acq(index) != seen || mp__load_acq(&s->closed)) {
        mp__store_relaxed(waiting, 0);
        return 0;
    }
    mp__deadline slice = mp__deadline_slice(ignore_dl ? NULL : dl);
    int rc = mp__futex_wait(seq, sv, &slice);
    mp__store_relaxed(waiting, 0);
    if (rc == -ETIMEDOUT && !ignore_dl && mp__deadline_left_ns(dl) == 0) return -ETIMEDOUT;
    return 0;
}

/* Producer (holding plock) waits for the consumer side to move: for the taken-message count when
 * it lacks a slot under maxsize (that counter moves last in a consumer's commit), otherwise for
 * the head. The value waited on is the one room() last read. */
int mp__queue_wait_space(mp_queue *q, bool for_slot, struct limit *lim)
{
    const mp__deadline *dl = deadline(lim);
    struct qshm *s = q->s;
    _Atomic uint64_t *index = for_slot ? &s->msgs_got : &s->head;
    uint64_t seen = for_slot ? s->cached_got : s->cached_head;
    int64_t left = mp__deadline_left_ns(dl);
    if (left == 0) return -ETIMEDOUT;
    int64_t spin = spin_budget(q, &s->cons_cpu);
    if (spin > left) spin = left;
    if (spin64(index, seen, spin)) return 0;
    return sleep_on(s, &s->space_seq, &s->space_waiting, index, seen, dl, false);
}

/* Consumer (holding clock) waits for the tail to move. In the middle of its own stream it waits
 * beyond its deadline (the rest of the message is on its way, bounded by the producer's own
 * timeout); inside any stream it checks each slice that the producer still lives, since a dead
 * one's stream is closed only by whoever repairs the producer side. */
int mp__queue_wait_data(mp_queue *q, struct limit *lim, int mode)
{
    const mp__deadline *dl = deadline(lim);
    struct qshm *s = q->s;
    bool own = mode == MP__QRD_OWN;
    uint64_t t = s->cached_tail;
    int64_t left = own ? INT64_MAX : mp__deadline_left_ns(dl);
    if (left == 0) return -ETIMEDOUT;
    int64_t spin = spin_budget(q, &s->prod_cpu);
    if (spin > left) spin = left;
    if (spin64(&s->tail, t, spin)) return 0;
    int rc = sleep_on(s, &s->data_seq, &s->data_waiting, &s->tail, t, dl, own);
    if (mode != MP__QRD_IDLE && mp__load_acq(&s->tail) == t) mp__queue_check_producer_alive(q);
    return rc;
}
