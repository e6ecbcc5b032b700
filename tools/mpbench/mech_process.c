/* SPDX-License-Identifier: MIT */
/* mech_process.c - process start: mp_process_new + start + join + free of a target that returns
 * at once, timed one by one (median and p99 in microseconds), under each start method:
 *   process.start             fork (the default), a target function pointer
 *   process.start.spawn       spawn: the child execs this program, whose mp_init() runs the
 *                             named target "mpbench.nothing" (main calls mp_init first)
 *   process.start.forkserver  forkserver: the forkserver forks the child on request (started by
 *                             the warm-up start, so the figure is the steady state) */
#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_PROCESS
#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"

static int empty_target(void *arg)
{
    return 0;
}

/* The named target: the same empty body, found by name in a child that is not a copy of us. */
static int empty_named(const void *arg, size_t len, mp_task_result *res)
{
    return 0;
}
MP_FUNC_REGISTER("mpbench.nothing", empty_named)

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

/* arg: the mp_start_method, as an intptr_t. */
static int start_join_method(void *arg)
{
    mp_start_method m = (mp_start_method)(intptr_t)arg;
    mp_process *p = NULL;
    int rc = mp_process_new_func(&p, "mpbench", "mpbench.nothing", NULL, 0);
    if (rc == 0) rc = mp_process_set_start_method(p, m);
    if (rc == 0) rc = mp_process_start(p);
    if (rc < 0 && *mp_last_error()) mpb_note("%s: %s", mp_start_method_name(m), mp_last_error());
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
    /* An exec per start: fewer of them keep the run short. */
    long ns = mpb->tiny ? 5 : mpb->quick ? 20 : 100;
    if (mpb_wantq("process.start.spawn", true))
        mpb_events("process.start.spawn", "start+join under spawn (named target)",
                   start_join_method, (void *)(intptr_t)MP_START_SPAWN, ns);
    if (mpb_wantq("process.start.forkserver", true))
        mpb_events("process.start.forkserver", "start+join under forkserver (named target)",
                   start_join_method, (void *)(intptr_t)MP_START_FORKSERVER, n);
    /* The forkserver would otherwise idle beside the other benchmarks and, at our exit, end a
     * moment after us (it watches us through a pidfd): stop and reap it now, so mpbench leaves
     * nothing behind, not even for an instant. */
    mp_forkserver_stop();
}
#else
void mpb_bench_process(void) {}
#endif
