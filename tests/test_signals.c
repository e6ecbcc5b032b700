/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_signals.c - signals: names, default actions, send, handlers, alarm, pause, synchronous
 * waits (also under a SIGALRM storm), bad input. Cases that install handlers or block signals in
 * the test process itself restore them and check that they did (assert_signals_clean). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/process.h"
#include "mproc/signals.h"
#include "mp_test.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* One byte from fd within timeout_s: a child that hangs must fail the case, not the whole run. */
static int read_byte_within(int fd, char *c, double timeout_s)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    double end = now_s() + timeout_s;
    for (;;) {
        int ms = (int)((end - now_s()) * 1000);
        if (ms < 0) ms = 0;
        int r = poll(&pfd, 1, ms);
        if (r > 0) return read(fd, c, 1) == 1;
        if (r == 0) return 0;
        if (errno != EINTR) return 0;
    }
}

static volatile sig_atomic_t hits;
static volatile sig_atomic_t last_sig;
static int notify_fd = -1; /* the handler writes one byte here when >= 0 */

static void on_signal(int sig)
{
    int saved = errno;
    hits++;
    last_sig = sig;
    if (notify_fd >= 0) {
        char c = 'h';
        (void)!write(notify_fd, &c, 1);
    }
    errno = saved;
}

/* The signals these tests touch in the test process are back to default and unblocked. */
static void assert_signals_clean(void)
{
    int sigs[] = {SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD};
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        sigaction(sigs[i], NULL, &sa);
        assert_true(sa.sa_handler == SIG_DFL);
        assert_false(sigismember(&mask, sigs[i]));
    }
    struct itimerval it;
    getitimer(ITIMER_REAL, &it);
    assert_true(it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0);
}

/* Teardown: after a failed case, put the signals back so that later cases start clean (the case
 * itself checks with assert_signals_clean that it restored everything on success). */
static int signals_teardown(void **state)
{
    struct itimerval off = {{0, 0}, {0, 0}};
    int sigs[] = {SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&set, sigs[i]);
    /* Block, stop the timer, drop what is pending, and only then restore the defaults: a
     * SIGALRM still in flight must not meet SIG_DFL (it would end the test program). */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    setitimer(ITIMER_REAL, &off, NULL);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) > 0) {
    }
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return mp_test_guard_teardown(state);
}
#define SIG_TEST(fn) cmocka_unit_test_setup_teardown(fn, mp_test_guard_setup, signals_teardown)

static void block(int sig, sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    pthread_sigmask(SIG_BLOCK, &s, old);
}

/* ---- names and numbers ---------------------------------------------------------------------- */

/* bash's `kill -l N` for N = 1..64 ("-" where bash has no name), as a reference table. */
static int bash_names(char names[65][64])
{
    FILE *f = popen(
        "bash -c 'for i in $(seq 1 64); do n=$(kill -l $i 2>/dev/null); echo ${n:--}; done'", "r");
    if (!f) return -1;
    int n = 0;
    char line[64];
    while (n < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(names[++n], sizeof names[0], "%s", line);
    }
    pclose(f);
    return n;
}

static void names_match_kill_l(void **state)
{
    char ref[65][64];
    int n = bash_names(ref);
    if (n != 64) skip();
    int valid = 0;
    for (int s = 1; s <= 64; s++) {
        const char *name = mp_signal_name(s);
        if (strcmp(ref[s], "-") == 0) {
            assert_null(name);
            assert_false(mp_signal_is_valid(s));
            continue;
        }
        valid++;
        assert_non_null(name);
        assert_true(mp_signal_is_valid(s));
        char want[80];
        snprintf(want, sizeof want, "SIG%s", ref[s]);
        assert_string_equal(name, want);
    }
    assert_int_equal(mp_signal_list(NULL, 0), valid);
}

static void names_round_trip_every_signal(void **state)
{
    int list[80];
    int n = mp_signal_list(list, 80);
    assert_int_equal(n, 31 + (SIGRTMAX - SIGRTMIN + 1));
    for (int i = 0; i < n; i++) {
        int s = list[i], got = -1;
        if (i > 0) assert_true(list[i] > list[i - 1]);
        const char *name = mp_signal_name(s);
        assert_non_null(name);
        assert_int_equal(strncmp(name, "SIG", 3), 0);
        assert_mp_ok(mp_signal_from_name(name, &got));
        assert_int_equal(got, s);
        /* without the prefix, and in lower case */
        char lower[32];
        size_t k = 0;
        for (const char *p = name + 3; *p && k < sizeof lower - 1; p++)
            lower[k++] = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
        lower[k] = '\0';
        got = -1;
        assert_mp_ok(mp_signal_from_name(name + 3, &got));
        assert_int_equal(got, s);
        got = -1;
        assert_mp_ok(mp_signal_from_name(lower, &got));
        assert_int_equal(got, s);
        char digits[8];
        snprintf(digits, sizeof digits, "%d", s);
        got = -1;
        assert_mp_ok(mp_signal_from_name(digits, &got));
        assert_int_equal(got, s);
        assert_non_null(mp_signal_description(s));
    }
    /* the standard names, against glibc's own abbreviations */
    for (int s = 1; s < 32; s++) {
        const char *abbrev = sigabbrev_np(s);
        if (!abbrev) continue;
        int got = -1;
        assert_mp_ok(mp_signal_from_name(abbrev, &got));
        assert_int_equal(got, s);
    }
}

