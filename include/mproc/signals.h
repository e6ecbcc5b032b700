/* SPDX-License-Identifier: MIT */
/* mproc/signals.h - signals: names and numbers, default actions, sending, handlers, alarm, pause,
 * and waiting for signals synchronously, without handler code.
 *
 *     // kill -TERM <pid>, by name
 *     int sig; mp_signal_from_name("term", &sig); mp_signal_send(pid, sig);
 *
 *     // a handler (restartable: SA_RESTART), then restore what was there
 *     mp_signal_disposition old;
 *     mp_signal_handle(SIGUSR1, on_usr1, 0, &old);  ...  mp_signal_restore(SIGUSR1, &old);
 *
 *     // an alarm: one per process; a later one replaces the earlier
 *     mp_signal_alarm(1.5, NULL);                    // SIGALRM in 1.5 s
 *     double left; mp_signal_alarm(3, &left);        // replaces it; left ~ 1.5
 *     mp_signal_pause(MP_FOREVER);                   // returns once a handler has run
 *
 *     // no handler code at all: block SIGTERM/SIGINT and take them as data
 *     int sigs[] = {SIGTERM, SIGINT};
 *     mp_sigwaiter *w; mp_sigwaiter_new(&w, sigs, 2);
 *     mp_siginfo info; if (mp_sigwaiter_wait(w, &info, 5.0) == 0) printf("%d from %d\n",
 *                                                               info.signo, (int)info.pid);
 *     mp_sigwaiter_free(&w);                         // unblocks what it blocked
 *
 * Valid signal numbers are those `kill -l` lists: 1..31 and SIGRTMIN..SIGRTMAX (34..64 with
 * glibc, which keeps 32 and 33 for its threads). Every call below refuses anything else (0, 32,
 * 33, 65, negative numbers) with -EINVAL. Signal 0 (the "does this pid exist" probe of kill(2))
 * is not a signal here: use mp_signal_probe().
 *
 * Names (decision): a name matches with or without the "SIG" prefix and in any letter case, so
 * "SIGTERM", "TERM", "term" and "SigTerm" all give 15; real-time signals are "SIGRTMIN",
 * "SIGRTMIN+n", "SIGRTMAX-n", "SIGRTMAX" (same prefix and case rules); the aliases SIGIOT,
 * SIGPOLL and SIGCLD are accepted on input; a string of decimal digits naming a valid signal
 * ("15") is accepted as `kill -15` accepts it. mp_signal_name() always gives the canonical
 * upper-case "SIG..." spelling that `kill -l` prints: real-time signals up to the middle of the
 * range are "SIGRTMIN+n", the rest "SIGRTMAX-n" (34..49 and 50..64 here, as bash).
 *
 * ---- Async-signal safety across mproc (what a signal handler may call) -----------------------
 * Safe: they touch only constant tables, the stack, lock-free atomics, or make one system call;
 * none allocates or takes a lock. Each module's header is the authority; this is the collected
 * list (docs/signal.md keeps it up to date):
 *   error.h:    mp_strerror, mp_err_name
 *   signals.h:  mp_signal_is_valid, mp_signal_name, mp_signal_from_name, mp_signal_default_action,
 *               mp_signal_action_name, mp_signal_description, mp_signal_list, mp_signal_send,
 *               mp_signal_send_group, mp_signal_probe, mp_signal_send_process, mp_signal_handle,
 *               mp_signal_restore, mp_signal_get, mp_signal_disposition_get, mp_signal_alarm,
 *               mp_signal_alarm_left, mp_sigwaiter_fd, and mp_sigwaiter_wait with timeout 0 (a
 *               handler must never block)
 *   process.h:  mp_process_pid, mp_process_name, mp_process_is_daemon, mp_process_sentinel,
 *               mp_process_parent_pid, mp_process_signal/terminate/kill; join, is_alive and
 *               exitcode only when no other thread uses the same object (join with timeout 0)
 *   sync.h:     mp_event_set, mp_event_clear, mp_event_is_set, mp_sem_release, mp_sem_get_value
 *   shared.h:   mp_type_size, mp_value_add, mp_value_cas (lock-free atomics); the get/set calls
 *               only on a raw (unsynchronized) Value
 *   pipe.h:     mp_conn_fileno          socket.h: mp_listener_fileno
 *   common.h:   mp_version
 * NOT safe: everything else. In particular every constructor and destructor (mp_*_new, mp_*_free,
 * mp_sigwaiter_new/free included: they allocate), mp_process_start/active_children/current/
 * run_detached, mp_signal_wait (it changes the mask around a blocking wait),
 * mp_signal_pause/mp_signal_suspend (they block), lock/semaphore acquire and every wait (a handler
 * that interrupts the holder deadlocks), synchronized Value/Array access, and all of pipe, socket,
 * queue and pool (they take mutexes or allocate). A handler that must hand work to the program
 * should set a volatile sig_atomic_t flag, call mp_event_set, or better: install no handler and
 * take the signal with an mp_sigwaiter.
 *
 * Threads: dispositions (handlers) are per process; the signal mask is per thread. The calls
 * that block signals (mp_signal_wait, mp_sigwaiter_new) change the calling thread's mask only, so
 * create waiters in the main thread before starting other threads (they inherit the mask), or a
 * process-directed signal may go to another thread that does not block it.
 *
 * After fork: everything here is safe in a forked child. mp_process_start() resets handlers and
 * the mask in the children it starts; a sigwaiter's fd is close-on-exec and is not inherited by
 * the children mproc forks (create a new waiter in the child; freeing an inherited one there
 * releases only the memory).
 */
