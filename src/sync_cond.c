/* SPDX-License-Identifier: MIT */
/* sync_cond.c - Condition (mproc/sync.h): a table of waiter slots next to its own RLock. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sync_private.h"

/* ---- Condition ----------------------------------------------------------------------------- */

/* Every waiter owns a slot in a table that follows the state: its thread id and a 32-bit word,
 * (ticket << 2) | OCCUPIED | NOTIFIED, which is also the futex it sleeps on. notify(n) marks the
 * n oldest waiting slots (lowest tickets) NOTIFIED and wakes each one; only a waiter whose slot
 * was marked returns 0, so notify(n) releases at most n waiters, a timeout or a signal never
 * passes for a notification, and a waiter that arrives after a notify cannot take it.
 *
 * Races are settled by compare-and-swap on the slot word: a waiter whose deadline passes frees
 * its slot only if it is still unmarked (otherwise the notify won and it returns 0). A notified
 * waiter keeps its slot marked until it holds the lock again, so a waiter killed in between
 * leaves a marked slot with a dead thread id behind; the surviving waiters wake every
 * MP__WAIT_SLICE_NS, find such slots, free them and give each of their wake-ups to the oldest
 * waiter still waiting. Registration and notify run under the condition's lock; the slice-end
 * clean-up and the slot frees do not need it. */
#define COND_OCC         2u
#define COND_NOTE        1u
#define COND_TICKET_MASK 0x3fffffffu
#define COND_MAP_SIZE    4096 /* mp_cond_new: one page, ~500 waiters */

typedef struct cond_slot {
    _Atomic uint32_t st;  /* 0: free; else (ticket << 2) | COND_OCC [| COND_NOTE]; futex word */
    _Atomic uint32_t tid; /* the waiting thread (valid while st != 0) */
} cond_slot;

typedef struct cond_state {
    _Atomic uint32_t magic;
    uint32_t kind;
    uint32_t cap;                 /* slots in the table, fixed at init */
    _Atomic uint32_t next_ticket; /* bumped under the lock by every wait */
    _Atomic uint32_t used;        /* occupied slots: lets notify skip the scan when 0 */
    _Atomic uint32_t hi;          /* slots [hi, cap) were never used: scans stop at hi */
    mp__lock_state lock;          /* the condition's own RLock, when it has one */
    cond_slot slots[];
} cond_state;

#define COND_SLOTS_OFF offsetof(cond_state, slots)
_Static_assert(COND_SLOTS_OFF == 72, "docs/sync.md and sync.h give the table as (size - 72) / 8");
_Static_assert(COND_SLOTS_OFF + 16 * sizeof(cond_slot) <= MP_SYNC_SHM_SIZE, "cond_state too big");

struct mp_cond {
    mp__sync_handle h; /* h.state: cond_state */
    mp_lock *lock;     /* the lock in use: &own or the caller's */
    mp_lock own;       /* handle on the state's own lock */
    mp_lock *adopted;  /* a handoff's copy of the caller's lock: freed with the condition */
};

static inline cond_state *cond_st(const mp_cond *c)
{
    return c->h.state;
}

static int cond_init(void *mem, size_t size, const void *arg)
{
    cond_state *s = mem;
    if (size > COND_MAP_SIZE) size = COND_MAP_SIZE;
    s->cap = (uint32_t)((size - COND_SLOTS_OFF) / sizeof(cond_slot));
    mp__store(&s->next_ticket, 0);
    mp__store(&s->used, 0);
    mp__store(&s->hi, 0);
    for (uint32_t i = 0; i < s->cap; i++) {
        mp__store(&s->slots[i].st, 0);
        mp__store(&s->slots[i].tid, 0);
    }
    int r = mp__lock_state_init(&s->lock, true);
    if (r) return r;
    mp__sync_publish(s, MP__K_COND);
    return 0;
}

/* The table's extent was fixed by the initialiser's size: the memory given to attach must hold
 * it, or this process would scan past its view. */
