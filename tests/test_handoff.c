/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=180 lock=shm */
/* test_handoff.c - objects handed to a NEW program image (handoff.h: what spawn and forkserver
 * use): every kind is exported here, the test re-executes itself (/proc/self/exe) with the fds
 * inherited, and the exec'd side calls mp_init(), imports, and uses the object at the same time as
 * the parent: the same shared state on both sides, never a copy. Also: what cannot travel says so
 * (MP_ENOTSUP and why), bad descriptions are refused (MP_ECORRUPT), nothing leaks, and the exec'd
 * child holds no fd of mproc it was not given. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handoff.h"
#include "mp_test.h"
#include "mproc.h"
#include "sync_internal.h"

#define MAXOBJ 4

/* ---- the fds a child may hold --------------------------------------------------------------- */

/* The fds open when the program started (the runner's), recorded once in the test process and
 * passed to every exec'd child through the environment: a child may hold those, the fds it was
 * given, and nothing else. */
#define BASE_ENV "MP_TEST_HANDOFF_BASE_FDS"

__attribute__((constructor)) static void record_base_fds(void)
{
    if (getenv(BASE_ENV)) return; /* an exec'd child: keep the test process's list */
    char list[1024] = "";
    size_t off = 0;
    for (int fd = 0; fd < 256 && off < sizeof list - 8; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            off += (size_t)snprintf(list + off, sizeof list - off, "%d,", fd);
    setenv(BASE_ENV, list, 1);
}

static bool in_list(const char *list, int fd)
{
    char want[16];
    snprintf(want, sizeof want, "%d,", fd);
    for (const char *p = list; p && *p;) {
        if (strncmp(p, want, strlen(want)) == 0) return true;
        p = strchr(p, ',');
        if (p) p++;
    }
    return false;
}

/* Child side: every open fd is one of the runner's or one of `given`. Prints the intruders. */
static bool fds_only(const int *given, int n)
{
    const char *base = getenv(BASE_ENV);
    bool ok = true;
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        bool allowed = in_list(base, fd);
        for (int i = 0; i < n; i++)
            allowed |= given[i] == fd;
        if (allowed) continue;
        char link[64], what[256] = "?";
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t l = readlink(link, what, sizeof what - 1);
        if (l > 0) what[l] = '\0';
        /* A plain file is not mproc's (mproc's objects are memfds, /dev/shm blocks, sockets,
         * pipes): under valgrind --log-file the tool's own log shows up in every exec'd child. */
        if (what[0] == '/' && strncmp(what, "/memfd:", 7) != 0 &&
            strncmp(what, "/dev/shm/", 9) != 0)
            continue;
        fprintf(stderr, "exec'd child holds fd %d -> %s that it was not given\n", fd, what);
        ok = false;
    }
    return ok;
}

/* ---- the trip: export, exec, import --------------------------------------------------------- */

static void to_hex(const void *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool from_hex(const char *s, void *p, size_t n)
{
    unsigned char *b = p;
    if (strlen(s) != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
        b[i] = (unsigned char)v;
    }
    return true;
}

/* Exports the objects, re-executes the test as `role param handoff...` with their fds, and
 * closes the exported fds on this side (as the start does once they were sent). */
static pid_t start_child(const char *role, const char *param, int n, const int *kinds,
                         void *const *objs)
{
    mp__handoff h[MAXOBJ];
    char hex[MAXOBJ][2 * sizeof(mp__handoff) + 1];
    const char *args[MAXOBJ + 3] = {role, param ? param : "-"};
    int fds[MAXOBJ * MP__HANDOFF_FDS], nfds = 0;
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        int r = mp__handoff_export(kinds[i], objs[i], &h[i], &why);
        if (r) fail_msg("export of %s: %s (%s)", mp_kind_name(kinds[i]), mp_err_name(r), why);
        for (int j = 0; j < h[i].nfds; j++)
            fds[nfds++] = h[i].fds[j];
        to_hex(&h[i], sizeof h[i], hex[i]);
        args[i + 2] = hex[i];
    }
    args[n + 2] = NULL;
    pid_t pid = mp_test_exec_self(args, fds, nfds);
    for (int i = 0; i < n; i++)
        mp__handoff_close(&h[i]);
    assert_true(pid > 0);
    return pid;
}

static pid_t start1(const char *role, const char *param, int kind, void *obj)
{
    return start_child(role, param, 1, &kind, &obj);
}

static int wait_child(pid_t pid)
{
    return mp_test_wait_code(pid, mp_test_timeout(60));
}

/* Child side: the objects given, in order. */
typedef struct given {
    int n;
    void *obj[MAXOBJ];
    int fds[MAXOBJ * MP__HANDOFF_FDS];
    int nfds;
} given;

static void import_all(int argc, char **argv, given *g)
{
    g->n = g->nfds = 0;
    for (int i = 4; i < argc && g->n < MAXOBJ; i++) {
        mp__handoff h;
        MP_CHILD_CHECK(from_hex(argv[i], &h, sizeof h));
        for (int j = 0; j < h.nfds; j++)
            g->fds[g->nfds++] = h.fds[j];
        int r = mp__handoff_import(&h, &g->obj[g->n]);
        if (r) fprintf(stderr, "import %d: %s\n", i - 4, mp_err_name(r));
        MP_CHILD_CHECK(r == 0);
        g->n++;
    }
    /* the child holds what it was given (at most) and nothing else of mproc's */
    MP_CHILD_CHECK(fds_only(g->fds, g->nfds));
}

/* After the objects are freed: none of the fds given is left either. */
static void check_released(void)
{
    MP_CHILD_CHECK(fds_only(NULL, 0));
}

static double T(double s)
{
    return mp_test_timeout(s);
}

/* ---- the roles of the exec'd child ------------------------------------------------------------
 */

#define QN 3000

