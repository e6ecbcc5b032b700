/* SPDX-License-Identifier: MIT */
/* sync_barrier.c - Barrier (mproc/sync.h): counters under a robust internal mutex. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "sync_private.h"

_Static_assert(sizeof(mp__barrier_state) <= MP_SYNC_SHM_SIZE, "barrier_state too big");

/* ---- Barrier ------------------------------------------------------------------------------- */

/* Counters change under the robust internal mutex m; waiters read gen, broken and the outcome
 * records without it (acquire loads against release stores made under m). The action runs in
 * the last arriving party while it holds m, before the generation moves: nobody is released
 * before it has finished, and a party that dies inside it leaves m to the kernel's robust list,
 * whose next locker breaks the barrier. While it runs (`acting`), the waiters sleep in slices
 * and probe m between them, so such a death wakes them even when no one else comes along. */

struct mp_barrier {
    mp__sync_handle h; /* h.state: mp__barrier_state */
    int (*action)(void *arg);
    void *action_arg;
};

static inline mp__barrier_state *bar_st(const mp_barrier *b)
{
    return b->h.state;
}

static void bar_wake(mp__barrier_state *s)
{
    mp__fetch_add(&s->seq, 1);
    mp__futex_wake(&s->seq, INT32_MAX);
}

/* Record that the current generation failed (caller holds m; once per generation). The record
 * is written before the count that publishes it. */
static void bar_record_failure(mp__barrier_state *s)
{
    uint32_t k = mp__load_relaxed(&s->fails);
    mp__store_rel(&s->fail_gen[k % MP__BAR_RING], mp__load_relaxed(&s->gen));
    mp__store_rel(&s->fails, k + 1);
}

/* Record that the current generation was released (caller holds m). */
static void bar_record_release(mp__barrier_state *s)
{
    uint32_t k = mp__load_relaxed(&s->releases);
    mp__store_rel(&s->rel_gen[k % MP__BAR_RING], mp__load_relaxed(&s->gen));
    mp__store_rel(&s->releases, k + 1);
}

/* Break the current generation (caller holds m): its waiters get MP_EBROKEN. */
static void bar_break_locked(mp__barrier_state *s)
{
    if (!mp__load_relaxed(&s->broken)) bar_record_failure(s);
    mp__store_rel(&s->broken, 1);
    mp__store_rel(&s->acting, 0);
    s->count = 0;
    bar_wake(s);
}

/* Start the next generation (caller holds m). */
static void bar_next_gen(mp__barrier_state *s)
{
    s->count = 0;
    mp__store_rel(&s->gen, mp__load_relaxed(&s->gen) + 1);
}

/* Lock the internal mutex, in slices (see lock_state_acquire in sync_lock.c). A party that died
 * holding it may have left the counters half updated (or died in the action): the barrier is
 * then declared broken rather than trusted. Returns 0 (locked) or a negative errno (not locked). */
static int bar_lock(mp__barrier_state *s, const mp__deadline *dl)
{
    int r = mp__robust_mutex_lock(&s->m, dl);
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&s->m);
        bar_break_locked(s);
        return 0;
    }
    return -r;
}

static int bar_lock_forever(mp__barrier_state *s)
{
    return bar_lock(s, NULL);
}

typedef struct bar_args {
    unsigned parties;
    const mp_barrier_options *o;
} bar_args;

static int bar_init(void *mem, size_t size, const void *arg)
{
    const bar_args *a = arg;
    mp__barrier_state *s = mem;
    int r = mp__robust_mutex_init(&s->m, PTHREAD_MUTEX_NORMAL);
    if (r) return r;
    s->parties = a->parties;
    s->count = 0;
    s->has_action = a->o->action != NULL;
    s->timeout = a->o->timeout;
    mp__store(&s->gen, 0);
    mp__store(&s->broken, 0);
    mp__store(&s->fails, 0);
    mp__store(&s->releases, 0);
    mp__store(&s->acting, 0);
    for (int i = 0; i < MP__BAR_RING; i++) {
        mp__store(&s->fail_gen[i], 0);
        mp__store(&s->rel_gen[i], 0);
    }
    mp__store(&s->seq, 0);
    mp__sync_publish(s, MP__K_BARRIER);
    return 0;
}

/* A barrier made with an action runs it in whichever party arrives last: every handle on it must
 * carry one (a function pointer means nothing in another process, so it is not in the state). */
static int bar_check(const void *mem, size_t size, const void *arg)
{
    const mp__barrier_state *s = mem;
    const bar_args *a = arg;
    return s->has_action && !a->o->action ? -EINVAL : 0;
}

static void bar_setup(mp__sync_handle *h, const void *arg)
{
    const bar_args *a = arg;
    mp_barrier *b = (mp_barrier *)h;
    b->action = a->o->action;
    b->action_arg = a->o->action_arg;
}

