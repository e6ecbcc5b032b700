/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=90 */
/* test_process_orphans_nopidfd.c - all of test_process_orphans.c again, through the pidfd-less
 * fallback (death sockets, platform.h). */
#include <stdbool.h>

#include "platform/platform.h"

__attribute__((constructor)) static void force_fallback(void)
{
    mp__pidfd_force_fallback();
}

#include "test_process_orphans.c"
