/* SPDX-License-Identifier: MIT */
/* launch.c - starting a child under spawn or forkserver: the request, the boot in the child. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "start_internal.h"

static _Atomic(mp__entry_hook_fn) entry_hook;

void mp__entry_hook_set(mp__entry_hook_fn fn)
{
    atomic_store_explicit(&entry_hook, fn, memory_order_release);
}

int mp__boot_if_child(int *argc, char ***argv)
{
    mp__entry_hook_fn hook = atomic_load_explicit(&entry_hook, memory_order_acquire);
    if (hook) return hook(argc, argv);
    return 0;
}

/* ---- stubs until the launch paths land ---- */
#include <stdarg.h>
#include <stdio.h>
#include "mproc/error.h"
#include "process_internal.h"
void mp__pool_set_error(const char *fmt, ...);

const char *mp__start_error(void)
{
    return mp_last_error();
}

void mp__start_set_error(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mp__pool_set_error("%s", buf);
}

int mp__launch(const mp__launch_req *req, mp__launched *out)
{
    (void)req;
    (void)out;
    return MP_ENOTSUP;
}

int mp__launched_reap(mp__launched *l, const mp__deadline *dl, int *code)
{
    (void)l;
    (void)dl;
    (void)code;
    return -ENOSYS;
}

int mp__launched_signal(const mp__launched *l, int sig)
{
    (void)l;
    (void)sig;
    return -ENOSYS;
}

void mp__launched_close(mp__launched *l)
{
    (void)l;
}

void mp__process_entry(const void *payload, size_t len, int *fds, int nfds)
{
    (void)payload;
    (void)len;
    (void)fds;
    (void)nfds;
    mp__child_exit(70);
}
