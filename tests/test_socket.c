/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_socket.c - local sockets: path and abstract listeners, a client that is a separate
 * program, peer credentials, a different-uid peer rejected, stale and live socket files, the file
 * removed on close, timeouts, end of file and broken pipe, bad input. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"
#include "mp_test.h"

static char tmpdir[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/mproc-socktest-XXXXXX");
        if (!mkdtemp(tmpdir)) fail_msg("mkdtemp: %s", strerror(errno));
    }
    char *b = buf[k++ % 4];
    snprintf(b, 128, "%s/%s", tmpdir, name);
    return b;
}

static const char *abstract_name(const char *tag)
{
    static char buf[4][64];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 64, "@mproc-test-%d-%s", (int)getpid(), tag);
    return b;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Runs tests/helpers/socket_client (next to this test's binary) as a separate program. */
static pid_t spawn_client(const char *address, int count)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = 0;
    char helper[PATH_MAX + 32];
    snprintf(helper, sizeof helper, "%s/socket_client", dirname(exe));
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%d", count);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        execl(helper, "socket_client", address, cnt, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", helper, strerror(errno));
        mp_test_child_exit(127);
    }
    return pid;
}

/* The server's side of the socket_client conversation. */
static void serve_client(mp_listener *l, pid_t pid, int count)
{
    mp_wait_item it = {.conn = NULL, .fd = mp_listener_fileno(l)};
    assert_int_equal(mp_wait(&it, 1, mp_test_timeout(10)), 1);
    mp_conn *c;
    assert_mp_ok(mp_listener_accept(l, &c, mp_test_timeout(10)));
    pid_t ppid;
    uid_t puid;
    assert_mp_ok(mp_conn_peer(c, &ppid, &puid));
    assert_int_equal(ppid, pid);
    assert_int_equal(puid, geteuid());
    char buf[64], want[64];
    size_t n;
    for (int i = 0; i < count; i++) {
        assert_mp_ok(mp_conn_recv(c, buf, sizeof buf, &n, mp_test_timeout(10)));
        int w = snprintf(want, sizeof want, "msg %d", i);
        assert_int_equal(n, (size_t)w);
        assert_memory_equal(buf, want, n);
    }
    void *p;
    assert_int_equal(mp_conn_poll(c, mp_test_timeout(10)), 1);
    assert_mp_ok(mp_conn_recv_alloc(c, &p, &n, mp_test_timeout(10)));
    assert_int_equal(n, 3u << 20);
    for (size_t k = 0; k < n; k++)
        if (((unsigned char *)p)[k] != (unsigned char)(k * 7)) fail_msg("byte %zu differs", k);
    free(p);
    assert_mp_ok(mp_conn_send(c, "bye", 3, 5));
    mp_conn_free(&c);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
}

static void path_listener_with_separate_program(void **state)
{
    const char *path = tmp_path("s1");
    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, path, 4));
    assert_string_equal(mp_listener_address(l), path);
    assert_true(exists(path));
    pid_t pid = spawn_client(path, 10);
    serve_client(l, pid, 10);
    assert_mp_ok(mp_listener_close(l));
    assert_false(exists(path)); /* removed on close */
    assert_mp_ok(mp_listener_close(l));
    mp_listener_free(&l);
    assert_null(l);
}

static void abstract_listener_with_separate_program(void **state)
{
    const char *name = abstract_name("a");
    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, name, 0));
    pid_t pid = spawn_client(name, 3);
    serve_client(l, pid, 3);
    mp_listener_free(&l);
    mp_conn *c;
    assert_mp(-ECONNREFUSED, mp_client_connect(&c, name, 1)); /* gone with the listener */
}

/* A child that connects as user nobody (65534) and then waits for the server's verdict. */
static pid_t nobody_client(const char *name)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        (void)setgroups(0, NULL);
        MP_CHILD_CHECK(setgid(65534) == 0);
        MP_CHILD_CHECK(setuid(65534) == 0);
        mp_conn *c;
        MP_CHILD_CHECK(mp_client_connect(&c, name, 5) == 0);
        char buf[8];
        size_t n;
        int rc = mp_conn_recv(c, buf, sizeof buf, &n, 10);
        if (rc == 0) { /* accepted: expect "hi" and then end of file */
            MP_CHILD_CHECK(n == 2 && memcmp(buf, "hi", 2) == 0);
            rc = mp_conn_recv(c, buf, sizeof buf, &n, 10);
        }
        MP_CHILD_CHECK(rc == MP_EEOF);
        mp_conn_free(&c);
        mp_test_child_exit(0);
    }
    return pid;
}

