/* SPDX-License-Identifier: MIT */
/* process.c - Python's Process in C: fork a child that runs a target, join it, reap it.
 *
 * Each started object sits in a per-process registry until it is freed. The registry serves
 * active_children() and the atexit handler (daemons terminated, the rest joined, as Python's
 * util._exit_function), and lets a freshly forked child disown the objects it inherited.
 *
 * Children are watched through pidfds: signals go through pidfd_send_signal, which can never hit
 * a recycled pid, and reaping uses waitid(P_PIDFD) on our own child only. Where the kernel has no
 * pidfd the platform layer stands in with a death socket per child (see platform.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "atomics.h"
#include "mproc/error.h"
#include "mproc/process.h"
#include "platform/platform.h"
#include "handoff.h"
#include "mproc/pool.h"
#include "pool_internal.h"
#include "process_internal.h"
#include "start_internal.h"

#ifdef MP_COVERAGE
extern void __gcov_dump(void);
#endif

enum { ST_NEW, ST_RUNNING, ST_REAPED };

struct mp_process {
    char name[64];
    mp_target_fn target;
    void *arg;
    bool daemon;
    _Atomic int state; /* ST_*, as seen by the owner; atomic: a thread may signal the child
                        * while another reaps it (release: code and unknown are set first) */
    pid_t pid;         /* the child's pid once started */
    pid_t owner;       /* the process that started it: only it may join, signal or reap */
    int pidfd;         /* -1 before start and in processes that only hold a copy of the object */
    int code;          /* exit code once reaped */
    bool unknown;      /* reaped by someone else: the exit code is lost */
    struct mp_process *prev, *next; /* registry links, valid while owner == my_pid() */
    /* Named target (mp_process_new_func): the function's name and a copy of the argument. */
    const struct mp_func *func;
    void *farg;
    size_t farglen;
    mp_start_method method; /* as asked (MP_START_DEFAULT until start), then as started */
    bool via_server;        /* started by the forkserver: pidfd is its status socket */
    int npass;
    struct mp__pass {
        int kind;
        void *obj;
    } pass[MP_PROCESS_PASS_MAX];
};

/* The objects this process was given (mp_process_passed): its own object's table under fork, an
 * imported table under spawn and forkserver. */
static const struct mp__pass *child_pass;
static int child_npass;

static inline int st_get(const struct mp_process *p)
{
    return mp__load_acq(&p->state);
}

static inline void st_set(struct mp_process *p, int st)
{
    mp__store_rel(&p->state, st);
}

/* ---- registry -------------------------------------------------------------------------------- */

static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;
static _Atomic int name_counter;
static struct mp_process main_process = {.name = "MainProcess", .state = ST_RUNNING, .pidfd = -1};

/* Everything a new child writes before its target runs lives here, in one place: after fork
 * every page either side writes costs a copy-on-write fault, so the child should dirty as few
 * as possible (it never writes to its process object, for the same reason). */
static struct {
    pthread_mutex_t lock;       /* guards head and the links of the objects in the list */
    struct mp_process *head;    /* started, not yet freed objects owned by this process */
    struct mp_process *current; /* the object of the calling process */
    pid_t parent_pid;           /* 0 unless started by mproc */
    bool parent_ready;          /* parent's handle looked for (mp_process_parent), under lock */
    char parent_name[64];       /* the parent's name at fork (copied: the child may free its copy
                                 * of the parent's object) */
    bool parent_not_ppid;       /* started by the forkserver: getppid() is the server, not the
                                 * parent; the parent is watched by pid and start time */
    uint64_t parent_start;
} G = {PTHREAD_MUTEX_INITIALIZER, NULL, &main_process, 0, false, "", false, 0};

/* The parent as an object (mp_process_parent), in a process mproc forked: filled at its first
 * use from G. Its pidfd is a pidfd on the parent (-1 without one: waits poll getppid()). */
static struct mp_process parent_process = {.state = ST_RUNNING, .pidfd = -1};

/* Not cached: a child made by a plain fork() outside mproc must see its own pid too, and one
 * getpid() is a fraction of a percent of a start. */
static inline pid_t my_pid(void)
{
    return getpid();
}

/* The calling process's own object: never joined, signalled or freed. */
static inline bool is_self(const mp_process *p)
{
    return p == G.current;
}

static void reg_insert(struct mp_process *p)
{
    pthread_mutex_lock(&G.lock);
    p->prev = NULL;
    p->next = G.head;
    if (G.head) G.head->prev = p;
    G.head = p;
    pthread_mutex_unlock(&G.lock);
}

static void reg_remove(struct mp_process *p)
{
    pthread_mutex_lock(&G.lock);
    if (p->prev)
        p->prev->next = p->next;
    else if (G.head == p)
        G.head = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    pthread_mutex_unlock(&G.lock);
}

