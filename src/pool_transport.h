/* pool_transport.h - how pool.c talks to its workers.
 *
 * pool.c knows tasks, results, jobs, callbacks and policy; a transport knows how to start a
 * worker and move records (pool_internal.h) to and from it. The only transport today is shared
 * memory (pool_shm.c: per-worker SPSC rings + futex wake-ups + spinning, workers forked by the
 * supervisor thread). An MPI backend would implement the same operations over MPI ranks: start =
 * claim a rank (the rank runs the same binary, so MP_FUNC_REGISTER gave it the same function
 * table), task_reserve/commit/flush = pack and MPI_Isend, result_peek = MPI_Iprobe/MPI_Recv,
 * death_fd = a descriptor that becomes readable when the rank is lost, running = what the rank last
 * said it runs.
 *
 * Threading: pool.c calls every operation on one worker with the pool lock held, except start,
 * which the supervisor thread calls without it. A transport must never block in these calls.
 */
#ifndef MP_POOL_TRANSPORT_H
#define MP_POOL_TRANSPORT_H

#include <stdint.h>
#include <sys/types.h>

#include "platform/platform.h"
#include "pool_internal.h"

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

    /* Starts worker `index` (0-based): forks it. In the child, never returns. `close_in_child`
     * lists the other workers' transport state, which the child unmaps. */
    int (*start)(mp__tp_shared *s, const mp__worker_conf *conf, int index, mp__tp_worker **out,
                 pid_t *pid, mp__tp_worker *const *others, int nothers);
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
} mp__transport;

extern const mp__transport mp__pool_shm_transport;

#endif
