/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=90 */
/* test_process_nopidfd.c - all of test_process.c again, through the pidfd-less fallback (death
 * sockets, platform.h) that kernels before 5.3, seccomp sandboxes and valgrind 3.19 get. */
#include <stdbool.h>

#include "platform/platform.h"

__attribute__((constructor)) static void force_fallback(void)
{
    mp__pidfd_force_fallback();
}

#include "test_process.c"
