/* SPDX-License-Identifier: MIT */
/* bench_process.c - the cost of a process: mproc start+join under each start method, against a
 * raw fork+_exit+waitpid.
 *
 * Figures (stdout):
 *   process.start_join.us              mproc (fork): new + start + join + free, µs per process
 *   fork.start_join.us                 raw fork() + _exit(0) + waitpid(), µs per process
 *   process.start_join.ratio_fork      the ratio of the two
 *   spawn.start_join.us                mproc under spawn: new_func + set_start_method + start +
 *                                      join + free of a named target, µs per process
 *   spawn.start_join.ratio_fork        that / raw fork+exit+waitpid measured in the same run
 *   forkserver.start_join.us           the same under forkserver
 *   forkserver.start_join.ratio_fork   that / raw fork+exit+waitpid in the same run (issue 12:
 *                                      target <= 2.0)
 *   python.process.start_join.us       Python's multiprocessing Process start+join (when python3
 * runs) The C figures are medians over BENCH_REPS runs (default 7) of per-run medians over 200
 * processes (40 with BENCH_QUICK; 100 and 20 under spawn, which costs an exec each); a ratio is
 * the median of the per-run ratios. Each mproc measurement alternates process by process with a
 * raw fork, so noise from the machine hits both sides of its ratio.
 * The parent is pinned to CPU 0 and its children inherit that: both sides of every hand-off run
 * on one CPU, which avoids the ~35 µs cost of waking a halted vCPU (see shared facts). The
 * forkserver is a child of this process and inherits the pin as well.
 * The program calls mp_init() first: a spawned child (and the forkserver) is this same binary,
 * which runs its named target from there and never reaches the measurements.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* The named target of the spawn and forkserver figures: returns at once (exit status 0). */
static int nothing_named(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    return 0;
}
MP_FUNC_REGISTER("bench.nothing", nothing_named)

static bool failed;

static double one_mproc(void)
{
    double t0 = bench_now();
    mp_process *p;
    if (mp_process_new(&p, "bench", nothing, NULL) != 0 || mp_process_start(p) != 0) {
        bench_note("mp_process_start failed");
        exit(1);
    }
    mp_process_join(p, MP_FOREVER);
    mp_process_free(&p);
    return bench_now() - t0;
}

/* One start+join under method m; -1 (and `failed` set) when the start failed. */
static double one_named(mp_start_method m)
{
    double t0 = bench_now();
    mp_process *p = NULL;
    int rc = mp_process_new_func(&p, "bench", "bench.nothing", NULL, 0);
    if (rc == 0) rc = mp_process_set_start_method(p, m);
    if (rc == 0) rc = mp_process_start(p);
    if (rc != 0) {
        bench_note("%s start failed: %s (%s)", mp_start_method_name(m), mp_strerror(rc),
                   mp_last_error());
        mp_process_free(&p);
        failed = true;
        return -1;
    }
    mp_process_join(p, MP_FOREVER);
    int code = -1;
    mp_process_exitcode(p, &code);
    mp_process_free(&p);
    double t = bench_now() - t0;
    if (code != 0) {
        bench_note("%s child exited with %d", mp_start_method_name(m), code);
        failed = true;
        return -1;
    }
    return t;
}

static double one_spawn(void)
{
    return one_named(MP_START_SPAWN);
}

static double one_forkserver(void)
{
    return one_named(MP_START_FORKSERVER);
}

static double one_fork(void)
{
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) {
        bench_note("fork failed");
        exit(1);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return bench_now() - t0;
}

/* Measures `one` against a raw fork, alternating process by process, and emits
 * <prefix>.start_join.us and <prefix>.start_join.ratio_fork (plus fork.start_join.us when
 * emit_fork). Per run: the median of per-process times on each side (a loaded machine's stalls
 * hit single samples; medians ignore them), then their ratio. The figures are medians over the
 * runs. Returns -1 (nothing emitted) when `one` failed. */
static int measure(const char *prefix, double (*one)(void), int runs, int per_run, bool emit_fork)
{
    double *mp_us = calloc((size_t)runs, sizeof *mp_us);
    double *fork_us = calloc((size_t)runs, sizeof *fork_us);
    double *ratio = calloc((size_t)runs, sizeof *ratio);
    double *sm = calloc((size_t)per_run, sizeof *sm);
    double *sf = calloc((size_t)per_run, sizeof *sf);
    if (!mp_us || !fork_us || !ratio || !sm || !sf) exit(1);

    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++) { /* warm up page tables, caches, the allocator */
        if (one() < 0) rc = -1;               /* (and start the forkserver) */
        one_fork();
    }
    for (int r = 0; r < runs && rc == 0; r++) {
        for (int i = 0; i < per_run && rc == 0; i++) {
            if ((i ^ r) & 1) { /* alternate which goes first */
                sm[i] = one();
                sf[i] = one_fork();
            } else {
                sf[i] = one_fork();
                sm[i] = one();
            }
            if (sm[i] < 0) rc = -1;
        }
        if (rc) break;
        mp_us[r] = bench_median(sm, per_run) * 1e6;
        fork_us[r] = bench_median(sf, per_run) * 1e6;
        ratio[r] = mp_us[r] / fork_us[r];
        bench_note("%s run %d/%d: mproc %.1f us, fork %.1f us, ratio %.3f", prefix, r + 1, runs,
                   mp_us[r], fork_us[r], ratio[r]);
    }
    if (rc == 0) {
        char name[96];
        snprintf(name, sizeof name, "%s.start_join.us", prefix);
        bench_emit(name, bench_median(mp_us, runs), "us");
        if (emit_fork) bench_emit("fork.start_join.us", bench_median(fork_us, runs), "us");
        snprintf(name, sizeof name, "%s.start_join.ratio_fork", prefix);
        bench_emit(name, bench_median(ratio, runs), "x");
    } else {
        bench_note("%s: not measured (the start failed)", prefix);
    }
    free(mp_us);
    free(fork_us);
    free(ratio);
    free(sm);
    free(sf);
    return rc;
}

int main(int argc, char **argv)
{
    /* First thing: in a spawned child this runs the named target and exits. */
    if (mp_init(&argc, &argv) != 0) return 1;
    int runs = bench_reps(7);
    bool quick = bench_quick();
    bench_pin(0);

    measure("process", one_mproc, runs, quick ? 40 : 200, true);
    measure("spawn", one_spawn, runs, quick ? 20 : 100, false);
    measure("forkserver", one_forkserver, runs, quick ? 40 : 200, false);

    char keys[4][64];
    double vals[4];
    int n = bench_python("process_start_join.py", quick ? "50" : "200", keys, vals, 4);
    for (int i = 0; i < n && i < 4; i++) /* (the bound also quiets GCC's -Wstringop-overread) */
        if (strcmp(keys[i], "start_join_us") == 0)
            bench_emit("python.process.start_join.us", vals[i], "us");
    return failed ? 1 : 0;
}
