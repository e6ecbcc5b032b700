/* SPDX-License-Identifier: MIT */
/* mproc/pool.h - a pool of worker processes: Python's multiprocessing.Pool, in C.
 *
 *     static int square(const void *arg, size_t len, mp_task_result *res) {
 *         int x; memcpy(&x, arg, sizeof x); x *= x;
 *         return mp_task_result_set(res, &x, sizeof x);
 *     }
 *     MP_FUNC_REGISTER("square", square)      // at file scope: every process has the same table
 *
 *     mp_pool *pool;
 *     mp_pool_new(&pool, NULL);               // mp_cpu_count() workers
 *     int x = 7; mp_result *r;
 *     mp_pool_apply_async(pool, "square", &x, sizeof x, NULL, &r);
 *     const void *data; size_t len;
 *     mp_result_get(r, &data, &len, MP_FOREVER);   // data -> 49, borrowed from r
 *     mp_result_free(&r);
 *     mp_pool_close(pool); mp_pool_join(pool, MP_FOREVER); mp_pool_free(&pool);
 *
 * Tasks. A task is a registered function, named by a string, plus an argument of bytes; its result
 * is bytes (mp_task_result_set) or an error (mp_task_fail: code + message). Functions are
 * referenced by NAME, never by pointer: a task record carries the function's id (a 64-bit hash of
 * its name) and the argument bytes, and the worker looks the id up in its own registry. Forked
 * workers have the parent's registry; the MPI backend (MP_POOL_BACKEND_MPI, libmproc-mpi,
 * docs/mpi.md) and the spawn/forkserver start methods run tasks in processes that did not fork
 * from us (ranks on other machines), where a function pointer means nothing but the same program
 * registered the same names at load time (MP_FUNC_REGISTER runs in a constructor, in every
 * process).
 *
 * Transport. Each worker has two single-producer/single-consumer rings in shared memory (tasks in,
 * results out). Waking a peer costs a futex syscall only when the peer sleeps; a waiter spins
 * briefly first, but only while the peer runs on another CPU. Several tasks are dispatched to a
 * worker ahead of time (pipelining), so small tasks and chunksize 1 stay fast. The worker side of
 * the transport sits behind a small internal interface (src/pool_transport.h: start a worker,
 * send it a task record, receive its result records, learn that it died), which the MPI backend
 * implements over ranks (docs/mpi.md).
 *
 * Supervisor and factory. The pool runs one thread in the parent, the supervisor, and one small
 * single-threaded process, the worker factory, which the supervisor forks once while mp_pool_new
 * waits. Every worker is forked by the factory, never by a thread of the program: a fork copies
 * only the forking thread, so a worker forked while another thread refilled stdout or held an
 * allocator lock would print that output again or hang. Workers are therefore copies of the
 * program as it was at mp_pool_new (also the ones that replace dead workers later). The factory
 * reaps the workers and reports their exit statuses; the supervisor replaces dead workers,
 * enforces per-task timeouts and runs the callbacks. PR_SET_PDEATHSIG ties the workers to the
 * factory and the factory to the supervisor thread, which lives as long as the pool (under
 * forkserver the factory is the server's child: its socket's end of file and a pidfd on the owner
 * tie it to the pool instead). Under spawn and forkserver (the start_method option) the factory
 * is a fresh image of the program rather than a fork of it, so workers carry nothing of the
 * program's threads, locks or memory. Waiting
 * callers do not hop through it: a thread blocked in a get/wait/map drains the result rings itself,
 * so an apply round trip is caller -> worker -> caller.
 *
 * Failures (see docs/pool.md):
 *   - A task that calls mp_task_fail (or returns non-zero): its result carries MP_ETASKFAILED, the
 *     task's code and message. Other tasks are unaffected.
 *   - A worker that dies while running a task (segfault, abort, exit, SIGKILL): that task
 *     fails with MP_EWORKERDIED; mp_result_error gives the worker's exit code as Python's
 *     Process.exitcode (the exit status, or minus the signal number) and a message saying how it
 *     died (MP_EREAPED, never 0, when the status is unknown: the factory was killed). Tasks queued
 * behind it are re-dispatched, the worker is replaced, the pool goes on. With map chunks the
 * undelivered items of the running chunk fail together (chunksize 1 isolates items).
 *   - A task running longer than the pool's task_timeout: its worker is killed and replaced, the
 *     task fails with -ETIMEDOUT (mp_result_is_ready() tells it apart from a get() that timed out).
 *   - The process holding the pool dies (even by SIGKILL): the kernel SIGKILLs every worker.
 *   - A task that uses a forked copy of a pool (or result) gets MP_ECHILD. A callback that makes a
 *     blocking call on its pool gets -EDEADLK; non-blocking calls (apply_async, map_async,
 *     is_ready, get/wait with timeout 0 or another expired timeout, free) work from callbacks.
 *   - After close+join or terminate no process, fd or shared memory of the pool remains.
 *
 * Limits. An argument or result record larger than the pool's max_message (default 256 KiB,
 * settable per pool) is refused with MP_ETOOBIG (at submission for arguments; as the item's error
 * for results).
 *
 * Thread safety: a pool and its results may be used from several threads of the parent at once.
 * Nothing in this header is async-signal-safe. In a forked child (a worker included) every call on
 * a pool or result of the parent returns MP_ECHILD; registry and task-side calls work anywhere.
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <stdarg.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_pool mp_pool;
typedef struct mp_result mp_result;
typedef struct mp_func mp_func;
typedef struct mp_task_result mp_task_result;
typedef struct mp_imap mp_imap;

/* A borrowed run of bytes. */
typedef struct mp_buf {
    const void *data;
    size_t len;
} mp_buf;

