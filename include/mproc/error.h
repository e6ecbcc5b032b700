/* SPDX-License-Identifier: MIT */
/* mproc/error.h - one error convention for the whole library.
 *
 * Every mproc call that can fail returns an int: 0 on success, or a negative code.
 *   - Where an errno value says it, the code is that errno negated: -EINVAL for bad arguments,
 *     -ETIMEDOUT when a timeout expired, -ENOMEM, -EPIPE when the peer is gone, -EOWNERDEAD when
 *     a lock was taken over from a dead owner, and so on.
 *   - mproc's own conditions use codes in a reserved range below -MP_ERR_BASE (-10000), so they
 *     never collide with an errno value. They are listed once, in MP_ERRNO_MAP below; the enum,
 *     mp_strerror() and mp_err_name() are all generated from that list.
 *
 * mp_strerror() and mp_err_name() are async-signal-safe and safe after fork: they only return
 * pointers to constant strings.
 */
#ifndef MPROC_ERROR_H
#define MPROC_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MP_ERR_BASE 10000

/* XX(NAME, message). The value of MP_E<NAME> is -(MP_ERR_BASE + position). Append only. */
#define MP_ERRNO_MAP(XX)                                                                           \
    XX(CLOSED, "object is closed")                                                                 \
    XX(EOF, "end of file: the peer closed its end and everything sent has been received")          \
    XX(FULL, "table is full")                                                                      \
    XX(EMPTY, "queue is empty")                                                                    \
    XX(STATE, "call not valid in the object's current state")                                      \
    XX(NOTSTARTED, "process has not been started")                                                 \
    XX(STARTED, "process was already started")                                                     \
    XX(REAPED, "process was already reaped")                                                       \
    XX(SELF, "operation would act on the calling process itself")                                  \
    XX(TOOSMALL, "buffer too small for the message; the message is kept, see the size needed")     \
    XX(WRONGDIR, "pipe end used in the wrong direction")                                           \
    XX(PEERCRED, "peer rejected: it runs as another user")                                         \
    XX(TYPE, "wrong or unknown type code")                                                         \
    XX(RANGE, "index or value out of range")                                                       \
    XX(CORRUPT, "malformed data received from another process")                                    \
    XX(BROKEN, "barrier is broken")                                                                \
    XX(OVERRELEASE, "semaphore released more times than it was acquired")                          \
    XX(NOTOWNER, "lock is not held by the caller")                                                 \
    XX(WORKERDIED, "worker process died while running the task")                                   \
    XX(TASKFAILED, "task reported an error")                                                       \
    XX(NOFUNC, "function is not registered")                                                       \
    XX(TERMINATED, "pool was terminated")                                                          \
    XX(TOOBIG, "message larger than the documented limit")                                         \
    XX(CHILD, "call not allowed in a child or worker process")                                     \
    XX(NOTSUP, "not supported on this system or build")

/* Position of each code in the list; the public value is computed from it by MP__ECODE. */
enum mp__err_pos {
#define MP__XX(name, msg) MP__EPOS_##name,
    MP_ERRNO_MAP(MP__XX)
#undef MP__XX
        MP__EPOS_COUNT
};

#define MP__ECODE(name) (-(MP_ERR_BASE + 1 + (int)MP__EPOS_##name))
#define MP_ECLOSED      MP__ECODE(CLOSED)
#define MP_EEOF         MP__ECODE(EOF)
#define MP_EFULL        MP__ECODE(FULL)
/* Retired: no call returns MP_EEMPTY any more (an empty queue is -ETIMEDOUT, the one "would
 * block" code). Kept, with its name and message, so the codes after it keep their values. */
#define MP_EEMPTY       MP__ECODE(EMPTY)
#define MP_ESTATE       MP__ECODE(STATE)
#define MP_ENOTSTARTED  MP__ECODE(NOTSTARTED)
#define MP_ESTARTED     MP__ECODE(STARTED)
#define MP_EREAPED      MP__ECODE(REAPED)
#define MP_ESELF        MP__ECODE(SELF)
#define MP_ETOOSMALL    MP__ECODE(TOOSMALL)
#define MP_EWRONGDIR    MP__ECODE(WRONGDIR)
#define MP_EPEERCRED    MP__ECODE(PEERCRED)
#define MP_ETYPE        MP__ECODE(TYPE)
#define MP_ERANGE       MP__ECODE(RANGE)
#define MP_ECORRUPT     MP__ECODE(CORRUPT)
#define MP_EBROKEN      MP__ECODE(BROKEN)
#define MP_EOVERRELEASE MP__ECODE(OVERRELEASE)
#define MP_ENOTOWNER    MP__ECODE(NOTOWNER)
#define MP_EWORKERDIED  MP__ECODE(WORKERDIED)
#define MP_ETASKFAILED  MP__ECODE(TASKFAILED)
#define MP_ENOFUNC      MP__ECODE(NOFUNC)
#define MP_ETERMINATED  MP__ECODE(TERMINATED)
#define MP_ETOOBIG      MP__ECODE(TOOBIG)
#define MP_ECHILD       MP__ECODE(CHILD)
#define MP_ENOTSUP      MP__ECODE(NOTSUP)

/* A human-readable message for any code this library returns: mproc's own codes, negated errno
 * values, and 0 ("success"). Never NULL. Unknown codes give "unknown error". */
MP_API const char *mp_strerror(int code);

/* The symbolic name of a code: "MP_ECLOSED", "ETIMEDOUT", "0" for success; "EUNKNOWN" for codes
 * that are neither. Never NULL. */
MP_API const char *mp_err_name(int code);

/* A human-readable detail of the last failed start, registry or pool call of the calling thread
 * (which function name was not found, which object could not travel to a spawned child, what to
 * add to main for spawn, ...). "" before any. Set by the failing call, not cleared by successful
 * ones; the string belongs to the thread. mp_pool_last_error (mproc/pool.h) is the same text. */
MP_API const char *mp_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
