/* SPDX-License-Identifier: MIT */
/* linux.c - the OS layer of platform.h on Linux: clock, futex, pidfd, memory, fds, CPUs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/spin.h"
#include "platform/platform.h"

/* ---- time --------------------------------------------------------------------------------- */

int64_t mp__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

mp__deadline mp__deadline_in(double timeout_s)
{
    mp__deadline d = {-1};
    if (mp__timeout_is_forever(timeout_s)) return d;
    if (!(timeout_s > 0)) { /* 0, another negative value, NaN: already passed */
        d.at_ns = mp__now_ns();
        return d;
    }
    d.at_ns = mp__now_ns() + (int64_t)(timeout_s * 1e9);
    return d;
}

int64_t mp__deadline_left_ns(const mp__deadline *d)
{
    if (d->at_ns < 0) return INT64_MAX;
    int64_t left = d->at_ns - mp__now_ns();
    return left > 0 ? left : 0;
}

int mp__deadline_poll_ms(const mp__deadline *d)
{
    if (d->at_ns < 0) return -1;
    int64_t left = mp__deadline_left_ns(d);
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

struct timespec mp__deadline_abs(const mp__deadline *d)
{
    struct timespec ts = {d->at_ns / 1000000000, d->at_ns % 1000000000};
    return ts;
}

mp__deadline mp__deadline_slice(const mp__deadline *dl)
{
    mp__deadline s = {mp__now_ns() + MP__WAIT_SLICE_NS};
    if (dl && !mp__deadline_forever(dl) && dl->at_ns < s.at_ns) s = *dl;
    return s;
}

/* ---- robust mutexes ----------------------------------------------------------------------- */

int mp__robust_mutex_init(pthread_mutex_t *m, int type)
{
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r) return -r;
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r) r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!r) r = pthread_mutexattr_settype(&a, type);
    if (!r) r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

int mp__robust_mutex_lock(pthread_mutex_t *m, const mp__deadline *dl)
{
    /* The trylock that glibc 2.36 can leave stuck on an unrecoverable mutex: undone inside. */
    int r = mp__robust_mutex_trylock(m);
    if (r != EBUSY) return r;
    for (;;) {
        if (dl && !mp__deadline_forever(dl) && mp__deadline_left_ns(dl) == 0) return ETIMEDOUT;
        mp__deadline slice = mp__deadline_slice(dl);
        struct timespec ts = mp__deadline_abs(&slice);
        r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
        if (r != ETIMEDOUT) return r;
        /* A slice ended: go round. A lost wake-up (the woken waiter was killed before it took
         * the mutex, and the next holder took it without seeing us) ends here. */
    }
}

/* ---- futex -------------------------------------------------------------------------------- */

int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected, const mp__deadline *dl)
{
    struct timespec abs, *tp = NULL;
    if (dl && !mp__deadline_forever(dl)) {
        if (mp__deadline_left_ns(dl) == 0) return -ETIMEDOUT;
        abs = mp__deadline_abs(dl);
        tp = &abs;
    }
    /* FUTEX_WAIT_BITSET takes an absolute timeout on CLOCK_MONOTONIC, so a retry after a signal
     * keeps the original deadline. No FUTEX_PRIVATE_FLAG: the word may be shared between
     * processes. */
    long r =
        syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, tp, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == 0) return 0;
    if (errno == ETIMEDOUT) return -ETIMEDOUT;
    return 0; /* EAGAIN (word differs) or EINTR: the caller re-checks */
}

int mp__futex_wake(_Atomic uint32_t *word, int n)
{
    long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? 0 : (int)r;
}

bool mp__spin_while_equal(_Atomic uint32_t *word, uint32_t expected, int64_t spin_ns)
{
    if (spin_ns <= 0) return atomic_load_explicit(word, memory_order_acquire) != expected;
    int64_t until = mp__now_ns() + spin_ns;
    for (;;) {
        /* Check the clock only every 64 pauses: a pause is ~10-140 cycles, the clock ~20 ns. */
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(word, memory_order_acquire) != expected) return true;
            mp__cpu_relax();
        }
        if (mp__now_ns() >= until) return false;
    }
}

static int cached_cpu_count;

