/* SPDX-License-Identifier: MIT */
/* queue_put.c - putting messages: whole records, streams for messages bigger than half the ring,
 * and batches (put_many) published in groups (queue_private.h). */
#include <limits.h>
#include "queue_private.h"

/* True when `bytes` of ring (and a message slot, if slot) are free. Refreshes the caches only
 * when they say no: the consumer's line is read once per "looks full", not once per message. */
static bool room(mp_queue *q, uint64_t bytes, bool slot)
{
    struct qshm *s = q->s;
    uint64_t t = mp__load_relaxed(&s->tail), n = mp__load_relaxed(&s->msgs_put);
    bool slot_ok = !slot || !s->maxsize || n - s->cached_got < s->maxsize;
    if (q->cap - (t - s->cached_head) >= bytes && slot_ok) return true;
    /* wait_space sleeps until the head moves from the value read here (a message taken moves
     * the head too, so this also covers waiting for a slot). */
    s->cached_head = mp__load_acq(&s->head);
    s->cached_got = mp__load_acq(&s->msgs_got);
    slot_ok = !slot || !s->maxsize || n - s->cached_got < s->maxsize;
    return q->cap - (t - s->cached_head) >= bytes && slot_ok;
}

static int wait_room(mp_queue *q, uint64_t bytes, bool slot, struct limit *dl)
{
    struct qshm *s = q->s;
    for (;;) {
        if (mp__load_acq(&s->closed)) return MP_ECLOSED;
        if (room(q, bytes, slot)) return 0;
        bool for_slot =
            slot && s->maxsize && mp__load_relaxed(&s->msgs_put) - s->cached_got >= s->maxsize;
        int rc = mp__queue_wait_space(q, for_slot, dl);
        if (rc < 0) return rc;
    }
}

/* Copies the gathered message bytes [from, from+n) into the ring at pos. */
static void copy_in(mp_queue *q, uint64_t pos, const struct iovec *iov, int iovcnt, uint64_t from,
                    uint64_t n)
{
    for (int i = 0; i < iovcnt && n > 0; i++) {
        uint64_t l = iov[i].iov_len;
        if (from >= l) {
            from -= l;
            continue;
        }
        uint64_t take = l - from < n ? l - from : n;
        mp__ring_write(q->ring, q->cap, pos, (const char *)iov[i].iov_base + from, take);
        pos += take;
        n -= take;
        from = 0;
    }
}

static int put_whole(mp_queue *q, const struct iovec *iov, int iovcnt, uint64_t len,
                     struct limit *dl)
{
    struct qshm *s = q->s;
    uint64_t rec = mp__qrec_size(len);
    int rc = wait_room(q, rec, true, dl);
    if (rc < 0) return rc;
    uint64_t t = mp__load_relaxed(&s->tail);
    mp__qrec h = mp__qrec_make(MP__QREC_MSG, (uint32_t)len, len);
    memcpy(q->ring + t % q->cap, &h, sizeof h);
    copy_in(q, t + MP__QREC_HDR, iov, iovcnt, 0, len);
    HOOK(MP__QH_PUT_WRITTEN);
    pcommit(s, t + rec, mp__load_relaxed(&s->msgs_put) + 1, 0);
    /* wake_data comes after the unlock (put_impl): the unlock's atomic exchange waits for the
     * record's stores anyway, and the fence in wake_data is then cheap. */
    /* Ask for the next record's lines now (the consumer has them): the next put's stores then
     * hit, and the lock's release, a full barrier on x86, does not wait for them. */
    uint64_t next = (t + rec) % q->cap;
    __builtin_prefetch(q->ring + next, 1);
    if (next + 64 < q->cap) __builtin_prefetch(q->ring + next + 64, 1);
    return 0;
}

/* Streams a message bigger than whole_max: chunks of up to chunk_max, each published as soon as
 * written. While the stream is open, MP__QREC_HDR bytes stay free for a possible ABORT. */