static size_t qmsg(uint32_t i, unsigned char *buf)
{
    size_t len = 4 + (i * 37) % 300;
    memcpy(buf, &i, 4);
    for (size_t k = 4; k < len; k++)
        buf[k] = (unsigned char)(i + k);
    return len;
}

static bool qmsg_ok(uint32_t want, const unsigned char *buf, size_t len)
{
    unsigned char ref[512];
    size_t rl = qmsg(want, ref);
    return rl == len && memcmp(ref, buf, len) == 0;
}

static int role_queue(given *g)
{
    mp_queue *q = g->obj[0], *down = g->obj[1];
    unsigned char buf[512];
    for (uint32_t i = 0; i < QN; i++) {
        size_t len = qmsg(i, buf);
        MP_CHILD_CHECK(mp_queue_put(q, buf, len, T(20)) == 0);
    }
    /* then the other way: the parent produces 1000000 + i */
    for (uint32_t i = 0; i < QN; i++) {
        size_t len;
        MP_CHILD_CHECK(mp_queue_get(down, buf, sizeof buf, &len, T(20)) == 0);
        MP_CHILD_CHECK(qmsg_ok(1000000 + i, buf, len));
    }
    mp_queue_free(&q);
    mp_queue_free(&down);
    check_released();
    return 0;
}

static int role_joinable(given *g)
{
    mp_queue *q = g->obj[0];
    for (int i = 0; i < 200; i++) {
        int v;
        size_t len;
        MP_CHILD_CHECK(mp_queue_get(q, &v, sizeof v, &len, T(20)) == 0);
        MP_CHILD_CHECK(v == i);
        if (i % 50 == 0) mp_test_sleep_ms(5); /* the parent's join must wait for us */
        MP_CHILD_CHECK(mp_queue_task_done(q) == 0);
    }
    mp_queue_free(&q);
    return 0;
}

#define LN 20000

/* n increments of a plain (unsynchronised) Value under lock l: read, yield now and then, write.
 * Without exclusion some increments are lost. */
static void locked_increments(mp_lock *l, mp_value *v, int n)
{
    for (int i = 0; i < n; i++) {
        int r = mp_lock_acquire(l, T(30));
        MP_CHILD_CHECK(r == 0);
        int64_t x;
        MP_CHILD_CHECK(mp_value_get_i64(v, &x) == 0);
        if (i % 64 == 0) sched_yield();
        MP_CHILD_CHECK(mp_value_set_i64(v, x + 1) == 0);
        MP_CHILD_CHECK(mp_lock_release(l) == 0);
    }
}

static int role_lock(given *g)
{
    mp_lock *l = g->obj[0];
    mp_value *v = g->obj[1];
    mp_barrier *b = g->obj[2];
    MP_CHILD_CHECK(mp_barrier_wait(b, T(20)) >= 0);
    locked_increments(l, v, LN);
    MP_CHILD_CHECK(mp_lock_free(&l) == 0);
    mp_value_free(&v);
    mp_barrier_free(&b);
    check_released();
    return 0;
}

/* n increments of a synchronized Value under its own lock. */
static void value_increments(mp_value *v, int n)
{
    mp_lock *l = mp_value_lock(v);
    for (int i = 0; i < n; i++) {
        MP_CHILD_CHECK(mp_lock_acquire(l, T(30)) == 0);
        int64_t x;
        MP_CHILD_CHECK(mp_value_get_i64(v, &x) == 0);
        if (i % 64 == 0) sched_yield();
        MP_CHILD_CHECK(mp_value_set_i64(v, x + 1) == 0);
        MP_CHILD_CHECK(mp_lock_release(l) == 0);
    }
}

static int role_value(given *g)
{
    mp_value *v = g->obj[0];
    mp_barrier *b = g->obj[1];
    MP_CHILD_CHECK(mp_value_type(v) == 'q');
    MP_CHILD_CHECK(mp_barrier_wait(b, T(20)) >= 0);
    value_increments(v, LN);
    mp_value_free(&v);
    mp_barrier_free(&b);
    check_released();
    return 0;
}

#define AN 64

static int role_array(given *g)
{
    mp_array *a = g->obj[0];
    MP_CHILD_CHECK(mp_array_len(a) == AN && mp_array_type(a) == 'i');
    for (size_t i = 0; i + 1 < AN; i++) {
        int64_t x;
        MP_CHILD_CHECK(mp_array_get_i64(a, i, &x) == 0 && x == (int64_t)i);
        MP_CHILD_CHECK(mp_array_set_i64(a, i, 2 * x) == 0);
    }
    for (int i = 0; i < LN; i++)
        MP_CHILD_CHECK(mp_array_add(a, AN - 1, 1, NULL) == 0);
    mp_array_free(&a);
    return 0;
}

static int role_sem(given *g)
{
    mp_sem *s = g->obj[0], *bs = g->obj[1];
    for (int i = 0; i < 50; i++) {
        MP_CHILD_CHECK(mp_sem_release(s) == 0);
        if (i % 10 == 0) mp_test_sleep_ms(2);
    }
    /* the bound travelled with the state: the parent took the one unit, gives it back to us */
    MP_CHILD_CHECK(mp_sem_acquire(bs, T(20)) == 0);
    MP_CHILD_CHECK(mp_sem_release(bs) == 0);
    MP_CHILD_CHECK(mp_sem_release(bs) == MP_EOVERRELEASE);
    mp_sem_free(&s);
    mp_sem_free(&bs);
    return 0;
}

static int role_event(given *g)
{
    mp_event *e1 = g->obj[0], *e2 = g->obj[1];
    MP_CHILD_CHECK(mp_event_wait(e1, T(20)) == 0);
    MP_CHILD_CHECK(mp_event_set(e2) == 0);
    mp_event_free(&e1);
    mp_event_free(&e2);
    return 0;
}

