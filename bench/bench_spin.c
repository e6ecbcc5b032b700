/* SPDX-License-Identifier: MIT */
/* bench_spin.c - what busy-waiting buys and costs: cross-CPU round trips with spinning on and off
 * (mp_spin_set, the same switch as MPROC_SPIN=0), for mp_queue and the mp_conn pipe.
 *
 * Figures (stdout), M = queue or pipe, and the same with .nospin. after "cross":
 *   M.rtt.cross.us              median round trip of 64 B, parent on CPU 0, peer on CPU 1
 *   M.rtt.cross.cpu_s_per_msg   CPU seconds of both processes (getrusage) per message (a round
 *                               trip is two messages) during back-to-back round trips
 *   M.rtt.cross.cores           CPU time of both / wall time: how many CPUs the ping-pong keeps
 *                               busy (spinning: close to 2; blocking: about half of one)
 *   M.sparse.cross.cpu_s_per_msg  the same when a request goes out every 200 µs: every wait ends
 *                               in sleep, so this is where spinning costs (up to 50 µs per wait)
 *   spin.rtt.cross.queue.speedup  queue round trip off / on
 * Medians over BENCH_REPS reps (default 5); BENCH_QUICK shortens each rep.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/pipe.h"
#include "mproc/queue.h"
#include "mproc/spin.h"

#define MSG     64
#define TIMEOUT 30.0
#define MAXREPS 101

/* A duplex channel between the parent (side 0) and the child (side 1). */
struct chan {
    const char *name;
    mp_queue *q[2]; /* queue: q[0] parent -> child, q[1] child -> parent */
    mp_conn *c[2];  /* pipe: c[0] the parent's end, c[1] the child's */
};

static int ch_open(struct chan *ch)
{
    if (strcmp(ch->name, "queue") == 0) {
        int rc = mp_queue_new(&ch->q[0], 0, 0);
        if (rc == 0) rc = mp_queue_new(&ch->q[1], 0, 0);
        return rc;
    }
    return mp_pipe_new(&ch->c[0], &ch->c[1], true);
}

static void ch_close(struct chan *ch)
{
    mp_queue_free(&ch->q[0]);
    mp_queue_free(&ch->q[1]);
    mp_conn_free(&ch->c[0]);
    mp_conn_free(&ch->c[1]);
}

static int ch_send(struct chan *ch, int side, const char *buf)
{
    return ch->q[0] ? mp_queue_put(ch->q[side], buf, MSG, TIMEOUT)
                    : mp_conn_send(ch->c[side], buf, MSG, TIMEOUT);
}

