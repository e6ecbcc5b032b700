/* SPDX-License-Identifier: MIT */
/* pool.c - the pool object: new, close, join, terminate, free; handing jobs to it and waiting for
 * its progress. The other parts are listed in pool_private.h.
 *
 * Waiting. A thread waiting for a result drives progress itself (mp__pool_wait), spinning on the
 * transport's result counter while a busy worker runs on another CPU and sleeping on it (futex)
 * otherwise; so an apply round trip is caller -> worker -> caller with no thread in between. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mproc/error.h"
#include "pool_private.h"
#include "process_internal.h"
#include "start_internal.h"

/* ---- what every part asks ------------------------------------------------------------------ */

int mp__pool_check(const mp_pool *p)
{
    if (!p) return -EINVAL;
    if (p->owner != mp__getpid_cached()) return MP_ECHILD;
    return 0;
}

void mp__pool_kick(mp_pool *p)
{
    if (p->efd < 0) return;
    uint64_t one = 1;
    ssize_t n = write(p->efd, &one, sizeof one);
    (void)n;
}

bool mp__pool_on_duty(const mp_pool *p)
{
    return p->duty_set && pthread_equal(p->duty_thread, pthread_self());
}

bool mp__pool_in_callback(const mp_pool *p)
{
    return atomic_load(&p->cb_now) != NULL &&
           pthread_equal(atomic_load(&p->cb_thread), pthread_self());
}

bool mp__timeout_blocks(double timeout)
{
    return timeout > 0 || mp__timeout_is_forever(timeout);
}

/* How long a waiter spins for a worker on peer_cpu: never in a pool created with spin off. */
static int64_t spin_ns(const mp_pool *p, int peer_cpu)
{
    return p->conf.spin ? mp__spin_budget(peer_cpu) : 0;
}

#ifdef MP_TEST_HOOKS
int64_t mp__pool_spin_ns(const mp_pool *p, int peer_cpu)
{
    return spin_ns(p, peer_cpu);
}
#endif

/* How long a waiter should spin: only while a busy worker runs on another CPU. */
static int64_t spin_budget(mp_pool *p)
{
    int me = mp__current_cpu();
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (!w->alive || w->nout == 0) continue;
        int c = p->tp->cpu(w->tp);
        if (c >= 0 && c != me) return spin_ns(p, c);
    }
    return 0;
}