static void names_rt_and_aliases(void **state)
{
    int rtmin = SIGRTMIN, rtmax = SIGRTMAX, mid = (SIGRTMIN + SIGRTMAX) / 2, got;
    assert_string_equal(mp_signal_name(rtmin), "SIGRTMIN");
    assert_string_equal(mp_signal_name(rtmin + 1), "SIGRTMIN+1");
    assert_string_equal(mp_signal_name(rtmax), "SIGRTMAX");
    assert_string_equal(mp_signal_name(rtmax - 2), "SIGRTMAX-2");
    char buf[32];
    snprintf(buf, sizeof buf, "SIGRTMIN+%d", mid - rtmin);
    assert_string_equal(mp_signal_name(mid), buf);
    snprintf(buf, sizeof buf, "SIGRTMAX-%d", rtmax - mid - 1);
    assert_string_equal(mp_signal_name(mid + 1), buf);

    struct {
        const char *name;
        int want;
    } ok[] = {
        {"SIGTERM", SIGTERM},      {"TERM", SIGTERM},         {"term", SIGTERM},
        {"SigTerm", SIGTERM},      {"sigkill", SIGKILL},      {"SIGIOT", SIGABRT},
        {"poll", SIGIO},           {"SIGCLD", SIGCHLD},       {"RTMIN", rtmin},
        {"SIGRTMIN+0", rtmin},     {"sigrtmin+3", rtmin + 3}, {"RTMAX-0", rtmax},
        {"SIGRTMAX-4", rtmax - 4}, {"rtmax", rtmax},          {"9", SIGKILL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        got = -1;
        assert_mp_ok(mp_signal_from_name(ok[i].name, &got));
        assert_int_equal(got, ok[i].want);
    }
    /* RTMIN+n reaches up to RTMAX, and RTMAX-n down to RTMIN */
    snprintf(buf, sizeof buf, "RTMIN+%d", rtmax - rtmin);
    assert_mp_ok(mp_signal_from_name(buf, &got));
    assert_int_equal(got, rtmax);
    snprintf(buf, sizeof buf, "RTMAX-%d", rtmax - rtmin);
    assert_mp_ok(mp_signal_from_name(buf, &got));
    assert_int_equal(got, rtmin);
}

static void names_unknown_are_errors(void **state)
{
    const char *bad[] = {"",
                         "SIG",
                         "FOO",
                         "SIGTERMX",
                         "TER",
                         "SIGSIGTERM",
                         " TERM",
                         "TERM ",
                         "RTMIN+",
                         "RTMIN-1",
                         "RTMAX+1",
                         "RTMIN+31",
                         "RTMAX-31",
                         "RTMIN+x",
                         "0",
                         "32",
                         "33",
                         "65",
                         "-1",
                         "+15",
                         "99999999999",
                         "SIGRTMIN+99999999999",
                         "RTMID"};
    char buf[32];
    int got = 12345;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_mp(-EINVAL, mp_signal_from_name(bad[i], &got));
        assert_int_equal(got, 12345); /* untouched */
    }
    snprintf(buf, sizeof buf, "RTMIN+%d", SIGRTMAX - SIGRTMIN + 1);
    assert_mp(-EINVAL, mp_signal_from_name(buf, &got));
    assert_mp(-EINVAL, mp_signal_from_name(NULL, &got));
    assert_mp(-EINVAL, mp_signal_from_name("TERM", NULL));

    int badnum[] = {0, -1, 32, 33, 65, 1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof badnum / sizeof badnum[0]; i++) {
        mp_signal_action a;
        assert_null(mp_signal_name(badnum[i]));
        assert_null(mp_signal_description(badnum[i]));
        assert_false(mp_signal_is_valid(badnum[i]));
        assert_mp(-EINVAL, mp_signal_default_action(badnum[i], &a));
    }
}

static void list_bad_input_and_truncation(void **state)
{
    int all = mp_signal_list(NULL, 0);
    assert_true(all > 31);
    int few[3] = {0, 0, 0};
    assert_int_equal(mp_signal_list(few, 3), all); /* the count even when truncated */
    assert_int_equal(few[0], 1);
    assert_int_equal(few[2], 3);
    assert_mp(-EINVAL, mp_signal_list(NULL, 3));
    assert_mp(-EINVAL, mp_signal_list(few, -1));
}

static void default_actions(void **state)
{
    struct {
        int sig;
        mp_signal_action want;
    } cases[] = {
        {SIGTERM, MP_SIGNAL_TERMINATE},  {SIGKILL, MP_SIGNAL_TERMINATE},
        {SIGUSR1, MP_SIGNAL_TERMINATE},  {SIGCHLD, MP_SIGNAL_IGNORE},
        {SIGWINCH, MP_SIGNAL_IGNORE},    {SIGURG, MP_SIGNAL_IGNORE},
        {SIGSTOP, MP_SIGNAL_STOP},       {SIGTSTP, MP_SIGNAL_STOP},
        {SIGCONT, MP_SIGNAL_CONTINUE},   {SIGSEGV, MP_SIGNAL_CORE},
        {SIGABRT, MP_SIGNAL_CORE},       {SIGQUIT, MP_SIGNAL_CORE},
        {SIGRTMIN, MP_SIGNAL_TERMINATE}, {SIGRTMAX, MP_SIGNAL_TERMINATE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mp_signal_action a = 0;
        assert_mp_ok(mp_signal_default_action(cases[i].sig, &a));
        assert_int_equal(a, cases[i].want);
    }
    assert_mp(-EINVAL, mp_signal_default_action(SIGTERM, NULL));
    assert_string_equal(mp_signal_action_name(MP_SIGNAL_TERMINATE), "terminate");
    assert_string_equal(mp_signal_action_name(MP_SIGNAL_CORE), "core");
    assert_string_equal(mp_signal_action_name(MP_SIGNAL_STOP), "stop");
    assert_string_equal(mp_signal_action_name(MP_SIGNAL_CONTINUE), "continue");
    assert_string_equal(mp_signal_action_name(MP_SIGNAL_IGNORE), "ignore");
    assert_null(mp_signal_action_name((mp_signal_action)0));
    assert_null(mp_signal_action_name((mp_signal_action)99));
    assert_string_equal(mp_signal_description(SIGTERM), "Terminated");
    assert_string_equal(mp_signal_description(SIGRTMIN + 3), "Real-time signal 3");
}

/* ---- sending and handlers ------------------------------------------------------------------- */

/* Child: handler for SIGUSR1, report ready on `ready`, wait (race-free: blocked until suspend)
 * until the handler ran. */
static void child_wait_usr1(int ready)
{
    hits = 0;
    sigset_t old;
    block(SIGUSR1, &old);
    MP_CHILD_CHECK(mp_signal_handle(SIGUSR1, on_signal, 0, NULL) == 0);
    MP_CHILD_CHECK(write(ready, "r", 1) == 1);
    int sig = SIGUSR1;
    while (!hits)
        MP_CHILD_CHECK(mp_signal_suspend(&sig, 1, 10) == 0);
    MP_CHILD_CHECK(last_sig == SIGUSR1);
    mp_test_child_exit(0);
}

static void send_to_child_runs_its_handler(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(p[0]);
        child_wait_usr1(p[1]);
    }
    close(p[1]);
    char c;
    assert_true(read_byte_within(p[0], &c, mp_test_timeout(10)));
    close(p[0]);
    int sig;
    assert_mp_ok(mp_signal_from_name("usr1", &sig));
    assert_mp_ok(mp_signal_send(pid, sig));
    assert_child_ok(pid);
    /* once reaped, the pid is gone */
    assert_mp(-ESRCH, mp_signal_probe(pid));
}