static int ch_recv(struct chan *ch, int side, char *buf)
{
    size_t n = 0;
    int rc = ch->q[0] ? mp_queue_get(ch->q[!side], buf, MSG, &n, TIMEOUT)
                      : mp_conn_recv(ch->c[side], buf, MSG, &n, TIMEOUT);
    return rc == 0 && n != MSG ? MP_ECORRUPT : rc;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

struct result {
    double rtt_us, cpu_per_msg, cores;
};

/* One measurement: reps of n round trips (a pause of gap_us before each request when > 0).
 * The child echoes every message and notes its CPU time at each rep's start and at the end in
 * shared memory; the parent does the same for itself around each rep. */
static int measure(const char *mech, long n, long gap_us, int reps, struct result *out)
{
    struct chan ch = {mech, {NULL, NULL}, {NULL, NULL}};
    double *child_cpu = mmap(NULL, (MAXREPS + 1) * sizeof(double), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (child_cpu == MAP_FAILED) return -errno;
    int rc = ch_open(&ch);
    if (rc) {
        bench_note("bench_spin: %s: %s", mech, mp_strerror(rc));
        munmap(child_cpu, (MAXREPS + 1) * sizeof(double));
        return rc;
    }
    long warm = n / 10 + 10;
    bench_pin(0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        if (ch.c[0]) mp_conn_free(&ch.c[0]);
        char buf[MSG];
        int crc = 0;
        long total = warm + (long)reps * n;
        for (long i = 0; i < total && crc == 0; i++) {
            if (i >= warm && (i - warm) % n == 0) child_cpu[(i - warm) / n] = cpu_self();
            crc = ch_recv(&ch, 1, buf);
            if (crc == 0) crc = ch_send(&ch, 1, buf);
        }
        child_cpu[reps] = cpu_self();
        _exit(crc ? 1 : 0);
    }
    if (pid < 0) {
        ch_close(&ch);
        return -errno;
    }
    if (ch.c[1]) mp_conn_free(&ch.c[1]);
    char buf[MSG];
    memset(buf, 0x5a, sizeof buf);
    double *lat = malloc((size_t)n * sizeof *lat);
    double med[MAXREPS], cpu[MAXREPS], wall[MAXREPS];
    for (long i = 0; i < warm && rc == 0; i++) {
        rc = ch_send(&ch, 0, buf);
        if (rc == 0) rc = ch_recv(&ch, 0, buf);
    }
    for (int r = 0; r < reps && rc == 0; r++) {
        double c0 = cpu_self(), w0 = bench_now(), slept = 0;
        for (long i = 0; i < n && rc == 0; i++) {
            if (gap_us > 0) {
                double s0 = bench_now();
                nap_us(gap_us);
                slept += bench_now() - s0;
            }
            double t0 = bench_now();
            rc = ch_send(&ch, 0, buf);
            if (rc == 0) rc = ch_recv(&ch, 0, buf);
            lat[i] = (bench_now() - t0) * 1e6;
        }
        cpu[r] = cpu_self() - c0;
        wall[r] = bench_now() - w0 - slept;
        med[r] = bench_median(lat, (int)n);
    }
    ch_close(&ch);
    int code = bench_reap(pid);
    free(lat);
    if (rc == 0 && code != 0) rc = -EIO;
    if (rc == 0) {
        double per[MAXREPS], cores[MAXREPS];
        for (int r = 0; r < reps; r++) {
            double both = cpu[r] + child_cpu[r + 1] - child_cpu[r];
            per[r] = both / (2.0 * (double)n);
            cores[r] = wall[r] > 0 ? both / wall[r] : 0;
        }
        out->rtt_us = bench_median(med, reps);
        out->cpu_per_msg = bench_median(per, reps);
        out->cores = bench_median(cores, reps);
    }
    munmap(child_cpu, (MAXREPS + 1) * sizeof(double));
    return rc;
}

int main(void)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        bench_note("bench_spin: one CPU: nothing spins, nothing to measure");
        return 0;
    }
    int reps = bench_reps(5);
    if (reps > MAXREPS) reps = MAXREPS;
    bool quick = bench_quick();
    static const char *const mechs[] = {"queue", "pipe"};
    double q_on = 0, q_off = 0;
    int status = 0;
    for (int m = 0; m < 2; m++) {
        for (int off = 0; off < 2; off++) {
            /* The child is forked after the switch and inherits it. */
            mp_spin_set(!off);
            const char *tag = off ? ".nospin" : "";
            struct result r;
            /* About 0.1-0.3 s per rep either way: blocking round trips cost ~50 us. */
            long n = off ? (quick ? 500 : 3000) : (quick ? 5000 : 30000);
            char name[96];
            bench_note("bench_spin: %s round trips, spinning %s", mechs[m], off ? "off" : "on");
            int rc = measure(mechs[m], n, 0, reps, &r);
            if (rc) {
                bench_note("bench_spin: %s%s failed: %s", mechs[m], tag, mp_strerror(rc));
                status = 1;
                continue;
            }
            snprintf(name, sizeof name, "%s.rtt.cross%s.us", mechs[m], tag);
            bench_emit(name, r.rtt_us, "us");
            snprintf(name, sizeof name, "%s.rtt.cross%s.cpu_s_per_msg", mechs[m], tag);
            bench_emit(name, r.cpu_per_msg, "s");
            snprintf(name, sizeof name, "%s.rtt.cross%s.cores", mechs[m], tag);
            bench_emit(name, r.cores, "cores");
            if (m == 0) *(off ? &q_off : &q_on) = r.rtt_us;

            bench_note("bench_spin: %s sparse requests (every 200 us), spinning %s", mechs[m],
                       off ? "off" : "on");
            rc = measure(mechs[m], quick ? 200 : 1000, 200, reps, &r);
            if (rc) {
                bench_note("bench_spin: %s sparse%s failed: %s", mechs[m], tag, mp_strerror(rc));
                status = 1;
                continue;
            }
            snprintf(name, sizeof name, "%s.sparse.cross%s.cpu_s_per_msg", mechs[m], tag);
            bench_emit(name, r.cpu_per_msg, "s");
        }
    }
    mp_spin_set(1);
    if (q_on > 0 && q_off > 0) bench_emit("spin.rtt.cross.queue.speedup", q_off / q_on, "x");
    return status;
}