#ifndef MPROC_SIGNALS_H
#define MPROC_SIGNALS_H

#include <signal.h>

#include "common.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- names, numbers, default actions ------------------------------------------------------- */

/* What the kernel does with a signal whose disposition is SIG_DFL. */
typedef enum mp_signal_action {
    MP_SIGNAL_TERMINATE = 1, /* the process ends (exit code -signo in mproc/Python terms) */
    MP_SIGNAL_CORE,          /* the process ends and dumps core (SIGSEGV, SIGABRT, ...) */
    MP_SIGNAL_STOP,          /* the process stops until SIGCONT (SIGSTOP, SIGTSTP, ...) */
    MP_SIGNAL_CONTINUE,      /* a stopped process continues (SIGCONT) */
    MP_SIGNAL_IGNORE         /* nothing happens (SIGCHLD, SIGURG, SIGWINCH) */
} mp_signal_action;

/* True when signo is a signal `kill -l` lists (1..31, SIGRTMIN..SIGRTMAX). Async-signal-safe. */
MP_API int mp_signal_is_valid(int signo);

/* The canonical name: "SIGTERM", "SIGRTMIN+3", "SIGRTMAX-2"; NULL for an invalid number.
 * A pointer to a constant string. Async-signal-safe. */
MP_API const char *mp_signal_name(int signo);

/* Parses a signal name (rules at the top of this file) into *signo.
 * Errors: -EINVAL (name or signo NULL, empty or unknown name, number out of range). *signo is
 * left untouched on error. Async-signal-safe (no locale, no allocation). */
MP_API int mp_signal_from_name(const char *name, int *signo);

/* The default action of signo (real-time signals terminate). Errors: -EINVAL (invalid signo,
 * action NULL). Async-signal-safe. */
MP_API int mp_signal_default_action(int signo, mp_signal_action *action);

/* "terminate", "core", "stop", "continue", "ignore"; NULL for anything else. Async-signal-safe. */
MP_API const char *mp_signal_action_name(mp_signal_action action);

/* A one-line description, as strsignal() but constant and locale-free: "Terminated",
 * "Real-time signal 3"; NULL for an invalid number. Async-signal-safe. */