/* CPUs online in the machine, not in our affinity mask: a waiter pinned to one CPU still gains
 * from spinning when its peer runs on another. */
static int online_cpus(void)
{
    static int n;
    int v = __atomic_load_n(&n, __ATOMIC_RELAXED);
    if (v > 0) return v;
    v = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (v < 1) v = 1;
    __atomic_store_n(&n, v, __ATOMIC_RELAXED);
    return v;
}

int64_t mp__spin_budget(int peer_cpu)
{
    if (!mp_spin_get()) return 0; /* the user turned busy-waiting off (mproc/spin.h) */
    if (online_cpus() < 2) return 0;
    int me = mp__current_cpu();
    if (peer_cpu >= 0 && me >= 0 && peer_cpu == me) return 0;
    return 50000; /* 50 us: a bit more than waking a halted vCPU (~35 us) */
}

int mp__current_cpu(void)
{
    return sched_getcpu();
}

/* ---- processes ---------------------------------------------------------------------------- */

/* The fallback's table, indexed by fd: fb_pid is 0 for an fd that is no death socket, the pid
 * while that child is ours and unreaped, -pid once it was reaped (or found reaped by someone
 * else). fb_busy counts senders between reading fb_pid and their kill(): the reaper marks the
 * entry reaped first, then waits for the count to drop to zero before waitid() frees the pid,
 * so no kill() can reach the pid once it may be recycled. Senders take no lock: they stay
 * async-signal-safe. Untouched, the arrays cost no memory (zero pages of .bss). */
static _Atomic int32_t fb_pid[MP__FD_INTERNAL_MAX];
static _Atomic uint32_t fb_busy[MP__FD_INTERNAL_MAX];

enum { PIDFD_UNKNOWN, PIDFD_YES, PIDFD_NO };
static _Atomic int pidfd_mode;

bool mp__pidfd_fallback(void)
{
    int m = atomic_load_explicit(&pidfd_mode, memory_order_relaxed);
    if (m != PIDFD_UNKNOWN) return m == PIDFD_NO;
    const char *env = getenv("MPROC_NO_PIDFD");
    if (env && *env && strcmp(env, "0") != 0) {
        m = PIDFD_NO;
    } else {
        long fd = syscall(SYS_pidfd_open, getpid(), 0);
        if (fd < 0) {
            /* Out of fds or memory says nothing about the kernel: decide on a later call. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) return false;
            m = PIDFD_NO; /* ENOSYS (kernel < 5.3, valgrind), EPERM/EACCES (seccomp), ... */
        } else {
            /* waitid(P_PIDFD) came one release later (5.4) than pidfd_open: on our own pidfd
             * it says ECHILD (we are not our child) where it is known, EINVAL where not. */
            siginfo_t si;
            int r = waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
            m = (r < 0 && errno == EINVAL) ? PIDFD_NO : PIDFD_YES;
            close((int)fd);
        }
    }
    atomic_store_explicit(&pidfd_mode, m, memory_order_relaxed);
    return m == PIDFD_NO;
}

void mp__pidfd_force_fallback(void)
{
    atomic_store(&pidfd_mode, PIDFD_NO);
}

/* Death sockets forked by this thread and not yet claimed by mp__pidfd_open. Per thread, so no
 * lock: mproc forks and opens the handle on the same thread (Process start; the pool's
 * supervisor). A slot is reused oldest first; a socket nobody claimed is then closed. */
#define FB_PENDING 4
static _Thread_local struct {
    pid_t pid;
    int fd;
} fb_pending[FB_PENDING];
static _Thread_local unsigned fb_pending_next;

static void fd_release(int fd)
{
    if (fd < 0) return;
    mp__fd_internal_del(fd);
    close(fd);
}

int mp__death_open(int death[2])
{
    death[0] = death[1] = -1;
    if (!mp__pidfd_fallback()) return 0;
    /* A stream socket rather than a pipe: when the peer closes, the reader's end reports POLLIN
     * (with POLLHUP), as a pidfd does when its process ends, so callers poll the same way. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    mp__fd_internal_add(sv[0]);
    mp__fd_internal_add(sv[1]);
    if (sv[0] >= MP__FD_INTERNAL_MAX || sv[1] >= MP__FD_INTERNAL_MAX) {
        fd_release(sv[0]);
        fd_release(sv[1]);
        return -EMFILE; /* the table could not hold it */
    }
    death[0] = sv[0];
    death[1] = sv[1];
    return 0;
}

