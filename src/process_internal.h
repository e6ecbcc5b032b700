/* process_internal.h - mproc's fork discipline, shared by every module that starts processes.
 *
 * Every child mproc creates (Process, pool workers, the double fork) goes through mp__fork(), so
 * they all get the same guarantees:
 *   - stdio is flushed before fork (buffered output is not written twice);
 *   - all signals are blocked around fork, so no handler of the parent runs in the child between
 *     fork and the reset below;
 *   - in the child: every caught signal's handler is reset to SIG_DFL (ignored signals stay
 *     ignored, as across exec), the signal mask is emptied, PR_SET_PDEATHSIG(SIGKILL) is set and
 *     getppid() is compared with the pid saved before fork (the parent may have died before
 *     prctl took effect), and mproc's registry of children is cleared: the children of the
 *     parent are not the child's, and the pidfds the child inherited are closed.
 * A child ends with mp__child_exit(), never exit(): the parent's atexit handlers must not run
 * twice.
 */
#ifndef MP_PROCESS_INTERNAL_H
#define MP_PROCESS_INTERNAL_H

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

/* mp__fork flags. */
#define MP__FORK_DETACHED 1u /* no PR_SET_PDEATHSIG: the child may outlive us (double fork) */

/* fork() with the discipline above. Returns the child's pid in the parent, 0 in the child,
 * -errno when fork failed (-EAGAIN, -ENOMEM). Not async-signal-safe (takes the registry lock). */
pid_t mp__fork(unsigned flags);

/* Ends a child: flushes stdio, dumps coverage counters in MP_COVERAGE builds, _exit(code). */
__attribute__((noreturn)) void mp__child_exit(int code);

/* A waitid() result as Python's exitcode: the exit status, or -signum when a signal killed it. */
static inline int mp__exitcode_from_siginfo(const siginfo_t *si)
{
    return si->si_code == CLD_EXITED ? si->si_status : -si->si_status;
}

/* Waits for an own child whose pidfd is `pidfd` until `dl` passes and reaps it (NULL dl: do not
 * block). Returns 1 when reaped (*code set as above), 0 while it still runs, -ECHILD when someone
 * else reaped it, or another -errno. EINTR never surfaces. */
struct mp__deadline;
int mp__reap_pidfd(int pidfd, const struct mp__deadline *dl, int *code);

#endif
