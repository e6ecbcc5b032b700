/* SPDX-License-Identifier: MIT */
/* pool_transport.h - how the pool talks to its workers.
 *
 * The pool (pool_sched.c, pool_super.c) knows tasks, results, jobs, callbacks and policy; a
 * transport knows how to set up a worker and move records (pool_internal.h) to and from it. The
 * only transport today is shared memory (pool_shm.c: per-worker SPSC rings + futex wake-ups +
 * spinning); its workers are forked by the pool's worker factory (pool_factory.c), never by a
 * thread of the program, and the factory, not the transport, reports their deaths.
 *
 * The contract, operation by operation (what an MPI backend would implement over ranks):
 *   prepare      parent side of a new worker, before it exists; hands back ONE descriptor that
 *                carries the worker's state to it (shm: the memfd of its rings); always a valid
 *                one, since the factory passes it on. The descriptor is registered as internal
 *                (mp__fd_internal_add) so no other child inherits it; the pool passes it to the
 *                factory, then unregisters and closes it. Nothing else of the parent is given to
 *                a worker: what it must not keep (other workers' state) is never mapped into it
 *                (shm: MADV_DONTFORK on every mapping, the worker maps its own memfd).
 *   worker_run   in the new worker: takes over that descriptor and the pool's eventfd, runs the
 *                worker loop (mp__worker_exec per task record), never returns.
 *   task_*       reserve/commit/flush: pack task records, publish them in batches.
 *   result_*     peek/release the worker's result records, in order.
 *   running      which task the worker runs and since when (task timeouts, deaths).
 *   init_failed  after a death: did the initializer fail, and with what.
 *   release      after the worker was reaped (or never started).
 * MPI: start = claim a rank (the rank runs the same binary, so MP_FUNC_REGISTER gave it the same
 * function table), task_* = pack and MPI_Isend, result_peek = MPI_Iprobe/MPI_Recv, a lost rank
 * reported like a factory's DIED.
 *
 * Threading: the pool calls every per-worker operation, and want_notify, with the pool lock held;
 * result_seq and result_wait are called without it (waiting threads sleep there). A transport
 * must never block in these calls, except result_wait.
 */
#ifndef MP_POOL_TRANSPORT_H
#define MP_POOL_TRANSPORT_H

#include <stdint.h>
#include <sys/types.h>

#include "platform/platform.h"
#include "pool_internal.h"
#include "start_internal.h"

/* State every transport's workers share with the parent (wake-ups for waiting parent threads). */
typedef struct mp__tp_shared mp__tp_shared;
typedef struct mp__tp_worker mp__tp_worker;

