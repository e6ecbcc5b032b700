/* SPDX-License-Identifier: MIT */
/* report.c - output: the IPC comparison table, the figure list, JSON and the gnuplot chart. */
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
#include "mproc/spin.h"

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

/* The one line under the table that says why mproc's cross-CPU round trips beat a raw pipe's
 * by an order of magnitude, and what that costs: a waiter spins instead of sleeping, so both
 * processes keep their CPUs busy during a ping-pong. */
static void print_spin_line(void)
{
    const char *who = "queue";
    mpb_fig *c = mpb_find("queue.rtt64.cross.cores");
    if (!c) {
        who = "pipe";
        c = mpb_find("pipe.rtt64.cross.cores");
    }
    if (!c) return;
    mpb_fig *raw = mpb_find("raw.pipe.rtt64.cross.cores");
    char rawpart[48] = "";
    if (raw) snprintf(rawpart, sizeof rawpart, " (raw pipe %.2f)", raw->median);
    if (!mp_spin_get())
        printf("Spinning is off (MPROC_SPIN=0): %.2f CPUs busy in %s "
               "ping-pong%s\n",
               c->median, who, rawpart);
    else
        printf("Cross-CPU is fast as waiters spin \xe2\x89\xa4 50 \xc2\xb5s; cost: %.2f CPUs busy "
               "in %s ping-pong%s\n",
               c->median, who, rawpart);
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
        {"efficiency (textbook)", "ordinary", "ordinary", "fast"},
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
    print_spin_line();
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

/* What the cross-CPU round trips cost in CPU time: spinning keeps the waiter busy. */
static void print_cpu_cost(int nw)
{
    bool any = false;
    for (int i = 0; i < mpb->nfigs; i++) {
        const mpb_fig *f = &mpb->figs[i];
        size_t n = strlen(f->name);
        if (n < 10 || strcmp(f->name + n - 10, ".cross.cpu") != 0) continue;
        char base[64], cn[80], v[48], rt[48];
        snprintf(base, sizeof base, "%.*s", (int)(n - 4), f->name);
        snprintf(cn, sizeof cn, "%s.cores", base);
        mpb_fig *c = mpb_find(cn), *r = mpb_find(base);
        if (!c || !r) continue;
        if (!any) {
            printf("\nCPU cost of the cross-CPU round trips (both processes; %s)\n",
                   mp_spin_get() ? "spinning on" : "spinning off: MPROC_SPIN=0");
            pad("  figure", nw + 2);
            pad("round trip", 14);
            pad("CPU time", 14);
            pad("CPUs busy", 0);
            endline();
        }
        any = true;
        mpb_fmt(rt, sizeof rt, r->median, r->unit);
        mpb_fmt(v, sizeof v, f->median, f->unit);
        pad("  ", 2);
        pad(base, nw);
        pad(rt, 14);
        pad(v, 14);
        char cs[32];
        snprintf(cs, sizeof cs, "%.2f", c->median);
        pad(cs, 0);
        endline();
    }
}

void mpb_print_figures(bool compare)
{
    /* The name column fits the longest name shown (peers' names are long). */
    int nw = 28;
    for (int i = 0; i < mpb->nfigs; i++)
        if (!mpb_is_aux(mpb->figs[i].name) && (int)strlen(mpb->figs[i].name) + 1 > nw)
            nw = (int)strlen(mpb->figs[i].name) + 1;
    printf("\n%s (median of %d reps; p99 of the round trips; spread = min .. max of the reps)\n",
           mpb->quick ? "Key figures" : "Figures", mpb->reps);
    pad("  figure", nw + 2);
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
        if (mpb_is_aux(f->name)) continue;
        size_t gl = strcspn(f->name, ".");
        if (strncmp(group, f->name, gl) != 0 || group[gl] != '.') {
            if (*group) endline();
            group = f->name;
        }
        char v[48], p[48], sp[100], n99[80];
        mpb_fmt(v, sizeof v, f->median, f->unit);
        pad("  ", 2);
        pad(f->name, nw);
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
    print_cpu_cost(nw);
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

/* ---- --compare peers, --tsv ---------------------------------------------------------------- */

void mpb_print_peers(void)
{
    static const struct {
        const char *label, *rtt, *tput; /* figure prefixes for the round trips and the streams */
    } rows[] = {
        {"raw pipe(2)", "raw.pipe", "raw.pipe"},
        {"POSIX mq", "peers.mq", "peers.mq"},
        {"ZeroMQ ipc REQ/REP", "peers.zmq_reqrep", NULL},
        {"ZeroMQ ipc PUSH/PULL", NULL, "peers.zmq_pushpull"},
        {"mproc mp_conn pipe", "pipe", "pipe"},
        {"mproc mp_queue", "queue", "queue"},
    };
    static const struct {
        const char *head, *suffix;
        bool rtt;
    } cols[] = {{"rtt 64 B same", "rtt64.same", true},
                {"rtt 64 B cross", "rtt64.cross", true},
                {"CPUs busy", "rtt64.cross.cores", true},
                {"64 B stream", "tput64.cross", false},
                {"1 MiB stream", "tput1m.cross", false}};
    printf("\nSide by side with what you would otherwise pick (medians; CPUs busy = CPU time of\n"
           "both processes during the cross-CPU round trips / wall time)\n");
    pad("  mechanism", 24);
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        pad(cols[c].head, 15);
    endline();
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        pad("  ", 2);
        pad(rows[r].label, 22);
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            const char *pre = cols[c].rtt ? rows[r].rtt : rows[r].tput;
            char n[96], v[48] = "-";
            if (pre) {
                snprintf(n, sizeof n, "%s.%s", pre, cols[c].suffix);
                mpb_fig *f = mpb_find(n);
                if (f && strcmp(f->unit, "cores") == 0)
                    snprintf(v, sizeof v, "%.2f", f->median);
                else if (f)
                    mpb_fmt(v, sizeof v, f->median, f->unit);
                else
                    snprintf(v, sizeof v, "n/a");
            }
            pad(v, 15);
        }
        endline();
    }
    printf("  - = not this pattern's job (REQ/REP is lock-step, PUSH/PULL one-way); n/a = not\n"
           "  measured (see the notes above). mproc's waiters spin before sleeping (MPROC_SPIN=0\n"
           "  turns that off); the others block at once.\n");
}

