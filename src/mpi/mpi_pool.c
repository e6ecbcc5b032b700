/* SPDX-License-Identifier: MIT */
/* mpi_pool.c - libmproc-mpi: the pool on MPI ranks (issue 13; docs/mpi.md).
 *
 * The model is mpi4py.futures: `mpirun -np N ./prog`; every rank runs main until mp_init, where
 * the entry hook registered below takes over. Rank 0 returns and runs the program; ranks 1..N-1
 * serve tasks in worker_main() and never return (MPI_Finalize, exit(0) when rank 0 finishes).
 *
 * Rank 0 side: a pool transport (pool_transport.h) plus a launcher. A pool claims worker ranks
 * (exclusively, so several pools may share the job's ranks); each start of a worker opens a
 * session on its rank (OPEN with the worker configuration, answered by HELLO once the initializer
 * ran). Task records are packed into one batch buffer per rank and sent with MPI_Isend at each
 * task_flush (the scheduler's pipelining depth applies unchanged: up to 256 small tasks per rank in
 * flight); the rank sends its result records back in batches too. A session ends with BYE: after
 * an MP__T_STOP record (join), after maxtasksperchild tasks (the pool then "respawns" the worker:
 * a new session, the initializer runs again), after a failed initializer, or after ABORT
 * (terminate; the rank finishes the task it runs, drops the rest and is free again).
 *
 * Every MPI call of this file is made under one mutex (mpi_lock), on a duplicate of
 * MPI_COMM_WORLD (our traffic never matches the program's own receives). Nothing wakes a waiting
 * thread when a message arrives, so waits poll: a short spin, then sched_yield, then sleeps of
 * growing length (<= 1 ms); the supervisor polls every millisecond while results are expected.
 *
 * Failures. A task that fails comes back as with the fork backend. Open MPI ends the whole job when
 * a rank dies, so a task that crashes its rank (signal, abort, exit) or runs past task_timeout
 * cannot be survived: each worker rank has a watchdog process (forked before MPI_Init) that shares
 * a page with it saying which task runs since when; when the rank dies during a task it prints the
 * rank, host, pid, task and function, and when a task overruns task_timeout it says so and
 * SIGKILLs the rank. Either way mpirun then ends the job with a non-zero status. */
#include <mpi.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "pool_transport.h"
#include "start_internal.h"

#define TAG 7713 /* on our own communicator */
enum { K_OPEN = 1, K_TASKS, K_ABORT, K_EXIT, K_HELLO, K_RESULTS, K_BYE, K_EXITED };
enum { R_FREE, R_CLAIMED, R_DRAINING };
#define BATCH_MIN      (64u * 1024)
#define SENDS_PER_RANK 8
#define HOST_LEN       64
#define FLUSH_EVERY    32 /* a worker rank sends its results at least every 32 tasks */

typedef struct mhdr {
    uint32_t kind, serial;
    int32_t code;
    uint32_t pad;
} mhdr;

typedef struct open_conf {
    uint64_t max_message;
    uint64_t init_func;
    uint64_t initarg_len;
    double timeout;
    uint32_t maxtasks;
    uint32_t spin;
} open_conf;

typedef struct hello {
    int32_t pid, status, code, pad;
    char host[HOST_LEN];
    char msg[1024];
} hello;

/* ---- process-wide state ------------------------------------------------------------------- */

static struct {
    int launched; /* launched by mpirun/mpiexec (environment) */
    int hooked;   /* the entry hook ran: MPI is up and G.comm exists */
    int own;      /* mproc called MPI_Init (so it calls MPI_Finalize) */
    int rank, size;
    MPI_Comm comm;
    char host[HOST_LEN];
    int finalized;     /* workers released: no MPI call from here on */
    int *rstate;       /* rank 0: R_* per rank */
    uint32_t *rserial; /* rank 0: the serial of each rank's last session */
    uint32_t serial;
} G;

static pthread_mutex_t mpi_lock = PTHREAD_MUTEX_INITIALIZER;
static const mp__pool_services *svc;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t left_ns(const mp__deadline *dl)
{
    if (!dl || dl->at_ns < 0) return INT64_MAX;
    int64_t l = dl->at_ns - now_ns();
    return l > 0 ? l : 0;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}

/* The waiting schedule of every poll loop here: spin, then yield, then sleep (<= 1 ms). */
static void backoff(int64_t waited_ns, bool spin, int64_t cap_ns)
{
    if (spin && waited_ns < 30000) return;
    if (waited_ns < 2000000) {
        sched_yield();
        return;
    }
    int64_t ns = waited_ns / 20;
    if (ns > 1000000) ns = 1000000;
    if (ns > cap_ns) ns = cap_ns;
    if (ns > 0) sleep_ns(ns);
}

/* ---- pending sends (all, under mpi_lock) ---------------------------------------------------- */

struct psend {
    MPI_Request req;
    void *buf;
    const void *owner; /* the worker whose backpressure it counts in, NULL when released */
};
static struct psend *sends;
static int nsends, capsends;

static void sends_reap(void)
{
    for (int i = 0; i < nsends;) {
        int done = 0;
        MPI_Test(&sends[i].req, &done, MPI_STATUS_IGNORE);
        if (done) {
            free(sends[i].buf);
            sends[i] = sends[--nsends];
        } else {
            i++;
        }
    }
}

