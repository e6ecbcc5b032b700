/* SPDX-License-Identifier: MIT */
/* queue_get.c - taking messages: whole records, streams reassembled, aborted streams skipped,
 * and batches (get_many) (queue_private.h). */
#include <limits.h>
#include <stdlib.h>
#include "queue_private.h"

struct dest {
    unsigned char *buf; /* caller's buffer, or the allocated one */
    size_t cap;
    bool alloc;
};

/* Makes room for a message of `total` bytes before anything of it is consumed. */
static int dest_prepare(struct dest *d, uint64_t total, size_t *len)
{
    if (d->alloc) {
        free(d->buf);
        d->buf = malloc(total ? total : 1);
        if (!d->buf) return -ENOMEM;
        d->cap = total;
        return 0;
    }
    if (total > d->cap) {
        *len = total;
        return MP_ETOOSMALL;
    }
    return 0;
}

/* A consumer (holding clock) at the BEGIN record at hd, with a buffer too small for it: has the
 * stream been aborted (its producer gave up, or died: checked once), so that no such message
 * will ever arrive? Then 1, with *end the position after its ABORT record. 0 when the stream is
 * complete or still being written by a live producer; MP_ECORRUPT. */
static int stream_aborted(mp_queue *q, uint64_t hd, uint64_t *end)
{
    struct qshm *s = q->s;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t t = mp__load_acq(&s->tail), pos = hd;
        s->cached_tail = t;
        while (pos < t) {
            mp__qrec h;
            memcpy(&h, q->ring + pos % q->cap, sizeof h);
            int64_t size = t - pos > q->cap ? MP_ECORRUPT : mp__qrec_validate(&h, t - pos);
            if (size < 0) return MP_ECORRUPT;
            uint32_t type = mp__qrec_type(&h);
            if (pos != hd && (type == MP__QREC_MSG || type == MP__QREC_BEGIN)) return MP_ECORRUPT;
            if (type == MP__QREC_END) return 0;
            pos += (uint64_t)size;
            if (type == MP__QREC_ABORT) {
                *end = pos;
                return 1;
            }
        }
        /* Still open: a dead producer's stream is closed by whoever repairs its side. */
        if (pass == 0) mp__queue_check_producer_alive(q);
    }
    return 0;
}

/* Takes the message at the head into d[0] (waiting as the call allows), then, when nd > 1, the
 * whole messages already published behind it into d[1..], without waiting, as long as each fits
 * its buffer: lens[i] gets each length. Returns how many were taken (>= 1), or an error (then
 * lens[0] may hold the size MP_ETOOSMALL asks for). Each message is committed on its own, so a
 * consumer killed in the middle has taken (and lost) exactly the ones committed before. cont: the
 * continuation of a batch, where even the first message is taken only under the batch rule
 * (returns 0 when there is none). */