/* The flag lives in a plain Value: 0, then 1 (parent), then 2 (child). */
static int role_cond(given *g, const char *param)
{
    mp_cond *c = g->obj[0];
    mp_value *flag = g->obj[1];
    if (strcmp(param, "ext") == 0) MP_CHILD_CHECK(mp_lock_is_recursive(mp_cond_lock(c)) == 1);
    int64_t x = 0;
    MP_CHILD_CHECK(mp_cond_acquire(c, T(20)) == 0);
    while (mp_value_get_i64(flag, &x) == 0 && x == 0)
        MP_CHILD_CHECK(mp_cond_wait(c, T(20)) == 0);
    MP_CHILD_CHECK(x == 1);
    MP_CHILD_CHECK(mp_value_set_i64(flag, 2) == 0);
    MP_CHILD_CHECK(mp_cond_notify_all(c) == 0);
    MP_CHILD_CHECK(mp_cond_release(c) == 0);
    MP_CHILD_CHECK(mp_cond_free(&c) == 0);
    mp_value_free(&flag);
    check_released();
    return 0;
}

static int role_barrier(given *g)
{
    mp_barrier *b = g->obj[0];
    MP_CHILD_CHECK(mp_barrier_parties(b) == 2);
    for (int i = 0; i < 50; i++)
        MP_CHILD_CHECK(mp_barrier_wait(b, T(20)) >= 0);
    mp_barrier_free(&b);
    return 0;
}

/* Echo server: each message comes back with its bytes reversed, until an empty one. */
static int role_pipe_echo(given *g)
{
    mp_conn *c = g->obj[0];
    for (;;) {
        void *buf;
        size_t len;
        int r = mp_conn_recv_alloc(c, &buf, &len, T(20));
        MP_CHILD_CHECK(r == 0);
        if (len == 0) {
            free(buf);
            break;
        }
        unsigned char *p = buf;
        for (size_t i = 0; i < len / 2; i++) {
            unsigned char t = p[i];
            p[i] = p[len - 1 - i];
            p[len - 1 - i] = t;
        }
        MP_CHILD_CHECK(mp_conn_send(c, buf, len, T(20)) == 0);
        free(buf);
    }
    mp_conn_free(&c);
    check_released();
    return 0;
}

static int role_pipe_send(given *g)
{
    mp_conn *c = g->obj[0];
    MP_CHILD_CHECK(mp_conn_is_writable(c) == 1 && mp_conn_is_readable(c) == 0);
    for (int i = 0; i < 100; i++)
        MP_CHILD_CHECK(mp_conn_send(c, &i, sizeof i, T(20)) == 0);
    mp_conn_free(&c);
    return 0;
}

/* The receive-only end: read one message, then exit (the parent's next sends see -EPIPE). */
static int role_pipe_recv(given *g)
{
    mp_conn *c = g->obj[0];
    int v;
    size_t len;
    MP_CHILD_CHECK(mp_conn_recv(c, &v, sizeof v, &len, T(20)) == 0 && v == 42);
    mp_conn_free(&c);
    return 0;
}

static int role_shm(given *g, const char *name)
{
    mp_shm *b = g->obj[0];
    MP_CHILD_CHECK(mp_shm_size(b) == 8192);
    MP_CHILD_CHECK(strcmp(mp_shm_name(b), name) == 0);
    unsigned char *p = mp_shm_ptr(b);
    for (int i = 0; i < 4096; i++)
        MP_CHILD_CHECK(p[i] == (unsigned char)i);
    memset(p + 4096, 0xab, 4096);
    mp_shm_free(&b); /* an attacher: never unlinks */
    check_released();
    return 0;
}

/* Objects made before mp_init() cannot travel; made after, they can. */
static int role_before_init(void)
{
    mp_queue *q;
    mp_lock *l;
    mp_value *v;
    MP_CHILD_CHECK(mp_queue_new(&q, 0, 0) == 0);
    MP_CHILD_CHECK(mp_lock_new(&l) == 0);
    MP_CHILD_CHECK(mp_value_new(&v, 'i', NULL, true) == 0);
    MP_CHILD_CHECK(fds_only(NULL, 0)); /* no fd per object before mp_init() */
    const int kinds[] = {MP_KIND_QUEUE, MP_KIND_LOCK, MP_KIND_VALUE};
    void *objs[] = {q, l, v};
    for (int i = 0; i < 3; i++) {
        mp__handoff h;
        const char *why = NULL;
        MP_CHILD_CHECK(mp__handoff_export(kinds[i], objs[i], &h, &why) == MP_ENOTSUP);
        MP_CHILD_CHECK(why && strstr(why, "mp_init()"));
        MP_CHILD_CHECK(h.nfds == 0);
    }
    mp_queue_free(&q);
    mp_lock_free(&l);
    mp_value_free(&v);
    MP_CHILD_CHECK(mp_init(NULL, NULL) == 0);
    MP_CHILD_CHECK(mp_lock_new(&l) == 0);
    mp__handoff h;
    MP_CHILD_CHECK(mp__handoff_export(MP_KIND_LOCK, l, &h, NULL) == 0 && h.nfds == 1);
    mp__handoff_close(&h);
    mp_lock_free(&l);
    MP_CHILD_CHECK(fds_only(NULL, 0));
    return 0;
}

