/* SPDX-License-Identifier: MIT */
/* fuzz_pool_args.c - libFuzzer target for mp_args_unpack, the decoder of starmap argument tuples
 * (bytes a task receives from the process that submitted it).
 *
 * Any input must give 0, MP_ECORRUPT or MP_ETOOSMALL, never a crash or an out-of-bounds read; a
 * tuple that decodes must pack back to exactly the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mproc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp_buf v[16];
    size_t n = 0;
    int rc = mp_args_unpack(data, size, v, 16, &n);
    if (rc != 0 && rc != MP_ECORRUPT && rc != MP_ETOOSMALL) abort();
    if (rc != 0) return 0;
    if (n > 16) abort();
    size_t need = 0;
    (void)mp_args_pack(v, n, NULL, 0, &need); /* asks for the size: MP_ETOOSMALL */
    if (need != size) abort();
    uint8_t *again = malloc(need ? need : 1);
    if (!again) return 0;
    if (mp_args_pack(v, n, again, need, NULL) != 0) abort();
    if (memcmp(again, data, size) != 0) abort();
    free(again);
    return 0;
}
