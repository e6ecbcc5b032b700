/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=240 labels=slow */
/* test_start_threads.c - starts from a threaded program (issue 12). The program runs 4 threads
 * besides main: one holds a pthread mutex of the program's own at the moment of every start, one
 * prints with printf in a loop, one mallocs and frees in a loop, one just runs. A child whose
 * target takes that mutex (and mallocs and prints) never deadlocks under spawn and forkserver
 * (many starts, each joined with a bounded timeout); under fork the hazard shows, deterministically
 * and bounded: the child's copy of the mutex is locked for ever (the target tries it with a 0.2 s
 * timeout and reports 50). mp_thread_count() is 5 in the program and 1 in a fresh child.
 * MPROC_WARN_FORK_THREADS=1 makes a fork start from the threaded program print one warning on
 * stderr, and nothing for a single-threaded fork, a spawn or a forkserver start (a re-exec of this
 * binary with its stderr on a pipe).
 *
 * As in test_start_process.c, each case runs in a forked "program child" per method, which ends
 * with exit(); whatever of it is still alive 1 s later counts as left running. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"
#include "mp_test.h"
#include "start_util.h"

/* ---- the threaded program ----------------------------------------------------------------------
 */

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER; /* the program's own lock */

static _Atomic int g_stop, g_want_hold, g_held, g_running;

static void *holder(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_running, 1);
    while (!atomic_load(&g_stop)) {
        pthread_mutex_lock(&g_mutex);
        if (atomic_load(&g_want_hold)) {
            atomic_store(&g_held, 1);
            while (atomic_load(&g_want_hold) && !atomic_load(&g_stop))
                sched_yield();
            atomic_store(&g_held, 0);
        }
        pthread_mutex_unlock(&g_mutex);
        sched_yield();
    }
    return NULL;
}

static void *printer(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_running, 1);
    for (unsigned long i = 0; !atomic_load(&g_stop); i++)
        printf("printer line %lu with some text to fill the buffer\n", i);
    return NULL;
}

static void *allocator(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_running, 1);
    uint64_t rng = 88172645463325252ull;
    while (!atomic_load(&g_stop)) {
        size_t n = 1 + (size_t)(mp_test_rng_next(&rng) % 200000);
        char *p = malloc(n);
        if (p) {
            p[0] = p[n - 1] = 1;
            free(p);
        }
    }
    return NULL;
}

static void *runner(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_running, 1);
    volatile unsigned long x = 0;
    while (!atomic_load(&g_stop))
        x++;
    return NULL;
}

static pthread_t g_threads[4];

static void threads_start(void)
{
    void *(*fns[4])(void *) = {holder, printer, allocator, runner};
    atomic_store(&g_stop, 0);
    atomic_store(&g_running, 0);
    for (int i = 0; i < 4; i++)
        CK_EQ(0, pthread_create(&g_threads[i], NULL, fns[i], NULL));
    double end = now_s() + mp_test_timeout(10);
    while (atomic_load(&g_running) < 4 && now_s() < end)
        sleep_s(0.001);
    CK_EQ(4, atomic_load(&g_running));
}

static void threads_stop(void)
{
    atomic_store(&g_want_hold, 0);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < 4; i++)
        CK_EQ(0, pthread_join(g_threads[i], NULL));
}

/* Makes the holder thread hold g_mutex; returns once it does. */
static void hold_mutex(void)
{
    atomic_store(&g_want_hold, 1);
    double end = now_s() + mp_test_timeout(10);
    while (!atomic_load(&g_held) && now_s() < end)
        sched_yield();
    CK_EQ(1, atomic_load(&g_held));
}

/* The child: one thread; takes the program's mutex (0.2 s at most: under fork its copy stays
 * locked for ever, which it reports as 50 without touching stdio), mallocs, prints. */
