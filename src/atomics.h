/* SPDX-License-Identifier: MIT */
/* atomics.h - the one way mproc's sources write atomic operations.
 *
 * Every operation names its memory order in its suffix, so a reader sees the ordering argument
 * at the call:
 *     _relaxed  no ordering: counters, hints, a word only this thread writes
 *     _acq      load-acquire: what the writer published before its release store is visible
 *     _rel      store-release: publishes everything written before it
 *     (none)    sequentially consistent: the Dekker pairs ("waiters++ then check the word" against
 *               "change the word then read waiters") need it on both sides
 * The operands are pointers to _Atomic objects (C11 <stdatomic.h> underneath, which both GCC and
 * Clang accept). Plain memory shared with other processes (an array element of a caller's type)
 * is reached through mp__as_atomic(type, ptr), which views it as an _Atomic object of the same
 * size and alignment (true for the lock-free integer widths mproc uses).
 */
#ifndef MP_ATOMICS_H
#define MP_ATOMICS_H

#include <stdatomic.h>
#include <stdbool.h>

/* View plain memory as an _Atomic `type` (naturally aligned, lock-free width). */
#define mp__as_atomic(type, p) ((_Atomic type *)(void *)(p))

#define mp__load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define mp__load_acq(p)     atomic_load_explicit((p), memory_order_acquire)
#define mp__load(p)         atomic_load_explicit((p), memory_order_seq_cst)

#define mp__store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define mp__store_rel(p, v)     atomic_store_explicit((p), (v), memory_order_release)
#define mp__store(p, v)         atomic_store_explicit((p), (v), memory_order_seq_cst)

#define mp__fetch_add(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define mp__fetch_sub(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define mp__fetch_and(p, v) atomic_fetch_and_explicit((p), (v), memory_order_seq_cst)

/* Swap in v and return the old value. */
#define mp__exchange(p, v) atomic_exchange_explicit((p), (v), memory_order_seq_cst)

/* A full fence: the Dekker pairs where the flag and the word are different objects. */
#define mp__fence() atomic_thread_fence(memory_order_seq_cst)

/* Compare-and-swap: *p == *expected ? (*p = desired, true) : (*expected = *p, false). _weak may
 * fail spuriously (use it in retry loops); _acq orders only a successful swap (failure relaxed). */
#define mp__cas(p, expected, desired)                                                              \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_seq_cst,      \
                                            memory_order_seq_cst)
#define mp__cas_weak(p, expected, desired)                                                         \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_seq_cst,        \
                                          memory_order_seq_cst)
#define mp__cas_weak_acq(p, expected, desired)                                                     \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_acquire,        \
                                          memory_order_relaxed)

#endif
