/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=30 lock=shm */
/* test_leakguard.c - the leak guard catches every kind of leftover it promises to catch. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "mp_test.h"

static mp_test_snapshot before;
static char report[4096];

static void catches_fd(void **state)
{
    mp_test_snapshot_take(&before);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(mp_test_snapshot_diff(&before, report, sizeof report, 1), 1);
    assert_non_null(strstr(report, "leaked fd"));
    /* cleanup closed it */
    assert_int_equal(fcntl(fd, F_GETFD), -1);
}

static void catches_running_child(void **state)
{
    mp_test_snapshot_take(&before);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        pause();
        mp_test_child_exit(0);
    }
    assert_int_equal(mp_test_snapshot_diff(&before, report, sizeof report, 1), 1);
    assert_non_null(strstr(report, "still running"));
    assert_false(mp_test_pid_exists(pid)); /* killed and reaped by the cleanup */
}

static void catches_zombie(void **state)
{
    mp_test_snapshot_take(&before);
    pid_t pid = mp_test_fork();
    if (pid == 0) mp_test_child_exit(0);
    siginfo_t si;
    waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT); /* exited, not reaped */
    assert_int_equal(mp_test_snapshot_diff(&before, report, sizeof report, 1), 1);
    assert_non_null(strstr(report, "zombie"));
    assert_false(mp_test_pid_exists(pid));
}

static void catches_orphaned_grandchild(void **state)
{
    mp_test_snapshot_take(&before);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        pid_t g = fork();
        if (g == 0) {
            close(p[0]);
            pause();
            _exit(0);
        }
        mp_test_child_exit(0);
    }
    close(p[1]);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(5)), 0);
    /* The grandchild now belongs to us (subreaper); the guard must see it. */
    assert_int_equal(mp_test_snapshot_diff(&before, report, sizeof report, 0) >= 1, 1);
    close(p[0]);
    assert_true(mp_test_snapshot_diff(&before, report, sizeof report, 1) >= 1);
    assert_non_null(strstr(report, "leaked child"));
}

static void catches_shm(void **state)
{
    /* The guard watches /dev/shm only where ctest serialises shm tests (lock=shm sets it). */
    if (!getenv("MP_TEST_SHM_GUARD")) skip();
    mp_test_snapshot_take(&before);
    char name[64];
    snprintf(name, sizeof name, "/mproc-leaktest-%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    int leaks = mp_test_snapshot_diff(&before, report, sizeof report, 1);
    int still = shm_open(name, O_RDWR | O_CLOEXEC, 0); /* the cleanup should have unlinked it */
    if (still >= 0) { /* it did not: remove it ourselves before failing */
        close(still);
        shm_unlink(name);
    }
    assert_int_equal(leaks, 1);
    assert_non_null(strstr(report, "/dev/shm/mproc-leaktest"));
    assert_int_equal(still, -1);
}

static void clean_test_passes(void **state)
{
    mp_test_snapshot_take(&before);
    pid_t pid = mp_test_fork();
    if (pid == 0) mp_test_child_exit(0);
    assert_child_ok(pid);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(fd);
    assert_int_equal(mp_test_snapshot_diff(&before, report, sizeof report, 0), 0);
}

static void child_failure_reported_by_status(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(1 + 1 == 3);
        mp_test_child_exit(0);
    }
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(5)), 99);
}

static void wait_times_out_and_reaps(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        pause();
        mp_test_child_exit(0);
    }
    assert_int_equal(mp_test_wait(pid, 0.05), -1);
    assert_false(mp_test_pid_exists(pid));
}

static const struct CMUnitTest tests[] = {
    MP_TEST(catches_fd),
    MP_TEST(catches_running_child),
    MP_TEST(catches_zombie),
    MP_TEST(catches_orphaned_grandchild),
    MP_TEST(catches_shm),
    MP_TEST(clean_test_passes),
    MP_TEST(child_failure_reported_by_status),
    MP_TEST(wait_times_out_and_reaps),
};
MP_TEST_MAIN(tests)