MP_API const char *mp_signal_description(int signo);

/* Fills out[0..max) with every valid signal number in increasing order, as `kill -l` lists them,
 * and returns how many there are (62 with glibc; may exceed max, so call with max 0 to size).
 * Errors: -EINVAL (out NULL with max > 0, max < 0). Async-signal-safe. */
MP_API int mp_signal_list(int *out, int max);

/* ---- sending ------------------------------------------------------------------------------- */

/* Sends sig to the process pid (kill(2)). pid must be > 0: a pid of 0 or -1 would reach the
 * caller's whole process group or every process it may signal, so both are refused; use
 * mp_signal_send_group() for a group on purpose. A pid reaped by its parent may already belong to
 * another process; to signal children started by mproc use mp_signal_send_process(), which goes
 * through a pidfd. Errors: -EINVAL (pid <= 0, invalid sig), -ESRCH (no such process), -EPERM
 * (not allowed to signal it). Async-signal-safe; safe after fork. */
MP_API int mp_signal_send(pid_t pid, int sig);

/* Sends sig to every process of the process group pgid (kill(-pgid, sig)); pgid 0 means the
 * caller's own group (which includes the caller). Errors: -EINVAL (pgid < 0, invalid sig),
 * -ESRCH, -EPERM. Async-signal-safe. */
MP_API int mp_signal_send_group(pid_t pgid, int sig);

/* Checks that pid exists and that the caller may signal it (kill(pid, 0)), sending nothing.
 * Returns 0 (a zombie not yet reaped counts as existing), -ESRCH (no such process), -EPERM
 * (exists, not ours to signal), -EINVAL (pid <= 0). Async-signal-safe. */
MP_API int mp_signal_probe(pid_t pid);

/* Sends sig to a child started by mproc, through its pidfd (mp_process_signal() with the signal
 * number checked first). Errors: -EINVAL (p NULL, invalid sig), and those of mp_process_signal:
 * MP_ENOTSTARTED, MP_EREAPED, MP_ESELF, MP_ECHILD (not our child: a parent's object used in a
 * child), -EPERM.
 * Async-signal-safe (process.h: mp_process_signal only reads the object and makes one call). */
MP_API int mp_signal_send_process(mp_process *p, int sig);

/* ---- handlers ------------------------------------------------------------------------------ */

/* A handler runs in signal context: it may call only async-signal-safe functions (above, and
 * signal-safety(7)). Save and restore errno in it if it calls anything that may set it. */
typedef void (*mp_signal_handler_fn)(int signo);

/* Flags for mp_signal_handle. The default (0) is SA_RESTART: system calls interrupted by the
 * handler resume instead of failing with EINTR. */
#define MP_SIGNAL_NORESTART 0x1 /* opt out: interrupted calls fail with EINTR (no SA_RESTART) */
#define MP_SIGNAL_ONESHOT   0x2 /* reset to SIG_DFL once the handler has run (SA_RESETHAND) */
#define MP_SIGNAL_NODEFER   0x4 /* do not block sig while its handler runs (SA_NODEFER) */

/* Reported by mp_signal_disposition_get only: the saved handler takes (int, siginfo_t *, void *)
 * (SA_SIGINFO). mp_signal_handle refuses it (it installs plain handlers). */
#define MP_SIGNAL_SIGINFO 0x8

/* A saved disposition, exactly as sigaction(2) reported it (handler, flags, mask), so that
 * mp_signal_restore() puts back even an SA_SIGINFO handler installed by someone else. Opaque (it
 * holds a struct sigaction, which strict ISO C modes do not declare); the caller owns the storage,
 * e.g. on the stack. Read it with mp_signal_disposition_get. */
typedef struct mp_signal_disposition {
    union {
        unsigned char bytes[256];
        long long align_ll;
        void *align_p;
    } opaque_;
} mp_signal_disposition;