/* In a new child: the objects in the registry belong to the parent. Forget them, without
 * writing to the objects (copy-on-write faults); their owner field tells every call that they
 * are not ours. Their pidfds are internal fds, which mp__fork has closed already (also those of
 * objects another thread was starting, not yet in the list). Runs single-threaded after fork with
 * the lock taken by the forking thread before fork, so the list is consistent. */
static void reg_disown_after_fork(void)
{
    G.head = NULL;
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    memcpy(&G.lock, &fresh, sizeof fresh);
}

/* ---- exit hooks ------------------------------------------------------------------------------ */

static _Atomic(mp__exit_hook_fn) exit_hooks[MP__EXIT_HOOKS_MAX];
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void run_exit_hooks(void)
{
    for (int i = MP__EXIT_HOOKS_MAX - 1; i >= 0; i--) {
        mp__exit_hook_fn fn = mp__load_acq(&exit_hooks[i]);
        if (fn) fn();
    }
}

static void register_hooks_atexit(void)
{
    atexit(run_exit_hooks);
}

int mp__exit_hook_add(mp__exit_hook_fn fn)
{
    if (!fn) return -EINVAL;
    pthread_once(&hooks_once, register_hooks_atexit);
    for (int i = 0; i < MP__EXIT_HOOKS_MAX; i++) {
        mp__exit_hook_fn cur = mp__load_acq(&exit_hooks[i]);
        if (cur == fn) return 0;
        if (!cur) {
            mp__exit_hook_fn none = NULL;
            if (mp__cas(&exit_hooks[i], &none, fn)) return 0;
            if (none == fn) return 0; /* another thread added the same hook here */
        }
    }
    return -ENOSPC;
}

/* ---- fork discipline ------------------------------------------------------------------------- */

static void exit_handler(void);

/* Flushes stream when it holds output, with SIGPIPE blocked: a reader that went away must not
 * turn a child that succeeded into a death by signal (the pending SIGPIPE dies with us). */
static bool flush_pending(FILE *stream)
{
    if (!__fpending(stream)) return true;
    return fflush(stream) == 0;
}

void mp__child_exit(int code)
{
    /* As Python's process bootstrap (util._exit_function): terminate our daemon children, join
     * the others. Without this they would die of PR_SET_PDEATHSIG as soon as we exit. */
    if (G.head)
        exit_handler();
    else
        mp_forkserver_stop(); /* a forkserver this child started (exit_handler does it too) */
    /* What other modules registered (shared.c: named blocks this child created must not outlive
     * it; it unlinks only the calling process's own blocks, so the parent's stay). */
    run_exit_hooks();
    /* stdout and stderr only, and only when they hold output, as Python's child does: every
     * stream was flushed before fork, and fflush(NULL) would lock (dirty) every FILE of the
     * process, which costs a child that printed nothing ~4% of a fork. A flush that fails
     * (EPIPE: nobody reads the pipe; ENOSPC, EIO) makes the exit code 1, as CPython's child,
     * whose flush raises out of its bootstrap, reports. */
    if (__fpending(stdout) || __fpending(stderr)) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
        bool ok = flush_pending(stdout);
        if (!flush_pending(stderr)) ok = false;
        if (!ok) code = 1;
    }
#ifdef MP_COVERAGE
    __gcov_dump();
#endif
    /* _exit() itself, minus the lazy binding of _exit that every child would otherwise pay on its
     * first and only call (a symbol lookup, ~3% of a fork here); syscall() is bound already. */
    for (;;)
        syscall(SYS_exit_group, code);
}

/* Resets the handlers of the standard signals (1..31); see process_internal.h for why the
 * real-time ones are left alone. Runs with every signal blocked, so no handler can run between
 * fork and here. */
