/* SPDX-License-Identifier: MIT */
/* run.c - the measuring drivers: forked peers pinned to CPUs, round trips, streams, loops.
 *
 * Every two-process measurement forks its peer once and runs all its reps against it; the peer
 * is pinned to CPU 0 (same) or CPU 1 (cross) while the parent stays on CPU 0. A control pipe
 * tells a stream's peer how many messages the next rep has, so reps can be calibrated to last
 * about ctx->rep_s each without forking again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpbench.h"
#include "mproc/error.h"

#define MAXTRACK 64

static volatile pid_t tracked[MAXTRACK];
static volatile pid_t tracked_group;
pid_t mpb_last_child;

static void track(pid_t pid)
{
    for (int i = 0; i < MAXTRACK; i++)
        if (tracked[i] == 0) {
            tracked[i] = pid;
            return;
        }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAXTRACK; i++)
        if (tracked[i] == pid) tracked[i] = 0;
}

void mpb_track_group(pid_t pgid)
{
    tracked_group = pgid;
}

/* Kills every child of every thread of this process, found in /proc/self/task/<tid>/children
 * (children started by libmproc, pool workers), with raw system calls only: this runs in the
 * SIGINT handler. */
static int kill_proc_children(void)
{
    int found = 0;
    int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return 0;
    char dbuf[2048];
    long nread;
    while ((nread = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf)) > 0) {
        for (long off = 0; off < nread;) {
            struct {
                unsigned long long ino;
                long long off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(dbuf + off);
            off += d->reclen;
            if (d->name[0] < '0' || d->name[0] > '9') continue;
            char path[64] = "/proc/self/task/";
            size_t pl = strlen(path), nl = strlen(d->name);
            if (pl + nl + 10 >= sizeof path) continue;
            memcpy(path + pl, d->name, nl);
            memcpy(path + pl + nl, "/children", 10);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            char buf[1024];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            for (ssize_t i = 0; i < n;) {
                pid_t pid = 0;
                while (i < n && buf[i] >= '0' && buf[i] <= '9')
                    pid = pid * 10 + (buf[i++] - '0');
                i++;
                if (pid > 0) {
                    kill(pid, SIGKILL);
                    found++;
                }
            }
        }
    }
    close(dfd);
    return found;
}

/* Kills and reaps, again and again, until no child is left (a pool's supervisor may start a
 * replacement for a worker just killed, and the Python peer's children come back to us, the
 * subreaper, when it dies), for at most 3 seconds. */
void mpb_kill_all(void)
{
    int saved = errno;
    struct timespec nap = {0, 2000000};
    for (int round = 0; round < 1500; round++) {
        int found = 0;
        if (tracked_group > 0) kill(-tracked_group, SIGKILL);
        for (int i = 0; i < MAXTRACK; i++)
            if (tracked[i] > 0) found += kill(tracked[i], SIGKILL) == 0;
        found += kill_proc_children();
        pid_t r;
        while ((r = waitpid(-1, NULL, __WALL | WNOHANG)) > 0 || (r < 0 && errno == EINTR))
            found++;
        if (r < 0 && errno == ECHILD && found == 0) break;
        nanosleep(&nap, NULL);
    }
    errno = saved;
}

void mpb_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (mpb && mpb->ncpu > 0 ? mpb->ncpu : 1), &set);
    sched_setaffinity(0, sizeof set, &set);
}

pid_t mpb_fork(int cpu, mpb_child_fn fn, void *arg)
{
    fflush(stdout);
    fflush(stderr);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    if (mpb_stopping) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -EINTR;
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        mpb_unblock_stop_signals(&old);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (getppid() == 1) _exit(127);
        if (cpu >= 0) mpb_pin(cpu);
        _exit(fn(arg) & 0xff);
    }
    int err = errno;
    if (pid > 0) {
        track(pid);
        mpb_last_child = pid;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid > 0 ? pid : -err;
}

int mpb_reap(pid_t pid, double timeout)
{
    double end = mpb_now() + timeout;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            untrack(pid);
            return -errno;
        }
        if (mpb_now() > end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        usleep(1000);
    }
    untrack(pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- helpers for the drivers --------------------------------------------------------------- */

static int write_long(int fd, long v)
{
    ssize_t r;
    do
        r = write(fd, &v, sizeof v);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)sizeof v ? 0 : -EPIPE;
}