/* Installs handler for sig with sigaction(2): restartable (SA_RESTART) unless flags has
 * MP_SIGNAL_NORESTART; no extra signals blocked while it runs. handler may be SIG_DFL (a null
 * pointer: back to the default action) or SIG_IGN. The previous disposition goes to *old when old
 * is not NULL. Errors: -EINVAL (invalid sig, SIGKILL or SIGSTOP, unknown flag bits). Nothing
 * changes on error. Async-signal-safe; safe after fork (a forked child inherits handlers). */
MP_API int mp_signal_handle(int sig, mp_signal_handler_fn handler, int flags,
                            mp_signal_disposition *old);

/* Puts back a disposition saved by mp_signal_handle or mp_signal_get. Errors: -EINVAL (invalid
 * sig, SIGKILL, SIGSTOP, old NULL). Async-signal-safe. */
MP_API int mp_signal_restore(int sig, const mp_signal_disposition *old);

/* The current disposition of sig into *out, changing nothing (Python's signal.getsignal).
 * Errors: -EINVAL (invalid sig, SIGKILL, SIGSTOP, out NULL). Async-signal-safe. */
MP_API int mp_signal_get(int sig, mp_signal_disposition *out);

/* What a saved disposition holds: *handler gets the handler (SIG_DFL, SIG_IGN or a function; an
 * SA_SIGINFO handler's address is cast to mp_signal_handler_fn: never call it through that type),
 * *flags the MP_SIGNAL_* bits that describe it (MP_SIGNAL_NORESTART when SA_RESTART is absent,
 * MP_SIGNAL_ONESHOT, MP_SIGNAL_NODEFER, MP_SIGNAL_SIGINFO). Either pointer may be NULL.
 * Errors: -EINVAL (d NULL). Async-signal-safe. */
MP_API int mp_signal_disposition_get(const mp_signal_disposition *d, mp_signal_handler_fn *handler,
                                     int *flags);

/* ---- alarm and pause ----------------------------------------------------------------------- */

/* The alarm: SIGALRM is sent to the calling process after `seconds` (fractions allowed,
 * microsecond resolution; setitimer ITIMER_REAL, the same timer alarm(2) uses). A process has
 * one alarm: a later call replaces the earlier one, and seconds == 0 cancels it. The time that
 * was left on the previous alarm (0 when there was none) goes to *previous_left when it is not
 * NULL. Without a handler, SIGALRM's default action ends the process. Errors: -EINVAL (seconds
 * negative, NaN, or above 1e8). Async-signal-safe; a forked child starts with no alarm. */
MP_API int mp_signal_alarm(double seconds, double *previous_left);

/* The seconds left on the pending alarm (0 when none) into *left. Errors: -EINVAL (left NULL).
 * Async-signal-safe. */
MP_API int mp_signal_alarm_left(double *left);

/* Pause: blocks until a signal handler has run in this thread, or timeout seconds
 * (MP_FOREVER: no limit). Returns 0 after a handler ran, -ETIMEDOUT when the time ran out.
 * Ignored and blocked signals do not wake it. A signal that arrives just before the call is not
 * seen (the usual race of pause(2)); to close it, block the signal, check your flag, then call
 * mp_signal_suspend(). Not for use inside a handler. */
MP_API int mp_signal_pause(double timeout);

/* As mp_signal_pause, but atomically unblocks sigs[0..n) for the duration of the wait (ppoll
 * with a temporary mask, like sigsuspend): a signal left pending while it was blocked runs its
 * handler at once and the call returns 0. The mask is restored before it returns.
 * Errors: -EINVAL (sigs NULL with n > 0, n < 0, an invalid signal), -ETIMEDOUT. */
MP_API int mp_signal_suspend(const int *sigs, int n, double timeout);

/* ---- synchronous waiting (no handler code) ------------------------------------------------- */

