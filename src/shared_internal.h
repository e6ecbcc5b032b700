/* SPDX-License-Identifier: MIT */
/* shared_internal.h - hooks of shared.c for the rest of the library. */
#ifndef MP_SHARED_INTERNAL_H
#define MP_SHARED_INTERNAL_H

/* Unlinks every named shm block the calling process created and still owns (not kept, not yet
 * unlinked). The atexit handler calls it; a child that ends with _exit() (mp__child_exit) should
 * call it first, so that blocks it created do not outlive it. Not async-signal-safe. */
void mp__shm_exit_cleanup(void);

#endif
