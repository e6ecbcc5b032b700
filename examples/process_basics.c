/* SPDX-License-Identifier: MIT */
/* process_basics.c - a Process: name, pid, start, join, is_alive, exit code, and a daemon. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "process_basics: check failed: %s (line %d)\n", #cond, __LINE__);      \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int greet(void *arg)
{
    mp_process *me = mp_process_current();
    printf("  child: I am %s, pid %d, parent %d, greeting %s\n", mp_process_name(me), (int)getpid(),
           (int)mp_process_parent_pid(), (const char *)arg);
    return 3; /* becomes the exit code */
}

static int forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

int main(void)
{
    printf("main process: %s, pid %d, %d CPUs\n", mp_process_name(mp_process_current()),
           (int)getpid(), mp_cpu_count());

    mp_process *p;
    CHECK(mp_process_new(&p, "greeter", greet, "world") == 0);
    CHECK(strcmp(mp_process_name(p), "greeter") == 0);
    CHECK(mp_process_pid(p) == 0 && mp_process_is_alive(p) == 0); /* not started yet */
    CHECK(mp_process_start(p) == 0);
    printf("started %s with pid %d\n", mp_process_name(p), (int)mp_process_pid(p));
    CHECK(mp_process_join(p, 10.0) == 0);
    int code = -1;
    CHECK(mp_process_exitcode(p, &code) == 0 && code == 3);
    CHECK(mp_process_is_alive(p) == 0);
    printf("%s ended with exit code %d\n", mp_process_name(p), code);
    CHECK(mp_process_free(&p) == 0 && p == NULL);

    /* A daemon that would run forever: join with a timeout comes back, terminate ends it. */
    mp_process *d;
    CHECK(mp_process_new(&d, NULL, forever, NULL) == 0); /* default name: Process-N */
    CHECK(mp_process_set_daemon(d, true) == 0);
    CHECK(mp_process_start(d) == 0);
    CHECK(mp_process_join(d, 0.1) == -ETIMEDOUT);
    CHECK(mp_process_is_alive(d) == 1);
    printf("%s (daemon=%d, pid %d) still runs after join(0.1 s)\n", mp_process_name(d),
           (int)mp_process_is_daemon(d), (int)mp_process_pid(d));
    CHECK(mp_process_terminate(d) == 0);
    CHECK(mp_process_join(d, 10.0) == 0);
    CHECK(mp_process_exitcode(d, &code) == 0 && code == -SIGTERM);
    printf("after terminate: exit code %d (-SIGTERM)\n", code);
    CHECK(mp_process_free(&d) == 0);
    printf("process_basics: ok\n");
    return 0;
}