static int read_long(int fd, long *v)
{
    ssize_t r;
    do
        r = read(fd, v, sizeof *v);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)sizeof *v ? 0 : -EPIPE;
}

static bool placement_ok(const char *name, mpb_place pl)
{
    if (pl == MPB_CROSS && mpb->ncpu < 2) {
        mpb_note("%s skipped: only one CPU", name);
        return false;
    }
    return true;
}

static int peer_cpu(mpb_place pl)
{
    return pl == MPB_CROSS ? 1 : 0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "mpbench: out of memory\n");
        exit(1);
    }
    memset(p, 0x5a, n);
    return p;
}

/* ---- round trip ---------------------------------------------------------------------------- */

struct rtt_peer {
    const mpb_chan *ch;
    void *st;
    size_t size;
    long warm, n;
    int reps;
    double *cpu; /* shared: the peer's CPU seconds at the start of each rep and at the end */
};

/* CPU seconds used by this process so far (all its threads; mpbench's signal thread sleeps). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int rtt_child(void *arg)
{
    struct rtt_peer *p = arg;
    p->ch->side(p->st, 1);
    char *buf = xmalloc(p->size);
    int rc = 0;
    long total = p->warm + (long)p->reps * p->n;
    for (long i = 0; i < total && rc == 0; i++) {
        if (i >= p->warm && (i - p->warm) % p->n == 0) p->cpu[(i - p->warm) / p->n] = cpu_now();
        rc = p->ch->recv(p->st, 1, buf, p->size);
        if (rc == 0) rc = p->ch->send(p->st, 1, buf, p->size);
    }
    if (rc == 0) p->cpu[p->reps] = cpu_now();
    p->ch->close(p->st, 1);
    free(buf);
    return rc ? 1 : 0;
}

static long rtt_count(size_t size)
{
    long n = mpb->rtt_n;
    if (size >= (1u << 20))
        n /= 20;
    else if (size >= 4096)
        n /= 2;
    return n < 5 ? 5 : n;
}

int mpb_rtt(const char *name, const char *label, const mpb_chan *ch, size_t size, mpb_place pl)
{
    if (!placement_ok(name, pl)) return 0;
    long n = rtt_count(size), warm = n / 5 + 1;
    int reps = mpb->reps;
    size_t cpulen = (MPB_MAXREPS + 1) * sizeof(double);
    double *cpu = mmap(NULL, cpulen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (cpu == MAP_FAILED) {
        mpb_fail(name, "mmap: %s", strerror(errno));
        return -errno;
    }
    struct rtt_peer p = {ch, NULL, size, warm, n, reps, cpu};
    int rc = ch->open(&p.st, size);
    if (rc < 0) {
        munmap(cpu, cpulen);
        mpb_fail(name, "cannot open %s: %s", ch->name, strerror(-rc));
        return rc;
    }
    mpb_pin(0);
    pid_t pid = mpb_fork(peer_cpu(pl), rtt_child, &p);
    if (pid < 0) {
        ch->close(p.st, 0);
        ch->close(p.st, 1);
        munmap(cpu, cpulen);
        mpb_fail(name, "fork: %s", strerror((int)-pid));
        return (int)pid;
    }
    ch->side(p.st, 0);
    char *buf = xmalloc(size);
    double *lat = xmalloc((size_t)n * sizeof *lat);
    double med[MPB_MAXREPS], p99[MPB_MAXREPS], mycpu[MPB_MAXREPS], wall[MPB_MAXREPS];
    for (long i = 0; i < warm && rc == 0; i++) {
        rc = ch->send(p.st, 0, buf, size);
        if (rc == 0) rc = ch->recv(p.st, 0, buf, size);
    }
    for (int r = 0; r < reps && rc == 0 && !mpb_stopping; r++) {
        double c0 = cpu_now(), w0 = mpb_now();
        for (long i = 0; i < n && rc == 0; i++) {
            double t0 = mpb_now();
            rc = ch->send(p.st, 0, buf, size);
            if (rc == 0) rc = ch->recv(p.st, 0, buf, size);
            lat[i] = (mpb_now() - t0) * 1e6;
        }
        mycpu[r] = cpu_now() - c0;
        wall[r] = mpb_now() - w0;
        med[r] = mpb_median(lat, (int)n);
        p99[r] = mpb_quantile(lat, (int)n, 0.99);
    }
    ch->close(p.st, 0);
    int code = mpb_reap(pid, rc ? 1 : 10);
    free(buf);
    free(lat);
    /* CPU time of both processes per round trip, and the cores that keeps busy: what spinning
     * costs (a blocking peer sleeps while it waits). */
    double cpurt[MPB_MAXREPS], cores[MPB_MAXREPS];
    for (int r = 0; r < reps; r++) {
        double both = mycpu[r] + (cpu[r + 1] - cpu[r]);
        cpurt[r] = both / (double)n * 1e6;
        cores[r] = wall[r] > 0 ? both / wall[r] : NAN;
    }
    munmap(cpu, cpulen);
    if (rc || code) {
        mpb_fail(name, "%s", rc ? mp_strerror(rc) : "peer failed");
        return rc ? rc : -EIO;
    }
    if (mpb_stopping) return -EINTR;
    char l2[96];
    snprintf(l2, sizeof l2, "%s, p99", label);
    char n2[80];
    snprintf(n2, sizeof n2, "%s.p99", name);
    mpb_record(name, label, "us", MPB_LOWER, med, reps);
    mpb_record(n2, l2, "us", MPB_LOWER, p99, reps);
    snprintf(l2, sizeof l2, "%s, CPU time of both per round trip", label);
    snprintf(n2, sizeof n2, "%s.cpu", name);
    mpb_record(n2, l2, "us", MPB_LOWER, cpurt, reps);
    snprintf(l2, sizeof l2, "%s, CPUs kept busy", label);
    snprintf(n2, sizeof n2, "%s.cores", name);
    mpb_record(n2, l2, "cores", MPB_LOWER, cores, reps);
    return 0;
}

