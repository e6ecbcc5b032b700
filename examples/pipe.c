/* SPDX-License-Identifier: MIT */
/* pipe.c - Pipe(duplex) and Pipe(one-way) between processes: send, recv, poll, EOF, broken pipe. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "pipe: check failed: %s (line %d)\n", #cond, __LINE__);                \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

struct ends {
    mp_conn *mine, *theirs;
};

/* Duplex: the child answers every question on the same connection, until end of file. */
static int answerer(void *arg)
{
    struct ends *e = arg;
    mp_conn_free(&e->theirs); /* the parent's end: close our copy, as in Python */
    char q[128], a[160];
    size_t n;
    while (mp_conn_recv(e->mine, q, sizeof q - 1, &n, MP_FOREVER) == 0) {
        q[n] = 0;
        int len = snprintf(a, sizeof a, "child %d heard '%s'", (int)getpid(), q);
        if (mp_conn_send(e->mine, a, (size_t)len, MP_FOREVER) < 0) return 1;
    }
    return 0; /* MP_EEOF: the parent closed its end */
}

/* One-way: the child only writes, numbers and then a large message. */
static int producer(void *arg)
{
    struct ends *e = arg;
    mp_conn_free(&e->theirs);
    for (int i = 1; i <= 5; i++)
        if (mp_conn_send(e->mine, &i, sizeof i, MP_FOREVER) < 0) return 1;
    size_t big = 10u << 20;
    char *p = malloc(big);
    memset(p, 'z', big);
    int rc = mp_conn_send(e->mine, p, big, MP_FOREVER);
    free(p);
    return rc < 0;
}

int main(void)
{
    /* ---- fd1, fd2 = Pipe(duplex=True) -------------------------------------------------- */
    mp_conn *fd1, *fd2;
    CHECK(mp_pipe_new(&fd1, &fd2, true) == 0);
    struct ends ce = {fd2, fd1};
    mp_process *p;
    CHECK(mp_process_new(&p, "answerer", answerer, &ce) == 0);
    CHECK(mp_process_start(p) == 0);
    mp_conn_free(&fd2); /* the child's end */

    const char *questions[] = {"hello", "how are you?", "bye"};
    for (int i = 0; i < 3; i++) {
        CHECK(mp_conn_send(fd1, questions[i], strlen(questions[i]), 5) == 0);
        char answer[160];
        size_t n;
        CHECK(mp_conn_recv(fd1, answer, sizeof answer - 1, &n, 5) == 0);
        answer[n] = 0;
        printf("duplex: asked '%s', got \"%s\"\n", questions[i], answer);
        CHECK(strstr(answer, questions[i]) != NULL);
    }
    /* nothing more to read: poll says so after its timeout, recv after its own */
    CHECK(mp_conn_poll(fd1, 0.05) == 0);
    char tiny[4];
    size_t n;
    CHECK(mp_conn_recv(fd1, tiny, sizeof tiny, &n, 0.05) == -ETIMEDOUT);
    printf("duplex: poll and recv time out when nothing was sent\n");
    mp_conn_close(fd1); /* the child's recv returns MP_EEOF and it exits */
    CHECK(mp_process_join(p, 5) == 0);
    int code;
    CHECK(mp_process_exitcode(p, &code) == 0 && code == 0);
    mp_process_free(&p);
    mp_conn_free(&fd1);

    /* ---- r, w = Pipe(duplex=False): r only reads, w only writes --------------------------- */
    mp_conn *r, *w;
    CHECK(mp_pipe_new(&r, &w, false) == 0);
    CHECK(mp_conn_send(r, "x", 1, 0) == MP_EWRONGDIR);
    printf("one-way: sending on the read end: %s\n", mp_strerror(MP_EWRONGDIR));
    struct ends pe = {w, r};
    CHECK(mp_process_new(&p, "producer", producer, &pe) == 0);
    CHECK(mp_process_start(p) == 0);
    mp_conn_free(&w);
    int sum = 0, v;
    for (int i = 0; i < 5; i++) {
        CHECK(mp_conn_recv(r, &v, sizeof v, &n, 5) == 0 && n == sizeof v);
        sum += v;
    }
    printf("one-way: received 1..5, sum %d\n", sum);
    CHECK(sum == 15);
    /* a buffer too small: the error says how much is needed, and the message waits */
    CHECK(mp_conn_recv(r, tiny, sizeof tiny, &n, 5) == MP_ETOOSMALL);
    printf("one-way: next message needs %zu bytes (%s)\n", n, mp_err_name(MP_ETOOSMALL));
    void *big;
    CHECK(mp_conn_recv_alloc(r, &big, &n, 5) == 0 && n == 10u << 20);
    CHECK(((char *)big)[n - 1] == 'z');
    free(big);
    CHECK(mp_conn_recv(r, tiny, sizeof tiny, &n, 5) == MP_EEOF);
    printf("one-way: then end of file: %s\n", mp_err_name(MP_EEOF));
    CHECK(mp_process_join(p, 5) == 0);
    mp_process_free(&p);
    mp_conn_free(&r);

    /* ---- a broken pipe is an error, not a SIGPIPE that kills the program --------------- */
    CHECK(mp_pipe_new(&r, &w, false) == 0);
    mp_conn_free(&r);
    int rc = mp_conn_send(w, "anyone?", 7, 1);
    printf("broken pipe: send with no receiver: %s (%s)\n", mp_err_name(rc), mp_strerror(rc));
    CHECK(rc == -EPIPE);
    mp_conn_free(&w);
    printf("pipe example: ok\n");
    return 0;
}
