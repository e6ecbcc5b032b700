/* SPDX-License-Identifier: MIT */
/* mpbench.h - mpbench's private interfaces: figures, the run context, the measuring drivers.
 *
 * Shape of the program: main.c parses options and runs every benchmark ("pipe", "queue", ...)
 * listed in main.c's table. A benchmark is one small function that asks mpb_want() whether a
 * figure is wanted and, if so, measures it with a driver of run.c: a round trip (mpb_rtt), a
 * stream (mpb_tput) or a loop timed in one process (mpb_loop). Each driver runs >= 5 repetitions
 * and records the median and spread as one mpb_fig. report.c prints them (table, key figures,
 * JSON, gnuplot), python.c runs the Python peer for --compare python.
 */
#ifndef MPBENCH_H
#define MPBENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

#define MPB_MAXREPS 101
#define MPB_MAXFIGS 512

/* Which way a figure improves. */
enum { MPB_LOWER = -1, MPB_HIGHER = 1 };

/* One measured figure: the median over reps, and the spread (min..max) over reps. */
typedef struct mpb_fig {
    char name[64];    /* pipe.rtt64.same */
    char label[80];   /* round trip 64 B, same CPU */
    const char *unit; /* "us", "ns", "msg/s", "MB/s", "op/s", "task/s" */
    int better;       /* MPB_LOWER or MPB_HIGHER */
    int reps;
    double rep[MPB_MAXREPS];
    double median, min, max, q1, q3;
    double python; /* Python's median for the same figure, or NaN */
    size_t size;   /* message size of a stream (tput) figure, else 0 */
} mpb_fig;

/* CPU placement of a two-process measurement. */
typedef enum mpb_place { MPB_SAME = 0, MPB_CROSS = 1 } mpb_place;

typedef struct mpb_ctx {
    bool quick;    /* --quick: fewer figures, shorter reps */
    bool tiny;     /* MPBENCH_TINY=1: minimal work (tests) */
    bool listing;  /* --list: mpb_want prints names and measures nothing */
    bool progress; /* progress lines on stderr */
    int reps;      /* repetitions per figure (>= 5 unless tiny) */
    int ncpu;
    char **only;  /* --only names, NULL-terminated; NULL means everything */
    double rep_s; /* target duration of one throughput repetition, seconds */
    long rtt_n;   /* round trips per repetition */
    mpb_fig figs[MPB_MAXFIGS];
    int nfigs;
    char unavailable[64][192]; /* "pool: not available (...)" lines */
    int nunavail;
    int failures;    /* measurements that failed */
    int wanted;      /* figures mpb_want() said yes to */
    double start_s;  /* mpb_now() when measuring began */
    double budget_s; /* --quick: skip figures not started within this many seconds; 0: none */
    bool peers;      /* --compare peers: measure POSIX mq and ZeroMQ beside mproc */
} mpb_ctx;

extern mpb_ctx *mpb;              /* the one context (signal handler and drivers use it) */
extern volatile int mpb_stopping; /* set by SIGINT/SIGTERM */

/* ---- figures (stats.c) -------------------------------------------------------------------- */

/* True when the figure `name` should be measured (matches --only; not in --list mode, which
 * prints the name instead). Benchmarks call it before every measurement. */
bool mpb_want(const char *name);
/* As mpb_want, but in --quick mode only figures with in_quick (or named by a dotted --only). */
bool mpb_wantq(const char *name, bool in_quick);
/* True when any figure under prefix "bench" may be wanted (to skip set-up work). */
bool mpb_want_any(const char *bench);
/* Records a figure from reps values. Returns it (NULL when the table is full). */
mpb_fig *mpb_record(const char *name, const char *label, const char *unit, int better,
                    const double *v, int n);
mpb_fig *mpb_find(const char *name);
/* True for a figure that belongs to another one (<name>.p99, .cpu, .cores): listed apart, never
 * plotted or sent to the Python peer. */