/* ---- stream -------------------------------------------------------------------------------- */

struct tput_peer {
    const mpb_chan *ch;
    void *st;
    size_t size;
    int ctl[2], done[2];
};

static int tput_child(void *arg)
{
    struct tput_peer *p = arg;
    p->ch->side(p->st, 1);
    close(p->ctl[1]);
    close(p->done[0]);
    char *buf = xmalloc(p->size);
    long n;
    int rc = 0;
    while (rc == 0 && read_long(p->ctl[0], &n) == 0 && n > 0) {
        for (long i = 0; i < n && rc == 0; i++)
            rc = p->ch->recv(p->st, 1, buf, p->size);
        if (rc == 0) rc = write_long(p->done[1], n);
    }
    p->ch->close(p->st, 1);
    free(buf);
    return rc ? 1 : 0;
}

/* Calibration target: grow n until a rep lasts at least `target` seconds, then scale. */
static long scale_n(long n, double t, double target, long cap)
{
    double want = t > 0 ? (double)n * target / t : (double)n * 4;
    if (want > (double)cap) want = (double)cap;
    if (want < 4) want = 4;
    return (long)want;
}

/* Starts the peer of a measurement that is driven through two pipes: ctl (parent -> peer: how
 * many to do; 0 ends it) and done (peer -> parent: what it did). Pins the caller to CPU 0, forks
 * fn(arg) on the peer's CPU and keeps only this side's ends (ctl[1], done[0]). Returns the pid,
 * or -errno with every pipe closed. */
static pid_t fork_peer(mpb_place pl, mpb_child_fn fn, void *arg, int ctl[2], int done[2])
{
    if (pipe2(ctl, O_CLOEXEC) < 0) return -errno;
    if (pipe2(done, O_CLOEXEC) < 0) {
        int e = errno;
        close(ctl[0]);
        close(ctl[1]);
        return -e;
    }
    mpb_pin(0);
    pid_t pid = mpb_fork(peer_cpu(pl), fn, arg);
    close(ctl[0]);
    close(done[1]);
    if (pid < 0) {
        close(ctl[1]);
        close(done[0]);
    }
    return pid;
}

