/* SPDX-License-Identifier: MIT */
/* bench_pipe.c - mproc pipes against raw pipe2() and Python's multiprocessing Pipe, same run.
 *
 * Figures (medians of >= 5 runs):
 *   pipe.tput64.msgs_per_s          64-byte messages, sender and receiver pinned to different CPUs
 *   pipe.tput64.python.msgs_per_s   the same with Python's Pipe() send_bytes/recv_bytes
 *   pipe.tput64.ratio_python        mproc / Python (target >= 3)
 *   rawpipe.tput64.msgs_per_s       the same over a raw pipe2() pipe: fixed 64-byte write()s, the
 *                                   reader read()s 64 KiB chunks
 *   pipe.tput64.ratio_rawpipe       mproc / raw pipe (target >= 0.9)
 *   pipe.tput1m.gb_per_s            1 MiB messages, received into the caller's buffer
 *   memcpy.64m.gb_per_s             memcpy of 64 MiB (cold-cache RAM bandwidth), this run
 *   pipe.tput1m.ratio_memcpy        (target >= 0.4)
 *   pipe.rtt64.{same,cross}.us      ping-pong of 64 bytes, both processes on one CPU / on two
 *   rawpipe.rtt64.{same,cross}.us   the same over two raw pipe2() pipes with read/write
 * The mproc pipe is duplex, like Python's default Pipe(). The two sides of each ratio run
 * alternately, one run each in turn, and the ratio is the median of the per-pair ratios (a shared
 * machine's load drifts between two separate series). BENCH_QUICK shrinks every loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/pipe.h"

#define MIB ((size_t)1 << 20)

static int ncpu_pair(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 1 : 0;
}

static void die(const char *what, int rc)
{
    bench_note("bench_pipe: %s: %s", what, mp_strerror(rc));
    exit(1);
}

/* ---- throughput -------------------------------------------------------------------------- */

/* A child on cpu 1 sends count messages of size bytes; this process on cpu 0 receives them.
 * Returns messages per second. */
static double tput(size_t size, long count)
{
    mp_conn *a, *b;
    int rc = mp_pipe_new(&a, &b, true);
    if (rc < 0) die("mp_pipe_new", rc);
    char *buf = malloc(size ? size : 1);
    memset(buf, 7, size);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(ncpu_pair());
        mp_conn_free(&a);
        for (long i = 0; i < count; i++)
            if (mp_conn_send(b, buf, size, MP_FOREVER) < 0) _exit(1);
        mp_conn_free(&b);
        _exit(0);
    }
    bench_pin(0);
    mp_conn_free(&b);
    size_t len;
    /* the clock starts at the first message, so fork and exec costs stay out */
    if ((rc = mp_conn_recv(a, buf, size, &len, MP_FOREVER)) < 0) die("recv", rc);
    double t = bench_now();
    for (long i = 1; i < count; i++)
        if ((rc = mp_conn_recv(a, buf, size, &len, MP_FOREVER)) < 0) die("recv", rc);
    t = bench_now() - t;
    mp_conn_free(&a);
    free(buf);
    if (bench_reap(pid) != 0) die("sender", -EIO);
    return (double)(count - 1) / t;
}

/* The physical reference: a child on cpu 1 write()s count fixed 64-byte messages into a raw
 * pipe2() pipe; this process on cpu 0 reads them in 64 KiB chunks (the way mp_conn's receiver
 * batches) and counts whole messages. Returns messages per second. */
static double raw_tput64(long count)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) die("pipe2", -errno);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(ncpu_pair());
        close(p[0]);
        char m[64];
        memset(m, 7, sizeof m);
        for (long i = 0; i < count; i++)
            if (write(p[1], m, sizeof m) != (ssize_t)sizeof m) _exit(1);
        _exit(0);
    }
    bench_pin(0);
    close(p[1]);
    static char buf[64 * 1024];
    size_t total = 0, want = (size_t)count * 64;
    double t = 0;
    while (total < want) {
        ssize_t r = read(p[0], buf, sizeof buf);
        if (r <= 0) die("read", r < 0 ? -errno : -EIO);
        if (total == 0) t = bench_now(); /* the clock starts at the first message, as in tput() */
        total += (size_t)r;
    }
    t = bench_now() - t;
    close(p[0]);
    if (bench_reap(pid) != 0) die("raw writer", -EIO);
    return (double)(count - 1) / t;
}

/* ---- round trips ------------------------------------------------------------------------- */

/* The echo side of a ping-pong: mproc (conn) or raw pipes (rfd/wfd). */
static void echo(mp_conn *c, int rfd, int wfd, long count)
{
    char buf[64];
    size_t len;
    for (long i = 0; i < count; i++) {
        if (c) {
            if (mp_conn_recv(c, buf, sizeof buf, &len, MP_FOREVER) < 0) _exit(1);
            if (mp_conn_send(c, buf, len, MP_FOREVER) < 0) _exit(1);
        } else {
            if (read(rfd, buf, sizeof buf) != sizeof buf) _exit(1);
            if (write(wfd, buf, sizeof buf) != sizeof buf) _exit(1);
        }
    }
    _exit(0);
}

