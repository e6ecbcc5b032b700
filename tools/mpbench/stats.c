/* SPDX-License-Identifier: MIT */
/* stats.c - figures: which are wanted (--only, --list), recording reps, medians and spreads. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpbench.h"

double mpb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between closest ranks, as numpy's default. */
double mpb_quantile(const double *v, int n, double q)
{
    if (n <= 0) return NAN;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double pos = q * (n - 1);
    int lo = (int)pos;
    double r = lo + 1 < n ? s[lo] + (pos - lo) * (s[lo + 1] - s[lo]) : s[lo];
    free(s);
    return r;
}

double mpb_median(const double *v, int n)
{
    return mpb_quantile(v, n, 0.5);
}

/* NAME selects a figure when it is the figure's name or a dotted prefix of it:
 * "pipe" selects pipe.rtt64.same, "pipe.rtt64" selects pipe.rtt64.same and .cross. */
static bool name_matches(const char *sel, const char *name)
{
    size_t n = strlen(sel);
    return strncmp(sel, name, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

bool mpb_want(const char *name)
{
    if (mpb_stopping) return false;
    bool ok = !mpb->only;
    for (char **s = mpb->only; s && *s && !ok; s++)
        ok = name_matches(*s, name);
    if (ok && mpb->listing) {
        printf("%s\n", name);
        return false;
    }
    /* --quick promises to finish in 30 s, however loaded the machine: past the budget, the
     * remaining figures are skipped, and the output says which. */
    if (ok && mpb->budget_s > 0 && mpb_now() - mpb->start_s > mpb->budget_s) {
        mpb_unavailable("%s: skipped, the --quick time budget (%.0f s) was used up", name,
                        mpb->budget_s);
        return false;
    }
    mpb->wanted += ok;
    return ok;
}

bool mpb_wantq(const char *name, bool in_quick)
{
    if (mpb->quick && !in_quick) {
        /* Outside the quick set: only when --only names it (or a dotted part of it). */
        bool named = false;
        for (char **s = mpb->only; s && *s; s++)
            named |= strchr(*s, '.') && name_matches(*s, name);
        if (!named) return false;
    }
    return mpb_want(name);
}

bool mpb_want_any(const char *bench)
{
    if (mpb_stopping) return false;
    if (!mpb->only) return true;
    for (char **s = mpb->only; *s; s++)
        if (name_matches(bench, *s) || name_matches(*s, bench)) return true;
    return false;
}

mpb_fig *mpb_find(const char *name)
{
    for (int i = 0; i < mpb->nfigs; i++)
        if (strcmp(mpb->figs[i].name, name) == 0) return &mpb->figs[i];
    return NULL;
}

mpb_fig *mpb_record(const char *name, const char *label, const char *unit, int better,
                    const double *v, int n)
{
    mpb_fig *f = mpb_find(name);
    if (!f) {
        if (mpb->nfigs >= MPB_MAXFIGS) return NULL;
        f = &mpb->figs[mpb->nfigs++];
    }
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->label, sizeof f->label, "%s", label);
    f->unit = unit;
    f->better = better;
    f->reps = n > MPB_MAXREPS ? MPB_MAXREPS : n;
    memcpy(f->rep, v, (size_t)f->reps * sizeof *v);
    f->median = mpb_median(v, f->reps);
    f->q1 = mpb_quantile(v, f->reps, 0.25);
    f->q3 = mpb_quantile(v, f->reps, 0.75);
    f->min = mpb_quantile(v, f->reps, 0.0);
    f->max = mpb_quantile(v, f->reps, 1.0);
    f->python = NAN;
    if (mpb->progress) {
        char a[48], b[96];
        mpb_fmt(a, sizeof a, f->median, unit);
        mpb_fmt_range(b, sizeof b, f->min, f->max, f->median, unit);
        fprintf(stderr, "mpbench: %-26s %-14s (%s)\n", name, a, b);
    }
    return f;
}

void mpb_unavailable(const char *fmt, ...)
{
    if (mpb->nunavail >= (int)(sizeof mpb->unavailable / sizeof mpb->unavailable[0])) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mpb->unavailable[mpb->nunavail++], sizeof mpb->unavailable[0], fmt, ap);
    va_end(ap);
}

void mpb_fail(const char *name, const char *fmt, ...)
{
    if (mpb_stopping) return; /* a peer killed by Ctrl-C is not a failure to report */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mpbench: %s failed: ", name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    mpb->failures++;
}

void mpb_note(const char *fmt, ...)
{
    if (!mpb->progress) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("mpbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The scale and unit to show v in: k/M prefixes for rates, ms/ns for microseconds, GB/s. */
static double scale_of(double v, const char *unit, char *u, size_t ulen)
{
    double f = 1;
    snprintf(u, ulen, "%s", unit);
    if (strcmp(unit, "MB/s") == 0 && v >= 1000) {
        f = 1e-3;
        snprintf(u, ulen, "GB/s");
    } else if (strcmp(unit, "us") == 0 && v >= 1000) {
        f = 1e-3;
        snprintf(u, ulen, "ms");
    } else if (strcmp(unit, "us") == 0 && v < 1) {
        f = 1e3;
        snprintf(u, ulen, "ns");
    } else if (strstr(unit, "/s") && strcmp(unit, "MB/s") != 0 && v >= 1000) {
        f = v >= 1e6 ? 1e-6 : 1e-3;
        snprintf(u, ulen, "%s %s", v >= 1e6 ? "M" : "k", unit);
    }
    if (strcmp(u, "us") == 0) snprintf(u, ulen, "\xc2\xb5s"); /* µs */
    return f;
}

static int prec_of(double v)
{
    return v >= 100 ? 0 : v >= 10 ? 1 : 2;
}

/* Three significant digits in the scale that suits the value: "3.41 µs", "1.82 M msg/s". */
void mpb_fmt(char *out, size_t len, double v, const char *unit)
{
    if (isnan(v)) {
        snprintf(out, len, "n/a");
        return;
    }
    char u[32];
    double f = scale_of(v, unit, u, sizeof u);
    snprintf(out, len, "%.*f %s", prec_of(v * f), v * f, u);
}

/* "lo .. hi unit", both in the scale of ref (the median), so they read against it. */
void mpb_fmt_range(char *out, size_t len, double lo, double hi, double ref, const char *unit)
{
    if (isnan(lo) || isnan(hi)) {
        snprintf(out, len, "n/a");
        return;
    }
    char u[32];
    double f = scale_of(ref, unit, u, sizeof u);
    snprintf(out, len, "%.*f .. %.*f %s", prec_of(lo * f), lo * f, prec_of(hi * f), hi * f, u);
}

bool mpb_is_aux(const char *name)
{
    static const char *const sfx[] = {".p99", ".cpu", ".cores"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && strcmp(name + n - k, sfx[i]) == 0) return true;
    }
    return false;
}
