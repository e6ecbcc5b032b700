/* SPDX-License-Identifier: MIT */
/* mproc/process.h - processes with a target function: Python's Process, in C.
 *
 *     static int work(void *arg) { printf("hello from %d\n", (int)getpid()); return 0; }
 *
 *     mp_process *p;
 *     mp_process_new(&p, "worker", work, NULL);
 *     mp_process_start(p);            // fork; the child runs work(arg) and exits with its result
 *     mp_process_join(p, MP_FOREVER); // wait and reap
 *     int code; mp_process_exitcode(p, &code);
 *     mp_process_free(&p);
 *
 * Start method (mproc/start.h): fork by default. The child is then a copy of the parent, so
 * target and arg are plain C pointers (the same addresses are valid in the child). Under spawn
 * and forkserver the child is a fresh image of the program: the target must be a registered
 * function named by a string, with bytes as its argument (mp_process_new_func below), and objects
 * reach it through mp_process_pass; everything else in this header works the same under every
 * method (exit codes, join timeouts, terminate/kill, sentinels, no orphans).
 *
 * The child runs target(arg); its return value (masked to 0..255) is the exit status. Every stdio
 * stream is flushed before fork, and the child discards what stdout and stderr still buffer (bytes
 * another thread printed meanwhile are the parent's): nothing is written twice. When target
 * returns, the child terminates its own daemon children and joins the others (as Python's
 * bootstrap), flushes stdout and stderr with SIGPIPE blocked (a failed flush makes the exit code 1,
 * as CPython reports, never a death by SIGPIPE) and ends with _exit(), so the parent's atexit
 * handlers never run twice. Other FILE streams the target writes are its own to fflush or fclose
 * (as in Python, whose child ends with os._exit). A target may also call exit(n): the exit code is
 * then n, and atexit handlers run in the child.
 *
 * Fork discipline: all signals are blocked around fork; in the child, before target runs, the
 * handler of every caught standard signal (1..31) is reset to SIG_DFL (ignored signals stay
 * ignored, as across exec) and the signal mask is emptied. Real-time signals (SIGRTMIN..) keep
 * the parent's dispositions (checking each costs a system call in every child); reset them in
 * the target if you install handlers for them. Every fd mproc opens is close-on-exec, and none is
 * inherited by the children mproc forks (pidfds, sigwaiters' signalfds, pools' fds: each child
 * closes them first thing).
 *
 * Lifetimes: the caller owns a process object from mp_process_new() to mp_process_free().
 * Free refuses (-EBUSY) while the child runs; join or kill it first. Every child of mproc
 * dies when its parent process dies (PR_SET_PDEATHSIG(SIGKILL), with a getppid() check that closes
 * the race); note that the kernel delivers it when the *thread* that started the child exits, so
 * start processes from a thread that lives as long as they should. When the parent exits normally
 * (exit() or return from main), daemon children are terminated (SIGTERM, then SIGKILL after
 * 1 s) and the rest are joined, as Python does.
 *
 * Reaping: mproc reaps only the pids it started (never waitpid(-1)), tolerates ECHILD (someone
 * else reaped it: the exit code is then unknown, reported as -ENODATA by exitcode), and signals
 * only through a pidfd, which can never reach a recycled pid. A program that sets SIGCHLD to
 * SIG_IGN makes the kernel reap children itself; mproc then reports -ENODATA for their exit codes.
 * Without pidfds (Linux < 5.4, seccomp, valgrind 3.19, or MPROC_NO_PIDFD=1 in the environment) a
 * "death socket" per child stands in: same calls, same promises (docs/process.md, "Without
 * pidfds").
 *
 * Ownership across fork: only the process that started a child may join, signal or reap it. A
 * child inherits copies of its parent's process objects; calls on them return MP_ECHILD (the
 * child may free them: that releases only its copy). Calls on the calling process's own object
 * (mp_process_current()) that would wait for, signal or free itself return MP_ESELF. The
 * parent, as an object: mp_process_parent().
 *
 * Thread safety: one process object must not be used by two threads at once. Different objects
 * may be used concurrently.
 *
 * Signal handlers: mp_process_pid, mp_process_name, mp_process_is_daemon, mp_process_sentinel,
 * mp_process_parent_pid and mp_process_signal/terminate/kill only read the object and make at
 * most one system call: they are async-signal-safe. mp_process_join/is_alive/exitcode are too
 * when no other thread uses the same object. new, start, free, active_children, current (it may
 * write) and run_detached are not (they allocate, lock or fork). In a child that mproc forked
 * every call works (mproc resets its registry and its lock there); after a plain fork() of a
 * multi-threaded program only the async-signal-safe calls are, as for any library.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "common.h"
#include "start.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_process mp_process;

/* A target function: runs in the child; its return value, masked to 0..255, is the exit status. */
typedef int (*mp_target_fn)(void *arg);