typedef struct mp__transport {
    /* Creates the pool-wide state; efd is an eventfd the workers write to wake the supervisor. */
    int (*shared_new)(mp__tp_shared **out, int efd);
    void (*shared_free)(mp__tp_shared *s);
    /* A counter bumped after every result a worker posts (and by the parent when it completes
     * something): waiting parent threads spin/sleep on it. */
    _Atomic uint32_t *(*result_seq)(mp__tp_shared *s);
    /* Wake parent threads sleeping on result_seq (bumps it first). */
    void (*result_kick)(mp__tp_shared *s);
    /* Sleep until result_seq != seq or the deadline; spin first for spin_ns. */
    void (*result_wait)(mp__tp_shared *s, uint32_t seq, int64_t spin_ns, const mp__deadline *dl);
    /* Ask the workers to write the eventfd after their next result (cleared by the one that
     * does). */
    void (*want_notify)(mp__tp_shared *s, int on);

    /* Around the fork of the worker factory: the pool-wide state must reach it (and through it
     * every worker), but no other process the program forks. */
    void (*fork_begin)(mp__tp_shared *s);
    void (*fork_end)(mp__tp_shared *s);
    /* Sets up worker state in the parent before the worker exists; *fd gets a descriptor that
     * carries it to the worker (sent to the factory, closed by the caller after). */
    int (*prepare)(mp__tp_shared *s, const mp__worker_conf *conf, mp__tp_worker **out, int *fd);
    /* In a new worker process: takes over fd (from prepare) and efd (the pool's eventfd) and runs
     * the worker loop. Never returns. */
    __attribute__((noreturn)) void (*worker_run)(mp__tp_shared *s, const mp__worker_conf *conf,
                                                 int fd, int efd);
    /* Space for a task record of `size` bytes (multiple of 8), or NULL when the worker's input is
     * full right now (try again after its results were taken). */
    void *(*task_reserve)(mp__tp_worker *w, uint32_t size);
    /* Marks the reserved record written. Records become visible to the worker at task_flush. */
    void (*task_commit)(mp__tp_worker *w, uint32_t size);
    /* Publishes every committed record and wakes the worker if it sleeps. */
    void (*task_flush)(mp__tp_worker *w);
    /* The next result record from the worker, or NULL. Valid until result_release. */
    const mp__rrec *(*result_peek)(mp__tp_worker *w);
    void (*result_release)(mp__tp_worker *w);
    /* Id of the task the worker is running (0: none) and since when (CLOCK_MONOTONIC ns). */
    uint64_t (*running)(mp__tp_worker *w, int64_t *since_ns);
    /* The CPU the worker last ran on, -1 when unknown. */
    int (*cpu)(mp__tp_worker *w);
    /* After the worker died: did its initializer fail? Fills code and msg when it did. */
    bool (*init_failed)(mp__tp_worker *w, int *code, char *msg, size_t cap);
    /* Releases the worker's transport state (after it was reaped). */
    void (*release)(mp__tp_worker *w);

    /* Under spawn and forkserver the factory is not a fork of the pool's process: the pool-wide
     * state travels as a descriptor. shared_export hands over one (close-on-exec, marked
     * internal; the caller sends it, then unmarks and closes it): -EBADF when there is none.
     * shared_import, in the factory, maps it (and takes the fd in every case); the workers the
     * factory forks inherit that mapping. NULL: the transport cannot travel (fork only). */
    int (*shared_export)(mp__tp_shared *s, int *fd);
    int (*shared_import)(int fd, mp__tp_shared **out);
    /* Which transport this is, in the factory's launch payload (MP__TP_*). */
    int id;
} mp__transport;

enum { MP__TP_SHM = 1 };

extern const mp__transport mp__pool_shm_transport;

/* ---- workers no factory forks: the launcher (MPI backend, issue 13) ---------------------------
 * An MPI pool's workers are ranks that exist from the launch on: nothing forks them, nothing reaps
 * them. A pool with a launcher (mp_pool.launcher != NULL) asks it, instead of the worker factory,
 * to start a worker over state made by its transport's prepare (which then gives fd -1), and
 * learns of the worker's end from it. All calls with the pool lock held; none blocks except start
 * (which may wait for the worker to report ready). */
typedef struct mp__launcher {
    /* Starts worker `index` over tpw (from prepare). *pid gets its pid (for mp_pool_worker_pids;
     * on another host). 0 or a negative code (mp_last_error says why). */
    int (*start)(mp__tp_shared *s, mp__tp_worker *tpw, int index, pid_t *pid);
    /* terminate: ends the worker's service now; what it posted may still be peeked. */
    void (*kill)(mp__tp_worker *tpw);
    /* A worker that ended (stopped by MP__T_STOP, maxtasksperchild, failed initializer): 1 with
     * its index and exit code (reported once), 0 when none. */
    int (*ended)(mp__tp_shared *s, int *index, int *code);
    /* How long the supervisor may sleep (ms) before it must poll again: nobody writes the
     * eventfd when results arrive. -1: nothing is expected from any worker. */
    int (*poll_ms)(mp__tp_shared *s);
} mp__launcher;

