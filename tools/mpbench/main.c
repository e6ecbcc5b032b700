/* SPDX-License-Identifier: MIT */
/* mpbench - measures every mproc mechanism side by side and fills the IPC comparison table.
 *
 *   mpbench --quick                 the comparison table and the key figures (< 30 s)
 *   mpbench                         every figure, progress on stderr
 *   mpbench --compare python        the same with Python's multiprocessing, and the ratios
 *   mpbench --compare peers         mproc beside a raw pipe, POSIX mq and ZeroMQ
 *   mpbench --json | --tsv | --plot F.png   for machines / make bench / a bar chart
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "avail.h"
#include "mpbench.h"
#include "mproc/common.h"
#ifdef MPB_HAVE_PROCESS
#include "mproc/start.h"
#endif

#ifndef MPROC_TOOL_VERSION
#define MPROC_TOOL_VERSION "0.1.0"
#endif

static mpb_ctx ctx;
mpb_ctx *mpb = &ctx;
volatile int mpb_stopping;

/* The benchmarks, in output order. `missing` is NULL when the module is in this build. */
static const struct bench {
    const char *name;
    const char *what;
    void (*run)(void);
    const char *missing; /* why it cannot run in this build, or NULL */
} benches[] = {
    {"raw", "kernel baselines: raw pipe, memcpy, robust mutex, kill+sigwaitinfo", mpb_bench_raw,
     NULL},
    {"pipe", "mp_conn pipe: round trips and streams", mpb_bench_pipe,
#ifdef MPB_HAVE_PIPE
     NULL},
#else
     "built without mproc/pipe.h"},
#endif
    {"queue", "mp_queue: round trips and streams", mpb_bench_queue,
#ifdef MPB_HAVE_QUEUE
     NULL},
#else
     "built without mproc/queue.h"},
#endif
    {"array", "shared Array bulk transfer, handed over with an atomic Value", mpb_bench_array,
#ifdef MPB_HAVE_SHARED
     NULL},
#else
     "built without mproc/shared.h"},
#endif
    {"value", "shared Value incremented under its lock by two processes", mpb_bench_value,
#if defined(MPB_HAVE_SHARED) && defined(MPB_HAVE_SYNC)
     NULL},
#else
     "built without mproc/shared.h or mproc/sync.h"},
#endif
    {"atomic", "atomic Value: atomic add by two processes", mpb_bench_atomic,
#ifdef MPB_HAVE_SHARED
     NULL},
#else
     "built without mproc/shared.h"},
#endif
    {"lock", "mp_lock acquire+release, uncontended", mpb_bench_lock,
#ifdef MPB_HAVE_SYNC
     NULL},
#else
     "built without mproc/sync.h"},
#endif
    {"signal", "signal round trip: mp_signal_send + mp_sigwaiter", mpb_bench_signal,
#ifdef MPB_HAVE_SIGNALS
     NULL},
#else
     "built without mproc/signals.h"},
#endif
    {"process", "process start: mp_process_new+start+join+free", mpb_bench_process,
#ifdef MPB_HAVE_PROCESS
     NULL},
#else
     "built without mproc/process.h"},
#endif
    {"pool", "process pool: apply round trip, map", mpb_bench_pool,
#ifdef MPB_HAVE_POOL
     NULL},
#else
     "built without mproc/pool.h"},
