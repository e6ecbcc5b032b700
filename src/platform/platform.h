/* SPDX-License-Identifier: MIT */
/* platform.h - the contract between mproc's portable modules and the OS layer (Linux).
 *
 * Every module reaches the kernel for time, futexes, pidfds, shared mappings and CPU facts only
 * through these calls, so a port (or a test double) replaces this directory and nothing else.
 * All functions return 0 or a negative errno unless documented otherwise, retry EINTR against
 * the caller's deadline, and create every fd with close-on-exec.
 */
#ifndef MP_PLATFORM_H
#define MP_PLATFORM_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* ---- time --------------------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. Async-signal-safe. */
int64_t mp__now_ns(void);

/* An absolute point on CLOCK_MONOTONIC; at_ns < 0 means "never". Deadlines, not durations, are
 * passed down so that a wait resumed after EINTR or a spurious wake-up keeps the caller's limit. */
typedef struct mp__deadline {
    int64_t at_ns;
} mp__deadline;

/* Whether a timeout means "no limit": MP_FOREVER (-1.0) exactly, +INFINITY, or more than ~31
 * years (treated as forever rather than overflow). Every other negative value and NaN is a
 * deadline that has already passed (docs/conventions.md). */
static inline bool mp__timeout_is_forever(double t)
{
    return t == -1.0 || t > 1e9;
}

/* The deadline `timeout_s` seconds from now; see mp__timeout_is_forever. */
mp__deadline mp__deadline_in(double timeout_s);
static inline bool mp__deadline_forever(const mp__deadline *d)
{
    return d->at_ns < 0;
}
/* Nanoseconds left (0 when passed, INT64_MAX when forever). */
int64_t mp__deadline_left_ns(const mp__deadline *d);
/* Milliseconds left for poll(): rounded up, -1 for forever, 0 when passed. */
int mp__deadline_poll_ms(const mp__deadline *d);
/* The deadline as an absolute timespec on CLOCK_MONOTONIC (valid only when not forever). */
struct timespec mp__deadline_abs(const mp__deadline *d);

/* Every sleep on shared state that another process is meant to end is cut into slices of this
 * length and re-checks its condition between them. A wake-up can be lost when the process it was
 * given to is killed before it acts on it (FUTEX_WAKE 1 picks one sleeper; glibc's robust mutex
 * unlock wakes one waiter); the slice bounds what such a death costs the survivors. */
#define MP__WAIT_SLICE_NS 20000000 /* 20 ms */

/* The earlier of `dl` and one slice from now: what a re-checking sleeper passes to futex_wait. */
mp__deadline mp__deadline_slice(const mp__deadline *dl);

/* ---- robust process-shared mutexes -------------------------------------------------------- */

/* Initialise a robust, process-shared mutex of `type` (PTHREAD_MUTEX_*). Returns 0 or -errno. */
int mp__robust_mutex_init(pthread_mutex_t *m, int type);

/* Lock a robust process-shared mutex until `dl` (NULL: forever). The sleep is cut into
 * MP__WAIT_SLICE_NS slices so that a wake-up lost with a killed waiter costs the others at most
 * one slice. Returns a pthread code, not negated: 0, EOWNERDEAD (the caller repairs and calls
 * pthread_mutex_consistent), ETIMEDOUT (deadline passed; also for an expired deadline when the
 * mutex is busy), EDEADLK, ENOTRECOVERABLE, EAGAIN. */
int mp__robust_mutex_lock(pthread_mutex_t *m, const mp__deadline *dl);

/* ---- futex: wait/wake on a 32-bit word in (possibly shared) memory ----------------------------
 */

/* Sleep while *word == expected, until woken or the deadline passes. Returns 0 when woken, when
 * the word already differed, or on a spurious wake-up or signal (callers re-check their condition
 * in a loop); -ETIMEDOUT when the deadline passed. Works across processes on MAP_SHARED memory. */
int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected, const mp__deadline *dl);
/* Wake up to n waiters (INT32_MAX: all). Returns the number woken, >= 0. */
int mp__futex_wake(_Atomic uint32_t *word, int n);

/* Spin for up to spin_ns while *word == expected. Returns true when the word changed. Spinning
 * pays only when the peer that will change the word runs on another CPU; see mp__spin_budget. */
bool mp__spin_while_equal(_Atomic uint32_t *word, uint32_t expected, int64_t spin_ns);

