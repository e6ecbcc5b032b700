/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_conn_liveness.c - a pipe end learns that its peer is gone without a system call per send
 * (an io_uring poll armed by the first send, see peer_gone in conn.c): every way the peer can go,
 * after the watch was armed, from the arming thread, another thread, and a forked child, and a
 * peer whose torn send shut its side of the socket (not a hang-up: sends must keep working). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "mp_test.h"
#include "mproc.h"

static void no_sigpipe(struct sigaction *old)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGPIPE, &dfl, old); /* a SIGPIPE would kill the test */
}

static void no_pending_sigpipe(const struct sigaction *old)
{
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    sigaction(SIGPIPE, old, NULL);
}

/* The watch is armed by earlier sends; then the peer closes (same thread) or its process dies
 * (reaped before the send): the very next send says -EPIPE, never a success that loses data. */
static void armed_then_peer_goes(void **state)
{
    struct sigaction old;
    no_sigpipe(&old);
    for (int duplex = 0; duplex < 2; duplex++) {
        for (int round = 0; round < 20; round++) {
            mp_conn *a, *b;
            assert_mp_ok(mp_pipe_new(&a, &b, duplex));
            for (int i = 0; i < 5; i++)
                assert_mp_ok(mp_conn_send(b, "x", 1, 1));
            mp_conn_close(a);
            assert_mp(-EPIPE, mp_conn_send(b, "y", 1, 1));
            assert_mp(-EPIPE, mp_conn_send(b, "y", 1, MP_FOREVER));
            mp_conn_free(&a);
            mp_conn_free(&b);

            /* the peer's process dies; a duplex peer sent first, so it had a watch of its own
             * (which must not delay the release the sender is waiting for) */
            assert_mp_ok(mp_pipe_new(&a, &b, duplex));
            assert_mp_ok(mp_conn_send(b, "x", 1, 1));
            pid_t pid = mp_test_fork();
            if (pid == 0) {
                char buf[4];
                size_t n;
                MP_CHILD_CHECK(mp_conn_recv(a, buf, sizeof buf, &n, 5) == 0);
                if (duplex) MP_CHILD_CHECK(mp_conn_send(a, "back", 4, 5) == 0);
                mp_test_child_exit(0); /* holds a, and dies */
            }
            mp_conn_free(&a);
            assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(5)), 0);
            assert_mp(-EPIPE, mp_conn_send(b, "y", 1, 1));
            mp_conn_free(&b);

            /* the same with the peer closing in this process after it sent */
            if (duplex) {
                assert_mp_ok(mp_pipe_new(&a, &b, duplex));
                assert_mp_ok(mp_conn_send(b, "x", 1, 1));
                assert_mp_ok(mp_conn_send(a, "x", 1, 1));
                mp_conn_free(&a);
                assert_mp(-EPIPE, mp_conn_send(b, "y", 1, 1));
                mp_conn_free(&b);
            }
        }
    }
    no_pending_sigpipe(&old);
}

struct sender {
    mp_conn *c;
    int rc;
};

static void *send_once(void *arg)
{
    struct sender *s = arg;
    s->rc = mp_conn_send(s->c, "z", 1, 1);
    return NULL;
}

/* Armed by this thread, the peer closed by this thread, the send made by another thread. */
static void other_thread_sees_it(void **state)
{
    struct sigaction old;
    no_sigpipe(&old);
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe_new(&a, &b, false));
    assert_mp_ok(mp_conn_send(b, "x", 1, 1));
    struct sender s = {b, 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_once, &s), 0);
    pthread_join(t, NULL);
    assert_mp_ok(s.rc); /* another thread, peer alive */
    mp_conn_close(a);
    s.rc = 1;
    assert_int_equal(pthread_create(&t, NULL, send_once, &s), 0);
    pthread_join(t, NULL);
    assert_mp(-EPIPE, s.rc);
    assert_mp(-EPIPE, mp_conn_send(b, "y", 1, 1));
    mp_conn_free(&a);
    mp_conn_free(&b);
    no_pending_sigpipe(&old);
}

struct closer {
    mp_conn *c;
    int done;
};

