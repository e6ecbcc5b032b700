/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 lock=shm */
/* test_shared.c - Value, Array and named shared memory blocks: every type, ranges, atomics, the
 * lock and its dead holder, sharing across fork and with an exec'd program, /dev/shm hygiene,
 * and bad input to every call. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "mproc/sync.h"

static const char all_types[] = "cbBhHiIlLqQfd?n";

static bool shm_exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return access(path, F_OK) == 0;
}

/* ---- types and Value ------------------------------------------------------------------------- */

static void test_types(void **state)
{
    static const struct {
        char code;
        int size;
        const char *name;
    } want[] = {{'c', 1, "c_char"},     {'b', 1, "c_byte"},      {'B', 1, "c_ubyte"},
                {'h', 2, "c_short"},    {'H', 2, "c_ushort"},    {'i', 4, "c_int"},
                {'I', 4, "c_uint"},     {'l', 8, "c_long"},      {'L', 8, "c_ulong"},
                {'q', 8, "c_longlong"}, {'Q', 8, "c_ulonglong"}, {'f', 4, "c_float"},
                {'d', 8, "c_double"},   {'?', 1, "c_bool"},      {'n', 8, "c_size_t"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(mp_type_size(want[i].code), want[i].size);
        assert_string_equal(mp_type_name(want[i].code), want[i].name);
    }
    assert_int_equal(mp_type_size(MP_TYPE_DOUBLE), sizeof(double));
    assert_mp(MP_ETYPE, mp_type_size('x'));
    assert_mp(MP_ETYPE, mp_type_size(0));
    assert_string_equal(mp_type_name('x'), "unknown");
}

static void test_value_every_type(void **state)
{
    for (const char *t = all_types; *t; t++) {
        for (int sync = 0; sync < 2; sync++) {
            mp_value *v;
            assert_mp_ok(mp_value_new(&v, *t, NULL, sync));
            assert_int_equal(mp_value_type(v), *t);
            assert_true((mp_value_lock(v) != NULL) == sync);
            if (*t == 'f' || *t == 'd') {
                double d;
                assert_mp_ok(mp_value_get_f64(v, &d));
                assert_true(d == 0.0);
                assert_mp_ok(mp_value_set_f64(v, 1.5));
                assert_mp_ok(mp_value_get_f64(v, &d));
                assert_true(d == 1.5);
                int64_t i;
                assert_mp(MP_ETYPE, mp_value_get_i64(v, &i));
                assert_mp(MP_ETYPE, mp_value_set_i64(v, 1));
                assert_mp(MP_ETYPE, mp_value_set_u64(v, 1));
                assert_mp(MP_ETYPE, mp_value_add(v, 1, NULL));
                assert_mp(MP_ETYPE, mp_value_cas(v, 0, 1, NULL));
            } else {
                int64_t i;
                uint64_t u;
                assert_mp_ok(mp_value_get_i64(v, &i));
                assert_int_equal(i, 0);
                assert_mp_ok(mp_value_set_i64(v, 1));
                assert_mp_ok(mp_value_get_u64(v, &u));
                assert_int_equal(u, 1);
                double d;
                assert_mp(MP_ETYPE, mp_value_get_f64(v, &d));
                assert_mp(MP_ETYPE, mp_value_set_f64(v, 1.0));
                if (strchr("BHILQn?", *t)) assert_mp(MP_ERANGE, mp_value_set_i64(v, -1));
                if (mp_type_size(*t) == 1) assert_mp(MP_ERANGE, mp_value_set_i64(v, -129));
                if (*t != 'q' && *t != 'l' && *t != 'Q' && *t != 'L' && *t != 'n')
                    assert_mp(MP_ERANGE, mp_value_set_u64(v, 1ull << 40));
                assert_mp_ok(mp_value_get_i64(v, &i));
                assert_int_equal(i, 1); /* failed sets stored nothing */
            }
            /* untyped access checks the size */
            char buf[8] = {0};
            int size = mp_type_size(*t);
            assert_mp_ok(mp_value_read(v, buf, size));
            assert_mp(MP_ETYPE, mp_value_read(v, buf, size + 1));
            assert_mp(MP_ETYPE, mp_value_write(v, buf, size == 1 ? 2 : 1));
            assert_mp_ok(mp_value_write(v, buf, size));
            assert_non_null(mp_value_ptr(v));
            assert_mp_ok(mp_value_free(&v));
            assert_null(v);
        }
    }
}

static void test_value_ranges(void **state)
{
    mp_value *v;
    int64_t i;
    uint64_t u;
    /* signed char */
    assert_mp_ok(mp_value_new(&v, 'b', NULL, false));
    assert_mp_ok(mp_value_set_i64(v, -128));
    assert_mp_ok(mp_value_get_i64(v, &i));
    assert_int_equal(i, -128);
    assert_mp(MP_ERANGE, mp_value_get_u64(v, &u));
    assert_mp(MP_ERANGE, mp_value_set_i64(v, 128));
    assert_mp_ok(mp_value_set_u64(v, 127));
    assert_mp(MP_ERANGE, mp_value_set_u64(v, 128));
    mp_value_free(&v);
    /* unsigned short */
    assert_mp_ok(mp_value_new(&v, 'H', NULL, true));
    assert_mp_ok(mp_value_set_i64(v, 65535));
    assert_mp(MP_ERANGE, mp_value_set_i64(v, 65536));
    assert_mp(MP_ERANGE, mp_value_set_i64(v, -1));
    mp_value_free(&v);
    /* int with an initial value */
    int init = -42;
    assert_mp_ok(mp_value_new(&v, MP_TYPE_INT, &init, true));
    assert_mp_ok(mp_value_get_i64(v, &i));
    assert_int_equal(i, -42);
    assert_mp_ok(mp_value_set_i64(v, INT_MAX));
    assert_mp(MP_ERANGE, mp_value_set_i64(v, (int64_t)INT_MAX + 1));
    assert_mp(MP_ERANGE, mp_value_set_i64(v, (int64_t)INT_MIN - 1));
    assert_int_equal(*(int *)mp_value_ptr(v), INT_MAX);
    mp_value_free(&v);
    /* unsigned long long: the full range through _u64; _i64 only up to INT64_MAX */
    assert_mp_ok(mp_value_new(&v, 'Q', NULL, true));
    assert_mp_ok(mp_value_set_u64(v, UINT64_MAX));
    assert_mp_ok(mp_value_get_u64(v, &u));
    assert_true(u == UINT64_MAX);
    assert_mp(MP_ERANGE, mp_value_get_i64(v, &i));
    assert_mp(MP_ERANGE, mp_value_set_i64(v, -1));
    mp_value_free(&v);
    /* long long extremes */
    assert_mp_ok(mp_value_new(&v, 'q', NULL, true));
    assert_mp_ok(mp_value_set_i64(v, INT64_MIN));
    assert_mp_ok(mp_value_get_i64(v, &i));
    assert_true(i == INT64_MIN);
    assert_mp(MP_ERANGE, mp_value_set_u64(v, (uint64_t)INT64_MAX + 1));
    mp_value_free(&v);
    /* bool: 0 or 1 only */
    bool yes = true;
    assert_mp_ok(mp_value_new(&v, '?', &yes, true));
    assert_mp_ok(mp_value_get_i64(v, &i));
    assert_int_equal(i, 1);
    assert_mp(MP_ERANGE, mp_value_set_i64(v, 2));
    assert_mp(MP_ETYPE, mp_value_add(v, 1, NULL));
    bool sw;
    assert_mp_ok(mp_value_cas(v, 1, 0, &sw));
    assert_true(sw);
    mp_value_free(&v);
    unsigned char two = 2;
    assert_mp(MP_ERANGE, mp_value_new(&v, '?', &two, true));
    /* char: a byte, read back as 0..255 */
    char ch = 'A';
    assert_mp_ok(mp_value_new(&v, 'c', &ch, true));
    assert_mp_ok(mp_value_get_i64(v, &i));
    assert_int_equal(i, 'A');
    assert_mp_ok(mp_value_set_i64(v, 255));
    assert_mp_ok(mp_value_set_i64(v, -1)); /* the same byte */
    assert_mp_ok(mp_value_get_i64(v, &i));
    assert_int_equal(i, 255);
    assert_mp(MP_ERANGE, mp_value_set_i64(v, 256));
    mp_value_free(&v);
    /* float: out-of-range doubles are refused, infinities and NaN pass */
    float f = 2.5f;
    double d;
    assert_mp_ok(mp_value_new(&v, 'f', &f, false));
    assert_mp_ok(mp_value_get_f64(v, &d));
    assert_true(d == 2.5);
    assert_mp(MP_ERANGE, mp_value_set_f64(v, 1e300));
    assert_mp_ok(mp_value_set_f64(v, 1.0 / 0.0));
    assert_mp_ok(mp_value_set_f64(v, -FLT_MAX));
    mp_value_free(&v);
    /* size_t */
    size_t sz = SIZE_MAX;
    assert_mp_ok(mp_value_new(&v, 'n', &sz, true));
    assert_mp_ok(mp_value_get_u64(v, &u));
    assert_true(u == SIZE_MAX);
    mp_value_free(&v);
}

static void test_value_atomics(void **state)
{
    mp_value *v;
    int64_t old;
    bool sw;
    assert_mp_ok(mp_value_new(&v, 'B', NULL, false));
    assert_mp_ok(mp_value_add(v, 250, &old));
    assert_int_equal(old, 0);
    assert_mp_ok(mp_value_add(v, 10, &old)); /* wraps at 256 */
    assert_int_equal(old, 250);
    assert_int_equal(*(unsigned char *)mp_value_ptr(v), 4);
    assert_mp_ok(mp_value_cas(v, 4, 9, &sw));
    assert_true(sw);
    assert_mp_ok(mp_value_cas(v, 4, 10, &sw));
    assert_false(sw);
    assert_mp(MP_ERANGE, mp_value_cas(v, 4, 300, &sw));
    mp_value_free(&v);
    assert_mp_ok(mp_value_new(&v, 'h', NULL, true));
    assert_mp_ok(mp_value_add(v, -5, &old));
    assert_mp_ok(mp_value_add(v, 0, &old));
    assert_int_equal(old, -5);
    assert_mp_ok(mp_value_cas(v, -5, -32768, &sw));
    assert_true(sw);
    mp_value_free(&v);
    assert_mp_ok(mp_value_new(&v, 'Q', NULL, true));
    assert_mp_ok(mp_value_add(v, -1, &old)); /* 0 - 1 wraps */
    assert_mp_ok(mp_value_add(v, 0, &old));
    assert_true((uint64_t)old == UINT64_MAX);
    assert_mp_ok(mp_value_cas(v, -1, 7, &sw)); /* the bit pattern of UINT64_MAX */
    assert_true(sw);
    mp_value_free(&v);
    assert_mp_ok(mp_value_new(&v, 'i', NULL, true));
    assert_mp_ok(mp_value_add(v, 1, NULL));
    assert_mp_ok(mp_value_cas(v, 1, 2, NULL));
    assert_int_equal(*(int *)mp_value_ptr(v), 2);
    mp_value_free(&v);
}

static void test_value_across_fork(void **state)
{
    mp_value *v;
    double init = 3.25;
    assert_mp_ok(mp_value_new(&v, 'd', &init, true));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        double d;
        MP_CHILD_CHECK(mp_value_get_f64(v, &d) == 0 && d == 3.25);
        MP_CHILD_CHECK(mp_value_set_f64(v, -7.5) == 0);
        mp_value_free(&v); /* the child's view only */
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    double d;
    assert_mp_ok(mp_value_get_f64(v, &d));
    assert_true(d == -7.5);
    mp_value_free(&v);
}

/* The lock is an RLock: get/set work while the caller holds it; a dead holder is reported. */
static void test_value_lock_and_dead_holder(void **state)
{
    mp_value *v;
    assert_mp_ok(mp_value_new(&v, 'l', NULL, true));
    mp_lock *l = mp_value_lock(v);
    assert_int_equal(mp_lock_is_recursive(l), 1);
    assert_mp_ok(mp_lock_acquire(l, 1));
    int64_t x;
    assert_mp_ok(mp_value_get_i64(v, &x));
    assert_mp_ok(mp_value_set_i64(v, x + 1));
    assert_mp(-EBUSY, mp_value_free(&v)); /* held: its memory must stay mapped */
    assert_mp_ok(mp_lock_release(l));
    assert_mp(-EINVAL, mp_lock_free(&l)); /* borrowed */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_lock_acquire(mp_value_lock(v), 5) == 0);
        *(long *)mp_value_ptr(v) = 99; /* mid-update */
        MP_CHILD_CHECK(write(pfd[1], "x", 1) == 1);
        for (;;)
            pause();
    }
    char c;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    close(pfd[1]);
    kill(pid, SIGKILL);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
    assert_mp(-EOWNERDEAD, mp_value_get_i64(v, &x)); /* done, and the death reported once */
    assert_int_equal(x, 99);
    assert_mp_ok(mp_value_set_i64(v, 1));
    assert_mp_ok(mp_value_get_i64(v, &x));
    assert_int_equal(x, 1);
    mp_value_free(&v);
    assert_mp_ok(mp_value_new(&v, 'l', NULL, false));
    assert_null(mp_value_lock(v));
    mp_value_free(&v);
}

