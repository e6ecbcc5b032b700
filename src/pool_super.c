/* SPDX-License-Identifier: MIT */
/* pool_super.c - supervision: the supervisor thread, spawning workers through the worker
 * factory (pool_factory.c), their deaths, task timeouts, and killing and reaping at the end.
 *
 * The supervisor drains the result rings only when nobody else waits (it asks the workers for an
 * eventfd write then), has workers started and replaced by the factory (a single-threaded
 * process, so no worker is ever forked from this multi-threaded one), learns of their deaths
 * from it, enforces task timeouts and runs callbacks. It keeps every signal blocked. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mproc/error.h"
#include "pool_private.h"
#include "start_internal.h"
#include "process_internal.h"

#define RESPAWN_DELAY_NS 100000000 /* after a failed spawn */

/* issue 13: a worker of a pool with a launcher (MPI ranks): started at once, no factory. */
static int launcher_spawn(mp_pool *p, int i)
{
    struct mp__worker *w = &p->w[i];
    mp__tp_worker *tpw = NULL;
    int fd = -1;
    pid_t pid = 0;
    int r = p->tp->prepare(p->ts, &p->conf, &tpw, &fd);
    if (r == 0) {
        r = p->launcher->start(p->ts, tpw, i, &pid);
        if (r) p->tp->release(tpw);
    }
    if (r < 0) {
        w->respawn_at = mp__now_ns() + RESPAWN_DELAY_NS;
        return r;
    }
    *w = (struct mp__worker){.tp = tpw, .pid = pid, .alive = true};
    p->nalive++;
    return 0;
}

/* Asks the factory for worker i (lock held); SPAWNED answers. */
static int spawn(mp_pool *p, int i)
{
    if (p->launcher) return launcher_spawn(p, i);
    struct mp__worker *w = &p->w[i];
    mp__tp_worker *tpw = NULL;
    int fd = -1;
    int r = p->tp->prepare(p->ts, &p->conf, &tpw, &fd);
    if (r == 0) {
        r = mp__factory_spawn(&p->fac, i, p->ncpus > 0 ? p->cpus[i % p->ncpus] : -1, fd, p->efd);
        mp__fd_internal_del(fd);
        close(fd);
        if (r) p->tp->release(tpw);
    }
    if (r < 0) {
        w->respawn_at = mp__now_ns() + RESPAWN_DELAY_NS;
        return r;
    }
    *w = (struct mp__worker){.tp = tpw, .starting = true};
    p->spawning++;
    return 0;
}

static void death_message(char *buf, size_t cap, pid_t pid, int code, int reaped)
{
    if (reaped != 1)
        snprintf(buf, cap,
                 "worker %d ended; its exit status is unknown (the pool's worker factory is gone)",
                 (int)pid);
    else if (code < 0)
        snprintf(buf, cap, "worker %d was killed by signal %d (%s)", (int)pid, -code,
                 strsignal(-code));
    else
        snprintf(buf, cap, "worker %d exited with status %d", (int)pid, code);
}

/* The worker ended (reaped: 1; 0 when its status is unknown): settle its tasks, free its slot. */
static void handle_death(mp_pool *p, struct mp__worker *w, int code, int reaped)
{
    mp__sched_drain_worker(p, w);
    int icode = 0;
    char imsg[1024];
    if (p->tp->init_failed(w->tp, &icode, imsg, sizeof imsg) && !p->broken) {
        p->broken = true;
        p->broken_status = MP_ETASKFAILED;
        p->broken_code = icode;
        snprintf(p->broken_msg, sizeof p->broken_msg, "initializer failed: %s", imsg);
    }
    uint64_t running = p->tp->running(w->tp, NULL);
    struct mp__task *t = w->head;
    if (t && running == t->id) {
        mp__sched_fifo_pop(w);
        p->outstanding--;
        char msg[512];
        int status = MP_EWORKERDIED;
        if (t->id == w->timed_out_id) {
            status = -ETIMEDOUT;
            snprintf(msg, sizeof msg,
                     "task ran longer than the pool's task_timeout of %g s; worker %d killed",
                     p->timeout_s, (int)w->pid);
            code = 0;
        } else {
            death_message(msg, sizeof msg, w->pid, code, reaped);
            /* Unknown is not "exit status 0" (nor -ECHILD, which reads as a signal number): a
             * code no exit status or signal can give. */
            if (reaped != 1) code = MP_EREAPED;
        }
        mp__job_fail_items(t->job, t->first + t->delivered, t->count - t->delivered, status, code,
                           msg);
        mp__sched_task_done(p, t);
    }
    /* Tasks queued behind it never started: they go first to the next worker. */
    mp__sched_requeue(p, w);
    p->tp->release(w->tp);
    w->tp = NULL;
    w->alive = false;
    w->respawn_at = 0;
    p->nalive--;
    if (p->broken) mp__sched_fail_pending(p, p->broken_status, p->broken_code, p->broken_msg);
    p->tp->result_kick(p->ts);
}

static bool should_respawn(const mp_pool *p)
{
    if (p->sup_stop || p->broken || p->state == MP__ST_TERMINATED) return false;
    return p->state == MP__ST_RUN || p->unfinished > 0;
}