static ssize_t get_impl(mp_queue *q, struct dest *d, size_t nd, size_t *lens, double timeout,
                        bool cont)
{
    size_t *len = lens;
    size_t got = 0;
    bool wake_after = false;
    struct qshm *s = q->s;
    int slot = s->joinable ? taker_slot(q) : -1;
    struct limit dl = {timeout, false, {0}};
    int rc = side_lock(q, CONS, &dl);
    if (rc < 0) return rc;
    note_cpu(&s->cons_cpu);
    mp__qrd st = {MP__QRD_IDLE, 0, 0};
    for (;;) {
        uint64_t hd = mp__load_relaxed(&s->head);
        if (s->cached_tail <= hd) s->cached_tail = mp__load_acq(&s->tail);
        if (got > 0 || cont) {
            /* Batch: only whole messages that are there already and fit their buffer. */
            if (s->cached_tail <= hd) break;
            mp__qrec h;
            memcpy(&h, q->ring + hd % q->cap, sizeof h);
            if (mp__qrec_type(&h) != MP__QREC_MSG || h.aux > d[got].cap) break;
        }
        if (s->cached_tail <= hd) {
            if (st.mode == MP__QRD_IDLE && mp__load_acq(&s->closed)) {
                rc = MP_ECLOSED;
                break;
            }
            rc = mp__queue_wait_data(q, &dl, st.mode);
            if (rc == 0) continue;
            break;
        }
        uint64_t avail = s->cached_tail - hd;
        mp__qrec h;
        memcpy(&h, q->ring + hd % q->cap, sizeof h);
        int64_t size = avail > q->cap ? MP_ECORRUPT : mp__qrec_validate(&h, avail);
        if (size < 0) {
            rc = MP_ECORRUPT;
            break;
        }
        uint32_t type = mp__qrec_type(&h);
        if (st.mode == MP__QRD_IDLE && (type == MP__QREC_MSG || type == MP__QREC_BEGIN) &&
            (rc = dest_prepare(&d[got], h.aux, len)) < 0) {
            uint64_t end;
            int ab = rc == MP_ETOOSMALL && type == MP__QREC_BEGIN ? stream_aborted(q, hd, &end) : 0;
            if (ab == 0) break;
            if (ab < 0) {
                rc = MP_ECORRUPT;
                break;
            }
            /* a message that will never arrive: skip it whole, uncounted (its producer did) */
            ccommit(q, end, 0, 0, -1);
            wake_space(s);
            continue;
        }
        int act = mp__qrd_step(&st, &h);
        if (act < 0) {
            rc = MP_ECORRUPT;
            break;
        }
        uint64_t at = act == MP__QACT_MSG || act == MP__QACT_BEGIN ? 0 : h.aux;
        if (act == MP__QACT_MSG || act == MP__QACT_BEGIN || act == MP__QACT_APPEND ||
            act == MP__QACT_FINISH)
            mp__ring_read(q->ring, q->cap, hd + MP__QREC_HDR, d[got].buf + at, h.chunk);
        HOOK(MP__QH_GET_READ);
        /* An ABORT ends a message its producer has uncounted already. */
        bool counted = type != MP__QREC_ABORT;
        bool delivered = act == MP__QACT_MSG || act == MP__QACT_FINISH;
        bool disc = counted && mp__qrd_discards(act);
        ccommit(q, hd + (uint64_t)size, counted && mp__qrd_terminal(act), disc,
                delivered ? slot : -1);
        if (disc && s->joinable) wake_join(s);
        if (delivered) {
            /* The wake-up for a producer waiting for room comes after the unlock: the unlock's
             * atomic exchange has drained our stores, so wake_space's fence is then cheap, and
             * a batch pays it once. */
            wake_after = true;
            lens[got++] = act == MP__QACT_MSG ? h.chunk : st.total;
            rc = 0;
            if (got == nd || act == MP__QACT_FINISH) break;
            st = (mp__qrd){MP__QRD_IDLE, 0, 0};
            continue;
        }
        wake_space(s); /* a streaming producer may be waiting for this chunk's room */
        if (act == MP__QACT_BEGIN || act == MP__QACT_APPEND) HOOK(MP__QH_GET_CHUNK);
    }
    pthread_mutex_unlock(&s->clock);
    if (wake_after) wake_space(s);
    return got > 0 || (cont && rc == 0) ? (ssize_t)got : rc;
}

int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!valid(q) || !len || (!buf && cap)) return -EINVAL;
    struct dest d = {buf, cap, false};
    ssize_t k = get_impl(q, &d, 1, len, timeout, false);
    return k > 0 ? 0 : (int)k;
}

int mp_queue_get_nowait(mp_queue *q, void *buf, size_t cap, size_t *len)
{
    if (!valid(q) || !len || (!buf && cap)) return -EINVAL;
    struct dest d = {buf, cap, false};
    ssize_t k = get_impl(q, &d, 1, len, 0, false);
    return k > 0 ? 0 : (int)k;
}

int mp_queue_get_alloc(mp_queue *q, void **out, size_t *len, double timeout)
{
    if (out) *out = NULL;
    if (!valid(q) || !out || !len) return -EINVAL;
    struct dest d = {NULL, 0, true};
    ssize_t k = get_impl(q, &d, 1, len, timeout, false);
    int rc = k > 0 ? 0 : (int)k;
    if (rc < 0) {
        free(d.buf);
        return rc;
    }
    *out = d.buf;
    return 0;
}

/* Destinations of a get_many batch on the stack up to this many; beyond, in slices of it. */
#define DEST_STACK 64

ssize_t mp_queue_get_many(mp_queue *q, const struct iovec *bufs, size_t n, size_t *lens,
                          double timeout)
{
    if (!valid(q) || !bufs || !lens || n == 0 || n > (size_t)SSIZE_MAX) return -EINVAL;
    struct dest d[DEST_STACK];
    size_t nd = n < DEST_STACK ? n : DEST_STACK;
    for (size_t i = 0; i < n; i++)
        if (!bufs[i].iov_base && bufs[i].iov_len) return -EINVAL;
    for (size_t i = 0; i < nd; i++)
        d[i] = (struct dest){bufs[i].iov_base, bufs[i].iov_len, false};
    ssize_t k = get_impl(q, d, nd, lens, timeout, false);
    /* More than DEST_STACK: further slices take only what is there already. */
    size_t done = k > 0 ? (size_t)k : 0;
    while (k == (ssize_t)nd && done < n) {
        nd = n - done < DEST_STACK ? n - done : DEST_STACK;
        for (size_t i = 0; i < nd; i++)
            d[i] = (struct dest){bufs[done + i].iov_base, bufs[done + i].iov_len, false};
        k = get_impl(q, d, nd, lens + done, 0, true);
        if (k > 0) done += (size_t)k;
    }
    return done > 0 ? (ssize_t)done : k;
}
