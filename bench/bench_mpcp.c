/* SPDX-License-Identifier: MIT */
/* bench_mpcp.c - mpcp against cp on one 1 GiB file, page cache warm, in the same run.
 *
 * The files live in a fresh directory under /dev/shm (tmpfs, memory only) when it has room,
 * else under /tmp. tmpfs is chosen on purpose: on this VM /tmp is ext4 on a virtual disk, where
 * every 1 GiB written starts background writeback whose cost lands on whichever run comes next,
 * so the figures would measure the disk's mood rather than the copy. On tmpfs both tools copy
 * page cache to page cache, which is what "page cache warm" asks for.
 *
 * cp and `mpcp -q` run alternately (fork+exec each, the destination removed between runs, not
 * timed), at least 5 times each; then `mpcp -q --verify` against `cp` followed by `cmp`. mpcp
 * --verify reads the copy back past the page cache (O_DIRECT); on tmpfs that is still memory, so
 * the two verify figures compare like with like only there - on a disk, cmp would read the
 * cache and mpcp the device.
 * Figures: medians; the ratios are medians of the ratios of back-to-back pairs. mpcp is found next
 * to this program (../tools/mpcp/mpcp relative to /proc/self/exe) or through MPCP_BIN. BENCH_QUICK
 * shrinks the file to 256 MiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

static char dir[PATH_MAX], src[PATH_MAX + 8], dst[PATH_MAX + 8];

static void cleanup(void)
{
    if (!dir[0]) return;
    unlink(dst); /* async-signal-safe: also called from the signal handler */
    unlink(src);
    rmdir(dir);
}

static void on_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Runs argv (fork+exec, stdout to /dev/null) and returns its wall time, or -1 when it failed. */
static double timed_run(char *const argv[])
{
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, STDOUT_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    double t = bench_now() - t0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        bench_note("'%s' failed (status 0x%x)", argv[0], st);
        return -1;
    }
    return t;
}

