/* SPDX-License-Identifier: MIT */
/* error.c - messages and names for mproc's error codes, generated from MP_ERRNO_MAP. */
#include <errno.h>
#include <string.h>

#include "mproc/error.h"

static const char *const own_messages[] = {
#define MP__XX(name, msg) msg,
    MP_ERRNO_MAP(MP__XX)
#undef MP__XX
};

static const char *const own_names[] = {
#define MP__XX(name, msg) "MP_E" #name,
    MP_ERRNO_MAP(MP__XX)
#undef MP__XX
};

/* Index into the tables above, or -1 when the code is not one of mproc's own. */
static int own_index(int code)
{
    int pos = -code - MP_ERR_BASE - 1;
    return (pos >= 0 && pos < MP__EPOS_COUNT) ? pos : -1;
}

/* strerrorname_np() is glibc 2.32+; it returns NULL for unknown values and is async-signal-safe
 * in practice (a table lookup), unlike strerror(), which may format into a static buffer. */
const char *mp_strerror(int code)
{
    if (code == 0) return "success";
    int i = own_index(code);
    if (i >= 0) return own_messages[i];
    if (code < 0 && code > -4096) {
        const char *d = strerrordesc_np(-code);
        if (d) return d;
    }
    return "unknown error";
}

const char *mp_err_name(int code)
{
    if (code == 0) return "0";
    int i = own_index(code);
    if (i >= 0) return own_names[i];
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        if (n) return n;
    }
    return "EUNKNOWN";
}

const char *mp_version(void)
{
#define MP__STR2(x) #x
#define MP__STR(x)  MP__STR2(x)
    return MP__STR(MPROC_VERSION_MAJOR) "." MP__STR(MPROC_VERSION_MINOR) "." MP__STR(
        MPROC_VERSION_PATCH);
}