/* ---- Array --------------------------------------------------------------------------------- */

static void test_array(void **state)
{
    mp_array *a;
    int init[5] = {1, 2, 3, 4, 5};
    assert_mp_ok(mp_array_new(&a, 'i', 5, init, true));
    assert_int_equal(mp_array_len(a), 5);
    assert_int_equal(mp_array_type(a), 'i');
    assert_non_null(mp_array_lock(a));
    int64_t x;
    for (size_t i = 0; i < 5; i++) {
        assert_mp_ok(mp_array_get_i64(a, i, &x));
        assert_int_equal(x, (int64_t)i + 1);
    }
    assert_mp(MP_ERANGE, mp_array_get_i64(a, 5, &x));
    assert_mp(MP_ERANGE, mp_array_set_i64(a, 5, 1));
    assert_mp(MP_ERANGE, mp_array_get_i64(a, SIZE_MAX, &x));
    assert_mp(MP_ERANGE, mp_array_add(a, 5, 1, NULL));
    assert_mp(MP_ERANGE, mp_array_cas(a, 5, 1, 2, NULL));
    uint64_t u;
    assert_mp(MP_ERANGE, mp_array_get_u64(a, 9, &u));
    assert_mp(MP_ERANGE, mp_array_set_u64(a, 9, 1));
    assert_mp_ok(mp_array_set_i64(a, 4, -50));
    assert_mp_ok(mp_array_set_u64(a, 3, 40));
    assert_mp_ok(mp_array_get_u64(a, 3, &u));
    assert_int_equal(u, 40);
    assert_mp(MP_ERANGE, mp_array_get_u64(a, 4, &u)); /* -50 */
    double d;
    assert_mp(MP_ETYPE, mp_array_get_f64(a, 0, &d));
    assert_mp(MP_ETYPE, mp_array_set_f64(a, 0, 1));
    int64_t old;
    assert_mp_ok(mp_array_add(a, 0, 10, &old));
    assert_int_equal(old, 1);
    bool sw;
    assert_mp_ok(mp_array_cas(a, 0, 11, 12, &sw));
    assert_true(sw);
    /* bulk ranges */
    int out[5];
    assert_mp_ok(mp_array_read(a, 0, out, 5));
    assert_int_equal(out[0], 12);
    assert_int_equal(out[3], 40);
    assert_int_equal(out[4], -50);
    int two[2] = {7, 8};
    assert_mp_ok(mp_array_write(a, 3, two, 2));
    assert_mp_ok(mp_array_read(a, 3, out, 2));
    assert_int_equal(out[0], 7);
    assert_int_equal(out[1], 8);
    assert_mp(MP_ERANGE, mp_array_write(a, 4, two, 2));
    assert_mp(MP_ERANGE, mp_array_read(a, 6, out, 0));
    assert_mp(MP_ERANGE, mp_array_read(a, 1, out, SIZE_MAX));
    assert_mp_ok(mp_array_read(a, 5, out, 0)); /* empty range at the end */
    assert_mp(-EINVAL, mp_array_read(a, 0, NULL, 1));
    assert_mp(-EINVAL, mp_array_write(a, 0, NULL, 1));
    assert_int_equal(((int *)mp_array_ptr(a))[4], 8);
    /* shared across fork */
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        int vals[5] = {5, 4, 3, 2, 1};
        MP_CHILD_CHECK(mp_array_write(a, 0, vals, 5) == 0);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    assert_mp_ok(mp_array_read(a, 0, out, 5));
    assert_int_equal(out[0], 5);
    assert_int_equal(out[4], 1);
    mp_array_free(&a);
    assert_null(a);

    /* from a count: zero-filled; doubles; raw */
    assert_mp_ok(mp_array_new(&a, 'd', 1000, NULL, false));
    assert_null(mp_array_lock(a));
    assert_mp_ok(mp_array_get_f64(a, 999, &d));
    assert_true(d == 0.0);
    assert_mp_ok(mp_array_set_f64(a, 999, 0.5));
    assert_mp_ok(mp_array_get_f64(a, 999, &d));
    assert_true(d == 0.5);
    assert_mp(MP_ETYPE, mp_array_get_i64(a, 0, &x));
    assert_mp(MP_ETYPE, mp_array_add(a, 0, 1, NULL));
    mp_array_free(&a);

    bool bools[3] = {true, false, true};
    assert_mp_ok(mp_array_new(&a, '?', 3, bools, true));
    unsigned char bad[1] = {7};
    assert_mp(MP_ERANGE, mp_array_write(a, 0, bad, 1));
    mp_array_free(&a);
    assert_mp(-EINVAL, mp_array_new(&a, 'i', 0, NULL, true));
    assert_mp(-EINVAL, mp_array_new(&a, 'i', SIZE_MAX / 2, NULL, true));
    assert_mp(MP_ETYPE, mp_array_new(&a, 'x', 3, NULL, true));
    mp_value *v;
    assert_mp(MP_ETYPE, mp_value_new(&v, 'Z', NULL, true));
}

