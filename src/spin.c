/* SPDX-License-Identifier: MIT */
/* spin.c - the program-wide busy-waiting switch (mproc/spin.h); mp__spin_budget obeys it. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mproc/spin.h"

/* -1: not decided yet (MPROC_SPIN not read), 0: off, 1: on. */
static _Atomic int spin_state = -1;

static int from_env(void)
{
    const char *v = getenv("MPROC_SPIN");
    if (!v) return 1;
    static const char *const off[] = {"0", "off", "no", "false"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (strcasecmp(v, off[i]) == 0) return 0;
    return 1;
}

void mp_spin_set(int enabled)
{
    atomic_store_explicit(&spin_state, enabled ? 1 : 0, memory_order_relaxed);
}

int mp_spin_get(void)
{
    int s = atomic_load_explicit(&spin_state, memory_order_relaxed);
    if (s >= 0) return s;
    /* Read the environment once; a racing mp_spin_set wins over it. */
    int e = from_env(), expected = -1;
    if (atomic_compare_exchange_strong(&spin_state, &expected, e)) return e;
    return expected;
}
