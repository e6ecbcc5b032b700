/* SPDX-License-Identifier: MIT */
/* start_noinit.c - a program that never calls mp_init(), for test_start_bad: a spawn or
 * forkserver start must fail with MP_ENOTSUP and a message naming mp_init, never run main a second
 * time (main prints one "main-start" line; the test counts them), while fork works. Exit 0 when
 * every start behaved so, 1 otherwise (each line on stdout says what happened). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"

static int t_ok(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    return 0;
}
MP_FUNC_REGISTER("noinit_ok", t_ok)

int main(void)
{
    printf("main-start %d\n", (int)getpid());
    fflush(stdout);
    /* Were main run again in a child, it must not start children in turn. */
    if (getenv("NOINIT_CHILD")) return 3;
    setenv("NOINIT_CHILD", "1", 1);
    int bad = 0;
    const mp_start_method ms[] = {MP_START_SPAWN, MP_START_FORKSERVER, MP_START_FORK};
    for (int i = 0; i < 3; i++) {
        mp_process *p = NULL;
        int r = mp_process_new_func(&p, NULL, "noinit_ok", NULL, 0);
        if (r == 0) r = mp_process_set_start_method(p, ms[i]);
        if (r == 0) r = mp_process_start(p);
        printf("start %s: %d %s: %s\n", mp_start_method_name(ms[i]), r, mp_err_name(r),
               r ? mp_last_error() : "");
        if (ms[i] == MP_START_FORK) {
            bad += r != 0;
        } else {
            bad += r != MP_ENOTSUP;
            bad += strstr(mp_last_error(), "mp_init") == NULL;
        }
        if (r == 0) {
            int code = -1;
            if (mp_process_join(p, 20) != 0) {
                mp_process_kill(p);
                mp_process_join(p, 10);
            }
            mp_process_exitcode(p, &code);
            printf("exit code %d\n", code);
            bad += code != 0;
        }
        mp_process_free(&p);
    }
    if (mp_forkserver_pid() != 0) {
        printf("a forkserver runs: %d\n", (int)mp_forkserver_pid());
        bad++;
    }
    fflush(stdout);
    return bad ? 1 : 0;
}
