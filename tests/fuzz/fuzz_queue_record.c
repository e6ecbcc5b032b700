/* SPDX-License-Identifier: MIT */
/* fuzz_queue_record.c - libFuzzer target for the queue's record decoder (src/queue_record.h).
 *
 * The input is a ring: its first 8 bytes give the start position (any 16-aligned value, so
 * wrap-around is exercised), the rest is the ring's content, all of it taken as published. The
 * target decodes records the way a consumer does, including the stream state machine and the
 * wrapping payload copy, until the ring is exhausted or the decoder says MP_ECORRUPT. It must
 * never crash, read out of bounds or loop forever (each valid record consumes >= 16 bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8 + 64) return 0;
    uint64_t start;
    memcpy(&start, data, 8);
    start &= ~(uint64_t)15;
    uint64_t cap = (size - 8) & ~(uint64_t)63;
    if (cap > (1u << 20)) cap = 1u << 20;
    const unsigned char *ring = data + 8;
    unsigned char *dst = malloc(cap);
    if (!dst) return 0;

    mp__qrd st = {MP__QRD_IDLE, 0, 0};
    uint64_t pos = start, end = start + cap; /* the whole ring is published */
    while (pos < end) {
        mp__qrec h;
        memcpy(&h, ring + pos % cap, sizeof h);
        int64_t sz = mp__qrec_validate(&h, end - pos);
        if (sz < 0) break;
        if (sz < 16 || (uint64_t)sz > end - pos) abort(); /* the decoder's own contract */
        int act = mp__qrd_step(&st, &h);
        if (act < 0) break;
        if (h.chunk > cap - 16) abort();
        if (act != MP__QACT_SKIP && act != MP__QACT_SKIP_END && act != MP__QACT_ABORTED)
            mp__ring_read(ring, cap, pos + MP__QREC_HDR, dst, h.chunk);
        pos += (uint64_t)sz;
    }
    free(dst);
    return 0;
}