/* Kills workers whose task ran past the timeout. Returns ms until the next check (-1: none). */
static int check_timeouts(mp_pool *p)
{
    if (p->timeout_ns <= 0 || p->outstanding == 0) return -1;
    int64_t now = mp__now_ns(), next = 50000000;
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (!w->alive || w->nout == 0) continue;
        int64_t since;
        uint64_t id = p->tp->running(w->tp, &since);
        if (!id || id == w->timed_out_id) continue;
        int64_t left = since + p->timeout_ns - now;
        if (left <= 0) {
            w->timed_out_id = id;
            mp__factory_kill(&p->fac, w->pid, SIGKILL);
        } else if (left < next) {
            next = left;
        }
    }
    return (int)((next + 999999) / 1000000);
}

/* Does any live worker have a result waiting? */
static bool results_waiting(mp_pool *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->w[i].tp && p->tp->result_peek(p->w[i].tp)) return true;
    return false;
}

/* One message of the factory (lock held). */
static void factory_event(mp_pool *p, const mp__fmsg *m)
{
    if (m->op == MP__F_SPAWNED) {
        if (m->index < 0 || m->index >= p->n) return;
        struct mp__worker *w = &p->w[m->index];
        if (!w->starting) return;
        w->starting = false;
        p->spawning--;
        if (m->pid <= 0) {
            p->tp->release(w->tp);
            w->tp = NULL;
            w->respawn_at = mp__now_ns() + RESPAWN_DELAY_NS;
            if (!p->sup_ready && !p->sup_err) p->sup_err = m->pid < 0 ? m->pid : -EAGAIN;
            return;
        }
        w->pid = m->pid;
        w->alive = true;
        p->nalive++;
        if (p->state == MP__ST_TERMINATED) mp__factory_kill(&p->fac, w->pid, SIGKILL);
    } else if (m->op == MP__F_DIED) {
        for (int i = 0; i < p->n; i++) {
            struct mp__worker *w = &p->w[i];
            if (w->alive && w->pid == m->pid) {
                handle_death(p, w, m->val, 1);
                return;
            }
        }
    }
}

/* Workers asked of the factory that never came, and live ones it will not report: gone with
 * it, status unknown. */
static void forget_workers(mp_pool *p, bool settle)
{
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (w->starting) {
            w->starting = false;
            p->spawning--;
            p->tp->release(w->tp);
            w->tp = NULL;
        }
        if (w->alive) {
            if (settle) mp__super_settle_terminated(p, w);
            handle_death(p, w, 0, 0);
        }
    }
}

/* The factory died under us (killed from outside): its workers die with it (PDEATHSIG) and nobody
 * can start new ones, so the pool is broken; every task fails instead of waiting forever. */
static void factory_gone(mp_pool *p)
{
    if (!p->broken && p->state != MP__ST_TERMINATED) {
        p->broken = true;
        p->broken_status = MP_EWORKERDIED;
        p->broken_code = MP_EREAPED;
        snprintf(p->broken_msg, sizeof p->broken_msg,
                 "the pool's worker factory (pid %d) died; no worker can be started",
                 (int)p->fac.pid);
    }
    forget_workers(p, false);
    if (p->broken) mp__sched_fail_pending(p, p->broken_status, p->broken_code, p->broken_msg);
}

/* Takes every message the factory sent (lock held). */
static void factory_events(mp_pool *p)
{
    mp__fmsg m;
    int r;
    while ((r = mp__factory_recv(&p->fac, &m, NULL)) == 1)
        factory_event(p, &m);
    if (r == -EPIPE) factory_gone(p);
}

/* issue 13: workers the launcher reports ended (lock held). */
static void launcher_events(mp_pool *p)
{
    int index, code;
    while (p->launcher->ended(p->ts, &index, &code) == 1)
        if (index >= 0 && index < p->n && p->w[index].alive) handle_death(p, &p->w[index], code, 1);
}

/* Starts the factory and the first workers; mp_pool_new waits for the outcome (sup_ready). */
static void start_workers(mp_pool *p)
{
    /* The workers' lives are tied to this thread (PDEATHSIG of the factory), which lasts as long
     * as the pool. mp_pool_new waits meanwhile, so its thread is not in the middle of anything.
     * issue 13: a pool with a launcher has no factory. */
    int r = p->launcher ? 0 : mp__factory_start(&p->fac, p->tp, p->ts, &p->conf);
    pthread_mutex_lock(&p->lock);
    p->duty_thread = pthread_self();
    p->duty_set = true;
    if (r) p->sup_err = r;
    for (int i = 0; i < p->n && !p->sup_err; i++) {
        r = spawn(p, i);
        if (r) p->sup_err = r;
    }
    /* Wait for every first worker, so that mp_pool_new reports a failed fork. */
    while (p->spawning > 0 && !p->sup_err) {
        mp__fmsg m;
        mp__deadline dl = mp__deadline_in(60);
        pthread_mutex_unlock(&p->lock);
        r = mp__factory_recv(&p->fac, &m, &dl);
        pthread_mutex_lock(&p->lock);
        if (r == 1)
            factory_event(p, &m);
        else
            p->sup_err = r < 0 ? -EAGAIN : -ETIMEDOUT;
    }
    p->sup_ready = true;
    pthread_cond_broadcast(&p->cond);
}

