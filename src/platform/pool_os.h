/* pool_os.h - OS facts the pool needs beyond platform.h. */
#ifndef MP_POOL_OS_H
#define MP_POOL_OS_H

#include <stdint.h>

/* Like mp__spin_budget, but counts the CPUs that are online rather than the ones the caller may
 * run on: a process pinned to one CPU (sched_setaffinity) still talks to peers on other CPUs, and
 * spinning for them pays just the same. 0 when the peer is known to share our CPU or the machine
 * has one CPU. */
int64_t mp__pool_spin_budget(int peer_cpu);

#endif
