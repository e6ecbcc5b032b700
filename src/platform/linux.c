/* linux.c - the OS layer of platform.h on Linux: clock, futex, pidfd, memory, fds, CPUs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

int mp__pidfd_open(pid_t pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return -errno;
    /* pidfd_open sets O_CLOEXEC on its own. */
    return (int)fd;
}

int mp__pidfd_send_signal(int pidfd, int sig)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0) return -errno;
    return 0;
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
            close(fd);
        }
    }
}
