/* SPDX-License-Identifier: MIT */
/* mproc/common.h - what every mproc module shares: export macro, timeouts.
 *
 * Conventions that hold in every module:
 *   - Functions return int: 0 on success or a negative error code (see mproc/error.h).
 *   - Constructors fill an out pointer: mp_<noun>_new(&obj, ...). The caller owns the object.
 *   - Destructors take the address of the caller's pointer, release the object and set the
 *     pointer to NULL (the CZMQ idiom), so a later call through the same variable gets -EINVAL
 *     instead of touching freed memory: mp_<noun>_free(&obj). Passing NULL or &NULL is a no-op.
 *   - Timeouts are seconds as a double, measured on CLOCK_MONOTONIC: MP_FOREVER (< 0) waits
 *     without limit, 0 polls. A signal that interrupts a wait never surfaces as EINTR: the wait
 *     resumes against the same deadline.
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

/* Wait without a time limit. Any negative timeout means the same. */
#define MP_FOREVER (-1.0)

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