#endif
    /* Only with --compare peers or --only peers: other libraries, not mproc. */
    {"peers", "other IPC beside mproc: POSIX mq, ZeroMQ ipc PUSH/PULL and REQ/REP", mpb_bench_peers,
     NULL},
};
#define NBENCH ((int)(sizeof benches / sizeof benches[0]))

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: mpbench [options]\n"
           "Measures mproc's processes, pipes, queues, shared memory, locks, signals and pool.\n"
           "\n"
           "  -q, --quick            the comparison table and the key figures (< 30 s)\n"
           "  -r, --reps N           repetitions per figure (default 5, at least 5)\n"
           "  -o, --only NAME[,...]  only these benchmarks or figures (see --list)\n"
           "  -l, --list             list the benchmarks and figure names, measure nothing\n"
           "  -j, --json             print every figure as JSON on stdout\n"
           "  -p, --plot FILE.png    draw a bar chart with gnuplot (kernel baselines, mproc,\n"
           "                         other libraries and Python in their own colours)\n"
           "  -t, --tsv              print every figure as name<TAB>value<TAB>unit lines\n"
           "  -c, --compare WHAT     python: also measure Python's multiprocessing, print ratios;\n"
           "                         peers: measure a raw pipe, POSIX mq and ZeroMQ (when built\n"
           "                         in) beside mproc's pipe and queue; both: python,peers\n"
           "  -v, --verbose          one progress line per figure on stderr (default: full run)\n"
           "  -h, --help             this help\n"
           "  -V, --version          the version\n"
           "\n"
           "\n"
           "Waiters in mproc spin for up to 50 us when their peer runs on another CPU: that makes\n"
           "cross-CPU round trips fast and keeps both CPUs busy meanwhile. MPROC_SPIN=0 in the\n"
           "environment turns spinning off; the round trips then report what blocking costs.\n"
           "\n"
           "Exit status: 0 success, 1 a measurement failed, 2 bad usage, 3 python3 or gnuplot\n"
           "is missing, 130 interrupted.\n");
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "mpbench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

void (*volatile mpb_stop_hook)(void);

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

void mpb_unblock_stop_signals(sigset_t *mask)
{
    sigdelset(mask, SIGINT);
    sigdelset(mask, SIGTERM);
    sigdelset(mask, SIGHUP);
}

/* Ctrl-C, SIGTERM, SIGHUP: stop, kill and reap every child, exit 128+signal (130 for SIGINT).
 * This runs on its own thread, not in a handler, so it may stop a pool properly (a pool's
 * supervisor would otherwise replace the workers as fast as they are killed) while the main
 * thread sits in whatever blocking call it was in. An alarm is the backstop if cleaning up
 * ever hangs. */
static void *signal_thread(void *arg)
{
    sigset_t set;
    stop_signals(&set);
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    mpb_stopping = 1;
    alarm(5);
    void (*hook)(void) = mpb_stop_hook;
    if (hook) hook();
    mpb_kill_all();
    static const char msg[] = "\nmpbench: interrupted; every child was killed and reaped\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(128 + sig);
}

/* While the signal thread cleans up, the main thread may see its peers die and run to the end;
 * it must not exit first (with its own status, children unreaped). */
static void wait_if_stopping(void)
{
    while (mpb_stopping)
        pause();
}

/* True when --only names the peers benchmark (or one of its figures). */
static bool names_peers(void)
{
    for (char **s = ctx.only; s && *s; s++)
        if (strncmp(*s, "peers", 5) == 0 && ((*s)[5] == '\0' || (*s)[5] == '.')) return true;
    return false;
}

static const struct bench *find_bench(const char *sel)
{
    size_t n = strcspn(sel, ".");
    for (int i = 0; i < NBENCH; i++)
        if (strlen(benches[i].name) == n && strncmp(benches[i].name, sel, n) == 0)
            return &benches[i];
    return NULL;
}

/* Splits "a,b,c" into a NULL-terminated array (the string is modified and kept). */
static char **split_names(char *s)
{
    size_t cap = 2;
    for (char *p = s; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof *v);
    if (!v) return NULL;
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ","))
        v[n++] = tok;
    return v;
}

