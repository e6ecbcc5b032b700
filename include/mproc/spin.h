/* SPDX-License-Identifier: MIT */
/* mproc/spin.h - busy-waiting under the user's control.
 *
 * A waiter whose peer runs on another CPU (a queue's consumer, a connection's reader, a pool
 * waiting for a result) spins for a few tens of microseconds before it sleeps in the kernel.
 * That is what makes a cross-CPU round trip take about a microsecond instead of the 20-40 us it
 * takes to wake a sleeping process, and it costs CPU: in a ping-pong both processes stay busy
 * while they wait (close to two cores where blocking peers use about half a core). Spinning never
 * happens when both processes share one CPU or the machine has one CPU.
 *
 * There are two switches. Per object: a queue handle (mp_queue_set_spin in mproc/queue.h) and a
 * pool (the spin field of mp_pool_options in mproc/pool.h) can turn spinning off for their own
 * waits; a connection (mproc/pipe.h) has no switch of its own and follows the program-wide one.
 * Program-wide: the switch below, which turns spinning off for every object whatever its own
 * setting says (an object's setting can only forbid spinning, never force it).
 *
 * The program-wide switch's first value comes from the environment variable MPROC_SPIN,
 * read once, the first time anything asks: MPROC_SPIN=0 (also "off", "no", "false") turns
 * spinning off; unset or any other value leaves it on. mp_spin_set() overrides it at any time,
 * for every thread of the calling process; forked children inherit the setting, programs started
 * with exec read MPROC_SPIN again.
 */
#ifndef MPROC_SPIN_H
#define MPROC_SPIN_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Turns busy-waiting on (enabled != 0) or off (0) for the whole process, from the next wait on.
 * Waits in progress finish their current spin (at most a few tens of microseconds). */
MP_API void mp_spin_set(int enabled);

/* 1 when waiters may spin, 0 when they always sleep at once. The first call (or the first wait
 * of any mproc object) reads MPROC_SPIN unless mp_spin_set() was called before. */
MP_API int mp_spin_get(void);

#ifdef __cplusplus
}
#endif
#endif