static void send_kills_child_with_named_signal(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    assert_mp_ok(mp_signal_probe(pid));
    int sig;
    assert_mp_ok(mp_signal_from_name("SIGTERM", &sig));
    assert_mp_ok(mp_signal_send(pid, sig));
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(5)), 128 + SIGTERM);
}

static int ready_pipe_w = -1;

static int t_handler_target(void *arg)
{
    (void)arg;
    hits = 0;
    if (mp_signal_handle(SIGUSR1, on_signal, 0, NULL) != 0) return 2;
    if (write(ready_pipe_w, "r", 1) != 1) return 3;
    /* the parent keeps sending until we exit, so a plain pause cannot miss it */
    while (!hits)
        if (mp_signal_pause(10) != 0) return 4;
    return last_sig == SIGUSR1 ? 0 : 5;
}

static int t_sleep(void *arg)
{
    (void)arg;
    sleep_s(30);
    return 0;
}

static void send_to_process_object(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    ready_pipe_w = p[1];
    mp_process *proc;
    assert_mp_ok(mp_process_new(&proc, "sig-target", t_handler_target, NULL));
    assert_mp(MP_ENOTSTARTED, mp_signal_send_process(proc, SIGUSR1));
    assert_mp(-EINVAL, mp_signal_send_process(proc, 0));
    assert_mp_ok(mp_process_start(proc));
    close(p[1]);
    char c;
    assert_true(read_byte_within(p[0], &c, mp_test_timeout(10)));
    close(p[0]);
    /* pause() has the classic race; send until the child is done */
    int rc;
    double end = now_s() + mp_test_timeout(10);
    do {
        assert_mp_ok(mp_signal_send_process(proc, SIGUSR1));
        rc = mp_process_join(proc, 0.02);
    } while (rc == -ETIMEDOUT && now_s() < end);
    assert_mp_ok(rc);
    int code = -1;
    assert_mp_ok(mp_process_exitcode(proc, &code));
    assert_int_equal(code, 0);
    assert_mp(MP_EREAPED, mp_signal_send_process(proc, SIGUSR1));
    mp_process_free(&proc);

    /* a named signal through the object ends it: exit code -SIGTERM, as Python */
    assert_mp_ok(mp_process_new(&proc, "sig-sleeper", t_sleep, NULL));
    assert_mp_ok(mp_process_start(proc));
    assert_mp_ok(mp_signal_send_process(proc, SIGTERM));
    assert_mp_ok(mp_process_join(proc, mp_test_timeout(5)));
    assert_mp_ok(mp_process_exitcode(proc, &code));
    assert_int_equal(code, -SIGTERM);
    mp_process_free(&proc);
    assert_mp(-EINVAL, mp_signal_send_process(NULL, SIGTERM));
}

/* The syscall pid is blocked in, from /proc/pid/syscall (-1 when running or unknown). */
static long blocked_syscall(pid_t pid)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    long nr = -1;
    if (!fgets(buf, sizeof buf, f) || sscanf(buf, "%ld", &nr) != 1) nr = -1;
    fclose(f);
    return nr;
}

struct in_read {
    pid_t pid;
};
static int is_in_read(void *arg)
{
    return blocked_syscall(((struct in_read *)arg)->pid) == SYS_read;
}

/* A child blocked in read() gets SIGUSR1 while it reads; then the data arrives. With SA_RESTART
 * the read returns the data; with MP_SIGNAL_NORESTART it fails with EINTR. */
#if defined(__SANITIZE_THREAD__)
#define MP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP_TSAN 1
#endif
#endif

static void run_restart_case(int flags, int want_eintr)
{
#ifdef MP_TSAN
    /* TSan defers a handler until the interrupted call returns, so a restarted read() never lets
     * the handler run while it blocks: the behaviour under test does not exist there. */
    if (!want_eintr) skip();
#endif
    int data[2], note[2];
    assert_int_equal(pipe2(data, O_CLOEXEC), 0);
    assert_int_equal(pipe2(note, O_CLOEXEC), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(data[1]);
        close(note[0]);
        notify_fd = note[1];
        hits = 0;
        MP_CHILD_CHECK(mp_signal_handle(SIGUSR1, on_signal, flags, NULL) == 0);
        char c = 0;
        ssize_t r = read(data[0], &c, 1);
        int err = errno;
        MP_CHILD_CHECK(hits == 1);
        if (want_eintr) {
            MP_CHILD_CHECK(r == -1 && err == EINTR);
        } else {
            MP_CHILD_CHECK(r == 1 && c == 'd');
        }
        mp_test_child_exit(0);
    }
    close(note[1]);
    struct in_read ir = {pid};
    assert_true(mp_test_eventually(is_in_read, &ir, mp_test_timeout(5)));
    assert_mp_ok(mp_signal_send(pid, SIGUSR1));
    char c;
    assert_true(read_byte_within(note[0], &c, mp_test_timeout(10))); /* the handler ran */
    assert_int_equal(write(data[1], "d", 1), 1);
    assert_child_ok(pid);
    close(data[0]); /* only now: a child that failed early must not SIGPIPE our write */
    close(data[1]);
    close(note[0]);
}

