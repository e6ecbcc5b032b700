/* bench_queue.c - mproc's queue against Python's multiprocessing.Queue, raw pipes and memcpy, in
 * the same run.
 *
 * Figures (medians of >= 5 runs):
 *   queue.tput64.msgs_per_s          64-byte messages, producer on cpu 1, consumer on cpu 0
 *   queue.tput64.python.msgs_per_s   the same with Python's multiprocessing.Queue
 *   queue.tput64.ratio_python        mproc / Python (target >= 50)
 *   queue.rtt64.{same,cross}.us      ping-pong of 64 bytes over two queues, one CPU / two CPUs
 *   pipe.raw.rtt64.{same,cross}.us   the same over two raw pipe2() pipes, pinned the same way
 *   queue.rtt64.{same,cross}.ratio_pipe   (targets <= 1.5 same, <= 0.05 cross)
 *   queue.tput1m.gb_per_s            1 MiB messages through the default 1 MiB ring (streamed)
 *   memcpy.64m.gb_per_s              memcpy of 64 MiB, this run
 *   queue.tput1m.ratio_memcpy        (target >= 0.4)
 * BENCH_QUICK shrinks every loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/queue.h"

#define MIB ((size_t)1 << 20)

static void die(const char *what, int rc)
{
    bench_note("bench_queue: %s: %s", what, mp_strerror(rc));
    exit(1);
}

static int other_cpu(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 1 : 0;
}

/* A child on the other CPU puts count messages of size bytes; this process on cpu 0 gets them.
 * The clock starts at the first message. Returns messages per second. */
static double tput(size_t size, long count)
{
    mp_queue *q;
    int rc = mp_queue_new(&q, 0, 0);
    if (rc < 0) die("mp_queue_new", rc);
    char *buf = malloc(size);
    memset(buf, 7, size);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(other_cpu());
        for (long i = 0; i < count; i++)
            if (mp_queue_put(q, buf, size, 30) < 0) _exit(2);
        _exit(0);
    }
    bench_pin(0);
    size_t n;
    if ((rc = mp_queue_get(q, buf, size, &n, 30)) < 0) die("get", rc);
    double t = bench_now();
    for (long i = 1; i < count; i++)
        if ((rc = mp_queue_get(q, buf, size, &n, 30)) < 0) die("get", rc);
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("producer", -EIO);
    free(buf);
    mp_queue_free(&q);
    return (double)(count - 1) / t;
}

/* Ping-pong of 64 bytes: the child echoes on cpu `cpu`, this process on cpu 0. Returns us per
 * round trip. */
static double rtt_queue(int cpu, long rounds)
{
    mp_queue *ping, *pong;
    int rc = mp_queue_new(&ping, 0, 0);
    if (rc == 0) rc = mp_queue_new(&pong, 0, 0);
    if (rc < 0) die("mp_queue_new", rc);
    char buf[64] = {0};
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(cpu);
        size_t n;
        for (long i = 0; i < rounds + 1; i++) {
            if (mp_queue_get(ping, buf, sizeof buf, &n, 30) < 0) _exit(2);
            if (mp_queue_put(pong, buf, n, 30) < 0) _exit(2);
        }
        _exit(0);
    }
    bench_pin(0);
    size_t n;
    double t = 0;
    for (long i = 0; i < rounds + 1; i++) {
        if (i == 1) t = bench_now(); /* the first round warms up */
        if ((rc = mp_queue_put(ping, buf, sizeof buf, 30)) < 0) die("put", rc);
        if ((rc = mp_queue_get(pong, buf, sizeof buf, &n, 30)) < 0) die("get", rc);
    }
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("echo", -EIO);
    mp_queue_free(&ping);
    mp_queue_free(&pong);
    return t / (double)rounds * 1e6;
}

static double rtt_pipe(int cpu, long rounds)
{
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0) die("pipe2", -errno);
    char buf[64] = {0};
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(cpu);
        for (long i = 0; i < rounds + 1; i++) {
            if (read(a[0], buf, sizeof buf) != sizeof buf) _exit(2);
            if (write(b[1], buf, sizeof buf) != sizeof buf) _exit(2);
        }
        _exit(0);
    }
    bench_pin(0);
    double t = 0;
    for (long i = 0; i < rounds + 1; i++) {
        if (i == 1) t = bench_now();
        if (write(a[1], buf, sizeof buf) != sizeof buf) die("write", -errno);
        if (read(b[0], buf, sizeof buf) != sizeof buf) die("read", -errno);
    }
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("echo", -EIO);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
    return t / (double)rounds * 1e6;
}

int main(void)
{
    int reps = bench_reps(5);
    int quick = bench_quick();
    double v[64], w[64];
    if (reps > 64) reps = 64;

    long n64 = quick ? 200000 : 2000000;
    for (int r = 0; r < reps; r++)
        v[r] = tput(64, n64);
    double q64 = bench_median(v, reps);
    bench_emit("queue.tput64.msgs_per_s", q64, "msgs/s");

    char keys[8][64];
    double vals[8];
    char args[64];
    snprintf(args, sizeof args, "%ld %d", quick ? 20000L : 100000L, reps);
    int np = bench_python("queue_peer.py", args, keys, vals, 8);
    double py = 0;
    for (int i = 0; i < np; i++)
        if (strcmp(keys[i], "tput64_msgs_per_s") == 0) py = vals[i];
    if (py > 0) {
        bench_emit("queue.tput64.python.msgs_per_s", py, "msgs/s");
        bench_emit("queue.tput64.ratio_python", q64 / py, "x");
    } else {
        bench_note("bench_queue: python3 peer failed; no Python figures");
    }

    long rs = quick ? 2000 : 20000, rc = quick ? 300 : 2000, rq = quick ? 20000 : 100000;
    for (int r = 0; r < reps; r++)
        v[r] = rtt_queue(0, rs), w[r] = rtt_pipe(0, rs);
    double qs = bench_median(v, reps), ps = bench_median(w, reps);
    for (int r = 0; r < reps; r++)
        v[r] = rtt_queue(other_cpu(), rq), w[r] = rtt_pipe(other_cpu(), rc);
    double qc = bench_median(v, reps), pc = bench_median(w, reps);
    bench_emit("queue.rtt64.same.us", qs, "us");
    bench_emit("queue.rtt64.cross.us", qc, "us");
    bench_emit("pipe.raw.rtt64.same.us", ps, "us");
    bench_emit("pipe.raw.rtt64.cross.us", pc, "us");
    bench_emit("queue.rtt64.same.ratio_pipe", qs / ps, "x");
    bench_emit("queue.rtt64.cross.ratio_pipe", qc / pc, "x");

    long n1m = quick ? 100 : 1000;
    for (int r = 0; r < reps; r++)
        v[r] = tput(MIB, n1m) * (double)MIB / 1e9;
    double q1m = bench_median(v, reps);
    double mc = bench_memcpy_gb_per_s(64 * MIB, reps);
    bench_emit("queue.tput1m.gb_per_s", q1m, "GB/s");
    bench_emit("memcpy.64m.gb_per_s", mc, "GB/s");
    bench_emit("queue.tput1m.ratio_memcpy", q1m / mc, "x");
    return 0;
}
