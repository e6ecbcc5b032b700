/* SPDX-License-Identifier: MIT */
/* double_fork.c - the second-level child: run a target in a grandchild so no zombie is left. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc.h"

static int fds[2];

static int grandchild(void *arg)
{
    (void)arg;
    /* Our parent (the intermediate child) has exited: we belong to init, or to the nearest
     * subreaper. Here that is main, which made itself one so it can show the adoption. */
    for (int i = 0; i < 2000 && getppid() != *(pid_t *)arg; i++)
        usleep(1000);
    pid_t me[2] = {getpid(), getppid()};
    return write(fds[1], me, sizeof me) == sizeof me ? 0 : 1;
}

int main(void)
{
    /* Without this, init would adopt the grandchild and reap it; as a subreaper we see it come
     * back to us, and reap it ourselves. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (pipe2(fds, O_CLOEXEC) < 0) return 1;
    pid_t self = getpid(), g = 0;
    int rc = mp_process_run_detached(grandchild, &self, &g);
    if (rc != 0) {
        fprintf(stderr, "double_fork: %s\n", mp_strerror(rc));
        return 1;
    }
    printf("run_detached returned grandchild pid %d; the intermediate child is already reaped\n",
           (int)g);
    pid_t seen[2] = {0, 0};
    if (read(fds[0], seen, sizeof seen) != sizeof seen) return 1;
    printf("grandchild %d reports parent %d (we are %d)\n", (int)seen[0], (int)seen[1], (int)self);
    int st = 0;
    while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
    }
    if (seen[0] != g || seen[1] != self || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "double_fork: unexpected result\n");
        return 1;
    }
    /* No other child is left: waitpid(-1) in this program (not in the library) finds none. */
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "double_fork: a zombie is left\n");
        return 1;
    }
    printf("double_fork: ok\n");
    return 0;
}
