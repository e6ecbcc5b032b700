/* SPDX-License-Identifier: MIT */
/* bench_signals.c - signal round trips between two processes: mproc against raw syscalls.
 *
 * A ping-pong: the parent sends SIGUSR1, the child takes it and answers SIGUSR2, the parent takes
 * that. Both block the two signals, so nothing runs a handler: the raw version is
 * kill + sigwaitinfo, the mproc one mp_signal_send + mp_sigwaiter_wait(MP_FOREVER). The same pair
 * is also measured with a 10 s timeout on both sides (sigtimedwait against mp_sigwaiter_wait(10)):
 * arming the kernel's timer costs the same in both, so that ratio is like for like too. Pinned both
 * on one CPU ("same") and on two ("cross"). Every run forks one responder per variant and then
 * alternates short blocks of round trips between the variants, so load from other programs on this
 * shared machine hits all of them alike and the per-run ratios compare like with like.
 *
 * Figures:
 *   signal.rtt.same.us                 mproc round trip, same CPU (median of the runs)
 *   signal.raw.rtt.same.us             kill + sigwaitinfo, same CPU, same runs
 *   signal.rtt.same.ratio_raw          median of the per-run ratios (target <= 1.2)
 *   signal.rtt.same.timeout.us         mproc with a 10 s timeout (sigtimedwait underneath)
 *   signal.raw.rtt.same.timeout.us     kill + sigtimedwait with a 10 s timeout
 *   signal.rtt.same.timeout.ratio_raw  the two divided
 *   signal.raw_signalfd.rtt.same.us    kill + read() on a blocking signalfd (the other way to wait)
 *   the same with "cross" for the pair on two CPUs (for information)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/signals.h"

enum variant { V_RAW, V_MPROC, V_RAW_TIMED, V_MPROC_TIMED, V_SIGNALFD, V_COUNT };
/* One side's wait for its signal, in each variant. */
struct side {
    enum variant v;
    sigset_t set;
    mp_sigwaiter *w;
    int sfd;
};

static void side_init(struct side *s, enum variant v, int sig)
{
    memset(s, 0, sizeof *s);
    s->v = v;
    s->sfd = -1;
    sigemptyset(&s->set);
    sigaddset(&s->set, sig);
    if (v == V_MPROC || v == V_MPROC_TIMED) {
        if (mp_sigwaiter_new(&s->w, &sig, 1) < 0) abort();
    } else if (v == V_SIGNALFD) {
        s->sfd = signalfd(-1, &s->set, SFD_CLOEXEC); /* blocking read */
        if (s->sfd < 0) abort();
    }
}

static void side_wait(struct side *s)
{
    switch (s->v) {
    case V_RAW: {
        siginfo_t si;
        while (sigwaitinfo(&s->set, &si) < 0 && errno == EINTR) {
        }
        break;
    }
    case V_RAW_TIMED: {
        siginfo_t si;
        struct timespec ts = {10, 0};
        while (sigtimedwait(&s->set, &si, &ts) < 0 && errno == EINTR) {
        }
        break;
    }
    case V_MPROC:
        if (mp_sigwaiter_wait(s->w, NULL, MP_FOREVER) < 0) abort();
        break;
    case V_MPROC_TIMED:
        if (mp_sigwaiter_wait(s->w, NULL, 10.0) < 0) abort();
        break;
    case V_SIGNALFD: {
        struct signalfd_siginfo fi;
        while (read(s->sfd, &fi, sizeof fi) < 0 && errno == EINTR) {
        }
        break;
    }
    default:
        break;
    }
}

static void side_send(const struct side *s, pid_t to, int sig)
{
    if (s->v == V_MPROC || s->v == V_MPROC_TIMED) {
        if (mp_signal_send(to, sig) < 0) abort();
    } else {
        kill(to, sig);
    }
}

static void side_free(struct side *s)
{
    mp_sigwaiter_free(&s->w);
    if (s->sfd >= 0) close(s->sfd);
}

/* A responder: forever takes SIGUSR1 and answers SIGUSR2, in variant v, on child_cpu. */
static pid_t responder(enum variant v, int child_cpu)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        bench_pin(child_cpu);
        struct side s;
        side_init(&s, v, SIGUSR1);
        for (;;) {
            side_wait(&s);
            side_send(&s, parent, SIGUSR2);
        }
    }
    return pid;
}