/* How long a waiter should spin before sleeping, given the CPU the peer last ran on (-1 when
 * unknown): 0 on a single-CPU system or when the peer shares our CPU (spinning would only steal
 * its time slice), otherwise a few tens of microseconds, the cost of waking a halted vCPU. */
int64_t mp__spin_budget(int peer_cpu);

/* The CPU the caller runs on now, or -1. Cheap (vDSO). */
int mp__current_cpu(void);

static inline void mp__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- processes ---------------------------------------------------------------------------- */

/* A pollable handle on a child process that can never name a recycled pid: a pidfd (pidfd_open,
 * Linux 5.3; waitid(P_PIDFD) needs 5.4), or, where the kernel has none (older kernels, seccomp
 * sandboxes, valgrind 3.19, or MPROC_NO_PIDFD=1 in the environment), a "death socket": mp__fork
 * makes an AF_UNIX socket pair whose write end only the child holds (close-on-exec, closed in
 * every process the child forks), so the parent's end turns readable (POLLIN, as a pidfd) when the
 * child ends. A table fd -> pid lets the calls below use kill(pid) only while the pid is ours and
 * not yet reaped (a zombie keeps its pid), and reap with waitid(P_PID, pid) only that pid.
 *
 * In the fallback mp__pidfd_open(pid) works only for the last children the calling thread forked
 * with mp__fork (it hands over their death socket; -ENOSYS for any other pid). Both kinds of fd
 * are close-on-exec and marked internal (mp__fd_internal_add); release them with
 * mp__pidfd_close. Fallback limits: a child that execs, or closes the fd behind mproc's back,
 * makes its handle readable while it still runs (waits then re-check every MP__WAIT_SLICE_NS, so
 * joins stay right; only a user's poll on the sentinel sees it early); and a pid reaped by
 * someone else (waitpid(-1), SIGCHLD ignored) can be signalled until mproc notices the ECHILD. */
int mp__pidfd_open(pid_t pid);
/* Send sig through the handle: can never hit a recycled pid. -ESRCH once the child was reaped. */
int mp__pidfd_send_signal(int pidfd, int sig);
/* Waits until `dl` (NULL: do not block) for the child behind the handle to end, and reaps it.
 * Returns 1 when reaped (*si filled as by waitid), 0 while it runs, -ECHILD when it was reaped
 * already (by anyone), or another -errno. EINTR never surfaces. */
int mp__pidfd_reap(int pidfd, const mp__deadline *dl, siginfo_t *si);
/* Whether the handle's process is still our child, unreaped (false once it was reaped by
 * anyone, so a pidfd_open that raced with someone else's reaping cannot be mistaken for ours). */
bool mp__pidfd_is_child(int pidfd);
/* A handle for a child that ended and was reaped before mproc could watch it: readable at once,
 * internal, close-on-exec; release with mp__pidfd_close. Returns the fd or -errno. */
int mp__dead_handle(void);
/* A pidfd on the caller's parent, whose pid was `ppid` at fork, for waiting on it (not for
 * reaping: it is not our child). Opened first, then getppid() is checked: a parent that still is
 * our parent held its pid all along, so the fd cannot name a stranger that took a recycled pid.
 * Returns the fd (internal, close-on-exec; release with mp__pidfd_close), -ESRCH when the parent
 * has already ended (we were reparented), -ENOSYS in the fallback (no pidfds), or -errno. */
int mp__parent_pidfd_open(pid_t ppid);
/* Unmarks and closes a handle from mp__pidfd_open (does not reap). */
void mp__pidfd_close(int pidfd);
/* True when this process uses the death-socket fallback (decided once, at first use). */
bool mp__pidfd_fallback(void);
/* Tests: use the fallback from now on, whatever the kernel offers. */
void mp__pidfd_force_fallback(void);

/* The fork side of the fallback, for mp__fork. mp__death_open: before fork, the socket pair
 * (both marked internal) when the fallback is in use, else {-1, -1}; returns 0 or -errno.
 * mp__death_child: in the child, right after fork: drops the parent's end and forgets the
 * calling thread's unclaimed sockets (death[1] stays open and marked: the caller keeps it from
 * mp__fd_close_internal). mp__death_parent: after fork (pid < 0 when it failed): closes the
 * child's end and keeps ours for mp__pidfd_open(pid). */
int mp__death_open(int death[2]);
void mp__death_child(const int death[2]);
void mp__death_parent(pid_t pid, const int death[2]);