void mpb_print_tsv(void)
{
    for (int i = 0; i < mpb->nfigs; i++) {
        const mpb_fig *f = &mpb->figs[i];
        if (!isnan(f->median)) printf("%s\t%.6g\t%s\n", f->name, f->median, f->unit);
    }
    fflush(stdout);
}

/* ---- gnuplot ------------------------------------------------------------------------------- */

/* Who measured a figure: the colours and the legend of the chart. */
enum { S_RAW, S_MPROC, S_PEER, S_PYTHON, NSERIES };
static const char *const series_title[NSERIES] = {"kernel baseline, no mproc (raw.*)", "mproc",
                                                  "other IPC library (peers.*)",
                                                  "Python multiprocessing"};
static const char *const series_colour[NSERIES] = {"#8c8c8c", "#1f6fb4", "#2ca02c", "#ff7f0e"};

static int series_of(const mpb_fig *f)
{
    if (strncmp(f->name, "raw.", 4) == 0) return S_RAW;
    if (strncmp(f->name, "peers.", 6) == 0) return S_PEER;
    return S_MPROC;
}

static bool plotted(const mpb_fig *f, const char *unit)
{
    return strcmp(f->unit, unit) == 0 && !mpb_is_aux(f->name) && !isnan(f->median) && f->median > 0;
}

/* One panel per unit, one slot per figure: a bar for the median with a min..max error bar,
 * coloured by who measured it (kernel baseline, mproc, another library), and Python's bar beside
 * mproc's when compared. The y axis is logarithmic (figures of one unit span orders of
 * magnitude); its floor is a decade below the smallest value so that every bar shows. */
