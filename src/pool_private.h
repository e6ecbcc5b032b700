/* SPDX-License-Identifier: MIT */
/* pool_private.h - the parent side of the pool: its objects and how its parts call each other.
 *
 * Vocabulary. A job is what the caller submitted (mp_result: one apply, one map, one map_fixed,
 * one imap); it has n items. A task is a run of items of one job sent to one worker as one record
 * (a chunk). Jobs with items not yet sent wait in the job queue; tasks taken back from a dead
 * worker before they started wait in the retry queue, ahead of everything.
 *
 * The parts, one job each:
 *   pool.c          the pool object: new, close, join, terminate, free, waiting for progress
 *   pool_submit.c   apply, map, map_fixed, starmap: checking arguments and building jobs
 *   pool_result.c   the mp_result object (a tagged union over the kinds), delivery of outcomes,
 *                   completion and callbacks, the result API
 *   pool_imap.c     imap: the window of slots, pulling input, mp_imap_next
 *   pool_sched.c    tasks, the job and retry queues, per-worker queues, chunking, pipelining,
 *                   dispatch, draining results: pure logic under the pool lock over the transport
 *                   interface (tested without processes: tests/test_pool_sched.c)
 *   pool_super.c    supervision: spawning through the worker factory, deaths, task timeouts,
 *                   the supervisor thread, killing and reaping at the end
 *   pool_transport.h / pool_shm.c / pool_factory.c / pool_worker.c / pool_func.c: see there.
 *
 * Locking. Everything in mp_pool and in a job's delivery state is under pool->lock unless its
 * comment says otherwise. Who is running callbacks, and which thread does the supervisor's work,
 * is pool state (cb_*, duty_*), not thread-local state: a blocking call on a pool from one of its
 * callbacks is refused with -EDEADLK because the pool says that this thread runs its callbacks.
 *
 * Lifetimes. A job is referenced by its caller (mp_result_free / mp_imap_free) and by the pool
 * until it is ready; whoever drops the last reference frees it. A job in turn references the
 * pool's structure from submission until it is freed (home), and the owner holds one more
 * reference (mp_pool_free): a thread inside mp_result_wait or mp_imap_next may thus always lock
 * the pool, even while another thread frees it; it then finds the pool released and the job
 * settled.
 */
#ifndef MP_POOL_PRIVATE_H
#define MP_POOL_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mproc/pool.h"
#include "platform/platform.h"
#include "pool_internal.h"
#include "pool_transport.h"

#define MP__POOL_DEFAULT_MAX_MESSAGE (256u * 1024)
#define MP__POOL_MAX_PROCESSES       1024
#define MP__POOL_IMAP_DEPTH          16u /* imap window sizing: tasks in flight per worker */
#define MP__PIPELINE_MIN             2u
#define MP__PIPELINE_MAX             256u
/* Adaptive pipelining keeps about this much work queued in each worker: enough to hide a
 * wake-up, little enough that a queued task never waits long behind others. */
#define MP__PIPELINE_WORK_NS 200000

/* The kinds of job: what a mp_result is. */
enum { MP__K_APPLY, MP__K_MAP, MP__K_FIXED, MP__K_IMAP };
/* The pool's state as its caller set it. */
enum { MP__ST_RUN, MP__ST_CLOSED, MP__ST_TERMINATED };

/* One item's outcome (apply, map, starmap). */
struct mp__ritem {
    const void *data; /* result bytes, or the NUL-terminated message when status != 0 */
    uint32_t len;
    int32_t status;
    int32_t code;
};

/* An allocation owned by a result; data after the header is 16-byte aligned. */
struct mp__blk {
    struct mp__blk *next;
    size_t pad;
};

/* A task: items [first, first+count) of job, sent to one worker as one record. */
struct mp__task {
    struct mp__task *next;
    uint64_t id;
    mp_result *job;
    uint32_t first, count, delivered;
    int64_t sent_ns;
};