/* The program path of gnuplot or python3 when found on PATH (or the env override). */
const char *mpb_find_program(const char *env, const char *prog)
{
    const char *o = getenv(env);
    if (o && *o) return access(o, X_OK) == 0 ? o : NULL;
    const char *path = getenv("PATH");
    static char buf[2][4096];
    static int slot;
    if (!path) return NULL;
    char *copy = strdup(path);
    const char *found = NULL;
    for (char *d = strtok(copy, ":"); d && !found; d = strtok(NULL, ":")) {
        char *b = buf[slot];
        snprintf(b, sizeof buf[0], "%s/%s", *d ? d : ".", prog);
        if (access(b, X_OK) == 0) {
            found = b;
            slot ^= 1;
        }
    }
    free(copy);
    return found;
}

int main(int argc, char **argv)
{
#ifdef MPB_HAVE_PROCESS
    /* First thing: the children of process.start.spawn and the forkserver are this program
     * again; in them mp_init runs what they were started for and never returns. Here it returns
     * at once, before any thread or option handling. */
    if (mp_init(&argc, &argv) != 0) return 1;
#endif
    static const struct option opts[] = {
        {"quick", no_argument, NULL, 'q'},         {"reps", required_argument, NULL, 'r'},
        {"only", required_argument, NULL, 'o'},    {"list", no_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},          {"plot", required_argument, NULL, 'p'},
        {"compare", required_argument, NULL, 'c'}, {"tsv", no_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},       {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0}};
    bool json = false, tsv = false, compare = false, verbose = false;
    const char *plot = NULL;
    ctx.reps = 5;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":qr:o:ljtp:c:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            ctx.quick = true;
            break;
        case 'r': {
            char *end;
            errno = 0;
            long r = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || r < 5 || r > MPB_MAXREPS)
                return bad_usage("--reps wants a whole number from 5 to 101, not '%s'", optarg);
            ctx.reps = (int)r;
            break;
        }
        case 'o':
            ctx.only = split_names(optarg);
            if (!ctx.only || !ctx.only[0]) return bad_usage("--only wants names%s", "");
            for (char **s = ctx.only; *s; s++)
                if (!find_bench(*s))
                    return bad_usage("unknown benchmark '%s' (mpbench --list shows them)", *s);
            break;
        case 'l':
            ctx.listing = true;
            break;
        case 'j':
            json = true;
            break;
        case 'p':
            plot = optarg;
            break;
        case 't':
            tsv = true;
            break;
        case 'c': {
            char *list = strdup(optarg), *save = NULL;
            for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                if (strcmp(w, "python") == 0)
                    compare = true;
                else if (strcmp(w, "peers") == 0)
                    ctx.peers = true;
                else {
                    free(list);
                    return bad_usage("--compare knows 'python' and 'peers', not '%s'", optarg);
                }
            }
            free(list);
            if (!compare && !ctx.peers) return bad_usage("--compare wants python or peers%s", "");
            break;
        }
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("mpbench %s (libmproc %s)\n", MPROC_TOOL_VERSION, mp_version());
            return 0;
        case ':':
            return bad_usage("option '%s' needs an argument", argv[optind - 1]);
        default:
            if (optopt) {
                char opt[3] = {'-', (char)optopt, '\0'};
                return bad_usage("unknown option '%s'", opt);
            }
            return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument '%s'", argv[optind]);

    ctx.ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) ctx.ncpu = CPU_COUNT(&set);
    }
    if (ctx.ncpu < 1) ctx.ncpu = 1;
    const char *tiny = getenv("MPBENCH_TINY");
    ctx.tiny = tiny && *tiny && strcmp(tiny, "0") != 0;
    ctx.rep_s = ctx.tiny ? 0.002 : ctx.quick ? 0.05 : 0.2;
    ctx.rtt_n = ctx.tiny ? 20 : ctx.quick ? 500 : 3000;
    ctx.progress = verbose || (!ctx.quick && !ctx.listing);

    if (ctx.listing) {
        for (int i = 0; i < NBENCH; i++) {
            if (!mpb_want_any(benches[i].name)) continue;
            if (benches[i].missing)
                printf("# %s: not available (%s)\n", benches[i].name, benches[i].missing);
            else
                printf("# %s: %s\n", benches[i].name, benches[i].what);
            benches[i].run();
        }
        return 0;
    }
    if (plot && !mpb_find_program("MPBENCH_GNUPLOT", "gnuplot")) {
        fprintf(stderr, "mpbench: --plot needs gnuplot, which is not installed "
                        "(Debian: apt-get install gnuplot-nox)\n");
        return 3;
    }
    if (compare && !mpb_find_program("MPBENCH_PYTHON", "python3")) {
        fprintf(stderr, "mpbench: --compare python needs python3, which is not installed\n");
        return 3;
    }

    /* Block the stop signals before any other thread exists (all inherit the mask), so only the
     * signal thread takes them. SIG_IGN from a non-interactive shell's `cmd &` is undone. */
    sigset_t stop;
    stop_signals(&stop);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    /* The signal thread blocks every signal (it is born with all blocked), so that signals the
     * benchmarks direct at the process (SIGUSR1 round trips) reach the main thread's waits. */
    sigset_t all, mine;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &mine);
    pthread_t st;
    int trc = pthread_create(&st, NULL, signal_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
    if (trc != 0) {
        fprintf(stderr, "mpbench: cannot start the signal thread: %s\n", strerror(trc));
        return 1;
    }
    /* Grandchildren (the Python peer's processes) come back to us if their parent dies, so
     * that the Ctrl-C path can reap them too instead of leaving zombies to init. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    atexit(wait_if_stopping);
    double t0 = mpb_now();
    ctx.start_s = t0;
    ctx.budget_s = ctx.quick ? 22 : 0;
    /* --compare peers without --only: the figures of the side-by-side table only. */
    static char *peer_set[] = {"raw.pipe.rtt64",
                               "raw.pipe.tput64.cross",
                               "raw.pipe.tput1m.cross",
                               "pipe",
                               "queue",
                               "peers",
                               NULL};
    if (ctx.peers && !ctx.only) ctx.only = peer_set;
    for (int i = 0; i < NBENCH && !mpb_stopping; i++) {
        if (!mpb_want_any(benches[i].name)) continue;
        if (strcmp(benches[i].name, "peers") == 0 && !ctx.peers && !names_peers()) continue;
        if (benches[i].missing) {
            mpb_unavailable("%s: not available (%s)", benches[i].name, benches[i].missing);
            continue;
        }
        if (!ctx.progress && isatty(2))
            fprintf(stderr, "\rmpbench: measuring %-10s", benches[i].name);
        benches[i].run();
    }
    if (!ctx.progress && isatty(2)) fprintf(stderr, "\r%40s\r", "");
    if (ctx.only && ctx.wanted == 0 && ctx.nunavail == 0) {
        fprintf(stderr, "mpbench: --only selects no figure%s (mpbench --list%s shows them)\n",
                ctx.quick ? " of the quick set" : "", ctx.quick ? " --quick" : "");
        return 2;
    }
    mpb_note("measured in %.1f s", mpb_now() - t0);

    char why[256] = "";
    if (compare && mpb_python(why, sizeof why) != 0)
        fprintf(stderr, "mpbench: --compare python: %s\n", why);

    if (json) {
        mpb_print_json(compare, compare ? (why[0] ? why : "ok") : NULL);
    } else if (tsv) {
        mpb_print_tsv();
        /* stdout holds figures only; what could not be measured goes to stderr. */
        for (int i = 0; i < ctx.nunavail; i++)
            fprintf(stderr, "mpbench: %s\n", ctx.unavailable[i]);
    } else {
        mpb_print_table();
        mpb_print_figures(compare);
        if (ctx.peers) mpb_print_peers();
    }
    int rc = ctx.failures ? 1 : 0;
    if (plot && mpb_plot(plot, compare) != 0) rc = 1;
    if (compare && why[0]) rc = 1;
    return rc;
}