static int sends_of(const void *owner)
{
    int k = 0;
    for (int i = 0; i < nsends; i++)
        k += sends[i].owner == owner;
    return k;
}

static void sends_disown(const void *owner)
{
    for (int i = 0; i < nsends; i++)
        if (sends[i].owner == owner) sends[i].owner = NULL;
}

/* Isend of buf (taken over, freed once sent). mpi_lock held. */
static int isend(void *buf, size_t len, int dest, const void *owner)
{
    if (nsends == capsends) {
        int nc = capsends ? 2 * capsends : 64;
        struct psend *n = realloc(sends, (size_t)nc * sizeof *n);
        if (!n) return -ENOMEM;
        sends = n;
        capsends = nc;
    }
    struct psend *s = &sends[nsends];
    if (MPI_Isend(buf, (int)len, MPI_BYTE, dest, TAG, G.comm, &s->req) != MPI_SUCCESS) return -EIO;
    s->buf = buf;
    s->owner = owner;
    nsends++;
    return 0;
}

static int send_small(int dest, uint32_t kind, uint32_t serial, int32_t code, const void *pl,
                      size_t len)
{
    char *b = malloc(sizeof(mhdr) + len);
    if (!b) return -ENOMEM;
    mhdr h = {kind, serial, code, 0};
    memcpy(b, &h, sizeof h);
    if (len) memcpy(b + sizeof h, pl, len);
    int r = isend(b, sizeof h + len, dest, NULL);
    if (r) free(b);
    return r;
}

/* Receives the next message from src if there is one (mpi_lock held): 1 with *buf (grown as
 * needed) and *len, 0 when none. */
static int try_recv(int src, char **buf, size_t *cap, size_t *len, int *from)
{
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(src, TAG, G.comm, &flag, &st);
    if (!flag) return 0;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    if ((size_t)n > *cap || !*buf) {
        size_t c = (size_t)n < BATCH_MIN ? BATCH_MIN : (size_t)n;
        char *b = realloc(*buf, c);
        if (!b) return -ENOMEM;
        *buf = b;
        *cap = c;
    }
    MPI_Recv(*buf, n, MPI_BYTE, st.MPI_SOURCE, TAG, G.comm, MPI_STATUS_IGNORE);
    *len = (size_t)n;
    if (from) *from = st.MPI_SOURCE;
    return 1;
}

/* ---- rank 0: the transport ------------------------------------------------------------------ */

struct mp__tp_shared {
    int efd, n;
    double timeout;
    bool spin;
    _Atomic uint32_t seq;
    int expect_total; /* task records and STOPs sent whose answers did not come yet */
    bool kicked;      /* the supervisor was woken to start polling */
    int *ranks;
    mp__tp_worker **w;
};

struct mp__tp_worker {
    mp__tp_shared *s;
    int index, rank;
    uint32_t serial;
    mp__worker_conf conf;
    char *obuf;
    size_t ocap, olen;
    char *ibuf;
    size_t icap, ilen, ioff;
    int expect;
    bool stop_sent, abort_sent, ended, reported;
    int end_code;
    bool init_failed;
    int init_code;
    char init_msg[1024];
    pid_t pid;
    char host[HOST_LEN];
};

static void kick(mp__tp_shared *s)
{
    uint64_t one = 1;
    ssize_t n = write(s->efd, &one, sizeof one);
    (void)n;
}

static void drain_draining(void);

static int usable(int *max)
{
    *max = 0;
    if (!G.launched) return 0;
    if (!G.hooked) {
        svc->set_error("launched by mpirun, but mp_init(&argc, &argv) was not called at the start "
                       "of main: the worker ranks enter their loop there");
        return MP_ENOTSUP;
    }
    if (G.size < 2) {
        svc->set_error("MPI backend: launched with 1 rank, so there are no worker ranks (rank 0 "
                       "runs main); launch with mpirun -np N, N >= 2");
        return MP_ENOTSUP;
    }
    pthread_mutex_lock(&mpi_lock);
    if (G.finalized) {
        pthread_mutex_unlock(&mpi_lock);
        svc->set_error("MPI backend: MPI is finalized; no pool can be made any more");
        return MP_ENOTSUP;
    }
    int k = 0;
    for (int r = 1; r < G.size; r++)
        k += G.rstate[r] != R_CLAIMED;
    pthread_mutex_unlock(&mpi_lock);
    if (k == 0) {
        svc->set_error("MPI backend: all %d worker ranks are used by other pools", G.size - 1);
        return -EAGAIN;
    }
    *max = k;
    return 1;
}

/* A terminated session's rank answers ABORT with BYE once its running task is done. */
static void drain_draining(void)
{
    static char *buf;
    static size_t cap;
    for (int r = 1; r < G.size; r++) {
        size_t len;
        while (G.rstate[r] == R_DRAINING && try_recv(r, &buf, &cap, &len, NULL) == 1) {
            mhdr h;
            memcpy(&h, buf, sizeof h);
            if (h.kind == K_BYE && h.serial == G.rserial[r]) G.rstate[r] = R_FREE;
        }
    }
    sends_reap();
}