/* Creates a process object that will run target(arg) in a child. name may be NULL ("Process-N",
 * N counting from 1 per program, as Python). The name is copied (at most 63 bytes kept).
 * Errors: -EINVAL (out or target NULL), -ENOMEM. */
MP_API int mp_process_new(mp_process **out, const char *name, mp_target_fn target, void *arg);

/* Marks the process as a daemon (true) or not, before start. The default is the creating
 * process's flag (as Python): false in the main program, true inside a daemon child.
 * Errors: -EINVAL, MP_ESTARTED. mp_process_is_daemon: 1 (daemon), 0 (not), -EINVAL (NULL). */
MP_API int mp_process_set_daemon(mp_process *p, bool daemon);
MP_API int mp_process_is_daemon(const mp_process *p);

/* Forks the child, which runs target(arg) under the fork discipline described at the top, with
 * PR_SET_PDEATHSIG(SIGKILL). A start from a thread ties the child's life to that thread (see
 * "Lifetimes"). Errors: -EINVAL, MP_ESTARTED (already started, also after it ended), MP_ESELF
 * (the calling process's own object), -EAGAIN/-ENOMEM (fork), -EMFILE/-ENFILE (no fd for the
 * pidfd: the child is then killed and reaped before start returns). */
MP_API int mp_process_start(mp_process *p);

/* Waits until the child ends, or timeout seconds (MP_FOREVER: no limit; 0: poll), then reaps
 * it. The wait polls the pidfd against a CLOCK_MONOTONIC deadline; signals never cut it short.
 * Returns 0 when the child has ended (also when it had already been joined, or someone else
 * reaped it), -ETIMEDOUT when it still runs (nothing changes; join again later).
 * Errors: -EINVAL, MP_ENOTSTARTED, MP_ESELF (joining oneself), MP_ECHILD (not our child). */
MP_API int mp_process_join(mp_process *p, double timeout);

/* 1 while the child runs (and for the caller's own object), 0 once it ended (reaping it if
 * needed, without blocking: bookkeeping inside the object, so the handle is const) or before
 * start; negative on error (-EINVAL, MP_ECHILD). Also works on mp_process_parent(). */
MP_API int mp_process_is_alive(const mp_process *p);

/* The child's pid: 0 before start, the pid afterwards (also after it ended); the caller's own pid
 * for its own object. -EINVAL for NULL. */
MP_API pid_t mp_process_pid(const mp_process *p);

/* The name; never NULL ("" for a NULL process). Borrowed: valid until free. */
MP_API const char *mp_process_name(const mp_process *p);

/* The exit code once the child ended: its exit status, or -SIGNUM when a signal killed it (as
 * Python's exitcode). Reaps the child without blocking if it has ended (bookkeeping inside the
 * object: the handle is const). *code is written only on success. Errors: -EINVAL (p or code
 * NULL), MP_ENOTSTARTED, -EBUSY (still running; also for the caller's own object), MP_ECHILD (not
 * our child: a copy inherited from the parent, or mp_process_parent()), -ENODATA (our child, it
 * ended, but someone else reaped it, so its exit code is lost; Python would give None). */
MP_API int mp_process_exitcode(const mp_process *p, int *code);

/* Sends SIGTERM / SIGKILL / any signal (0 checks only) through the pidfd. A child that ended
 * but has not been reaped yet is not an error (nothing happens, as in Python). Errors: -EINVAL
 * (NULL, sig out of 0..NSIG-1), MP_ENOTSTARTED, MP_EREAPED (already reaped: mproc never signals
 * a pid it reaped), MP_ESELF, MP_ECHILD (not our child), -EPERM. */
MP_API int mp_process_terminate(mp_process *p);
MP_API int mp_process_kill(mp_process *p);
MP_API int mp_process_signal(mp_process *p, int sig);

/* A file descriptor that becomes readable (POLLIN) when the child ends: its pidfd (close-on-exec;
 * under forkserver, the socket on which the server reports the child's end).
 * Poll many of them at once to wait for several processes (see also mp_wait in mproc/pipe.h).
 * Owned by the process object (do not close it); valid from start until free, also after the
 * child was reaped (it then stays readable). Errors: -EINVAL, MP_ENOTSTARTED, MP_ESELF,
 * MP_ECHILD. */