static const mp_barrier_options bar_defaults_adopt = MP_BARRIER_OPTIONS_INIT;

static const sync_kind bar_kind = {
    sizeof(mp_barrier), MP_SYNC_SHM_SIZE, MP__K_BARRIER, MP__K_BARRIER,
    bar_init,           bar_check,        bar_setup,
};

/* An adopted barrier carries no action: export refuses a barrier made with one. */
int mp__barrier_adopt(mp_barrier **out, void *mem, size_t size, mp__shm_fd *m)
{
    bar_args a = {0, &bar_defaults_adopt};
    return mp__sync_adopt(out, &bar_kind, mem, size, &a, m);
}

void mp_barrier_options_init(mp_barrier_options *o)
{
    if (o) *o = (mp_barrier_options)MP_BARRIER_OPTIONS_INIT;
}

static const mp_barrier_options bar_defaults = MP_BARRIER_OPTIONS_INIT;

static bool bar_args_ok(unsigned parties, const mp_barrier_options *o)
{
    /* NaN would be a deadline already passed: a default that can never be waited with. */
    return parties >= 1 && parties <= INT32_MAX && !isnan(o->timeout);
}

int mp_barrier_new_opts(mp_barrier **out, unsigned parties, const mp_barrier_options *o)
{
    bar_args a = {parties, o ? o : &bar_defaults};
    if (!bar_args_ok(parties, a.o)) return -EINVAL;
    return mp__sync_open(out, &bar_kind, SYNC_NEW, NULL, 0, &a);
}

int mp_barrier_new(mp_barrier **out, unsigned parties)
{
    return mp_barrier_new_opts(out, parties, NULL);
}

int mp_barrier_init_at_opts(mp_barrier **out, void *mem, size_t size, unsigned parties,
                            const mp_barrier_options *o)
{
    bar_args a = {parties, o ? o : &bar_defaults};
    if (!bar_args_ok(parties, a.o)) return -EINVAL;
    return mp__sync_open(out, &bar_kind, SYNC_INIT_AT, mem, size, &a);
}

int mp_barrier_init_at(mp_barrier **out, void *mem, size_t size, unsigned parties)
{
    return mp_barrier_init_at_opts(out, mem, size, parties, NULL);
}

int mp_barrier_attach_at_opts(mp_barrier **out, void *mem, size_t size, const mp_barrier_options *o)
{
    bar_args a = {0, o ? o : &bar_defaults};
    return mp__sync_open(out, &bar_kind, SYNC_ATTACH_AT, mem, size, &a);
}

int mp_barrier_attach_at(mp_barrier **out, void *mem, size_t size)
{
    return mp_barrier_attach_at_opts(out, mem, size, NULL);
}

static inline bool bar_ok(const mp_barrier *b)
{
    return b && handle_ok(&b->h);
}

/* How generation `gen`, which this caller entered when the failure and release counts were f
 * and r, ended (gen has moved on). Each record is read before the count that says whether it
 * was overwritten meanwhile. */
static int bar_outcome(mp__barrier_state *s, uint32_t gen, uint32_t f, uint32_t r, int index)
{
    if (mp__load_acq(&s->fails) == f) return index; /* no generation failed since we arrived */
    uint32_t g = mp__load_acq(&s->fail_gen[f % MP__BAR_RING]);
    if (mp__load_acq(&s->fails) - f <= MP__BAR_RING) return g == gen ? MP_EBROKEN : index;
    g = mp__load_acq(&s->rel_gen[r % MP__BAR_RING]);
    uint32_t rel = mp__load_acq(&s->releases);
    if (rel != r && rel - r <= MP__BAR_RING) return g == gen ? index : MP_EBROKEN;
    /* Both records were overwritten: more than MP__BAR_RING generations failed and more than
     * MP__BAR_RING were released while this caller slept without looking. Broken is the answer
     * that never claims a release that may not have happened. */
    return MP_EBROKEN;
}

/* The last party: run the action (holding m), then release the generation or, when the action
 * failed, break it. Returns the caller's result; m is unlocked on return. */
static int bar_release(mp_barrier *b, mp__barrier_state *s, int index)
{
    if (b->action) {
        /* Waiters asleep without a limit switch to probing sleeps (see the section comment). */
        mp__store_rel(&s->acting, 1);
        bar_wake(s);
        int a = b->action(b->action_arg);
        mp__store_rel(&s->acting, 0);
        if (a != 0) { /* Python: the action's exception breaks the barrier */
            bar_break_locked(s);
            pthread_mutex_unlock(&s->m);
            return a < 0 ? a : MP_EBROKEN;
        }
    }
    bar_record_release(s);
    bar_next_gen(s);
    pthread_mutex_unlock(&s->m);
    bar_wake(s);
    return index;
}