/* ---- named blocks -------------------------------------------------------------------------- */

static void test_shm_generated_name(void **state)
{
    mp_shm *b, *b2;
    assert_mp_ok(mp_shm_new(&b, NULL, 10000));
    const char *name = mp_shm_name(b);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "/mproc.%d.", (int)getpid());
    assert_int_equal(strncmp(name, prefix, strlen(prefix)), 0);
    assert_int_equal(mp_shm_size(b), 10000);
    assert_true(shm_exists(name));
    char path[300];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_mp_ok(mp_shm_new(&b2, NULL, 1));
    assert_string_not_equal(mp_shm_name(b2), name);
    /* the mapping is shared with an attached view and with children */
    mp_shm *view;
    assert_mp_ok(mp_shm_attach(&view, name));
    assert_int_equal(mp_shm_size(view), 10000);
    ((char *)mp_shm_ptr(b))[9999] = 'z';
    assert_int_equal(((char *)mp_shm_ptr(view))[9999], 'z');
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        ((char *)mp_shm_ptr(b))[0] = 'c';
        mp_shm_free(&b); /* a child never unlinks its parent's block */
        exit(0);         /* a normal exit: atexit handlers run, and must not unlink it either */
    }
    assert_child_ok(pid);
    assert_true(shm_exists(name));
    assert_int_equal(((char *)mp_shm_ptr(view))[0], 'c');
    char keep[256];
    snprintf(keep, sizeof keep, "%s", name);
    mp_shm_free(&view);
    assert_true(shm_exists(keep)); /* an attacher does not unlink */
    mp_shm_free(&b);
    assert_false(shm_exists(keep)); /* the creator does */
    mp_shm_free(&b2);
}

