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