static int cond_check(const void *mem, size_t size, const void *arg)
{
    const cond_state *s = mem;
    return COND_SLOTS_OFF + (size_t)s->cap * sizeof(cond_slot) > size ? -EINVAL : 0;
}

static void cond_setup(mp__sync_handle *h, const void *arg)
{
    mp_cond *c = (mp_cond *)h;
    mp__lock_handle_embed(&c->own, &cond_st(c)->lock);
    c->lock = arg ? (mp_lock *)arg : &c->own;
}

static const sync_kind cond_kind = {
    sizeof(mp_cond), COND_MAP_SIZE, MP__K_COND, MP__K_COND, cond_init, cond_check, cond_setup,
};

int mp__cond_adopt(mp_cond **out, void *mem, size_t size, mp__shm_fd *m, mp_lock *ext)
{
    int r = mp__sync_adopt(out, &cond_kind, mem, size, ext, m);
    if (r == 0) (*out)->adopted = ext;
    return r;
}

const mp_lock *mp__cond_ext_lock(const mp_cond *c)
{
    return c->lock == &c->own ? NULL : c->lock;
}

int mp_cond_new(mp_cond **out, mp_lock *lock)
{
    if (lock && !lock_ok(lock)) return -EINVAL;
    return mp__sync_open(out, &cond_kind, SYNC_NEW, NULL, 0, lock);
}

int mp_cond_init_at(mp_cond **out, void *mem, size_t size)
{
    return mp__sync_open(out, &cond_kind, SYNC_INIT_AT, mem, size, NULL);
}

int mp_cond_attach_at(mp_cond **out, void *mem, size_t size)
{
    return mp__sync_open(out, &cond_kind, SYNC_ATTACH_AT, mem, size, NULL);
}

static inline bool cond_ok(const mp_cond *c)
{
    return c && handle_ok(&c->h) && lock_ok(c->lock);
}

mp_lock *mp_cond_lock(const mp_cond *c)
{
    return cond_ok(c) ? c->lock : NULL;
}

int mp_cond_acquire(mp_cond *c, double timeout)
{
    if (!cond_ok(c)) return -EINVAL;
    return mp_lock_acquire(c->lock, timeout);
}

int mp_cond_release(mp_cond *c)
{
    if (!cond_ok(c)) return -EINVAL;
    return mp_lock_release(c->lock);
}

/* True when thread `tid` is gone (exited, or a zombie that will never run again). Thread ids,
 * not pids, because threads of one process wait too; /proc/TID exists for any thread of the pid
 * namespace. Without /proc only kill(tid, 0)'s ESRCH counts (a zombie then looks alive, which
 * only delays the hand-over until it is reaped). */