static void handler_restarts_by_default(void **state)
{
    run_restart_case(0, 0);
}

static void handler_norestart_opt_out(void **state)
{
    run_restart_case(MP_SIGNAL_NORESTART, 1);
}

static void handler_returns_and_restores_previous(void **state)
{
    mp_signal_disposition old, mine;
    assert_mp_ok(mp_signal_handle(SIGUSR2, on_signal, MP_SIGNAL_ONESHOT, &old));
    mp_signal_handler_fn fn = on_signal;
    int fl = -1;
    assert_mp_ok(mp_signal_disposition_get(&old, &fn, &fl));
    assert_true(fn == SIG_DFL);
    assert_mp_ok(mp_signal_handle(SIGUSR2, SIG_IGN, 0, &mine));
    assert_mp_ok(mp_signal_disposition_get(&mine, &fn, &fl));
    assert_true(fn == on_signal);
    assert_int_equal(fl, MP_SIGNAL_ONESHOT); /* restartable (no NORESTART), one-shot */
    /* get reads without changing */
    mp_signal_disposition now_d;
    assert_mp_ok(mp_signal_get(SIGUSR2, &now_d));
    assert_mp_ok(mp_signal_disposition_get(&now_d, &fn, NULL));
    assert_true(fn == SIG_IGN);
    /* a failed call changes nothing */
    assert_mp(-EINVAL, mp_signal_handle(SIGUSR2, on_signal, 0x100, NULL));
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    assert_true(now.sa_handler == SIG_IGN);
    /* ignored: sending to ourselves does nothing */
    hits = 0;
    assert_mp_ok(mp_signal_send(getpid(), SIGUSR2));
    assert_mp_ok(mp_signal_restore(SIGUSR2, &mine));
    /* one-shot: runs once, then back to default */
    assert_mp_ok(mp_signal_send(getpid(), SIGUSR2));
    assert_int_equal(hits, 1);
    sigaction(SIGUSR2, NULL, &now);
    assert_true(now.sa_handler == SIG_DFL);
    assert_mp_ok(mp_signal_restore(SIGUSR2, &old));
    assert_signals_clean();
}

static void on_siginfo(int sig, siginfo_t *si, void *ctx)
{
    (void)sig, (void)si, (void)ctx;
}

/* A foreign SA_SIGINFO handler (no SA_RESTART, a mask) is saved whole and put back exactly. */
static void restore_puts_back_foreign_siginfo_handler(void **state)
{
    struct sigaction foreign, back, dfl;
    memset(&foreign, 0, sizeof foreign);
    foreign.sa_sigaction = on_siginfo;
    foreign.sa_flags = SA_SIGINFO;
    sigemptyset(&foreign.sa_mask);
    sigaddset(&foreign.sa_mask, SIGUSR2);
    assert_int_equal(sigaction(SIGUSR1, &foreign, &dfl), 0);

    mp_signal_disposition old;
    assert_mp_ok(mp_signal_handle(SIGUSR1, on_signal, 0, &old));
    mp_signal_handler_fn fn;
    int fl;
    assert_mp_ok(mp_signal_disposition_get(&old, &fn, &fl));
    assert_true((void *)fn == (void *)on_siginfo);
    assert_int_equal(fl, MP_SIGNAL_SIGINFO | MP_SIGNAL_NORESTART);
    assert_mp(-EINVAL, mp_signal_handle(SIGUSR1, on_signal, MP_SIGNAL_SIGINFO, NULL));

    assert_mp_ok(mp_signal_restore(SIGUSR1, &old));
    assert_int_equal(sigaction(SIGUSR1, &dfl, &back), 0);
    assert_true(back.sa_sigaction == on_siginfo);
    assert_true(back.sa_flags & SA_SIGINFO);
    assert_false(back.sa_flags & SA_RESTART);
    assert_true(sigismember(&back.sa_mask, SIGUSR2));
    assert_signals_clean();
}

/* ---- alarm and pause ------------------------------------------------------------------------ */

static void alarm_replaces_and_cancels(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        double prev = -1, left = -1;
        hits = 0;
        /* SIGALRM stays blocked except inside mp_signal_suspend, so no alarm can slip in between
         * a check of `hits` and the wait (pause's race, which valgrind makes wide). */
        int alrm = SIGALRM;
        block(SIGALRM, NULL);
        MP_CHILD_CHECK(mp_signal_handle(SIGALRM, on_signal, 0, NULL) == 0);
        MP_CHILD_CHECK(mp_signal_alarm_left(&left) == 0 && left == 0);
        /* a short alarm, replaced by a long one: the short one never fires. `brief` is scaled
         * so that a slow machine does not let the short one fire before it is replaced. */
        double brief = mp_test_timeout(0.3);
        MP_CHILD_CHECK(mp_signal_alarm(brief, &prev) == 0 && prev == 0);
        MP_CHILD_CHECK(mp_signal_alarm(60, &prev) == 0);
        MP_CHILD_CHECK(prev > 0 && prev <= brief);
        double t0 = now_s();
        MP_CHILD_CHECK(mp_signal_suspend(&alrm, 1, 2 * brief) == -ETIMEDOUT);
        MP_CHILD_CHECK(now_s() - t0 >= 2 * brief);
        MP_CHILD_CHECK(hits == 0);
        MP_CHILD_CHECK(mp_signal_alarm_left(&left) == 0 && left > 30 && left <= 60 - 2 * brief);
        /* 0 cancels, returning what was left */
        MP_CHILD_CHECK(mp_signal_alarm(0, &prev) == 0);
        MP_CHILD_CHECK(prev > 30 && prev <= left);
        MP_CHILD_CHECK(mp_signal_alarm_left(&left) == 0 && left == 0);
        MP_CHILD_CHECK(mp_signal_alarm(0, &prev) == 0 && prev == 0);
        MP_CHILD_CHECK(mp_signal_suspend(&alrm, 1, brief) == -ETIMEDOUT);
        MP_CHILD_CHECK(hits == 0);
        /* a long alarm replaced by a short one: it fires early, once */
        MP_CHILD_CHECK(mp_signal_alarm(30, NULL) == 0);
        MP_CHILD_CHECK(mp_signal_alarm(0.1, &prev) == 0 && prev > 15 && prev <= 30);
        t0 = now_s();
        while (!hits)
            MP_CHILD_CHECK(mp_signal_suspend(&alrm, 1, 10) == 0);
        MP_CHILD_CHECK(now_s() - t0 < 20);
        MP_CHILD_CHECK(hits == 1 && last_sig == SIGALRM);
        MP_CHILD_CHECK(mp_signal_alarm_left(&left) == 0 && left == 0);
        /* a tiny fraction still is an alarm, not a cancel */
        MP_CHILD_CHECK(mp_signal_alarm(1e-9, NULL) == 0);
        while (hits < 2)
            MP_CHILD_CHECK(mp_signal_suspend(&alrm, 1, 10) == 0);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
}

