/* SPDX-License-Identifier: MIT */
/* mp_test.c - leak guard, timeouts and child helpers for the test suite (see mp_test.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "mp_test.h"

#ifdef MP_COVERAGE
extern void __gcov_dump(void);
#endif

double mp_test_timeout(double base_s)
{
    const char *s = getenv("MP_TEST_TIMEOUT_SCALE");
    double k = s ? atof(s) : 1.0;
    if (!(k > 0)) k = 1.0;
    return base_s * k;
}

/* ---- snapshot ---------------------------------------------------------------------------- */

static void list_fds(mp_test_snapshot *s)
{
    s->nfds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) && s->nfds < (int)(sizeof s->fds / sizeof s->fds[0])) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd != self) s->fds[s->nfds++] = fd;
    }
    closedir(d);
}

/* Children of every thread of this process, from /proc/self/task/<tid>/children. */
static void list_children(mp_test_snapshot *s)
{
    s->nchildren = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        int pid;
        while (fscanf(f, "%d", &pid) == 1 &&
               s->nchildren < (int)(sizeof s->children / sizeof s->children[0]))
            s->children[s->nchildren++] = pid;
        fclose(f);
    }
    closedir(d);
}

/* Only names in mproc's namespace count: other programs may use /dev/shm at the same time.
 * /dev/shm is machine-wide, so a test can only tell its own entries from those of tests running
 * beside it when no other shm-creating test runs at the same time: ctest serialises the tests that
 * declare lock=shm and sets MP_TEST_SHM_GUARD=1 for them; the others skip this check, and the
 * suite-wide fixture test shm_leftovers catches anything they leave behind. */
static void list_shm(mp_test_snapshot *s)
{
    s->nshm = 0;
    if (!getenv("MP_TEST_SHM_GUARD")) return;
    DIR *d = opendir("/dev/shm");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && s->nshm < (int)(sizeof s->shm / sizeof s->shm[0])) {
        if (strncmp(e->d_name, "mproc", 5) != 0) continue;
        if (strlen(e->d_name) >= sizeof s->shm[0]) continue; /* not a name mproc makes */
        memcpy(s->shm[s->nshm++], e->d_name, strlen(e->d_name) + 1);
    }
    closedir(d);
}

void mp_test_snapshot_take(mp_test_snapshot *s)
{
    list_fds(s);
    list_children(s);
    list_shm(s);
}

static int has_int(const int *a, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

static void append(char *report, size_t len, const char *fmt, ...)
{
    if (!report || len == 0) return;
    size_t used = strlen(report);
    if (used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report + used, len - used, fmt, ap);
    va_end(ap);
}

static void describe_fd(int fd, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
}

int mp_test_snapshot_diff(const mp_test_snapshot *before, char *report, size_t len, int cleanup)
{
    mp_test_snapshot *now = malloc(sizeof *now);
    if (!now) return -1;
    mp_test_snapshot_take(now);
    if (report && len) report[0] = '\0';
    int leaks = 0;

    for (int i = 0; i < now->nchildren; i++) {
        pid_t pid = now->children[i];
        if (has_int((const int *)before->children, before->nchildren, pid)) continue;
        leaks++;
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        append(report, len, "leaked child process %d (%s)\n", (int)pid,
               r == pid ? "zombie: never reaped" : "still running");
        if (cleanup && r != pid) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
    }
    for (int i = 0; i < now->nfds; i++) {
        int fd = now->fds[i];
        if (has_int(before->fds, before->nfds, fd)) continue;
        char what[256];
        describe_fd(fd, what, sizeof what);
        leaks++;
        append(report, len, "leaked fd %d -> %s\n", fd, what);
        if (cleanup) close(fd);
    }
    for (int i = 0; i < now->nshm; i++) {
        int seen = 0;
        for (int j = 0; j < before->nshm && !seen; j++)
            seen = strcmp(before->shm[j], now->shm[i]) == 0;
        if (seen) continue;
        leaks++;
        append(report, len, "leaked /dev/shm/%s\n", now->shm[i]);
        if (cleanup) {
            char path[128];
            snprintf(path, sizeof path, "/dev/shm/%.64s", now->shm[i]);
            unlink(path);
        }
    }
    free(now);
    return leaks;
}

int mp_test_guard_setup(void **state)
{
    mp_test_snapshot *s = malloc(sizeof *s);
    if (!s) return -1;
    mp_test_snapshot_take(s);
    *state = s;
    return 0;
}

int mp_test_guard_teardown(void **state)
{
    mp_test_snapshot *s = *state;
    char report[4096];
    /* Children may still be on their way out (a killed process is not reaped instantly by whoever
     * owns it); give leftovers a short grace period before calling them leaks. */
    int leaks = 0;
    for (int i = 0; i < 50; i++) {
        leaks = mp_test_snapshot_diff(s, NULL, 0, 0);
        if (leaks == 0) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (leaks > 0) {
        mp_test_snapshot_diff(s, report, sizeof report, 1);
        print_error("leak guard: the test left %d thing(s) behind:\n%s", leaks, report);
    }
    free(s);
    return leaks > 0 ? -1 : 0;
}

/* Is "prog:case" an entry of the comma-separated list? */
static int skip_listed(const char *list, const char *prog, size_t plen, const char *tcase)
{
    size_t clen = strlen(tcase);
    for (const char *e = list; *e;) {
        size_t len = strcspn(e, ",");
        if (len == plen + 1 + clen && strncmp(e, prog, plen) == 0 && e[plen] == ':' &&
            strncmp(e + plen + 1, tcase, clen) == 0)
            return 1;
        e += len;
        if (*e == ',') e++;
    }
    return 0;
}

int mp_test_main(const char *name, const struct CMUnitTest *tests, size_t n)
{
    /* Orphaned grandchildren come back to us, so the guard sees them and tests can reap them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const char *base = strrchr(name, '/');
    /* MP_TEST_FILTER=pattern runs only the matching cases (cmocka's * and ? wildcards). */
    const char *filter = getenv("MP_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    /* MP_TEST_SKIP=prog:case,prog:case,... leaves those cases out (scripts/valgrind.sh: cases
     * that valgrind itself cannot run, each with its reason there). prog is the file name
     * without .c, so one list serves the whole suite. */
    const char *skip = getenv("MP_TEST_SKIP");
    struct CMUnitTest *kept = NULL;
    if (skip && *skip) {
        kept = calloc(n ? n : 1, sizeof *kept);
        if (kept) {
            const char *prog = base ? base + 1 : name;
            size_t plen = strcspn(prog, ".");
            size_t nk = 0;
            for (size_t i = 0; i < n; i++) {
                if (skip_listed(skip, prog, plen, tests[i].name)) {
                    fprintf(stderr, "[ SKIPPED  ] %s (MP_TEST_SKIP)\n", tests[i].name);
                    continue;
                }
                kept[nk++] = tests[i];
            }
            tests = kept;
            n = nk;
        }
    }
    int r = _cmocka_run_group_tests(base ? base + 1 : name, tests, n, NULL, NULL);
    free(kept);
    return r;
}

/* ---- children ---------------------------------------------------------------------------- */

pid_t mp_test_fork(void)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(98); /* the parent died before prctl took effect */
    }
    return pid;
}