/* ---- running the program again (spawn.c) ---------------------------------------------------- */

/* Reads and keeps the program's executable path (readlink /proc/self/exe); mp_init calls it. */
void mp__self_exe_init(void);
/* posix_spawn of the program itself with argv, the current environment plus extra_env ("K=V", may
 * be NULL), fds[i] placed at fd 3+i (at most 8, without close-on-exec), every other fd above 2
 * closed and the signal mask emptied in the child. *pid gets the child, our own. Returns 0 or
 * -errno (-ENOENT: the executable is gone). Thread-safe. */
int mp__spawn_self(char *const argv[], const char *extra_env, const int *fds, int nfds, pid_t *pid);

/* ---- stdio ---------------------------------------------------------------------------------- */

/* In a freshly forked child: discard (never write) what stdout's and stderr's buffers hold. The
 * parent flushed before fork, but another thread may have buffered more between that flush and
 * the fork; those bytes are the parent's to write. */
void mp__stdio_purge(void);
/* In the parent, once: binds what mp__stdio_purge calls, so no child pays a lazy PLT lookup. */
void mp__stdio_bind(void);

/* CPUs this process may run on (sched_getaffinity), at least 1. */
int mp__cpu_count(void);
/* Pin the calling thread to one CPU (benchmarks). */
int mp__pin_to_cpu(int cpu);

/* ---- memory ------------------------------------------------------------------------------- */

/* Anonymous shared memory, inherited across fork: MAP_SHARED|MAP_ANONYMOUS, zero-filled. */
int mp__shm_map_anon(size_t size, void **out);
int mp__shm_unmap(void *addr, size_t size);
/* A sealed-size-capable anonymous file (memfd_create, MFD_CLOEXEC|MFD_ALLOW_SEALING) of `size`
 * bytes, for memory passed to processes that did not fork from us. Returns the fd or -errno. */
int mp__memfd_new(const char *name, size_t size);

/* ---- fds ---------------------------------------------------------------------------------- */

/* poll() one fd for `events` until the deadline; EINTR retried. Returns revents (> 0), 0 on
 * timeout, or -errno. */
int mp__poll_one(int fd, short events, const mp__deadline *dl);
/* write() everything, retrying EINTR and short writes. Returns 0 or -errno. Blocking fds only.
 * SIGPIPE is the caller's business (sockets: use send() with MSG_NOSIGNAL instead). */
int mp__write_full(int fd, const void *buf, size_t len);
/* read() until len bytes or end of file, retrying EINTR. Returns the bytes read (< len only at
 * end of file) or -errno. Blocking fds only. */
ssize_t mp__read_full(int fd, void *buf, size_t len);

/* ---- internal fds: what children must not inherit ------------------------------------------
 *
 * Every fd that mproc opens for its own bookkeeping (pidfds, eventfds, a pool's sockets, ...) is
 * marked here. Close-on-exec does not help a child that is forked without exec, so every child
 * mproc forks calls mp__fd_close_internal() first thing, keeping only the fds it needs. The set is
 * a bitmap of atomic words: marking is lock-free, and the child's walk is async-signal-safe even
 * when another thread of the parent was marking at the instant of the fork. Fds at or above
 * MP__FD_INTERNAL_MAX are not tracked (they stay close-on-exec only). */
#define MP__FD_INTERNAL_MAX 65536
void mp__fd_internal_add(int fd);
/* Call before closing a marked fd (the number may be reused for a user's fd). */
void mp__fd_internal_del(int fd);
bool mp__fd_is_internal(int fd);
/* In a freshly forked child: close every marked fd but the n in `keep`, and unmark them. */
void mp__fd_close_internal(const int *keep, int n);