/* Median round trip in microseconds; cross: the peer on the other CPU. */
static double rtt(bool raw, bool cross, long count)
{
    mp_conn *a = NULL, *b = NULL;
    int p1[2], p2[2];
    if (raw) {
        if (pipe2(p1, O_CLOEXEC) < 0 || pipe2(p2, O_CLOEXEC) < 0) die("pipe2", -errno);
    } else {
        int rc = mp_pipe_new(&a, &b, true);
        if (rc < 0) die("mp_pipe_new", rc);
    }
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(cross ? ncpu_pair() : 0);
        if (raw) {
            close(p1[1]);
            close(p2[0]);
            echo(NULL, p1[0], p2[1], count + 10);
        }
        mp_conn_free(&a);
        echo(b, -1, -1, count + 10);
    }
    bench_pin(0);
    if (raw) {
        close(p1[0]);
        close(p2[1]);
    } else {
        mp_conn_free(&b);
    }
    char buf[64] = {1};
    size_t len;
    double t = 0;
    for (long i = 0; i < count + 10; i++) {
        if (i == 10) t = bench_now(); /* warm-up: both sides pinned and running */
        if (raw) {
            if (write(p1[1], buf, sizeof buf) != sizeof buf) die("write", -errno);
            if (read(p2[0], buf, sizeof buf) != sizeof buf) die("read", -EIO);
        } else {
            int rc = mp_conn_send(a, buf, sizeof buf, MP_FOREVER);
            if (rc == 0) rc = mp_conn_recv(a, buf, sizeof buf, &len, MP_FOREVER);
            if (rc < 0) die("ping", rc);
        }
    }
    t = bench_now() - t;
    if (raw) {
        close(p1[1]);
        close(p2[0]);
    }
    mp_conn_free(&a);
    if (bench_reap(pid) != 0) die("echo child", -EIO);
    return t / (double)count * 1e6;
}

/* ---- main -------------------------------------------------------------------------------- */

static double median_of(int reps, double (*fn)(const long *), const long *arg)
{
    double v[64];
    for (int r = 0; r < reps; r++)
        v[r] = fn(arg);
    return bench_median(v, reps);
}

static double run_rtt(const long *a)
{
    return rtt(a[0] != 0, a[1] != 0, a[2]);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL);
    int quick = bench_quick();
    int reps = bench_reps(5);
    if (reps > 64) reps = 64;
    long n64 = quick ? 50000 : 400000;
    long n1m = quick ? 300 : 2000;
    long same = quick ? 2000 : 20000, cross = quick ? 500 : 4000;

    /* mproc and Python alternate, run by run, and the ratio is the median of the per-pair
     * ratios: the load of a shared machine drifts too much between two separate series. */
    bench_note("bench_pipe: 64-byte throughput, %ld messages, mproc, a raw pipe and Python Pipe() "
               "send_bytes/recv_bytes alternating x %d",
               n64, reps);
    double v64[64], vpy[64], vratio[64], vraw[64], vrawr[64];
    int npy = 0;
    char args[64];
    snprintf(args, sizeof args, "%ld 1", quick ? 20000L : 100000L);
    for (int r = 0; r < reps; r++) {
        v64[r] = tput(64, n64);
        vraw[r] = raw_tput64(n64);
        vrawr[r] = v64[r] / vraw[r];
        char keys[8][64];
        double vals[8];
        int np = bench_python("pipe_peer.py", args, keys, vals, 8);
        for (int i = 0; i < np; i++)
            if (strcmp(keys[i], "tput64_msgs_per_s") == 0 && vals[i] > 0) {
                vpy[npy] = vals[i];
                vratio[npy++] = v64[r] / vals[i];
            }
    }
    double t64 = bench_median(v64, reps);

    /* memcpy and the pipe alternate too; the ratio is the median of the per-pair ratios */
    bench_note("bench_pipe: 1 MiB throughput, %ld messages, and memcpy of 64 MiB, alternating x %d",
               n1m, reps);
    double vmc[64], v1m[64], vr1m[64];
    for (int r = 0; r < reps; r++) {
        vmc[r] = bench_memcpy_gb_per_s(64 * MIB, 5);
        v1m[r] = tput(MIB, n1m) * (double)MIB / 1e9;
        vr1m[r] = v1m[r] / vmc[r];
    }
    double mc = bench_median(vmc, reps), t1m = bench_median(v1m, reps);

    bench_note("bench_pipe: round trips");
    long a[4][3] = {{0, 0, same}, {0, 1, cross}, {1, 0, same}, {1, 1, cross}};
    double rt[4];
    for (int i = 0; i < 4; i++)
        rt[i] = median_of(reps, run_rtt, a[i]);

    bench_emit("pipe.tput64.msgs_per_s", t64, "msgs/s");
    bench_emit("rawpipe.tput64.msgs_per_s", bench_median(vraw, reps), "msgs/s");
    bench_emit("pipe.tput64.ratio_rawpipe", bench_median(vrawr, reps), "x");
    if (npy > 0) {
        bench_emit("pipe.tput64.python.msgs_per_s", bench_median(vpy, npy), "msgs/s");
        bench_emit("pipe.tput64.ratio_python", bench_median(vratio, npy), "x");
    } else {
        bench_note("bench_pipe: python3 peer failed; no Python figures");
    }
    bench_emit("pipe.tput1m.gb_per_s", t1m, "GB/s");
    bench_emit("memcpy.64m.gb_per_s", mc, "GB/s");
    bench_emit("pipe.tput1m.ratio_memcpy", bench_median(vr1m, reps), "x");
    bench_emit("pipe.rtt64.same.us", rt[0], "us");
    bench_emit("pipe.rtt64.cross.us", rt[1], "us");
    bench_emit("rawpipe.rtt64.same.us", rt[2], "us");
    bench_emit("rawpipe.rtt64.cross.us", rt[3], "us");
    return 0;
}
