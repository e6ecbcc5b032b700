/* SPDX-License-Identifier: MIT */
/* start.c - the program-wide start method, the entry call, object kinds.
 *
 * The launch paths themselves (spawn, the forkserver) live in launch.c and forkserver.c.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"
#include "mproc/error.h"
#include "mproc/start.h"
#include "platform/platform.h"
#include "start_internal.h"

void mp__save_argv(int argc, char **argv);

static _Atomic int init_called;
static _Atomic int default_method; /* 0: not read from the environment yet */

int mp__init_called(void)
{
    return atomic_load_explicit(&init_called, memory_order_acquire);
}

int mp_is_initialized(void)
{
    return mp__init_called() ? 1 : 0;
}

int mp_start_method_parse(const char *name, mp_start_method *out)
{
    if (!name || !out) return -EINVAL;
    if (!strcmp(name, "fork"))
        *out = MP_START_FORK;
    else if (!strcmp(name, "spawn"))
        *out = MP_START_SPAWN;
    else if (!strcmp(name, "forkserver"))
        *out = MP_START_FORKSERVER;
    else
        return -EINVAL;
    return 0;
}

const char *mp_start_method_name(mp_start_method method)
{
    switch (method) {
    case MP_START_DEFAULT:
        return "default";
    case MP_START_FORK:
        return "fork";
    case MP_START_SPAWN:
        return "spawn";
    case MP_START_FORKSERVER:
        return "forkserver";
    }
    return "?";
}

/* The environment's choice, read once. A bad name is reported once on stderr and ignored: the
 * variable is the user's, and a typo must not go unnoticed nor stop the program. */
static int method_from_env(void)
{
    const char *e = getenv("MPROC_START_METHOD");
    mp_start_method m = MP_START_FORK;
    if (e && *e && mp_start_method_parse(e, &m) < 0) {
        fprintf(stderr,
                "mproc: MPROC_START_METHOD=%s is not fork, spawn or forkserver; using fork\n", e);
        m = MP_START_FORK;
    }
    return (int)m;
}

mp_start_method mp_get_start_method(void)
{
    int m = atomic_load_explicit(&default_method, memory_order_acquire);
    if (m) return (mp_start_method)m;
    int want = method_from_env();
    int none = 0;
    if (atomic_compare_exchange_strong(&default_method, &none, want)) return (mp_start_method)want;
    return (mp_start_method)none;
}

int mp_set_start_method(mp_start_method method)
{
    if (method != MP_START_FORK && method != MP_START_SPAWN && method != MP_START_FORKSERVER)
        return -EINVAL;
    atomic_store_explicit(&default_method, (int)method, memory_order_release);
    return 0;
}

mp_start_method mp__start_method_resolve(mp_start_method m)
{
    return m == MP_START_DEFAULT ? mp_get_start_method() : m;
}

const char *mp_kind_name(mp_kind kind)
{
    switch (kind) {
    case MP_KIND_QUEUE:
        return "queue";
    case MP_KIND_CONN:
        return "conn";
    case MP_KIND_LOCK:
        return "lock";
    case MP_KIND_SEM:
        return "semaphore";
    case MP_KIND_EVENT:
        return "event";
    case MP_KIND_COND:
        return "condition";
    case MP_KIND_BARRIER:
        return "barrier";
    case MP_KIND_VALUE:
        return "value";
    case MP_KIND_ARRAY:
        return "array";
    case MP_KIND_SHM:
        return "shm";
    }
    return "?";
}

int mp_init(int *argc, char ***argv)
{
    if (!mp__init_called()) {
        mp__save_argv(argc ? *argc : 0, argv ? *argv : NULL);
        mp__self_exe_init();
        atomic_store_explicit(&init_called, 1, memory_order_release);
        (void)mp_get_start_method();
    }
    return mp__boot_if_child(argc, argv);
}

/* ---- threads and fork safety -------------------------------------------------------------------
 */

static _Atomic int own_threads;
static _Atomic int warn_fork = -1; /* -1: MPROC_WARN_FORK_THREADS not read yet */

void mp__own_threads_add(int delta)
{
    atomic_fetch_add_explicit(&own_threads, delta, memory_order_relaxed);
}

int mp_thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return -errno;
    char line[256];
    int n = -ENOENT;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    if (n < 0) return n;
    n -= atomic_load_explicit(&own_threads, memory_order_relaxed);
    return n < 1 ? 1 : n;
}

void mp__fork_warn(void)
{
    int w = atomic_load_explicit(&warn_fork, memory_order_relaxed);
    if (w < 0) {
        const char *e = getenv("MPROC_WARN_FORK_THREADS");
        w = e && *e && strcmp(e, "0") != 0;
        atomic_store_explicit(&warn_fork, w, memory_order_relaxed);
    }
    if (!w) return;
    int n = mp_thread_count();
    if (n > 1)
        fprintf(stderr,
                "mproc: warning: fork from a process running %d threads: a lock another thread "
                "holds now stays locked in the child; use the spawn or forkserver start method\n",
                n);
}