static void test_shm_user_names(void **state)
{
    char name[64];
    snprintf(name, sizeof name, "/mproc-test-%d", (int)getpid());
    mp_shm *b, *b2;
    assert_mp_ok(mp_shm_new(&b, name + 1, 4096)); /* without the leading '/' */
    assert_string_equal(mp_shm_name(b), name);
    assert_mp(-EEXIST, mp_shm_new(&b2, name, 4096)); /* never a silent attach */
    assert_mp_ok(mp_shm_attach(&b2, name + 1));
    mp_shm_free(&b2);
    assert_mp(-EINVAL, mp_shm_new(&b2, "foo", 10));
    assert_mp(-EINVAL, mp_shm_new(&b2, "/foo", 10));
    assert_mp(-EINVAL, mp_shm_new(&b2, "/mproc/x", 10));
    assert_mp(-EINVAL, mp_shm_new(&b2, "", 10));
    assert_mp(-EINVAL, mp_shm_new(&b2, "mpro", 10));
    char longname[300];
    memset(longname, 'x', sizeof longname);
    memcpy(longname, "mproc", 5);
    longname[sizeof longname - 1] = 0;
    assert_mp(-EINVAL, mp_shm_new(&b2, longname, 10));
    assert_mp(-EINVAL, mp_shm_new(&b2, name, 0));
    assert_mp(-EINVAL, mp_shm_new(&b2, name, SIZE_MAX));
    assert_mp(-EINVAL, mp_shm_attach(&b2, "foo"));
    assert_mp(-EINVAL, mp_shm_attach(&b2, NULL));
    assert_mp(-ENOENT, mp_shm_attach(&b2, "/mproc-no-such-block"));
    /* a block whose creator has not sized it yet: attach says retry */
    char unsized[64];
    snprintf(unsized, sizeof unsized, "/mproc-unsized-%d", (int)getpid());
    int fd = shm_open(unsized, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_mp(-EAGAIN, mp_shm_attach(&b2, unsized));
    assert_mp_ok(mp_shm_unlink_name(unsized));
    /* unlink: the mapping stays, the name goes, free does not fail afterwards */
    assert_mp_ok(mp_shm_unlink(b));
    assert_false(shm_exists(name));
    assert_mp(-ENOENT, mp_shm_unlink(b));
    assert_mp(-ENOENT, mp_shm_attach(&b2, name));
    ((char *)mp_shm_ptr(b))[0] = 1;
    assert_mp_ok(mp_shm_free(&b));
    /* keep: outlives free; unlink by name */
    assert_mp_ok(mp_shm_new(&b, name, 100));
    assert_mp_ok(mp_shm_keep(b, true));
    mp_shm_free(&b);
    assert_true(shm_exists(name));
    assert_mp_ok(mp_shm_attach(&b, name));
    assert_int_equal(mp_shm_size(b), 100);
    mp_shm_free(&b);
    assert_mp_ok(mp_shm_unlink_name(name));
    assert_mp(-ENOENT, mp_shm_unlink_name(name));
    assert_mp(-EINVAL, mp_shm_unlink_name("/tmp"));
    /* keep then un-keep: back to unlink on free */
    assert_mp_ok(mp_shm_new(&b, name, 100));
    assert_mp_ok(mp_shm_keep(b, true));
    assert_mp_ok(mp_shm_keep(b, false));
    mp_shm_free(&b);
    assert_false(shm_exists(name));
}

/* A child that creates blocks and exits normally without freeing them leaves nothing behind. */
static void test_shm_no_leftovers_after_exit(void **state)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(pfd[0]);
        mp_shm *a, *b, *c;
        char name[64];
        snprintf(name, sizeof name, "mproc-exit-%d", (int)getpid());
        MP_CHILD_CHECK(mp_shm_new(&a, NULL, 4096) == 0);
        MP_CHILD_CHECK(mp_shm_new(&b, name, 4096) == 0);
        MP_CHILD_CHECK(mp_shm_new(&c, NULL, 1 << 20) == 0);
        mp_shm_free(&c);
        char names[2][256] = {{0}};
        snprintf(names[0], 256, "%s", mp_shm_name(a));
        snprintf(names[1], 256, "%s", mp_shm_name(b));
        MP_CHILD_CHECK(write(pfd[1], names, sizeof names) == sizeof names);
        exit(0); /* a and b are still mapped and owned */
    }
    close(pfd[1]);
    char names[2][256];
    assert_int_equal(read(pfd[0], names, sizeof names), sizeof names);
    close(pfd[0]);
    assert_child_ok(pid);
    assert_false(shm_exists(names[0]));
    assert_false(shm_exists(names[1]));
}

