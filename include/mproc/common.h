/* SPDX-License-Identifier: MIT */
/* mproc/common.h - what every mproc module shares: export macro, timeouts.
 *
 * Conventions that hold in every module (docs/conventions.md has them all):
 *   - Functions return int: 0 on success or a negative error code (see mproc/error.h).
 *   - Constructors fill an out pointer: mp_<noun>_new(&obj, ...). The caller owns the object.
 *   - Destructors have one shape, int mp_<noun>_free(mp_<noun> **pp): they release the object
 *     and set the pointer to NULL (the CZMQ idiom), so a later call through the same variable
 *     gets -EINVAL instead of touching freed memory. Passing NULL or &NULL is a no-op (0).
 *   - Predicates have one shape, int mp_<noun>_is_<adj>(const mp_<noun> *): 1, 0 or -error.
 *   - Timeouts are seconds as a double, measured on CLOCK_MONOTONIC: only MP_FOREVER (or
 *     +INFINITY) waits without limit; 0, any other negative value and NaN mean "do not wait".
 *     "Not within the time given" is -ETIMEDOUT however the time was given (also the "would
 *     block" of a zero timeout). A signal that interrupts a wait never surfaces as EINTR: the
 *     wait resumes against the same deadline.
 */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MP_BUILDING)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

/* Wait without a time limit. The only negative timeout that does: any other one is a deadline
 * that has already passed. */
#define MP_FOREVER (-1.0)

/* A point in time on CLOCK_MONOTONIC, for loops that wait repeatedly against one overall limit:
 *     mp_deadline d = mp_deadline_in(5.0);
 *     while (...) { int r = mp_queue_get(q, buf, cap, &n, mp_deadline_left(&d)); ... }
 * Plain data: copy it freely. Async-signal-safe. */
typedef struct mp_deadline {
    int64_t at_ns; /* -1: never */
} mp_deadline;

/* The deadline `timeout` seconds from now (MP_FOREVER or +INFINITY: never; any other negative
 * value or NaN: now). */
MP_API mp_deadline mp_deadline_in(double timeout);
/* Seconds left: 0 once passed, MP_FOREVER for a deadline that never comes. Pass it on as a
 * timeout. */
MP_API double mp_deadline_left(const mp_deadline *d);
/* 1 when the deadline has passed, 0 when not (or never), -EINVAL for NULL. */
MP_API int mp_deadline_is_expired(const mp_deadline *d);

/* The struct that contains the member `ptr` points at: for "subclassing" by embedding. */
#define mp_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- version ---------------------------------------------------------------------------------
 * The version of these headers. The build reads it from here (CMakeLists.txt), so the library,
 * mproc.pc and the CMake package always carry the same numbers.
 *
 * Compatibility (see CHANGELOG.md): while MAJOR is 0, every MINOR release may change the API and
 * the ABI, so a program runs only with the minor it was built against (the shared library's
 * soname is libmproc.so.0.MINOR). From 1.0 on, a MINOR release only adds, and the soname is
 * libmproc.so.MAJOR. PATCH releases never change the API or ABI. */
#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0

/* One number for comparisons: 0xMMmmpp (0.1.0 is 0x000100, 1.2.3 would be 0x010203). */
#define MPROC_VERSION_NUMBER                      0x000100
#define MPROC_VERSION_ENCODE(major, minor, patch) (((major) << 16) | ((minor) << 8) | (patch))

/* Compile time: true when these headers are at least major.minor.patch, e.g.
 *     #if MPROC_VERSION_AT_LEAST(0, 2, 0)  ...use something 0.2 added...  #endif */
#define MPROC_VERSION_AT_LEAST(major, minor, patch)                                                \
    (MPROC_VERSION_NUMBER >= MPROC_VERSION_ENCODE(major, minor, patch))

/* The running library's version string, "MAJOR.MINOR.PATCH" (constant; async-signal-safe). It may
 * differ from the headers the program was built with: see mp_version_check. */
MP_API const char *mp_version(void);

/* The running library's MPROC_VERSION_NUMBER. Async-signal-safe. */
MP_API int mp_version_number(void);

/* Whether the running library can serve a program built against headers of version
 * `built_with` (an MPROC_VERSION_NUMBER): same MAJOR; while MAJOR is 0, the same MINOR; from 1.0
 * on, a library MINOR at least the program's. PATCH never matters. Returns 0 when compatible,
 * MP_ENOTSUP when not (see mproc/error.h), -EINVAL for a negative number. Async-signal-safe.
 * Call it as MPROC_VERSION_CHECK() at the start of main to catch a program run against the wrong
 * libmproc.so (for instance through LD_LIBRARY_PATH). */
MP_API int mp_version_check(int built_with);
#define MPROC_VERSION_CHECK() mp_version_check(MPROC_VERSION_NUMBER)

#ifdef __cplusplus
}
#endif
#endif