int mpb_tput(const char *name, const char *label, const mpb_chan *ch, size_t size, mpb_place pl)
{
    if (!placement_ok(name, pl)) return 0;
    struct tput_peer p = {ch, NULL, size, {-1, -1}, {-1, -1}};
    int rc = ch->open(&p.st, size);
    if (rc < 0) {
        mpb_fail(name, "cannot open %s: %s", ch->name, strerror(-rc));
        return rc;
    }
    pid_t pid = fork_peer(pl, tput_child, &p, p.ctl, p.done);
    if (pid < 0) {
        ch->close(p.st, 0);
        mpb_fail(name, "cannot start the peer: %s", strerror((int)-pid));
        return (int)pid;
    }
    ch->side(p.st, 0);
    char *buf = xmalloc(size);
    long n = size >= (1u << 20) ? 4 : size >= 4096 ? 256 : 4096;
    double v[MPB_MAXREPS];
    int reps = mpb->reps, got = 0;
    bool calibrating = true;
    while (rc == 0 && got < reps && !mpb_stopping) {
        double t0 = mpb_now();
        rc = write_long(p.ctl[1], n);
        for (long i = 0; i < n && rc == 0; i++)
            rc = ch->send(p.st, 0, buf, size);
        long echoed;
        if (rc == 0) rc = read_long(p.done[0], &echoed);
        double t = mpb_now() - t0;
        if (rc) break;
        if (calibrating) {
            /* Too short to trust: grow, and time again. */
            if (t < mpb->rep_s / 4 && n < 50000000) {
                n = scale_n(n, t, mpb->rep_s / 2, 50000000);
                continue;
            }
            n = scale_n(n, t, mpb->rep_s, 50000000);
            calibrating = false;
            continue;
        }
        double per_s = (double)n / t;
        v[got++] = size < 4096 ? per_s : per_s * (double)size / 1e6;
    }
    write_long(p.ctl[1], 0);
    close(p.ctl[1]);
    ch->close(p.st, 0);
    int code = mpb_reap(pid, rc ? 1 : 10);
    close(p.done[0]);
    free(buf);
    if (rc || code) {
        mpb_fail(name, "%s", rc ? mp_strerror(rc) : "peer failed");
        return rc ? rc : -EIO;
    }
    if (mpb_stopping) return -EINTR;
    mpb_fig *f = mpb_record(name, label, size < 4096 ? "msg/s" : "MB/s", MPB_HIGHER, v, reps);
    if (f) f->size = size;
    return 0;
}

/* ---- loops in one process -------------------------------------------------------------------- */

int mpb_loop(const char *name, const char *label, mpb_loop_fn fn, void *arg, const char *unit,
             double scale)
{
    bool per_op = strcmp(unit, "ns") == 0;
    mpb_pin(0);
    long n = 1000;
    double v[MPB_MAXREPS];
    int reps = mpb->reps, got = 0, rc = 0;
    bool calibrating = true;
    while (got < reps && !mpb_stopping) {
        double t0 = mpb_now();
        rc = fn(arg, n);
        double t = mpb_now() - t0;
        if (rc) break;
        if (calibrating) {
            if (t < mpb->rep_s / 4 && n < 1000000000) {
                n = scale_n(n, t, mpb->rep_s / 2, 1000000000);
                continue;
            }
            n = scale_n(n, t, mpb->rep_s, 1000000000);
            calibrating = false;
            continue;
        }
        v[got++] = per_op ? t / (double)n * 1e9 : (double)n / t * scale;
    }
    if (rc) {
        mpb_fail(name, "%s", mp_strerror(rc));
        return rc;
    }
    if (mpb_stopping) return -EINTR;
    mpb_record(name, label, unit, per_op ? MPB_LOWER : MPB_HIGHER, v, reps);
    return 0;
}

struct par_peer {
    mpb_loop_fn fn;
    void *arg;
    int ctl[2], done[2];
};

static int par_child(void *arg)
{
    struct par_peer *p = arg;
    close(p->ctl[1]);
    close(p->done[0]);
    long n;
    int rc = 0;
    while (rc == 0 && read_long(p->ctl[0], &n) == 0 && n > 0) {
        rc = p->fn(p->arg, n);
        if (rc == 0) rc = write_long(p->done[1], n);
    }
    return rc ? 1 : 0;
}