static void *close_then_flag(void *arg)
{
    struct closer *k = arg;
    mp_conn_close(k->c);
    __atomic_store_n(&k->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Another thread closes the peer while the arming thread stays in user space (it learns of the
 * close from memory, without a system call that would run the kernel's pending work): its next
 * send still says -EPIPE. */
static void armer_busy_in_user_space(void **state)
{
    struct sigaction old;
    no_sigpipe(&old);
    for (int duplex = 0; duplex < 2; duplex++) {
        mp_conn *a, *b;
        assert_mp_ok(mp_pipe_new(&a, &b, duplex));
        assert_mp_ok(mp_conn_send(b, "x", 1, 1));
        struct closer k = {a, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, close_then_flag, &k), 0);
        while (!__atomic_load_n(&k.done, __ATOMIC_ACQUIRE)) {
        }
        int rc = mp_conn_send(b, "y", 1, 1);
        pthread_join(t, NULL);
        assert_mp(-EPIPE, rc);
        mp_conn_free(&a);
        mp_conn_free(&b);
    }
    no_pending_sigpipe(&old);
}

/* Armed in the parent, then the sending end moves to a forked child: the child sees the peer go. */
static void forked_sender_sees_it(void **state)
{
    struct sigaction old;
    no_sigpipe(&old);
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe_new(&a, &b, true));
    assert_mp_ok(mp_conn_send(b, "x", 1, 1));
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        close(go[1]);
        mp_conn_free(&a);
        MP_CHILD_CHECK(mp_conn_send(b, "from child", 10, 5) == 0);
        char c;
        MP_CHILD_CHECK(read(go[0], &c, 1) == 0); /* the parent closed a */
        MP_CHILD_CHECK(mp_conn_send(b, "y", 1, 5) == -EPIPE);
        mp_conn_free(&b);
        mp_test_child_exit(0);
    }
    close(go[0]);
    mp_conn_free(&b);
    char buf[16];
    size_t n;
    assert_mp_ok(mp_conn_recv(a, buf, sizeof buf, &n, mp_test_timeout(5)));
    assert_mp_ok(mp_conn_recv(a, buf, sizeof buf, &n, mp_test_timeout(5)));
    assert_int_equal(n, 10);
    mp_conn_free(&a);
    close(go[1]);
    assert_child_ok(pid);
    no_pending_sigpipe(&old);
}

/* The peer's torn send shuts its side of the bulk socket: our end sees POLLRDHUP, which is not a
 * hang-up. Our sends keep working, many of them, and the peer receives them all. */
static void peer_shut_its_side_is_not_gone(void **state)
{
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe_new(&a, &b, true));
    assert_mp_ok(mp_conn_send(a, "armed", 5, 1));
    size_t big = 64u << 20;
    unsigned char *src = calloc(1, big);
    assert_mp(-ETIMEDOUT, mp_conn_send(b, src, big, 0.2)); /* nobody reads: torn */
    char buf[16];
    size_t n;
    for (int i = 0; i < 1000; i++) {
        assert_mp_ok(mp_conn_send(a, &i, sizeof i, 1));
        if (i == 0) assert_mp_ok(mp_conn_recv(b, buf, sizeof buf, &n, 1)); /* "armed" */
        int got;
        assert_mp_ok(mp_conn_recv(b, &got, sizeof got, &n, 1));
        assert_int_equal(got, i);
    }
    mp_conn_free(&b);
    assert_mp(-EPIPE, mp_conn_send(a, "y", 1, 1));
    free(src);
    mp_conn_free(&a);
}

/* The same cases on a system without io_uring: the epoll check per send. */
static void without_io_uring(void **state)
{
    mp__conn_no_uring = true;
    armed_then_peer_goes(state);
    other_thread_sees_it(state);
    armer_busy_in_user_space(state);
    forked_sender_sees_it(state);
    peer_shut_its_side_is_not_gone(state);
    mp__conn_no_uring = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(armed_then_peer_goes),           MP_TEST(other_thread_sees_it),
        MP_TEST(armer_busy_in_user_space),       MP_TEST(forked_sender_sees_it),
        MP_TEST(peer_shut_its_side_is_not_gone), MP_TEST(without_io_uring),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
