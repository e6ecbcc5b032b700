/* report.c - output: the seed's comparison table, the figure list, JSON and the gnuplot chart. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "mpbench.h"
#include "mproc/common.h"

/* Display width of UTF-8 text (every code point is one column here). */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

/* Output goes through one line buffer so that lines end without trailing blanks. */
static char line[1024];
static size_t linelen;

static void pad(const char *s, int w)
{
    int n = snprintf(line + linelen, sizeof line - linelen, "%s", s);
    if (n > 0) linelen += (size_t)n;
    for (int i = width(s); i < w && linelen < sizeof line - 1; i++)
        line[linelen++] = ' ';
    line[linelen] = '\0';
}

static void endline(void)
{
    while (linelen > 0 && line[linelen - 1] == ' ')
        linelen--;
    line[linelen] = '\0';
    puts(line);
    linelen = 0;
}

/* "label value" for one cell of the efficiency row, or NULL when the figure was not measured. */
static bool cell(char *out, size_t len, const char *label, const char *fig)
{
    mpb_fig *f = mpb_find(fig);
    if (!f) return false;
    char v[48];
    mpb_fmt(v, sizeof v, f->median, f->unit);
    snprintf(out, len, "%s %s", label, v);
    return true;
}

#define COLS  3
#define LINES 7
#define W0    24
#define W     26

void mpb_print_table(void)
{
    static const char *head[COLS] = {"pipe", "message queue", "shared memory"};
    static const char *rows[][COLS + 1] = {
        {"space", "memory", "memory", "memory"},
        {"read/write mode", "two-way or one-way", "first in, first out", "overwrites memory"},
        {"efficiency (seed)", "ordinary", "ordinary", "fast"},
        {"use", "mostly related processes", "convenient, widely used", "more complex"},
        {"needs mutual exclusion", "no", "no", "yes"},
    };
    /* The measured efficiency: the same figures for each column where they exist; the
     * shared-memory column is an Array handed over with an atomic Value flag. */
    static const char *prefix[COLS] = {"pipe", "queue", "array"};
    char eff[COLS][LINES][64];
    int nl[COLS] = {0};
    for (int c = 0; c < COLS; c++) {
        char n[64];
        static const struct {
            const char *label, *suffix;
        } items[] = {{"rtt 64 B same:", "rtt64.same"},
                     {"rtt 64 B cross:", "rtt64.cross"},
                     {"64 B stream:", "tput64.cross"},
                     {"1 MiB stream:", "tput1m.cross"}};
        for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
            snprintf(n, sizeof n, "%s.%s", prefix[c], items[i].suffix);
            if (cell(eff[c][nl[c]], sizeof eff[c][0], items[i].label, n)) nl[c]++;
        }
    }
    if (cell(eff[2][nl[2]], sizeof eff[2][0], "Value+lock:", "value.lock_incr.cross")) nl[2]++;
    if (cell(eff[2][nl[2]], sizeof eff[2][0], "atomic add:", "atomic.incr.cross")) nl[2]++;
    int lines = 0;
    for (int c = 0; c < COLS; c++) {
        if (nl[c] == 0) snprintf(eff[c][nl[c]++], sizeof eff[c][0], "not measured");
        if (nl[c] > lines) lines = nl[c];
    }

    struct utsname un;
    if (uname(&un) != 0) snprintf(un.release, sizeof un.release, "?");
    printf("mpbench%s (mproc %s): medians of %d reps; Linux %s, %d CPUs\n",
           mpb->quick ? " --quick" : "", mp_version(), mpb->reps, un.release, mpb->ncpu);
    if (mpb->tiny) printf("MPBENCH_TINY is set: the work is cut down, the figures mean nothing\n");
    printf("\n");
    pad("", W0);
    for (int c = 0; c < COLS; c++)
        pad(head[c], W);
    endline();
    for (int i = 0; i < W0 + COLS * W - 2; i++)
        putchar('-');
    printf("\n");
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        pad(rows[r][0], W0);
        for (int c = 0; c < COLS; c++)
            pad(rows[r][c + 1], W);
        endline();
        if (r == 2) {
            for (int l = 0; l < lines; l++) {
                pad(l == 0 ? "efficiency (measured)" : "", W0);
                for (int c = 0; c < COLS; c++)
                    pad(l < nl[c] ? eff[c][l] : "", W);
                endline();
            }
        }
    }
    printf(
        "\nrtt = round trip (median); same/cross = both processes on CPU 0 / on CPUs 0 and 1;\n"
        "streams run across CPUs. Shared memory = an mp Array handed over by an atomic Value.\n");
}