static void alarm_without_handler_terminates(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp_signal_alarm(0.05, NULL);
        for (;;)
            pause();
    }
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(5)), 128 + SIGALRM);
}

static void pause_returns_after_handler(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(p[0]);
        hits = 0;
        MP_CHILD_CHECK(mp_signal_handle(SIGUSR2, on_signal, 0, NULL) == 0);
        MP_CHILD_CHECK(write(p[1], "r", 1) == 1);
        MP_CHILD_CHECK(mp_signal_pause(MP_FOREVER) == 0);
        MP_CHILD_CHECK(hits >= 1 && last_sig == SIGUSR2);
        mp_test_child_exit(0);
    }
    close(p[1]);
    char c;
    assert_true(read_byte_within(p[0], &c, mp_test_timeout(10)));
    close(p[0]);
    int st = -1;
    double end = now_s() + mp_test_timeout(10);
    while (now_s() < end) {
        assert_mp_ok(mp_signal_send(pid, SIGUSR2));
        sleep_s(0.01);
        if (waitpid(pid, &st, WNOHANG) == pid) break;
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void pause_times_out_not_early(void **state)
{
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_signal_pause(0.15));
    assert_true(now_s() - t0 >= 0.15);
    t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_signal_pause(0));
    int sig = SIGUSR1;
    assert_mp(-ETIMEDOUT, mp_signal_suspend(&sig, 1, 0.1));
    assert_true(now_s() - t0 >= 0.1);
    assert_signals_clean();
}

/* A signal sent while blocked is not lost: suspend unblocks it and its handler runs. */
static void suspend_takes_pending_signal(void **state)
{
    sigset_t old;
    mp_signal_disposition d;
    block(SIGUSR1, &old);
    assert_mp_ok(mp_signal_handle(SIGUSR1, on_signal, 0, &d));
    hits = 0;
    assert_mp_ok(mp_signal_send(getpid(), SIGUSR1));
    assert_int_equal(hits, 0);
    int sig = SIGUSR1;
    assert_mp_ok(mp_signal_suspend(&sig, 1, mp_test_timeout(5)));
    assert_int_equal(hits, 1);
    /* the mask is back: still blocked */
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    assert_true(sigismember(&now, SIGUSR1));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_mp_ok(mp_signal_restore(SIGUSR1, &d));
    assert_signals_clean();
}

/* ---- synchronous waiting -------------------------------------------------------------------- */

/* Fork a child that sleeps `delay` seconds, then sends sig to us (sigqueue with value when
 * value >= 0). */
static pid_t sender(int sig, double delay, int value)
{
    pid_t parent = getpid();
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        sleep_s(delay);
        if (value >= 0) {
            union sigval v = {.sival_int = value};
            MP_CHILD_CHECK(sigqueue(parent, sig, v) == 0);
        } else {
            MP_CHILD_CHECK(mp_signal_send(parent, sig) == 0);
        }
        mp_test_child_exit(0);
    }
    return pid;
}

static void wait_receives_signal_from_other_process(void **state)
{
    sigset_t old;
    block(SIGUSR1, &old); /* so an early sender cannot kill the test */
    pid_t pid = sender(SIGUSR1, 0.05, -1);
    mp_siginfo info;
    int sigs[] = {SIGUSR2, SIGUSR1};
    assert_mp_ok(mp_signal_wait(sigs, 2, &info, mp_test_timeout(5)));
    assert_int_equal(info.signo, SIGUSR1);
    assert_int_equal(info.code, SI_USER);
    assert_int_equal(info.pid, pid);
    assert_int_equal(info.uid, getuid());
    assert_child_ok(pid);
    /* sigqueue carries a value */
    pid = sender(SIGUSR1, 0, 42);
    assert_mp_ok(mp_signal_wait(sigs, 2, &info, mp_test_timeout(5)));
    assert_int_equal(info.code, SI_QUEUE);
    assert_int_equal(info.value, 42);
    assert_int_equal(info.pid, pid);
    assert_child_ok(pid);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_signals_clean();
}

static void wait_times_out_not_early(void **state)
{
    int sig = SIGUSR1;
    mp_siginfo info = {.signo = 77};
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_signal_wait(&sig, 1, &info, 0.2));
    assert_true(now_s() - t0 >= 0.2);
    assert_int_equal(info.signo, 77);
    assert_mp(-ETIMEDOUT, mp_signal_wait(&sig, 1, NULL, 0));

    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, &sig, 1));
    t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, &info, 0.2));
    assert_true(now_s() - t0 >= 0.2);
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, &info, 0));
    mp_sigwaiter_free(&w);
    assert_null(w);
    assert_signals_clean();
}

