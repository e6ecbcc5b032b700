/* SPDX-License-Identifier: MIT */
/* signals.c - signal names and default actions, sending, handlers, alarm, pause and synchronous
 * waits (sigtimedwait, with a signalfd for pollers).
 *
 * Everything a handler may call (see mproc/signals.h) is written to stay async-signal-safe:
 * constant tables, no locale (our own ASCII case folding), no allocation, and errno preserved
 * across the system calls, so a handler that calls mp_signal_send() does not clobber the errno of
 * the code it interrupted. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/signals.h"
#include "platform/platform.h"

/* ---- tables ------------------------------------------------------------------------------- */

struct sig_entry {
    const char *name; /* canonical, with the SIG prefix */
    mp_signal_action action;
    const char *desc;
};

#define T MP_SIGNAL_TERMINATE
#define C MP_SIGNAL_CORE
#define S MP_SIGNAL_STOP
#define K MP_SIGNAL_CONTINUE
#define I MP_SIGNAL_IGNORE

/* Indexed by number through the <signal.h> constants, so the table is right on any architecture
 * whose numbers differ; a hole (name NULL) is not a valid signal. */
static const struct sig_entry std_sigs[32] = {
    [SIGHUP] = {"SIGHUP", T, "Hangup"},
    [SIGINT] = {"SIGINT", T, "Interrupt"},
    [SIGQUIT] = {"SIGQUIT", C, "Quit"},
    [SIGILL] = {"SIGILL", C, "Illegal instruction"},
    [SIGTRAP] = {"SIGTRAP", C, "Trace/breakpoint trap"},
    [SIGABRT] = {"SIGABRT", C, "Aborted"},
    [SIGBUS] = {"SIGBUS", C, "Bus error"},
    [SIGFPE] = {"SIGFPE", C, "Floating point exception"},
    [SIGKILL] = {"SIGKILL", T, "Killed"},
    [SIGUSR1] = {"SIGUSR1", T, "User defined signal 1"},
    [SIGSEGV] = {"SIGSEGV", C, "Segmentation fault"},
    [SIGUSR2] = {"SIGUSR2", T, "User defined signal 2"},
    [SIGPIPE] = {"SIGPIPE", T, "Broken pipe"},
    [SIGALRM] = {"SIGALRM", T, "Alarm clock"},
    [SIGTERM] = {"SIGTERM", T, "Terminated"},
#ifdef SIGSTKFLT
    [SIGSTKFLT] = {"SIGSTKFLT", T, "Stack fault"},
#endif
    [SIGCHLD] = {"SIGCHLD", I, "Child exited"},
    [SIGCONT] = {"SIGCONT", K, "Continued"},
    [SIGSTOP] = {"SIGSTOP", S, "Stopped (signal)"},
    [SIGTSTP] = {"SIGTSTP", S, "Stopped"},
    [SIGTTIN] = {"SIGTTIN", S, "Stopped (tty input)"},
    [SIGTTOU] = {"SIGTTOU", S, "Stopped (tty output)"},
    [SIGURG] = {"SIGURG", I, "Urgent I/O condition"},
    [SIGXCPU] = {"SIGXCPU", C, "CPU time limit exceeded"},
    [SIGXFSZ] = {"SIGXFSZ", C, "File size limit exceeded"},
    [SIGVTALRM] = {"SIGVTALRM", T, "Virtual timer expired"},
    [SIGPROF] = {"SIGPROF", T, "Profiling timer expired"},
    [SIGWINCH] = {"SIGWINCH", I, "Window changed"},
    [SIGIO] = {"SIGIO", T, "I/O possible"},
#ifdef SIGPWR
    [SIGPWR] = {"SIGPWR", T, "Power failure"},
#endif
    [SIGSYS] = {"SIGSYS", C, "Bad system call"},
};

#undef T
#undef C
#undef S
#undef K
#undef I