static int mpi_shared_new(mp__tp_shared **out, int efd, int n, double timeout)
{
    mp__tp_shared *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->ranks = calloc((size_t)n, sizeof *s->ranks);
    s->w = calloc((size_t)n, sizeof *s->w);
    if (!s->ranks || !s->w) {
        free(s->ranks);
        free(s->w);
        free(s);
        return -ENOMEM;
    }
    s->efd = efd;
    s->n = n;
    s->timeout = timeout;
    /* Ranks still finishing a terminated pool's task come back: wait for them if needed. */
    int64_t t0 = now_ns();
    for (;;) {
        pthread_mutex_lock(&mpi_lock);
        if (G.finalized) {
            pthread_mutex_unlock(&mpi_lock);
            svc->set_error("MPI backend: MPI is finalized");
            free(s->ranks);
            free(s->w);
            free(s);
            return MP_ENOTSUP;
        }
        drain_draining();
        int fr = 0;
        for (int r = 1; r < G.size; r++)
            fr += G.rstate[r] == R_FREE;
        if (fr >= n) {
            for (int r = 1, k = 0; r < G.size && k < n; r++)
                if (G.rstate[r] == R_FREE) {
                    G.rstate[r] = R_CLAIMED;
                    s->ranks[k++] = r;
                }
            pthread_mutex_unlock(&mpi_lock);
            break;
        }
        pthread_mutex_unlock(&mpi_lock);
        backoff(now_ns() - t0, false, 1000000);
    }
    *out = s;
    return 0;
}

static void mpi_shared_free(mp__tp_shared *s)
{
    pthread_mutex_lock(&mpi_lock);
    if (!G.finalized)
        for (int i = 0; i < s->n; i++)
            if (G.rstate[s->ranks[i]] == R_CLAIMED) G.rstate[s->ranks[i]] = R_FREE;
    pthread_mutex_unlock(&mpi_lock);
    free(s->ranks);
    free(s->w);
    free(s);
}

static _Atomic uint32_t *mpi_result_seq(mp__tp_shared *s)
{
    return &s->seq;
}

static void mpi_result_kick(mp__tp_shared *s)
{
    atomic_fetch_add(&s->seq, 1);
}

/* Polls this pool's ranks for a message (without taking it) until seq moves or dl. */
static void mpi_result_wait(mp__tp_shared *s, uint32_t seq, int64_t spin_ns, const mp__deadline *dl)
{
    (void)spin_ns; /* the pool's spin budget is 0 here (no CPU to watch); we spin briefly anyway */
    int64_t t0 = now_ns();
    for (;;) {
        if (atomic_load(&s->seq) != seq) return;
        int found = 0;
        pthread_mutex_lock(&mpi_lock);
        if (G.finalized) found = 1;
        for (int i = 0; i < s->n && !found; i++)
            MPI_Iprobe(s->ranks[i], TAG, G.comm, &found, MPI_STATUS_IGNORE);
        pthread_mutex_unlock(&mpi_lock);
        if (found) return;
        int64_t l = left_ns(dl);
        if (l == 0) return;
        backoff(now_ns() - t0, s->spin, l);
    }
}

static void mpi_want_notify(mp__tp_shared *s, int on)
{
    (void)s;
    (void)on;
}

static void mpi_fork_nop(mp__tp_shared *s)
{
    (void)s;
}

static int mpi_prepare(mp__tp_shared *s, const mp__worker_conf *conf, mp__tp_worker **out, int *fd)
{
    mp__tp_worker *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->s = s;
    w->conf = *conf;
    s->spin = conf->spin;
    *out = w;
    *fd = -1;
    return 0;
}

__attribute__((noreturn)) static void mpi_worker_run(mp__tp_shared *s, const mp__worker_conf *conf,
                                                     int fd, int efd)
{
    (void)s;
    (void)conf;
    (void)fd;
    (void)efd;
    abort(); /* never: MPI workers are ranks, not forks */
}

/* Sends the batch being built (mpi_lock held). */
static int send_batch(mp__tp_worker *w)
{
    if (!w->obuf || w->olen <= sizeof(mhdr)) return 0;
    mhdr h = {K_TASKS, w->serial, 0, 0};
    memcpy(w->obuf, &h, sizeof h);
    int r = isend(w->obuf, w->olen, w->rank, w);
    if (r) return r;
    w->obuf = NULL;
    w->olen = w->ocap = 0;
    return 0;
}

static void *mpi_task_reserve(mp__tp_worker *w, uint32_t size)
{
    if (w->ended || w->abort_sent) return NULL;
    if (w->obuf && w->olen + size <= w->ocap) return w->obuf + w->olen;
    pthread_mutex_lock(&mpi_lock);
    void *ret = NULL;
    if (G.finalized) goto out;
    sends_reap();
    if (w->obuf && send_batch(w)) goto out;
    if (sends_of(w) >= SENDS_PER_RANK) goto out; /* full: try again after its results */
    size_t cap = BATCH_MIN;
    while (cap < sizeof(mhdr) + size)
        cap *= 2;
    w->obuf = malloc(cap);
    if (!w->obuf) goto out;
    w->ocap = cap;
    w->olen = sizeof(mhdr);
    ret = w->obuf + w->olen;
out:
    pthread_mutex_unlock(&mpi_lock);
    return ret;
}

