/* avail.h - which mproc modules this build of mpbench can measure.
 *
 * mpbench is built inside the mproc tree. A module is measured when both its public header and
 * its source file are in the tree; otherwise its benchmark is reported as "not available" in the
 * output (never faked). MPB_NO_<MODULE> (e.g. -DMPB_NO_POOL) turns one off by hand.
 */
#ifndef MPBENCH_AVAIL_H
#define MPBENCH_AVAIL_H

#if __has_include("mproc/process.h") && __has_include("../../src/process.c") &&                    \
                                                      !defined(MPB_NO_PROCESS)
#define MPB_HAVE_PROCESS 1
#endif
#if __has_include("mproc/pipe.h") && __has_include("../../src/pipe.c") && !defined(MPB_NO_PIPE)
#define MPB_HAVE_PIPE 1
#endif
#if __has_include("mproc/queue.h") && __has_include("../../src/queue.c") && !defined(MPB_NO_QUEUE)
#define MPB_HAVE_QUEUE 1
#endif
#if __has_include("mproc/shared.h") && __has_include("../../src/shared.c") &&                      \
                                                     !defined(MPB_NO_SHARED)
#define MPB_HAVE_SHARED 1
#endif
#if __has_include("mproc/sync.h") && __has_include("../../src/sync.c") && !defined(MPB_NO_SYNC)
#define MPB_HAVE_SYNC 1
#endif
#if __has_include("mproc/signals.h") && __has_include("../../src/signals.c") &&                    \
                                                      !defined(MPB_NO_SIGNALS)
#define MPB_HAVE_SIGNALS 1
#endif
#if __has_include("mproc/pool.h") && __has_include("../../src/pool.c") && !defined(MPB_NO_POOL)
#define MPB_HAVE_POOL 1
#endif

#endif