/* ---- the function registry ------------------------------------------------------------------ */

/* A task function. Runs in a worker with the argument bytes (borrowed: valid during the call; not
 * necessarily aligned, copy before casting). It sets its result with mp_task_result_set or
 * mp_task_result_alloc, or reports an error with mp_task_fail, and returns 0. A non-zero return
 * without mp_task_fail fails the task with that value as its code. A task that sets nothing
 * succeeds with an empty result. */
typedef int (*mp_task_fn)(const void *arg, size_t len, mp_task_result *res);

/* Registers fn under name (at most 127 bytes; copied). Register before creating pools: a pool's
 * workers have the registry as it was at mp_pool_new, and submitting a function registered later
 * fails with MP_ENOFUNC. Registering the same name with the same fn again is a no-op. *out (may be
 * NULL) gets the function's handle, valid for the program's life. Errors: -EINVAL (NULL name or fn,
 * empty or too long name), -EEXIST (name taken by another fn, or a different name with the same
 * 64-bit id), -ENOMEM. Thread-safe; not async-signal-safe. */
MP_API int mp_func_register(const char *name, mp_task_fn fn, mp_func **out);

/* Looks a function up by name. Errors: -EINVAL, MP_ENOFUNC. Thread-safe. */
MP_API int mp_func_find(const char *name, mp_func **out);

/* The name and the stable id (64-bit FNV-1a hash of the name: the same in every process and on
 * every machine) of a registered function. NULL / 0 for NULL. */
MP_API const char *mp_func_name(const mp_func *f);
MP_API uint64_t mp_func_id(const mp_func *f);

/* Registers fn under name when the program (or shared library) is loaded, before main: in a
 * constructor, so every process running this binary, forked or not, has the same table.
 * A constructor cannot return an error, so a clash (one name given to two functions, or two names
 * with one id) is made impossible to miss: it is printed to stderr at load with both places
 * (file:line), and from then on every mp_pool_new fails with -EEXIST (mp_pool_last_error gives
 * the same text). */
#define MP_FUNC_REGISTER(name, fn)                                                                 \
    __attribute__((constructor)) static void mp__func_register_##fn(void)                          \
    {                                                                                              \
        mp__func_register_static(name, fn, __FILE__, __LINE__);                                    \
    }
MP_API void mp__func_register_static(const char *name, mp_task_fn fn, const char *file, int line);

