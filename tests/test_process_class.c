/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_process_class.c - the seed's own process class: a user struct embeds mp_process_base,
 * supplies run, and the library's start machinery calls it in the child. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/process.h"
#include "mp_test.h"

/* A "subclass" with its own state: the child computes from it and reports through a pipe. */
struct adder {
    int before; /* fields before the base: container_of must really subtract */
    mp_process_base base;
    int a, b;
    int out_fd;
};

static int adder_run(mp_process_base *self)
{
    struct adder *ad = mp_container_of(self, struct adder, base);
    int sum = ad->a + ad->b + ad->before;
    if (write(ad->out_fd, &sum, sizeof sum) != sizeof sum) return 1;
    /* The machinery hands run the very object the parent embedded (same address after fork). */
    if (mp_process_current() != self->proc) return 2;
    return 0;
}

/* A second class overriding run differently: its exit code is its result. */
struct exiter {
    mp_process_base base;
    int code;
};

static int exiter_run(mp_process_base *self)
{
    return mp_container_of(self, struct exiter, base)->code;
}

static void subclass_run_is_called(void **state)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    struct adder ad = {.before = 100, .a = 2, .b = 40, .out_fd = fds[1]};
    assert_mp_ok(mp_process_base_init(&ad.base, "adder", adder_run));
    assert_ptr_equal(ad.base.run, adder_run);
    assert_non_null(ad.base.proc);
    assert_string_equal(mp_process_name(ad.base.proc), "adder");
    assert_mp_ok(mp_process_start(ad.base.proc));
    int sum = 0;
    assert_int_equal(read(fds[0], &sum, sizeof sum), sizeof sum);
    assert_int_equal(sum, 142);
    assert_mp_ok(mp_process_join(ad.base.proc, mp_test_timeout(10)));
    int code = -1;
    assert_mp_ok(mp_process_exitcode(ad.base.proc, &code));
    assert_int_equal(code, 0);
    assert_mp_ok(mp_process_base_free(&ad.base));
    assert_null(ad.base.proc);
    assert_mp(-EINVAL, mp_process_start(ad.base.proc)); /* after free */
    close(fds[0]);
    close(fds[1]);
}

static void two_classes_two_runs(void **state)
{
    struct exiter e[3];
    for (int i = 0; i < 3; i++) {
        e[i].code = 10 + i;
        assert_mp_ok(mp_process_base_init(&e[i].base, NULL, exiter_run));
        assert_mp_ok(mp_process_start(e[i].base.proc));
    }
    for (int i = 0; i < 3; i++) {
        int code = -1;
        assert_mp_ok(mp_process_join(e[i].base.proc, mp_test_timeout(10)));
        assert_mp_ok(mp_process_exitcode(e[i].base.proc, &code));
        assert_int_equal(code, 10 + i);
        assert_mp_ok(mp_process_base_free(&e[i].base));
    }
}

static void base_bad_input(void **state)
{
    mp_process_base b = {0};
    assert_mp(-EINVAL, mp_process_base_init(&b, "x", NULL));
    assert_null(b.proc);
    assert_mp(-EINVAL, mp_process_base_init(NULL, "x", exiter_run));
    assert_mp(-EINVAL, mp_process_base_free(NULL));
    assert_mp_ok(mp_process_base_free(&b)); /* proc NULL: nothing to do */
}

static const struct CMUnitTest tests[] = {
    MP_TEST(subclass_run_is_called),
    MP_TEST(two_classes_two_runs),
    MP_TEST(base_bad_input),
};
MP_TEST_MAIN(tests)