static int make_source(size_t size)
{
    int fd = open(src, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t blk = 1 << 20;
    uint64_t *buf = malloc(blk), x = 0x9E3779B97F4A7C15ull;
    if (!buf) return close(fd), -1;
    for (size_t done = 0; done < size; done += blk) {
        for (size_t i = 0; i < blk / 8; i++) { /* xorshift: incompressible, cheap */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = x;
        }
        if (write(fd, buf, blk) != (ssize_t)blk) return free(buf), close(fd), -1;
    }
    free(buf);
    close(fd);
    /* Warm: read it once so any lazily populated page is in memory before timing. */
    char *cat[] = {"cmp", src, src, NULL};
    return timed_run(cat) < 0 ? -1 : 0;
}

static int find_mpcp(char *out, size_t len)
{
    const char *env = getenv("MPCP_BIN");
    if (env) {
        snprintf(out, len, "%s", env);
        return access(out, X_OK);
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) return -1;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    snprintf(out, len, "%s/../tools/mpcp/mpcp", self);
    return access(out, X_OK);
}

static void emit_pair(const char *a_name, const double *a, const char *b_name, const double *b,
                      int n, double gb, const char *ratio_name)
{
    double ma = bench_median(a, n), mb = bench_median(b, n);
    char name[96];
    snprintf(name, sizeof name, "%s.gb_per_s", a_name);
    bench_emit(name, gb / ma, "GB/s");
    snprintf(name, sizeof name, "%s.gb_per_s", b_name);
    bench_emit(name, gb / mb, "GB/s");
    /* The ratio is the median of the per-pair ratios: each pair ran back to back, so a drift in
     * the machine's load (other work on it) cancels out better than in a ratio of medians. */
    double ratios[64];
    int m = n < 64 ? n : 64;
    for (int i = 0; i < m; i++)
        ratios[i] = b[i] / a[i];
    bench_emit(ratio_name, bench_median(ratios, m), "x");
    bench_note("%s: median %.3f s (min %.3f, max %.3f); %s: median %.3f s (min %.3f, max %.3f)",
               a_name, ma, bench_quantile(a, n, 0), bench_quantile(a, n, 1), b_name, mb,
               bench_quantile(b, n, 0), bench_quantile(b, n, 1));
}

int main(void)
{
    char mpcp[PATH_MAX + 32];
    if (find_mpcp(mpcp, sizeof mpcp) < 0) {
        bench_note("mpcp not found (build the tools, or set MPCP_BIN): %s", mpcp);
        return 1;
    }
    size_t size = (size_t)(bench_quick() ? 256 : 1024) << 20;
    const char *base = "/dev/shm";
    struct statvfs vfs;
    if (statvfs(base, &vfs) < 0 || (double)vfs.f_bavail * (double)vfs.f_frsize < 3.0 * (double)size)
        base = "/tmp";
    snprintf(dir, sizeof dir, "%s/bench-mpcp.XXXXXX", base);
    if (!mkdtemp(dir)) {
        bench_note("mkdtemp %s: %s", dir, strerror(errno));
        dir[0] = 0;
        return 1;
    }
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(dst, sizeof dst, "%s/dst", dir);
    atexit(cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);

    bench_note("mpcp: %zu MiB file in %s (%s), mpcp = %s", size >> 20, dir,
               strcmp(base, "/dev/shm") ? "disk: /dev/shm too small" : "tmpfs", mpcp);
    if (make_source(size) < 0) {
        bench_note("cannot create %s: %s", src, strerror(errno));
        return 1;
    }
    int reps = bench_reps(5);
    double *t_cp = calloc((size_t)reps, sizeof(double)),
           *t_mp = calloc((size_t)reps, sizeof(double));
    double *t_cc = calloc((size_t)reps, sizeof(double)),
           *t_mv = calloc((size_t)reps, sizeof(double));
    if (!t_cp || !t_mp || !t_cc || !t_mv) return 1;
    char *cp_argv[] = {"cp", src, dst, NULL};
    char *cmp_argv[] = {"cmp", src, dst, NULL};
    char *mp_argv[] = {mpcp, "-q", src, dst, NULL};
    char *mv_argv[] = {mpcp, "-q", "--verify", src, dst, NULL};

    /* One untimed run of each first: on a VM the first touch of fresh memory is slow (the host
     * backs the guest's pages lazily), and it should not count against whichever runs first. */
    unlink(dst);
    if (timed_run(cp_argv) < 0) return 1;
    unlink(dst);
    if (timed_run(mp_argv) < 0) return 1;
    /* Alternate, so that drift in the machine's load hits both alike. */
    for (int i = 0; i < reps; i++) {
        unlink(dst);
        if ((t_cp[i] = timed_run(cp_argv)) < 0) return 1;
        unlink(dst);
        if ((t_mp[i] = timed_run(mp_argv)) < 0) return 1;
        bench_note("copy %d/%d: cp %.3f s, mpcp %.3f s", i + 1, reps, t_cp[i], t_mp[i]);
    }
    for (int i = 0; i < reps; i++) {
        unlink(dst);
        double a = timed_run(cp_argv), b = a < 0 ? -1 : timed_run(cmp_argv);
        if (b < 0) return 1;
        t_cc[i] = a + b;
        unlink(dst);
        if ((t_mv[i] = timed_run(mv_argv)) < 0) return 1;
        bench_note("verify %d/%d: cp+cmp %.3f s, mpcp --verify %.3f s", i + 1, reps, t_cc[i],
                   t_mv[i]);
    }
    double gb = (double)size / 1e9;
    emit_pair("mpcp.tput", t_mp, "cp.tput", t_cp, reps, gb, "mpcp.tput.ratio_cp");
    emit_pair("mpcp.verify.tput", t_mv, "cp_cmp.tput", t_cc, reps, gb, "mpcp.verify.ratio_cp_cmp");
    free(t_cp);
    free(t_mp);
    free(t_cc);
    free(t_mv);
    return 0;
}
