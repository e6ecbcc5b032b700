/* SPDX-License-Identifier: MIT */
/* process_class.c - your own process class: embed mp_process_base, supply run, start calls it. */
#include <stdio.h>
#include <unistd.h>

#include "mproc.h"

/* The "subclass": its own fields plus the library's base. Python's
 *     class ClockProcess(Process):
 *         def __init__(self, interval): ...
 *         def run(self): ...
 */
struct clock_process {
    mp_process_base base;
    int ticks;
    double interval_s;
    int result_fd; /* where run reports how many ticks it made */
};

static int clock_run(mp_process_base *self)
{
    struct clock_process *c = mp_container_of(self, struct clock_process, base);
    int made = 0;
    for (int i = 0; i < c->ticks; i++) {
        printf("  %s: tick %d\n", mp_process_name(self->proc), i + 1);
        usleep((useconds_t)(c->interval_s * 1e6));
        made++;
    }
    return write(c->result_fd, &made, sizeof made) == sizeof made ? 0 : 1;
}

static int clock_process_init(struct clock_process *c, int ticks, double interval_s, int fd)
{
    c->ticks = ticks;
    c->interval_s = interval_s;
    c->result_fd = fd;
    return mp_process_base_init(&c->base, "clock", clock_run);
}

int main(void)
{
    int fds[2];
    if (pipe(fds) < 0) return 1;
    struct clock_process c;
    if (clock_process_init(&c, 3, 0.02, fds[1]) != 0) return 1;
    /* The fixed machinery: start forks, and in the child calls our run. */
    if (mp_process_start(c.base.proc) != 0) return 1;
    if (mp_process_join(c.base.proc, 10.0) != 0) return 1;
    int code = -1, made = 0;
    if (mp_process_exitcode(c.base.proc, &code) != 0 || code != 0) return 1;
    if (read(fds[0], &made, sizeof made) != sizeof made || made != 3) {
        fprintf(stderr, "process_class: expected 3 ticks, got %d\n", made);
        return 1;
    }
    printf("the child's run made %d ticks and exited with %d\n", made, code);
    mp_process_base_free(&c.base);
    close(fds[0]);
    close(fds[1]);
    printf("process_class: ok\n");
    return 0;
}