static int put_stream(mp_queue *q, const struct iovec *iov, int iovcnt, uint64_t len,
                      struct limit *dl)
{
    struct qshm *s = q->s;
    const uint64_t cmax = s->chunk_max, reserve = MP__QREC_HDR;
    /* A caller that will not wait can only stream what fits now. */
    if (no_wait(dl) && (len / cmax + 2) * MP__QREC_HDR + len + 16 > pfree_now(q)) return -ETIMEDOUT;
    int rc = wait_room(q, mp__qrec_size(cmax) + reserve, true, dl);
    if (rc < 0) return rc;
    uint64_t off = 0;
    while (off < len) {
        uint64_t rest = len - off;
        uint64_t fr = pfree_now(q);
        uint64_t chunk = 0;
        bool end = false;
        if (rest <= cmax && mp__qrec_size(rest) <= fr) {
            chunk = rest;
            end = true;
        } else if (fr >= reserve + MP__QREC_HDR + 16) {
            chunk = (fr - reserve - MP__QREC_HDR) & ~(uint64_t)15;
            if (chunk > cmax) chunk = cmax;
            if (chunk >= rest) chunk = rest - 1; /* the last piece must come as END */
            uint64_t want = cmax / 4 < rest ? cmax / 4 : rest - 1;
            if (chunk < want) chunk = 0; /* tiny chunks cost more than waiting */
        }
        if (chunk == 0) {
            rc = mp__load_acq(&s->closed) ? MP_ECLOSED : mp__queue_wait_space(q, false, dl);
            if (rc < 0) {
                if (off > 0) mp__queue_fail_stream(q, true);
                return rc;
            }
            continue;
        }
        uint64_t t = mp__load_relaxed(&s->tail);
        if (off == 0) s->stream_begin = t; /* read only while stream_open says so */
        uint32_t type = off == 0 ? MP__QREC_BEGIN : end ? MP__QREC_END : MP__QREC_CONT;
        mp__qrec h = mp__qrec_make(type, (uint32_t)chunk, off == 0 ? len : off);
        memcpy(q->ring + t % q->cap, &h, sizeof h);
        copy_in(q, t + MP__QREC_HDR, iov, iovcnt, off, chunk);
        HOOK(MP__QH_PUT_WRITTEN);
        pcommit(s, t + mp__qrec_size(chunk), mp__load_relaxed(&s->msgs_put) + (off == 0), !end);
        wake_data(s);
        off += chunk;
        if (!end) {
            HOOK(MP__QH_PUT_CHUNK);
            if (mp__load_acq(&s->closed)) {
                mp__queue_fail_stream(q, true);
                return MP_ECLOSED;
            }
        }
    }
    return 0;
}

static int put_impl(mp_queue *q, const struct iovec *iov, int iovcnt, double timeout)
{
    if (!valid(q)) return -EINVAL;
    if (iovcnt < 0 || iovcnt > IOV_MAX_MP || (!iov && iovcnt > 0)) return -EINVAL;
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len) return -EINVAL;
        if (iov[i].iov_len > MP_QUEUE_MSG_MAX) return MP_ETOOBIG;
        len += iov[i].iov_len;
    }
    if (len > MP_QUEUE_MSG_MAX) return MP_ETOOBIG;
    struct qshm *s = q->s;
    if (mp__load_acq(&s->closed)) return MP_ECLOSED;
    struct limit dl = {timeout, false, {0}};
    int rc = side_lock(q, PROD, &dl);
    if (rc == 0) {
        note_cpu(&s->prod_cpu);
        /* Up to half the ring a message goes whole. Up to the ring it also goes whole when the
         * ring has room for it now: streaming it would need a consumer to take chunks. */
        if (len <= s->whole_max ||
            (mp__qrec_size(len) <= q->cap && pfree_now(q) >= mp__qrec_size(len))) {
            rc = put_whole(q, iov, iovcnt, len, &dl);
            pthread_mutex_unlock(&s->plock);
            if (rc == 0) wake_data(s);
        } else {
            rc = put_stream(q, iov, iovcnt, len, &dl);
            pthread_mutex_unlock(&s->plock);
        }
    }
    return rc;
}

/* A batch publishes its whole messages in groups of up to this many records: one commit (and one
 * store to the tail's cache line, which the consumer polls) per group instead of per message,
 * while a consumer running alongside still gets the first messages without waiting for the
 * last ones. */
#define GROUP_MAX 64

/* Writes the whole messages msgs[0..n) from the tail on, as many as the ring (and maxsize) take
 * at once, at most GROUP_MAX, and publishes them with one commit (the caller holds plock). Only
 * the first may wait for room; the others go only when they fit without waiting, and only when
 * they are small enough to go whole anyway (a bigger one is for the caller to stream). Returns
 * how many were published (>= 1), or an error when none was. */