int mpb_plot(const char *path, bool compare)
{
    const char *units[8];
    int nunits = 0;
    for (int i = 0; i < mpb->nfigs; i++) {
        const mpb_fig *f = &mpb->figs[i];
        int u = 0;
        while (u < nunits && strcmp(units[u], f->unit) != 0)
            u++;
        if (u == nunits && nunits < 8 && plotted(f, f->unit)) units[nunits++] = f->unit;
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
    int maxslots = 0;
    for (int u = 0; u < nunits; u++) {
        int k = 0;
        for (int i = 0; i < mpb->nfigs; i++)
            k += plotted(&mpb->figs[i], units[u]);
        if (k > maxslots) maxslots = k;
    }
    /* Room for each slot's label and value (two bars per slot when Python is beside). */
    int width = (compare ? 95 : 65) * maxslots + 260;
    if (width < 1200) width = 1200;
    int panel = 420;
    fprintf(g, "set terminal pngcairo size %d,%d font 'sans,10'\n", width, panel * nunits + 50);
    fprintf(g, "set output '%s'\n", path);
    fprintf(g, "set termoption noenhanced\nset encoding utf8\n");
    fprintf(g,
            "set multiplot layout %d,1 title \"mpbench %s, %d CPUs: medians of %d reps, lines "
            "= min..max; log scale%s\" font 'sans,12'\n",
            nunits, mp_version(), mpb->ncpu, mpb->reps,
            mpb->tiny ? " (MPBENCH_TINY: meaningless)" : "");
    fprintf(g, "set logscale y\nset grid ytics mytics lc rgb '#dddddd'\nset border 3\n"
               "set tics nomirror\nset xtics rotate by 40 right scale 0 font 'sans,9'\n"
               "set lmargin 14\nset rmargin 4\nset bmargin 11\n"
               "set key outside top center horizontal maxrows 1 samplen 2 width 2 font 'sans,9'\n"
               "set style fill solid 0.85 border rgb '#333333'\n");
    for (int u = 0; u < nunits; u++) {
        /* Which series have bars here, the value range, and the slots. */
        bool has[NSERIES] = {false};
        double lo = INFINITY, hi = 0;
        int nslot = 0;
        for (int i = 0; i < mpb->nfigs; i++) {
            const mpb_fig *f = &mpb->figs[i];
            if (!plotted(f, units[u])) continue;
            nslot++;
            has[series_of(f)] = true;
            double vals[] = {f->median, f->min, f->max, compare ? f->python : NAN};
            for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++)
                if (!isnan(vals[k]) && vals[k] > 0) {
                    if (vals[k] < lo) lo = vals[k];
                    if (vals[k] > hi) hi = vals[k];
                }
            if (compare && !isnan(f->python) && f->python > 0) has[S_PYTHON] = true;
        }
        double floor_ = pow(10, floor(log10(lo)) - (lo / pow(10, floor(log10(lo))) < 2 ? 1 : 0));
        double ceil_ = pow(10, ceil(log10(hi * 1.5)));
        /* Times in their own unit (gnuplot's SI prefix for micro is a plain "u"); rates with
         * k/M/G prefixes, MB/s as bytes/s so that they read 100M, 1G, 10G. */
        bool time = strcmp(units[u], "us") == 0 || strcmp(units[u], "ns") == 0;
        bool mb = strcmp(units[u], "MB/s") == 0;
        const char *unitname = strcmp(units[u], "us") == 0   ? "microseconds"
                               : strcmp(units[u], "ns") == 0 ? "nanoseconds"
                               : mb                          ? "bytes/s"
                                                             : units[u];
        double scale = mb ? 1e6 : 1;
        fprintf(g, "set format y '%s'\n", time ? "%g" : "%.0s%c");
        bool lower = false;
        for (int i = 0; i < mpb->nfigs; i++)
            if (plotted(&mpb->figs[i], units[u])) lower = mpb->figs[i].better == MPB_LOWER;
        fprintf(g, "set ylabel \"%s (%s is better)\"\n", unitname, lower ? "lower" : "higher");
        /* At least four slots wide, so that a lone bar does not fill the panel. */
        fprintf(g, "set yrange [%g:%g]\nset xrange [-0.6:%g]\n", floor_ * scale, ceil_ * scale,
                (nslot < 4 ? 4 : nslot) - 0.4);
        /* Data: slot, value, min, max, label (one block per series present). */
        fprintf(g, "set xtics (");
        int slot = 0;
        for (int i = 0; i < mpb->nfigs; i++) {
            const mpb_fig *f = &mpb->figs[i];
            if (!plotted(f, units[u])) continue;
            fprintf(g, "%s\"%s\" %d", slot ? ", " : "", f->name, slot);
            slot++;
        }
        fprintf(g, ")\n");
        for (int sr = 0; sr < NSERIES; sr++) {
            if (!has[sr]) continue;
            fprintf(g, "$s%d << EOD\n", sr);
            slot = 0;
            for (int i = 0; i < mpb->nfigs; i++) {
                const mpb_fig *f = &mpb->figs[i];
                if (!plotted(f, units[u])) continue;
                bool pair = compare && !isnan(f->python) && f->python > 0;
                double x = slot, w = pair ? 0.38 : 0.7;
                char lab[48];
                if (sr == S_PYTHON && pair) {
                    mpb_fmt(lab, sizeof lab, f->python, f->unit);
                    fprintf(g, "%g %g %g %g %g \"%s\"\n", x + 0.2, f->python * scale,
                            f->python * scale, f->python * scale, w, lab);
                } else if (sr != S_PYTHON && series_of(f) == sr) {
                    mpb_fmt(lab, sizeof lab, f->median, f->unit);
                    fprintf(g, "%g %g %g %g %g \"%s\"\n", pair ? x - 0.2 : x, f->median * scale,
                            f->min * scale, f->max * scale, w, lab);
                }
                slot++;
            }
            fprintf(g, "EOD\n");
        }
        /* Every bar first, then the error bars and the value labels, so that no bar hides a
         * neighbour's label. */
        fprintf(g, "plot ");
        const char *sep = "";
        for (int sr = 0; sr < NSERIES; sr++) {
            if (!has[sr]) continue;
            fprintf(g,
                    "%s$s%d using 1:2:($1-$5/2):($1+$5/2):(%g):2 with boxxyerror lc rgb '%s' "
                    "title '%s'",
                    sep, sr, floor_ * scale, series_colour[sr], series_title[sr]);
            sep = ", ";
        }
        for (int sr = 0; sr < NSERIES; sr++)
            if (has[sr])
                fprintf(g,
                        ", $s%d using 1:3:(0):($4-$3) with vectors nohead lc rgb '#222222' "
                        "notitle, $s%d using 1:4:6 with labels nopoint offset 0,0.7 "
                        "font 'sans,8' notitle",
                        sr, sr);
        fprintf(g, "\n");
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