/* Figures computed from two measured ones: num / den. */
static const struct {
    const char *name, *num, *den, *what;
} derived[] = {
    {"pipe.tput1m.ratio_memcpy", "pipe.tput1m.cross", "raw.memcpy1m", "pipe 1 MiB / memcpy"},
    {"queue.tput1m.ratio_memcpy", "queue.tput1m.cross", "raw.memcpy1m", "queue 1 MiB / memcpy"},
    {"array.tput1m.ratio_memcpy", "array.tput1m.cross", "raw.memcpy1m", "Array 1 MiB / memcpy"},
    {"pipe.rtt64.same.ratio_raw", "pipe.rtt64.same", "raw.pipe.rtt64.same",
     "pipe rtt / raw pipe rtt, same CPU"},
    /* As issue 3 defines them: against a raw pipe's round trip (bench_queue uses the same). */
    {"queue.rtt64.same.ratio_pipe", "queue.rtt64.same", "raw.pipe.rtt64.same",
     "queue rtt / raw pipe rtt, same CPU"},
    {"queue.rtt64.cross.ratio_pipe", "queue.rtt64.cross", "raw.pipe.rtt64.cross",
     "queue rtt / raw pipe rtt, cross-CPU"},
    {"lock.uncontended.ratio_mutex", "lock.uncontended", "raw.mutex", "mp lock / raw robust mutex"},
    {"signal.rtt.same.ratio_raw", "signal.rtt.same", "raw.signal.rtt.same",
     "mp signal rtt / raw kill+sigwaitinfo"},
};
#define NDERIVED (sizeof derived / sizeof derived[0])

static double derived_value(size_t i)
{
    mpb_fig *a = mpb_find(derived[i].num), *b = mpb_find(derived[i].den);
    return a && b && b->median > 0 ? a->median / b->median : NAN;
}

/* How many times faster mproc is than Python (> 1: mproc wins). */
static double speedup(const mpb_fig *f)
{
    if (isnan(f->python) || f->python <= 0 || f->median <= 0) return NAN;
    return f->better == MPB_HIGHER ? f->median / f->python : f->python / f->median;
}