/* What a waited-for signal carried (from siginfo_t / signalfd_siginfo). */
typedef struct mp_siginfo {
    int signo;  /* the signal */
    int code;   /* si_code: SI_USER (kill), SI_QUEUE (sigqueue), SI_TKILL, SI_KERNEL, CLD_*.. */
    pid_t pid;  /* the sender (SI_USER, SI_QUEUE, SI_TKILL); the child for SIGCHLD; else 0 */
    uid_t uid;  /* the sender's real uid when pid is set */
    int status; /* SIGCHLD: exit status or signal number; else 0 */
    int value;  /* SI_QUEUE: sigval.sival_int; else 0 */
} mp_siginfo;

/* Waits for one of sigs[0..n) and takes it as data: no handler runs for it. Blocks those
 * signals in the calling thread for the duration of the wait (sigtimedwait) and restores the mask
 * before returning; a signal of the set that arrives BEFORE the call while it was not blocked is
 * handled by its disposition (the default action may end the process), so block the signals
 * first (or use an mp_sigwaiter, which does that once and is faster) when senders may be early.
 * Other signals' handlers may run meanwhile; the wait then resumes against the same deadline
 * (CLOCK_MONOTONIC), so EINTR never surfaces and a timeout never ends early.
 * info may be NULL. Returns 0 with *info filled, or -ETIMEDOUT (timeout 0 polls).
 * Errors: -EINVAL (sigs NULL, n < 1, an invalid signal or SIGKILL/SIGSTOP in sigs). */
MP_API int mp_signal_wait(const int *sigs, int n, mp_siginfo *info, double timeout);

/* A persistent waiter: blocks its signals once, at creation, and owns a signalfd that polls
 * readable while one of them is pending. Use it in a loop, or give its fd to poll/epoll. */
typedef struct mp_sigwaiter mp_sigwaiter;

/* Creates a waiter for sigs[0..n): blocks them in the calling thread (remembering which were
 * already blocked) and opens a signalfd (close-on-exec, non-blocking). The caller owns *out.
 * Signals of the set that were already pending are kept and will be waited for.
 * Errors: -EINVAL (out or sigs NULL, n < 1, an invalid signal, SIGKILL/SIGSTOP), -ENOMEM,
 * -EMFILE/-ENFILE (signalfd). Nothing changes on error. Not async-signal-safe. */
MP_API int mp_sigwaiter_new(mp_sigwaiter **out, const int *sigs, int n);

/* Takes one pending signal of the waiter's set, waiting up to timeout seconds for one
 * (MP_FOREVER: no limit; 0: poll). info may be NULL. Returns 0 with *info filled, or
 * -ETIMEDOUT. Handlers of other signals may run meanwhile; EINTR never surfaces and the deadline
 * (CLOCK_MONOTONIC) is kept. Errors: -EINVAL (w NULL). Async-signal-safe with timeout 0.
 * Call it from the thread that created the waiter (that thread's mask blocks the signals). */
MP_API int mp_sigwaiter_wait(mp_sigwaiter *w, mp_siginfo *info, double timeout);

/* The waiter's signalfd: readable (POLLIN) while a signal of the set is pending; then call
 * mp_sigwaiter_wait(w, &info, 0). Owned by the waiter (do not close it). Errors: -EINVAL. */
MP_API int mp_sigwaiter_fd(const mp_sigwaiter *w);

/* Closes the fd, unblocks the signals the waiter blocked (those that were blocked before
 * mp_sigwaiter_new stay blocked), releases the waiter and sets *pp to NULL. A signal of the set
 * still pending is then delivered to its disposition (for SIGTERM with no handler: the process
 * ends), as sigprocmask(2) would; drain it first with mp_sigwaiter_wait(w, NULL, 0) if it must not
 * be. Call it from the thread that created the waiter. Returns 0 (also for NULL and *pp NULL,
 * which are no-ops). */
MP_API int mp_sigwaiter_free(mp_sigwaiter **pp);

#ifdef __cplusplus
}
#endif
#endif
