/* SPDX-License-Identifier: MIT */
/* process_internal.h - mproc's fork discipline, shared by every module that starts processes.
 *
 * Every child mproc creates (Process, pool workers, the double fork) goes through mp__fork(), so
 * they all get the same guarantees:
 *   - stdio is flushed before fork, and the child purges (discards, never writes) what stdout's
 *     and stderr's buffers hold: another thread may have buffered more after the flush, and a
 *     child must never write bytes it did not produce;
 *   - in the child, first: every fd marked internal (mp__fd_internal_add: pidfds, death sockets,
 *     signalfds, pools' fds) is closed, except the ones the caller asks to keep
 *     (mp__fork_keep) and the child's own death socket (the pidfd-less fallback, platform.h);
 *   - all signals are blocked around fork, so no handler of the parent runs in the child between
 *     fork and the reset below;
 *   - in the child: PR_SET_PDEATHSIG(SIGKILL) is set and getppid() compared with the pid saved
 *     before fork (the parent may have died before prctl took effect; the child then kills
 *     itself with SIGKILL, as the death signal would have); mproc's registry of children is
 *     cleared (the parent's children are not the child's; the pidfds it inherited are closed);
 *     the handler of every caught standard signal (1..31) is reset to SIG_DFL (ignored signals
 *     stay ignored, as across exec); then the signal mask is emptied.
 *
 * Real-time signals (SIGRTMIN..SIGRTMAX) keep the parent's dispositions: finding out which of
 * them have handlers costs one system call per signal in every child (about 8% of a fork on
 * the test machine) and handlers for them are rare. A program that needs them reset does so in
 * its target.
 *
 * Cost matters (the benchmark holds start+join within 1.3x a raw fork): the functions the child
 * calls are bound in the parent first (lazy PLT binding in each child costs a symbol lookup),
 * and the child writes as little memory as it can.
 *
 * A child ends with mp__child_exit(), never exit(): the parent's atexit handlers must not run
 * twice.
 */
#ifndef MP_PROCESS_INTERNAL_H
#define MP_PROCESS_INTERNAL_H

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

/* mp__fork flags. */
#define MP__FORK_DETACHED  1u /* no PR_SET_PDEATHSIG: the child may outlive us (double fork) */
#define MP__FORK_UNWATCHED 2u /* the caller reaps it by pid and never calls mp__pidfd_open */
#define MP__FORK_SIGNALS_CLEAN                                                                     \
    4u /* the caller installed no signal handler: skip their reset                                 \
        * (the forkserver; ~30 system calls per child saved) */

/* fork() with the discipline above. Returns the child's pid in the parent, 0 in the child,
 * -errno when fork failed (-EAGAIN, -ENOMEM, or the fallback's socket pair: -EMFILE, ...).
 * Every child that will be watched through mp__pidfd_open(pid) must be forked here without
 * DETACHED or UNWATCHED, by the thread that then opens the handle. Not async-signal-safe (takes
 * the registry lock). */
pid_t mp__fork(unsigned flags);

/* mp__fork, keeping the nkeep (at most MP__FORK_KEEP_MAX) internal fds in keep[] open in the
 * child (the fds it needs: a worker's socket, ...). They stay marked internal there, so the
 * child's own children do not inherit them. -EINVAL for a bad keep list. */
#define MP__FORK_KEEP_MAX 16
pid_t mp__fork_keep(unsigned flags, const int *keep, int nkeep);

/* Exit hooks: what another module must do when a process ends normally (shared.c unlinks the
 * named blocks the process created). A hook runs once per ending process, after the children
 * were joined: at exit() (one atexit handler runs them all, registered with the first hook) and
 * in mp__child_exit. Hooks run in the reverse order of registration, as atexit's. Adding a hook
 * already registered does nothing. Returns 0, or -ENOSPC when the table (MP__EXIT_HOOKS_MAX) is
 * full. A hook must work in any process, and act only on what that process owns (a child
 * inherits the table). Not async-signal-safe. */
#define MP__EXIT_HOOKS_MAX 8
typedef void (*mp__exit_hook_fn)(void);
int mp__exit_hook_add(mp__exit_hook_fn fn);

/* Ends a child: terminates its daemon children and joins the others (as Python's process
 * bootstrap, and as the atexit handler does in the main program), runs the exit hooks (named
 * shared-memory blocks the child itself created are unlinked there), flushes stdout and
 * stderr when they hold output, with SIGPIPE blocked (as Python's child does; other FILE streams
 * are the target's to flush or close; a failed flush makes the exit code 1, as in CPython), dumps
 * coverage counters in MP_COVERAGE builds, and _exit(code)s. */
__attribute__((noreturn)) void mp__child_exit(int code);

/* A waitid() result as Python's exitcode: the exit status, or -signum when a signal killed it. */
static inline int mp__exitcode_from_siginfo(const siginfo_t *si)
{
    return si->si_code == CLD_EXITED ? si->si_status : -si->si_status;
}

/* Waits for an own child whose handle (mp__pidfd_open: a pidfd or the fallback's death socket)
 * is `pidfd` until `dl` passes and reaps it (NULL dl: do not block). Returns 1 when reaped (*code
 * set as above), 0 while it still runs, -ECHILD when someone else reaped it, or another -errno.
 * EINTR never surfaces. */
struct mp__deadline;
int mp__reap_pidfd(int pidfd, const struct mp__deadline *dl, int *code);

#endif
