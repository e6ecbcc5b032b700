/* SPDX-License-Identifier: MIT */
/* start_internal.h - how start.c, launch.c, forkserver.c, process.c and the pool share the start
 * methods. Filled in by the launch work; see mproc/start.h for the user's view. */
#ifndef MP_START_INTERNAL_H
#define MP_START_INTERNAL_H

#include "mproc/start.h"

/* MP_START_DEFAULT -> the program-wide default; others unchanged. */
mp_start_method mp__start_method_resolve(mp_start_method m);

/* In mp_init: when this process was spawned by mproc (or is the forkserver, or an MPI worker
 * rank), run what it was started for and never return; else return 0. */
int mp__boot_if_child(int *argc, char ***argv);

/* The MPI entry hook (libmproc-mpi registers it from a constructor): mp_init calls it when the
 * program was launched by mpirun/mpiexec. It returns 0 on rank 0 (main goes on) and never
 * returns on worker ranks. */
typedef int (*mp__entry_hook_fn)(int *argc, char ***argv);
MP_API void mp__entry_hook_set(mp__entry_hook_fn fn);

#endif
