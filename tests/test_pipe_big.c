/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 labels=slow */
/* test_pipe_big.c - one message larger than 4 GiB through a pipe: no 32-bit length anywhere.
 *
 * The sender's buffer costs almost no memory: one 64 MiB + 4 KiB memfd holding a pattern, mapped
 * over and over to cover the whole message (the odd period catches shifted or repeated chunks).
 * The receiver needs the whole message in memory, so the test is skipped, with its reason, when
 * MemAvailable is short. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mproc.h"
#include "mp_test.h"

#define PERIOD  ((size_t)(64u << 20) + 4096)
#define MSG_LEN (((size_t)4 << 30) + 12345)

static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* A view of len bytes that repeats the memfd's PERIOD bytes. */
static unsigned char *repeat_view(int fd, size_t len)
{
    size_t n = (len + PERIOD - 1) / PERIOD;
    unsigned char *base = mmap(NULL, n * PERIOD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    for (size_t i = 0; i < n; i++)
        if (mmap(base + i * PERIOD, PERIOD, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd,
                 0) == MAP_FAILED)
            return NULL;
    return base;
}

static void message_over_4gib(void **state)
{
    size_t avail = mem_available();
    if (avail < MSG_LEN + ((size_t)1 << 30)) {
        print_message("skipped: a > 4 GiB message needs %zu MiB of MemAvailable, %zu MiB here\n",
                      (MSG_LEN >> 20) + 1024, avail >> 20);
        skip();
    }
    int fd = memfd_create("mproc-pipe-big", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)PERIOD), 0);
    unsigned char *pat = mmap(NULL, PERIOD, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(pat != MAP_FAILED);
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < PERIOD / 8; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(pat + i * 8, &x, 8);
    }

    mp_conn *a, *b;
    assert_mp_ok(mp_pipe_new(&a, &b, true));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp_conn_free(&a);
        unsigned char *src = repeat_view(fd, MSG_LEN);
        MP_CHILD_CHECK(src != NULL);
        MP_CHILD_CHECK(mp_conn_send(b, src, MSG_LEN, 60) == 0);
        MP_CHILD_CHECK(mp_conn_send(b, "after", 5, 60) == 0);
        mp_conn_free(&b);
        mp_test_child_exit(0);
    }
    mp_conn_free(&b);
    size_t n = 0;
    char small[8];
    assert_mp(MP_ETOOSMALL, mp_conn_recv(a, small, sizeof small, &n, mp_test_timeout(30)));
    assert_true(n == MSG_LEN); /* the size needed, all 64 bits of it */
    unsigned char *dst = mmap(NULL, MSG_LEN, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE, -1, 0);
    assert_true(dst != MAP_FAILED);
    assert_mp_ok(mp_conn_recv(a, dst, MSG_LEN, &n, mp_test_timeout(60)));
    assert_true(n == MSG_LEN);
    for (size_t off = 0; off < MSG_LEN; off += PERIOD) {
        size_t k = MSG_LEN - off < PERIOD ? MSG_LEN - off : PERIOD;
        if (memcmp(dst + off, pat, k) != 0) fail_msg("the chunk at offset %zu differs", off);
    }
    munmap(dst, MSG_LEN);
    assert_mp_ok(mp_conn_recv(a, small, sizeof small, &n, mp_test_timeout(10)));
    assert_int_equal(n, 5);
    assert_mp(MP_EEOF, mp_conn_recv(a, small, sizeof small, &n, mp_test_timeout(10)));
    assert_child_ok(pid);
    mp_conn_free(&a);
    munmap(pat, PERIOD);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(message_over_4gib),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
