/* SPDX-License-Identifier: MIT */
/* named_shm.c - named shared memory between unrelated processes: the peer attaches by name. */
/* mp-test: lock=shm */
/*
 * The program runs itself again with exec (so the second process shares nothing with the first
 * but the name) and the two talk through one block that holds a Lock, an Event and a message:
 *
 *     offset 0                 Lock   (mp_lock_init_at / mp_lock_attach_at)
 *     offset MP_SYNC_SHM_SIZE  Event
 *     offset 1024              the message, then the reply
 *
 * The creator owns the name: it is unlinked when the creator frees the block (or exits), so
 * nothing is left in /dev/shm afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "named_shm: check failed: %s (line %d)\n", #cond, __LINE__);           \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define MSG_OFF 1024

static int peer(const char *name)
{
    mp_shm *b;
    int r = mp_shm_attach(&b, name);
    if (r) {
        fprintf(stderr, "peer: attach %s: %s\n", name, mp_strerror(r));
        return 1;
    }
    char *mem = mp_shm_ptr(b);
    mp_lock *l;
    mp_event *done;
    CHECK(mp_lock_attach_at(&l, mem, MP_SYNC_SHM_SIZE) == 0);
    CHECK(mp_event_attach_at(&done, mem + MP_SYNC_SHM_SIZE, MP_SYNC_SHM_SIZE) == 0);
    CHECK(mp_lock_acquire(l, 10) == 0);
    printf("  peer %d attached %s (%zu bytes), reads: \"%s\"\n", (int)getpid(), mp_shm_name(b),
           mp_shm_size(b), mem + MSG_OFF);
    snprintf(mem + MSG_OFF, 256, "hello back from pid %d", (int)getpid());
    mp_lock_release(l);
    mp_event_set(done);
    mp_lock_free(&l);
    mp_event_free(&done);
    mp_shm_free(&b); /* an attacher only unmaps */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--peer") == 0) return peer(argv[2]);

    mp_shm *b;
    CHECK(mp_shm_new(&b, NULL, 4096) == 0); /* a unique name: /mproc.<pid>.<n>.<random> */
    char *mem = mp_shm_ptr(b);
    mp_lock *l;
    mp_event *done;
    CHECK(mp_lock_init_at(&l, mem, MP_SYNC_SHM_SIZE, false) == 0);
    CHECK(mp_event_init_at(&done, mem + MP_SYNC_SHM_SIZE, MP_SYNC_SHM_SIZE) == 0);
    snprintf(mem + MSG_OFF, 256, "greetings from pid %d", (int)getpid());
    printf("creator %d made %s\n", (int)getpid(), mp_shm_name(b));

    fflush(stdout); /* the exec'd peer must not inherit buffered output */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* argv[0] when it is a path (it survives tools like valgrind, where /proc/self/exe is
         * the tool); /proc/self/exe when we were found through PATH */
        const char *self = strchr(argv[0], '/') ? argv[0] : "/proc/self/exe";
        execl(self, argv[0], "--peer", mp_shm_name(b), (char *)NULL);
        _exit(127);
    }
    CHECK(mp_event_wait(done, 10) == 0);
    CHECK(mp_lock_acquire(l, 10) == 0);
    printf("creator reads: \"%s\"\n", mem + MSG_OFF);
    CHECK(strncmp(mem + MSG_OFF, "hello back", 10) == 0);
    mp_lock_release(l);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    char name[256];
    snprintf(name, sizeof name, "%s", mp_shm_name(b));
    mp_lock_free(&l);
    mp_event_free(&done);
    mp_shm_free(&b); /* the creator unlinks the name */
    mp_shm *again;
    CHECK(mp_shm_attach(&again, name) == -ENOENT);
    printf("after free, %s is gone from /dev/shm\n", name);
    return 0;
}