static void other_uid_rejected_by_default(void **state)
{
    if (geteuid() != 0) {
        print_message("skipped: becoming another user (nobody, 65534) needs root\n");
        skip();
    }
    const char *name = abstract_name("uid");
    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, name, 4));
    pid_t pid = nobody_client(name);
    mp_conn *c = NULL;
    assert_mp(MP_EPEERCRED, mp_listener_accept(l, &c, mp_test_timeout(10)));
    assert_null(c);
    assert_child_ok(pid); /* the child saw end of file at once */

    assert_mp_ok(mp_listener_allow_any_uid(l, true));
    pid = nobody_client(name);
    assert_mp_ok(mp_listener_accept(l, &c, mp_test_timeout(10)));
    pid_t ppid;
    uid_t puid;
    assert_mp_ok(mp_conn_peer(c, &ppid, &puid));
    assert_int_equal(puid, 65534);
    assert_int_equal(ppid, pid);
    assert_mp_ok(mp_conn_send(c, "hi", 2, 5));
    mp_conn_free(&c);
    assert_child_ok(pid);
    mp_listener_free(&l);
}

static void stale_file_replaced_live_one_refused(void **state)
{
    /* a socket file nobody listens on: bound, never listened, closed */
    const char *path = tmp_path("stale");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_true(exists(path));
    mp_conn *c;
    assert_mp(-ECONNREFUSED, mp_client_connect(&c, path, 1));
    mp_listener *l, *l2;
    assert_mp_ok(mp_listener_new(&l, path, 4));

    /* a live listener: the second one is refused, the first keeps working */
    assert_mp(-EADDRINUSE, mp_listener_new(&l2, path, 4));
    /* finding out cost the live listener one connection that closed at once */
    mp_conn *s;
    char buf[4];
    size_t n;
    assert_mp_ok(mp_listener_accept(l, &s, 1));
    assert_mp(MP_EEOF, mp_conn_recv(s, buf, sizeof buf, &n, 1));
    mp_conn_free(&s);
    assert_mp_ok(mp_client_connect(&c, path, 1));
    assert_mp_ok(mp_listener_accept(l, &s, 1));
    assert_mp_ok(mp_conn_send(c, "x", 1, 1));
    assert_mp_ok(mp_conn_recv(s, buf, sizeof buf, &n, 1));
    mp_conn_free(&c);
    mp_conn_free(&s);

    /* a listener whose process crashed leaves a stale file that the next one replaces */
    const char *path2 = tmp_path("crashed");
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp_listener *cl;
        MP_CHILD_CHECK(mp_listener_new(&cl, path2, 4) == 0);
        mp_test_child_exit(0); /* no close: the file stays */
    }
    assert_child_ok(pid);
    assert_true(exists(path2));
    assert_mp_ok(mp_listener_new(&l2, path2, 4));
    mp_listener_free(&l2);
    assert_false(exists(path2));

    /* a file that is not a socket is never removed */
    const char *path3 = tmp_path("regular");
    int f = open(path3, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    close(f);
    assert_mp(-EADDRINUSE, mp_listener_new(&l2, path3, 4));
    assert_true(exists(path3));
    unlink(path3);

    /* abstract names: a live one is in use */
    const char *name = abstract_name("live");
    assert_mp_ok(mp_listener_new(&l2, name, 4));
    mp_listener *l3;
    assert_mp(-EADDRINUSE, mp_listener_new(&l3, name, 4));
    mp_listener_free(&l2);
    mp_listener_free(&l);
    assert_false(exists(path));
}

