/* SPDX-License-Identifier: MIT */
/* shm_peer.c - a process that did not fork from the test: attaches a named block by name.
 *
 *     shm_peer NAME         the exchange below
 *     shm_peer NAME die     take the Lock at offset 0 and die by SIGKILL holding it
 * Layout of the block (made by test_shared.c): a Lock at offset 0, an Event at MP_SYNC_SHM_SIZE,
 * a Semaphore at 2 * MP_SYNC_SHM_SIZE, and from offset 4096 an array of uint32_t where word i
 * holds i * 7 + 1. The peer checks the words under the lock, writes their sum at offset 1024,
 * releases the semaphore and waits for the event before it exits 0. Any failure exits non-zero.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mproc/error.h"
#include "mproc/shared.h"
#include "mproc/sync.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "shm_peer: " __VA_ARGS__);                                                 \
        fputc('\n', stderr);                                                                       \
        return 2;                                                                                  \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) FAIL("usage: shm_peer NAME [die]");
    mp_shm *b;
    int r = mp_shm_attach(&b, argv[1]);
    if (r) FAIL("attach %s: %s", argv[1], mp_strerror(r));
    if (strcmp(mp_shm_name(b), argv[1]) != 0) FAIL("name %s", mp_shm_name(b));
    size_t size = mp_shm_size(b);
    char *mem = mp_shm_ptr(b);
    if (size < 4096 + 4) FAIL("size %zu", size);
    mp_lock *l;
    mp_event *done;
    mp_sem *ready;
    if ((r = mp_lock_attach_at(&l, mem, MP_SYNC_SHM_SIZE))) FAIL("lock: %s", mp_strerror(r));
    if (argc == 3) {
        if ((r = mp_lock_acquire(l, 10))) FAIL("acquire: %s", mp_strerror(r));
        raise(SIGKILL);
    }
    if ((r = mp_event_attach_at(&done, mem + MP_SYNC_SHM_SIZE, MP_SYNC_SHM_SIZE)))
        FAIL("event: %s", mp_strerror(r));
    if ((r = mp_sem_attach_at(&ready, mem + 2 * MP_SYNC_SHM_SIZE, MP_SYNC_SHM_SIZE)))
        FAIL("sem: %s", mp_strerror(r));
    if ((r = mp_lock_acquire(l, 10))) FAIL("acquire: %s", mp_strerror(r));
    const uint32_t *words = (const uint32_t *)(mem + 4096);
    size_t n = (size - 4096) / sizeof *words;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (words[i] != (uint32_t)(i * 7 + 1)) FAIL("word %zu is %u", i, words[i]);
        sum += words[i];
    }
    memcpy(mem + 1024, &sum, sizeof sum);
    mp_lock_release(l);
    mp_sem_release(ready);
    if ((r = mp_event_wait(done, 10))) FAIL("wait: %s", mp_strerror(r));
    mp_lock_free(&l);
    mp_event_free(&done);
    mp_sem_free(&ready);
    mp_shm_free(&b); /* an attacher never unlinks */
    return 0;
}