MP_API int mp_process_sentinel(const mp_process *p);

/* Releases the object and its pidfd and sets *pp to NULL. A child that ended is reaped first, so
 * no zombie is left. Returns 0 (also for NULL or *pp NULL), -EBUSY while the child still runs
 * (the object stays valid; join, terminate or kill it first), MP_ESELF for the caller's own
 * object and MP_ECHILD for the MainProcess object seen from a child (both stay valid). */
MP_API int mp_process_free(mp_process **pp);

/* ---- named targets, start methods, objects for the child ----------------------------------------
 * Under spawn and forkserver (mproc/start.h) the child is not a copy of the caller, so a target is
 * named, not a pointer, and its argument is bytes:
 *
 *     static int work(const void *arg, size_t len, mp_task_result *res) { ...; return 0; }
 *     MP_FUNC_REGISTER("work", work)          // the pool's registry: one table, the same ids
 *
 *     mp_process *p;
 *     mp_process_new_func(&p, "worker", "work", &x, sizeof x);
 *     mp_process_set_start_method(p, MP_START_SPAWN);
 *     int i = mp_process_pass(p, MP_KIND_QUEUE, q);  // the child finds it with mp_process_passed
 *     mp_process_start(p);
 *
 * The child runs func(arg, len, res) (res: a task result object whose bytes are discarded) and
 * exits with: 0 when func returns 0 without failing; func's return value when it is 1..255;
 * for mp_task_fail(res, code, msg): `code` when it is 1..255, else 1, after printing
 * "mproc: <name>: <msg>" to stderr (as an uncaught exception ends a Python child with 1); 1 for any
 * other non-zero return. A named target works under every start method, fork included. */

/* Largest argument of a named target, bytes. */
#define MP_PROCESS_ARG_MAX (16u << 20)
/* Most objects one process may be given (mp_process_pass). */
#define MP_PROCESS_PASS_MAX 32

/* Creates a process object that will run the registered function `func` with a copy of
 * arg[0..len) (arg may be NULL when len is 0). name as mp_process_new. The function is looked up
 * here: Errors: -EINVAL (out or func NULL, arg NULL with len > 0), MP_ENOFUNC (not registered;
 * mp_last_error says which), MP_ETOOBIG (len > MP_PROCESS_ARG_MAX), -ENOMEM. */
MP_API int mp_process_new_func(mp_process **out, const char *name, const char *func,
                               const void *arg, size_t len);

/* Chooses the start method of this process before start (MP_START_DEFAULT: the program-wide
 * default as it is at start). Errors: -EINVAL (p NULL, unknown method), MP_ESTARTED.
 * mp_process_start_method: the method it was (or will be) started with; MP_START_DEFAULT until
 * start when it follows the default; -EINVAL cast for NULL. */
MP_API int mp_process_set_start_method(mp_process *p, mp_start_method method);
MP_API mp_start_method mp_process_start_method(const mp_process *p);

/* Hands obj, an object of the given kind, to the child before start; returns its index in the
 * child (0, 1, ... in the order of the calls). Under fork the child uses the same object as the
 * parent (its copy); under spawn and forkserver the object's shared state travels as fds
 * (SCM_RIGHTS), never as a copy: both sides work on the same queue, lock or memory. The caller
 * keeps owning obj (it must stay alive until mp_process_start returns). An object that cannot
 * travel (an anonymous named block, a connection that lost its fd, an object created before
 * mp_init() or when no fd was left) makes mp_process_start fail with MP_ENOTSUP and a message
 * (mp_last_error). Errors: -EINVAL (NULL, unknown kind), MP_ESTARTED, -ENOSPC (more than
 * MP_PROCESS_PASS_MAX). */
MP_API int mp_process_pass(mp_process *p, mp_kind kind, void *obj);

/* In the child: the object passed at `index`, stored in *(T **)out (e.g. `mp_queue *q;
 * mp_process_passed(0, MP_KIND_QUEUE, &q)`). The object is borrowed, owned by mproc for the
 * child's life: do not free it. Errors: -EINVAL (out NULL), -ENOENT (no object at index: not a
 * child started with one), MP_ETYPE (the object there is of another kind). */
MP_API int mp_process_passed(int index, mp_kind kind, void *out);