static int child_main(int argc, char **argv)
{
    if (argc < 4) return 90;
    const char *role = argv[2], *param = argv[3];
    if (strcmp(role, "before_init") == 0) return role_before_init();
    MP_CHILD_CHECK(mp_init(NULL, NULL) == 0);
    given g;
    import_all(argc, argv, &g);
    if (strcmp(role, "queue") == 0) return role_queue(&g);
    if (strcmp(role, "joinable") == 0) return role_joinable(&g);
    if (strcmp(role, "lock") == 0) return role_lock(&g);
    if (strcmp(role, "value") == 0) return role_value(&g);
    if (strcmp(role, "array") == 0) return role_array(&g);
    if (strcmp(role, "sem") == 0) return role_sem(&g);
    if (strcmp(role, "event") == 0) return role_event(&g);
    if (strcmp(role, "cond") == 0) return role_cond(&g, param);
    if (strcmp(role, "barrier") == 0) return role_barrier(&g);
    if (strcmp(role, "pipe_echo") == 0) return role_pipe_echo(&g);
    if (strcmp(role, "pipe_send") == 0) return role_pipe_send(&g);
    if (strcmp(role, "pipe_recv") == 0) return role_pipe_recv(&g);
    if (strcmp(role, "shm") == 0) return role_shm(&g, param);
    return 91;
}

/* ---- the cases: both sides at once ------------------------------------------------------------
 */

static void test_queue_both_ways(void **state)
{
    (void)state;
    mp_queue *q, *down;
    assert_mp_ok(mp_queue_new(&q, 0, 16384)); /* small: the ring wraps and both sides wait */
    assert_mp_ok(mp_queue_new(&down, 0, 16384));
    const int kinds[] = {MP_KIND_QUEUE, MP_KIND_QUEUE};
    void *objs[] = {q, down};
    pid_t pid = start_child("queue", NULL, 2, kinds, objs);
    unsigned char buf[512];
    for (uint32_t i = 0; i < QN; i++) {
        size_t len;
        assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &len, T(20)));
        assert_true(qmsg_ok(i, buf, len));
    }
    for (uint32_t i = 0; i < QN; i++) {
        size_t len = qmsg(1000000 + i, buf);
        assert_mp_ok(mp_queue_put(down, buf, len, T(20)));
    }
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(mp_queue_qsize(down), 0);
    mp_queue_free(&q);
    mp_queue_free(&down);
}

static void test_joinable_queue(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, 0));
    pid_t pid = start1("joinable", NULL, MP_KIND_QUEUE, q);
    for (int i = 0; i < 200; i++)
        assert_mp_ok(mp_queue_put(q, &i, sizeof i, T(20)));
    assert_mp_ok(mp_queue_join(q, T(30))); /* every item marked done by the exec'd child */
    assert_int_equal(mp_queue_unfinished(q), 0);
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(mp_queue_tasks_lost(q), 0);
    mp_queue_free(&q);
}

static void test_lock_contended(void **state)
{
    (void)state;
    mp_lock *l;
    mp_value *v;
    mp_barrier *b;
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_value_new(&v, 'q', NULL, false)); /* no lock of its own: l guards it */
    assert_mp_ok(mp_barrier_new(&b, 2));
    const int kinds[] = {MP_KIND_LOCK, MP_KIND_VALUE, MP_KIND_BARRIER};
    void *objs[] = {l, v, b};
    pid_t pid = start_child("lock", NULL, 3, kinds, objs);
    assert_true(mp_barrier_wait(b, T(20)) >= 0);
    for (int i = 0; i < LN; i++) {
        assert_mp_ok(mp_lock_acquire(l, T(30)));
        int64_t x;
        assert_mp_ok(mp_value_get_i64(v, &x));
        if (i % 64 == 0) sched_yield();
        assert_mp_ok(mp_value_set_i64(v, x + 1));
        assert_mp_ok(mp_lock_release(l));
    }
    assert_int_equal(wait_child(pid), 0);
    int64_t total;
    assert_mp_ok(mp_value_get_i64(v, &total));
    assert_int_equal(total, 2 * LN);
    mp_lock_free(&l);
    mp_value_free(&v);
    mp_barrier_free(&b);
}

static void test_value_exact_total(void **state)
{
    (void)state;
    mp_value *v;
    mp_barrier *b;
    int64_t zero = 0;
    assert_mp_ok(mp_value_new(&v, 'q', &zero, true));
    assert_mp_ok(mp_barrier_new(&b, 2));
    const int kinds[] = {MP_KIND_VALUE, MP_KIND_BARRIER};
    void *objs[] = {v, b};
    pid_t pid = start_child("value", NULL, 2, kinds, objs);
    assert_true(mp_barrier_wait(b, T(20)) >= 0);
    mp_lock *l = mp_value_lock(v);
    for (int i = 0; i < LN; i++) {
        assert_mp_ok(mp_lock_acquire(l, T(30)));
        int64_t x;
        assert_mp_ok(mp_value_get_i64(v, &x));
        if (i % 64 == 0) sched_yield();
        assert_mp_ok(mp_value_set_i64(v, x + 1));
        assert_mp_ok(mp_lock_release(l));
    }
    assert_int_equal(wait_child(pid), 0);
    int64_t total;
    assert_mp_ok(mp_value_get_i64(v, &total));
    assert_int_equal(total, 2 * LN);
    mp_value_free(&v);
    mp_barrier_free(&b);
}

static void test_array(void **state)
{
    (void)state;
    int init[AN];
    for (int i = 0; i < AN; i++)
        init[i] = i;
    mp_array *a;
    assert_mp_ok(mp_array_new(&a, 'i', AN, init, true));
    pid_t pid = start1("array", NULL, MP_KIND_ARRAY, a);
    for (int i = 0; i < LN; i++)
        assert_mp_ok(mp_array_add(a, AN - 1, 1, NULL));
    assert_int_equal(wait_child(pid), 0);
    for (size_t i = 0; i + 1 < AN; i++) {
        int64_t x;
        assert_mp_ok(mp_array_get_i64(a, i, &x));
        assert_int_equal(x, 2 * (int64_t)i);
    }
    int64_t last;
    assert_mp_ok(mp_array_get_i64(a, AN - 1, &last));
    assert_int_equal(last, AN - 1 + 2 * LN);
    mp_array_free(&a);
}

