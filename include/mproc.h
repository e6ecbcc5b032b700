/* mproc.h - Python's multiprocessing, in C. Include this one header to get every module.
 *
 * Modules (one header each under mproc/):
 *   error    - the error convention: 0 or a negative code; mp_strerror(), mp_err_name()
 *   process  - processes with a target function: start, join, terminate, sentinels
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/error.h"

#endif