struct mp_result {
    /* Read without the lock. */
    _Atomic uint32_t ready;
    _Atomic int refs;
    _Atomic(mp_pool *) pool; /* NULL once ready (or detached by terminate); under the pool lock */
    /* The pool this job was submitted to, never cleared: the job holds a reference on it until
     * it is freed, so a caller may lock it whatever another thread does to the pool meanwhile. */
    mp_pool *home;
    pid_t owner;
    int kind; /* MP__K_*: which member of u is in use */
    uint64_t func;
    mp_result_cb cb, ecb;
    void *user;
    /* Scheduling: items [0, next) were sent (or failed before sending), in ntasks live tasks. */
    size_t n, next, chunksize, ntasks;
    mp_result *qnext; /* job queue */
    bool queued;
    /* Delivery: items not settled yet, and the first failed item in input order. */
    size_t remaining;
    size_t err_index;
    int status, code;
    const char *msg;
    bool finished, cancelled, listed;
    mp_result *cbnext;        /* callback queue */
    mp_result *anext, *aprev; /* the pool's list of unfinished jobs */
    union {
        /* MP__K_APPLY, MP__K_MAP: items borrowed (map) or copied behind the job (apply, own);
         * every outcome in ri, their bytes in blocks. */
        struct {
            const mp_buf *items;
            mp_buf own;
            struct mp__ritem *ri;
            struct mp__ritem one;
            struct mp__blk *blocks;
            void *owned_input; /* starmap's packed tuples */
        } list;
        /* MP__K_FIXED: n items of in_size bytes at in; results written to out. */
        struct {
            const char *in;
            size_t in_size;
            char *out;
            size_t out_size;
            int32_t *status; /* per item, allocated at the first failure */
            char *msg_own;   /* the first failure's message */
        } fixed;
        /* MP__K_IMAP: the iterator owns the items and outcomes. */
        struct mp_imap *imap;
    } u;
};

struct mp__worker {
    mp__tp_worker *tp;
    pid_t pid;
    bool alive, stopping;
    bool starting; /* asked of the factory, not answered yet */
    struct mp__task *head, *tail;
    unsigned nout, dispatched;
    uint64_t timed_out_id;
    int64_t respawn_at;
    int64_t last_done_ns;
    unsigned full_epoch;
    bool unflushed; /* task records written but not yet published */
};

struct mp_pool {
    pid_t owner;
    /* One reference for the owner (dropped by mp_pool_free) plus one per submitted job (dropped
     * when the job is freed): the last one frees the structure. */
    _Atomic int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_mutex_t stop_lock; /* one thread at a time stops the supervisor and releases */
    int waiters;               /* threads inside mp__pool_wait: the shared memory stays until 0 */
    int state;                 /* MP__ST_* */
    bool joining, joined, released, broken;
    int broken_status, broken_code;
    char broken_msg[1100];
    mp__worker_conf conf;
    void *initarg;
    int *cpus;
    int ncpus;
    unsigned pipeline;   /* fixed depth, or 0: adaptive */
    int64_t avg_task_ns; /* moving average of a task's service time, for the adaptive depth */
    double timeout_s;
    int64_t timeout_ns;
    int n;
    struct mp__worker *w;
    const mp__transport *tp;
    mp__tp_shared *ts;
    int efd;
    pthread_t sup;
    bool sup_running, sup_stop, sup_ready;
    int sup_err;
    /* The thread doing the supervisor's work now (the supervisor, or the thread inside terminate
     * once the supervisor stopped): it need not be woken. Under the lock. */
    pthread_t duty_thread;
    bool duty_set;
    /* The callback running now and the thread running it (the duty thread). Read without the
     * lock by blocking calls: such a call on this pool from that thread would wait for itself.
     * cb_thread is stored before cb_now, so a thread that sees cb_now set and cb_thread equal to
     * itself is the one running it. */
    _Atomic(const mp_result *) cb_now;
    _Atomic(pthread_t) cb_thread;
    uint64_t func_gen; /* the registry's generation the workers were forked with */
    mp_result *qhead, *qtail;
    struct mp__task *rhead, *rtail;
    struct mp__task *free_tasks;
    uint64_t next_id;
    size_t outstanding, unfinished;
    mp_result *all;
    mp_result *cbhead, *cbtail;
    _Atomic int drainers;
    int nalive;
    int spawning; /* spawn requests the factory has not answered yet */
    mp__factory fac;
    /* MPI backend (issue 13): workers are started and ended by a launcher, not the factory. */
    const mp__launcher *launcher;
    unsigned epoch;
};

/* ---- pool.c --------------------------------------------------------------------------------- */
/* -EINVAL (NULL), MP_ECHILD (a copy in a forked child), 0. */
int mp__pool_check(const mp_pool *p);
/* Wakes the supervisor thread (eventfd write). */
void mp__pool_kick(mp_pool *p);
/* Lock held: does the calling thread do the supervisor's work? */
bool mp__pool_on_duty(const mp_pool *p);
/* Is the calling thread running one of p's callbacks? (No lock needed.) */
bool mp__pool_in_callback(const mp_pool *p);
/* Would a call with this timeout wait (MP_FOREVER or > 0)? */
bool mp__timeout_blocks(double timeout);
void mp__pool_unref(mp_pool *p);
/* Drives progress until pred holds (checked with the lock held) or the deadline passes:
 * 0, -ETIMEDOUT, MP_ETERMINATED (the pool released its workers). */