/* Other spellings accepted on input only. */
static const struct {
    const char *name;
    int signo;
} aliases[] = {
    {"SIGIOT", SIGABRT},
    {"SIGPOLL", SIGIO},
    {"SIGCLD", SIGCHLD},
};

/* Real-time names as constants, so mp_signal_name stays allocation-free. 32 of each covers any
 * Linux SIGRTMIN..SIGRTMAX range. */
static const char *const rtmin_names[32] = {
    "SIGRTMIN",    "SIGRTMIN+1",  "SIGRTMIN+2",  "SIGRTMIN+3",  "SIGRTMIN+4",  "SIGRTMIN+5",
    "SIGRTMIN+6",  "SIGRTMIN+7",  "SIGRTMIN+8",  "SIGRTMIN+9",  "SIGRTMIN+10", "SIGRTMIN+11",
    "SIGRTMIN+12", "SIGRTMIN+13", "SIGRTMIN+14", "SIGRTMIN+15", "SIGRTMIN+16", "SIGRTMIN+17",
    "SIGRTMIN+18", "SIGRTMIN+19", "SIGRTMIN+20", "SIGRTMIN+21", "SIGRTMIN+22", "SIGRTMIN+23",
    "SIGRTMIN+24", "SIGRTMIN+25", "SIGRTMIN+26", "SIGRTMIN+27", "SIGRTMIN+28", "SIGRTMIN+29",
    "SIGRTMIN+30", "SIGRTMIN+31",
};
static const char *const rtmax_names[32] = {
    "SIGRTMAX",    "SIGRTMAX-1",  "SIGRTMAX-2",  "SIGRTMAX-3",  "SIGRTMAX-4",  "SIGRTMAX-5",
    "SIGRTMAX-6",  "SIGRTMAX-7",  "SIGRTMAX-8",  "SIGRTMAX-9",  "SIGRTMAX-10", "SIGRTMAX-11",
    "SIGRTMAX-12", "SIGRTMAX-13", "SIGRTMAX-14", "SIGRTMAX-15", "SIGRTMAX-16", "SIGRTMAX-17",
    "SIGRTMAX-18", "SIGRTMAX-19", "SIGRTMAX-20", "SIGRTMAX-21", "SIGRTMAX-22", "SIGRTMAX-23",
    "SIGRTMAX-24", "SIGRTMAX-25", "SIGRTMAX-26", "SIGRTMAX-27", "SIGRTMAX-28", "SIGRTMAX-29",
    "SIGRTMAX-30", "SIGRTMAX-31",
};
static const char *const rt_descs[32] = {
    "Real-time signal 0",  "Real-time signal 1",  "Real-time signal 2",  "Real-time signal 3",
    "Real-time signal 4",  "Real-time signal 5",  "Real-time signal 6",  "Real-time signal 7",
    "Real-time signal 8",  "Real-time signal 9",  "Real-time signal 10", "Real-time signal 11",
    "Real-time signal 12", "Real-time signal 13", "Real-time signal 14", "Real-time signal 15",
    "Real-time signal 16", "Real-time signal 17", "Real-time signal 18", "Real-time signal 19",
    "Real-time signal 20", "Real-time signal 21", "Real-time signal 22", "Real-time signal 23",
    "Real-time signal 24", "Real-time signal 25", "Real-time signal 26", "Real-time signal 27",
    "Real-time signal 28", "Real-time signal 29", "Real-time signal 30", "Real-time signal 31",
};

/* glibc's SIGRTMIN/SIGRTMAX are calls that read a value fixed at start-up; cheap and safe in a
 * handler. */
static inline int rt_min(void)
{
    return SIGRTMIN;
}
static inline int rt_max(void)
{
    return SIGRTMAX;
}

static inline bool is_rt(int signo)
{
    return signo >= rt_min() && signo <= rt_max() && signo - rt_min() < 32;
}

int mp_signal_is_valid(int signo)
{
    if (signo > 0 && signo < 32) return std_sigs[signo].name != NULL;
    return is_rt(signo);
}