static void test_semaphores(void **state)
{
    (void)state;
    mp_sem *s, *bs;
    assert_mp_ok(mp_sem_new(&s, 0));
    assert_mp_ok(mp_bsem_new(&bs, 1));
    assert_mp_ok(mp_sem_acquire(bs, 0)); /* the child waits for this unit */
    const int kinds[] = {MP_KIND_SEM, MP_KIND_SEM};
    void *objs[] = {s, bs};
    pid_t pid = start_child("sem", NULL, 2, kinds, objs);
    for (int i = 0; i < 50; i++)
        assert_mp_ok(mp_sem_acquire(s, T(20))); /* every unit released over there */
    mp_test_sleep_ms(20);
    assert_mp_ok(mp_sem_release(bs));
    assert_int_equal(wait_child(pid), 0);
    unsigned val;
    assert_mp_ok(mp_sem_get_value(s, &val));
    assert_int_equal(val, 0);
    assert_mp_ok(mp_sem_get_value(bs, &val));
    assert_int_equal(val, 1);
    mp_sem_free(&s);
    mp_sem_free(&bs);
}

static void test_event(void **state)
{
    (void)state;
    mp_event *e1, *e2;
    assert_mp_ok(mp_event_new(&e1));
    assert_mp_ok(mp_event_new(&e2));
    const int kinds[] = {MP_KIND_EVENT, MP_KIND_EVENT};
    void *objs[] = {e1, e2};
    pid_t pid = start_child("event", NULL, 2, kinds, objs);
    mp_test_sleep_ms(30);
    assert_mp_ok(mp_event_set(e1));
    assert_mp_ok(mp_event_wait(e2, T(20)));
    assert_int_equal(wait_child(pid), 0);
    mp_event_free(&e1);
    mp_event_free(&e2);
}

static void cond_case(bool ext)
{
    mp_lock *rl = NULL;
    mp_cond *c;
    mp_value *flag;
    if (ext) assert_mp_ok(mp_rlock_new(&rl));
    assert_mp_ok(mp_cond_new(&c, rl));
    assert_mp_ok(mp_value_new(&flag, 'q', NULL, false));
    const int kinds[] = {MP_KIND_COND, MP_KIND_VALUE};
    void *objs[] = {c, flag};
    pid_t pid = start_child("cond", ext ? "ext" : "own", 2, kinds, objs);
    mp_test_sleep_ms(30);
    assert_mp_ok(mp_cond_acquire(c, T(20)));
    assert_mp_ok(mp_value_set_i64(flag, 1));
    assert_mp_ok(mp_cond_notify_all(c));
    int64_t x = 0;
    while (mp_value_get_i64(flag, &x) == 0 && x != 2)
        assert_mp_ok(mp_cond_wait(c, T(20)));
    assert_mp_ok(mp_cond_release(c));
    assert_int_equal(wait_child(pid), 0);
    mp_cond_free(&c);
    mp_lock_free(&rl);
    mp_value_free(&flag);
}

static void test_condition(void **state)
{
    (void)state;
    cond_case(false);
}

static void test_condition_with_caller_lock(void **state)
{
    (void)state;
    cond_case(true);
}

static void test_barrier(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 2));
    pid_t pid = start1("barrier", NULL, MP_KIND_BARRIER, b);
    for (int i = 0; i < 50; i++)
        assert_true(mp_barrier_wait(b, T(20)) >= 0);
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(mp_barrier_is_broken(b), 0);
    mp_barrier_free(&b);
}

static void test_pipe_duplex_end(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe_new(&a, &b, true));
    pid_t pid = start1("pipe_echo", NULL, MP_KIND_CONN, b);
    mp_conn_free(&b); /* as under fork: the parent closes the end it gave away */
    size_t sizes[] = {1, 100, 4096, 70000, 1 << 20}; /* 70000 and 1 MiB: the bulk socket */
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *m = malloc(n);
        assert_non_null(m);
        for (size_t i = 0; i < n; i++)
            m[i] = (unsigned char)(i * 7 + k);
        assert_mp_ok(mp_conn_send(a, m, n, T(20)));
        void *back;
        size_t len;
        assert_mp_ok(mp_conn_recv_alloc(a, &back, &len, T(20)));
        assert_int_equal(len, n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(((unsigned char *)back)[i], m[n - 1 - i]);
        free(back);
        free(m);
    }
    assert_mp_ok(mp_conn_send(a, "", 0, T(20)));
    assert_int_equal(wait_child(pid), 0);
    /* the child's end is gone with it: end of file here */
    char c;
    size_t len;
    assert_mp(MP_EEOF, mp_conn_recv(a, &c, 1, &len, T(5)));
    mp_conn_free(&a);
}

static void test_pipe_send_end(void **state)
{
    (void)state;
    mp_conn *r, *w;
    assert_mp_ok(mp_pipe_new(&r, &w, false));
    pid_t pid = start1("pipe_send", NULL, MP_KIND_CONN, w);
    mp_conn_free(&w);
    for (int i = 0; i < 100; i++) {
        int v;
        size_t len;
        assert_mp_ok(mp_conn_recv(r, &v, sizeof v, &len, T(20)));
        assert_int_equal(v, i);
    }
    assert_int_equal(wait_child(pid), 0);
    int v;
    size_t len;
    assert_mp(MP_EEOF, mp_conn_recv(r, &v, sizeof v, &len, T(5)));
    mp_conn_free(&r);
}

/* The receiving end goes to the exec'd child; when it exits, the parent's sends learn that the
 * peer is gone (the hang-up watch works on the imported end's sockets as on a forked one). */
static void test_pipe_recv_end_peer_gone(void **state)
{
    (void)state;
    mp_conn *r, *w;
    assert_mp_ok(mp_pipe_new(&r, &w, false));
    pid_t pid = start1("pipe_recv", NULL, MP_KIND_CONN, r);
    mp_conn_free(&r);
    int v = 42;
    assert_mp_ok(mp_conn_send(w, &v, sizeof v, T(20)));
    assert_int_equal(wait_child(pid), 0);
    assert_mp(-EPIPE, mp_conn_send(w, &v, sizeof v, T(5)));
    mp_conn_free(&w);
}

