/* SPDX-License-Identifier: MIT */
/* handoff_stub.c - weak stand-ins until handoff.c lands (removed then). */
#include <stddef.h>

#include "handoff.h"
#include "mproc/error.h"

__attribute__((weak)) int mp__handoff_export(int kind, const void *obj, mp__handoff *h,
                                             const char **why)
{
    (void)kind;
    (void)obj;
    (void)h;
    *why = "not supported yet";
    return MP_ENOTSUP;
}

__attribute__((weak)) int mp__handoff_import(mp__handoff *h, void **out)
{
    (void)h;
    (void)out;
    return MP_ENOTSUP;
}

__attribute__((weak)) void mp__handoff_close(mp__handoff *h)
{
    (void)h;
}