/* A human-readable detail of the last registry or pool error of the calling thread: which name
 * was not found (MP_ENOFUNC), which two places registered one name (-EEXIST), ... "" before any.
 * Set by the failing call, not cleared by successful ones; the string belongs to the thread. */
MP_API const char *mp_pool_last_error(void);

/* ---- inside a task ----------------------------------------------------------------------------
 */

/* Sets the task's result to a copy of data[0..len). Replaces an earlier result of the same task.
 * Errors: -EINVAL (res NULL, or data NULL with len > 0), MP_ETOOBIG (larger than the pool's
 * max_message), -ENOMEM. */
MP_API int mp_task_result_set(mp_task_result *res, const void *data, size_t len);

/* Returns a buffer of len bytes that becomes the task's result (write into it, no copy), or NULL
 * (len too big: MP_ETOOBIG is then the item's error; or out of memory). Valid until the task
 * returns. */
MP_API void *mp_task_result_alloc(mp_task_result *res, size_t len);

/* Fails the task: its result will carry MP_ETASKFAILED, `code` (any int the task chooses) and the
 * formatted message (truncated to 1023 bytes). Returns MP_ETASKFAILED, so a task can end with
 * `return mp_task_fail(res, 2, "bad input %d", x);`. -EINVAL for a NULL res or fmt. */