static void test_named_block(void **state)
{
    (void)state;
    mp_shm *b;
    assert_mp_ok(mp_shm_new(&b, NULL, 8192));
    unsigned char *p = mp_shm_ptr(b);
    for (int i = 0; i < 4096; i++)
        p[i] = (unsigned char)i;
    pid_t pid = start1("shm", mp_shm_name(b), MP_KIND_SHM, b);
    assert_int_equal(wait_child(pid), 0);
    for (int i = 4096; i < 8192; i++)
        assert_int_equal(p[i], 0xab);
    assert_mp_ok(mp_shm_free(&b)); /* unlinks: the child left the name alone */
}

static void test_before_init_cannot_travel(void **state)
{
    (void)state;
    const char *args[] = {"before_init", "-", NULL};
    pid_t pid = mp_test_exec_self(args, NULL, 0);
    assert_true(pid > 0);
    assert_int_equal(wait_child(pid), 0);
}

/* ---- in one process: what cannot travel, bad descriptions ---------------------------------- */

static int action(void *arg)
{
    (void)arg;
    return 0;
}

static void expect_notsup(int kind, void *obj, const char *why_part)
{
    mp__handoff h;
    const char *why = NULL;
    assert_mp(MP_ENOTSUP, mp__handoff_export(kind, obj, &h, &why));
    assert_non_null(why);
    if (!strstr(why, why_part)) fail_msg("why: \"%s\" lacks \"%s\"", why, why_part);
    assert_int_equal(h.nfds, 0);
}

static void test_cannot_travel(void **state)
{
    (void)state;
    mp_barrier_options o;
    mp_barrier_options_init(&o);
    o.action = action;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new_opts(&b, 2, &o));
    expect_notsup(MP_KIND_BARRIER, b, "action");
    mp_barrier_free(&b);

    mp_value *v;
    assert_mp_ok(mp_value_new(&v, 'i', NULL, true));
    expect_notsup(MP_KIND_LOCK, mp_value_lock(v), "borrowed");
    mp_value_free(&v);

    void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    mp_lock *l;
    assert_mp_ok(mp_lock_init_at(&l, mem, 4096, false));
    expect_notsup(MP_KIND_LOCK, l, "caller memory");
    mp_lock_free(&l);
    munmap(mem, 4096);

    mp_lock *plain;
    mp_cond *c;
    assert_mp_ok(mp_value_new(&v, 'i', NULL, true));
    assert_mp_ok(mp_cond_new(&c, mp_value_lock(v)));
    expect_notsup(MP_KIND_COND, c, "lock");
    mp_cond_free(&c);
    mp_value_free(&v);

    mp_conn *a, *bb;
    assert_mp_ok(mp_pipe_new(&a, &bb, true));
    assert_mp_ok(mp_conn_send(bb, "x", 1, T(5)));
    assert_mp_ok(mp_conn_send(bb, "y", 1, T(5)));
    char ch;
    size_t len;
    assert_mp_ok(mp_conn_recv(a, &ch, 1, &len, T(5))); /* "y" stays buffered in a */
    expect_notsup(MP_KIND_CONN, a, "not read yet");
    assert_mp_ok(mp_conn_close(bb));
    expect_notsup(MP_KIND_CONN, bb, "closed");
    mp_conn_free(&a);
    mp_conn_free(&bb);

    mp_shm *blk;
    assert_mp_ok(mp_shm_new(&blk, NULL, 4096));
    assert_mp_ok(mp_shm_unlink(blk));
    expect_notsup(MP_KIND_SHM, blk, "unlinked");
    mp_shm_free(&blk);

    /* the wrong kind, an unknown kind, NULL */
    assert_mp_ok(mp_lock_new(&plain));
    mp__handoff h;
    const char *why;
    assert_mp(-EINVAL, mp__handoff_export(MP_KIND_EVENT, plain, &h, &why));
    assert_mp(-EINVAL, mp__handoff_export(99, plain, &h, &why));
    assert_mp(-EINVAL, mp__handoff_export(MP_KIND_LOCK, NULL, &h, &why));
    mp_lock_free(&plain);
}

/* A handoff made by exporting obj, to be spoiled by the caller. */
static mp__handoff exported(int kind, void *obj)
{
    mp__handoff h;
    const char *why = NULL;
    int r = mp__handoff_export(kind, obj, &h, &why);
    if (r) fail_msg("export: %s (%s)", mp_err_name(r), why);
    return h;
}

static void expect_corrupt(mp__handoff h)
{
    void *out = (void *)1;
    assert_mp(MP_ECORRUPT, mp__handoff_import(&h, &out));
    assert_null(out);
}