int mp__pool_wait(mp_pool *p, mp__pool_pred pred, void *arg, const mp__deadline *dl)
{
    pthread_mutex_lock(&p->lock);
    if (p->released) {
        pthread_mutex_unlock(&p->lock);
        return MP_ETERMINATED;
    }
    p->waiters++;
    pthread_mutex_unlock(&p->lock);
    _Atomic uint32_t *seqp = p->tp->result_seq(p->ts);
    mp__tp_shared *ts = p->ts;
    const mp__transport *tp = p->tp;
    atomic_fetch_add(&p->drainers, 1);
    int rc;
    for (;;) {
        uint32_t seq = atomic_load(seqp);
        pthread_mutex_lock(&p->lock);
        mp__sched_progress(p);
        bool ok = pred(p, arg);
        int64_t spin = ok ? 0 : spin_budget(p);
        pthread_mutex_unlock(&p->lock);
        if (ok) {
            rc = 0;
            break;
        }
        if (mp__deadline_left_ns(dl) == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        tp->result_wait(ts, seq, spin, dl);
    }
    /* The supervisor drains only while nobody else does: tell it we stopped. */
    pthread_mutex_lock(&p->lock);
    if (atomic_fetch_sub(&p->drainers, 1) == 1 && p->outstanding) mp__pool_kick(p);
    if (--p->waiters == 0) pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* ---- submitting ------------------------------------------------------------------------------ */

int mp__pool_submit_state(const mp_pool *p)
{
    /* Closed stays closed after join (which releases the workers too), as the header says. */
    if (p->state == MP__ST_CLOSED) return MP_ECLOSED;
    if (p->state == MP__ST_TERMINATED || p->released) return MP_ETERMINATED;
    if (p->broken) return p->broken_status;
    return 0;
}

int mp__pool_submit(mp_pool *p, mp_result *j)
{
    int rc = mp__pool_submit_state(p);
    if (rc) return rc;
    j->pool = p;
    j->home = p;
    atomic_fetch_add(&p->refs, 1);
    j->listed = true;
    j->aprev = NULL;
    j->anext = p->all;
    if (p->all) p->all->aprev = j;
    p->all = j;
    p->unfinished++;
    j->remaining = j->n;
    if (j->kind != MP__K_IMAP && j->n == 0) {
        mp__job_maybe_finish(p, j);
        return 0;
    }
    mp__sched_queue_job(p, j);
    mp__sched_dispatch(p);
    return 0;
}

/* A function registered after the pool copied the registry into its workers is refused here, at
 * submission, rather than failing in a worker. */
int mp__pool_lookup(const mp_pool *p, const char *func, uint64_t *id)
{
    mp_func *f;
    int rc = mp_func_find(func, &f);
    if (rc) return rc;
    /* A launched factory (spawn, forkserver) is a fresh image of the program: it has only what
     * MP_FUNC_REGISTER registered at load time, which comes first in the registry. */
    if (p && p->fac.launched.pid > 0 && mp__func_seq(f) > p->fac.func_gen &&
        mp__func_seq(f) <= p->func_gen) {
        mp__pool_set_error("function \"%s\" was registered at run time: the workers of a %s pool "
                           "are a fresh image of the program and have only the functions "
                           "MP_FUNC_REGISTER registered at load time",
                           func, mp_start_method_name((mp_start_method)p->fac.method));
        return MP_ENOFUNC;
    }
    if (p && mp__func_seq(f) > p->func_gen) {
        mp__pool_set_error("function \"%s\" was registered after the pool was created: its "
                           "workers do not have it",
                           func);
        return MP_ENOFUNC;
    }
    *id = mp_func_id(f);
    return 0;
}

/* ---- backends outside libmproc (issue 13: libmproc-mpi) ------------------------------------ */

static _Atomic(const mp__pool_backend *) mpi_backend;

static const mp__pool_services services = {
    .worker_exec = mp__worker_exec,
    .worker_init = mp__worker_init,
    .func_by_id = mp__func_by_id,
    .set_error = mp__pool_set_error,
};

void mp__pool_mpi_register(const mp__pool_backend *b, const mp__pool_services **svc)
{
    atomic_store(&mpi_backend, b);
    if (svc) *svc = &services;
}

/* Which backend a pool with these options gets: NULL for local, or the MPI one. The error is
 * MP_ENOTSUP with the detail (mp_last_error) when MPI was asked for and cannot be had; AUTO is
 * local unless the program was launched by mpirun and libmproc-mpi is linked. */
static int pick_backend(const mp_pool_options *o, const mp__pool_backend **out, int *max)
{
    *out = NULL;
    if (o->backend == MP_POOL_BACKEND_LOCAL) return 0;
    if (o->backend != MP_POOL_BACKEND_MPI && o->backend != MP_POOL_BACKEND_AUTO) return -EINVAL;
    const mp__pool_backend *b = atomic_load(&mpi_backend);
    if (!b) {
        if (o->backend == MP_POOL_BACKEND_AUTO) return 0;
        mp__pool_set_error("MP_POOL_BACKEND_MPI: this program is not linked with libmproc-mpi "
                           "(link mproc-mpi: CMake target mproc::mproc-mpi, pkg-config mproc-mpi; "
                           "docs/mpi.md)");
        return MP_ENOTSUP;
    }
    int r = b->usable(max);
    if (r == 0 && o->backend == MP_POOL_BACKEND_AUTO) return 0;
    if (r == 0) {
        mp__pool_set_error("MP_POOL_BACKEND_MPI: the program was not launched by mpirun/mpiexec "
                           "(or mp_init was not called first): no MPI ranks to run tasks on");
        return MP_ENOTSUP;
    }
    if (r < 0) return r;
    *out = b;
    return 0;
}

/* ---- the structure ------------------------------------------------------------------------- */

/* Lock held. Waits until no thread is inside mp__pool_wait (they all finish once everything is
 * ready), then unmaps and closes. */
static void release_resources(mp_pool *p)
{
    if (p->released) return;
    if (p->ts) p->tp->result_kick(p->ts);
    while (p->waiters > 0)
        pthread_cond_wait(&p->cond, &p->lock);
    p->released = true;
    if (p->ts) p->tp->shared_free(p->ts);
    p->ts = NULL;
    if (p->efd >= 0) {
        mp__fd_internal_del(p->efd);
        close(p->efd);
    }
    p->efd = -1;
}

static void free_struct(mp_pool *p)
{
    while (p->free_tasks) {
        struct mp__task *t = p->free_tasks;
        p->free_tasks = t->next;
        free(t);
    }
    free(p->w);
    free(p->initarg);
    free(p->cpus);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->stop_lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

void mp__pool_unref(mp_pool *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1) free_struct(p);
}

/* Stops the supervisor (stop_lock held, lock not): from here the calling thread does its work. */
static void stop_supervisor(mp_pool *p)
{
    mp__pool_kick(p);
    if (p->sup_running) {
        pthread_join(p->sup, NULL);
        p->sup_running = false;
    }
}

/* Kills and reaps every worker, fails everything unfinished, stops the supervisor. */
static void terminate_now(mp_pool *p)
{
    pthread_mutex_lock(&p->stop_lock);
    pthread_mutex_lock(&p->lock);
    if (p->joined) {
        p->state = MP__ST_TERMINATED;
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_unlock(&p->stop_lock);
        return;
    }
    p->state = MP__ST_TERMINATED;
    p->sup_stop = true;
    mp__super_kill_workers(p);
    pthread_mutex_unlock(&p->lock);
    stop_supervisor(p);
    pthread_mutex_lock(&p->lock);
    /* Callbacks queued from here run on this thread. */
    p->duty_thread = pthread_self();
    p->duty_set = true;
    mp__super_kill_and_reap_all(p);
    mp__sched_fail_pending(p, MP_ETERMINATED, 0, "pool was terminated");
    mp_result *cbs = mp__pool_take_callbacks(p);
    pthread_mutex_unlock(&p->lock);
    mp__pool_run_callbacks(p, cbs);
    pthread_mutex_lock(&p->lock);
    p->duty_set = false;
    /* What is left are imaps: detach them, they report MP_ETERMINATED from now on. */
    while (p->all) {
        mp_result *j = p->all;
        mp__job_unlist(p, j);
        j->pool = NULL;
        p->unfinished--;
        mp__job_unref(j);
    }
    release_resources(p);
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->stop_lock);
}

/* ---- the API ------------------------------------------------------------------------------- */

void mp_pool_options_init(mp_pool_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->processes = MP_POOL_CPUS;
    o->spin = 1;
}

void mp_task_options_init(mp_task_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
}

/* The options checked and copied into p (the pool's own copies of initarg and cpus). */
static int apply_options(mp_pool *p, const mp_pool_options *o, uint64_t init_id)
{
    p->n = o->processes < 0 ? mp__cpu_count() : o->processes;
    p->pipeline = o->pipeline;
    p->timeout_s = o->task_timeout;
    p->timeout_ns = o->task_timeout > 0 ? (int64_t)(o->task_timeout * 1e9) : 0;
    if (p->timeout_ns == 0 && o->task_timeout > 0) p->timeout_ns = 1;
    p->w = calloc((size_t)p->n, sizeof *p->w);
    if (o->initarg_len) p->initarg = malloc(o->initarg_len);
    if (o->ncpus) p->cpus = malloc((size_t)o->ncpus * sizeof *p->cpus);
    if (!p->w || (o->initarg_len && !p->initarg) || (o->ncpus && !p->cpus)) return -ENOMEM;
    if (o->initarg_len) memcpy(p->initarg, o->initarg, o->initarg_len);
    if (o->ncpus) memcpy(p->cpus, o->cpus, (size_t)o->ncpus * sizeof *p->cpus);
    p->ncpus = o->ncpus;
    p->conf = (mp__worker_conf){
        o->max_message, o->maxtasksperchild, init_id, p->initarg, o->initarg_len, -1, o->spin != 0};
    return 0;
}

static int check_options(mp_pool_options *o, uint64_t *init_id)
{
    if (o->processes == 0 || o->processes < -1 || o->processes > MP__POOL_MAX_PROCESSES)
        return -EINVAL;
    if (o->ncpus < 0 || (o->ncpus > 0 && !o->cpus)) return -EINVAL;
    if (o->max_message == 0) o->max_message = MP__POOL_DEFAULT_MAX_MESSAGE;
    if (o->max_message < 4096 || o->max_message > (256u << 20)) return -EINVAL;
    if (o->initarg_len && !o->initarg) return -EINVAL;
    if (o->start_method != MP_START_DEFAULT && o->start_method != MP_START_FORK &&
        o->start_method != MP_START_SPAWN && o->start_method != MP_START_FORKSERVER)
        return -EINVAL;
    int rc = mp__func_clash();
    if (rc) return rc;
    *init_id = 0;
    if (o->initializer) {
        rc = mp__pool_lookup(NULL, o->initializer, init_id);
        if (rc) return rc;
        if (o->initarg_len > o->max_message - MP__REC_SLACK) return MP_ETOOBIG;
    }
    return 0;
}

int mp_pool_new(mp_pool **out, const mp_pool_options *opts)
{
    if (!out) return -EINVAL;
    mp_pool_options o;
    mp_pool_options_init(&o);
    if (opts) o = *opts;
    uint64_t init_id;
    int rc = check_options(&o, &init_id);
    if (rc) return rc;
    /* issue 13: the MPI backend's workers are ranks; processes = the worker ranks available. */
    const mp__pool_backend *be = NULL;
    int max_workers = 0;
    if ((rc = pick_backend(&o, &be, &max_workers)) != 0) return rc;
    if (be && o.processes == MP_POOL_CPUS) o.processes = max_workers;
    if (be && o.processes > max_workers) {
        mp__pool_set_error("the MPI backend has %d worker rank(s) free; the pool asks for %d",
                           max_workers, o.processes);
        return -EINVAL;
    }
    mp_pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->owner = mp__getpid_cached();
    atomic_init(&p->refs, 1);
    p->func_gen = mp__func_gen(); /* before any worker (or their factory) is forked */
    p->efd = -1;
    p->fac.sock = -1;
    /* The factory's start method, fixed now (the program-wide default may change later). */
    p->fac.method = mp__start_method_resolve((mp_start_method)o.start_method);
    p->tp = be ? be->tp : &mp__pool_shm_transport;
    p->launcher = be ? be->launcher : NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->stop_lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if ((rc = apply_options(p, &o, init_id)) != 0) {
        free_struct(p);
        return rc;
    }
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->efd < 0) {
        rc = -errno;
        free_struct(p);
        return rc;
    }
    mp__fd_internal_add(p->efd); /* workers get it through the factory, nobody else */
    rc = be ? be->shared_new(&p->ts, p->efd, p->n, o.task_timeout)
            : p->tp->shared_new(&p->ts, p->efd);
    if (rc != 0) {
        mp__fd_internal_del(p->efd);
        close(p->efd);
        free_struct(p);
        return rc;
    }
    /* The supervisor keeps every signal blocked: they go to the program's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&p->sup, NULL, mp__super_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        release_resources(p);
        free_struct(p);
        return rc;
    }
    p->sup_running = true;
    pthread_mutex_lock(&p->lock);
    while (!p->sup_ready)
        pthread_cond_wait(&p->cond, &p->lock);
    rc = p->sup_err;
    pthread_mutex_unlock(&p->lock);
    if (rc) {
        /* A launch error's text was set in the supervisor thread: give it to ours. */
        if (p->fac.err[0]) mp__pool_set_error("%s", p->fac.err);
        terminate_now(p);
        free_struct(p);
        return rc;
    }
    /* An initializer the launched factory does not have (registered at run time): refused like
     * a task, rather than a pool broken by its first worker. */
    uint64_t id;
    if (o.initializer && (rc = mp__pool_lookup(p, o.initializer, &id)) != 0) {
        terminate_now(p);
        free_struct(p);
        return rc;
    }
    *out = p;
    return 0;
}