static void mpi_task_commit(mp__tp_worker *w, uint32_t size)
{
    const mp__trec *t = (const mp__trec *)(w->obuf + w->olen);
    if (t->type == MP__T_STOP) w->stop_sent = true;
    w->olen += size;
    w->expect++;
    w->s->expect_total++;
}

static void mpi_task_flush(mp__tp_worker *w)
{
    pthread_mutex_lock(&mpi_lock);
    if (!G.finalized) send_batch(w);
    pthread_mutex_unlock(&mpi_lock);
    /* The supervisor sleeps without a limit while nothing is expected: it must start polling. */
    if (!w->s->kicked) {
        w->s->kicked = true;
        kick(w->s);
    }
}

static void note_end(mp__tp_worker *w, int code)
{
    if (w->ended) return;
    w->ended = true;
    w->end_code = code;
    w->s->expect_total -= w->expect;
    w->expect = 0;
    atomic_fetch_add(&w->s->seq, 1);
}

static const mp__rrec *mpi_result_peek(mp__tp_worker *w)
{
    for (;;) {
        if (w->ioff < w->ilen) return (const mp__rrec *)(w->ibuf + w->ioff);
        if (w->ended) return NULL;
        pthread_mutex_lock(&mpi_lock);
        int r = G.finalized ? 0 : try_recv(w->rank, &w->ibuf, &w->icap, &w->ilen, NULL);
        pthread_mutex_unlock(&mpi_lock);
        if (r != 1) {
            w->ilen = w->ioff = 0;
            return NULL;
        }
        mhdr h;
        memcpy(&h, w->ibuf, sizeof h);
        w->ioff = sizeof h;
        if (h.serial != w->serial) { /* an earlier session's leftovers */
            w->ilen = 0;
            continue;
        }
        if (h.kind == K_RESULTS) continue;
        w->ilen = 0;
        if (h.kind == K_BYE) note_end(w, h.code);
    }
}

static void mpi_result_release(mp__tp_worker *w)
{
    const mp__rrec *r = (const mp__rrec *)(w->ibuf + w->ioff);
    if (r->flags & MP__R_LAST) {
        w->expect--;
        w->s->expect_total--;
    }
    w->ioff += r->size;
}

static uint64_t mpi_running(mp__tp_worker *w, int64_t *since_ns)
{
    (void)w;
    if (since_ns) *since_ns = 0;
    return 0; /* task timeouts are the rank's watchdog's business */
}

static int mpi_cpu(mp__tp_worker *w)
{
    (void)w;
    return -1;
}

static bool mpi_init_failed(mp__tp_worker *w, int *code, char *msg, size_t cap)
{
    if (!w->init_failed) return false;
    *code = w->init_code;
    snprintf(msg, cap, "%s", w->init_msg);
    return true;
}

static void mpi_release(mp__tp_worker *w)
{
    pthread_mutex_lock(&mpi_lock);
    if (!G.finalized) {
        if (w->obuf && !w->ended && !w->abort_sent) send_batch(w);
        if (w->serial && !w->ended) {
            /* Still serving this pool (terminate, or never joined): it answers ABORT with BYE
             * once the task it runs is done, and is free again then. */
            if (!w->abort_sent) send_small(w->rank, K_ABORT, w->serial, 0, NULL, 0);
            G.rstate[w->rank] = R_DRAINING;
            G.rserial[w->rank] = w->serial;
        }
        sends_disown(w);
    }
    pthread_mutex_unlock(&mpi_lock);
    if (w->s->w[w->index] == w) w->s->w[w->index] = NULL;
    w->s->expect_total -= w->expect;
    free(w->obuf);
    free(w->ibuf);
    free(w);
}

/* ---- rank 0: the launcher ----------------------------------------------------------------- */

static int mpi_start(mp__tp_shared *s, mp__tp_worker *w, int index, pid_t *pid)
{
    w->index = index;
    w->rank = s->ranks[index];
    size_t plen = sizeof(open_conf) + w->conf.initarg_len;
    char *pl = malloc(plen);
    if (!pl) return -ENOMEM;
    open_conf oc = {w->conf.max_message, w->conf.init_func, w->conf.initarg_len,
                    s->timeout,          w->conf.maxtasks,  w->conf.spin};
    memcpy(pl, &oc, sizeof oc);
    if (w->conf.initarg_len) memcpy(pl + sizeof oc, w->conf.initarg, w->conf.initarg_len);
    pthread_mutex_lock(&mpi_lock);
    int r = G.finalized ? MP_ENOTSUP : 0;
    if (!r) {
        w->serial = ++G.serial;
        r = send_small(w->rank, K_OPEN, w->serial, 0, pl, plen);
    }
    pthread_mutex_unlock(&mpi_lock);
    free(pl);
    if (r) return r;
    /* The rank answers once its initializer ran (the pool's first start waits for it anyway). */
    int64_t t0 = now_ns();
    for (;;) {
        size_t len = 0;
        pthread_mutex_lock(&mpi_lock);
        r = G.finalized ? -EPIPE : try_recv(w->rank, &w->ibuf, &w->icap, &len, NULL);
        pthread_mutex_unlock(&mpi_lock);
        if (r < 0) return r;
        if (r == 0) {
            backoff(now_ns() - t0, true, 1000000);
            continue;
        }
        mhdr h;
        memcpy(&h, w->ibuf, sizeof h);
        if (h.serial != w->serial || h.kind != K_HELLO || len < sizeof h + sizeof(hello)) continue;
        hello he;
        memcpy(&he, w->ibuf + sizeof h, sizeof he);
        he.host[HOST_LEN - 1] = 0;
        he.msg[sizeof he.msg - 1] = 0;
        w->pid = he.pid;
        memcpy(w->host, he.host, sizeof w->host);
        if (he.status) {
            w->init_failed = true;
            w->init_code = he.code;
            snprintf(w->init_msg, sizeof w->init_msg, "%s", he.msg);
            note_end(w, 70); /* the rank closed the session itself */
        }
        break;
    }
    s->w[index] = w;
    *pid = w->pid;
    return 0;
}