static int t_take(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    int n = mp_thread_count();
    if (n != 1) {
        fprintf(stderr, "child: mp_thread_count() = %d, want 1\n", n);
        return 40;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 200000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    int r = pthread_mutex_timedlock(&g_mutex, &dl);
    if (r == ETIMEDOUT) _exit(50);
    if (r != 0) return 41;
    char *p = malloc(100000);
    if (!p) return 42;
    memset(p, 7, 100000);
    free(p);
    printf("child %d took the program's mutex\n", (int)getpid());
    fflush(stdout);
    pthread_mutex_unlock(&g_mutex);
    return 0;
}
MP_FUNC_REGISTER("th_take", t_take)

static int prog_threads(mp_start_method m, void *ctx)
{
    (void)ctx;
    /* The printer's lines go nowhere. */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CK(null >= 0);
    CK(dup2(null, 1) == 1);
    close(null);
    CK_EQ(1, mp_thread_count());
    threads_start();
    CK_EQ(5, mp_thread_count());
    int starts = m == MP_START_FORK ? 8 : 30;
    int deadlocked = 0, wrong = 0;
    for (int i = 0; i < starts; i++) {
        hold_mutex();
        mp_process *p = NULL;
        CK_EQ(0, mp_process_new_func(&p, NULL, "th_take", NULL, 0));
        CK_EQ(0, mp_process_set_start_method(p, m));
        CK_EQ(0, mp_process_start(p));
        CK_EQ(1, atomic_load(&g_held)); /* still held when start returned */
        atomic_store(&g_want_hold, 0);
        int r = mp_process_join(p, mp_test_timeout(10));
        if (r == -ETIMEDOUT) {
            deadlocked++;
            CK_EQ(0, mp_process_kill(p));
            CK_EQ(0, mp_process_join(p, mp_test_timeout(10)));
        }
        int code = -1;
        CK_EQ(0, mp_process_exitcode(p, &code));
        int want = m == MP_START_FORK ? 50 : 0;
        if (r == 0 && code != want) {
            fprintf(stderr, "[%s] start %d: exit code %d, want %d\n", g_method, i, code, want);
            wrong++;
        }
        CK_EQ(0, mp_process_free(&p));
    }
    CK_EQ(5, mp_thread_count());
    threads_stop();
    CK_EQ(1, mp_thread_count());
    if (deadlocked)
        fprintf(stderr, "[%s] %d of %d children hung (killed after 10 s)\n", g_method, deadlocked,
                starts);
    CK_EQ(0, deadlocked);
    CK_EQ(0, wrong);
    return 0;
}

static void mutex_held_at_every_start(void **state)
{
    (void)state;
    run_all(prog_threads, NULL, 150);
}

/* ---- MPROC_WARN_FORK_THREADS=1 ------------------------------------------------------------------
 */

static int start_join(mp_start_method m)
{
    mp_process *p = NULL;
    int r = mp_process_new_func(&p, NULL, "th_take", NULL, 0);
    if (r == 0) r = mp_process_set_start_method(p, m);
    if (r == 0) r = mp_process_start(p);
    if (r == 0 && mp_process_join(p, mp_test_timeout(10)) != 0) {
        mp_process_kill(p);
        mp_process_join(p, mp_test_timeout(10));
        r = -ETIMEDOUT;
    }
    mp_process_free(&p);
    return r;
}

static void fork_warning(void **state)
{
    (void)state;
    if (getenv("ST_THR_SUBRUN")) {
        /* In the re-exec, stderr on the test's pipe. Phases are marked on stderr. */
        g_method = "subrun";
        fprintf(stderr, "@phase fork-1-thread\n");
        assert_mp_ok(start_join(MP_START_FORK));
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        assert_true(null >= 0);
        assert_int_equal(dup2(null, 1), 1);
        close(null);
        threads_start();
        assert_int_equal(mp_thread_count(), 5);
        fprintf(stderr, "@phase fork-5-threads\n");
        /* The child's copy of the mutex may be locked or not (the holder is not asked to hold
         * it): the target's timed lock keeps it bounded either way. */
        (void)start_join(MP_START_FORK);
        fprintf(stderr, "@phase spawn-5-threads\n");
        assert_mp_ok(start_join(MP_START_SPAWN));
        fprintf(stderr, "@phase forkserver-5-threads\n");
        assert_mp_ok(start_join(MP_START_FORKSERVER));
        fprintf(stderr, "@phase end\n");
        threads_stop();
        assert_mp_ok(mp_forkserver_stop());
        return;
    }
    static const char *const env[] = {"MPROC_WARN_FORK_THREADS=1",   "ST_THR_SUBRUN=1",
                                      "MP_TEST_FILTER=fork_warning", "MP_TEST_SKIP",
                                      "MPROC_START_METHOD",          NULL};
    int err0;
    pid_t pid = exec_self_stderr("test_start_threads", env, &err0);
    /* Read until EOF (the re-exec and its children closed the pipe) or the timeout. */
    size_t cap = 1 << 16, len = 0;
    char *text = calloc(1, cap);
    assert_non_null(text);
    double end = now_s() + mp_test_timeout(60);
    for (;;) {
        double left = end - now_s();
        if (left <= 0 || len + 1 >= cap) break;
        struct pollfd pfd = {.fd = err0, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        ssize_t n = read(err0, text + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(err0);
    int code = mp_test_wait_code(pid, mp_test_timeout(10));
    char what[256];
    int left = strays_settle(mp_test_timeout(1.0), what, sizeof what);
    /* Count the warnings (lines with "mproc" and "thread" and "fork") per phase. */
    static const char *phases[] = {"fork-1-thread", "fork-5-threads", "spawn-5-threads",
                                   "forkserver-5-threads"};
    const int want[] = {0, 1, 0, 0};
    int got[4] = {-1, -1, -1, -1};
    int cur = -1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "@phase ", 7)) {
            cur = -1;
            for (int i = 0; i < 4; i++)
                if (!strcmp(line + 7, phases[i])) {
                    cur = i;
                    got[i] = 0;
                }
            continue;
        }
        if (cur >= 0 && strstr(line, "mproc") && strstr(line, "thread") && strstr(line, "fork"))
            got[cur]++;
    }
    int bad = code != 0 || left;
    for (int i = 0; i < 4; i++)
        bad |= got[i] != want[i];
    if (bad)
        fail_msg("re-exec with MPROC_WARN_FORK_THREADS=1: exit %d, %d left%s; warnings per phase "
                 "(-1: phase not reached): fork/1 thread %d (want 0), fork/5 threads %d (want 1), "
                 "spawn %d (want 0), forkserver %d (want 0)",
                 code, left, what, got[0], got[1], got[2], got[3]);
    free(text);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(mutex_held_at_every_start),
    MP_TEST(fork_warning),
};

MP_TEST_MAIN_INIT(tests)