static ssize_t put_group(mp_queue *q, const struct iovec *msgs, size_t n, struct limit *dl)
{
    struct qshm *s = q->s;
    int rc = wait_room(q, mp__qrec_size(msgs[0].iov_len), true, dl);
    if (rc < 0) return rc;
    const uint64_t t0 = mp__load_relaxed(&s->tail), np = mp__load_relaxed(&s->msgs_put);
    uint64_t t = t0;
    size_t k = 0;
    bool fresh = false; /* the caches were refreshed for this group */
    while (k < n && k < GROUP_MAX) {
        uint64_t len = msgs[k].iov_len, rec = mp__qrec_size(len);
        if (k > 0 && len > s->whole_max) break;
        bool fits = q->cap - (t - s->cached_head) >= rec &&
                    (!s->maxsize || np + k - s->cached_got < s->maxsize);
        if (!fits && k > 0 && !fresh) {
            s->cached_head = mp__load_acq(&s->head);
            s->cached_got = mp__load_acq(&s->msgs_got);
            fresh = true;
            fits = q->cap - (t - s->cached_head) >= rec &&
                   (!s->maxsize || np + k - s->cached_got < s->maxsize);
        }
        if (!fits && k > 0) break; /* (the first one fits: wait_room said so) */
        mp__qrec h = mp__qrec_make(MP__QREC_MSG, (uint32_t)len, len);
        memcpy(q->ring + t % q->cap, &h, sizeof h);
        copy_in(q, t + MP__QREC_HDR, &msgs[k], 1, 0, len);
        t += rec;
        k++;
    }
    HOOK(MP__QH_PUT_WRITTEN);
    pcommit(s, t, np + k, 0);
    uint64_t next = t % q->cap;
    __builtin_prefetch(q->ring + next, 1);
    if (next + 64 < q->cap) __builtin_prefetch(q->ring + next + 64, 1);
    return (ssize_t)k;
}

ssize_t mp_queue_put_many(mp_queue *q, const struct iovec *msgs, size_t n, double timeout)
{
    if (!valid(q) || (!msgs && n) || n > (size_t)SSIZE_MAX) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].iov_base && msgs[i].iov_len) return -EINVAL;
        if (msgs[i].iov_len > MP_QUEUE_MSG_MAX) return MP_ETOOBIG;
    }
    if (n == 0) return 0;
    struct qshm *s = q->s;
    if (mp__load_acq(&s->closed)) return MP_ECLOSED;
    struct limit dl = {timeout, false, {0}};
    int rc = side_lock(q, PROD, &dl);
    if (rc < 0) return rc;
    note_cpu(&s->prod_cpu);
    size_t done = 0;
    ssize_t k = 0;
    while (done < n) {
        uint64_t len = msgs[done].iov_len;
        /* the same rule as put: whole up to half the ring, or up to the ring when it has room */
        if (len <= s->whole_max ||
            (mp__qrec_size(len) <= q->cap && pfree_now(q) >= mp__qrec_size(len))) {
            k = put_group(q, msgs + done, n - done, &dl);
        } else {
            k = put_stream(q, &msgs[done], 1, len, &dl);
            if (k == 0) k = 1;
        }
        if (k < 0) break;
        done += (size_t)k;
        /* a consumer may sleep on the data we published while we wait for room for the rest */
        wake_data(s);
    }
    pthread_mutex_unlock(&s->plock);
    return done > 0 ? (ssize_t)done : k;
}

int mp_queue_put(mp_queue *q, const void *buf, size_t len, double timeout)
{
    if (!buf && len) return -EINVAL;
    struct iovec v = {(void *)buf, len};
    return put_impl(q, &v, 1, timeout);
}

int mp_queue_put_nowait(mp_queue *q, const void *buf, size_t len)
{
    if (!buf && len) return -EINVAL;
    struct iovec v = {(void *)buf, len};
    return put_impl(q, &v, 1, 0);
}

int mp_queue_putv(mp_queue *q, const struct iovec *iov, int iovcnt, double timeout)
{
    return put_impl(q, iov, iovcnt, timeout);
}