/* Valid and catchable: what a handler or a wait set may contain. */
static inline bool catchable(int signo)
{
    return mp_signal_is_valid(signo) && signo != SIGKILL && signo != SIGSTOP;
}

/* ---- names -------------------------------------------------------------------------------- */

const char *mp_signal_name(int signo)
{
    if (signo > 0 && signo < 32) return std_sigs[signo].name;
    if (!is_rt(signo)) return NULL;
    /* bash's split: RTMIN+n up to the middle of the range, RTMAX-n above it. */
    int mid = (rt_min() + rt_max()) / 2;
    if (signo <= mid) return rtmin_names[signo - rt_min()];
    return rtmax_names[rt_max() - signo];
}

static inline char ascii_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* Case-insensitive ASCII comparison of s with the upper-case constant `word`; on a match of the
 * whole prefix, *rest points past it. No locale: safe in a handler. */
static bool match_prefix(const char *s, const char *word, const char **rest)
{
    while (*word) {
        if (ascii_upper(*s) != *word) return false;
        s++, word++;
    }
    *rest = s;
    return true;
}

static bool equal_nocase(const char *s, const char *word)
{
    const char *rest;
    return match_prefix(s, word, &rest) && *rest == '\0';
}

/* A non-empty string of decimal digits into *out (capped so it cannot overflow). */
static bool parse_digits(const char *s, int *out)
{
    if (*s == '\0') return false;
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v < 100000) v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

/* "RTMIN", "RTMIN+n", "RTMAX", "RTMAX-n" (the SIG prefix already stripped). */
static bool parse_rt(const char *s, int *signo)
{
    const char *rest;
    int n = 0, v;
    if (match_prefix(s, "RTMIN", &rest)) {
        if (*rest == '+' && !parse_digits(rest + 1, &n)) return false;
        if (*rest != '\0' && *rest != '+') return false;
        v = rt_min() + n;
    } else if (match_prefix(s, "RTMAX", &rest)) {
        if (*rest == '-' && !parse_digits(rest + 1, &n)) return false;
        if (*rest != '\0' && *rest != '-') return false;
        v = rt_max() - n;
    } else {
        return false;
    }
    if (!is_rt(v)) return false;
    *signo = v;
    return true;
}