void mp__death_child(const int death[2])
{
    fd_release(death[0]);
    /* The forking thread's unclaimed sockets are the parent's (and mp__fd_close_internal closes
     * them): forget them without closing anything twice. */
    for (int i = 0; i < FB_PENDING; i++)
        fb_pending[i].pid = 0;
}

void mp__death_parent(pid_t pid, const int death[2])
{
    fd_release(death[1]);
    if (death[0] < 0) return;
    if (pid <= 0) {
        fd_release(death[0]);
        return;
    }
    unsigned i = fb_pending_next++ % FB_PENDING;
    if (fb_pending[i].pid > 0) { /* never claimed: nobody will */
        atomic_store(&fb_pid[fb_pending[i].fd], 0);
        fd_release(fb_pending[i].fd);
    }
    atomic_store(&fb_busy[death[0]], 0);
    atomic_store(&fb_pid[death[0]], (int32_t)pid);
    fb_pending[i].pid = pid;
    fb_pending[i].fd = death[0];
}

int mp__pidfd_open(pid_t pid)
{
    if (pid <= 0) return -EINVAL;
    if (mp__pidfd_fallback()) {
        for (int i = 0; i < FB_PENDING; i++) {
            if (fb_pending[i].pid == pid) {
                fb_pending[i].pid = 0;
                return fb_pending[i].fd;
            }
        }
        return -ENOSYS; /* not a child this thread forked through mp__fork */
    }
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return -errno;
    /* pidfd_open sets O_CLOEXEC on its own. */
    mp__fd_internal_add((int)fd);
    return (int)fd;
}

int mp__parent_pidfd_open(pid_t ppid)
{
    if (ppid <= 0) return -EINVAL;
    if (mp__pidfd_fallback()) return -ENOSYS;
    if (getppid() != ppid) return -ESRCH;
    long fd = syscall(SYS_pidfd_open, ppid, 0);
    if (fd < 0) return errno == ESRCH ? -ESRCH : -errno;
    /* Checked after the open: if the parent had ended and its pid been reused in between, we
     * would have been reparented before the reuse, and this check sees it. */
    if (getppid() != ppid) {
        close((int)fd);
        return -ESRCH;
    }
    mp__fd_internal_add((int)fd);
    return (int)fd;
}

static bool fb_entry(int fd)
{
    return fd >= 0 && fd < MP__FD_INTERNAL_MAX && atomic_load(&fb_pid[fd]) != 0;
}

int mp__pidfd_send_signal(int pidfd, int sig)
{
    if (pidfd >= 0 && pidfd < MP__FD_INTERNAL_MAX) {
        atomic_fetch_add(&fb_busy[pidfd], 1);
        int32_t pid = atomic_load(&fb_pid[pidfd]);
        if (pid != 0) {
            int r = 0;
            if (pid < 0)
                r = -ESRCH; /* reaped: the pid may belong to another process by now */
            else if (kill(pid, sig) < 0)
                r = -errno;
            atomic_fetch_sub(&fb_busy[pidfd], 1);
            return r;
        }
        atomic_fetch_sub(&fb_busy[pidfd], 1);
    }
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0) return -errno;
    return 0;
}

bool mp__pidfd_is_child(int pidfd)
{
    int32_t pid = fb_entry(pidfd) ? atomic_load(&fb_pid[pidfd]) : 0;
    if (pid < 0) return false;
    for (;;) {
        siginfo_t si;
        int r = pid > 0 ? waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT)
                        : waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT);
        if (r == 0) return true;
        if (errno != EINTR) return errno != ECHILD;
    }
}

int mp__dead_handle(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    close(sv[1]); /* the peer is gone: POLLIN (end of file) from now on, as an ended pidfd */
    mp__fd_internal_add(sv[0]);
    return sv[0];
}

void mp__pidfd_close(int pidfd)
{
    if (pidfd < 0) return;
    if (pidfd < MP__FD_INTERNAL_MAX) atomic_store(&fb_pid[pidfd], 0);
    fd_release(pidfd);
}

