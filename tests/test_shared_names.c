/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 lock=shm */
/* test_shared_names.c - named blocks (issue 9): a creator's free, exit or unlink removes a name
 * only while it still refers to the creator's own block (not a newer block of the same name);
 * mp_shm_sweep never removes a user-named block, even one whose name looks generated, nor a
 * kept one; the 200-byte name limit counts the leading '/'. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "shared_internal.h"

static void unique_name(char *out, size_t n, const char *tag)
{
    snprintf(out, n, "/mproc-test-names-%d-%s", (int)getpid(), tag);
}

static bool name_exists(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) return false;
    close(fd);
    return true;
}

static size_t size_of(const char *name)
{
    mp_shm *b;
    if (mp_shm_attach(&b, name) != 0) return 0;
    size_t n = mp_shm_size(b);
    mp_shm_free(&b);
    return n;
}

/* The creator's free after someone unlinked its name and made a new block under it. */
static void test_free_keeps_newer_block(void **state)
{
    (void)state;
    char name[128];
    unique_name(name, sizeof name, "free");
    mp_shm *old, *newer;
    assert_mp_ok(mp_shm_new(&old, name, 4096));
    assert_mp_ok(mp_shm_unlink_name(name));       /* someone else removes it ... */
    assert_mp_ok(mp_shm_new(&newer, name, 8192)); /* ... and makes a new one */
    mp_shm_keep(newer, true);
    assert_mp_ok(mp_shm_free(&old));
    assert_true(name_exists(name));
    assert_int_equal(size_of(name), 8192);
    assert_mp_ok(mp_shm_unlink(newer));
    mp_shm_free(&newer);
}

/* mp_shm_unlink on a handle whose name now names another block: -ENOENT, the other stays. */
static void test_unlink_keeps_newer_block(void **state)
{
    (void)state;
    char name[128];
    unique_name(name, sizeof name, "unlink");
    mp_shm *old, *newer;
    assert_mp_ok(mp_shm_new(&old, name, 4096));
    assert_mp_ok(mp_shm_unlink_name(name));
    assert_mp_ok(mp_shm_new(&newer, name, 8192));
    assert_mp(-ENOENT, mp_shm_unlink(old));
    assert_int_equal(size_of(name), 8192);
    mp_shm_free(&old);
    assert_true(name_exists(name));
    mp_shm_free(&newer); /* its creator: unlinks its own block */
    assert_false(name_exists(name));
}

/* The creator's exit clean-up (the atexit handler) after its name was re-created by another. */
static void test_exit_keeps_newer_block(void **state)
{
    (void)state;
    char name[128];
    unique_name(name, sizeof name, "exit");
    int go[2], made[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(made), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(go[1]);
        close(made[0]);
        mp_shm *b;
        MP_CHILD_CHECK(mp_shm_new(&b, name, 4096) == 0);
        MP_CHILD_CHECK(write(made[1], "x", 1) == 1);
        char c;
        MP_CHILD_CHECK(read(go[0], &c, 1) == 1);
        mp__shm_exit_cleanup(); /* what exit() runs */
        mp_test_child_exit(0);
    }
    close(go[0]);
    close(made[1]);
    char c;
    assert_int_equal(read(made[0], &c, 1), 1);
    assert_mp_ok(mp_shm_unlink_name(name));
    mp_shm *newer;
    assert_mp_ok(mp_shm_new(&newer, name, 8192));
    assert_int_equal(write(go[1], "x", 1), 1);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
    close(go[1]);
    close(made[0]);
    assert_true(name_exists(name));
    assert_int_equal(size_of(name), 8192);
    mp_shm_free(&newer);
    assert_false(name_exists(name));
}

static pid_t dead_pid(void)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) mp_test_child_exit(0);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
    return pid;
}

/* A user-named block whose name has the generated form, with a "creator" pid that is dead, and
 * a kept generated block of a dead creator: the sweep removes neither; a generated block of a
 * dead creator that was not kept is removed. */
static void test_sweep_spares_user_and_kept_blocks(void **state)
{
    (void)state;
    char user[128];
    snprintf(user, sizeof user, "/mproc.%d.1.0badf00d", (int)dead_pid());
    mp_shm *u;
    assert_mp_ok(mp_shm_new(&u, user, 4096));
    assert_mp_ok(mp_shm_keep(u, true));

    /* two generated blocks made by a child that then dies without clean-up: one kept */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(p[0]);
        mp_shm *kept, *plain;
        MP_CHILD_CHECK(mp_shm_new(&kept, NULL, 4096) == 0);
        MP_CHILD_CHECK(mp_shm_keep(kept, true) == 0);
        MP_CHILD_CHECK(mp_shm_new(&plain, NULL, 4096) == 0);
        char names[256];
        snprintf(names, sizeof names, "%s %s", mp_shm_name(kept), mp_shm_name(plain));
        MP_CHILD_CHECK(write(p[1], names, strlen(names) + 1) == (ssize_t)strlen(names) + 1);
        mp_test_child_exit(0); /* _exit: no clean-up, as after a crash */
    }
    close(p[1]);
    char names[256] = {0};
    assert_true(read(p[0], names, sizeof names - 1) > 0);
    close(p[0]);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
    char kept[128], plain[128];
    assert_int_equal(sscanf(names, "%127s %127s", kept, plain), 2);

    int removed = -1;
    assert_mp_ok(mp_shm_sweep(&removed));
    assert_true(name_exists(user));
    assert_true(name_exists(kept));
    assert_false(name_exists(plain));
    assert_true(removed >= 1);

    assert_mp_ok(mp_shm_unlink(u));
    mp_shm_free(&u);
    assert_mp_ok(mp_shm_unlink_name(kept));
}

/* At most 200 bytes counting the leading '/'. */
static void test_name_length_counts_slash(void **state)
{
    (void)state;
    char name[256];
    int head = snprintf(name, sizeof name, "/mproc-len-%d-", (int)getpid());
    memset(name + head, 'x', 200 - head);
    name[200] = 0; /* 200 bytes with the '/' */
    mp_shm *b;
    assert_mp_ok(mp_shm_new(&b, name, 4096));
    assert_int_equal(strlen(mp_shm_name(b)), 200);
    mp_shm_free(&b);
    /* the same 199 characters without the '/' are fine; 200 without it are not */
    assert_mp_ok(mp_shm_new(&b, name + 1, 4096));
    mp_shm_free(&b);
    char longer[sizeof name + 2];
    snprintf(longer, sizeof longer, "%sx", name); /* 201 with the '/' */
    assert_mp(-EINVAL, mp_shm_new(&b, longer, 4096));
    assert_mp(-EINVAL, mp_shm_new(&b, longer + 1, 4096)); /* 200 without it: 201 with it */
    assert_mp(-EINVAL, mp_shm_attach(&b, longer));
    assert_mp(-EINVAL, mp_shm_unlink_name(longer + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_free_keeps_newer_block),   MP_TEST(test_unlink_keeps_newer_block),
        MP_TEST(test_exit_keeps_newer_block),   MP_TEST(test_sweep_spares_user_and_kept_blocks),
        MP_TEST(test_name_length_counts_slash),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
