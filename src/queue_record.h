/* SPDX-License-Identifier: MIT */
/* queue_record.h - the record format of mproc's queue ring, and its decoder.
 *
 * The ring is a byte stream addressed by monotonic 64-bit positions (offset = pos % cap). Every
 * record starts at a multiple of 16 with a 16-byte header, followed by its payload padded to 16;
 * cap is a multiple of 64, so a header never wraps (a payload may). One message is either one MSG
 * record, or a stream: BEGIN, CONT..., then END (complete) or ABORT (its producer gave up or died;
 * the message is discarded). A record is published only when the producer moves the tail past
 * it, so a decoder sees only whole records; anything that fails validation is MP_ECORRUPT.
 *
 * Everything here is pure (no shared state, no syscalls) so that the fuzz target
 * tests/fuzz/fuzz_queue_record.c can feed it arbitrary ring contents.
 */
#ifndef MP_QUEUE_RECORD_H
#define MP_QUEUE_RECORD_H

#include <stdint.h>
#include <string.h>
#include "mproc/error.h"
#include "mproc/queue.h"

#define MP__QREC_HDR   16u
#define MP__QREC_MAGIC 0xA7u

enum mp__qrec_type {
    MP__QREC_MSG = 1, /* a whole message: chunk bytes, aux == chunk */
    MP__QREC_BEGIN,   /* first chunk of a streamed message: aux = total length > chunk */
    MP__QREC_CONT,    /* middle chunk: aux = its offset in the message */
    MP__QREC_END,     /* last chunk: aux = its offset; offset + chunk == total */
    MP__QREC_ABORT,   /* the open stream is discarded: no payload, aux 0 */
};

typedef struct mp__qrec {
    uint32_t tag; /* magic << 24 | type << 16 | check16 */
    uint32_t chunk;
    uint64_t aux;
} mp__qrec;

/* A 16-bit check over the header fields: catches stray bytes, not malice. */
static inline uint32_t mp__qrec_check(uint32_t type, uint32_t chunk, uint64_t aux)
{
    uint64_t x = (((uint64_t)chunk << 8) | type) * 0x9E3779B97F4A7C15ull;
    x ^= aux * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (uint32_t)(x & 0xffffu);
}

static inline mp__qrec mp__qrec_make(uint32_t type, uint32_t chunk, uint64_t aux)
{
    mp__qrec h;
    h.tag = (MP__QREC_MAGIC << 24) | (type << 16) | mp__qrec_check(type, chunk, aux);
    h.chunk = chunk;
    h.aux = aux;
    return h;
}

static inline uint32_t mp__qrec_type(const mp__qrec *h)
{
    return (h->tag >> 16) & 0xffu;
}

/* Bytes a record with `chunk` payload bytes takes in the ring. */
static inline uint64_t mp__qrec_size(uint64_t chunk)
{
    return MP__QREC_HDR + ((chunk + 15u) & ~(uint64_t)15u);
}

/* Validates header h found at a record boundary, with `avail` published bytes from there on.
 * Returns the record's size in the ring (> 0), or MP_ECORRUPT. */
static inline int64_t mp__qrec_validate(const mp__qrec *h, uint64_t avail)
{
    uint32_t type = mp__qrec_type(h);
    if ((h->tag >> 24) != MP__QREC_MAGIC || type < MP__QREC_MSG || type > MP__QREC_ABORT)
        return MP_ECORRUPT;
    if ((h->tag & 0xffffu) != mp__qrec_check(type, h->chunk, h->aux)) return MP_ECORRUPT;
    uint64_t size = mp__qrec_size(h->chunk);
    if (size > avail) return MP_ECORRUPT;
    const uint64_t max = MP_QUEUE_MSG_MAX;
    switch (type) {
    case MP__QREC_MSG:
        if (h->aux != h->chunk) return MP_ECORRUPT;
        break;
    case MP__QREC_BEGIN:
        if (h->chunk == 0 || h->aux <= h->chunk || h->aux > max) return MP_ECORRUPT;
        break;
    case MP__QREC_CONT:
    case MP__QREC_END:
        if (h->chunk == 0 || h->aux == 0 || h->aux > max || h->chunk > max - h->aux)
            return MP_ECORRUPT;
        break;
    default: /* ABORT */
        if (h->chunk != 0 || h->aux != 0) return MP_ECORRUPT;
        break;
    }
    return (int64_t)size;
}

