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

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0

/* The library's version string, "MAJOR.MINOR.PATCH". */
MP_API const char *mp_version(void);

#ifdef __cplusplus
}
#endif
#endif
