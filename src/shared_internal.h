/* SPDX-License-Identifier: MIT */
/* shared_internal.h - the shared-memory module's sources and what they give the rest of the
 * library.
 *
 *   shared.c      Value and Array: the type table (mp_type_size/name) and the conversions between
 *                 C values and element bits, the typed shared object (one anonymous mapping with an
 *                 optional RLock), its one constructor and destructor, and the get/set/read/write,
 *                 add and CAS calls. Nothing of it is used outside the file.
 *   shared_shm.c  Named blocks (mp_shm_*): create and attach by name, unlink with an identity
 *                 check, keep, the sweep of dead creators' leftovers, and the exit hook below.
 *
 * The two files share no private state: a Value or Array is never named, and a block holds no
 * typed object of its own.
 */
#ifndef MP_SHARED_INTERNAL_H
#define MP_SHARED_INTERNAL_H

/* (shared_shm.c) Unlinks every named shm block the calling process created and still owns (not
 * kept, not yet unlinked). Registered as an exit hook (process_internal.h) when the process first
 * owns a block, so it runs at exit() and in a fork child ending with mp__child_exit; tests call it
 * directly. Not async-signal-safe. */
void mp__shm_exit_cleanup(void);

#endif