void mpb_print_figures(bool compare)
{
    printf("\n%s (median of %d reps; p99 of the round trips; spread = min .. max of the reps)\n",
           mpb->quick ? "Key figures" : "Figures", mpb->reps);
    pad("  figure", 30);
    if (compare) {
        pad("mproc", 14);
        pad("python", 14);
        pad("mproc vs python", 0);
    } else {
        pad("median", 14);
        pad("p99", 11);
        pad("spread", 0);
    }
    endline();
    const char *group = "";
    for (int i = 0; i < mpb->nfigs; i++) {
        mpb_fig *f = &mpb->figs[i];
        if (strstr(f->name, ".p99")) continue;
        size_t gl = strcspn(f->name, ".");
        if (strncmp(group, f->name, gl) != 0 || group[gl] != '.') {
            if (*group) endline();
            group = f->name;
        }
        char v[48], p[48], sp[100], n99[80];
        mpb_fmt(v, sizeof v, f->median, f->unit);
        pad("  ", 2);
        pad(f->name, 28);
        pad(v, 14);
        if (compare) {
            char py[48], r[48];
            mpb_fmt(py, sizeof py, f->python, f->unit);
            double s = speedup(f);
            if (isnan(s))
                snprintf(r, sizeof r, "-");
            else if (s > 0.95 && s < 1.05)
                snprintf(r, sizeof r, "about the same");
            else
                snprintf(r, sizeof r, "%.1fx %s", s >= 1 ? s : 1 / s, s >= 1 ? "faster" : "slower");
            pad(isnan(f->python) ? "-" : py, 14);
            pad(r, 0);
        } else {
            snprintf(n99, sizeof n99, "%s.p99", f->name);
            mpb_fig *f99 = mpb_find(n99);
            if (f99)
                mpb_fmt(p, sizeof p, f99->median, f99->unit);
            else
                snprintf(p, sizeof p, "-");
            mpb_fmt_range(sp, sizeof sp, f->min, f->max, f->median, f->unit);
            pad(p, 11);
            pad(sp, 0);
        }
        endline();
    }
    printf("\n  names: rtt64 = round trip of 64 B, tput1m = stream of 1 MiB messages (4k: 4 KiB);\n"
           "  same = both processes on CPU 0, cross = on CPUs 0 and 1. mpbench --list explains.\n");
    bool any = false;
    for (size_t i = 0; i < NDERIVED; i++) {
        double r = derived_value(i);
        if (isnan(r)) continue;
        if (!any) printf("\nRatios in this run\n");
        any = true;
        printf("  %-28s %-13.3f %s\n", derived[i].name, r, derived[i].what);
    }
    if (mpb->nunavail) printf("\n");
    for (int i = 0; i < mpb->nunavail; i++)
        printf("  %s\n", mpb->unavailable[i]);
    if (mpb->failures)
        printf("\n  %d measurement(s) failed; see the messages on stderr\n", mpb->failures);
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void json_num(double v)
{
    if (isnan(v) || isinf(v))
        printf("null");
    else
        printf("%.6g", v);
}

void mpb_print_json(bool compare, const char *python_status)
{
    printf("{\n  \"tool\": \"mpbench\",\n  \"version\": ");
    json_str(mp_version());
    printf(",\n  \"quick\": %s,\n  \"tiny\": %s,\n  \"reps\": %d,\n  \"cpus\": %d,\n",
           mpb->quick ? "true" : "false", mpb->tiny ? "true" : "false", mpb->reps, mpb->ncpu);
    printf("  \"figures\": [");
    for (int i = 0; i < mpb->nfigs; i++) {
        mpb_fig *f = &mpb->figs[i];
        printf("%s\n    {\"name\": ", i ? "," : "");
        json_str(f->name);
        printf(", \"label\": ");
        json_str(f->label);
        printf(", \"value\": ");
        json_num(f->median);
        printf(", \"unit\": ");
        json_str(f->unit);
        printf(", \"better\": \"%s\", \"median\": ", f->better == MPB_HIGHER ? "higher" : "lower");
        json_num(f->median);
        printf(", \"spread\": {\"min\": ");
        json_num(f->min);
        printf(", \"max\": ");
        json_num(f->max);
        printf(", \"q1\": ");
        json_num(f->q1);
        printf(", \"q3\": ");
        json_num(f->q3);
        printf("}, \"reps\": %d, \"samples\": [", f->reps);
        for (int r = 0; r < f->reps; r++) {
            if (r) printf(", ");
            json_num(f->rep[r]);
        }
        printf("]");
        if (f->size) {
            /* A stream in both units: messages per second and MB per second. */
            double msgs = strcmp(f->unit, "msg/s") == 0 ? f->median : f->median * 1e6 / f->size;
            printf(", \"size_bytes\": %zu, \"msg_per_s\": ", f->size);
            json_num(msgs);
            printf(", \"mb_per_s\": ");
            json_num(msgs * (double)f->size / 1e6);
        }
        if (compare) {
            printf(", \"python\": ");
            json_num(f->python);
            printf(", \"ratio_python\": ");
            json_num(!isnan(f->python) && f->python > 0 ? f->median / f->python : NAN);
            printf(", \"speedup_python\": ");
            json_num(speedup(f));
        }
        printf("}");
    }
    printf("\n  ],\n  \"ratios\": [");
    bool first = true;
    for (size_t i = 0; i < NDERIVED; i++) {
        double r = derived_value(i);
        if (isnan(r)) continue;
        printf("%s\n    {\"name\": ", first ? "" : ",");
        first = false;
        json_str(derived[i].name);
        printf(", \"value\": ");
        json_num(r);
        printf(", \"unit\": \"ratio\", \"what\": ");
        json_str(derived[i].what);
        printf("}");
    }
    printf("\n  ],\n  \"unavailable\": [");
    for (int i = 0; i < mpb->nunavail; i++) {
        printf("%s", i ? ", " : "");
        json_str(mpb->unavailable[i]);
    }
    printf("],\n  \"failures\": %d", mpb->failures);
    if (python_status) {
        printf(",\n  \"python\": ");
        json_str(python_status);
    }
    printf("\n}\n");
}

/* ---- gnuplot ------------------------------------------------------------------------------- */

/* One panel per unit: bars of medians with min..max error bars, Python beside them when
 * compared. Log scale, since figures of one unit span orders of magnitude. */
int mpb_plot(const char *path, bool compare)
{
    const char *units[8];
    int nunits = 0;
    for (int i = 0; i < mpb->nfigs; i++) {
        const mpb_fig *f = &mpb->figs[i];
        int u = 0;
        while (u < nunits && strcmp(units[u], f->unit) != 0)
            u++;
        if (u == nunits && nunits < 8 && !strstr(f->name, ".p99")) units[nunits++] = f->unit;
    }
    if (nunits == 0) {
        fprintf(stderr, "mpbench: --plot: nothing was measured\n");
        return -1;
    }
    const char *gp = mpb_find_program("MPBENCH_GNUPLOT", "gnuplot");
    if (!gp) {
        fprintf(stderr, "mpbench: --plot needs gnuplot (Debian: gnuplot-nox)\n");
        return -1;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s'", gp);
    unlink(path);
    fflush(stdout);
    FILE *g = popen(cmd, "w");
    if (!g) {
        perror("mpbench: popen gnuplot");
        return -1;
    }
    fprintf(g, "set terminal pngcairo size 1400,%d font 'sans,9'\n", 330 * nunits + 40);
    fprintf(g, "set output '%s'\n", path);
    fprintf(g, "set multiplot layout %d,1 title 'mpbench %s: medians, bars min..max%s'\n", nunits,
            mp_version(), compare ? ", python beside mproc" : "");
    fprintf(g, "set style data histogram\nset style fill solid 0.7 border -1\n"
               "set boxwidth 0.8\nset logscale y\nset grid ytics\nset xtics rotate by -35\n"
               "set key top left\nset termoption noenhanced\n");
    fprintf(g, compare ? "set style histogram clustered gap 1\n"
                       : "set style histogram errorbars gap 1 lw 1\n");
    for (int u = 0; u < nunits; u++) {
        fprintf(g, "set ylabel '%s'\n", strcmp(units[u], "us") == 0 ? "microseconds" : units[u]);
        if (compare)
            fprintf(g, "plot '-' using 2:xtic(1) title 'mproc', '-' using 2 title 'python'\n");
        else
            fprintf(g, "plot '-' using 2:3:4:xtic(1) title 'mproc'\n");
        for (int pass = 0; pass < (compare ? 2 : 1); pass++) {
            for (int i = 0; i < mpb->nfigs; i++) {
                mpb_fig *f = &mpb->figs[i];
                if (strcmp(f->unit, units[u]) != 0 || strstr(f->name, ".p99")) continue;
                double v = pass ? f->python : f->median;
                if (compare && isnan(v))
                    fprintf(g, "\"%s\" NaN\n", f->name);
                else if (compare)
                    fprintf(g, "\"%s\" %g\n", f->name, v);
                else
                    fprintf(g, "\"%s\" %g %g %g\n", f->name, v, f->min, f->max);
            }
            fprintf(g, "e\n");
        }
    }
    fprintf(g, "unset multiplot\n");
    int st = pclose(g);
    struct stat sb;
    if (st != 0 || stat(path, &sb) != 0 || sb.st_size == 0) {
        fprintf(stderr, "mpbench: gnuplot failed to write %s\n", path);
        return -1;
    }
    if (mpb->progress || isatty(2)) fprintf(stderr, "mpbench: chart written to %s\n", path);
    return 0;
}
