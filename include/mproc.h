/* SPDX-License-Identifier: MIT */
/* mproc.h - Python's multiprocessing, in C. Include this one header to get every module.
 *
 * Modules (one header each under mproc/; one source each under src/):
 *   error    - the error convention: 0 or a negative code; mp_strerror(), mp_err_name()
 *   process  - processes with a target function: start, join, terminate, sentinels, double fork
 *   pipe     - message connections: Pipe (duplex or one-way), send/recv/poll, mp_wait
 *   socket   - local sockets: Listener and Client, peer credentials
 *   queue    - multi-producer multi-consumer message queue in shared memory; JoinableQueue
 *   shared   - Value, Array and named shared memory blocks
 *   sync     - Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier
 *   signals  - signal names, sending, handlers, alarm, pause, synchronous waits
 *   pool     - the process pool: apply, apply_async, map, imap, starmap
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/error.h"
#include "mproc/start.h"
#include "mproc/process.h"
#if __has_include("mproc/pipe.h")
#include "mproc/pipe.h"
#endif
#if __has_include("mproc/socket.h")
#include "mproc/socket.h"
#endif
#if __has_include("mproc/queue.h")
#include "mproc/queue.h"
#endif
#if __has_include("mproc/shared.h")
#include "mproc/shared.h"
#endif
#if __has_include("mproc/sync.h")
#include "mproc/sync.h"
#endif
#if __has_include("mproc/signals.h")
#include "mproc/signals.h"
#endif
#if __has_include("mproc/pool.h")
#include "mproc/pool.h"
#endif
#include "mproc/spin.h"

#endif