static void sigwaiter_receives_and_polls(void **state)
{
    int sigs[] = {SIGUSR1, SIGUSR2};
    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, sigs, 2));
    int fd = mp_sigwaiter_fd(w);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    struct pollfd pfd = {fd, POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, 0), 0);

    /* from another process, with the sender's pid */
    pid_t pid = sender(SIGUSR2, 0.05, -1);
    mp_siginfo info;
    assert_mp_ok(mp_sigwaiter_wait(w, &info, mp_test_timeout(5)));
    assert_int_equal(info.signo, SIGUSR2);
    assert_int_equal(info.pid, pid);
    assert_child_ok(pid);

    /* pending -> readable; taken -> not readable */
    assert_mp_ok(mp_signal_send(getpid(), SIGUSR1));
    assert_int_equal(poll(&pfd, 1, (int)(mp_test_timeout(5) * 1000)), 1);
    assert_true(pfd.revents & POLLIN);
    assert_mp_ok(mp_sigwaiter_wait(w, &info, 0));
    assert_int_equal(info.signo, SIGUSR1);
    assert_int_equal(info.pid, getpid());
    assert_int_equal(poll(&pfd, 1, 0), 0);

    /* forever waits, and a NULL info is fine */
    assert_mp_ok(mp_signal_send(getpid(), SIGUSR1));
    assert_mp_ok(mp_sigwaiter_wait(w, NULL, MP_FOREVER));
    mp_sigwaiter_free(&w);
    assert_null(w);
    assert_int_equal(mp_sigwaiter_free(&w), 0); /* no-op */
    assert_int_equal(mp_sigwaiter_free(NULL), 0);
    assert_signals_clean();
}

static void sigwaiter_keeps_previously_blocked(void **state)
{
    sigset_t old, now;
    block(SIGUSR2, &old);
    int sigs[] = {SIGUSR1, SIGUSR2};
    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, sigs, 2));
    mp_sigwaiter_free(&w);
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    assert_true(sigismember(&now, SIGUSR2)); /* was blocked before: stays blocked */
    assert_false(sigismember(&now, SIGUSR1));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_signals_clean();
}

static void sigwaiter_reports_child_exit(void **state)
{
    int sig = SIGCHLD;
    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, &sig, 1));
    pid_t pid = mp_test_fork();
    if (pid == 0) mp_test_child_exit(7);
    mp_siginfo info;
    double end = now_s() + mp_test_timeout(5);
    do {
        assert_mp_ok(mp_sigwaiter_wait(w, &info, mp_test_timeout(5)));
    } while (info.pid != pid && now_s() < end);
    assert_int_equal(info.signo, SIGCHLD);
    assert_int_equal(info.code, CLD_EXITED);
    assert_int_equal(info.pid, pid);
    assert_int_equal(info.status, 7);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(5)), 7);
    mp_sigwaiter_wait(w, NULL, 0); /* drop any other SIGCHLD before unblocking */
    mp_sigwaiter_free(&w);
    assert_signals_clean();
}

/* After fork the child inherits the waiter (mask, fd) and takes its own signals with it. */
static void sigwaiter_works_in_forked_child(void **state)
{
    int sig = SIGUSR1;
    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, &sig, 1));
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(p[0]);
        MP_CHILD_CHECK(write(p[1], "r", 1) == 1);
        mp_siginfo info;
        MP_CHILD_CHECK(mp_sigwaiter_wait(w, &info, mp_test_timeout(5)) == 0);
        MP_CHILD_CHECK(info.signo == SIGUSR1 && info.pid == getppid());
        struct pollfd pfd = {mp_sigwaiter_fd(w), POLLIN, 0};
        MP_CHILD_CHECK(poll(&pfd, 1, 0) == 0);
        mp_sigwaiter_free(&w);
        mp_test_child_exit(0);
    }
    close(p[1]);
    char c;
    assert_true(read_byte_within(p[0], &c, mp_test_timeout(10)));
    close(p[0]);
    assert_mp_ok(mp_signal_send(pid, SIGUSR1)); /* blocked in the child: cannot kill it */
    assert_child_ok(pid);
    /* nothing was pending here */
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, NULL, 0));
    mp_sigwaiter_free(&w);
    assert_signals_clean();
}

/* A child mproc starts does not inherit a waiter's signalfd (mproc's internal fds are closed
 * there), and freeing the inherited waiter in it closes nothing that the child opened since. */
static mp_sigwaiter *inherited_waiter;
static int t_free_inherited_waiter(void *arg)
{
    (void)arg;
    int fd = mp_sigwaiter_fd(inherited_waiter);
    if (fcntl(fd, F_GETFD) != -1) return 1;             /* inherited: it leaked */
    int mine = open("/dev/null", O_RDONLY | O_CLOEXEC); /* likely takes the same number */
    if (mine < 0) return 2;
    mp_sigwaiter_free(&inherited_waiter);
    if (fcntl(mine, F_GETFD) == -1) return 3; /* free closed the child's own fd */
    close(mine);
    return 0;
}

static void sigwaiter_not_inherited_by_mproc_children(void **state)
{
    int sig = SIGUSR2;
    assert_mp_ok(mp_sigwaiter_new(&inherited_waiter, &sig, 1));
    mp_process *p;
    assert_mp_ok(mp_process_new(&p, NULL, t_free_inherited_waiter, NULL));
    assert_mp_ok(mp_process_start(p));
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code = -1;
    assert_mp_ok(mp_process_exitcode(p, &code));
    mp_process_free(&p);
    mp_sigwaiter_free(&inherited_waiter);
    assert_int_equal(code, 0);
    assert_signals_clean();
}

static void *thread_sends_usr1(void *arg)
{
    (void)arg;
    sleep_s(0.05);
    kill(getpid(), SIGUSR1); /* process-directed: any thread that does not block it may take it */
    return NULL;
}

/* A waiter created before a thread starts: the thread inherits the blocked mask, so the
 * process-directed signal stays pending for the waiter instead of killing the process. */
static void sigwaiter_with_threads(void **state)
{
    int sig = SIGUSR1;
    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, &sig, 1));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_sends_usr1, NULL), 0);
    mp_siginfo info;
    assert_mp_ok(mp_sigwaiter_wait(w, &info, mp_test_timeout(5)));
    assert_int_equal(info.signo, SIGUSR1);
    assert_int_equal(info.pid, getpid());
    assert_int_equal(pthread_join(t, NULL), 0);
    mp_sigwaiter_free(&w);
    assert_signals_clean();
}

/* A timer delivers SIGALRM every 100 us to a handler while we wait for SIGUSR1: the wait neither
 * fails with EINTR, nor ends before its deadline, nor misses SIGUSR1. */
