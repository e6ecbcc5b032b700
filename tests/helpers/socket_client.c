/* SPDX-License-Identifier: MIT */
/* socket_client.c - a client that did not fork from the test: test_socket execs it.
 *
 *     socket_client ADDRESS COUNT
 *
 * Connects to ADDRESS, sends COUNT messages "msg <i>", then one 3 MiB message whose byte k is
 * (k * 7) & 0xff, then waits for a reply "bye" and end of file. Exit status 0 on success; on
 * failure, a message on stderr and a status saying which step failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc.h"

static int fail(int code, const char *what, int rc)
{
    fprintf(stderr, "socket_client: %s: %s\n", what, mp_strerror(rc));
    return code;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: socket_client ADDRESS COUNT\n");
        return 2;
    }
    int count = atoi(argv[2]);
    mp_conn *c;
    int rc = mp_client_connect(&c, argv[1], 10);
    if (rc < 0) return fail(3, "connect", rc);
    char msg[64];
    for (int i = 0; i < count; i++) {
        int n = snprintf(msg, sizeof msg, "msg %d", i);
        if ((rc = mp_conn_send(c, msg, (size_t)n, 10)) < 0) return fail(4, "send", rc);
    }
    size_t big = 3u << 20;
    unsigned char *p = malloc(big);
    if (!p) return fail(5, "malloc", -12);
    for (size_t k = 0; k < big; k++)
        p[k] = (unsigned char)(k * 7);
    if ((rc = mp_conn_send(c, p, big, 10)) < 0) return fail(5, "send big", rc);
    free(p);
    size_t n;
    if ((rc = mp_conn_recv(c, msg, sizeof msg, &n, 10)) < 0) return fail(6, "recv", rc);
    if (n != 3 || memcmp(msg, "bye", 3) != 0) return fail(7, "reply", 0);
    if ((rc = mp_conn_recv(c, msg, sizeof msg, &n, 10)) != MP_EEOF) return fail(8, "eof", rc);
    mp_conn_free(&c);
    return 0;
}
