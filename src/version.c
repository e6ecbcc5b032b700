/* SPDX-License-Identifier: MIT */
/* version.c - the running library's version and the compatibility rule of mproc/common.h.
 * (mp_version(), the string, lives in error.c beside the other constant-string calls.) */
#include <errno.h>

#include "mproc/common.h"
#include "mproc/error.h"

/* The single number must agree with its parts: a release bumps the parts and this catches a
 * forgotten MPROC_VERSION_NUMBER. */
_Static_assert(MPROC_VERSION_NUMBER == MPROC_VERSION_ENCODE(MPROC_VERSION_MAJOR,
                                                            MPROC_VERSION_MINOR,
                                                            MPROC_VERSION_PATCH),
               "MPROC_VERSION_NUMBER does not match MAJOR.MINOR.PATCH");

int mp_version_number(void)
{
    return MPROC_VERSION_NUMBER;
}

int mp_version_check(int built_with)
{
    if (built_with < 0) return -EINVAL;
    int major = (built_with >> 16) & 0xff, minor = (built_with >> 8) & 0xff;
    if (major != MPROC_VERSION_MAJOR) return MP_ENOTSUP;
    /* 0.x: every minor may break the ABI, so only the same minor will do. */
    if (MPROC_VERSION_MAJOR == 0 ? minor != MPROC_VERSION_MINOR : minor > MPROC_VERSION_MINOR)
        return MP_ENOTSUP;
    return 0;
}