MP_API int mp_task_fail(mp_task_result *res, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
MP_API int mp_task_failv(mp_task_result *res, int code, const char *fmt, va_list ap);

/* ---- multi-argument tasks: the argument tuple ----------------------------------------------
 * starmap packs each item's arguments into one byte string, decoded in the task by
 * mp_args_unpack. Encoding (host byte order, 32-bit): u32 count, then count times { u32 len,
 * len bytes }. No padding, no alignment: copy fields out before casting. */

/* One item of a starmap: n arguments. */
typedef struct mp_args {
    const mp_buf *v;
    size_t n;
} mp_args;

/* Packs v[0..n) into out[0..cap). *needed (may be NULL) gets the packed size. Returns 0, or
 * MP_ETOOSMALL when cap < *needed (out NULL with cap 0 asks for the size), -EINVAL (v NULL with
 * n > 0, an argument NULL with len > 0, n or a len >= 2^32). */
MP_API int mp_args_pack(const mp_buf *v, size_t n, void *out, size_t cap, size_t *needed);

/* Splits a packed tuple: v[0..max) get borrowed pointers into data; *n gets the count.
 * Errors: -EINVAL (NULL), MP_ECORRUPT (malformed or trailing bytes), MP_ETOOSMALL (more than max
 * arguments: *n says how many). */
MP_API int mp_args_unpack(const void *data, size_t len, mp_buf *v, size_t max, size_t *n);

/* ---- creating a pool ------------------------------------------------------------------------- */

typedef struct mp_pool_options {
    /* Worker processes: MP_POOL_CPUS (-1, the default) for mp_cpu_count(); 0 is an error. */
    int processes;
    /* A registered function run once in each worker before its first task, with initarg; its
     * result is ignored. If it fails (mp_task_fail, non-zero return, or dies), the pool is broken:
     * every pending and later task fails with MP_ETASKFAILED and the message "initializer failed:
     * ...", and no worker is restarted (Python would respawn forever). NULL: none. */
    const char *initializer;
    const void *initarg;
    size_t initarg_len;
    /* A worker exits and is replaced after this many tasks (chunks count as one). 0: never. */
    unsigned maxtasksperchild;
    /* A task running longer than this (seconds) is killed with its worker and fails with
     * -ETIMEDOUT. <= 0: no limit. Measured from the moment the worker starts the task. */
    double task_timeout;
    /* Pin worker i to cpus[i % ncpus] (sched_setaffinity in the worker). NULL/0: no pinning. */
    const int *cpus;
    int ncpus;
    /* Largest argument or result record, bytes. 0: 256 KiB. At most 256 MiB. Each worker's rings
     * take 4 x this much address space (touched only as used). */
    size_t max_message;
    /* Tasks sent to one worker ahead of its progress (pipelining). 0: adaptive, from 2 for long
     * tasks to 256 for tiny ones (about 200 us of queued work per worker). 1 disables pipelining
     * (a long task then never holds up a queued one). */
    unsigned pipeline;
    /* Busy-waiting in this pool's waits (mproc/spin.h): 1 (the default) lets a caller waiting for
     * a result and a worker waiting for a task spin for a few tens of microseconds while the peer
     * runs on another CPU, which makes small tasks fast and keeps that CPU busy; 0 makes both
     * sleep at once. The program-wide switch (MPROC_SPIN=0, mp_spin_set(0)) turns it off for
     * every pool whatever this says. Workers get the pool's setting; what their tasks create
     * follows the program-wide switch as it was at mp_pool_new. Note: an options struct filled
     * without mp_pool_options_init or MP_POOL_OPTIONS_INIT has 0 here, spinning off. */
    int spin;
    /* How the pool's worker factory is started (mproc/start.h): MP_START_DEFAULT (0) follows the
     * program-wide default at mp_pool_new. Under spawn and forkserver the factory is a fresh image
     * of the program (spawned, or forked by the forkserver) and the workers are forks of it:
     * nothing of the caller's threads, locks or memory reaches a worker. Needs mp_init(). */
    int start_method;
    /* Where the workers run: MP_POOL_BACKEND_LOCAL (0, processes on this machine),
     * MP_POOL_BACKEND_MPI (MPI ranks: libmproc-mpi, docs/mpi.md), MP_POOL_BACKEND_AUTO (MPI when
     * the program was launched by mpirun/mpiexec and libmproc-mpi is linked, else local). */
    int backend;
} mp_pool_options;

#define MP_POOL_BACKEND_LOCAL 0
#define MP_POOL_BACKEND_MPI   1
#define MP_POOL_BACKEND_AUTO  2

#define MP_POOL_CPUS (-1)
/* The defaults, for C code that prefers an initializer; mp_pool_options_init does the same and
 * keeps working when fields are added (and from C++, which has no designated initializers). */
#define MP_POOL_OPTIONS_INIT                                                                       \
    {                                                                                              \
        .processes = MP_POOL_CPUS, .spin = 1                                                       \
    }

/* Fills *o with the defaults (every field 0 except processes = MP_POOL_CPUS and spin = 1): call it,
 * then set the fields you need. Later versions may add fields; code that starts from this call
 * keeps compiling and keeps its meaning. NULL: nothing. */
MP_API void mp_pool_options_init(mp_pool_options *o);

/* Creates a pool and starts its workers (forked by the pool's worker factory, itself forked once
 * by the pool's supervisor thread). opts NULL means the defaults (mp_pool_options_init); the
 * options are copied
 * (initarg too). The caller owns *out until mp_pool_free. Errors: -EINVAL (out NULL, processes 0
 * or < -1 or > 1024, bad max_message, ncpus < 0), MP_ENOFUNC (unknown initializer), MP_ETOOBIG
 * (initarg), -EEXIST (two MP_FUNC_REGISTERs gave one name to two functions: every pool is
 * refused, mp_pool_last_error says which), -ENOMEM, -EAGAIN (fork or thread), MP_ENOTSUP
 * (spawn/forkserver without mp_init(), or the MPI backend not linked or not launched by mpirun:
 * mp_last_error says which), -EPIPE / -ETIMEDOUT (a spawned or forkserver factory that died or
 * never answered).
 * A task may create a pool of its own inside its worker; a callback may create one too. */
MP_API int mp_pool_new(mp_pool **out, const mp_pool_options *opts);

/* Number of worker processes. -EINVAL for NULL. */
MP_API int mp_pool_processes(const mp_pool *pool);

/* Fills pids[0..max) with the pids of the live workers and returns how many there are (may exceed
 * max). For tests and monitoring. Errors: -EINVAL, MP_ECHILD. */
MP_API int mp_pool_worker_pids(const mp_pool *pool, pid_t *pids, int max);

/* ---- submitting tasks ------------------------------------------------------------------------ */

/* Called when a result is ready: callback on success, error_callback on failure (any error
 * outcome, including MP_EWORKERDIED, -ETIMEDOUT and MP_ETERMINATED). They run on the pool's
 * supervisor thread in the parent, one at a time, before the result is marked ready: when get()
 * returns, the callback has run. r is borrowed (valid during the call; do not free it). A callback
 * must not block for long (it delays every other callback and worker replacement); blocking calls
 * on its own pool fail with -EDEADLK (a blocking call on another pool is allowed). Callbacks of
 * results still pending at terminate/free run on the thread calling terminate/free. */
typedef void (*mp_result_cb)(mp_result *r, void *user);

typedef struct mp_task_options {
    mp_result_cb callback;       /* may be NULL */
    mp_result_cb error_callback; /* may be NULL */
    void *user;                  /* passed to both */
    /* map/starmap/imap: items per task record. 0: automatic for map and starmap, as Python's
     * divmod(n, 4 * processes) rounded up; 1 for imap (as Python). */
    size_t chunksize;
    /* imap: items in flight at most (submitted but not yet taken by mp_imap_next). 0: 16 x
     * processes x chunksize, at least 1024. Bounds imap's memory however long the input. */
    size_t window;
} mp_task_options;

/* Fills *o with the defaults (no callbacks, automatic chunksize and window): call it, then set
 * the fields you need (see mp_pool_options_init). NULL: nothing. */
MP_API void mp_task_options_init(mp_task_options *o);

/* Submits func(arg) and returns at once. The argument is copied. *out gets a result handle the
 * caller owns and must free (also after the pool is freed). opts may be NULL.
 * Errors (nothing submitted, *out untouched): -EINVAL (NULL pool/func/out, arg NULL with len > 0),
 * MP_ENOFUNC (func not registered, or registered after the pool was created; mp_pool_last_error
 * names it), MP_ETOOBIG (len > max_message - 64), MP_ECLOSED (after close, also once joined),
 * MP_ETERMINATED (after terminate), MP_ETASKFAILED (the pool's initializer failed),
 * MP_EWORKERDIED (the pool's worker factory was killed), -ENOMEM, MP_ECHILD (called in a worker).
 */
MP_API int mp_pool_apply_async(mp_pool *pool, const char *func, const void *arg, size_t len,
                               const mp_task_options *opts, mp_result **out);

/* apply_async + mp_result_wait(timeout): the blocking call. Returns the task's outcome as
 * mp_result_get does; *out holds the result (free it) whenever the task was submitted, also on
 * -ETIMEDOUT (the task still runs: wait again or free it). Errors as apply_async, plus -EDEADLK
 * (called from a callback). */
MP_API int mp_pool_apply(mp_pool *pool, const char *func, const void *arg, size_t len,
                         mp_result **out, double timeout);

/* map: func on every item, results in input order (mp_result_item). items[] and the bytes they
 * point at are BORROWED until the result is ready (not copied: the zero-copy map path). Items are
 * grouped into task records of opts->chunksize (0: automatic). n == 0 gives a ready, successful
 * result with no items. Errors as apply_async (MP_ETOOBIG: an item over max_message - 64, as apply;
 * nothing is submitted then). */
MP_API int mp_pool_map_async(mp_pool *pool, const char *func, const mp_buf *items, size_t n,
                             const mp_task_options *opts, mp_result **out);

/* map_async + wait. Returns 0 when every item succeeded, otherwise the error of the first failed
 * item in input order (*out is filled: inspect every item), or -ETIMEDOUT (the map goes on; *out
 * filled), or a submission error (*out NULL). -EDEADLK from a callback. */
MP_API int mp_pool_map(mp_pool *pool, const char *func, const mp_buf *items, size_t n,
                       const mp_task_options *opts, mp_result **out, double timeout);

/* The fixed-size direct path: n items of in_size bytes each, contiguous at `in`; item i's result
 * must be exactly out_size bytes and is written to out + i * out_size by the pool (no per-item
 * allocation anywhere). `in` and `out` are BORROWED until the result is ready. An item whose
 * result has another size fails with MP_ERANGE; the out slot of a failed item is left untouched.
 * mp_result_get on the result gives out and n * out_size. Errors as map_async, plus -EINVAL
 * (in_size 0, or in/out NULL with n > 0). */
MP_API int mp_pool_map_fixed_async(mp_pool *pool, const char *func, const void *in, size_t n,
                                   size_t in_size, void *out, size_t out_size,
                                   const mp_task_options *opts, mp_result **out_result);
MP_API int mp_pool_map_fixed(mp_pool *pool, const char *func, const void *in, size_t n,
                             size_t in_size, void *out, size_t out_size,
                             const mp_task_options *opts, mp_result **out_result, double timeout);

/* starmap: item i's arguments items[i].v[0..items[i].n) are packed (mp_args_pack; copied, not
 * borrowed) and func receives the packed tuple (decode it with mp_args_unpack). Otherwise as map.
 * Errors as map_async, plus MP_ETOOBIG for an item whose packed size exceeds the limit. */
MP_API int mp_pool_starmap_async(mp_pool *pool, const char *func, const mp_args *items, size_t n,
                                 const mp_task_options *opts, mp_result **out);
MP_API int mp_pool_starmap(mp_pool *pool, const char *func, const mp_args *items, size_t n,
                           const mp_task_options *opts, mp_result **out, double timeout);

/* ---- results ------------------------------------------------------------------------------- */

/* Waits until the result is ready or timeout passes. A single task's outcome: 0 with *data and *len
 * (either may be NULL) pointing at its result bytes, borrowed from r until mp_result_free; or its
 * error (MP_ETASKFAILED, MP_EWORKERDIED, -ETIMEDOUT for a task killed by the pool's task_timeout,
 * MP_ETERMINATED, MP_ENOFUNC, MP_ETOOBIG: details from mp_result_error). For a map result: 0 or
 * the first failed item's error; *data and *len give the out array for map_fixed, NULL/0 otherwise.
 * Other errors: -EINVAL (NULL r), -ETIMEDOUT (not ready yet: mp_result_is_ready() is 0), -EDEADLK
 * (blocking wait from a callback), MP_ECHILD. The result's bytes are aligned for any type. */
MP_API int mp_result_get(mp_result *r, const void **data, size_t *len, double timeout);

/* Waits until ready. Returns 0 when ready (whatever the outcome), -ETIMEDOUT, -EINVAL, -EDEADLK,
 * MP_ECHILD. */
MP_API int mp_result_wait(mp_result *r, double timeout);

/* 1 when ready, 0 when not, -EINVAL for NULL, MP_ECHILD. Never blocks (it may take results the
 * workers posted meanwhile, when the pool is not busy). */
MP_API int mp_result_is_ready(const mp_result *r);

/* 1 when ready and successful (every item, for a map), 0 when ready and failed, MP_ESTATE when
 * not ready yet (Python raises ValueError), -EINVAL, MP_ECHILD. */
MP_API int mp_result_is_successful(const mp_result *r);

/* The error of a ready result: returns its status (0 on success) and sets *code (may be NULL) and
 * *msg (may be NULL; borrowed from r, never NULL: "" on success). For MP_ETASKFAILED code is the
 * task's code; for MP_EWORKERDIED the worker's exit code (status, or -signal); otherwise 0. For a
 * map, the first failed item's. MP_ESTATE when not ready, -EINVAL, MP_ECHILD. */
MP_API int mp_result_error(const mp_result *r, int *code, const char **msg);

/* Number of items of a result: 1 for a single task, n for a map; 0 for NULL. */
MP_API size_t mp_result_count(const mp_result *r);

/* Item i of a ready result: returns its status and sets *data and *len (borrowed from r; may be
 * NULL) on success. Errors: MP_ESTATE (not ready), MP_ERANGE (i >= count), -EINVAL, MP_ECHILD. */
MP_API int mp_result_item(const mp_result *r, size_t i, const void **data, size_t *len);
/* Item i's error as mp_result_error. */
MP_API int mp_result_item_error(const mp_result *r, size_t i, int *code, const char **msg);

/* Releases the caller's handle and sets *rp to NULL. A result still running is not cancelled: the
 * pool finishes it and releases it then (its callbacks still run). Returns 0 (also for NULL or
 * &NULL), MP_ECHILD (a copy in a forked child: nothing done, *rp kept). Never from inside its own
 * callback (the result is borrowed there). */
MP_API int mp_result_free(mp_result **rp);

/* ---- imap: lazy, bounded --------------------------------------------------------------------- */

/* The input of imap: stores the next item in *data and *len and returns 1; returns 0 at the end, or
 * a negative code to stop with that error. The item is copied at once: *data may be reused by the
 * next call. Called only from the thread calling mp_imap_next (or mp_pool_imap), never ahead of
 * the window. */
typedef int (*mp_iter_fn)(void *user, const void **data, size_t *len);

/* Starts an imap: items are pulled from next() only as the window (opts->window) allows, so an
 * endless input works and memory stays bounded. Results come back in input order from
 * mp_imap_next. The caller owns *out. Errors as apply_async. */
MP_API int mp_pool_imap(mp_pool *pool, const char *func, mp_iter_fn next, void *user,
                        const mp_task_options *opts, mp_imap **out);
/* The same, results in completion order (mp_imap_next gives each item's input index). */
MP_API int mp_pool_imap_unordered(mp_pool *pool, const char *func, mp_iter_fn next, void *user,
                                  const mp_task_options *opts, mp_imap **out);

/* The next result: returns 0 (data/len borrowed until the next mp_imap_next or mp_imap_free),
 * the item's error (details from mp_imap_error), MP_EEOF when the input ended and every result was
 * returned, the iterator's negative code (once, after the results of the items before it),
 * -ETIMEDOUT, -EINVAL, -EDEADLK (from a callback), MP_ECHILD, MP_ETERMINATED (pool terminated).
 * *index (may be NULL) gets the item's position in the input. */
MP_API int mp_imap_next(mp_imap *it, const void **data, size_t *len, size_t *index, double timeout);

/* The last item's error as mp_result_error. */
MP_API int mp_imap_error(const mp_imap *it, int *code, const char **msg);

/* Stops the imap: items already submitted still run but their results are dropped. Sets *itp to
 * NULL. Returns 0 (also for NULL or &NULL), MP_ECHILD (a copy in a forked child: nothing done,
 * *itp kept). */
MP_API int mp_imap_free(mp_imap **itp);

/* ---- shutting down -------------------------------------------------------------------------- */

/* No more tasks: later submissions fail with MP_ECLOSED. Submitted tasks still run. Idempotent.
 * Errors: -EINVAL, MP_ETERMINATED (after terminate), MP_ECHILD. */
MP_API int mp_pool_close(mp_pool *pool);

/* After close: waits until every submitted task is done and every worker has exited and been
 * reaped. Returns 0, -ETIMEDOUT (call again), MP_ESTATE (pool still open: close it first, as
 * Python), -EINVAL, -EDEADLK (from a callback), MP_ECHILD. After terminate it returns 0 at once. */
MP_API int mp_pool_join(mp_pool *pool, double timeout);

/* Stops now: SIGKILLs every worker (a stuck one too), reaps them, fails every unfinished task with
 * MP_ETERMINATED, stops the supervisor, releases the shared memory. Never hangs. Idempotent.
 * Errors: -EINVAL, -EDEADLK (from a callback), MP_ECHILD. */
MP_API int mp_pool_terminate(mp_pool *pool);

/* Terminates the pool if it was not joined (as Python's Pool.__del__), releases it and sets *pp
 * to NULL. Results and imaps stay valid (they own their data), also while other threads wait on
 * them: they hold references on the pool's structure, which goes with the last of them. NULL-safe.
 * Returns 0, -EDEADLK (from a callback: nothing done), MP_ECHILD (in a worker: nothing done). */
MP_API int mp_pool_free(mp_pool **pp);

#ifdef __cplusplus
}
#endif
#endif