static void mpi_kill(mp__tp_worker *w)
{
    pthread_mutex_lock(&mpi_lock);
    if (!G.finalized && !w->ended && !w->abort_sent) {
        if (w->obuf) send_batch(w);
        send_small(w->rank, K_ABORT, w->serial, 0, NULL, 0);
        w->abort_sent = true;
    }
    pthread_mutex_unlock(&mpi_lock);
}

static int mpi_ended(mp__tp_shared *s, int *index, int *code)
{
    for (int i = 0; i < s->n; i++) {
        mp__tp_worker *w = s->w[i];
        if (w && w->ended && !w->reported) {
            w->reported = true;
            *index = i;
            *code = w->end_code;
            return 1;
        }
    }
    return 0;
}

static int mpi_poll_ms(mp__tp_shared *s)
{
    if (s->expect_total > 0) return 1;
    for (int i = 0; i < s->n; i++)
        if (s->w[i] && s->w[i]->stop_sent && !s->w[i]->ended) return 1;
    s->kicked = false; /* it sleeps without a limit now: the next flush wakes it */
    return -1;
}

static const mp__transport mpi_transport = {
    .shared_new = NULL, /* mp__pool_backend.shared_new instead */
    .shared_free = mpi_shared_free,
    .result_seq = mpi_result_seq,
    .result_kick = mpi_result_kick,
    .result_wait = mpi_result_wait,
    .want_notify = mpi_want_notify,
    .fork_begin = mpi_fork_nop,
    .fork_end = mpi_fork_nop,
    .prepare = mpi_prepare,
    .worker_run = mpi_worker_run,
    .task_reserve = mpi_task_reserve,
    .task_commit = mpi_task_commit,
    .task_flush = mpi_task_flush,
    .result_peek = mpi_result_peek,
    .result_release = mpi_result_release,
    .running = mpi_running,
    .cpu = mpi_cpu,
    .init_failed = mpi_init_failed,
    .release = mpi_release,
};

static const mp__launcher mpi_launcher = {
    .start = mpi_start,
    .kill = mpi_kill,
    .ended = mpi_ended,
    .poll_ms = mpi_poll_ms,
};

static const mp__pool_backend mpi_backend = {
    .name = "mpi",
    .tp = &mpi_transport,
    .launcher = &mpi_launcher,
    .usable = usable,
    .shared_new = mpi_shared_new,
};

/* ---- rank 0: the end ----------------------------------------------------------------------- */

/* Tells every worker rank to leave its loop, and takes everything they still send until each
 * said EXITED: then their MPI_Finalize and ours can meet. A rank busy with a task answers when
 * the task is done. */
static void release_workers(void)
{
    pthread_mutex_lock(&mpi_lock);
    if (G.finalized || !G.hooked || G.rank != 0) {
        pthread_mutex_unlock(&mpi_lock);
        return;
    }
    G.finalized = 1;
    for (int r = 1; r < G.size; r++)
        send_small(r, K_EXIT, 0, 0, NULL, 0);
    int left = G.size - 1;
    char *buf = NULL;
    size_t cap = 0, len;
    int64_t t0 = now_ns();
    while (left > 0) {
        int from = -1;
        int r = try_recv(MPI_ANY_SOURCE, &buf, &cap, &len, &from);
        if (r == 1) {
            mhdr h;
            memcpy(&h, buf, sizeof h);
            if (h.kind == K_EXITED) left--;
            t0 = now_ns();
            continue;
        }
        if (r < 0) break;
        sends_reap();
        backoff(now_ns() - t0, true, 1000000);
    }
    free(buf);
    for (int i = 0; i < nsends; i++) {
        MPI_Wait(&sends[i].req, MPI_STATUS_IGNORE);
        free(sends[i].buf);
    }
    nsends = 0;
    MPI_Comm_free(&G.comm);
    pthread_mutex_unlock(&mpi_lock);
}

/* MPI_Finalize deletes MPI_COMM_SELF's attributes first: the standard's hook for libraries, so
 * the workers are released also when the program initialised MPI and finalizes it itself. */
static int self_delete(MPI_Comm comm, int key, void *val, void *extra)
{
    (void)comm;
    (void)key;
    (void)val;
    (void)extra;
    release_workers();
    return MPI_SUCCESS;
}

