/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_conn_hangup.c - the platform contract behind a pipe end's peer check (platform.h, "peer
 * hang-up watch"), tested on bare sockets with the kernel poll (io_uring) and without it: the
 * arming thread sees a close that happened before its check, other threads and forked children
 * ask the socket, and a peer that only shut its sending side is not gone. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mp_test.h"
#include "mproc.h"
#include "platform/platform.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* The arming thread: not gone while the peer lives (checked many times, as sends would), gone
 * at the first check after the peer's last copy closed. */
static void same_thread_sees_close(void **state)
{
    for (int ring = 0; ring < 2; ring++) {
        for (int round = 0; round < 50; round++) {
            int sv[2];
            pair(sv);
            mp__hangup_watch *w = NULL;
            assert_int_equal(mp__hangup_watch_new(&w, sv[0], sv[0], ring), 0);
            for (int i = 0; i < 10; i++)
                assert_false(mp__hangup_watch_gone(w));
            close(sv[1]);
            assert_true(mp__hangup_watch_gone(w));
            assert_true(mp__hangup_watch_gone(w)); /* and stays so */
            mp__hangup_watch_free(&w);
            assert_null(w);
            mp__hangup_watch_free(&w); /* NULL-safe */
            close(sv[0]);
        }
    }
}

struct checker {
    mp__hangup_watch *w;
    bool gone;
};

static void *check_once(void *arg)
{
    struct checker *c = arg;
    c->gone = mp__hangup_watch_gone(c->w);
    return NULL;
}

static bool check_in_thread(mp__hangup_watch *w)
{
    struct checker c = {w, false};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, check_once, &c), 0);
    pthread_join(t, NULL);
    return c.gone;
}

/* Armed by this thread, checked by another: it asks the socket, and is right both ways. */
static void other_thread_asks_the_socket(void **state)
{
    for (int ring = 0; ring < 2; ring++) {
        int sv[2];
        pair(sv);
        mp__hangup_watch *w = NULL;
        assert_int_equal(mp__hangup_watch_new(&w, sv[0], sv[0], ring), 0);
        assert_false(mp__hangup_watch_gone(w)); /* armed here */
        assert_false(check_in_thread(w));
        close(sv[1]);
        assert_true(check_in_thread(w));
        assert_true(mp__hangup_watch_gone(w));
        mp__hangup_watch_free(&w);
        close(sv[0]);
    }
}

/* A child that inherited an armed watch: its checks are its own and right (the peer stays alive
 * while the parent holds it, even after the child drops its copy); the parent's watch still sees
 * the close afterwards. */
static void forked_child_asks_the_socket(void **state)
{
    for (int ring = 0; ring < 2; ring++) {
        int sv[2];
        pair(sv);
        mp__hangup_watch *w = NULL;
        assert_int_equal(mp__hangup_watch_new(&w, sv[0], sv[0], ring), 0);
        assert_false(mp__hangup_watch_gone(w));
        pid_t pid = mp_test_fork();
        if (pid == 0) {
            close(sv[1]);
            MP_CHILD_CHECK(!mp__hangup_watch_gone(w)); /* the parent holds the peer */
            MP_CHILD_CHECK(!mp__hangup_watch_gone(w));
            mp__hangup_watch_free(&w);
            close(sv[0]);
            mp_test_child_exit(0);
        }
        assert_child_ok(pid);
        assert_false(mp__hangup_watch_gone(w));
        close(sv[1]);
        assert_true(mp__hangup_watch_gone(w));
        mp__hangup_watch_free(&w);
        close(sv[0]);
    }
}

/* A peer that shuts its sending side fires the kernel poll (POLLRDHUP) without being gone: the
 * watch must keep saying "not gone", and still see the real close later. */
static void shut_is_not_gone(void **state)
{
    for (int ring = 0; ring < 2; ring++) {
        int sv[2];
        pair(sv);
        mp__hangup_watch *w = NULL;
        assert_int_equal(mp__hangup_watch_new(&w, sv[0], sv[0], ring), 0);
        assert_false(mp__hangup_watch_gone(w));
        assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
        for (int i = 0; i < 5; i++)
            assert_false(mp__hangup_watch_gone(w));
        close(sv[1]);
        assert_true(mp__hangup_watch_gone(w));
        mp__hangup_watch_free(&w);
        close(sv[0]);
    }
}

/* Armed on a different fd than the one asked (what a duplex pipe end does): the armed fd's
 * hang-up wakes the watch, the socket decides. */
static void armed_elsewhere(void **state)
{
    for (int ring = 0; ring < 2; ring++) {
        int sv[2], p[2];
        pair(sv);
        assert_int_equal(pipe(p), 0);
        mp__hangup_watch *w = NULL;
        assert_int_equal(mp__hangup_watch_new(&w, sv[0], p[0], ring), 0);
        assert_false(mp__hangup_watch_gone(w));
        close(p[1]); /* the armed pipe hangs up, the socket's peer is alive */
        assert_false(mp__hangup_watch_gone(w));
        close(sv[1]);
        assert_true(mp__hangup_watch_gone(w));
        mp__hangup_watch_free(&w);
        close(p[0]);
        close(sv[0]);
    }
}

/* The one-off check, and mp__poll_fds on a ready, a quiet and a closed fd. */
static void one_off_and_poll_fds(void **state)
{
    int sv[2];
    pair(sv);
    assert_false(mp__hangup_now(sv[0]));
    assert_int_equal(write(sv[1], "x", 1), 1);
    int q[2];
    pair(q);
    int bad = dup(q[0]);
    close(bad);
    struct pollfd u[3] = {{.fd = sv[0], .events = POLLIN},
                          {.fd = q[0], .events = POLLIN},
                          {.fd = bad, .events = POLLIN}};
    mp__deadline dl = mp__deadline_in(0);
    assert_int_equal(mp__poll_fds(u, 3, &dl), 2);
    assert_true(u[0].revents & POLLIN);
    assert_int_equal(u[1].revents, 0);
    assert_true(u[2].revents & POLLNVAL);
    close(sv[1]);
    assert_true(mp__hangup_now(sv[0]));
    close(sv[0]);
    close(q[0]);
    close(q[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(same_thread_sees_close),
        MP_TEST(other_thread_asks_the_socket),
        MP_TEST(forked_child_asks_the_socket),
        MP_TEST(shut_is_not_gone),
        MP_TEST(armed_elsewhere),
        MP_TEST(one_off_and_poll_fds),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