/* `n` round trips with responder `pid`, both sides in variant s->v. Returns seconds. */
static double block(struct side *s, pid_t pid, int n)
{
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        side_send(s, pid, SIGUSR1);
        side_wait(s);
    }
    return bench_now() - t0;
}

/* One run: a responder per variant, then blocks of round trips alternating between the variants,
 * so that load from other programs (the machine is shared) hits all of them alike. Fills us[v]
 * with microseconds per round trip. */
static void run_once(int child_cpu, int iters, double us[V_COUNT])
{
    enum { BLOCKS = 10 };
    pid_t pids[V_COUNT];
    struct side sides[V_COUNT];
    double total[V_COUNT] = {0};
    for (int v = 0; v < V_COUNT; v++) {
        pids[v] = responder((enum variant)v, child_cpu);
        side_init(&sides[v], (enum variant)v, SIGUSR2);
        block(&sides[v], pids[v], 100); /* warm-up: the responder is up and cached */
    }
    int per_block = iters / BLOCKS > 0 ? iters / BLOCKS : 1;
    for (int b = 0; b < BLOCKS; b++)
        for (int v = 0; v < V_COUNT; v++)
            total[v] += block(&sides[v], pids[v], per_block);
    for (int v = 0; v < V_COUNT; v++) {
        us[v] = total[v] * 1e6 / ((double)per_block * BLOCKS);
        side_free(&sides[v]);
        kill(pids[v], SIGKILL);
        while (waitpid(pids[v], NULL, 0) < 0 && errno == EINTR) {
        }
    }
}

static void pair(const char *label, int child_cpu, int reps, int iters)
{
    double *res[V_COUNT];
    double *ratio = calloc((size_t)reps, sizeof(double));
    double *ratio_timed = calloc((size_t)reps, sizeof(double));
    for (int v = 0; v < V_COUNT; v++)
        res[v] = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) {
        double us[V_COUNT];
        run_once(child_cpu, iters, us);
        for (int v = 0; v < V_COUNT; v++)
            res[v][r] = us[v];
        ratio[r] = res[V_MPROC][r] / res[V_RAW][r];
        ratio_timed[r] = res[V_MPROC_TIMED][r] / res[V_RAW_TIMED][r];
        bench_note("%s run %d: raw %.2f mproc %.2f | raw-timed %.2f mproc-timed %.2f | signalfd "
                   "%.2f us",
                   label, r + 1, res[V_RAW][r], res[V_MPROC][r], res[V_RAW_TIMED][r],
                   res[V_MPROC_TIMED][r], res[V_SIGNALFD][r]);
    }
    /* Ratios are medians of per-run ratios: each compares two measurements taken side by side. */
    struct {
        const char *fmt;
        const double *v;
        const char *unit;
    } out[] = {
        {"signal.rtt.%s.us", res[V_MPROC], "us"},
        {"signal.raw.rtt.%s.us", res[V_RAW], "us"},
        {"signal.rtt.%s.ratio_raw", ratio, "x"},
        {"signal.rtt.%s.timeout.us", res[V_MPROC_TIMED], "us"},
        {"signal.raw.rtt.%s.timeout.us", res[V_RAW_TIMED], "us"},
        {"signal.rtt.%s.timeout.ratio_raw", ratio_timed, "x"},
        {"signal.raw_signalfd.rtt.%s.us", res[V_SIGNALFD], "us"},
    };
    for (size_t k = 0; k < sizeof out / sizeof out[0]; k++) {
        char name[96];
        snprintf(name, sizeof name, out[k].fmt, label);
        bench_emit(name, bench_median(out[k].v, reps), out[k].unit);
    }
    for (int v = 0; v < V_COUNT; v++)
        free(res[v]);
    free(ratio);
    free(ratio_timed);
}

int main(void)
{
    int reps = bench_reps(7);
    int quick = bench_quick();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    /* Blocked before any fork, so no signal can arrive unblocked in either process. */
    sigprocmask(SIG_BLOCK, &set, NULL);

    int ncpu = mp_cpu_count(); /* before pinning narrows it to one */
    bench_pin(0);
    pair("same", 0, reps, quick ? 2000 : 20000);
    if (ncpu > 1)
        pair("cross", 1, reps, quick ? 300 : 3000);
    else
        bench_note("one CPU: no cross-CPU figures");
    return 0;
}