static void wait_survives_sigalrm_storm(void **state)
{
    mp_signal_disposition d;
    assert_mp_ok(mp_signal_handle(SIGALRM, on_signal, 0, &d));
    struct itimerval storm = {{0, 100}, {0, 100}}, off = {{0, 0}, {0, 0}};
    hits = 0;
    assert_int_equal(setitimer(ITIMER_REAL, &storm, NULL), 0);

    int sig = SIGUSR1;
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_signal_wait(&sig, 1, NULL, 0.3));
    assert_true(now_s() - t0 >= 0.3);
    int during = hits;

    sigset_t old;
    block(SIGUSR1, &old);
    mp_siginfo info;
    for (int round = 0; round < 3; round++) {
        pid_t pid = sender(SIGUSR1, 0.05, -1);
        assert_mp_ok(mp_signal_wait(&sig, 1, &info, mp_test_timeout(10)));
        assert_int_equal(info.pid, pid);
        assert_child_ok(pid);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    mp_sigwaiter *w;
    assert_mp_ok(mp_sigwaiter_new(&w, &sig, 1));
    t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, NULL, 0.2));
    assert_true(now_s() - t0 >= 0.2);
    for (int round = 0; round < 3; round++) {
        pid_t pid = sender(SIGUSR1, 0.05, -1);
        assert_mp_ok(mp_sigwaiter_wait(w, &info, mp_test_timeout(10)));
        assert_int_equal(info.signo, SIGUSR1);
        assert_int_equal(info.pid, pid);
        assert_child_ok(pid);
    }
    mp_sigwaiter_free(&w);

    /* Stop the storm with SIGALRM blocked and drop a last one still pending, so that none can
     * arrive after the default action is back. */
    sigset_t alrm_old;
    block(SIGALRM, &alrm_old);
    assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
    int alrm = SIGALRM;
    while (mp_signal_wait(&alrm, 1, NULL, 0) == 0) {
    }
    assert_mp_ok(mp_signal_restore(SIGALRM, &d));
    pthread_sigmask(SIG_SETMASK, &alrm_old, NULL);
    print_message("SIGALRM handler ran %d times during a 0.3 s wait\n", during);
    assert_true(during > 10); /* the storm really happened */
    assert_signals_clean();
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void bad_input_everywhere(void **state)
{
    int badsig[] = {0, -1, 32, 33, 65, INT_MAX};
    int ok = SIGUSR1;
    mp_signal_disposition d;
    memset(&d, 0, sizeof d);
    for (size_t i = 0; i < sizeof badsig / sizeof badsig[0]; i++) {
        int s = badsig[i];
        assert_mp(-EINVAL, mp_signal_send(getpid(), s));
        assert_mp(-EINVAL, mp_signal_send_group(getpgrp(), s));
        assert_mp(-EINVAL, mp_signal_handle(s, on_signal, 0, NULL));
        assert_mp(-EINVAL, mp_signal_restore(s, &d));
        assert_mp(-EINVAL, mp_signal_suspend(&s, 1, 0));
        assert_mp(-EINVAL, mp_signal_wait(&s, 1, NULL, 0));
        int two[] = {SIGUSR1, s};
        mp_sigwaiter *w = NULL;
        assert_mp(-EINVAL, mp_sigwaiter_new(&w, two, 2));
        assert_null(w);
    }
    /* Pids that would reach a group or everything. SIGURG, ignored by default, so that a broken
     * check could not hurt any other process on the machine. */
    assert_mp(-EINVAL, mp_signal_send(0, SIGURG));
    assert_mp(-EINVAL, mp_signal_send(-1, SIGURG));
    assert_mp(-EINVAL, mp_signal_send(-getpgrp(), SIGURG));
    assert_mp(-EINVAL, mp_signal_probe(0));
    assert_mp(-EINVAL, mp_signal_probe(-1));
    assert_mp(-EINVAL, mp_signal_send_group(-1, SIGURG));
    assert_mp(-ESRCH, mp_signal_send(INT_MAX, SIGUSR1));
    assert_mp(-ESRCH, mp_signal_probe(INT_MAX));
    assert_mp_ok(mp_signal_probe(getpid()));
    /* SIGKILL and SIGSTOP cannot be handled, waited for or restored */
    int unc[] = {SIGKILL, SIGSTOP};
    for (int i = 0; i < 2; i++) {
        mp_sigwaiter *w = NULL;
        assert_mp(-EINVAL, mp_signal_handle(unc[i], on_signal, 0, NULL));
        assert_mp(-EINVAL, mp_signal_handle(unc[i], SIG_IGN, 0, NULL));
        assert_mp(-EINVAL, mp_signal_handle(unc[i], SIG_DFL, 0, NULL));
        assert_mp(-EINVAL, mp_signal_restore(unc[i], &d));
        assert_mp(-EINVAL, mp_signal_wait(&unc[i], 1, NULL, 0));
        assert_mp(-EINVAL, mp_sigwaiter_new(&w, &unc[i], 1));
    }
    assert_mp(-EINVAL, mp_signal_handle(SIGUSR1, on_signal, -1, NULL));
    assert_mp(-EINVAL, mp_signal_handle(SIGUSR1, on_signal, 0x8, NULL));
    assert_mp(-EINVAL, mp_signal_restore(SIGUSR1, NULL));
    assert_mp(-EINVAL, mp_signal_get(SIGUSR1, NULL));
    assert_mp(-EINVAL, mp_signal_get(SIGKILL, &d));
    assert_mp(-EINVAL, mp_signal_get(0, &d));
    assert_mp(-EINVAL, mp_signal_get(65, &d));
    assert_mp(-EINVAL, mp_signal_disposition_get(NULL, NULL, NULL));
    /* alarm */
    double left;
    assert_mp(-EINVAL, mp_signal_alarm(-1, NULL));
    assert_mp(-EINVAL, mp_signal_alarm(-1e-9, &left));
    assert_mp(-EINVAL, mp_signal_alarm(NAN, NULL));
    assert_mp(-EINVAL, mp_signal_alarm(INFINITY, NULL));
    assert_mp(-EINVAL, mp_signal_alarm(1e9, NULL));
    assert_mp(-EINVAL, mp_signal_alarm_left(NULL));
    /* suspend / wait / waiter */
    assert_mp(-EINVAL, mp_signal_suspend(NULL, 1, 0));
    assert_mp(-EINVAL, mp_signal_suspend(&ok, -1, 0));
    assert_mp(-EINVAL, mp_signal_wait(NULL, 1, NULL, 0));
    assert_mp(-EINVAL, mp_signal_wait(&ok, 0, NULL, 0));
    assert_mp(-EINVAL, mp_signal_wait(&ok, -1, NULL, 0));
    mp_sigwaiter *w = NULL;
    assert_mp(-EINVAL, mp_sigwaiter_new(NULL, &ok, 1));
    assert_mp(-EINVAL, mp_sigwaiter_new(&w, NULL, 1));
    assert_mp(-EINVAL, mp_sigwaiter_new(&w, &ok, 0));
    assert_mp(-EINVAL, mp_sigwaiter_new(&w, &ok, -3));
    assert_mp(-EINVAL, mp_sigwaiter_wait(NULL, NULL, 0));
    assert_mp(-EINVAL, mp_sigwaiter_fd(NULL));
    /* use after free: free NULLs the pointer, so later calls get -EINVAL */
    assert_mp_ok(mp_sigwaiter_new(&w, &ok, 1));
    mp_sigwaiter_free(&w);
    assert_mp(-EINVAL, mp_sigwaiter_wait(w, NULL, 0));
    assert_mp(-EINVAL, mp_sigwaiter_fd(w));
    assert_signals_clean();
}