/* ---- "subclassing": your own process class ---------------------------------------------------
 * A process class of your own: the library's fixed machinery (start) calls run, and your type
 * supplies run. Embed mp_process_base in your struct and recover it with mp_container_of:
 *
 *     struct copier { mp_process_base base; const char *src; off_t from, len; };
 *     static int copier_run(mp_process_base *self) {
 *         struct copier *c = mp_container_of(self, struct copier, base); ... return 0; }
 *
 *     struct copier c = {.src = "in", .from = 0, .len = 4096};
 *     mp_process_base_init(&c.base, "copier-1", copier_run);
 *     mp_process_start(c.base.proc); mp_process_join(c.base.proc, MP_FOREVER);
 *     mp_process_base_free(&c.base);
 */
typedef struct mp_process_base mp_process_base;
typedef int (*mp_run_fn)(mp_process_base *self);
struct mp_process_base {
    mp_run_fn run;    /* called in the child by the start machinery */
    mp_process *proc; /* the machinery; use it with every mp_process_* call */
};

/* Fills self->run and creates self->proc. The struct that embeds self must stay where it is until
 * mp_process_start returns (the child finds it at the same address). Errors as mp_process_new. */
MP_API int mp_process_base_init(mp_process_base *self, const char *name, mp_run_fn run);
/* mp_process_free(&self->proc). */
MP_API int mp_process_base_free(mp_process_base *self);

/* ---- the calling process and its children -------------------------------------------------- */

/* The process object of the calling process: in a child started by mp_process_start, its own
 * object (the copy made by fork; join, kill and free on it fail with MP_ESELF); in the main
 * program, and in processes mproc forked without an object (pool workers, the double fork's
 * grandchild), a static object named "MainProcess". Borrowed, never NULL. */
MP_API mp_process *mp_process_current(void);

/* The parent's pid when the caller was started by mproc, else 0 (as Python's parent_process()
 * gives None in the main process). */
MP_API pid_t mp_process_parent_pid(void);

/* The parent as an object (Python's parent_process()), in a process mproc forked; NULL in the
 * main program. Borrowed, one per process, never freed (free gives MP_ECHILD). It answers:
 *   mp_process_name   the parent's name when it forked us ("MainProcess", or its own name);
 *   mp_process_pid    its pid (as mp_process_parent_pid);
 *   mp_process_is_alive, mp_process_join(p, timeout)  whether it has ended / wait (bounded) for
 *                     it to end: 0 once ended, -ETIMEDOUT when it still runs at the deadline;
 *   mp_process_sentinel  a pidfd that turns readable when it ends; MP_ENOTSUP without pidfds.
 * It is not our child: exitcode, signal, terminate and kill give MP_ECHILD.
 * How: the first call opens a pidfd on the parent's pid and then checks that getppid() still
 * gives that pid (a parent that ended makes its children orphans before anyone can reap it and
 * recycle the pid, so the fd names the parent, or the parent is known to have ended). Without
 * pidfds (MPROC_NO_PIDFD=1, old kernels) or with no fd to spare, is_alive and join look at
 * getppid() instead (join every 20 ms). A child started by mproc dies with the thread that
 * started it (PR_SET_PDEATHSIG), so to outlive its parent a child must clear that first
 * (prctl(PR_SET_PDEATHSIG, 0)). Not async-signal-safe (the first call opens and locks). */
MP_API mp_process *mp_process_parent(void);

/* Fills out[0..max) with the caller's mproc children still running (reaping the ones that ended,
 * as Python's active_children()) and returns how many are running (may exceed max). Borrowed
 * pointers. Errors: -EINVAL (max < 0, or out NULL with max > 0). */
MP_API int mp_process_active_children(mp_process **out, int max);

/* The number of CPUs this process may run on (sched_getaffinity), at least 1. */
MP_API int mp_cpu_count(void);

/* ---- the second-level child (double fork) --------------------------------------------------
 * Runs target(arg) in a grandchild that the child leaves behind at once: the child exits, the
 * caller reaps it, and the grandchild is adopted by init (or the nearest subreaper), so no zombie
 * remains in the caller. The grandchild is detached on purpose: it is not killed when the caller
 * dies. The grandchild's pid is reported through a close-on-exec pipe. Stores the grandchild's
 * pid in *pid_out (may be NULL); the caller does not own the grandchild (it is not its child:
 * do not wait for it, unless the caller is the subreaper that adopts it). The grandchild gets the
 * same fork discipline as a Process child, without PR_SET_PDEATHSIG.
 * Errors: -EINVAL (target NULL), -EMFILE (pipe), -EAGAIN/-ENOMEM (either fork), -EPIPE (the
 * child died before reporting the grandchild's pid). */
MP_API int mp_process_run_detached(mp_target_fn target, void *arg, pid_t *pid_out);

#ifdef __cplusplus
}
#endif
#endif