static void at_exit(void)
{
    if (!G.own) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    release_workers();
    MPI_Finalize();
}

/* ---- worker ranks: the watchdog ------------------------------------------------------------- */

struct wd_page {
    _Atomic uint64_t task;
    _Atomic int64_t since;
    _Atomic int64_t timeout_ns;
    _Atomic int fired;
    _Atomic int clean; /* the rank is leaving by worker_exit: its end is no news */
    uint64_t func;
    char fname[128];
    int rank;
    pid_t pid;
    char host[HOST_LEN];
};
static struct wd_page *wd;

static void wd_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wd_say(const char *fmt, ...)
{
    char b[768];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof b - 1) n = (int)sizeof b - 1;
    ssize_t k = write(2, b, (size_t)n);
    (void)k;
}

/* In the watchdog: until the rank's end of the pipe closes. */
__attribute__((noreturn)) static void wd_main(int rfd)
{
    signal(SIGTERM, SIG_IGN); /* Open MPI's teardown must not cut its last word short */
    for (;;) {
        struct pollfd pf = {rfd, POLLIN, 0};
        int r = poll(&pf, 1, 20);
        uint64_t task = atomic_load(&wd->task);
        if (r > 0) { /* EOF: the rank ended */
            if (task && !atomic_load(&wd->fired))
                wd_say("mproc: MPI worker rank %d (host %s, pid %d) died while running task %llu "
                       "(function \"%s\"); Open MPI ends the whole job when a rank is lost\n",
                       wd->rank, wd->host, (int)wd->pid, (unsigned long long)task, wd->fname);
            else if (!atomic_load(&wd->fired) && !atomic_load(&wd->clean))
                wd_say("mproc: MPI worker rank %d (host %s, pid %d) died between tasks (killed "
                       "from outside?); Open MPI ends the whole job when a rank is lost\n",
                       wd->rank, wd->host, (int)wd->pid);
            _exit(0);
        }
        int64_t tmo = atomic_load(&wd->timeout_ns);
        if (task && tmo > 0 && !atomic_load(&wd->fired) &&
            now_ns() - atomic_load(&wd->since) > tmo) {
            atomic_store(&wd->fired, 1);
            wd_say("mproc: task %llu (function \"%s\") on MPI worker rank %d (host %s, pid %d) ran "
                   "longer than the pool's task_timeout of %g s: killing the rank, which ends the "
                   "whole job (Open MPI cannot lose a rank)\n",
                   (unsigned long long)task, wd->fname, wd->rank, wd->host, (int)wd->pid,
                   (double)tmo / 1e9);
            kill(wd->pid, SIGKILL);
        }
    }
}

/* SIGTERM on a worker rank is Open MPI tearing the job down (after another rank died): the
 * watchdog must not report this rank's end as news. Then the default action. */