static void test_bad_descriptions(void **state)
{
    (void)state;
    mp_queue *q;
    mp_lock *l;
    mp_value *v;
    mp_conn *a, *b;
    mp_shm *blk;
    assert_mp_ok(mp_queue_new(&q, 0, 0));
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_value_new(&v, 'q', NULL, true));
    assert_mp_ok(mp_pipe_new(&a, &b, true));
    assert_mp_ok(mp_shm_new(&blk, NULL, 4096));
    int fds_before = mp_test_count_fds();

    mp__handoff h = exported(MP_KIND_QUEUE, q);
    h.kind = 77; /* unknown kind */
    expect_corrupt(h);
    h = exported(MP_KIND_QUEUE, q);
    h.len = 3; /* truncated */
    expect_corrupt(h);
    h = exported(MP_KIND_QUEUE, q);
    h.data[0] ^= 1; /* magic */
    expect_corrupt(h);
    h = exported(MP_KIND_QUEUE, q);
    h.data[8] ^= 0x40; /* map_len no longer that of the layout */
    expect_corrupt(h);
    h = exported(MP_KIND_QUEUE, q);
    h.nfds = 9;
    expect_corrupt(h); /* closes the slots it can see (the only real fd among them) */
    h = exported(MP_KIND_QUEUE, q);
    h.kind = MP_KIND_VALUE; /* another module's description */
    expect_corrupt(h);
    h = exported(MP_KIND_LOCK, l);
    h.kind = MP_KIND_EVENT; /* a Lock's state where an Event is expected */
    expect_corrupt(h);

    /* a description that fits but an fd that does not: a pipe, a memfd of the wrong size, a
     * memfd of the right size that holds no queue */
    h = exported(MP_KIND_QUEUE, q);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    close(h.fds[0]);
    h.fds[0] = p[0];
    close(p[1]);
    expect_corrupt(h);
    h = exported(MP_KIND_QUEUE, q);
    close(h.fds[0]);
    h.fds[0] = memfd_create("wrong", MFD_CLOEXEC);
    assert_int_equal(ftruncate(h.fds[0], 4096), 0);
    expect_corrupt(h);
    mp__handoff good = exported(MP_KIND_QUEUE, q);
    struct stat st;
    assert_int_equal(fstat(good.fds[0], &st), 0);
    mp__handoff_close(&good);
    h = exported(MP_KIND_QUEUE, q);
    close(h.fds[0]);
    h.fds[0] = memfd_create("zeros", MFD_CLOEXEC);
    assert_int_equal(ftruncate(h.fds[0], st.st_size), 0);
    expect_corrupt(h);
    h = exported(MP_KIND_VALUE, v);
    h.data[4] = 'd'; /* another element type than the header says */
    expect_corrupt(h);

    /* connections: fd indices out of range, twice the same, one left out */
    h = exported(MP_KIND_CONN, a);
    assert_int_equal(h.nfds, 4);
    h.data[12] = 7;
    expect_corrupt(h);
    h = exported(MP_KIND_CONN, a);
    h.data[13] = h.data[12];
    expect_corrupt(h);
    h = exported(MP_KIND_CONN, a);
    h.data[15] = (unsigned char)-1; /* the keeper fd is then not named */
    expect_corrupt(h);
    h = exported(MP_KIND_SHM, blk);
    h.data[8] ^= 1; /* size */
    expect_corrupt(h);
    h = exported(MP_KIND_SHM, blk);
    h.nfds = 0;
    close(h.fds[0]);
    expect_corrupt(h);

    /* import of NULL */
    void *out;
    assert_mp(-EINVAL, mp__handoff_import(NULL, &out));

    assert_int_equal(mp_test_count_fds(), fds_before); /* every fd taken and closed */
    mp_queue_free(&q);
    mp_lock_free(&l);
    mp_value_free(&v);
    mp_conn_free(&a);
    mp_conn_free(&b);
    mp_shm_free(&blk);
}

/* Export and import inside one process: a second handle on the same state, for every kind. */
static void test_same_process_roundtrip(void **state)
{
    (void)state;
    mp_queue *q, *q2;
    assert_mp_ok(mp_queue_new_joinable(&q, 4, 0));
    mp__handoff h = exported(MP_KIND_QUEUE, q);
    assert_mp_ok(mp__handoff_import(&h, (void **)&q2));
    assert_mp_ok(mp_queue_put(q, "abc", 3, T(5)));
    char buf[8];
    size_t len;
    assert_mp_ok(mp_queue_get(q2, buf, sizeof buf, &len, T(5)));
    assert_int_equal(len, 3);
    assert_int_equal(mp_queue_maxsize(q2), 4);
    assert_mp_ok(mp_queue_task_done(q2));
    assert_mp_ok(mp_queue_join(q, T(5)));
    /* an imported object travels on (a spawned child may pass it to its own children) */
    mp_queue *q3;
    h = exported(MP_KIND_QUEUE, q2);
    assert_mp_ok(mp__handoff_import(&h, (void **)&q3));
    assert_mp_ok(mp_queue_put(q3, "z", 1, T(5)));
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &len, T(5)));
    mp_queue_free(&q3);
    mp_queue_free(&q2);
    mp_queue_free(&q);

    mp_lock *l, *l2;
    assert_mp_ok(mp_rlock_new(&l));
    h = exported(MP_KIND_LOCK, l);
    assert_mp_ok(mp__handoff_import(&h, (void **)&l2));
    assert_int_equal(mp_lock_is_recursive(l2), 1);
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_int_equal(mp_lock_is_locked(l2), 1);
    assert_int_equal(mp_lock_is_owned(l2), 1); /* the same mutex, held by this thread */
    assert_mp_ok(mp_lock_release(l2));
    assert_int_equal(mp_lock_is_locked(l), 0);
    mp_lock_free(&l2);
    mp_lock_free(&l);

    mp_array *arr, *arr2;
    assert_mp_ok(mp_array_new(&arr, 'd', 5, NULL, false));
    h = exported(MP_KIND_ARRAY, arr);
    assert_mp_ok(mp__handoff_import(&h, (void **)&arr2));
    assert_mp_ok(mp_array_set_f64(arr, 4, 2.5));
    double d;
    assert_mp_ok(mp_array_get_f64(arr2, 4, &d));
    assert_true(d == 2.5);
    assert_null(mp_array_lock(arr2));
    mp__handoff hv;
    const char *why;
    assert_mp(-EINVAL, mp__handoff_export(MP_KIND_VALUE, arr, &hv, &why)); /* 5 elements */
    mp_array_free(&arr2);
    mp_array_free(&arr);

    mp_conn *a, *b, *b2;
    assert_mp_ok(mp_pipe_new(&a, &b, true));
    h = exported(MP_KIND_CONN, b);
    assert_mp_ok(mp__handoff_import(&h, (void **)&b2));
    mp_conn_free(&b);
    assert_mp_ok(mp_conn_send(a, "hi", 2, T(5)));
    assert_mp_ok(mp_conn_recv(b2, buf, sizeof buf, &len, T(5)));
    assert_int_equal(len, 2);
    assert_mp_ok(mp_conn_send(b2, "yo", 2, T(5)));
    assert_mp_ok(mp_conn_recv(a, buf, sizeof buf, &len, T(5)));
    mp_conn_free(&b2);
    assert_mp(MP_EEOF, mp_conn_recv(a, buf, sizeof buf, &len, T(5)));
    mp_conn_free(&a);

    /* a socket connection: one fd both ways */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    mp_conn *s1, *s2, *s3;
    assert_mp_ok(mp_conn_from_fd(&s1, sv[0], true, true));
    assert_mp_ok(mp_conn_from_fd(&s2, sv[1], true, true));
    h = exported(MP_KIND_CONN, s2);
    assert_int_equal(h.nfds, 1);
    assert_mp_ok(mp__handoff_import(&h, (void **)&s3));
    mp_conn_free(&s2);
    assert_mp_ok(mp_conn_send(s1, "q", 1, T(5)));
    assert_mp_ok(mp_conn_recv(s3, buf, sizeof buf, &len, T(5)));
    mp_conn_free(&s3);
    mp_conn_free(&s1);
}