/* Sending to our own group on purpose: a child in its own process group. */
static void send_group_reaches_own_group(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(setpgid(0, 0) == 0);
        int sig = SIGUSR1;
        sigset_t old;
        block(SIGUSR1, &old);
        MP_CHILD_CHECK(mp_signal_send_group(0, SIGUSR1) == 0);
        mp_siginfo info;
        MP_CHILD_CHECK(mp_signal_wait(&sig, 1, &info, 0) == 0);
        MP_CHILD_CHECK(info.pid == getpid());
        MP_CHILD_CHECK(mp_signal_send_group(getpgrp(), SIGUSR1) == 0);
        MP_CHILD_CHECK(mp_signal_wait(&sig, 1, &info, 0) == 0);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
}

static void errno_preserved(void **state)
{
    errno = 1234;
    assert_mp(-ESRCH, mp_signal_send(INT_MAX, SIGUSR1));
    assert_int_equal(errno, 1234);
    int sig = SIGUSR1;
    assert_mp(-ETIMEDOUT, mp_signal_wait(&sig, 1, NULL, 0));
    assert_int_equal(errno, 1234);
    assert_signals_clean();
}

/* Only MP_FOREVER waits without limit: any other negative timeout (a remaining time that drifted
 * below 0) and NaN are a deadline that has passed, never an endless wait. */
static void negative_timeouts_do_not_wait(void **state)
{
    /* Guard: were a negative timeout taken as forever, SIGALRM would end the test. */
    assert_mp_ok(mp_signal_alarm(mp_test_timeout(5), NULL));
    int sig = SIGUSR1;
    mp_sigwaiter *w = NULL;
    assert_mp_ok(mp_sigwaiter_new(&w, &sig, 1));
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, NULL, -0.5));
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, NULL, -2.0));
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, NULL, NAN));
    assert_mp(-ETIMEDOUT, mp_sigwaiter_wait(w, NULL, -INFINITY));
    assert_mp(-ETIMEDOUT, mp_signal_wait(&sig, 1, NULL, -0.5));
    assert_mp(-ETIMEDOUT, mp_signal_wait(&sig, 1, NULL, NAN));
    assert_mp(-ETIMEDOUT, mp_signal_pause(-0.5));
    assert_mp(-ETIMEDOUT, mp_signal_suspend(NULL, 0, -3.0));
    /* and +INFINITY is forever, as MP_FOREVER: a pending signal is taken */
    assert_mp_ok(mp_signal_send(getpid(), SIGUSR1));
    assert_mp_ok(mp_sigwaiter_wait(w, NULL, INFINITY));
    assert_int_equal(mp_sigwaiter_free(&w), 0);
    assert_mp_ok(mp_signal_alarm(0, NULL));
    assert_signals_clean();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SIG_TEST(names_match_kill_l),
        SIG_TEST(names_round_trip_every_signal),
        SIG_TEST(names_rt_and_aliases),
        SIG_TEST(names_unknown_are_errors),
        SIG_TEST(list_bad_input_and_truncation),
        SIG_TEST(default_actions),
        SIG_TEST(send_to_child_runs_its_handler),
        SIG_TEST(send_kills_child_with_named_signal),
        SIG_TEST(send_to_process_object),
        SIG_TEST(handler_restarts_by_default),
        SIG_TEST(handler_norestart_opt_out),
        SIG_TEST(handler_returns_and_restores_previous),
        SIG_TEST(restore_puts_back_foreign_siginfo_handler),
        SIG_TEST(alarm_replaces_and_cancels),
        SIG_TEST(alarm_without_handler_terminates),
        SIG_TEST(pause_returns_after_handler),
        SIG_TEST(pause_times_out_not_early),
        SIG_TEST(suspend_takes_pending_signal),
        SIG_TEST(wait_receives_signal_from_other_process),
        SIG_TEST(wait_times_out_not_early),
        SIG_TEST(sigwaiter_receives_and_polls),
        SIG_TEST(sigwaiter_keeps_previously_blocked),
        SIG_TEST(sigwaiter_reports_child_exit),
        SIG_TEST(sigwaiter_works_in_forked_child),
        SIG_TEST(sigwaiter_not_inherited_by_mproc_children),
        SIG_TEST(sigwaiter_with_threads),
        SIG_TEST(wait_survives_sigalrm_storm),
        SIG_TEST(bad_input_everywhere),
        SIG_TEST(send_group_reaches_own_group),
        SIG_TEST(errno_preserved),
        SIG_TEST(negative_timeouts_do_not_wait),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
