/* SPDX-License-Identifier: MIT */
/* deadline.c - the public face of the platform's deadlines (mproc/common.h). */
#include <errno.h>

#include "mproc/common.h"
#include "platform/platform.h"

mp_deadline mp_deadline_in(double timeout)
{
    mp__deadline d = mp__deadline_in(timeout);
    return (mp_deadline){d.at_ns};
}

double mp_deadline_left(const mp_deadline *d)
{
    if (!d) return 0;
    if (d->at_ns < 0) return MP_FOREVER;
    mp__deadline pd = {d->at_ns};
    return (double)mp__deadline_left_ns(&pd) * 1e-9;
}

int mp_deadline_is_expired(const mp_deadline *d)
{
    if (!d) return -EINVAL;
    if (d->at_ns < 0) return 0;
    mp__deadline pd = {d->at_ns};
    return mp__deadline_left_ns(&pd) == 0;
}