/* While an action runs: has its party died inside it? Probing m breaks the barrier if so
 * (bar_lock's EOWNERDEAD path); a busy m means the action is still running. */
static int bar_probe(mp__barrier_state *s)
{
    int r = mp__robust_mutex_trylock(&s->m);
    if (r == EBUSY) return 0;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&s->m);
        bar_break_locked(s);
        r = 0;
    }
    if (r == 0) pthread_mutex_unlock(&s->m);
    return -r;
}

int mp_barrier_wait(mp_barrier *b, double timeout)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    mp__deadline dl = mp__deadline_in(timeout);
    /* The internal mutex is held for a few instructions at a time (and robust), so it is taken
     * without a limit: a timeout here would mean "did not even arrive", not "broke the barrier". */
    int r = bar_lock_forever(s);
    if (r) return r;
    if (mp__load_relaxed(&s->broken)) {
        pthread_mutex_unlock(&s->m);
        return MP_EBROKEN;
    }
    int index = (int)s->count++;
    uint32_t gen = mp__load_relaxed(&s->gen), fails = mp__load_relaxed(&s->fails),
             releases = mp__load_relaxed(&s->releases);
    if (s->count == s->parties) return bar_release(b, s, index);
    pthread_mutex_unlock(&s->m);
    for (;;) {
        uint32_t seen = mp__load(&s->seq);
        if (mp__load_acq(&s->gen) != gen) return bar_outcome(s, gen, fails, releases, index);
        if (mp__load_acq(&s->broken)) return MP_EBROKEN;
        if (mp__load_acq(&s->acting)) {
            mp__deadline slice = mp__deadline_slice(&dl);
            if (mp__futex_wait(&s->seq, seen, &slice) != -ETIMEDOUT) continue;
            if (mp__deadline_left_ns(&dl) > 0) {
                if ((r = bar_probe(s))) return r;
                continue;
            }
        } else if (mp__futex_wait(&s->seq, seen, &dl) != -ETIMEDOUT) {
            continue;
        }
        /* Timed out: unless the barrier was released meanwhile, break it for everyone. (While
         * an action runs this waits for it, as Python's waiter waits for the condition's lock.) */
        if ((r = bar_lock_forever(s))) return r;
        if (mp__load_relaxed(&s->gen) != gen)
            r = bar_outcome(s, gen, fails, releases, index);
        else if (mp__load_relaxed(&s->broken))
            r = MP_EBROKEN;
        else {
            bar_break_locked(s);
            r = -ETIMEDOUT;
        }
        pthread_mutex_unlock(&s->m);
        return r;
    }
}

int mp_barrier_wait_default(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    return mp_barrier_wait(b, bar_st(b)->timeout);
}

int mp_barrier_abort(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    int r = bar_lock_forever(s);
    if (r) return r;
    if (!mp__load_relaxed(&s->broken)) bar_break_locked(s);
    pthread_mutex_unlock(&s->m);
    return 0;
}

int mp_barrier_reset(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    int r = bar_lock_forever(s);
    if (r) return r;
    /* Whoever waits in the current generation fails; the next generation starts clean. */
    if (!mp__load_relaxed(&s->broken)) bar_record_failure(s);
    bar_next_gen(s);
    mp__store_rel(&s->broken, 0);
    bar_wake(s);
    pthread_mutex_unlock(&s->m);
    return 0;
}

int mp_barrier_parties(const mp_barrier *b)
{
    return bar_ok(b) ? (int)bar_st(b)->parties : -EINVAL;
}

int mp_barrier_n_waiting(const mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    /* count is guarded by the mutex (an arrival updates it and may reset it to 0 in one step). */
    int r = bar_lock_forever(s);
    if (r) return r;
    int n = mp__load_relaxed(&s->broken) ? 0 : (int)s->count;
    pthread_mutex_unlock(&s->m);
    return n;
}

int mp_barrier_is_broken(const mp_barrier *b)
{
    return bar_ok(b) ? (int)mp__load_acq(&bar_st(b)->broken) : -EINVAL;
}

bool mp__barrier_has_action(const mp_barrier *b)
{
    return b->action != NULL || bar_st(b)->has_action;
}

int mp_barrier_free(mp_barrier **pp)
{
    return mp__sync_free(pp);
}

#ifdef MP_TEST_HOOKS
pthread_mutex_t *mp__barrier_mutex(mp_barrier *b)
{
    return bar_ok(b) ? &bar_st(b)->m : NULL;
}

mp__barrier_state *mp__barrier_state_of(mp_barrier *b)
{
    return bar_ok(b) ? bar_st(b) : NULL;
}
#endif