/* After a crash the entry stays; mp_shm_sweep removes generated names of dead creators. */
static void test_shm_sweep_after_crash(void **state)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(pfd[0]);
        mp_shm *a;
        MP_CHILD_CHECK(mp_shm_new(&a, NULL, 4096) == 0);
        char name[256] = {0};
        snprintf(name, sizeof name, "%s", mp_shm_name(a));
        MP_CHILD_CHECK(write(pfd[1], name, sizeof name) == sizeof name);
        raise(SIGKILL);
    }
    close(pfd[1]);
    char name[256];
    assert_int_equal(read(pfd[0], name, sizeof name), sizeof name);
    close(pfd[0]);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
    assert_true(shm_exists(name));
    mp_shm *mine;
    assert_mp_ok(mp_shm_new(&mine, NULL, 10)); /* a live creator's block survives the sweep */
    int removed = -1;
    assert_mp_ok(mp_shm_sweep(&removed));
    assert_true(removed >= 1);
    assert_false(shm_exists(name));
    assert_true(shm_exists(mp_shm_name(mine)));
    mp_shm_free(&mine);
    assert_mp_ok(mp_shm_sweep(NULL));
}

/* A program that did not fork from us attaches by name and uses locks placed in the block. */
static void test_shm_attach_from_exec(void **state)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 20);
    assert_true(n > 0);
    exe[n] = 0;
    char peer[PATH_MAX + 16];
    snprintf(peer, sizeof peer, "%s/shm_peer", dirname(exe));
    assert_int_equal(access(peer, X_OK), 0);

    enum { SIZE = 4096 + 4 * 1000 };
    mp_shm *b;
    assert_mp_ok(mp_shm_new(&b, NULL, SIZE));
    char *mem = mp_shm_ptr(b);
    mp_lock *l;
    mp_event *done;
    mp_sem *ready;
    assert_mp_ok(mp_lock_init_at(&l, mem, MP_SYNC_SHM_SIZE, false));
    assert_mp_ok(mp_event_init_at(&done, mem + MP_SYNC_SHM_SIZE, MP_SYNC_SHM_SIZE));
    assert_mp_ok(mp_sem_init_at(&ready, mem + 2 * MP_SYNC_SHM_SIZE, MP_SYNC_SHM_SIZE, 0, false));
    uint32_t *words = (uint32_t *)(mem + 4096);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < 1000; i++)
        sum += words[i] = i * 7 + 1;
    assert_mp_ok(mp_lock_acquire(l, 1)); /* the peer must wait for us */
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        execl(peer, "shm_peer", mp_shm_name(b), (char *)NULL);
        _exit(127);
    }
    usleep(20000);
    assert_mp(-ETIMEDOUT, mp_sem_acquire(ready, 0));
    assert_mp_ok(mp_lock_release(l));
    assert_mp_ok(mp_sem_acquire(ready, mp_test_timeout(10)));
    uint64_t got;
    memcpy(&got, mem + 1024, sizeof got);
    assert_true(got == sum);
    assert_mp_ok(mp_event_set(done));
    assert_child_ok(pid);
    mp_lock_free(&l);
    mp_event_free(&done);
    mp_sem_free(&ready);
    mp_shm_free(&b);
}

