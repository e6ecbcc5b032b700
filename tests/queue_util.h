/* SPDX-License-Identifier: MIT */
/* queue_util.h - what the queue tests share: a byte pattern that shows tears, self-checking
 * messages (header + checksummed body of a random size) and the bookkeeping of which arrived. */
#ifndef MP_TEST_QUEUE_UTIL_H
#define MP_TEST_QUEUE_UTIL_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "mp_test.h"

/* Fills buf with a pattern that encodes (id, seq) at every byte, so any tear shows. */
static inline void pattern(unsigned char *buf, size_t len, unsigned id, unsigned seq)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(id * 31u + seq * 7u + i * 13u);
}

static inline int pattern_ok(const unsigned char *buf, size_t len, unsigned id, unsigned seq)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (unsigned char)(id * 31u + seq * 7u + i * 13u)) return 0;
    return 1;
}

struct msg_hdr {
    uint32_t prod, seq, len, sum;
};

static inline uint32_t msg_sum(const unsigned char *body, size_t len, uint32_t prod, uint32_t seq)
{
    return mp_test_fnv(body, len, 2166136261u ^ prod ^ (seq << 11));
}

/* Writes message (prod, seq) into buf and returns its size. The body's size is random: below
 * 48 bytes with probability pct_small %, below 600 up to pct_mid %, else big..2*big-1 (streamed
 * when big exceeds the ring). */
static inline size_t make_msg_sized(unsigned char *buf, uint32_t prod, uint32_t seq, uint64_t *rng,
                                    unsigned pct_small, unsigned pct_mid, size_t big)
{
    uint64_t r = mp_test_rng_next(rng);
    size_t len = r % 100 < pct_small ? (r >> 16) % 48
                 : r % 100 < pct_mid ? (r >> 16) % 600
                                     : big + (r >> 16) % big;
    struct msg_hdr h = {prod, seq, (uint32_t)len, 0};
    for (size_t i = 0; i < len; i++)
        buf[sizeof h + i] = (unsigned char)(prod * 7 + seq * 13 + i);
    h.sum = msg_sum(buf + sizeof h, len, prod, seq);
    memcpy(buf, &h, sizeof h);
    return sizeof h + len;
}

/* Records a received message of n bytes: 0 when fine, else an error number (1 short, 2 bad
 * header, 3 bad checksum, 4 duplicate). seen is a max_prod x max_seq array of counters,
 * last_seen the highest seq received per producer. */
static inline int record_msg(_Atomic uint8_t *seen, _Atomic int32_t *last_seen, uint32_t max_prod,
                             uint32_t max_seq, const unsigned char *buf, size_t n)
{
    struct msg_hdr h;
    if (n < sizeof h) return 1;
    memcpy(&h, buf, sizeof h);
    if (h.prod >= max_prod || h.seq >= max_seq || h.len != n - sizeof h) return 2;
    if (msg_sum(buf + sizeof h, h.len, h.prod, h.seq) != h.sum) return 3;
    if (atomic_fetch_add(&seen[(size_t)h.prod * max_seq + h.seq], 1) != 0) return 4;
    int32_t prev = atomic_load(&last_seen[h.prod]);
    while ((int32_t)h.seq > prev &&
           !atomic_compare_exchange_weak(&last_seen[h.prod], &prev, (int32_t)h.seq)) {
    }
    return 0;
}

/* Waits (yielding, bounded) until a child sets *flag: it is then running its loop. */
static inline void wait_started(_Atomic uint32_t *flag)
{
    for (int i = 0; i < 200000 && !atomic_load(flag); i++)
        sched_yield();
}

#endif