static void file_removed_only_by_owner(void **state)
{
    const char *path = tmp_path("owner");
    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, path, 4));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp_listener_free(&l); /* a forked copy: closes its fd, leaves the file */
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    assert_true(exists(path));
    mp_conn *c;
    assert_mp_ok(mp_client_connect(&c, path, 1)); /* still listening */
    mp_conn_free(&c);

    /* someone replaced the file: closing the old listener leaves the new file alone */
    unlink(path);
    mp_listener *l2;
    assert_mp_ok(mp_listener_new(&l2, path, 4));
    mp_listener_free(&l);
    assert_true(exists(path));
    mp_listener_free(&l2);
    assert_false(exists(path));
}

/* N processes create a listener on one path at the same moment: exactly one gets it, the others
 * get -EADDRINUSE, and the winner's file is never removed by a loser (a loser that took the
 * winner's freshly bound, not yet listening, socket for a stale one would unlink it and bind its
 * own: two "winners", one of them unreachable). */
#define RACERS 6
struct race_report {
    pid_t pid;
    int rc;
};

static void concurrent_creators_one_winner(void **state)
{
    int rounds = 60, bad_rounds = 0, unreachable = 0, left_behind = 0;
    for (int round = 0; round < rounds; round++) {
        char name[32];
        snprintf(name, sizeof name, "race%d", round);
        const char *path = tmp_path(name);
        int start[2], done[2], res[2];
        assert_int_equal(pipe2(start, O_CLOEXEC), 0);
        assert_int_equal(pipe2(done, O_CLOEXEC), 0);
        assert_int_equal(pipe2(res, O_CLOEXEC), 0);
        pid_t pids[RACERS];
        for (int i = 0; i < RACERS; i++) {
            pids[i] = mp_test_fork();
            if (pids[i] == 0) {
                close(start[1]);
                close(done[1]);
                close(res[0]);
                char b;
                MP_CHILD_CHECK(read(start[0], &b, 1) == 0); /* all released at once */
                mp_listener *l = NULL;
                /* backlog: room for the losers' probes and the parent's check */
                struct race_report r = {getpid(), mp_listener_new(&l, path, 64)};
                MP_CHILD_CHECK(write(res[1], &r, sizeof r) == (ssize_t)sizeof r);
                if (r.rc == 0) {
                    MP_CHILD_CHECK(read(done[0], &b, 1) == 0);
                    mp_listener_free(&l); /* removes the file if it is still its own */
                }
                mp_test_child_exit(0);
            }
        }
        close(start[0]);
        close(done[0]);
        close(res[1]);
        close(start[1]); /* go */
        int winners = 0, others = 0;
        struct race_report r[RACERS];
        for (int i = 0; i < RACERS; i++) {
            assert_int_equal(read(res[0], &r[i], sizeof r[i]), (ssize_t)sizeof r[i]);
            if (r[i].rc == 0) {
                winners++;
            } else if (r[i].rc != -EADDRINUSE) {
                others++;
            }
        }
        close(res[0]);
        /* the losers are gone: the winner's file must still be there, and it must answer */
        for (int i = 0; i < RACERS; i++)
            if (r[i].rc != 0) assert_int_equal(mp_test_wait_code(r[i].pid, mp_test_timeout(10)), 0);
        mp_conn *c = NULL;
        int crc = mp_client_connect(&c, path, mp_test_timeout(1));
        mp_conn_free(&c);
        close(done[1]); /* the winners close and leave */
        for (int i = 0; i < RACERS; i++)
            if (r[i].rc == 0) assert_int_equal(mp_test_wait_code(r[i].pid, mp_test_timeout(10)), 0);
        if (winners != 1 || others != 0) bad_rounds++;
        if (crc != 0) unreachable++;
        if (exists(path)) {
            left_behind++;
            unlink(path);
        }
    }
    if (bad_rounds || unreachable || left_behind)
        fail_msg(
            "%d of %d rounds had not exactly one winner, %d left the path unreachable, %d left "
            "a file behind",
            bad_rounds, rounds, unreachable, left_behind);
}