int mpb_par(const char *name, const char *label, mpb_place pl, mpb_loop_fn fn, mpb_loop_fn reset,
            int (*check)(void *arg, long total), void *arg)
{
    if (!placement_ok(name, pl)) return 0;
    struct par_peer p = {fn, arg, {-1, -1}, {-1, -1}};
    pid_t pid = fork_peer(pl, par_child, &p, p.ctl, p.done);
    if (pid < 0) {
        mpb_fail(name, "cannot start the peer: %s", strerror((int)-pid));
        return (int)pid;
    }
    long n = 1000;
    double v[MPB_MAXREPS];
    int reps = mpb->reps, got = 0, rc = 0;
    bool calibrating = true;
    while (rc == 0 && got < reps && !mpb_stopping) {
        if (reset) reset(arg, 0);
        double t0 = mpb_now();
        rc = write_long(p.ctl[1], n);
        if (rc == 0) rc = fn(arg, n);
        long echoed;
        if (rc == 0) rc = read_long(p.done[0], &echoed);
        double t = mpb_now() - t0;
        if (rc == 0 && check && check(arg, 2 * n) != 0) {
            mpb_fail(name, "wrong total after %ld operations", 2 * n);
            rc = -EIO;
        }
        if (rc) break;
        if (calibrating) {
            if (t < mpb->rep_s / 4 && n < 1000000000) {
                n = scale_n(n, t, mpb->rep_s / 2, 1000000000);
                continue;
            }
            n = scale_n(n, t, mpb->rep_s, 1000000000);
            calibrating = false;
            continue;
        }
        v[got++] = 2.0 * (double)n / t;
    }
    write_long(p.ctl[1], 0);
    close(p.ctl[1]);
    int code = mpb_reap(pid, rc ? 1 : 10);
    close(p.done[0]);
    if (rc || code) {
        if (rc != -EIO) mpb_fail(name, "%s", rc ? mp_strerror(rc) : "peer failed");
        return rc ? rc : -EIO;
    }
    if (mpb_stopping) return -EINTR;
    mpb_record(name, label, "op/s", MPB_HIGHER, v, reps);
    return 0;
}

int mpb_events(const char *name, const char *label, mpb_event_fn fn, void *arg, long per_rep)
{
    mpb_pin(0);
    int reps = mpb->reps, rc = 0;
    if (per_rep < 3) per_rep = 3;
    double *lat = xmalloc((size_t)per_rep * sizeof *lat);
    double med[MPB_MAXREPS], p99[MPB_MAXREPS];
    rc = fn(arg); /* warm-up */
    for (int r = 0; r < reps && rc == 0 && !mpb_stopping; r++) {
        for (long i = 0; i < per_rep && rc == 0; i++) {
            double t0 = mpb_now();
            rc = fn(arg);
            lat[i] = (mpb_now() - t0) * 1e6;
        }
        med[r] = mpb_median(lat, (int)per_rep);
        p99[r] = mpb_quantile(lat, (int)per_rep, 0.99);
    }
    free(lat);
    if (rc) {
        mpb_fail(name, "%s", mp_strerror(rc));
        return rc;
    }
    if (mpb_stopping) return -EINTR;
    char l2[96], n2[80];
    snprintf(l2, sizeof l2, "%s, p99", label);
    snprintf(n2, sizeof n2, "%s.p99", name);
    mpb_record(name, label, "us", MPB_LOWER, med, reps);
    mpb_record(n2, l2, "us", MPB_LOWER, p99, reps);
    return 0;
}

/* ---- the standard set for a message channel -------------------------------------------------- */

void mpb_chan_suite(const char *prefix, const char *what, const mpb_chan *ch, unsigned sizes)
{
    static const struct {
        const char *tag, *human;
        size_t size;
        unsigned bit;
    } sz[] = {{"64", "64 B", 64, MPB_S64},
              {"4k", "4 KiB", 4096, MPB_S4K},
              {"1m", "1 MiB", 1u << 20, MPB_S1M}};
    static const char *plname[] = {"same", "cross"};
    static const char *plhuman[] = {"same CPU", "cross-CPU"};
    char name[64], label[80];
    for (int kind = 0; kind < 2; kind++)
        for (int s = 0; s < 3; s++)
            for (int pl = 0; pl < 2; pl++) {
                if (!(sizes & sz[s].bit)) continue;
                /* The quick set: 64 B round trips both ways, 64 B and 1 MiB streams across. */
                bool quick = kind == 0 ? s == 0 : pl == MPB_CROSS && s != 1;
                snprintf(name, sizeof name, "%s.%s%s.%s", prefix, kind ? "tput" : "rtt", sz[s].tag,
                         plname[pl]);
                if (!mpb_wantq(name, quick)) continue;
                snprintf(label, sizeof label, "%s %s %s, %s", what, kind ? "stream" : "round trip",
                         sz[s].human, plhuman[pl]);
                if (kind == 0)
                    mpb_rtt(name, label, ch, sz[s].size, (mpb_place)pl);
                else
                    mpb_tput(name, label, ch, sz[s].size, (mpb_place)pl);
            }
}
