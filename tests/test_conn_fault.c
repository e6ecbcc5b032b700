/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_conn_fault.c - connections under injected faults: an allocation that fails while a receive
 * that timed out part-way keeps the bytes it already took from the stream. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "conn_frame.h"
#include "mp_test.h"
#include "mproc.h"

static int fail_allocs;

static void *failing_realloc(void *p, size_t n)
{
    if (fail_allocs > 0) {
        fail_allocs--;
        return NULL;
    }
    return realloc(p, n);
}

/* The receive that times out part-way must keep what it read; when it cannot (no memory), the
 * bytes are gone and the stream cannot be resynchronised: that receive says -ENOMEM and every
 * later one fails too, instead of returning a message with a hole in it as a success. */
static void keep_partial_alloc_failure_is_sticky(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    mp_conn *c;
    assert_mp_ok(mp_conn_from_fd(&c, sv[0], true, true));
    size_t len = 100000;
    unsigned char *src = malloc(len), *dst = malloc(len);
    for (size_t i = 0; i < len; i++)
        src[i] = (unsigned char)(i * 131u + 7u);
    unsigned char h[MP__FRAME_HDR];
    mp__frame_encode(h, len, false, -1);
    mp_test_write_all(sv[1], h, sizeof h);
    mp_test_write_all(sv[1], src, 30000);

    mp__conn_realloc = failing_realloc;
    fail_allocs = 1;
    size_t n = 0;
    assert_mp(-ENOMEM, mp_conn_recv(c, dst, len, &n, 0.05));
    mp__conn_realloc = realloc;
    assert_int_equal(fail_allocs, 0);

    /* the rest of the message, then a whole one: nothing after the loss can be trusted */
    mp_test_write_all(sv[1], src + 30000, len - 30000);
    mp__frame_encode(h, 3, false, -1);
    mp_test_write_all(sv[1], h, sizeof h);
    mp_test_write_all(sv[1], (const unsigned char *)"abc", 3);
    memset(dst, 0, len);
    assert_mp(MP_ECLOSED, mp_conn_recv(c, dst, len, &n, 1));
    assert_mp(MP_ECLOSED, mp_conn_recv(c, dst, len, &n, 1));
    void *p = NULL;
    assert_mp(MP_ECLOSED, mp_conn_recv_alloc(c, &p, &n, 1));
    assert_null(p);
    /* a waiter is not left waiting: the receive would return at once */
    assert_int_equal(mp_conn_poll(c, 0), 1);
    /* sending still works */
    assert_mp_ok(mp_conn_send(c, "x", 1, 1));
    free(src);
    free(dst);
    mp_conn_free(&c);
    close(sv[1]);
}

/* recv_alloc receives into the buffer it keeps, so a timeout there never needs the copy. */
static void recv_alloc_timeout_needs_no_copy(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    mp_conn *c;
    assert_mp_ok(mp_conn_from_fd(&c, sv[0], true, true));
    unsigned char h[MP__FRAME_HDR], src[5000];
    memset(src, 9, sizeof src);
    mp__frame_encode(h, sizeof src, false, -1);
    mp_test_write_all(sv[1], h, sizeof h);
    mp_test_write_all(sv[1], src, 1000);
    mp__conn_realloc = failing_realloc;
    fail_allocs = 1;
    void *p = NULL;
    size_t n;
    assert_mp(-ETIMEDOUT, mp_conn_recv_alloc(c, &p, &n, 0.05));
    mp__conn_realloc = realloc;
    fail_allocs = 0;
    mp_test_write_all(sv[1], src + 1000, sizeof src - 1000);
    assert_mp_ok(mp_conn_recv_alloc(c, &p, &n, 1));
    assert_int_equal(n, sizeof src);
    assert_memory_equal(p, src, sizeof src);
    free(p);
    mp_conn_free(&c);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(keep_partial_alloc_failure_is_sticky),
        MP_TEST(recv_alloc_timeout_needs_no_copy),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