/* A child that mproc forks closes mproc's internal fds, the objects' memfds among them: the
 * object cannot travel from there (the fd number may even name another file by then), and export
 * says so rather than passing a stranger's file. A plain fork keeps the fd: export works. */
static mp_lock *fork_lock;

static int export_in_child(void *arg)
{
    (void)arg;
    /* the memfd's number now names a file of the user's */
    int num = ((mp__sync_handle *)fork_lock)->mem.fd;
    if (num < 0 || fcntl(num, F_GETFD) >= 0) return 2;  /* it had an fd, closed at the start */
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free number: often num */
    if (null < 0) return 3;
    if (null != num) {
        if (dup3(null, num, O_CLOEXEC) != num) return 3;
        close(null);
    }
    mp__handoff h;
    const char *why = NULL;
    int r = mp__handoff_export(MP_KIND_LOCK, fork_lock, &h, &why);
    if (r != MP_ENOTSUP || !strstr(why, "forked child")) return 4;
    /* freeing the object leaves the user's file alone */
    if (mp_lock_free(&fork_lock) != 0 || fcntl(num, F_GETFD) < 0) return 5;
    close(num);
    return 0;
}

static void test_export_from_forked_child(void **state)
{
    (void)state;
    assert_mp_ok(mp_lock_new(&fork_lock));
    mp_process *p;
    assert_mp_ok(mp_process_new(&p, "exporter", export_in_child, NULL));
    assert_mp_ok(mp_process_start(p));
    assert_mp_ok(mp_process_join(p, T(20)));
    int code = -1;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(&p);

    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp__handoff h;
        MP_CHILD_CHECK(mp__handoff_export(MP_KIND_LOCK, fork_lock, &h, NULL) == 0);
        mp__handoff_close(&h);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    mp_lock_free(&fork_lock);
}

/* After mp_init every object holds an fd, but never the process's last ones: near the soft
 * limit objects fall back to anonymous memory (and cannot travel), and the program can still open
 * files. */
static void test_fd_reserve(void **state)
{
    (void)state;
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        struct rlimit rl = {128, 128};
        /* valgrind keeps fds of its own above the limit and refuses a lower one: nothing to
         * check there (the parent reports a skip). */
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) mp_test_child_exit(77);
        mp_lock *locks[200];
        int n = 0, anon = 0;
        for (; n < 200; n++) {
            MP_CHILD_CHECK(mp_lock_new(&locks[n]) == 0);
            mp__handoff h;
            const char *why = NULL;
            int r = mp__handoff_export(MP_KIND_LOCK, locks[n], &h, &why);
            if (r == MP_ENOTSUP) {
                MP_CHILD_CHECK(strstr(why, "no fd to spare") != NULL);
                anon++;
            } else {
                MP_CHILD_CHECK(r == 0);
                mp__handoff_close(&h);
            }
        }
        MP_CHILD_CHECK(anon > 0 && anon < 200);
        int fds[32];
        for (int i = 0; i < 32; i++) /* the reserve is the program's */
            MP_CHILD_CHECK((fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
        for (int i = 0; i < 32; i++)
            close(fds[i]);
        for (int i = 0; i < n; i++)
            MP_CHILD_CHECK(mp_lock_free(&locks[i]) == 0);
        mp_test_child_exit(0);
    }
    int code = mp_test_wait_code(pid, mp_test_timeout(10));
    if (code == 77) skip();
    assert_int_equal(code, 0);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(test_queue_both_ways),
    MP_TEST(test_joinable_queue),
    MP_TEST(test_lock_contended),
    MP_TEST(test_value_exact_total),
    MP_TEST(test_array),
    MP_TEST(test_semaphores),
    MP_TEST(test_event),
    MP_TEST(test_condition),
    MP_TEST(test_condition_with_caller_lock),
    MP_TEST(test_barrier),
    MP_TEST(test_pipe_duplex_end),
    MP_TEST(test_pipe_send_end),
    MP_TEST(test_pipe_recv_end_peer_gone),
    MP_TEST(test_named_block),
    MP_TEST(test_before_init_cannot_travel),
    MP_TEST(test_cannot_travel),
    MP_TEST(test_bad_descriptions),
    MP_TEST(test_same_process_roundtrip),
    MP_TEST(test_export_from_forked_child),
    MP_TEST(test_fd_reserve),
};

MP_TEST_MAIN_EXEC(tests, child_main)