/* A pool backend that lives outside libmproc (libmproc-mpi registers one from a constructor). */
typedef struct mp__pool_backend {
    const char *name;
    const mp__transport *tp;
    const mp__launcher *launcher;
    /* 1 when usable in this process (launched by mpirun, MPI up, worker ranks exist), 0 when not
     * launched by mpirun at all (AUTO then means local), a negative code with the detail set by
     * mp__pool_set_error otherwise. *max_workers gets how many workers a pool may have. */
    int (*usable)(int *max_workers);
    /* Sets up the pool-wide state for n workers (claims them); called by mp_pool_new instead of
     * tp->shared_new. Negative code with the detail set when they cannot be had. */
    int (*shared_new)(mp__tp_shared **out, int efd, int n, double task_timeout);
} mp__pool_backend;

/* What libmproc lends such a backend (its own symbols are hidden). */
typedef struct mp__pool_services {
    int (*worker_exec)(const mp__trec *t, const mp__worker_conf *conf, mp_task_result *res,
                       char **scratch, size_t *scratch_cap, mp__emit_fn emit, void *ctx);
    int (*worker_init)(const mp__worker_conf *conf, mp_task_result *res);
    const struct mp_func *(*func_by_id)(uint64_t id);
    void (*set_error)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
} mp__pool_services;

/* Registers the MPI backend and hands back libmproc's services (pool.c). */
MP_API void mp__pool_mpi_register(const mp__pool_backend *b, const mp__pool_services **svc);

/* ---- the worker factory (pool_factory.c) ------------------------------------------------------
 * A single-threaded process forked once per pool that forks, signals and reaps the workers. */
enum { MP__F_SPAWN = 1, MP__F_KILL, MP__F_QUIT, MP__F_SPAWNED, MP__F_DIED, MP__F_BYE, MP__F_HELLO };
/* HELLO(val = the factory's mp__func_gen()): the first message of a launched factory (spawn,
 * forkserver), read by mp__factory_start itself. */

typedef struct mp__fmsg {
    int32_t op;
    int32_t index; /* SPAWN, SPAWNED: the worker slot */
    int32_t pid;   /* SPAWNED: the worker's pid or -errno; KILL, DIED: the worker */
    int32_t val;   /* SPAWN: CPU to pin to (-1: none); KILL: signal; DIED: exit code */
} mp__fmsg;

typedef struct mp__factory {
    pid_t pid;
    int sock; /* the pool's end; -1 when none */
    bool gone;
    /* How the factory is started (MP_START_FORK, _SPAWN or _FORKSERVER, resolved; 0 = fork), set
     * by mp_pool_new before mp__factory_start. */
    int method;
    mp__launched launched; /* spawn, forkserver: the factory as its launcher holds it */
    char err[256];         /* why mp__factory_start failed (the start error's text), or "" */
    /* Launched: the registry generation of the factory, a fresh image of the program: it has
     * the functions with seq <= func_gen (those MP_FUNC_REGISTER registered at load time, in the
     * same order as here), nothing registered at run time. Unused under fork. */
    uint64_t func_gen;
} mp__factory;

/* Starts the factory (call from the thread the workers' lives are tied to): a fork under
 * MP_START_FORK, else mp__launch with MP__ENTRY_POOL_FACTORY (conf and the transport's shared
 * state travel in the request). On failure f->err says why. */
int mp__factory_start(mp__factory *f, const mp__transport *tp, mp__tp_shared *ts,
                      const mp__worker_conf *conf);
/* Asks for worker `index`; the answer comes as SPAWNED. Returns 0 or -errno. */
int mp__factory_spawn(mp__factory *f, int index, int pin_cpu, int tpfd, int efd);
void mp__factory_kill(mp__factory *f, pid_t pid, int sig);
/* Next message: 1, 0 (none before dl; NULL dl: do not wait), -EPIPE (the factory is gone). */
int mp__factory_recv(mp__factory *f, mp__fmsg *m, const mp__deadline *dl);
/* Asks the factory to kill its workers, report them and exit (then BYE). */
void mp__factory_quit(mp__factory *f);
/* Closes the socket and reaps the factory (after BYE or -EPIPE). */
void mp__factory_end(mp__factory *f);

#endif