/* Marks the fallback entry reaped (when it still names pid) and waits until no sender is
 * between its check and its kill(). False when another thread got there first. */
static bool fb_claim_reap(int fd, int32_t pid)
{
    int32_t want = pid;
    if (!atomic_compare_exchange_strong(&fb_pid[fd], &want, -pid)) return false;
    while (atomic_load(&fb_busy[fd]) != 0)
        sched_yield(); /* a sender is one kill() away from done */
    return true;
}

/* Is the child behind the death socket `fd` (pid) gone? Looks without reaping (WNOWAIT).
 * 1: ended (zombie), 0: runs, -ECHILD: not there (reaped by someone else). Blocks when `block`. */
static int fb_ended(pid_t pid, bool block)
{
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | (block ? 0 : WNOHANG)) < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        return si.si_pid != 0;
    }
}

/* Is our unreaped child pid on its way out (PF_EXITING: past the point where its fds were
 * closed) rather than alive after an exec or a close of its death socket? From
 * /proc/PID/stat, whose ninth field is the task's flags. Rare: only when the socket reads as
 * closed but the child is no zombie yet. */
static bool fb_exiting(pid_t pid)
{
    char path[32], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return false;
    char state;
    unsigned long flags;
    if (sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2) return false;
    return state == 'Z' || state == 'X' || (flags & 0x4 /* PF_EXITING */);
}

static int fb_reap(int fd, const mp__deadline *dl, siginfo_t *si)
{
    int32_t pid = atomic_load(&fb_pid[fd]);
    if (pid < 0) return -ECHILD;
    bool forever = dl && mp__deadline_forever(dl);
    bool block = forever;
    int64_t nap_ns = 1000000; /* between re-checks of a child that exec'd */
    for (;;) {
        int r = fb_ended(pid, block);
        if (r == -ECHILD) {
            fb_claim_reap(fd, pid);
            return -ECHILD;
        }
        if (r < 0) return r;
        if (r == 1) {
            if (!fb_claim_reap(fd, pid)) return -ECHILD; /* another thread reaps it */
            for (;;) {
                memset(si, 0, sizeof *si);
                if (waitid(P_PID, (id_t)pid, si, WEXITED | WNOHANG) == 0) return 1;
                if (errno != EINTR) return -errno;
            }
        }
        /* Still running. The socket closes in the child's exit a moment before it turns into a
         * zombie (longer on a loaded machine), and early when it exec'd. */
        mp__deadline zero = {0};
        bool closed = mp__poll_one(fd, POLLIN, &zero) > 0;
        if (closed && fb_exiting(pid)) {
            /* Ending: it is a zombie within moments, so wait for that even when the caller
             * does not block (a sentinel that reads as ended means join, free, is_alive see
             * it ended). */
            block = true;
            continue;
        }
        if (!dl) return 0;
        if (!closed) {
            /* Sleep on the socket, one slice at a time: an end it cannot report (its write end
             * leaked to another process) is still seen within a slice. */
            mp__deadline slice = mp__deadline_slice(dl);
            int p = mp__poll_one(fd, POLLIN, &slice);
            if (p < 0) return p;
            if (p == 0 && mp__deadline_left_ns(dl) == 0) return 0;
            continue;
        }
        /* Exec'd (or closed the socket): look again now and then until the deadline. */
        if (mp__deadline_left_ns(dl) == 0) return 0;
        struct timespec ts = {0, nap_ns};
        if (!forever && mp__deadline_left_ns(dl) < nap_ns) ts.tv_nsec = mp__deadline_left_ns(dl);
        nanosleep(&ts, NULL);
        if (nap_ns < MP__WAIT_SLICE_NS) nap_ns *= 2;
    }
}