int mp_pool_processes(const mp_pool *p)
{
    return p ? p->n : -EINVAL;
}

int mp_pool_worker_pids(const mp_pool *p, pid_t *pids, int max)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (!pids && max > 0) return -EINVAL;
    /* The lock is not part of what the query reads. */
    pthread_mutex_t *lock = (pthread_mutex_t *)&p->lock;
    pthread_mutex_lock(lock);
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        if (!p->w[i].alive) continue;
        if (k < max) pids[k] = p->w[i].pid;
        k++;
    }
    pthread_mutex_unlock(lock);
    return k;
}

int mp_pool_close(mp_pool *p)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    pthread_mutex_lock(&p->lock);
    if (p->state == MP__ST_TERMINATED)
        rc = MP_ETERMINATED;
    else
        p->state = MP__ST_CLOSED;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static bool pred_joined(mp_pool *p, void *arg)
{
    (void)arg;
    return p->unfinished == 0 && p->nalive == 0 && p->spawning == 0;
}

int mp_pool_join(mp_pool *p, double timeout)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (mp__pool_in_callback(p)) return -EDEADLK;
    pthread_mutex_lock(&p->lock);
    if (p->joined) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    if (p->state == MP__ST_RUN) {
        pthread_mutex_unlock(&p->lock);
        return MP_ESTATE;
    }
    p->joining = true;
    pthread_mutex_unlock(&p->lock);
    mp__pool_kick(p);
    mp__deadline dl = mp__deadline_in(timeout);
    rc = mp__pool_wait(p, pred_joined, NULL, &dl);
    if (rc == MP_ETERMINATED) return 0; /* terminated meanwhile: nothing left to join */
    if (rc) return rc;
    pthread_mutex_lock(&p->stop_lock);
    pthread_mutex_lock(&p->lock);
    if (p->joined) { /* another thread finished the join, or terminated */
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_unlock(&p->stop_lock);
        return 0;
    }
    p->sup_stop = true;
    pthread_mutex_unlock(&p->lock);
    stop_supervisor(p);
    pthread_mutex_lock(&p->lock);
    mp__super_kill_and_reap_all(p); /* none expected: belt and braces against a late respawn */
    release_resources(p);
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->stop_lock);
    return 0;
}

int mp_pool_terminate(mp_pool *p)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (mp__pool_in_callback(p)) return -EDEADLK;
    terminate_now(p);
    return 0;
}

int mp_pool_free(mp_pool **pp)
{
    if (!pp || !*pp) return 0;
    mp_pool *p = *pp;
    if (p->owner != mp__getpid_cached()) return MP_ECHILD;
    if (mp__pool_in_callback(p)) return -EDEADLK;
    if (!p->joined) terminate_now(p);
    *pp = NULL;
    /* Results and imaps may still be read (or waited on, by other threads): they hold references
     * on the structure, so it goes with the last of them. */
    mp__pool_unref(p);
    return 0;
}