static void reset_signals_in_child(void)
{
    for (int sig = 1; sig < 32; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction old;
        if (sigaction(sig, NULL, &old) < 0) continue;
        if (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN) continue;
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

/* Binds, in the parent, the library functions a new child calls first. With lazy binding each
 * child would otherwise resolve them itself on every start: a symbol lookup plus a
 * copy-on-write fault on the GOT, per function, per child. */
static void bind_child_calls(void)
{
    struct sigaction sa;
    sigaction(SIGCHLD, NULL, &sa);
    sigset_t set;
    sigemptyset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int sig;
    prctl(PR_GET_PDEATHSIG, &sig);
    (void)getppid();
    (void)__fpending(stdout);
    (void)syscall(SYS_getpid);
    mp__stdio_bind();
}

pid_t mp__fork(unsigned flags)
{
    return mp__fork_keep(flags, NULL, 0);
}

pid_t mp__fork_keep(unsigned flags, const int *keep, int nkeep)
{
    if (nkeep < 0 || nkeep > MP__FORK_KEEP_MAX || (nkeep > 0 && !keep)) return -EINVAL;
    static pthread_once_t bound = PTHREAD_ONCE_INIT;
    pthread_once(&bound, bind_child_calls);
    mp__fork_warn();
    int death[2] = {-1, -1};
    if (!(flags & (MP__FORK_DETACHED | MP__FORK_UNWATCHED))) {
        int r = mp__death_open(death); /* the pidfd-less fallback's handle; nothing otherwise */
        if (r < 0) return r;
    }
    sigset_t all, old;
    sigfillset(&all);
    fflush(NULL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t self = my_pid();
    /* Holding the registry lock across fork keeps the child's copy of the list consistent. */
    pthread_mutex_lock(&G.lock);
    pid_t pid = fork();
    if (pid == 0) {
        /* Bytes another thread buffered after our fflush are the parent's to write. */
        mp__stdio_purge();
        /* mproc's own fds (pidfds, death sockets, signalfds, pools' fds) are not the child's. */
        int kept[MP__FORK_KEEP_MAX + 1];
        int nk = 0;
        for (int i = 0; i < nkeep; i++)
            kept[nk++] = keep[i];
        if (death[1] >= 0) kept[nk++] = death[1];
        mp__death_child(death);
        mp__fd_close_internal(kept, nk);
        reg_disown_after_fork();
        memcpy(G.parent_name, G.current->name, sizeof G.parent_name);
        G.current = &main_process;
        G.parent_pid = self;
        G.parent_ready = false; /* the parent's own parent handle was internal: closed above */
        G.parent_not_ppid = false;
        if (!(flags & MP__FORK_DETACHED)) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            /* The parent died before prctl took effect: die as PDEATHSIG would have made us. */
            if (getppid() != self) raise(SIGKILL);
        }
        if (flags & MP__FORK_SIGNALS_CLEAN) {
            sigset_t none;
            sigemptyset(&none);
            pthread_sigmask(SIG_SETMASK, &none, NULL);
        } else {
            reset_signals_in_child();
        }
        return 0;
    }
    int err = errno;
    pthread_mutex_unlock(&G.lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    mp__death_parent(pid, death);
    return pid < 0 ? -err : pid;
}

int mp__reap_pidfd(int pidfd, const mp__deadline *dl, int *code)
{
    siginfo_t si;
    int r = mp__pidfd_reap(pidfd, dl, &si);
    if (r == 1) *code = mp__exitcode_from_siginfo(&si);
    return r;
}

/* ---- process objects ------------------------------------------------------------------------- */

int mp_process_new(mp_process **out, const char *name, mp_target_fn target, void *arg)
{
    if (!out || !target) return -EINVAL;
    struct mp_process *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    if (name)
        snprintf(p->name, sizeof p->name, "%s", name);
    else
        snprintf(p->name, sizeof p->name, "Process-%d", mp__fetch_add(&name_counter, 1) + 1);
    p->target = target;
    p->arg = arg;
    p->pidfd = -1;
    /* As Python (the creator's daemon flag): a daemon's own children are daemons by default. */
    p->daemon = G.current->daemon;
    *out = p;
    return 0;
}

int mp_process_set_daemon(mp_process *p, bool daemon)
{
    if (!p) return -EINVAL;
    if (st_get(p) != ST_NEW) return MP_ESTARTED;
    p->daemon = daemon;
    return 0;
}

int mp_process_is_daemon(const mp_process *p)
{
    if (!p) return -EINVAL;
    return p->daemon ? 1 : 0;
}

static void register_exit_handler(void)
{
    atexit(exit_handler);
}

static int start_launched(mp_process *p, mp_start_method m);
__attribute__((noreturn)) static void run_named_and_exit(const struct mp_func *f, const void *arg,
                                                         size_t len, const char *name);

int mp_process_start(mp_process *p)
{
    if (!p) return -EINVAL;
    if (is_self(p)) return MP_ESELF;
    if (st_get(p) != ST_NEW) return MP_ESTARTED;
    pthread_once(&atexit_once, register_exit_handler);
    mp_start_method m = mp__start_method_resolve(p->method);
    if (m != MP_START_FORK) return start_launched(p, m);
    p->method = MP_START_FORK;
    /* Written before fork, so neither side takes a copy-on-write fault for them. */
    p->owner = my_pid();
    st_set(p, ST_RUNNING);
    pid_t pid = mp__fork(0);
    if (pid < 0) {
        p->owner = 0;
        st_set(p, ST_NEW);
        return pid;
    }
    if (pid == 0) {
        G.current = p;
        child_pass = p->pass;
        child_npass = p->npass;
        if (p->func) run_named_and_exit(p->func, p->farg, p->farglen, p->name);
        mp__child_exit(p->target(p->arg) & 0xff);
    }
    int fd = mp__pidfd_open(pid);
    if (fd >= 0 && !mp__pidfd_is_child(fd)) {
        /* The child ended and someone else reaped it before our pidfd_open (SIGCHLD set to
         * SIG_IGN, a waitpid(-1) in another thread): the pid may name a stranger by now. */
        mp__pidfd_close(fd);
        fd = -ESRCH;
    }
    if (fd == -ESRCH) {
        /* Started and ended, exit code unknown (as join would find it): a sentinel that is
         * readable at once, and no pid to signal or reap ever again. */
        fd = mp__dead_handle();
        if (fd >= 0) {
            p->pid = pid;
            p->pidfd = fd;
            st_set(p, ST_REAPED);
            p->unknown = true;
            reg_insert(p);
            return 0;
        }
    }
    if (fd < 0) {
        /* Without a handle we could neither wait nor signal safely: undo the start. The pid is
         * still ours and unreaped, so kill() cannot hit a recycled pid here. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        p->owner = 0;
        st_set(p, ST_NEW);
        return fd;
    }
    p->pid = pid;
    p->pidfd = fd;
    reg_insert(p);
    return 0;
}

/* The parent as an object (defined with mp_process_parent below). */
static bool is_parent(const mp_process *p);
static int parent_wait(const mp__deadline *dl);
static int parent_is_alive(void);

/* Common checks for calls that act on a child: 0 when p is our started child. */
static int check_child(const mp_process *p)
{
    if (!p) return -EINVAL;
    if (is_self(p)) return MP_ESELF;
    if (st_get(p) == ST_NEW) return MP_ENOTSTARTED;
    if (p->owner != my_pid()) return MP_ECHILD;
    return 0;
}

/* Reaps p if it ended, waiting until dl (NULL: not at all). Returns 1 once reaped, 0 while it
 * runs, or a negative error. */
static int reap(mp_process *p, const mp__deadline *dl)
{
    if (st_get(p) == ST_REAPED) return 1;
    int code = 0;
    int r;
    if (p->via_server) {
        mp__launched l = {p->pid, p->pidfd, true};
        r = mp__launched_reap(&l, dl, &code);
        if (r == -ENODATA) r = -ECHILD; /* the server died first: the status is lost */
    } else {
        r = mp__reap_pidfd(p->pidfd, dl, &code);
    }
    if (r == -ECHILD) { /* someone else reaped it (SIGCHLD ignored, waitpid(-1), ...) */
        p->unknown = true;
        r = 1;
    }
    if (r == 1) {
        p->code = code;
        st_set(p, ST_REAPED);
    }
    return r;
}

int mp_process_join(mp_process *p, double timeout)
{
    if (p && is_parent(p)) {
        mp__deadline pdl = mp__deadline_in(timeout);
        int pr = parent_wait(&pdl);
        return pr < 0 ? pr : pr ? 0 : -ETIMEDOUT;
    }
    int r = check_child(p);
    if (r) return r;
    mp__deadline dl = mp__deadline_in(timeout);
    r = reap(p, &dl);
    if (r < 0) return r;
    return r == 1 ? 0 : -ETIMEDOUT;
}

int mp_process_is_alive(const mp_process *cp)
{
    if (!cp) return -EINVAL;
    if (is_self(cp)) return 1;
    if (is_parent(cp)) return parent_is_alive();
    /* A query for the caller; reaping an ended child is bookkeeping inside the object (which is
     * never const: every object is allocated by mp_process_new or is one of our statics). */
    mp_process *p = (mp_process *)cp;
    if (st_get(p) == ST_NEW) return 0;
    if (p->owner != my_pid()) return MP_ECHILD;
    int r = reap(p, NULL);
    if (r < 0) return r;
    return r == 0;
}

pid_t mp_process_pid(const mp_process *p)
{
    if (!p) return -EINVAL;
    if (is_self(p)) return my_pid();
    return p->pid;
}

const char *mp_process_name(const mp_process *p)
{
    return p ? p->name : "";
}

int mp_process_exitcode(const mp_process *cp, int *code)
{
    if (!cp || !code) return -EINVAL;
    if (is_self(cp)) return -EBUSY; /* we are running, by definition */
    int r = check_child(cp);
    if (r) return r;
    mp_process *p = (mp_process *)cp; /* reaping is bookkeeping, as in is_alive */
    r = reap(p, NULL);
    if (r < 0) return r;
    if (r == 0) return -EBUSY;
    /* Its own code, apart from MP_ECHILD ("not our child"): ours, ended, but the status is lost. */
    if (p->unknown) return -ENODATA;
    *code = p->code;
    return 0;
}

int mp_process_signal(mp_process *p, int sig)
{
    if (sig < 0 || sig >= NSIG) return -EINVAL;
    int r = check_child(p);
    if (r) return r;
    if (st_get(p) == ST_REAPED) return MP_EREAPED;
    if (p->via_server) {
        mp__launched l = {p->pid, p->pidfd, true};
        r = mp__launched_signal(&l, sig);
    } else {
        r = mp__pidfd_send_signal(p->pidfd, sig);
    }
    return r == -ESRCH ? 0 : r; /* ended, not yet reaped: nothing to do, as Python */
}

int mp_process_terminate(mp_process *p)
{
    return mp_process_signal(p, SIGTERM);
}

int mp_process_kill(mp_process *p)
{
    return mp_process_signal(p, SIGKILL);
}

int mp_process_sentinel(const mp_process *p)
{
    if (p && is_parent(p)) return p->pidfd >= 0 ? p->pidfd : MP_ENOTSUP;
    int r = check_child(p);
    if (r) return r;
    return p->pidfd;
}

int mp_process_free(mp_process **pp)
{
    if (!pp || !*pp) return 0;
    mp_process *p = *pp;
    if (is_self(p)) return MP_ESELF;
    if (p == &main_process) return MP_ECHILD;   /* the parent's, seen from a child */
    if (p == &parent_process) return MP_ECHILD; /* borrowed from mp_process_parent */
    if (st_get(p) != ST_NEW) {
        if (p->owner == my_pid()) {
            int r = reap(p, NULL);
            if (r == 0) return -EBUSY;
            reg_remove(p);
            mp__launched l = {p->pid, p->pidfd, p->via_server};
            mp__launched_close(&l);
        }
        /* Else a copy inherited from the parent. In a child started by mproc, mp__fork closed
         * its pidfd already (the number may name another file by now), so only the memory is
         * ours to release. (A child made by a plain fork() keeps that pidfd open until it
         * exits or execs: mproc cannot tell the two apart safely.) */
    }
    free(p->farg);
    free(p);
    *pp = NULL;
    return 0;
}

/* ---- named targets, start methods, objects for the child ----------------------------------------
 */

/* Runs a registered function as a process target and ends the process (mproc/process.h gives
 * the exit codes: 0, the function's 1..255, mp_task_fail's code, or 1 with the message on
 * stderr, as an uncaught exception ends a Python child). */
__attribute__((noreturn)) static void run_named_and_exit(const struct mp_func *f, const void *arg,
                                                         size_t len, const char *name)
{
    mp_task_result res;
    memset(&res, 0, sizeof res);
    res.max = MP_PROCESS_ARG_MAX;
    int r = mp__func_fn(f)(arg, len, &res);
    free(res.buf);
    int code = 0;
    if (res.status == MP_ETASKFAILED) {
        fprintf(stderr, "mproc: %s: %s\n", name, res.msg);
        code = res.code > 0 && res.code < 256 ? res.code : 1;
    } else if (r != 0) {
        code = r > 0 && r < 256 ? r : 1;
    }
    mp__child_exit(code);
}

int mp_process_new_func(mp_process **out, const char *name, const char *func, const void *arg,
                        size_t len)
{
    if (!out || !func || (!arg && len > 0)) return -EINVAL;
    if (len > MP_PROCESS_ARG_MAX) {
        mp__pool_set_error("argument of %zu bytes is larger than MP_PROCESS_ARG_MAX (%u)", len,
                           MP_PROCESS_ARG_MAX);
        return MP_ETOOBIG;
    }
    mp_func *f;
    int r = mp_func_find(func, &f);
    if (r < 0) return r; /* MP_ENOFUNC, with mp_last_error naming it */
    void *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) return -ENOMEM;
        memcpy(copy, arg, len);
    }
    mp_process *p;
    r = mp_process_new(&p, name, (mp_target_fn)(void (*)(void))run_named_and_exit, NULL);
    if (r < 0) {
        free(copy);
        return r;
    }
    p->func = f;
    p->farg = copy;
    p->farglen = len;
    *out = p;
    return 0;
}

int mp_process_set_start_method(mp_process *p, mp_start_method method)
{
    if (!p) return -EINVAL;
    if (method != MP_START_DEFAULT && method != MP_START_FORK && method != MP_START_SPAWN &&
        method != MP_START_FORKSERVER)
        return -EINVAL;
    if (st_get(p) != ST_NEW) return MP_ESTARTED;
    p->method = method;
    return 0;
}

mp_start_method mp_process_start_method(const mp_process *p)
{
    if (!p) return (mp_start_method)-EINVAL;
    return p->method;
}

int mp_process_pass(mp_process *p, mp_kind kind, void *obj)
{
    if (!p || !obj || kind < MP_KIND_QUEUE || kind > MP_KIND_SHM) return -EINVAL;
    if (is_self(p) || st_get(p) != ST_NEW) return MP_ESTARTED;
    if (p->npass >= MP_PROCESS_PASS_MAX) return -ENOSPC;
    p->pass[p->npass] = (struct mp__pass){kind, obj};
    return p->npass++;
}

int mp_process_passed(int index, mp_kind kind, void *out)
{
    if (!out) return -EINVAL;
    if (index < 0 || index >= child_npass) return -ENOENT;
    if (child_pass[index].kind != (int)kind) return MP_ETYPE;
    memcpy(out, &child_pass[index].obj, sizeof(void *));
    return 0;
}

/* The payload of a Process launched under spawn or forkserver:
 *   u32 magic, u32 function name length, u32 objects, u32 0, u64 argument length,
 *   the function's name, per object {i32 kind, i32 nfds, u32 len, data[len]}, the argument.
 * The objects' fds travel with the request, in order. */
#define PAYLOAD_MAGIC 0x4d505045u

struct payload_hdr {
    uint32_t magic, namelen, nobj, pad;
    uint64_t arglen;
};
struct obj_hdr {
    int32_t kind, nfds;
    uint32_t len;
};

static int start_launched(mp_process *p, mp_start_method m)
{
    if (!p->func) {
        mp__pool_set_error("%s: a %s child cannot run a function pointer; name the target "
                           "(mp_process_new_func with a registered function)",
                           p->name, mp_start_method_name(m));
        return MP_ENOTSUP;
    }
    mp__handoff *h = calloc((size_t)(p->npass ? p->npass : 1), sizeof *h);
    if (!h) return -ENOMEM;
    int r = 0, nexp = 0;
    size_t objbytes = 0;
    int nfds = 0;
    for (; nexp < p->npass; nexp++) {
        const char *why = "";
        r = mp__handoff_export(p->pass[nexp].kind, p->pass[nexp].obj, &h[nexp], &why);
        if (r < 0) {
            mp__pool_set_error("%s: object %d (%s) cannot be passed to a %s child: %s", p->name,
                               nexp, mp_kind_name((mp_kind)p->pass[nexp].kind),
                               mp_start_method_name(m), why ? why : mp_strerror(r));
            break;
        }
        objbytes += sizeof(struct obj_hdr) + h[nexp].len;
        nfds += h[nexp].nfds;
    }
    const char *fname = mp_func_name(p->func);
    size_t namelen = strlen(fname);
    size_t total = sizeof(struct payload_hdr) + namelen + objbytes + p->farglen;
    char *buf = r < 0 ? NULL : malloc(total);
    int *fds = r < 0 ? NULL : malloc((size_t)(nfds ? nfds : 1) * sizeof *fds);
    if (r == 0 && (!buf || !fds)) r = -ENOMEM;
    if (r == 0 && nfds > MP__LAUNCH_FDS_MAX) r = MP_ETOOBIG;
    if (r == 0) {
        struct payload_hdr ph = {PAYLOAD_MAGIC, (uint32_t)namelen, (uint32_t)p->npass, 0,
                                 p->farglen};
        char *w = buf;
        memcpy(w, &ph, sizeof ph);
        w += sizeof ph;
        memcpy(w, fname, namelen);
        w += namelen;
        int k = 0;
        for (int i = 0; i < p->npass; i++) {
            struct obj_hdr oh = {h[i].kind, h[i].nfds, h[i].len};
            memcpy(w, &oh, sizeof oh);
            w += sizeof oh;
            memcpy(w, h[i].data, h[i].len);
            w += h[i].len;
            for (int j = 0; j < h[i].nfds; j++)
                fds[k++] = h[i].fds[j];
        }
        if (p->farglen) memcpy(w, p->farg, p->farglen);
        p->owner = my_pid();
        st_set(p, ST_RUNNING);
        mp__launch_req req = {.method = m,
                              .entry = MP__ENTRY_PROCESS,
                              .name = p->name,
                              .daemon = p->daemon,
                              .payload = buf,
                              .len = total,
                              .fds = fds,
                              .nfds = nfds};
        mp__launched l;
        r = mp__launch(&req, &l);
        if (r < 0) {
            p->owner = 0;
            st_set(p, ST_NEW);
        } else {
            p->pid = l.pid;
            p->pidfd = l.handle;
            p->via_server = l.via_server;
            p->method = m;
            reg_insert(p);
        }
    }
    for (int i = 0; i < nexp; i++)
        mp__handoff_close(&h[i]);
    free(h);
    free(buf);
    free(fds);
    return r;
}

/* The boot of a child launched by spawn/forkserver (launch.c) gives it its identity. */
static struct mp_process launched_self = {.state = ST_RUNNING, .pidfd = -1};

void mp__process_child_setup(const char *name, bool daemon, pid_t parent_pid)
{
    snprintf(launched_self.name, sizeof launched_self.name, "%s", name);
    launched_self.daemon = daemon;
    G.current = &launched_self;
    G.parent_pid = parent_pid;
    G.parent_ready = false;
    snprintf(G.parent_name, sizeof G.parent_name, "%s", "MainProcess");
    G.parent_not_ppid = getppid() != parent_pid; /* forkserver: our parent is the server */
    G.parent_start = 0; /* read at the first mp_process_parent(), not in every start */
}

__attribute__((noreturn)) static void entry_fail(const char *what)
{
    fprintf(stderr, "mproc: %s: %s\n", launched_self.name, what);
    mp__child_exit(70);
}

void mp__process_entry(const void *payload, size_t len, int *fds, int nfds)
{
    struct payload_hdr ph;
    if (len < sizeof ph) entry_fail("truncated request");
    memcpy(&ph, payload, sizeof ph);
    const char *r = (const char *)payload + sizeof ph;
    const char *end = (const char *)payload + len;
    if (ph.magic != PAYLOAD_MAGIC || ph.namelen > 127 || ph.nobj > MP_PROCESS_PASS_MAX ||
        (size_t)(end - r) < ph.namelen)
        entry_fail("malformed request");
    char name[128];
    memcpy(name, r, ph.namelen);
    name[ph.namelen] = '\0';
    r += ph.namelen;
    static struct mp__pass imported[MP_PROCESS_PASS_MAX];
    int k = 0;
    for (uint32_t i = 0; i < ph.nobj; i++) {
        struct obj_hdr oh;
        if ((size_t)(end - r) < sizeof oh) entry_fail("malformed request");
        memcpy(&oh, r, sizeof oh);
        r += sizeof oh;
        if (oh.len > MP__HANDOFF_DATA || (size_t)(end - r) < oh.len || oh.nfds < 0 ||
            oh.nfds > MP__HANDOFF_FDS || k + oh.nfds > nfds)
            entry_fail("malformed request");
        mp__handoff h = {.kind = oh.kind, .nfds = oh.nfds, .len = oh.len};
        memcpy(h.data, r, oh.len);
        r += oh.len;
        for (int j = 0; j < oh.nfds; j++)
            h.fds[j] = fds[k++];
        void *obj = NULL;
        int e = mp__handoff_import(&h, &obj);
        if (e < 0) {
            fprintf(stderr, "mproc: %s: object %u (%s) could not be rebuilt: %s\n",
                    launched_self.name, i, mp_kind_name((mp_kind)oh.kind), mp_strerror(e));
            mp__child_exit(70);
        }
        imported[i] = (struct mp__pass){oh.kind, obj};
    }
    for (; k < nfds; k++)
        close(fds[k]);
    if ((size_t)(end - r) != ph.arglen) entry_fail("malformed request");
    child_pass = imported;
    child_npass = (int)ph.nobj;
    mp_func *f;
    if (mp_func_find(name, &f) < 0) {
        fprintf(stderr,
                "mproc: %s: function \"%s\" is not registered in this program image (register it "
                "with MP_FUNC_REGISTER at file scope, not at run time)\n",
                launched_self.name, name);
        mp__child_exit(70);
    }
    run_named_and_exit(f, r, ph.arglen, launched_self.name);
}

/* ---- "subclassing" --------------------------------------------------------------------------- */

static int base_trampoline(void *arg)
{
    mp_process_base *self = arg;
    return self->run(self);
}

int mp_process_base_init(mp_process_base *self, const char *name, mp_run_fn run)
{
    if (!self || !run) return -EINVAL;
    self->run = run;
    self->proc = NULL;
    return mp_process_new(&self->proc, name, base_trampoline, self);
}

int mp_process_base_free(mp_process_base *self)
{
    if (!self) return -EINVAL;
    return mp_process_free(&self->proc);
}

/* ---- the calling process and its children ---------------------------------------------------- */

mp_process *mp_process_current(void)
{
    mp_process *me = G.current;
    if (me == &main_process) me->pid = my_pid(); /* kept for children that hold the pointer */
    return me;
}

pid_t mp_process_parent_pid(void)
{
    return G.parent_pid;
}

/* The handle is looked for lazily, not at fork: a system call in every child would cost every
 * start, and the check in mp__parent_pidfd_open makes a late open as safe as an early one. */
mp_process *mp_process_parent(void)
{
    if (!G.parent_pid) return NULL;
    pthread_mutex_lock(&G.lock);
    if (!G.parent_ready) {
        struct mp_process *pp = &parent_process;
        memcpy(pp->name, G.parent_name, sizeof pp->name);
        pp->pid = G.parent_pid;
        pp->owner = 0; /* not our child: every call that would reap or signal it says MP_ECHILD */
        st_set(pp, ST_RUNNING);
        /* The parent outlives us (the forkserver kills its children when the program is
         * gone), so its start time read now still names it. */
        if (G.parent_not_ppid) G.parent_start = mp__pid_start_time(G.parent_pid);
        int fd = G.parent_not_ppid ? -ENOSYS : mp__parent_pidfd_open(G.parent_pid);
        if (fd == -ESRCH) fd = mp__dead_handle(); /* already ended: a sentinel readable at once */
        pp->pidfd = fd >= 0 ? fd : -1; /* else (no pidfds, no fd left): waits poll getppid() */
        G.parent_ready = true;
    }
    pthread_mutex_unlock(&G.lock);
    return &parent_process;
}

static bool is_parent(const mp_process *p)
{
    return p == &parent_process && G.parent_ready;
}

/* The parent has ended once we were reparented (getppid() changes at its exit, before anyone
 * reaps it, so a recycled pid cannot fool this either). */
static bool parent_gone_by_ppid(void)
{
    /* A forkserver's child: the pid and its start time tell the parent from a later process. */
    if (G.parent_not_ppid) return mp__pid_gone(parent_process.pid, G.parent_start);
    return getppid() != parent_process.pid;
}

/* Waits until the parent ends or dl passes: 1 ended, 0 not yet, or -errno. */
static int parent_wait(const mp__deadline *dl)
{
    if (parent_process.pidfd >= 0) {
        int r = mp__poll_one(parent_process.pidfd, POLLIN, dl);
        return r < 0 ? r : r > 0;
    }
    for (;;) { /* no handle: look again every slice */
        if (parent_gone_by_ppid()) return 1;
        int64_t left = mp__deadline_left_ns(dl);
        if (left == 0) return 0;
        if (left > MP__WAIT_SLICE_NS) left = MP__WAIT_SLICE_NS;
        struct timespec ts = {0, (long)left};
        nanosleep(&ts, NULL); /* EINTR: the loop re-checks against the same deadline */
    }
}

static int parent_is_alive(void)
{
    mp__deadline now = mp__deadline_in(0);
    int r = parent_wait(&now);
    return r < 0 ? r : !r;
}

int mp_process_active_children(mp_process **out, int max)
{
    if (max < 0 || (!out && max > 0)) return -EINVAL;
    int n = 0;
    pthread_mutex_lock(&G.lock);
    for (struct mp_process *p = G.head; p; p = p->next) {
        if (reap(p, NULL) != 0) continue;
        if (n < max) out[n] = p;
        n++;
    }
    pthread_mutex_unlock(&G.lock);
    return n;
}

int mp_cpu_count(void)
{
    return mp__cpu_count();
}

/* At normal exit, as Python: terminate daemon children, then join everything. A daemon that
 * ignores SIGTERM gets SIGKILL after 1 s; non-daemon children are waited for without limit. */
static void exit_handler(void)
{
    pid_t me = my_pid();
    pthread_mutex_lock(&G.lock);
    for (struct mp_process *p = G.head; p; p = p->next)
        if (p->owner == me && p->daemon && reap(p, NULL) == 0) mp_process_terminate(p);
    mp__deadline grace = mp__deadline_in(1.0);
    for (struct mp_process *p = G.head; p; p = p->next) {
        if (p->owner != me || !p->daemon) continue;
        if (reap(p, &grace) == 0) {
            mp_process_kill(p);
            mp__deadline forever = mp__deadline_in(MP_FOREVER);
            reap(p, &forever);
        }
    }
    mp__deadline forever = mp__deadline_in(MP_FOREVER);
    for (struct mp_process *p = G.head; p; p = p->next)
        if (p->owner == me && !p->daemon) reap(p, &forever);
    pthread_mutex_unlock(&G.lock);
    /* Our children are joined: the forkserver has nothing left to do. Stopped and reaped here,
     * not left to notice our exit, so no zombie of it outlives us for a moment. */
    mp_forkserver_stop();
}

void mp__process_exit_register(void)
{
    pthread_once(&atexit_once, register_exit_handler);
}

/* ---- the second-level child ------------------------------------------------------------------ */

int mp_process_run_detached(mp_target_fn target, void *arg, pid_t *pid_out)
{
    if (!target) return -EINVAL;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    /* Internal: a process another thread forks meanwhile must not hold the write end (our read
     * would then wait for that process too). The grandchild's mp__fork closes it in turn. */
    mp__fd_internal_add(fds[0]);
    mp__fd_internal_add(fds[1]);
    pid_t child = mp__fork_keep(MP__FORK_UNWATCHED, &fds[1], 1); /* reaped below by its pid */
    if (child < 0) {
        mp__fd_internal_del(fds[0]);
        mp__fd_internal_del(fds[1]);
        close(fds[0]);
        close(fds[1]);
        return child;
    }
    if (child == 0) {
        pid_t grandchild = mp__fork(MP__FORK_DETACHED);
        if (grandchild == 0) mp__child_exit(target(arg) & 0xff);
        int32_t v = (int32_t)grandchild; /* the pid, or -errno */
        mp__child_exit(mp__write_full(fds[1], &v, sizeof v) == 0 ? 0 : 1);
    }
    mp__fd_internal_del(fds[1]);
    close(fds[1]);
    int32_t v = 0;
    ssize_t n = mp__read_full(fds[0], &v, sizeof v);
    mp__fd_internal_del(fds[0]);
    close(fds[0]);
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof v) return n < 0 ? (int)n : -EPIPE;
    if (v < 0) return v;
    if (pid_out) *pid_out = v;
    return 0;
}
