/* SPDX-License-Identifier: MIT */
/* avail.h - which mproc modules this build of mpbench can measure.
 *
 * mpbench uses mproc's public API only and builds inside the mproc tree or against an installed
 * mproc (tools/CMakeLists.txt). A module is measured when its public header is there; otherwise
 * its benchmark is reported as "not available" in the output (never faked). MPB_NO_<MODULE>
 * (e.g. -DMPB_NO_POOL) turns one off by hand.
 */
#ifndef MPBENCH_AVAIL_H
#define MPBENCH_AVAIL_H

#if __has_include("mproc/process.h") && !defined(MPB_NO_PROCESS)
#define MPB_HAVE_PROCESS 1
#endif
#if __has_include("mproc/pipe.h") && !defined(MPB_NO_PIPE)
#define MPB_HAVE_PIPE 1
#endif
#if __has_include("mproc/queue.h") && !defined(MPB_NO_QUEUE)
#define MPB_HAVE_QUEUE 1
#endif
#if __has_include("mproc/shared.h") && !defined(MPB_NO_SHARED)
#define MPB_HAVE_SHARED 1
#endif
#if __has_include("mproc/sync.h") && !defined(MPB_NO_SYNC)
#define MPB_HAVE_SYNC 1
#endif
#if __has_include("mproc/signals.h") && !defined(MPB_NO_SIGNALS)
#define MPB_HAVE_SIGNALS 1
#endif
#if __has_include("mproc/pool.h") && !defined(MPB_NO_POOL)
#define MPB_HAVE_POOL 1
#endif

#endif