int mp_signal_from_name(const char *name, int *signo)
{
    if (!name || !signo) return -EINVAL;
    int v;
    if (parse_digits(name, &v)) {
        if (!mp_signal_is_valid(v)) return -EINVAL;
        *signo = v;
        return 0;
    }
    const char *bare = name;
    match_prefix(name, "SIG", &bare);
    if (*bare == '\0') return -EINVAL;
    if (parse_rt(bare, signo)) return 0;
    for (int i = 1; i < 32; i++) {
        /* Compare past the table's own "SIG". */
        if (std_sigs[i].name && equal_nocase(bare, std_sigs[i].name + 3)) {
            *signo = i;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (equal_nocase(bare, aliases[i].name + 3)) {
            *signo = aliases[i].signo;
            return 0;
        }
    }
    return -EINVAL;
}

int mp_signal_default_action(int signo, mp_signal_action *action)
{
    if (!action || !mp_signal_is_valid(signo)) return -EINVAL;
    *action = signo < 32 ? std_sigs[signo].action : MP_SIGNAL_TERMINATE;
    return 0;
}

const char *mp_signal_action_name(mp_signal_action action)
{
    switch (action) {
    case MP_SIGNAL_TERMINATE:
        return "terminate";
    case MP_SIGNAL_CORE:
        return "core";
    case MP_SIGNAL_STOP:
        return "stop";
    case MP_SIGNAL_CONTINUE:
        return "continue";
    case MP_SIGNAL_IGNORE:
        return "ignore";
    }
    return NULL;
}

const char *mp_signal_description(int signo)
{
    if (signo > 0 && signo < 32) return std_sigs[signo].desc;
    if (!is_rt(signo)) return NULL;
    return rt_descs[signo - rt_min()];
}

int mp_signal_list(int *out, int max)
{
    if (max < 0 || (!out && max > 0)) return -EINVAL;
    int n = 0;
    for (int s = 1; s <= rt_max(); s++) {
        if (!mp_signal_is_valid(s)) continue;
        if (n < max) out[n] = s;
        n++;
    }
    return n;
}

/* ---- sending ------------------------------------------------------------------------------ */

/* kill(2) with errno preserved (handlers call this). */
static int do_kill(pid_t pid, int sig)
{
    int saved = errno;
    int rc = kill(pid, sig) == 0 ? 0 : -errno;
    errno = saved;
    return rc;
}

int mp_signal_send(pid_t pid, int sig)
{
    if (pid <= 0 || !mp_signal_is_valid(sig)) return -EINVAL;
    return do_kill(pid, sig);
}

int mp_signal_send_group(pid_t pgid, int sig)
{
    if (pgid < 0 || !mp_signal_is_valid(sig)) return -EINVAL;
    return do_kill(-pgid, sig);
}

int mp_signal_probe(pid_t pid)
{
    if (pid <= 0) return -EINVAL;
    return do_kill(pid, 0);
}

int mp_signal_send_process(mp_process *p, int sig)
{
    if (!p || !mp_signal_is_valid(sig)) return -EINVAL;
    return mp_process_signal(p, sig);
}

/* ---- handlers ----------------------------------------------------------------------------- */

#define MP__SIGNAL_FLAGS (MP_SIGNAL_NORESTART | MP_SIGNAL_ONESHOT | MP_SIGNAL_NODEFER)

_Static_assert(sizeof(struct sigaction) <= sizeof(((mp_signal_disposition *)0)->opaque_.bytes),
               "mp_signal_disposition too small for struct sigaction");

/* memcpy in and out of the opaque storage: no aliasing or alignment assumptions. */
static void disp_store(mp_signal_disposition *d, const struct sigaction *sa)
{
    memset(d, 0, sizeof *d);
    memcpy(d->opaque_.bytes, sa, sizeof *sa);
}

static void disp_load(struct sigaction *sa, const mp_signal_disposition *d)
{
    memcpy(sa, d->opaque_.bytes, sizeof *sa);
}

/* sigaction(2) with errno preserved (handlers call these). */
static int do_sigaction(int sig, const struct sigaction *sa, mp_signal_disposition *old)
{
    struct sigaction prev;
    int saved = errno;
    int rc = sigaction(sig, sa, &prev) == 0 ? 0 : -errno;
    errno = saved;
    if (rc == 0 && old) disp_store(old, &prev);
    return rc;
}

int mp_signal_handle(int sig, mp_signal_handler_fn handler, int flags, mp_signal_disposition *old)
{
    if (!catchable(sig) || (flags & ~MP__SIGNAL_FLAGS)) return -EINVAL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    if (!(flags & MP_SIGNAL_NORESTART)) sa.sa_flags |= SA_RESTART;
    if (flags & MP_SIGNAL_ONESHOT) sa.sa_flags |= SA_RESETHAND;
    if (flags & MP_SIGNAL_NODEFER) sa.sa_flags |= SA_NODEFER;
    return do_sigaction(sig, &sa, old);
}

int mp_signal_restore(int sig, const mp_signal_disposition *old)
{
    if (!old || !catchable(sig)) return -EINVAL;
    struct sigaction sa;
    disp_load(&sa, old);
    return do_sigaction(sig, &sa, NULL);
}

int mp_signal_get(int sig, mp_signal_disposition *out)
{
    if (!out || !catchable(sig)) return -EINVAL;
    return do_sigaction(sig, NULL, out);
}

int mp_signal_disposition_get(const mp_signal_disposition *d, mp_signal_handler_fn *handler,
                              int *flags)
{
    if (!d) return -EINVAL;
    struct sigaction sa;
    disp_load(&sa, d);
    if (handler) {
        *handler = (sa.sa_flags & SA_SIGINFO)
                       ? (mp_signal_handler_fn)(void (*)(void))sa.sa_sigaction
                       : sa.sa_handler;
    }
    if (flags) {
        int f = 0;
        if (!(sa.sa_flags & SA_RESTART)) f |= MP_SIGNAL_NORESTART;
        if (sa.sa_flags & SA_RESETHAND) f |= MP_SIGNAL_ONESHOT;
        if (sa.sa_flags & SA_NODEFER) f |= MP_SIGNAL_NODEFER;
        if (sa.sa_flags & SA_SIGINFO) f |= MP_SIGNAL_SIGINFO;
        *flags = f;
    }
    return 0;
}

/* ---- alarm and pause ---------------------------------------------------------------------- */

static double tv_seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

int mp_signal_alarm(double seconds, double *previous_left)
{
    if (!(seconds >= 0) || seconds > 1e8) return -EINVAL;
    struct itimerval it, old;
    memset(&it, 0, sizeof it);
    /* Round up, so a tiny positive delay is still an alarm and not a cancel. */
    int64_t us = (int64_t)(seconds * 1e6);
    if ((double)us < seconds * 1e6) us++;
    it.it_value.tv_sec = (time_t)(us / 1000000);
    it.it_value.tv_usec = (suseconds_t)(us % 1000000);
    int saved = errno;
    int rc = setitimer(ITIMER_REAL, &it, &old) == 0 ? 0 : -errno;
    errno = saved;
    if (rc == 0 && previous_left) *previous_left = tv_seconds(&old.it_value);
    return rc;
}

int mp_signal_alarm_left(double *left)
{
    if (!left) return -EINVAL;
    struct itimerval it;
    int saved = errno;
    int rc = getitimer(ITIMER_REAL, &it) == 0 ? 0 : -errno;
    errno = saved;
    if (rc == 0) *left = tv_seconds(&it.it_value);
    return rc;
}

static struct timespec ns_to_ts(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    return ts;
}

/* ppoll on no fds until a handler runs (EINTR) or the deadline passes; mask as ppoll's. */
static int wait_for_handler(double timeout, const sigset_t *mask)
{
    mp__deadline dl = mp__deadline_in(timeout);
    for (;;) {
        struct timespec ts, *tp = NULL;
        if (!mp__deadline_forever(&dl)) {
            ts = ns_to_ts(mp__deadline_left_ns(&dl));
            tp = &ts;
        }
        int saved = errno;
        int r = ppoll(NULL, 0, tp, mask);
        int err = errno;
        errno = saved;
        if (r < 0 && err == EINTR) return 0; /* a handler ran: what we wait for */
        if (r < 0) return -err;
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
    }
}

int mp_signal_pause(double timeout)
{
    return wait_for_handler(timeout, NULL);
}

/* Fills *set from sigs[0..n); with need_catchable, SIGKILL/SIGSTOP are refused. */
static int build_set(sigset_t *set, const int *sigs, int n, bool need_catchable)
{
    sigemptyset(set);
    if (n < 0 || (n > 0 && !sigs)) return -EINVAL;
    for (int i = 0; i < n; i++) {
        if (need_catchable ? !catchable(sigs[i]) : !mp_signal_is_valid(sigs[i])) return -EINVAL;
        sigaddset(set, sigs[i]);
    }
    return 0;
}

int mp_signal_suspend(const int *sigs, int n, double timeout)
{
    sigset_t set, mask;
    int rc = build_set(&set, sigs, n, false);
    if (rc < 0) return rc;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    for (int i = 0; i < n; i++)
        sigdelset(&mask, sigs[i]);
    return wait_for_handler(timeout, &mask);
}

/* ---- synchronous waiting ------------------------------------------------------------------ */

static void fill_info(mp_siginfo *info, const siginfo_t *si)
{
    memset(info, 0, sizeof *info);
    info->signo = si->si_signo;
    info->code = si->si_code;
    bool from_process =
        si->si_code == SI_USER || si->si_code == SI_QUEUE || si->si_code == SI_TKILL;
    if (from_process || (si->si_signo == SIGCHLD && si->si_code > 0)) {
        info->pid = si->si_pid;
        info->uid = si->si_uid;
    }
    if (si->si_signo == SIGCHLD && si->si_code > 0) info->status = si->si_status;
    if (si->si_code == SI_QUEUE) info->value = si->si_value.sival_int;
}

/* sigtimedwait against a deadline: EINTR (another signal's handler ran) and an early EAGAIN both
 * resume the wait, so neither surfaces and the timeout never ends early. */
static int timed_wait(const sigset_t *set, double timeout, mp_siginfo *info)
{
    siginfo_t si;
    if (mp__timeout_is_forever(timeout)) { /* forever: the one-syscall fast path */
        for (;;) {
            int s = sigwaitinfo(set, &si);
            if (s > 0) break;
            if (errno != EINTR) return -errno;
        }
    } else {
        mp__deadline dl = mp__deadline_in(timeout);
        for (;;) {
            struct timespec ts = ns_to_ts(mp__deadline_left_ns(&dl));
            int s = sigtimedwait(set, &si, &ts);
            if (s > 0) break;
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return -errno;
            if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
        }
    }
    if (info) fill_info(info, &si);
    return 0;
}

int mp_signal_wait(const int *sigs, int n, mp_siginfo *info, double timeout)
{
    sigset_t set, old;
    if (n < 1) return -EINVAL;
    int rc = build_set(&set, sigs, n, true);
    if (rc < 0) return rc;
    int saved = errno;
    pthread_sigmask(SIG_BLOCK, &set, &old);
    rc = timed_wait(&set, timeout, info);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return rc;
}

struct mp_sigwaiter {
    sigset_t set;           /* the signals waited for */
    sigset_t newly_blocked; /* the ones this waiter blocked (and will unblock) */
    int fd;                 /* signalfd on set */
    pid_t owner;            /* the process that made it: only it closes fd */
};

int mp_sigwaiter_new(mp_sigwaiter **out, const int *sigs, int n)
{
    if (!out || n < 1) return -EINVAL;
    sigset_t set, cur;
    int rc = build_set(&set, sigs, n, true);
    if (rc < 0) return rc;
    mp_sigwaiter *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->set = set;
    w->fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (w->fd < 0) {
        rc = -errno;
        free(w);
        return rc;
    }
    /* Internal: the children mproc forks do not inherit it (their signal mask is emptied, so it
     * would not work there anyway). */
    mp__fd_internal_add(w->fd);
    w->owner = getpid();
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    sigemptyset(&w->newly_blocked);
    for (int i = 0; i < n; i++)
        if (!sigismember(&cur, sigs[i])) sigaddset(&w->newly_blocked, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    *out = w;
    return 0;
}

int mp_sigwaiter_wait(mp_sigwaiter *w, mp_siginfo *info, double timeout)
{
    if (!w) return -EINVAL;
    int saved = errno;
    int rc = timed_wait(&w->set, timeout, info);
    errno = saved;
    return rc;
}

int mp_sigwaiter_fd(const mp_sigwaiter *w)
{
    return w ? w->fd : -EINVAL;
}

int mp_sigwaiter_free(mp_sigwaiter **pp)
{
    if (!pp || !*pp) return 0;
    mp_sigwaiter *w = *pp;
    *pp = NULL;
    /* In a child mproc forked, the fd was closed at the fork (its number may be reused by now). */
    if (w->owner == getpid()) {
        mp__fd_internal_del(w->fd);
        close(w->fd);
    }
    pthread_sigmask(SIG_UNBLOCK, &w->newly_blocked, NULL);
    free(w);
    return 0;
}