static void on_term(int sig)
{
    if (wd) atomic_store(&wd->clean, 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void wd_start(int rank)
{
    wd = mmap(NULL, sizeof *wd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (wd == MAP_FAILED) {
        wd = NULL;
        return;
    }
    memset(wd, 0, sizeof *wd);
    wd->rank = rank;
    wd->pid = getpid();
    gethostname(wd->host, sizeof wd->host - 1);
    int p[2];
    if (pipe(p) < 0) return;
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        setsid(); /* out of the rank's process group: its own end is the pipe */
        wd_main(p[0]);
    }
    close(p[0]);
    /* The write end stays in the rank (close-on-exec: not in programs its tasks run). */
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
}

/* ---- worker ranks: serving ------------------------------------------------------------------ */

struct outq {
    char *buf;
    size_t cap, len;
    uint32_t serial;
    int64_t first_ns;
};

static int out_flush(struct outq *o)
{
    if (o->len <= sizeof(mhdr)) return 0;
    mhdr h = {K_RESULTS, o->serial, 0, 0};
    memcpy(o->buf, &h, sizeof h);
    pthread_mutex_lock(&mpi_lock);
    /* Backpressure: rank 0 takes results as it goes; do not pile up sends without limit. */
    sends_reap();
    while (nsends >= 16) {
        MPI_Wait(&sends[0].req, MPI_STATUS_IGNORE);
        sends_reap();
    }
    int r = isend(o->buf, o->len, 0, NULL);
    pthread_mutex_unlock(&mpi_lock);
    if (r) return r;
    o->buf = NULL;
    o->cap = o->len = 0;
    return 0;
}

static int out_emit(void *ctx, const void *rec, size_t size)
{
    struct outq *o = ctx;
    if (o->buf && o->len + size > o->cap && o->len > sizeof(mhdr) && out_flush(o)) return -EIO;
    if (!o->buf || o->len + size > o->cap) {
        size_t c = o->cap ? o->cap : BATCH_MIN;
        while (c < sizeof(mhdr) + size + (o->buf ? o->len : 0))
            c *= 2;
        char *b = realloc(o->buf, c);
        if (!b) return -ENOMEM;
        if (!o->buf) o->len = sizeof(mhdr);
        o->buf = b;
        o->cap = c;
    }
    if (o->len == sizeof(mhdr)) o->first_ns = now_ns();
    memcpy(o->buf + o->len, rec, size);
    o->len += size;
    return 0;
}

static void send_now(uint32_t kind, uint32_t serial, int32_t code, const void *pl, size_t len)
{
    pthread_mutex_lock(&mpi_lock);
    send_small(0, kind, serial, code, pl, len);
    pthread_mutex_unlock(&mpi_lock);
}

/* A queue of received task batches. */
struct tbatch {
    struct tbatch *next;
    char *buf;
    size_t len, off;
};

__attribute__((noreturn)) static void worker_exit(void)
{
    if (wd) atomic_store(&wd->clean, 1);
    pthread_mutex_lock(&mpi_lock);
    for (int i = 0; i < nsends; i++) {
        MPI_Wait(&sends[i].req, MPI_STATUS_IGNORE);
        free(sends[i].buf);
    }
    nsends = 0;
    mhdr h = {K_EXITED, 0, 0, 0};
    MPI_Send(&h, sizeof h, MPI_BYTE, 0, TAG, G.comm);
    MPI_Comm_free(&G.comm);
    pthread_mutex_unlock(&mpi_lock);
    MPI_Finalize();
    exit(0);
}

/* Receives one message from rank 0; waits (polling) when `wait`. 1, or 0 when none. */
static int recv0(char **buf, size_t *cap, size_t *len, bool wait, bool spin)
{
    int64_t t0 = now_ns();
    for (;;) {
        pthread_mutex_lock(&mpi_lock);
        int r = try_recv(0, buf, cap, len, NULL);
        if (r == 0) sends_reap();
        pthread_mutex_unlock(&mpi_lock);
        if (r != 0 || !wait) return r > 0;
        backoff(now_ns() - t0, spin, 1000000);
    }
}

static void free_batches(struct tbatch **q)
{
    while (*q) {
        struct tbatch *b = *q;
        *q = b->next;
        free(b->buf);
        free(b);
    }
}

/* One pool session on this rank: from OPEN (in buf) until BYE. Returns 1 when EXIT came. */
static int session(const char *msg, size_t mlen)
{
    mhdr oh;
    open_conf oc;
    memcpy(&oh, msg, sizeof oh);
    if (mlen < sizeof oh + sizeof oc) return 0;
    memcpy(&oc, msg + sizeof oh, sizeof oc);
    uint32_t serial = oh.serial;
    mp__worker_conf conf = {
        (size_t)oc.max_message, oc.maxtasks, oc.init_func, msg + sizeof oh + sizeof oc,
        (size_t)oc.initarg_len, -1,          oc.spin != 0};
    if (wd) atomic_store(&wd->timeout_ns, oc.timeout > 0 ? (int64_t)(oc.timeout * 1e9) : 0);
    mp_task_result res = {.max = conf.max_message - MP__REC_SLACK};
    hello he;
    memset(&he, 0, sizeof he);
    he.pid = (int32_t)getpid();
    memcpy(he.host, G.host, sizeof he.host);
    if (svc->worker_init(&conf, &res) != 0) {
        he.status = res.status ? res.status : MP_ETASKFAILED;
        he.code = res.code;
        size_t n = res.msglen < sizeof he.msg - 1 ? res.msglen : sizeof he.msg - 1;
        memcpy(he.msg, res.msg, n);
    }
    free(res.buf);
    res.buf = NULL;
    res.cap = 0;
    send_now(K_HELLO, serial, 0, &he, sizeof he);
    if (he.status) return 0;

    struct tbatch *qh = NULL, *qt = NULL;
    struct outq o = {.serial = serial};
    char *scratch = NULL, *rbuf = NULL;
    size_t scratch_cap = 0, rcap = 0, rlen;
    unsigned done = 0, since_flush = 0;
    int ret = 0;
    uint64_t last_func = 0;
    for (;;) {
        /* Take in what rank 0 sent; wait for it when there is nothing to do. */
        while (recv0(&rbuf, &rcap, &rlen, qh == NULL, conf.spin)) {
            mhdr h;
            memcpy(&h, rbuf, sizeof h);
            if (h.kind == K_EXIT) {
                ret = 1;
                goto end;
            }
            if (h.serial != serial) continue; /* an earlier session's */
            if (h.kind == K_ABORT) {
                send_now(K_BYE, serial, 0, NULL, 0);
                goto end;
            }
            if (h.kind != K_TASKS) continue;
            struct tbatch *b = malloc(sizeof *b);
            if (!b) abort();
            *b = (struct tbatch){NULL, rbuf, rlen, sizeof h};
            rbuf = NULL;
            rcap = 0;
            if (qt)
                qt->next = b;
            else
                qh = b;
            qt = b;
        }
        struct tbatch *b = qh;
        const mp__trec *t = (const mp__trec *)(b->buf + b->off);
        b->off += t->size;
        if (t->type == MP__T_STOP) {
            out_flush(&o);
            send_now(K_BYE, serial, 0, NULL, 0);
            goto end;
        }
        if (wd) {
            if (t->func != last_func) {
                const struct mp_func *f = svc->func_by_id(t->func);
                snprintf(wd->fname, sizeof wd->fname, "%s", f ? mp_func_name(f) : "?");
                wd->func = last_func = t->func;
            }
            atomic_store(&wd->since, now_ns());
            atomic_store(&wd->task, t->id);
        }
        if (!svc->func_by_id(t->func)) {
            /* Registered on rank 0 only (at run time, not with MP_FUNC_REGISTER): say where. */
            char rec[1536];
            mp__rrec *rr = (mp__rrec *)rec;
            char m[1024];
            int ml = snprintf(m, sizeof m,
                              "function id %016llx is not registered on MPI rank %d (host %s): "
                              "register task functions with MP_FUNC_REGISTER at file scope so "
                              "every rank has them",
                              (unsigned long long)t->func, G.rank, G.host);
            if (ml > (int)sizeof m - 1) ml = (int)sizeof m - 1;
            for (uint32_t i = 0; i < t->count; i++) {
                size_t off = sizeof *rr;
                mp__ritem_hdr ih = {MP_ENOFUNC, 0, (uint32_t)ml};
                memcpy(rec + off, &ih, sizeof ih);
                memcpy(rec + off + sizeof ih, m, (size_t)ml);
                size_t size = MP__REC_ALIGN(off + sizeof ih + (size_t)ml);
                memset(rec + off + sizeof ih + ml, 0, size - (off + sizeof ih + (size_t)ml));
                *rr = (mp__rrec){(uint32_t)size,
                                 MP__R_RESULT,
                                 (uint16_t)(i + 1 == t->count ? MP__R_LAST : 0),
                                 i,
                                 1,
                                 t->id};
                out_emit(&o, rec, size);
            }
        } else if (svc->worker_exec(t, &conf, &res, &scratch, &scratch_cap, out_emit, &o) != 0) {
            fprintf(stderr, "mproc: MPI worker rank %d: cannot send results (out of memory)\n",
                    G.rank);
            MPI_Abort(MPI_COMM_WORLD, 71);
        }
        if (wd) atomic_store(&wd->task, 0);
        if (b->off >= b->len) {
            qh = b->next;
            if (!qh) qt = NULL;
            free(b->buf);
            free(b);
        }
        if (conf.maxtasks && ++done >= conf.maxtasks) {
            out_flush(&o);
            send_now(K_BYE, serial, 0, NULL, 0);
            goto end;
        }
        /* Send results when nothing else is queued, or a batch is big or old enough, or every
         * FLUSH_EVERY tasks: rank 0 then refills this rank's queue while it works on the rest
         * (double buffering) instead of once per pipeline's worth. */
        if (!qh || o.len >= BATCH_MIN || ++since_flush >= FLUSH_EVERY ||
            now_ns() - o.first_ns > 200000) {
            out_flush(&o);
            since_flush = 0;
        }
    }
end:
    if (wd) atomic_store(&wd->task, 0);
    free_batches(&qh);
    free(o.buf);
    free(rbuf);
    free(scratch);
    free(res.buf);
    return ret;
}

__attribute__((noreturn)) static void worker_main(void)
{
    char *buf = NULL;
    size_t cap = 0, len;
    for (;;) {
        recv0(&buf, &cap, &len, true, false);
        mhdr h;
        memcpy(&h, buf, sizeof h);
        if (h.kind == K_EXIT) break;
        if (h.kind != K_OPEN) continue; /* a finished session's leftovers */
        /* The session may reuse nothing of buf: hand it a copy. */
        char *m = malloc(len);
        if (!m) abort();
        memcpy(m, buf, len);
        int ex = session(m, len);
        free(m);
        if (ex) break;
    }
    free(buf);
    worker_exit();
}

/* ---- the entry hook ------------------------------------------------------------------------ */

static int env_rank(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return -1;
}

static int entry_hook(int *argc, char ***argv)
{
    int rank = env_rank();
    if (rank < 0) return 0; /* not launched by mpirun: nothing to do */
    if (G.hooked) return 0;
    G.launched = 1;
    int inited = 0;
    MPI_Initialized(&inited);
    /* The watchdog is forked before MPI exists in this process (Open MPI dislikes fork after). */
    if (rank != 0 && !inited) wd_start(rank);
    if (!inited) {
        int prov;
        /* Rank 0 calls MPI from the pool's supervisor and from waiting threads, never at once. */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &prov) != MPI_SUCCESS) {
            fprintf(stderr, "mproc: MPI_Init_thread failed\n");
            exit(1);
        }
        G.own = 1;
    } else if (rank != 0) {
        wd_start(rank);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &G.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &G.size);
    MPI_Comm_dup(MPI_COMM_WORLD, &G.comm);
    gethostname(G.host, sizeof G.host - 1);
    G.hooked = 1;
    if (G.rank != 0) {
        if (wd) signal(SIGTERM, on_term);
        worker_main();
    }
    G.rstate = calloc((size_t)G.size, sizeof *G.rstate);
    G.rserial = calloc((size_t)G.size, sizeof *G.rserial);
    if (!G.rstate || !G.rserial) {
        fprintf(stderr, "mproc: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int key;
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, self_delete, &key, NULL);
    MPI_Comm_set_attr(MPI_COMM_SELF, key, NULL);
    if (G.own) atexit(at_exit);
    return 0;
}

__attribute__((constructor)) static void mpi_register(void)
{
    mp__pool_mpi_register(&mpi_backend, &svc);
    mp__entry_hook_set(entry_hook);
}