/* ---- peer hang-up watch (hangup.c) ---------------------------------------------------------
 *
 * Whether the other end of a connected socket is gone (every copy of the peer's end closed, by
 * a close or by the death of its process), asked before each send of a pipe end, whose pipe
 * writes cannot say so themselves (conn.c). The authoritative answer is POLLHUP or POLLERR on
 * the socket, a system call; a watch makes the usual answer free: its first check arms a
 * one-shot kernel poll on `arm` (io_uring), and later checks read the completion ring in shared
 * memory, entering the kernel only when something fired (and then ask the socket before they
 * believe it). Without io_uring (or allow_ring false, or when the ring cannot be set up or the
 * armed fd fires for a reason that is not a hang-up) every check is the system call.
 *
 *   sock  the socket whose hang-up means the peer is gone.
 *   arm   the fd the kernel poll is armed on: sock, or an fd that hangs up no later than sock
 *         does. A pending poll holds a reference to its file until the ring is torn down (for a
 *         dying process, later, from a kernel worker), so never arm on a file whose release the
 *         peer waits for.
 *
 * Guarantees: for the thread that made the first check, a hang-up that happened before a check
 * began is always reported by it (the kernel delivers the completion to that thread the next time
 * it enters the kernel, and flags it in the ring until then); other threads and forked children
 * (the watch notices a fork) ask the socket each time. One thread at a time may check a watch.
 * Checks retry EINTR; the watch owns only its own fds (close-on-exec, not in the internal-fd
 * registry) and must be freed before sock and arm are closed. When the peer goes, a blocking
 * epoll_wait() of the arming thread may end once with EINTR, as after a signal (docs/pipe.md);
 * calls that restart after signals are not affected. */
typedef struct mp__hangup_watch mp__hangup_watch;

/* A watch over sock (armed on arm at its first check). Returns 0, or -ENOMEM. */
int mp__hangup_watch_new(mp__hangup_watch **out, int sock, int arm, bool allow_ring);
/* true when the peer is gone. No system call in the usual case (see above). */
bool mp__hangup_watch_gone(mp__hangup_watch *w);
/* Releases the watch and its kernel poll; sets *pw to NULL. NULL-safe. */
void mp__hangup_watch_free(mp__hangup_watch **pw);
/* One-off check without a watch: poll() for POLLHUP/POLLERR on sock. */
bool mp__hangup_now(int sock);

/* ---- waiting on many fds (hangup.c) ---------------------------------------------------------
 *
 * poll() on u[0..nu) (distinct fds) until the deadline, EINTR retried against it. poll() refuses
 * more fds than RLIMIT_NOFILE's soft limit (EINVAL); then an epoll instance of the call's own does
 * the waiting (it needs one free fd: else -EMFILE), with answers in u[].revents as poll gives
 * them: POLLIN, POLLHUP, POLLERR, and POLLNVAL for an fd that is not open. Returns how many fds are
 * ready (0: the deadline passed) or -errno. */
struct pollfd;
int mp__poll_fds(struct pollfd *u, size_t nu, const mp__deadline *dl);

/* ---- robust mutexes: holder and glibc quirks (mutex.c) -------------------------------------- */

#include <errno.h> /* ENOTRECOVERABLE, for the inline below */

/* The calling thread's id, cached per thread (forgotten in fork children: pthread_atfork, so
 * children must be made with fork(), not a raw clone()). */
pid_t mp__tid(void);
/* Whether the calling thread holds m (any mutex type). */
bool mp__mutex_owner_is_self(const pthread_mutex_t *m);
/* Whether any live thread holds the robust mutex m (a dead holder's mutex reads as unlocked). */
bool mp__mutex_is_locked(const pthread_mutex_t *m);
/* Undo glibc's stuck word after an ENOTRECOVERABLE (no-op unless the word names the caller). */
void mp__mutex_unstick(pthread_mutex_t *m);
/* pthread_mutex_trylock that never leaves an unrecoverable robust mutex stuck (glibc 2.36
 * leaves the word naming the caller after ENOTRECOVERABLE; see mutex.c). Same results as
 * pthread_mutex_trylock. mp__robust_mutex_lock starts with it. Inline: it is every Lock's
 * uncontended path. */
static inline int mp__robust_mutex_trylock(pthread_mutex_t *m)
{
    int r = pthread_mutex_trylock(m);
    if (__builtin_expect(r == ENOTRECOVERABLE, 0)) mp__mutex_unstick(m);
    return r;
}

/* ---- processes by pid (proc.c) -------------------------------------------------------------- */

/* The calling process's pid, cached (forgotten in fork children: pthread_atfork, so children
 * must be made with fork(), not a raw clone()). */
pid_t mp__getpid_cached(void);
/* The start time of process pid (clock ticks since boot: /proc/<pid>/stat field 22), which tells
 * a process from a later one given the same pid; 0 when unknown. */
uint64_t mp__pid_start_time(pid_t pid);
/* Whether the process recorded as (pid, start_time) is gone: no such pid, a zombie (it will never
 * act again, though its parent has not reaped it), or the pid now names another process (its
 * start time differs; start_time 0 skips that check). */
bool mp__pid_gone(pid_t pid, uint64_t start_time);

#endif