/* The consumer's view of the stream it is in. Kept per get call, not in shared memory: a consumer
 * that starts idle and meets CONT/END/ABORT knows that a dead consumer took the message's start,
 * and discards the rest. */
enum mp__qrd_mode { MP__QRD_IDLE, MP__QRD_OWN, MP__QRD_SKIP };
typedef struct mp__qrd {
    int mode;
    uint64_t total; /* OWN: length of the message being received */
    uint64_t off;   /* OWN: bytes received so far */
} mp__qrd;

/* What the consumer does with a valid record. "Terminal" actions end one message: the consumer
 * counts it as taken (and, for the discarding ones, as discarded). */
enum mp__qrd_act {
    MP__QACT_MSG = 1,  /* deliver the whole message (terminal) */
    MP__QACT_BEGIN,    /* copy the first chunk, now OWN */
    MP__QACT_APPEND,   /* copy a middle chunk */
    MP__QACT_FINISH,   /* copy the last chunk, deliver (terminal) */
    MP__QACT_ABORTED,  /* our partial message is discarded (terminal, discarded) */
    MP__QACT_SKIP,     /* part of a message whose start a dead consumer took: drop it */
    MP__QACT_SKIP_END, /* last record of such a message (terminal, discarded) */
};

static inline int mp__qrd_terminal(int act)
{
    return act == MP__QACT_MSG || act == MP__QACT_FINISH || act == MP__QACT_ABORTED ||
           act == MP__QACT_SKIP_END;
}
static inline int mp__qrd_discards(int act)
{
    return act == MP__QACT_ABORTED || act == MP__QACT_SKIP_END;
}

/* Advances the reader state over a valid record h. Returns an action or MP_ECORRUPT (a record
 * that cannot follow the previous ones). */
static inline int mp__qrd_step(mp__qrd *st, const mp__qrec *h)
{
    uint32_t type = mp__qrec_type(h);
    switch (st->mode) {
    case MP__QRD_OWN:
        if (type == MP__QREC_ABORT) {
            st->mode = MP__QRD_IDLE;
            return MP__QACT_ABORTED;
        }
        if ((type != MP__QREC_CONT && type != MP__QREC_END) || h->aux != st->off ||
            h->chunk > st->total - st->off)
            return MP_ECORRUPT;
        st->off += h->chunk;
        if (type == MP__QREC_CONT) return st->off < st->total ? MP__QACT_APPEND : MP_ECORRUPT;
        if (st->off != st->total) return MP_ECORRUPT;
        st->mode = MP__QRD_IDLE;
        return MP__QACT_FINISH;
    case MP__QRD_SKIP:
    case MP__QRD_IDLE:
        if (type == MP__QREC_CONT) {
            st->mode = MP__QRD_SKIP;
            return MP__QACT_SKIP;
        }
        if (type == MP__QREC_END || type == MP__QREC_ABORT) {
            st->mode = MP__QRD_IDLE;
            return MP__QACT_SKIP_END;
        }
        if (st->mode == MP__QRD_SKIP) return MP_ECORRUPT; /* a new message inside a stream */
        if (type == MP__QREC_MSG) return MP__QACT_MSG;
        st->mode = MP__QRD_OWN;
        st->total = h->aux;
        st->off = h->chunk;
        return MP__QACT_BEGIN;
    default:
        return MP_ECORRUPT;
    }
}

/* Copies n bytes at ring position pos out of (into) a ring of cap bytes, wrapping at the end. */
static inline void mp__ring_read(const unsigned char *ring, uint64_t cap, uint64_t pos, void *dst,
                                 uint64_t n)
{
    if (n == 0) return; /* dst may be NULL for a 0-byte message */
    uint64_t off = pos % cap, first = cap - off;
    if (n <= first) {
        memcpy(dst, ring + off, n);
    } else {
        memcpy(dst, ring + off, first);
        memcpy((unsigned char *)dst + first, ring, n - first);
    }
}

static inline void mp__ring_write(unsigned char *ring, uint64_t cap, uint64_t pos, const void *src,
                                  uint64_t n)
{
    if (n == 0) return;
    uint64_t off = pos % cap, first = cap - off;
    if (n <= first) {
        memcpy(ring + off, src, n);
    } else {
        memcpy(ring + off, src, first);
        memcpy(ring, (const unsigned char *)src + first, n - first);
    }
}

#endif
