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
 * Start method: fork. The child is a copy of the parent, so target and arg are plain C pointers
 * (the same addresses are valid in the child). The child runs target(arg); its return value
 * (0..255) is the exit status. Stdio is flushed and the child ends with _exit(): the parent's
 * atexit handlers never run twice.
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
 * else reaped it: the exit code is then unknown, reported as -ECHILD by exitcode), and signals only
 * through a pidfd, which can never reach a recycled pid. A program that sets SIGCHLD to SIG_IGN
 * makes the kernel reap children itself; mproc then reports -ECHILD for their exit codes.
 *
 * Thread safety: one process object must not be used by two threads at once. Different objects
 * may be used concurrently.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "common.h"

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

/* Marks the process as a daemon (true) or not, before start. Errors: -EINVAL, MP_ESTARTED. */
MP_API int mp_process_set_daemon(mp_process *p, bool daemon);
MP_API bool mp_process_daemon(const mp_process *p);

/* Forks the child. Signals are blocked around fork; in the child every handler is reset to its
 * default and the mask cleared before target runs. Errors: -EINVAL, MP_ESTARTED (already started),
 * MP_ECHILD (called on the process object of the calling child itself), -EAGAIN/-ENOMEM (fork). */
MP_API int mp_process_start(mp_process *p);

/* Waits until the child ends, or timeout seconds (MP_FOREVER: no limit), then reaps it.
 * Returns 0 when the child has ended (also when it had already been joined), -ETIMEDOUT when it
 * still runs. Errors: -EINVAL, MP_ENOTSTARTED, MP_ESELF (joining oneself). */
MP_API int mp_process_join(mp_process *p, double timeout);

/* 1 while the child runs, 0 once it ended (reaping it if needed, without blocking) or before start;
 * negative on error (-EINVAL). */
MP_API int mp_process_is_alive(mp_process *p);

/* The child's pid: 0 before start, the pid afterwards (also after it ended). -EINVAL for NULL. */
MP_API pid_t mp_process_pid(const mp_process *p);

/* The name; never NULL ("" for a NULL process). Borrowed: valid until free. */
MP_API const char *mp_process_name(const mp_process *p);

/* The exit code once the child ended: its exit status, or -SIGNUM when a signal killed it (as
 * Python's exitcode). Reaps the child without blocking if it has ended.
 * Errors: -EINVAL, MP_ENOTSTARTED, -EBUSY (still running), -ECHILD (reaped by someone else: unknown). */
MP_API int mp_process_exitcode(mp_process *p, int *code);

/* Sends SIGTERM / SIGKILL / any signal through the pidfd. A child that ended but has not been
 * reaped yet is not an error (nothing happens, as in Python). Errors: -EINVAL, MP_ENOTSTARTED,
 * MP_EREAPED (already reaped: mproc never signals a pid it reaped), MP_ESELF. */
MP_API int mp_process_terminate(mp_process *p);
MP_API int mp_process_kill(mp_process *p);
MP_API int mp_process_signal(mp_process *p, int sig);

/* A file descriptor that becomes readable (POLLIN) when the child ends: its pidfd. Poll many of
 * them at once to wait for several processes (see also mp_wait in mproc/pipe.h). Owned by the
 * process object; valid from start until free. Errors: -EINVAL, MP_ENOTSTARTED. */
MP_API int mp_process_sentinel(const mp_process *p);

/* Releases the object and sets *pp to NULL. A child that ended is reaped first, so no zombie is
 * left. Returns 0 (also for NULL or *pp NULL), or -EBUSY while the child still runs (the object
 * stays valid; join, terminate or kill it first). */
MP_API int mp_process_free(mp_process **pp);

/* ---- "subclassing": your own process class ---------------------------------------------------
 * The seed's own process class: the library's fixed machinery (start) calls run, and your type
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
    mp_run_fn run;     /* called in the child by the start machinery */
    mp_process *proc;  /* the machinery; use it with every mp_process_* call */
};

/* Fills self->run and creates self->proc. The struct that embeds self must stay where it is until
 * mp_process_start returns (the child finds it at the same address). Errors as mp_process_new. */
MP_API int mp_process_base_init(mp_process_base *self, const char *name, mp_run_fn run);
/* mp_process_free(&self->proc). */
MP_API int mp_process_base_free(mp_process_base *self);

/* ---- the calling process and its children -------------------------------------------------- */

/* The process object of the calling process: in a child started by mproc, its own object (a copy
 * made by fork; join, kill and free on it fail with MP_ESELF); in the main program a static object
 * named "MainProcess". Borrowed, never NULL. */
MP_API mp_process *mp_process_current(void);

/* The parent's pid when the caller was started by mproc, else 0 (as Python's parent_process()
 * gives None in the main process). */
MP_API pid_t mp_process_parent_pid(void);

/* Fills out[0..max) with the caller's mproc children still running (reaping the ones that ended,
 * as Python's active_children()) and returns how many are running (may exceed max). Borrowed
 * pointers. Errors: -EINVAL (out NULL with max > 0). */
MP_API int mp_process_active_children(mp_process **out, int max);

/* The number of CPUs this process may run on (sched_getaffinity), at least 1. */
MP_API int mp_cpu_count(void);

/* ---- the second-level child (double fork) --------------------------------------------------
 * Runs target(arg) in a grandchild that the child leaves behind at once: the child exits, the
 * caller reaps it, and the grandchild is adopted by init (or the nearest subreaper), so no zombie
 * remains in the caller. The grandchild is detached on purpose: it is not killed when the caller
 * dies. Stores the grandchild's pid in *pid_out (may be NULL). Errors: -EINVAL, -EAGAIN/-ENOMEM
 * (fork), -EPIPE (the child died before reporting the grandchild's pid). */
MP_API int mp_process_run_detached(mp_target_fn target, void *arg, pid_t *pid_out);

#ifdef __cplusplus
}
#endif
#endif