static void accept_timeout_and_wait(void **state)
{
    const char *name = abstract_name("wait");
    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, name, 4));
    mp_conn *c = NULL;
    double t = now_s();
    assert_mp(-ETIMEDOUT, mp_listener_accept(l, &c, 0.1));
    assert_true(now_s() - t >= 0.1);
    assert_mp(-ETIMEDOUT, mp_listener_accept(l, &c, 0));
    t = now_s();
    assert_mp(-ETIMEDOUT, mp_listener_accept(l, &c, -2.0)); /* not MP_FOREVER: expired */
    assert_true(now_s() - t < 1.0);
    assert_null(c);
    mp_wait_item it = {.conn = NULL, .fd = mp_listener_fileno(l)};
    assert_int_equal(mp_wait(&it, 1, 0.05), 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        usleep(50000);
        mp_conn *cc;
        MP_CHILD_CHECK(mp_client_connect(&cc, name, 5) == 0);
        MP_CHILD_CHECK(mp_conn_send(cc, "ping", 4, 5) == 0);
        char buf[8];
        size_t n;
        MP_CHILD_CHECK(mp_conn_recv(cc, buf, sizeof buf, &n, 5) == 0 && n == 4);
        mp_conn_free(&cc);
        mp_test_child_exit(0);
    }
    assert_int_equal(mp_wait(&it, 1, mp_test_timeout(5)), 1);
    assert_mp_ok(mp_listener_accept(l, &c, 1));
    mp_wait_item ci = {.conn = c, .fd = -1};
    assert_int_equal(mp_wait(&ci, 1, mp_test_timeout(5)), 1);
    char buf[8];
    size_t n;
    assert_mp_ok(mp_conn_recv(c, buf, sizeof buf, &n, 1));
    assert_mp_ok(mp_conn_send(c, "pong", 4, 1));
    assert_child_ok(pid);
    mp_conn_free(&c);
    mp_listener_free(&l);
}

/* mp_conn_from_fd wraps connected stream sockets only (issue 11): a socket never connected and a
 * listening one are refused with -ENOTCONN and stay the caller's; one whose peer already left is
 * connected still, and reads end of file. */
static void from_fd_needs_a_connected_socket(void **state)
{
    mp_conn *c = NULL;
    int lone = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lone >= 0);
    assert_mp(-ENOTCONN, mp_conn_from_fd(&c, lone, true, true));
    assert_null(c);
    assert_true(fcntl(lone, F_GETFD) >= 0); /* still open: the caller owns it */
    close(lone);

    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, abstract_name("fromfd"), 4));
    int lfd = mp_listener_fileno(l);
    assert_mp(-ENOTCONN, mp_conn_from_fd(&c, lfd, true, true));
    assert_null(c);
    assert_int_equal(mp_listener_fileno(l), lfd);
    mp_listener_free(&l);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    assert_mp_ok(mp_conn_from_fd(&c, sv[0], true, true));
    assert_int_equal(mp_conn_is_closed(c), 0);
    char buf[4];
    size_t n;
    assert_mp(MP_EEOF, mp_conn_recv(c, buf, sizeof buf, &n, mp_test_timeout(5)));
    mp_conn_close(c);
    assert_int_equal(mp_conn_is_closed(c), 1);
    mp_conn_free(&c);
}

static void eof_and_broken_pipe(void **state)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    sigaction(SIGPIPE, &dfl, &old);
    const char *name = abstract_name("eof");
    mp_listener *l;
    assert_mp_ok(mp_listener_new(&l, name, 4));
    mp_conn *c, *s;
    assert_mp_ok(mp_client_connect(&c, name, 1));
    assert_mp_ok(mp_listener_accept(l, &s, 1));
    size_t big = 5u << 20;
    unsigned char *buf = malloc(big);
    memset(buf, 0x5a, big);
    pid_t pid = mp_test_fork();
    if (pid == 0) { /* a large message each way at the same time */
        MP_CHILD_CHECK(mp_conn_send(c, buf, big, 10) == 0);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_conn_send(s, buf, big, mp_test_timeout(10)));
    size_t n;
    assert_mp_ok(mp_conn_recv(s, buf, big, &n, mp_test_timeout(10)));
    assert_int_equal(n, big);
    assert_child_ok(pid);
    assert_mp_ok(mp_conn_recv(c, buf, big, &n, mp_test_timeout(10)));
    assert_int_equal(n, big);

    assert_mp_ok(mp_conn_send(c, "1", 1, 1));
    assert_mp_ok(mp_conn_send(c, "2", 1, 1));
    mp_conn_free(&c);
    assert_mp_ok(mp_conn_recv(s, buf, big, &n, 1));
    assert_mp_ok(mp_conn_recv(s, buf, big, &n, 1));
    assert_mp(MP_EEOF, mp_conn_recv(s, buf, big, &n, 1));
    assert_mp(MP_EEOF, mp_conn_recv(s, buf, big, &n, 1));
    assert_mp(-EPIPE, mp_conn_send(s, "x", 1, 1));
    assert_mp(-EPIPE, mp_conn_send(s, buf, big, 1));
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    free(buf);
    mp_conn_free(&s);
    mp_listener_free(&l);
    sigaction(SIGPIPE, &old, NULL);
}

