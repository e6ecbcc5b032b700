/* SPDX-License-Identifier: MIT */
/* local_socket.c - a Listener and a Client in two unrelated programs (the client is exec'd). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "local_socket: check failed: %s (line %d)\n", #cond, __LINE__);        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* The client: a fresh program that knows only the address. */
static int client(const char *address)
{
    mp_conn *c;
    int rc = mp_client_connect(&c, address, 5);
    if (rc < 0) {
        fprintf(stderr, "client: connect %s: %s\n", address, mp_strerror(rc));
        return 1;
    }
    char msg[128];
    int n = snprintf(msg, sizeof msg, "hello from client pid %d", (int)getpid());
    CHECK(mp_conn_send(c, msg, (size_t)n, 5) == 0);
    size_t len;
    CHECK(mp_conn_recv(c, msg, sizeof msg - 1, &len, 5) == 0);
    msg[len] = 0;
    printf("  client %d: server replied \"%s\"\n", (int)getpid(), msg);
    mp_conn_free(&c);
    return 0;
}

static int serve(const char *address)
{
    mp_listener *l;
    int rc = mp_listener_new(&l, address, 8);
    if (rc < 0) {
        fprintf(stderr, "listener %s: %s\n", address, mp_strerror(rc));
        return 1;
    }
    printf("server %d: listening at %s\n", (int)getpid(), address);

    /* start the client as a separate program: this executable, exec'd with "client ADDRESS" */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* readlink gives this program's own path even under tools like valgrind, where exec of
         * /proc/self/exe itself would start the tool's binary */
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) _exit(127);
        self[n] = 0;
        execl(self, "local_socket", "client", address, (char *)NULL);
        _exit(127);
    }
    mp_conn *c;
    CHECK(mp_listener_accept(l, &c, 10) == 0);
    pid_t peer;
    uid_t uid;
    CHECK(mp_conn_peer(c, &peer, &uid) == 0);
    printf("server: accepted pid %d, uid %d (the kernel says so: SO_PEERCRED)\n", (int)peer,
           (int)uid);
    CHECK(peer == pid);
    char msg[128];
    size_t len;
    CHECK(mp_conn_recv(c, msg, sizeof msg - 1, &len, 5) == 0);
    msg[len] = 0;
    printf("server: got \"%s\"\n", msg);
    CHECK(mp_conn_send(c, "welcome", 7, 5) == 0);
    CHECK(mp_conn_recv(c, msg, sizeof msg, &len, 5) == MP_EEOF); /* the client hung up */
    mp_conn_free(&c);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mp_listener_free(&l);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* server and client lines in the order they happen */
    if (argc == 3 && strcmp(argv[1], "client") == 0) return client(argv[2]);

    /* an abstract name: no file, gone with the listener */
    char name[64];
    snprintf(name, sizeof name, "@mproc-example-%d", (int)getpid());
    if (serve(name) != 0) return 1;

    /* a path: the socket file exists while the listener does */
    char dir[] = "/tmp/mproc-example-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/server.sock", dir);
    if (serve(path) != 0) return 1;
    struct stat st;
    CHECK(stat(path, &st) < 0 && errno == ENOENT);
    printf("server: %s removed on close\n", path);
    rmdir(dir);
    printf("local_socket example: ok\n");
    return 0;
}