/* A lock in a named block whose holder, an unrelated program, dies holding it. */
static void test_shm_lock_owner_died_across_exec(void **state)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 20);
    assert_true(n > 0);
    exe[n] = 0;
    char peer[PATH_MAX + 16];
    snprintf(peer, sizeof peer, "%s/shm_peer", dirname(exe));
    mp_shm *b;
    assert_mp_ok(mp_shm_new(&b, NULL, 8192));
    char *mem = mp_shm_ptr(b);
    mp_lock *l;
    assert_mp_ok(mp_lock_init_at(&l, mem, MP_SYNC_SHM_SIZE, false));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        execl(peer, "shm_peer", mp_shm_name(b), "die", (char *)NULL);
        _exit(127);
    }
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
    assert_mp(-EOWNERDEAD, mp_lock_acquire(l, 1));
    assert_mp_ok(mp_lock_release(l));
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_mp_ok(mp_lock_release(l));
    mp_lock_free(&l);
    mp_shm_free(&b);
}

/* ---- bad input ----------------------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    int64_t i;
    uint64_t u;
    double d;
    bool sw;
    char buf[8];
    assert_mp(-EINVAL, mp_value_new(NULL, 'i', NULL, true));
    assert_mp(-EINVAL, mp_value_type(NULL));
    assert_null(mp_value_lock(NULL));
    assert_null(mp_value_ptr(NULL));
    assert_mp(-EINVAL, mp_value_get_i64(NULL, &i));
    assert_mp(-EINVAL, mp_value_set_i64(NULL, 0));
    assert_mp(-EINVAL, mp_value_get_u64(NULL, &u));
    assert_mp(-EINVAL, mp_value_set_u64(NULL, 0));
    assert_mp(-EINVAL, mp_value_get_f64(NULL, &d));
    assert_mp(-EINVAL, mp_value_set_f64(NULL, 0));
    assert_mp(-EINVAL, mp_value_read(NULL, buf, 4));
    assert_mp(-EINVAL, mp_value_write(NULL, buf, 4));
    assert_mp(-EINVAL, mp_value_add(NULL, 1, NULL));
    assert_mp(-EINVAL, mp_value_cas(NULL, 0, 1, &sw));
    assert_mp_ok(mp_value_free(NULL));
    mp_value *v;
    assert_mp_ok(mp_value_new(&v, 'i', NULL, true));
    assert_mp(-EINVAL, mp_value_get_i64(v, NULL));
    assert_mp(-EINVAL, mp_value_get_u64(v, NULL));
    assert_mp(-EINVAL, mp_value_read(v, NULL, 4));
    assert_mp(-EINVAL, mp_value_write(v, NULL, 4));
    mp_value_free(&v);
    assert_null(v);
    assert_mp_ok(mp_value_free(&v));
    assert_mp(-EINVAL, mp_value_get_i64(v, &i)); /* use after free */
    assert_mp(-EINVAL, mp_value_add(v, 1, NULL));
    assert_mp_ok(mp_value_new(&v, 'd', NULL, true));
    assert_mp(-EINVAL, mp_value_get_f64(v, NULL));
    mp_value_free(&v);

    assert_mp(-EINVAL, mp_array_new(NULL, 'i', 1, NULL, true));
    assert_int_equal(mp_array_len(NULL), 0);
    assert_mp(-EINVAL, mp_array_type(NULL));
    assert_null(mp_array_lock(NULL));
    assert_null(mp_array_ptr(NULL));
    assert_mp(-EINVAL, mp_array_get_i64(NULL, 0, &i));
    assert_mp(-EINVAL, mp_array_set_i64(NULL, 0, 0));
    assert_mp(-EINVAL, mp_array_get_u64(NULL, 0, &u));
    assert_mp(-EINVAL, mp_array_set_u64(NULL, 0, 0));
    assert_mp(-EINVAL, mp_array_get_f64(NULL, 0, &d));
    assert_mp(-EINVAL, mp_array_set_f64(NULL, 0, 0));
    assert_mp(-EINVAL, mp_array_read(NULL, 0, buf, 1));
    assert_mp(-EINVAL, mp_array_write(NULL, 0, buf, 1));
    assert_mp(-EINVAL, mp_array_add(NULL, 0, 1, NULL));
    assert_mp(-EINVAL, mp_array_cas(NULL, 0, 0, 1, &sw));
    assert_mp_ok(mp_array_free(NULL));
    mp_array *a;
    assert_mp_ok(mp_array_new(&a, 'i', 2, NULL, true));
    assert_mp(-EINVAL, mp_array_get_i64(a, 0, NULL));
    assert_mp_ok(mp_lock_acquire(mp_array_lock(a), 0));
    assert_mp(-EBUSY, mp_array_free(&a));
    assert_mp_ok(mp_lock_release(mp_array_lock(a)));
    assert_mp_ok(mp_array_free(&a));
    assert_mp(-EINVAL, mp_array_set_i64(a, 0, 1));

    assert_mp(-EINVAL, mp_shm_new(NULL, NULL, 10));
    assert_mp(-EINVAL, mp_shm_attach(NULL, "mproc-x"));
    assert_null(mp_shm_ptr(NULL));
    assert_int_equal(mp_shm_size(NULL), 0);
    assert_string_equal(mp_shm_name(NULL), "");
    assert_mp(-EINVAL, mp_shm_unlink(NULL));
    assert_mp(-EINVAL, mp_shm_unlink_name(NULL));
    assert_mp(-EINVAL, mp_shm_keep(NULL, true));
    assert_mp_ok(mp_shm_free(NULL));
    mp_shm *b;
    assert_mp_ok(mp_shm_new(&b, NULL, 10));
    mp_shm_free(&b);
    assert_null(b);
    assert_mp(-EINVAL, mp_shm_unlink(b));
    assert_null(mp_shm_ptr(b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_types),
        MP_TEST(test_value_every_type),
        MP_TEST(test_value_ranges),
        MP_TEST(test_value_atomics),
        MP_TEST(test_value_across_fork),
        MP_TEST(test_value_lock_and_dead_holder),
        MP_TEST(test_array),
        MP_TEST(test_shm_generated_name),
        MP_TEST(test_shm_user_names),
        MP_TEST(test_shm_no_leftovers_after_exit),
        MP_TEST(test_shm_sweep_after_crash),
        MP_TEST(test_shm_attach_from_exec),
        MP_TEST(test_shm_lock_owner_died_across_exec),
        MP_TEST(test_bad_input),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