typedef bool (*mp__pool_pred)(mp_pool *p, void *arg);
int mp__pool_wait(mp_pool *p, mp__pool_pred pred, void *arg, const mp__deadline *dl);
/* Lock held: can a job be submitted? 0, MP_ECLOSED, MP_ETERMINATED or the broken status. */
int mp__pool_submit_state(const mp_pool *p);
/* Lock held: hands j to the pool. */
int mp__pool_submit(mp_pool *p, mp_result *j);
/* The id of a function the pool's workers know (p NULL: any registered one). */
int mp__pool_lookup(const mp_pool *p, const char *func, uint64_t *id);

/* ---- pool_result.c -------------------------------------------------------------------------- */
/* A new job of `kind` with `extra` bytes after it (apply's argument), two references. */
mp_result *mp__job_new(int kind, size_t extra);
void mp__job_free(mp_result *j);
void mp__job_unref(mp_result *j);
/* The argument bytes of item i. */
void mp__job_item(const mp_result *j, size_t i, const void **d, size_t *l);
/* Items [first, first+count) of j fail with one outcome. */
void mp__job_fail_items(mp_result *j, size_t first, size_t count, int status, int code,
                        const char *msg);
/* Copies one result record's items (of task t) into its job. */
void mp__job_deliver(struct mp__task *t, const mp__rrec *rec);
/* Lock held: finishes j if every item is settled and no task of it is left. */
void mp__job_maybe_finish(mp_pool *p, mp_result *j);
/* Lock held: takes j off the pool's list of unfinished jobs. */
void mp__job_unlist(mp_pool *p, mp_result *j);
/* Lock held: takes the queued callbacks (run them with the lock released). */
mp_result *mp__pool_take_callbacks(mp_pool *p);
/* Lock NOT held: runs the callbacks of list on this thread, marking each ready after. */
void mp__pool_run_callbacks(mp_pool *p, mp_result *list);

/* ---- pool_imap.c ---------------------------------------------------------------------------- */
/* Lock held: stores one item's outcome in its slot. */
void mp__imap_deliver(mp_result *j, size_t idx, int status, int code, const void *bytes,
                      size_t len);
/* Lock held: is every item of this imap job sent and settled (or the imap cancelled)? */
bool mp__imap_complete(const mp_result *j);
/* The argument bytes of item i (in its slot). */
void mp__imap_item(const mp_result *j, size_t i, const void **d, size_t *l);

/* ---- pool_sched.c --------------------------------------------------------------------------- */
struct mp__task *mp__sched_task_alloc(mp_pool *p);
void mp__sched_task_release(mp_pool *p, struct mp__task *t);
/* A task left its worker (done, failed or requeued elsewhere): account for it. */
void mp__sched_task_done(mp_pool *p, struct mp__task *t);
struct mp__task *mp__sched_fifo_pop(struct mp__worker *w);
/* Puts j (items left to send) at the end of the job queue. */
void mp__sched_queue_job(mp_pool *p, mp_result *j);
/* Takes j out of the job queue wherever it is. */
void mp__sched_unqueue_job(mp_pool *p, mp_result *j);
unsigned mp__sched_pipeline_depth(const mp_pool *p);
/* Sends queued work to workers with room, then publishes it, one batch per worker. */
void mp__sched_dispatch(mp_pool *p);
/* Takes every result record the worker posted. */
void mp__sched_drain_worker(mp_pool *p, struct mp__worker *w);
/* Drains every worker, then dispatches. */
void mp__sched_progress(mp_pool *p);
/* Fails everything not yet sent to a worker. */
void mp__sched_fail_pending(mp_pool *p, int status, int code, const char *msg);
/* The tasks queued on w that never started go first to the next worker. */
void mp__sched_requeue(mp_pool *p, struct mp__worker *w);
/* Asks every idle worker to exit once the pool is closed, joining and has nothing left. */
void mp__sched_stop_workers(mp_pool *p);

/* ---- pool_super.c --------------------------------------------------------------------------- */
void *mp__super_main(void *arg);
/* Lock held, supervisor stopped: has the factory SIGKILL and reap every worker left, keeping the
 * results the workers posted and failing their other tasks with MP_ETERMINATED. */
void mp__super_kill_and_reap_all(mp_pool *p);
/* Lock held: a worker ended by terminate: keeps what it posted, fails the rest of its tasks. */
void mp__super_settle_terminated(mp_pool *p, struct mp__worker *w);
/* Lock held: SIGKILLs every live worker (through the factory). */
void mp__super_kill_workers(mp_pool *p);

#endif
