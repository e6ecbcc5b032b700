/* SPDX-License-Identifier: MIT */
/* signals.c - signals: kill -l with default actions, kill by name, alarm + pause, a waiter. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "signals: check failed: %s (line %d)\n", #cond, __LINE__);             \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1. `kill -l`, five to a line, then the default action of a few. */
static int list_signals(void)
{
    int sigs[80];
    int n = mp_signal_list(sigs, 80);
    CHECK(n > 31 && n <= 80);
    printf("%d signals (kill -l):\n", n);
    for (int i = 0; i < n; i++)
        printf("%2d) %-12s%s", sigs[i], mp_signal_name(sigs[i]),
               (i % 5 == 4 || i == n - 1) ? "\n" : "");
    const char *show[] = {"TERM", "sigchld", "SIGSTOP", "cont", "SEGV", "RTMIN+3"};
    for (size_t i = 0; i < sizeof show / sizeof show[0]; i++) {
        int sig;
        mp_signal_action a;
        CHECK(mp_signal_from_name(show[i], &sig) == 0);
        CHECK(mp_signal_default_action(sig, &a) == 0);
        printf("  %-8s -> %2d %-11s default: %-9s (%s)\n", show[i], sig, mp_signal_name(sig),
               mp_signal_action_name(a), mp_signal_description(sig));
    }
    int sig;
    CHECK(mp_signal_from_name("NOSUCH", &sig) == -EINVAL);
    return 0;
}

/* 2. kill -TERM <child>: a child that would sleep forever, ended by a signal given by name. */
static int sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static int kill_child_by_name(void)
{
    mp_process *p;
    CHECK(mp_process_new(&p, "sleeper", sleeper, NULL) == 0);
    CHECK(mp_process_start(p) == 0);
    int sig;
    CHECK(mp_signal_from_name("TERM", &sig) == 0);
    printf("sending %s to %s (pid %d)\n", mp_signal_name(sig), mp_process_name(p),
           (int)mp_process_pid(p));
    CHECK(mp_signal_send_process(p, sig) == 0);
    CHECK(mp_process_join(p, 10.0) == 0);
    int code;
    CHECK(mp_process_exitcode(p, &code) == 0);
    printf("%s ended with exit code %d (-%s)\n", mp_process_name(p), code, mp_signal_name(-code));
    CHECK(code == -SIGTERM);
    mp_process_free(&p);
    return 0;
}

/* 3. alarm + pause with a handler; a later alarm replaces the earlier one. */
static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    /* Only async-signal-safe calls in here: write(2) and mp_signal_name. */
    int saved = errno;
    const char *name = mp_signal_name(sig);
    (void)!write(STDOUT_FILENO, "  handler: got ", 15);
    (void)!write(STDOUT_FILENO, name, strlen(name));
    (void)!write(STDOUT_FILENO, "\n", 1);
    alarms++;
    errno = saved;
}

static int alarm_and_pause(void)
{
    mp_signal_disposition old;
    CHECK(mp_signal_handle(SIGALRM, on_alarm, 0, &old) == 0);
    double prev;
    CHECK(mp_signal_alarm(5.0, &prev) == 0 && prev == 0);
    CHECK(mp_signal_alarm(0.3, &prev) == 0); /* replaces the 5 s alarm */
    printf("alarm in 5 s, then in 0.3 s: the second replaced the first (%.2f s were left)\n", prev);
    CHECK(prev > 4 && prev <= 5);
    fflush(stdout);
    double t0 = now();
    /* pause until the handler ran; the flag check covers an alarm that fired before pause. */
    while (!alarms)
        CHECK(mp_signal_pause(10.0) == 0);
    double took = now() - t0;
    printf("pause returned after %.2f s, %d alarm(s)\n", took, (int)alarms);
    CHECK(alarms == 1 && took < 4.0);
    double left;
    CHECK(mp_signal_alarm_left(&left) == 0 && left == 0);
    /* 0 cancels: nothing fires */
    CHECK(mp_signal_alarm(1.0, NULL) == 0);
    CHECK(mp_signal_alarm(0, &prev) == 0 && prev > 0);
    CHECK(mp_signal_pause(0.2) == -ETIMEDOUT && alarms == 1);
    printf("alarm(0) cancelled an alarm with %.2f s left\n", prev);
    CHECK(mp_signal_restore(SIGALRM, &old) == 0);
    return 0;
}

/* 4. no handler code: the parent takes signals from a child as data, with the sender's pid. */
static int notifier(void *arg)
{
    (void)arg;
    pid_t parent = mp_process_parent_pid();
    if (mp_signal_send(parent, SIGUSR1) != 0) return 1;
    if (mp_signal_send(parent, SIGUSR2) != 0) return 2;
    return 0;
}

static int synchronous_wait(void)
{
    int sigs[] = {SIGUSR1, SIGUSR2};
    mp_sigwaiter *w;
    CHECK(mp_sigwaiter_new(&w, sigs, 2) == 0); /* blocks them: nothing arrives unannounced */
    mp_process *p;
    CHECK(mp_process_new(&p, "notifier", notifier, NULL) == 0);
    CHECK(mp_process_start(p) == 0);
    bool seen1 = false, seen2 = false;
    for (int i = 0; i < 2; i++) {
        mp_siginfo info;
        CHECK(mp_sigwaiter_wait(w, &info, 10.0) == 0);
        printf("waited: %s from pid %d (%s)\n", mp_signal_name(info.signo), (int)info.pid,
               info.pid == mp_process_pid(p) ? "the notifier" : "someone else");
        CHECK(info.pid == mp_process_pid(p));
        seen1 |= info.signo == SIGUSR1;
        seen2 |= info.signo == SIGUSR2;
    }
    CHECK(seen1 && seen2);
    CHECK(mp_sigwaiter_wait(w, NULL, 0.1) == -ETIMEDOUT);
    printf("a third wait timed out after 0.1 s, as asked\n");
    CHECK(mp_process_join(p, 10.0) == 0);
    int code;
    CHECK(mp_process_exitcode(p, &code) == 0 && code == 0);
    mp_process_free(&p);
    mp_sigwaiter_free(&w); /* unblocks SIGUSR1/2 again */
    return 0;
}

int main(void)
{
    if (list_signals() || kill_child_by_name() || alarm_and_pause() || synchronous_wait()) return 1;
    printf("signals: all checks passed\n");
    return 0;
}
