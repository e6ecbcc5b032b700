/* SPDX-License-Identifier: MIT */
/* mproc/start.h - start methods (fork, spawn, forkserver) and the program's entry call.
 *
 *     int main(int argc, char **argv) {
 *         mp_init(&argc, &argv);          // first thing: returns at once in an ordinary start;
 *                                         // a spawned child runs its target here and exits
 *         mp_set_start_method(MP_START_FORKSERVER);
 *         ... start threads, processes, pools as usual ...
 *     }
 *
 * Three ways to start a child (Python's start methods):
 *   MP_START_FORK        the child is a copy of the caller (fork(2)). Cheapest; the child sees the
 *                        caller's memory. Only the forking thread is copied: a lock another thread
 *                        held at that instant stays locked in the child forever. Right for
 *                        single-threaded programs; the default.
 *   MP_START_SPAWN       the child execs the program itself (/proc/self/exe, the same argv) and
 * runs only the requested target from mp_init(); nothing of the caller's memory, threads or locks
 * comes along. Safe from any thread; costs an exec. MP_START_FORKSERVER  a small server process (a
 * spawned copy of the program, single-threaded) forks every child on request: cheap like fork,
 * clean like spawn. Started at the first use, restarted transparently if it was killed. Under spawn
 * and forkserver a process target is a registered function named by a string (see
 * mp_process_new_func) and its argument is bytes; objects reach the child through
 * mp_process_pass (fds passed with SCM_RIGHTS: the same shared state, never a copy). See
 * docs/start-methods.md.
 *
 * Environment: MPROC_START_METHOD=fork|spawn|forkserver sets the program-wide default (read at the
 * first start, or by mp_init); MPROC_WARN_FORK_THREADS=1 makes every fork from a process with
 * more than one thread (besides mproc's own) print a warning to stderr.
 */
#ifndef MPROC_START_H
#define MPROC_START_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mp_start_method {
    MP_START_DEFAULT = 0, /* in options: the program-wide default (mp_get_start_method) */
    MP_START_FORK = 1,
    MP_START_SPAWN = 2,
    MP_START_FORKSERVER = 3,
} mp_start_method;

/* The entry call. A program that uses spawn or forkserver (or the MPI pool backend) calls it first
 * thing in main, before it starts threads. In an ordinary start it records that the program is
 * ready for those methods and returns 0 at once. In a child that mproc spawned (and in the
 * forkserver, and on MPI worker ranks) it runs what was asked of that process and exits with its
 * code: it never returns into main. argc and argv may be NULL; they are left as they are (a later
 * version may remove options of its own). Calling it twice is harmless (0). Errors: none in an
 * ordinary start; a spawned child whose parent sent a bad or truncated request prints why to
 * stderr and exits with status 70 (EX_SOFTWARE) without running main. Not async-signal-safe. */
MP_API int mp_init(int *argc, char ***argv);

/* 1 when mp_init() was called in this process (or in the program this process was forked from),
 * else 0. */
MP_API int mp_is_initialized(void);

/* Sets / gets the program-wide default start method, used by processes and pools whose options say
 * MP_START_DEFAULT. The initial default is MP_START_FORK, or MPROC_START_METHOD from the
 * environment. Errors: -EINVAL (not one of the three methods; MP_START_DEFAULT included). May be
 * called at any time; starts already made are not affected. Thread-safe. */
MP_API int mp_set_start_method(mp_start_method method);
MP_API mp_start_method mp_get_start_method(void);

/* "fork", "spawn", "forkserver" <-> the method. mp_start_method_parse: -EINVAL for NULL or an
 * unknown name. mp_start_method_name: "default" for MP_START_DEFAULT, "?" for anything unknown. */
MP_API int mp_start_method_parse(const char *name, mp_start_method *out);
MP_API const char *mp_start_method_name(mp_start_method method);

/* The number of threads the calling process runs now (from /proc/self/status), mproc's own pool
 * supervisor threads not counted, so 1 means "a fork here is safe". Negative on error (-errno).
 * Use it to decide on a start method; MPROC_WARN_FORK_THREADS=1 makes mproc warn on its own. */
MP_API int mp_thread_count(void);

/* ---- objects handed to a child ----------------------------------------------------------------
 * The kinds of object mp_process_pass can give a child, under every start method. Lock and RLock
 * are MP_KIND_LOCK, Semaphore and BoundedSemaphore MP_KIND_SEM, Queue and JoinableQueue
 * MP_KIND_QUEUE, a Pipe/Connection end MP_KIND_CONN, a named block (mp_shm) MP_KIND_SHM. */
typedef enum mp_kind {
    MP_KIND_QUEUE = 1,
    MP_KIND_CONN,
    MP_KIND_LOCK,
    MP_KIND_SEM,
    MP_KIND_EVENT,
    MP_KIND_COND,
    MP_KIND_BARRIER,
    MP_KIND_VALUE,
    MP_KIND_ARRAY,
    MP_KIND_SHM,
} mp_kind;

/* "queue", "conn", ... for a kind; "?" for anything else. */
MP_API const char *mp_kind_name(mp_kind kind);

/* The pid of the forkserver, when one runs for this program (started by a forkserver start),
 * else 0. */
MP_API pid_t mp_forkserver_pid(void);

/* Stops this program's forkserver now (the next forkserver start starts a new one): children it
 * forked that still run are killed (SIGKILL), as when the program dies; join them first. The
 * server is reaped before this returns. At exit nothing needs doing: the server ends by itself
 * once the program is gone. Returns 0 (also when none runs). Thread-safe. */
MP_API int mp_forkserver_stop(void);

#ifdef __cplusplus
}
#endif
#endif
