/* SPDX-License-Identifier: MIT */
/* bench_util.c - see bench_util.h. */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/wait.h>
#include <time.h>

#include "bench_util.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_quantile(const double *v, int n, double q)
{
    if (n <= 0) return 0;
    double *c = malloc(sizeof(double) * (size_t)n);
    if (!c) return 0;
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double pos = q * (n - 1);
    int lo = (int)pos;
    double frac = pos - lo;
    double r = lo + 1 < n ? c[lo] * (1 - frac) + c[lo + 1] * frac : c[lo];
    free(c);
    return r;
}

double bench_median(const double *v, int n)
{
    return bench_quantile(v, n, 0.5);
}

void bench_emit(const char *name, double value, const char *unit)
{
    printf("%s\t%.6g\t%s\n", name, value, unit);
    fflush(stdout);
}

void bench_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void bench_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        bench_note("note: could not pin to cpu %d", cpu);
}

int bench_reps(int dflt)
{
    const char *s = getenv("BENCH_REPS");
    int n = s ? atoi(s) : dflt;
    return n < 5 ? 5 : n;
}

int bench_quick(void)
{
    const char *s = getenv("BENCH_QUICK");
    return s && *s && strcmp(s, "0") != 0;
}

#ifndef BENCH_PYTHON_DIR_DEFAULT
#define BENCH_PYTHON_DIR_DEFAULT "bench/python"
#endif

int bench_python(const char *script, const char *args, char keys[][64], double *values, int max)
{
    const char *dir = getenv("BENCH_PYTHON_DIR");
    if (!dir) dir = BENCH_PYTHON_DIR_DEFAULT;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 '%s/%s' %s", dir, script, args ? args : "");
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    int n = 0;
    char line[256];
    while (fgets(line, sizeof line, f) && n < max) {
        char k[64];
        double v;
        if (sscanf(line, "%63s %lf", k, &v) == 2) {
            snprintf(keys[n], 64, "%s", k);
            values[n++] = v;
        }
    }
    int st = pclose(f);
    return st == 0 ? n : -1;
}

double bench_memcpy_gb_per_s(size_t bytes, int reps)
{
    char *a = malloc(bytes), *b = malloc(bytes);
    double *v = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    if (!a || !b || !v) {
        bench_note("bench: memcpy baseline: out of memory");
        exit(1);
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    for (int r = 0; r < reps; r++) {
        double t = bench_now();
        memcpy(r & 1 ? a : b, r & 1 ? b : a, bytes);
        v[r] = (double)bytes / (bench_now() - t) / 1e9;
    }
    double m = bench_median(v, reps);
    free(a);
    free(b);
    free(v);
    return m;
}

int bench_reap(int pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
