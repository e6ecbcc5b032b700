/* SPDX-License-Identifier: MIT */
/* mech_process.c - process start: mp_process_new + start + join + free of a target that returns
 * at once, timed one by one (median and p99 in microseconds). */
#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_PROCESS
#include "mproc/process.h"

static int empty_target(void *arg)
{
    return 0;
}

static int start_join(void *arg)
{
    mp_process *p;
    int rc = mp_process_new(&p, "mpbench", empty_target, NULL);
    if (rc < 0) return rc;
    rc = mp_process_start(p);
    if (rc == 0) rc = mp_process_join(p, 30.0);
    int code = 0;
    if (rc == 0) rc = mp_process_exitcode(p, &code);
    mp_process_free(&p);
    return rc < 0 ? rc : code != 0 ? -1 : 0;
}

void mpb_bench_process(void)
{
    long n = mpb->tiny ? 5 : mpb->quick ? 40 : 300;
    if (mpb_wantq("process.start", true))
        mpb_events("process.start", "mp_process start+join (empty target)", start_join, NULL, n);
}
#else
void mpb_bench_process(void) {}
#endif