void mp_test_child_exit(int code)
{
    fflush(NULL);
#ifdef MP_COVERAGE
    __gcov_dump();
#endif
    _exit(code);
}

/* The path /proc/self/exe names, not the link itself: under valgrind the link names the tool's
 * own binary, and an exec of it fails ("mmap failed in UME"). Falls back to the link when it
 * cannot be read. */
const char *mp_test_self_exe(void)
{
    static char exe[4096];
    if (!exe[0]) {
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k <= 0 || (size_t)k >= sizeof exe - 1)
            strcpy(exe, "/proc/self/exe");
        else
            exe[k] = '\0';
    }
    return exe;
}

pid_t mp_test_exec_self(const char *const *args, const int *fds, int n)
{
    size_t na = 0;
    while (args && args[na])
        na++;
    char **argv = calloc(na + 3, sizeof *argv);
    if (!argv) return -1;
    argv[0] = (char *)"mp-test-exec-child";
    argv[1] = (char *)MP_TEST_EXEC_MARK;
    for (size_t i = 0; i < na; i++)
        argv[i + 2] = (char *)args[i];
    const char *exe = mp_test_self_exe();
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        for (int i = 0; i < n; i++) {
            int fl = fcntl(fds[i], F_GETFD);
            if (fl < 0 || fcntl(fds[i], F_SETFD, fl & ~FD_CLOEXEC) < 0) _exit(97);
        }
        execv(exe, argv);
        _exit(96);
    }
    free(argv);
    return pid;
}

int mp_test_wait(pid_t pid, double timeout_s)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return -2;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el =
            (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        if (el > timeout_s) {
            fprintf(stderr, "mp_test_wait: child %d still running after %.1f s; killing it\n",
                    (int)pid, timeout_s);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int mp_test_wait_code(pid_t pid, double timeout_s)
{
    int st = mp_test_wait(pid, timeout_s);
    if (st < 0) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int mp_test_eventually(int (*pred)(void *arg), void *arg, double timeout_s)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (pred(arg)) return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el =
            (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        if (el > timeout_s) return 0;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int mp_test_pid_exists(pid_t pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}

void mp_test_write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        assert_true(r > 0);
        p += r;
        n -= (size_t)r;
    }
}

int mp_test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

void mp_test_make_mutex_unrecoverable(pthread_mutex_t *m)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        pthread_mutex_lock(m);
        mp_test_child_exit(0);
    }
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
    assert_int_equal(pthread_mutex_lock(m), EOWNERDEAD);
    pthread_mutex_unlock(m);
}

void mp_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

void mp_test_spin_us(long us)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

int mp_test_pin_first_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0) return -1;
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, &set))
        first++;
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

char mp_test_proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}