bool mpb_is_aux(const char *name);
void mpb_unavailable(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mpb_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mpb_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double mpb_median(const double *v, int n);
double mpb_quantile(const double *v, int n, double q);
double mpb_now(void); /* CLOCK_MONOTONIC seconds */

/* ---- processes (run.c) --------------------------------------------------------------------- */

typedef int (*mpb_child_fn)(void *arg);

/* Pins the calling process to cpu (cpu % ncpu). */
void mpb_pin(int cpu);
/* Forks a child pinned to cpu (-1: not pinned) that runs fn(arg) and _exits with its result.
 * The child is tracked so that Ctrl-C kills and reaps it. Returns the pid or -errno. */
pid_t mpb_fork(int cpu, mpb_child_fn fn, void *arg);
/* The pid of the last child mpb_fork started (channels that signal their peer use it). */
extern pid_t mpb_last_child;
/* Waits for a child of mpb_fork (at most timeout seconds, then SIGKILL); returns its exit code,
 * 128+signal when killed. */
int mpb_reap(pid_t pid, double timeout);
/* Registers / forgets an extra process group to kill on Ctrl-C (the Python peer). */
void mpb_track_group(pid_t pgid);
/* Kills and reaps every child, the Python peer's group and whatever comes back to us as
 * subreaper, until none is left (at most 3 s). Async-signal-safe. */
void mpb_kill_all(void);
/* The signals that stop mpbench (SIGINT, SIGTERM, SIGHUP) are blocked in every thread and taken
 * by one signal thread (main.c); a child removes them from *mask before it runs or execs. */
void mpb_unblock_stop_signals(sigset_t *mask);
/* Set while a pool is alive: called on Ctrl-C before the children are killed, so that the pool
 * stops replacing the workers being killed. */
extern void (*volatile mpb_stop_hook)(void);

/* ---- drivers (run.c) ----------------------------------------------------------------------
 * A channel moves messages between the parent and one forked child. The driver creates it
 * before fork (open), both sides keep their end (side 0: parent, 1: child), and calls send/recv
 * with a buffer of the message size. Functions return 0 or a negative code. */
typedef struct mpb_chan {
    const char *name; /* for messages */
    int (*open)(void **st, size_t maxmsg);
    void (*side)(void *st, int side); /* after fork: keep `side`, drop the other (may be NULL) */
    int (*send)(void *st, int side, const void *buf, size_t len);
    int (*recv)(void *st, int side, void *buf, size_t len);
    void (*close)(void *st, int side); /* release this side's part */
} mpb_chan;

/* Round trip: the parent sends `size` bytes and waits for the echo, rtt_n times per rep.
 * Records <name> (median round trip, us), <name>.p99, <name>.cpu (CPU time of both processes per
 * round trip, us) and <name>.cores (CPU time of both / wall time: how many CPUs stay busy). */
int mpb_rtt(const char *name, const char *label, const mpb_chan *ch, size_t size, mpb_place pl);
/* Stream: the parent sends messages of `size` bytes as fast as it can, the child receives them.
 * Records msg/s when size < 4096, else MB/s (both go to JSON as <name> with their unit). */
int mpb_tput(const char *name, const char *label, const mpb_chan *ch, size_t size, mpb_place pl);

/* Every round trip and stream figure of a channel: <prefix>.rtt64.same ... <prefix>.tput1m.cross,
 * for the sizes in the mask. In --quick: rtt64 same and cross, tput64 and tput1m cross. */
enum { MPB_S64 = 1, MPB_S4K = 2, MPB_S1M = 4, MPB_SALL = 7 };
void mpb_chan_suite(const char *prefix, const char *what, const mpb_chan *ch, unsigned sizes);

/* A loop timed in the parent: fn(arg, n) does n operations; calibrated so that one rep lasts
 * about rep_s; records nanoseconds per operation when unit is "ns", else operations per second
 * times scale in `unit` (1 MiB copies per second * 1.048576 = MB/s). */
typedef int (*mpb_loop_fn)(void *arg, long n);
int mpb_loop(const char *name, const char *label, mpb_loop_fn fn, void *arg, const char *unit,
             double scale);

/* A loop run by two processes at once (the parent on CPU 0, a child on CPU 0 or 1), each doing
 * n operations of fn; records total operations per second. reset(arg, 0) runs before each rep.
 * check(arg, total) may verify the result after each rep (returns 0 when right). */
int mpb_par(const char *name, const char *label, mpb_place pl, mpb_loop_fn fn, mpb_loop_fn reset,
            int (*check)(void *arg, long total), void *arg);

/* Samples: fn(arg) is one timed event (e.g. start+join a process), run rtt_n-ish times per rep;
 * records median in us and p99. */
typedef int (*mpb_event_fn)(void *arg);
int mpb_events(const char *name, const char *label, mpb_event_fn fn, void *arg, long per_rep);

/* ---- the benchmarks (mech_*.c) ---------------------------------------------------------------
 * Each measures every figure of one mechanism that mpb_want() asks for. */
void mpb_bench_raw(void);
void mpb_bench_pipe(void);
void mpb_bench_queue(void);
void mpb_bench_shm(void);
void mpb_bench_value(void);
void mpb_bench_atomic(void);
void mpb_bench_array(void);
void mpb_bench_lock(void);
void mpb_bench_signal(void);
void mpb_bench_process(void);
void mpb_bench_pool(void);
void mpb_bench_peers(void);

/* ---- output (report.c, python.c) ------------------------------------------------------------ */
void mpb_print_table(void);
void mpb_print_figures(bool compare);
void mpb_print_json(bool compare, const char *python_status);
/* --compare peers: mproc beside a raw pipe, POSIX mq and ZeroMQ, one row per mechanism. */
void mpb_print_peers(void);
/* --tsv: "name<TAB>median<TAB>unit" lines, as the bench/ programs print them (make bench). */
void mpb_print_tsv(void);
int mpb_plot(const char *path, bool compare);
/* The path of prog found on PATH, or the program named by the environment variable env (when set;
 * NULL if it is not executable). NULL when not found. The result stays valid for two calls. */
const char *mpb_find_program(const char *env, const char *prog);
/* Runs the Python peer for the wanted figures; fills figs[].python. Returns 0, or -1 with a
 * message in why. */
int mpb_python(char *why, size_t len);
/* Human-readable value with unit: "3.41 us", "1.82 M msg/s", "2.10 GB/s". */
void mpb_fmt(char *out, size_t len, double v, const char *unit);
/* "lo .. hi unit" in the scale that suits ref. */
void mpb_fmt_range(char *out, size_t len, double lo, double hi, double ref, const char *unit);

#endif
