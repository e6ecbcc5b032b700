/* SPDX-License-Identifier: MIT */
/* conn_frame.h - the wire format of a message connection, as pure functions (no I/O), so that a
 * fuzzer can feed the decoder arbitrary bytes (tests/fuzz/fuzz_conn_frame.c).
 *
 * A message is an 8-byte little-endian header followed by the payload. Header bits:
 *   0..47   the payload length
 *   48..62  a hint: 1 + the CPU the sender ran on (0: unknown). The receiver spins briefly before
 *           sleeping only when the sender runs on another CPU (see read_some in conn.c).
 *   63      "bulk": the payload does not follow the header in the same stream but arrives on the
 *           connection's bulk channel (a pipe's companion socket, see conn.c).
 * Lengths above the receiver's limit (at most MP_CONN_MAX_MESSAGE, 2^40) are corrupt: nothing is
 * ever allocated from a length that was not checked against that limit first.
 */
#ifndef MP_CONN_FRAME_H
#define MP_CONN_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mproc/error.h"
#include "mproc/pipe.h"

#define MP__FRAME_HDR       8
#define MP__FRAME_BULK      ((uint64_t)1 << 63)
#define MP__FRAME_LEN_MASK  (((uint64_t)1 << 48) - 1)
#define MP__FRAME_CPU_SHIFT 48
#define MP__FRAME_CPU_MAX   0x7ffe /* CPUs 0..32765 fit the 15-bit hint */

/* The header as a little-endian 64-bit word, whatever the host (no <endian.h>: strict C11). */
static inline uint64_t mp__frame_le64(uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

typedef struct mp__frame {
    uint64_t len; /* payload bytes */
    bool bulk;    /* payload travels on the bulk channel */
    int cpu;      /* the sender's CPU when it sent, -1 when unknown */
} mp__frame;

/* len must be at most MP_CONN_MAX_MESSAGE; cpu < 0 or too large is sent as "unknown". */
static inline void mp__frame_encode(unsigned char out[MP__FRAME_HDR], uint64_t len, bool bulk,
                                    int cpu)
{
    uint64_t hint = cpu >= 0 && cpu <= MP__FRAME_CPU_MAX ? (uint64_t)cpu + 1 : 0;
    uint64_t v = mp__frame_le64(len | hint << MP__FRAME_CPU_SHIFT | (bulk ? MP__FRAME_BULK : 0));
    memcpy(out, &v, MP__FRAME_HDR); /* one store: the header is on every small send's path */
}

/* Decodes the header at the start of buf[0..n). Returns 0 and fills *f when a whole, valid header
 * is there; 1 when more bytes are needed; MP_ECORRUPT when the length exceeds max (max is clamped
 * to MP_CONN_MAX_MESSAGE) or the bulk flag is set on a connection without a bulk channel. */
static inline int mp__frame_decode(const unsigned char *buf, size_t n, uint64_t max, bool bulk_ok,
                                   mp__frame *f)
{
    if (n < MP__FRAME_HDR) return 1;
    uint64_t v;
    memcpy(&v, buf, MP__FRAME_HDR); /* one load, unaligned-safe */
    v = mp__frame_le64(v);
    bool bulk = (v & MP__FRAME_BULK) != 0;
    uint64_t len = v & MP__FRAME_LEN_MASK;
    if (max > MP_CONN_MAX_MESSAGE) max = MP_CONN_MAX_MESSAGE;
    if (len > max || (bulk && !bulk_ok)) return MP_ECORRUPT;
    f->len = len;
    f->bulk = bulk;
    f->cpu = (int)((v & ~MP__FRAME_BULK) >> MP__FRAME_CPU_SHIFT) - 1;
    return 0;
}

/* Walks a byte stream that holds only inline messages (no bulk channel) and reports how it splits:
 * *whole = number of complete messages, *used = bytes they take. Returns 0 when the stream ends on
 * a message boundary or inside a message (more bytes would complete it), MP_ECORRUPT at the first
 * corrupt header. The fuzzer checks it against the real receive path. */
static inline int mp__frame_scan(const unsigned char *buf, size_t n, uint64_t max, size_t *whole,
                                 size_t *used)
{
    size_t pos = 0, count = 0;
    for (;;) {
        mp__frame f;
        int r = mp__frame_decode(buf + pos, n - pos, max, false, &f);
        if (r < 0) {
            *whole = count;
            *used = pos;
            return r;
        }
        if (r > 0 || f.len > n - pos - MP__FRAME_HDR) break;
        pos += MP__FRAME_HDR + (size_t)f.len;
        count++;
    }
    *whole = count;
    *used = pos;
    return 0;
}

#endif