static bool tid_dead(uint32_t tid)
{
    if (tid == 0) return false;
    char path[32], buf[256];
    snprintf(path, sizeof path, "/proc/%u/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) return false;
        if (access("/proc/self/stat", F_OK) == 0) return true; /* /proc works: no such thread */
        return kill((pid_t)tid, 0) < 0 && errno == ESRCH;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return n == 0 || errno == ESRCH; /* the thread went between open and read */
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X' || p[2] == 'x');
}

/* Mark up to n slots NOTIFIED that were waiting before ticket `limit` was handed out, oldest
 * first, and wake each. Returns how many. The marked word carries `limit` in place of the
 * ticket: should the waiter die before it returns, its wake-up may pass only to a waiter that
 * was already waiting when the notify was made, never to one that came later. */
static int cond_grant(cond_state *s, int n, uint32_t limit)
{
    int done = 0;
    uint32_t note = ((limit & COND_TICKET_MASK) << 2) | COND_OCC | COND_NOTE;
    while (done < n && mp__load(&s->used) > 0) {
        /* Ages relative to one reading of next_ticket (larger is older). */
        uint32_t next = mp__load(&s->next_ticket);
        uint32_t lim_age = (next - limit) & COND_TICKET_MASK;
        int best = -1;
        uint32_t best_st = 0, best_age = 0;
        for (uint32_t i = 0, end = mp__load(&s->hi); i < end; i++) {
            uint32_t st = mp__load_relaxed(&s->slots[i].st);
            if (!st || (st & COND_NOTE)) continue;
            uint32_t age = (next - (st >> 2)) & COND_TICKET_MASK;
            if (age <= lim_age) continue; /* came after the notify */
            if (best < 0 || age > best_age) best = (int)i, best_st = st, best_age = age;
        }
        if (best < 0) break;
        cond_slot *sl = &s->slots[best];
        if (mp__cas(&sl->st, &best_st, note)) {
            mp__futex_wake(&sl->st, 1);
            done++;
        }
        /* else the waiter timed out or was handed a wake-up meanwhile: look again */
    }
    return done;
}

/* notify_all (caller holds the lock, so every registered waiter came before `limit`): mark
 * every waiting slot in one pass. */
static void cond_grant_all(cond_state *s, uint32_t limit)
{
    if (mp__load(&s->used) == 0) return;
    uint32_t note = ((limit & COND_TICKET_MASK) << 2) | COND_OCC | COND_NOTE;
    for (uint32_t i = 0, end = mp__load(&s->hi); i < end; i++) {
        cond_slot *sl = &s->slots[i];
        uint32_t st = mp__load(&sl->st);
        while (st && !(st & COND_NOTE))
            if (mp__cas_weak(&sl->st, &st, note)) {
                mp__futex_wake(&sl->st, 1);
                break;
            }
    }
}

static void cond_slot_free(cond_state *s, cond_slot *sl)
{
    mp__store(&sl->st, 0);
    mp__fetch_sub(&s->used, 1);
}

/* Free the slots of waiters that died, except `self`: a notified one's wake-up goes on to the
 * oldest live waiter. With `all`, waiting (not notified) slots of dead waiters are freed too
 * (the table is full); otherwise they are left for a notify to reach, which then hands the
 * wake-up on here. */
static void cond_reap(cond_state *s, int self, bool all)
{
    for (uint32_t i = 0, end = mp__load(&s->hi); i < end; i++) {
        if ((int)i == self) continue;
        cond_slot *sl = &s->slots[i];
        uint32_t st = mp__load(&sl->st);
        if (!st || (!(st & COND_NOTE) && !all)) continue;
        if (!tid_dead(mp__load(&sl->tid))) continue;
        /* The ticket in st makes the swap fail if the slot was freed and taken again. */
        if (!mp__cas(&sl->st, &st, 0)) continue;
        mp__fetch_sub(&s->used, 1);
        if (st & COND_NOTE) cond_grant(s, 1, st >> 2);
    }
}

/* Take a slot (caller holds the lock). Returns its index or MP_EFULL. */
static int cond_register(cond_state *s)
{
    uint32_t ticket = mp__fetch_add(&s->next_ticket, 1) & COND_TICKET_MASK;
    uint32_t want = (ticket << 2) | COND_OCC;
    uint32_t tid = (uint32_t)mp__tid();
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < s->cap; i++) {
            cond_slot *sl = &s->slots[i];
            uint32_t st = 0;
            if (mp__load_relaxed(&sl->st) != 0) continue;
            /* Only registrants (serialised by the lock) fill free slots, so the tid written
             * first belongs to whoever wins the swap below. */
            mp__store(&sl->tid, tid);
            if (mp__cas(&sl->st, &st, want)) {
                mp__fetch_add(&s->used, 1);
                /* Before the lock is released, so a notify (under the lock) scans this far. */
                if (mp__load(&s->hi) <= i) mp__store(&s->hi, i + 1);
                return (int)i;
            }
        }
        cond_reap(s, -1, true); /* full: reclaim the slots of dead waiters and look again */
    }
    return MP_EFULL;
}

/* Sleep in slot i until it is notified (0) or the deadline passes with it unmarked (-ETIMEDOUT;
 * the slot is then freed). The lock is not held. */