int mp__pidfd_reap(int pidfd, const mp__deadline *dl, siginfo_t *si)
{
    if (fb_entry(pidfd)) return fb_reap(pidfd, dl, si);
    for (;;) {
        if (dl && !mp__deadline_forever(dl)) {
            int r = mp__poll_one(pidfd, POLLIN, dl);
            if (r < 0) return r;
            if (r == 0) return 0;
        }
        memset(si, 0, sizeof *si);
        int opts = WEXITED | ((dl && mp__deadline_forever(dl)) ? 0 : WNOHANG);
        if (waitid(P_PIDFD, (id_t)pidfd, si, opts) < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (si->si_pid != 0) return 1;
        /* WNOHANG and still running: done when polling; a readable pidfd with nothing to reap
         * cannot last, so go round again. */
        if (!dl || mp__deadline_left_ns(dl) == 0) return 0;
    }
}

int mp__cpu_count(void)
{
    int n = __atomic_load_n(&cached_cpu_count, __ATOMIC_RELAXED);
    if (n > 0) return n;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    __atomic_store_n(&cached_cpu_count, n, __ATOMIC_RELAXED);
    return n;
}

int mp__pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) return -errno;
    __atomic_store_n(&cached_cpu_count, 0, __ATOMIC_RELAXED);
    return 0;
}

/* ---- memory ------------------------------------------------------------------------------- */

int mp__shm_map_anon(size_t size, void **out)
{
    if (size == 0) return -EINVAL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
}

int mp__shm_unmap(void *addr, size_t size)
{
    if (!addr) return 0;
    return munmap(addr, size) < 0 ? -errno : 0;
}

int mp__memfd_new(const char *name, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* ---- fds ---------------------------------------------------------------------------------- */

int mp__poll_one(int fd, short events, const mp__deadline *dl)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, dl ? mp__deadline_poll_ms(dl) : -1);
        if (r > 0) return p.revents;
        if (r == 0) {
            if (!dl || mp__deadline_left_ns(dl) == 0) return 0;
            continue; /* poll rounds to ms; go round until the deadline really passed */
        }
        if (errno != EINTR) return -errno;
    }
}

int mp__write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t mp__read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* ---- internal fds ------------------------------------------------------------------------- */

#define FD_WORD_BITS 64
static _Atomic uint64_t fd_internal[MP__FD_INTERNAL_MAX / FD_WORD_BITS];

void mp__fd_internal_add(int fd)
{
    if (fd < 0 || fd >= MP__FD_INTERNAL_MAX) return;
    atomic_fetch_or(&fd_internal[fd / FD_WORD_BITS], UINT64_C(1) << (fd % FD_WORD_BITS));
}

void mp__fd_internal_del(int fd)
{
    if (fd < 0 || fd >= MP__FD_INTERNAL_MAX) return;
    atomic_fetch_and(&fd_internal[fd / FD_WORD_BITS], ~(UINT64_C(1) << (fd % FD_WORD_BITS)));
}

bool mp__fd_is_internal(int fd)
{
    if (fd < 0 || fd >= MP__FD_INTERNAL_MAX) return false;
    return (atomic_load(&fd_internal[fd / FD_WORD_BITS]) >> (fd % FD_WORD_BITS)) & 1;
}

void mp__fd_close_internal(const int *keep, int n)
{
    for (size_t w = 0; w < MP__FD_INTERNAL_MAX / FD_WORD_BITS; w++) {
        uint64_t bits = atomic_load_explicit(&fd_internal[w], memory_order_relaxed);
        while (bits) {
            int b = __builtin_ctzll(bits);
            bits &= bits - 1;
            int fd = (int)(w * FD_WORD_BITS) + b;
            bool kept = false;
            for (int i = 0; i < n && !kept; i++)
                kept = keep[i] == fd;
            if (kept) continue;
            atomic_fetch_and(&fd_internal[w], ~(UINT64_C(1) << b));
            atomic_store_explicit(&fb_pid[fd], 0, memory_order_relaxed);
            close(fd);
        }
    }
}

/* ---- stdio -------------------------------------------------------------------------------- */

void mp__stdio_bind(void)
{
    /* __fpurge on a throwaway stream: resolves its PLT slot without touching stdout. */
    char buf[8];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    if (!f) return;
    __fpurge(f);
    fclose(f);
}

void mp__stdio_purge(void)
{
    /* __fpurge takes no lock: glibc's fork resets the stream locks in the child, and the buffer
     * pointers it rewinds are consistent enough to drop whatever was half written. */
    __fpurge(stdout);
    __fpurge(stderr);
}
