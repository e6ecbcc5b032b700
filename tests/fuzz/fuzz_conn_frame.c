/* SPDX-License-Identifier: MIT */
/* fuzz_conn_frame.c - libFuzzer target for the message-connection framing (src/conn_frame.h) and
 * for the real receive path that decodes bytes arriving from another process (src/conn.c).
 *
 * The first byte picks a mode:
 *   0  the pure decoder: mp__frame_decode at every offset and mp__frame_scan over the input.
 *   1  a socket connection (what mp_listener_accept and mp_client_connect return): the input is
 *      written into one end of a socketpair, the writer closes, and the other end is drained with
 *      mp_conn_recv (small and exact buffers) and mp_conn_recv_alloc. The messages received must
 *      be exactly those mp__frame_scan finds, and the stream must end with MP_EEOF, or MP_ECORRUPT
 *      where the scan found a corrupt header.
 *   2  a pipe end with a bulk channel: the input is split between the pipe (headers, inline
 *      payloads) and the bulk socket (large payloads); draining must end without a crash, a hang
 *      or a leak, whatever the two streams say.
 * The connection's message limit is 64 KiB, so no header can make it allocate more. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "conn_frame.h"
#include "mproc/error.h"
#include "mproc/pipe.h"

#define LIMIT     (1u << 16)
#define MAX_INPUT 60000 /* fits a default pipe (64 KiB) and socket buffer without blocking */

static void pure(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mp__frame f;
        int r = mp__frame_decode(d + i, n - i, LIMIT, (d[i] & 1) != 0, &f);
        if (r == 0 && f.len > LIMIT) abort();
        if (r == 1 && n - i >= MP__FRAME_HDR) abort();
    }
    size_t whole, used;
    int r = mp__frame_scan(d, n, LIMIT, &whole, &used);
    if (used > n || (r != 0 && r != MP_ECORRUPT)) abort();
}

static void put_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) abort(); /* must fit in the buffer: MAX_INPUT */
        p += w;
        n -= (size_t)w;
    }
}

static void socket_conn(const uint8_t *d, size_t n, uint8_t style)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return;
    put_all(sv[1], d, n);
    close(sv[1]);
    mp_conn *c;
    if (mp_conn_from_fd(&c, sv[0], true, false) < 0) abort();
    if (mp_conn_set_max_message(c, LIMIT) < 0) abort();

    size_t whole, used;
    int scan = mp__frame_scan(d, n, LIMIT, &whole, &used);
    size_t pos = 0, got = 0;
    unsigned char *buf = malloc(LIMIT);
    int rc;
    for (;;) {
        size_t len = 0;
        void *p = NULL;
        unsigned k = (style + got) % 3;
        if (k == 0) { /* a small buffer first: MP_ETOOSMALL must keep the message */
            rc = mp_conn_recv(c, buf, 16, &len, 0);
            if (rc == MP_ETOOSMALL) {
                if (len <= 16) abort();
                rc = mp_conn_recv(c, buf, len, &len, 0);
            }
            p = buf;
        } else if (k == 1) {
            rc = mp_conn_recv(c, buf, LIMIT, &len, 0);
            p = buf;
        } else {
            rc = mp_conn_recv_alloc(c, &p, &len, 0);
        }
        if (rc < 0) break;
        /* the message must be the next one the scan found */
        if (got >= whole || pos + MP__FRAME_HDR + len > used) abort();
        if (memcmp(p, d + pos + MP__FRAME_HDR, len) != 0) abort();
        pos += MP__FRAME_HDR + len;
        got++;
        if (p != buf) free(p);
    }
    if (got != whole) abort();
    if (scan == MP_ECORRUPT ? rc != MP_ECORRUPT : rc != MP_EEOF) abort();
    free(buf);
    mp_conn_free(&c);
}

static void pipe_conn(const uint8_t *d, size_t n)
{
    if (n < 2) return;
    size_t split = ((size_t)d[0] << 8 | d[1]) % (n - 1);
    d += 2;
    n -= 2;
    int p[2], sv[2];
    if (pipe2(p, O_CLOEXEC) < 0) return;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        close(p[0]);
        close(p[1]);
        return;
    }
    put_all(p[1], d, split);
    put_all(sv[1], d + split, n - split);
    close(p[1]);
    close(sv[1]);
    mp_conn *c;
    if (mp__conn_new_fds(&c, p[0], -1, sv[0], false, false) < 0) abort();
    mp_conn_set_max_message(c, LIMIT);
    unsigned char *buf = malloc(LIMIT);
    for (int i = 0; i < 100000; i++) {
        size_t len;
        void *q;
        int rc = i & 1 ? mp_conn_recv(c, buf, LIMIT, &len, 0) : mp_conn_recv_alloc(c, &q, &len, 0);
        if (rc == 0 && !(i & 1)) free(q);
        if (rc < 0 && rc != MP_ETOOSMALL) {
            if (rc != MP_EEOF && rc != MP_ECORRUPT) abort(); /* the writers are closed */
            break;
        }
    }
    free(buf);
    mp_conn_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (size > MAX_INPUT) size = MAX_INPUT;
    switch (mode % 3) {
    case 0:
        pure(data, size);
        break;
    case 1:
        socket_conn(data, size, mode / 3);
        break;
    default:
        pipe_conn(data, size);
        break;
    }
    return 0;
}
