/* SPDX-License-Identifier: MIT */
/* spawn.c - running the program itself again (the spawn start method, the forkserver).
 *
 * posix_spawn, not fork+exec: glibc's posix_spawn runs the child on a vfork-like clone that
 * shares the parent's memory until the exec, so it is cheap and safe from a multi-threaded
 * program (nothing of the parent runs in the child between clone and exec but glibc's own
 * async-signal-safe steps). The fds the child needs are placed at fixed numbers from 3 up, and
 * every other fd above 2 is closed in the child (closefrom), as Python's spawn passes only the
 * fds it means to: a user's fd opened without O_CLOEXEC stays the parent's.
 *
 * The executable: the path /proc/self/exe names, read once at mp_init. Not /proc/self/exe itself:
 * under valgrind (and other tools that run the program inside their own binary) that link names
 * the tool, while readlink gives the program.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform.h"

extern char **environ;

static char self_exe[PATH_MAX];
static pthread_once_t exe_once = PTHREAD_ONCE_INIT;

static void read_self_exe(void)
{
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0 || (size_t)n >= sizeof self_exe - 1 || strstr(self_exe, " (deleted)"))
        strcpy(self_exe, "/proc/self/exe");
    else
        self_exe[n] = '\0';
}

void mp__self_exe_init(void)
{
    pthread_once(&exe_once, read_self_exe);
}

int mp__spawn_self(char *const argv[], const char *extra_env, const int *fds, int nfds, pid_t *pid)
{
    if (!argv || !argv[0] || nfds < 0 || nfds > 8 || !pid) return -EINVAL;
    mp__self_exe_init();
    /* Move the fds above the numbers they go to, so placing one never clobbers another. */
    int high[8];
    int r = 0;
    int i = 0;
    for (; i < nfds; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + 8);
        if (high[i] < 0) {
            r = -errno;
            break;
        }
    }
    size_t nenv = 0;
    while (environ && environ[nenv])
        nenv++;
    char **envp = NULL;
    if (!r) {
        envp = malloc((nenv + 2) * sizeof *envp);
        if (!envp) r = -ENOMEM;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_ok = false, attr_ok = false;
    if (!r) {
        memcpy(envp, environ, nenv * sizeof *envp);
        envp[nenv] = (char *)extra_env;
        envp[nenv + (extra_env ? 1 : 0)] = NULL;
        if ((r = -posix_spawn_file_actions_init(&fa)) == 0) fa_ok = true;
    }
    for (int k = 0; !r && k < nfds; k++)
        r = -posix_spawn_file_actions_adddup2(&fa, high[k], 3 + k);
    if (!r) r = -posix_spawn_file_actions_addclosefrom_np(&fa, 3 + nfds);
    if (!r && (r = -posix_spawnattr_init(&attr)) == 0) attr_ok = true;
    if (!r) {
        sigset_t none;
        sigemptyset(&none);
        r = -posix_spawnattr_setsigmask(&attr, &none);
        if (!r) r = -posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    }
    if (!r) r = -posix_spawn(pid, self_exe, &fa, &attr, argv, envp);
    if (attr_ok) posix_spawnattr_destroy(&attr);
    if (fa_ok) posix_spawn_file_actions_destroy(&fa);
    free(envp);
    while (i-- > 0)
        close(high[i]);
    return r;
}