static int cond_sleep(cond_state *s, int i, const mp__deadline *dl)
{
    cond_slot *sl = &s->slots[i];
    for (;;) {
        uint32_t st = mp__load(&sl->st);
        if (st & COND_NOTE) return 0;
        if (mp__deadline_left_ns(dl) == 0) {
            if (mp__cas(&sl->st, &st, 0)) {
                mp__fetch_sub(&s->used, 1);
                return -ETIMEDOUT;
            }
            continue; /* notified at the last moment: the notify wins */
        }
        mp__deadline slice = mp__deadline_slice(dl);
        if (mp__futex_wait(&sl->st, st, &slice) == -ETIMEDOUT) cond_reap(s, i, false);
    }
}

static int cond_wait_dl(mp_cond *c, const mp__deadline *dl)
{
    cond_state *s = cond_st(c);
    mp__lock_state *ls = lock_st(c->lock);
    if (!lock_state_owned(ls)) return MP_ENOTOWNER;
    /* Registered under the lock: a notify made after our release sees the slot. */
    int i = cond_register(s);
    if (i < 0) return i;
    int levels = mp__lock_release_all(ls);
    int r = cond_sleep(s, i, dl);
    int rl = mp__lock_reacquire(ls, levels);
    /* A notified waiter gives its slot back only now that it holds the lock again: killed any
     * earlier, it leaves the marked slot for the others to find and pass on. */
    if (r == 0) cond_slot_free(s, &s->slots[i]);
    return rl ? rl : r; /* a dead holder matters more than the timeout: the data needs repair */
}

int mp_cond_wait(mp_cond *c, double timeout)
{
    if (!cond_ok(c)) return -EINVAL;
    /* A poll (timeout 0 or an expired one) still gives the lock away for an instant. */
    mp__deadline dl = mp__deadline_in(timeout);
    return cond_wait_dl(c, &dl);
}

int mp_cond_wait_for(mp_cond *c, bool (*pred)(void *arg), void *arg, double timeout)
{
    if (!cond_ok(c) || !pred) return -EINVAL;
    if (!lock_state_owned(lock_st(c->lock))) return MP_ENOTOWNER;
    mp__deadline dl = mp__deadline_in(timeout);
    int dead = 0;
    while (!pred(arg)) {
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
        int r = cond_wait_dl(c, &dl);
        if (r == -EOWNERDEAD)
            dead = r;
        else if (r == -ETIMEDOUT)
            return pred(arg) ? dead : -ETIMEDOUT;
        else if (r)
            return r;
    }
    return dead;
}

static int cond_notify(mp_cond *c, int n)
{
    if (!cond_ok(c) || n < 1) return -EINVAL;
    if (!lock_state_owned(lock_st(c->lock))) return MP_ENOTOWNER;
    /* Under the lock no waiter registers meanwhile: every registered one came before. */
    uint32_t limit = mp__load(&cond_st(c)->next_ticket);
    if (n == INT32_MAX)
        cond_grant_all(cond_st(c), limit);
    else
        cond_grant(cond_st(c), n, limit);
    return 0;
}

int mp_cond_notify(mp_cond *c, int n)
{
    return cond_notify(c, n);
}

int mp_cond_notify_all(mp_cond *c)
{
    return cond_notify(c, INT32_MAX);
}

int mp_cond_free(mp_cond **pp)
{
    if (pp && cond_ok(*pp) && ((*pp)->h.flags & MP__H_OWNS_MAP) && (*pp)->lock == &(*pp)->own &&
        lock_state_owned(&cond_st(*pp)->lock))
        return -EBUSY; /* as mp_lock_free */
    mp_lock *adopted = pp && cond_ok(*pp) ? (*pp)->adopted : NULL;
    if (adopted && mp__lock_owned(adopted)) return -EBUSY;
    int r = mp__sync_free(pp);
    if (r == 0 && adopted) mp_lock_free(&adopted);
    return r;
}
