/* SPDX-License-Identifier: MIT */
/* proc.c - what mproc asks about processes by pid (platform.h): the caller's own pid, cached, and
 * whether a pid recorded earlier still names the same live process. Linux: /proc/<pid>/stat. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomics.h"
#include "platform/platform.h"

/* getpid() is a system call in current glibc and hot paths (a joinable get, every pool call) ask
 * for it: cache it, and forget it in every child (pthread_atfork runs for any fork). */
static _Atomic pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    mp__store_relaxed(&cached_pid, 0);
}

static void register_forget_pid(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

pid_t mp__getpid_cached(void)
{
    pid_t pid = mp__load_relaxed(&cached_pid);
    if (pid) return pid;
    pthread_once(&pid_once, register_forget_pid);
    pid = getpid();
    mp__store_relaxed(&cached_pid, pid);
    return pid;
}

/* The state letter and the start time (field 22) of /proc/<pid>/stat; false when unreadable. */
static bool proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[48], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n;
    do {
        n = read(fd, buf, sizeof buf - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return false;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold anything, ')' included */
    if (!p || p[1] != ' ' || !p[2]) return false;
    p += 2;
    *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return false;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return true;
}

uint64_t mp__pid_start_time(pid_t pid)
{
    char st;
    uint64_t t;
    return pid > 0 && proc_stat(pid, &st, &t) ? t : 0;
}

bool mp__pid_gone(pid_t pid, uint64_t start_time)
{
    if (pid <= 0) return true;
    if (kill(pid, 0) < 0 && errno == ESRCH) return true;
    char st;
    uint64_t t;
    /* unreadable: it may have died between the two looks */
    if (!proc_stat(pid, &st, &t)) return kill(pid, 0) < 0 && errno == ESRCH;
    return st == 'Z' || st == 'X' || (start_time && t != start_time);
}
