/* SPDX-License-Identifier: MIT */
/* mech_queue.c - mp_queue: two queues, one each way (a round trip needs an answer channel). */
#include <errno.h>
#include <stdlib.h>

#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_QUEUE
#include "mproc/error.h"
#include "mproc/queue.h"

#define TIMEOUT 30.0

struct queue_st {
    mp_queue *q[2]; /* q[0]: parent -> child, q[1]: child -> parent */
};

static int q_open(void **st, size_t maxmsg)
{
    struct queue_st *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    /* Room for a few messages in flight, so a stream does not wait on every put. */
    size_t cap = 4 * maxmsg + 4096;
    if (cap < MP_QUEUE_DEFAULT_CAPACITY) cap = MP_QUEUE_DEFAULT_CAPACITY;
    int rc = mp_queue_new(&s->q[0], 0, cap);
    if (rc == 0) rc = mp_queue_new(&s->q[1], 0, cap);
    if (rc < 0) {
        mp_queue_free(&s->q[0]);
        free(s);
        return rc;
    }
    *st = s;
    return 0;
}

static void q_side(void *st, int side) {}

static int q_send(void *st, int side, const void *buf, size_t len)
{
    struct queue_st *s = st;
    return mp_queue_put(s->q[side], buf, len, TIMEOUT);
}

static int q_recv(void *st, int side, void *buf, size_t len)
{
    struct queue_st *s = st;
    size_t n;
    int rc = mp_queue_get(s->q[!side], buf, len, &n, TIMEOUT);
    return rc == 0 && n != len ? MP_ECORRUPT : rc;
}

static void q_close(void *st, int side)
{
    struct queue_st *s = st;
    mp_queue_free(&s->q[0]);
    mp_queue_free(&s->q[1]);
    if (side == 0) free(s);
}

static const mpb_chan queue_chan = {"mp queue", q_open, q_side, q_send, q_recv, q_close};

void mpb_bench_queue(void)
{
    mpb_chan_suite("queue", "mp queue", &queue_chan, MPB_SALL);
}
#else
void mpb_bench_queue(void) {}
#endif
