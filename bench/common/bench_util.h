/* SPDX-License-Identifier: MIT */
/* bench_util.h - shared helpers for the benchmarks: timing, medians, pinning, output.
 *
 * Output contract (make bench): figures go to stdout as "name<TAB>value<TAB>unit" lines and
 * nothing else; progress and notes go to stderr. */
#ifndef MP_BENCH_UTIL_H
#define MP_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic seconds. */
double bench_now(void);
/* Median of n values (sorts a copy). */
double bench_median(const double *v, int n);
/* Value at quantile q in [0,1] (sorts a copy). */
double bench_quantile(const double *v, int n, double q);
/* Print one figure line on stdout and flush. */
void bench_emit(const char *name, double value, const char *unit);
/* Progress/notes on stderr. */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Pin the calling process to cpu (ignored with a note when it fails). */
void bench_pin(int cpu);
/* Repetitions to run: BENCH_REPS from the environment, default `dflt`, at least 5. */
int bench_reps(int dflt);
/* True when BENCH_QUICK is set: benchmarks shrink their work. */
int bench_quick(void);
/* memcpy throughput in GB/s: median of reps copies of `bytes` between two buffers (alternating
 * direction), the baseline the issues' ratio_memcpy figures divide by. Exits on ENOMEM. */
double bench_memcpy_gb_per_s(size_t bytes, int reps);
/* waitpid(pid) retrying EINTR: the exit status, 128+signal when killed, -1 on error. */
int bench_reap(int pid);
/* Run a python3 script from bench/python/ (path resolved from the source dir baked in at build
 * time, or BENCH_PYTHON_DIR) with args; parse "key value" lines from its stdout into keys/values.
 * Returns the number of pairs parsed, or -1 when python3 is missing or the script failed. */
int bench_python(const char *script, const char *args, char keys[][64], double *values, int max);

#endif
