/* SPDX-License-Identifier: MIT */
/* bench_process.c - the cost of a process: mproc start+join against a raw fork+_exit+waitpid.
 *
 * Figures (stdout):
 *   process.start_join.us          mproc: new + start + join + free, µs per process
 *   fork.start_join.us             raw fork() + _exit(0) + waitpid(), µs per process
 *   process.start_join.ratio_fork  the ratio of the two
 *   python.process.start_join.us   Python's multiprocessing Process start+join (when python3 runs)
 * The C figures are medians over BENCH_REPS runs (default 7) of per-run medians over 200
 * processes (40 with BENCH_QUICK); the ratio is the median of the per-run ratios.
 * The two C measurements alternate process by process, so noise from the machine hits both.
 * The parent is pinned to CPU 0 and its children inherit that: both sides of every hand-off run
 * on one CPU, which avoids the ~35 µs cost of waking a halted vCPU (see shared facts).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/process.h"

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

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

int main(void)
{
    int runs = bench_reps(7);
    int per_run = bench_quick() ? 40 : 200;
    bench_pin(0);
    double *mp_us = calloc((size_t)runs, sizeof *mp_us);
    double *fork_us = calloc((size_t)runs, sizeof *fork_us);
    double *ratio = calloc((size_t)runs, sizeof *ratio);
    double *sm = calloc((size_t)per_run, sizeof *sm);
    double *sf = calloc((size_t)per_run, sizeof *sf);
    if (!mp_us || !fork_us || !ratio || !sm || !sf) return 1;

    for (int i = 0; i < 20; i++) { /* warm up page tables, caches, the allocator */
        one_mproc();
        one_fork();
    }
    /* Per run: the median of per-process times on each side (a loaded machine's stalls hit single
     * samples; medians ignore them), then their ratio. The figures are medians over the runs. */
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < per_run; i++) {
            if ((i ^ r) & 1) { /* alternate which goes first */
                sm[i] = one_mproc();
                sf[i] = one_fork();
            } else {
                sf[i] = one_fork();
                sm[i] = one_mproc();
            }
        }
        mp_us[r] = bench_median(sm, per_run) * 1e6;
        fork_us[r] = bench_median(sf, per_run) * 1e6;
        ratio[r] = mp_us[r] / fork_us[r];
        bench_note("run %d/%d: mproc %.1f us, fork %.1f us, ratio %.3f", r + 1, runs, mp_us[r],
                   fork_us[r], ratio[r]);
    }
    bench_emit("process.start_join.us", bench_median(mp_us, runs), "us");
    bench_emit("fork.start_join.us", bench_median(fork_us, runs), "us");
    bench_emit("process.start_join.ratio_fork", bench_median(ratio, runs), "x");

    char keys[4][64];
    double vals[4];
    int n = bench_python("process_start_join.py", bench_quick() ? "50" : "200", keys, vals, 4);
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i], "start_join_us") == 0)
            bench_emit("python.process.start_join.us", vals[i], "us");
    free(mp_us);
    free(fork_us);
    free(ratio);
    free(sm);
    free(sf);
    return 0;
}
