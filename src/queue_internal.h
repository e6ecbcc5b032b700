/* SPDX-License-Identifier: MIT */
/* queue_internal.h - what the queue shows its tests: crash points and repair counters. All of it
 * exists only in test builds (MP_TEST_HOOKS: the mproc_test_static library); the installed
 * libraries carry none of it. */
#ifndef MP_QUEUE_INTERNAL_H
#define MP_QUEUE_INTERNAL_H

#include <stdint.h>
#include "mproc/queue.h"

/* Points inside put/get where mp__queue_hook (when set) is called, so a test can kill the process
 * at an exact instant with a side's lock held. */
enum mp__queue_hook_point {
    MP__QH_PUT_WRITTEN = 1, /* record written, not yet published */
    MP__QH_PUT_JOURNAL,     /* journal armed and counters moved, tail not yet moved */
    MP__QH_PUT_CHUNK,       /* a non-final chunk of a stream was published */
    MP__QH_GET_READ,        /* a record was copied out, head not yet moved */
    MP__QH_GET_JOURNAL,     /* head moved, counters not yet */
    MP__QH_GET_CHUNK,       /* a non-final chunk of a stream was taken */
};

#ifdef MP_TEST_HOOKS
extern void (*mp__queue_hook)(int point);

struct mp__queue_stats {
    uint64_t prod_repairs; /* producer side taken over from a dead owner */
    uint64_t cons_repairs; /* consumer side taken over from a dead owner */
    uint64_t aborts;       /* ABORT records written for dead or timed-out producers */
    uint64_t discarded;    /* messages consumers discarded (aborted or orphaned streams) */
    uint64_t msgs_put, msgs_got;
};

int mp__queue_stats(mp_queue *q, struct mp__queue_stats *st);

/* The ring's bytes, for tests that scribble on it. */
unsigned char *mp__queue_ring(mp_queue *q, size_t *cap);
/* How long a wait through q spins for a peer last seen on peer_cpu (what put and get use):
 * 0 when q's switch or the program-wide one is off. Lets tests see the per-handle switch. */
int64_t mp__queue_spin_ns(const mp_queue *q, int peer_cpu);
#endif

#endif