static void connect_errors(void **state)
{
    mp_conn *c = NULL;
    assert_mp(-ENOENT, mp_client_connect(&c, tmp_path("nothing-here"), 1));
    assert_mp(-ECONNREFUSED, mp_client_connect(&c, abstract_name("nobody"), 1));
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_mp(-ENAMETOOLONG, mp_client_connect(&c, longname, 1));
    longname[0] = '@';
    assert_mp(-ENAMETOOLONG, mp_client_connect(&c, longname, 1));
    assert_mp(-EINVAL, mp_client_connect(&c, "", 1));
    assert_mp(-EINVAL, mp_client_connect(&c, "@", 1));
    assert_mp(-EINVAL, mp_client_connect(&c, NULL, 1));
    assert_mp(-EINVAL, mp_client_connect(NULL, "@x", 1));
    assert_null(c);
}

static void listener_bad_input_and_close(void **state)
{
    mp_listener *l = NULL;
    assert_mp(-EINVAL, mp_listener_new(NULL, "@x", 1));
    assert_mp(-EINVAL, mp_listener_new(&l, NULL, 1));
    assert_mp(-EINVAL, mp_listener_new(&l, "", 1));
    assert_mp(-EINVAL, mp_listener_new(&l, "@", 1));
    char longname[200];
    memset(longname, 'y', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_mp(-ENAMETOOLONG, mp_listener_new(&l, longname, 1));
    assert_mp(-ENOENT, mp_listener_new(&l, "/nonexistent-dir-mproc/s", 1));
    assert_null(l);
    mp_conn *c = NULL;
    assert_mp(-EINVAL, mp_listener_accept(NULL, &c, 0));
    assert_mp(-EINVAL, mp_listener_fileno(NULL));
    assert_mp(-EINVAL, mp_listener_allow_any_uid(NULL, true));
    assert_string_equal(mp_listener_address(NULL), "");
    assert_mp_ok(mp_listener_close(NULL));
    assert_mp_ok(mp_listener_free(NULL));
    assert_mp_ok(mp_listener_free(&l));

    assert_mp_ok(mp_listener_new(&l, abstract_name("bad"), 1));
    assert_mp(-EINVAL, mp_listener_accept(l, NULL, 0));
    assert_mp_ok(mp_listener_close(l));
    assert_mp(MP_ECLOSED, mp_listener_accept(l, &c, 0));
    assert_mp(MP_ECLOSED, mp_listener_fileno(l));
    assert_mp(MP_ECLOSED, mp_listener_allow_any_uid(l, true));
    assert_mp_ok(mp_listener_close(l));
    assert_mp_ok(mp_listener_free(&l));
    assert_null(l);
    assert_mp(-EINVAL, mp_listener_accept(l, &c, 0));
}

static int teardown_dir(void)
{
    if (tmpdir[0]) rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(path_listener_with_separate_program),
        MP_TEST(abstract_listener_with_separate_program),
        MP_TEST(other_uid_rejected_by_default),
        MP_TEST(stale_file_replaced_live_one_refused),
        MP_TEST(file_removed_only_by_owner),
        MP_TEST(concurrent_creators_one_winner),
        MP_TEST(accept_timeout_and_wait),
        MP_TEST(from_fd_needs_a_connected_socket),
        MP_TEST(eof_and_broken_pipe),
        MP_TEST(connect_errors),
        MP_TEST(listener_bad_input_and_close),
    };
    int rc = mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
    teardown_dir();
    return rc;
}
