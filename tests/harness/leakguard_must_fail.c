/* SPDX-License-Identifier: MIT */
/* leakguard_must_fail.c - a test that leaks an fd on purpose. ctest runs it with WILL_FAIL:
 * if the leak guard ever stopped catching leaks, this "test" would pass and ctest would report
 * the failure. (test_leakguard.c checks each kind of leak precisely.) */
#include <fcntl.h>

#include "mp_test.h"

static void leaks_an_fd(void **state)
{
    (void)state;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0); /* and never closed */
}

static const struct CMUnitTest tests[] = {MP_TEST(leaks_an_fd)};
MP_TEST_MAIN(tests)