/* Replaces dead workers whose time has come; lowers *tmo to the next one's. */
static void respawn_due(mp_pool *p, int *tmo)
{
    int64_t now = mp__now_ns();
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (w->alive || w->starting || !should_respawn(p) || p->fac.gone) continue;
        if (p->launcher && p->sup_stop) continue;
        if (w->respawn_at > now) {
            int ms = (int)((w->respawn_at - now) / 1000000) + 1;
            if (*tmo < 0 || ms < *tmo) *tmo = ms;
            continue;
        }
        spawn(p, i);
    }
}

/* Lock held; sleeps (lock released) until the eventfd, the factory or the timeout wakes it.
 * false when results came meanwhile (go round at once). */
static bool sleep_once(mp_pool *p, int tmo)
{
    bool want = (p->outstanding > 0 || p->rhead || p->qhead) && atomic_load(&p->drainers) == 0;
    struct pollfd fds[2];
    int nf = 0;
    fds[nf++] = (struct pollfd){.fd = p->efd, .events = POLLIN};
    if (!p->fac.gone && p->fac.sock >= 0)
        fds[nf++] = (struct pollfd){.fd = p->fac.sock, .events = POLLIN};
    if (p->launcher) {
        /* issue 13: nothing wakes us when a rank's message arrives: poll for it. */
        int ms = p->launcher->poll_ms(p->ts);
        if (ms >= 0 && (tmo < 0 || ms < tmo)) tmo = ms;
    }
    if (want) {
        p->tp->want_notify(p->ts, 1);
        if (results_waiting(p)) {
            p->tp->want_notify(p->ts, 0);
            return false;
        }
    }
    pthread_mutex_unlock(&p->lock);
    int r = poll(fds, (nfds_t)nf, tmo);
    pthread_mutex_lock(&p->lock);
    p->tp->want_notify(p->ts, 0);
    if (r > 0 && fds[0].revents) {
        uint64_t v;
        ssize_t n = read(p->efd, &v, sizeof v);
        (void)n;
    }
    return true;
}

void *mp__super_main(void *arg)
{
    mp_pool *p = arg;
    mp__own_threads_add(1); /* not the program's: mp_thread_count leaves it out */
    start_workers(p);
    while (!p->sup_err && !p->sup_stop) {
        mp__sched_progress(p);
        if (p->launcher)
            launcher_events(p);
        else if (!p->fac.gone)
            factory_events(p);
        int tmo = check_timeouts(p);
        respawn_due(p, &tmo);
        mp__sched_dispatch(p);
        mp__sched_stop_workers(p);
        mp_result *cbs = mp__pool_take_callbacks(p);
        if (cbs) {
            pthread_mutex_unlock(&p->lock);
            mp__pool_run_callbacks(p, cbs);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        sleep_once(p, tmo);
    }
    p->duty_set = false;
    pthread_mutex_unlock(&p->lock);
    mp__own_threads_add(-1);
    return NULL;
}

/* ---- the end --------------------------------------------------------------------------------- */

void mp__super_settle_terminated(mp_pool *p, struct mp__worker *w)
{
    mp__sched_drain_worker(p, w);
    struct mp__task *t;
    while ((t = mp__sched_fifo_pop(w)) != NULL) {
        p->outstanding--;
        mp__job_fail_items(t->job, t->first + t->delivered, t->count - t->delivered, MP_ETERMINATED,
                           0, "pool was terminated");
        mp__sched_task_done(p, t);
    }
}

void mp__super_kill_workers(mp_pool *p)
{
    if (p->launcher) { /* issue 13: ranks cannot be killed; their service for this pool ends */
        for (int i = 0; i < p->n; i++)
            if (p->w[i].alive) p->launcher->kill(p->w[i].tp);
        return;
    }
    for (int i = 0; i < p->n; i++)
        if (p->w[i].alive) mp__factory_kill(&p->fac, p->w[i].pid, SIGKILL);
}

void mp__super_kill_and_reap_all(mp_pool *p)
{
    if (p->fac.sock >= 0) {
        mp__factory_quit(&p->fac);
        for (;;) {
            mp__fmsg m;
            mp__deadline forever = mp__deadline_in(MP_FOREVER);
            pthread_mutex_unlock(&p->lock);
            int r = mp__factory_recv(&p->fac, &m, &forever);
            pthread_mutex_lock(&p->lock);
            if (r != 1 || m.op == MP__F_BYE) break;
            if (m.op == MP__F_DIED) {
                for (int i = 0; i < p->n; i++) {
                    struct mp__worker *w = &p->w[i];
                    if (w->alive && w->pid == m.pid) mp__super_settle_terminated(p, w);
                }
            }
            factory_event(p, &m);
        }
        mp__factory_end(&p->fac);
    }
    /* Anything the factory did not report (it was killed): gone with it, status unknown. */
    forget_workers(p, true);
}
