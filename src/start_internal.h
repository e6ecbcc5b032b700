/* SPDX-License-Identifier: MIT */
/* start_internal.h - how start.c, launch.c, forkserver.c, process.c and the pool share the start
 * methods. Filled in by the launch work; see mproc/start.h for the user's view. */
#ifndef MP_START_INTERNAL_H
#define MP_START_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mproc/start.h"
#include "platform/platform.h"

/* MP_START_DEFAULT -> the program-wide default; others unchanged. */
mp_start_method mp__start_method_resolve(mp_start_method m);

/* In mp_init: when this process was spawned by mproc (or is the forkserver, or an MPI worker
 * rank), run what it was started for and never return; else return 0. */
int mp__boot_if_child(int *argc, char ***argv);

/* The MPI entry hook (libmproc-mpi registers it from a constructor): mp_init calls it when the
 * program was launched by mpirun/mpiexec. It returns 0 on rank 0 (main goes on) and never
 * returns on worker ranks. */
typedef int (*mp__entry_hook_fn)(int *argc, char ***argv);
MP_API void mp__entry_hook_set(mp__entry_hook_fn fn);

/* ---- launching a child under spawn or forkserver (launch.c, forkserver.c)
 * ------------------------ A launched child runs an internal entry, never the program's main: */
enum {
    MP__ENTRY_PROCESS = 1,      /* a Process with a named target (process.c) */
    MP__ENTRY_POOL_FACTORY = 2, /* a pool's worker factory (pool_factory.c) */
};

/* An entry runs in the child after the boot: payload (borrowed, valid for the child's life) and
 * the fds that came with the request (owned by the entry; close-on-exec, NOT marked internal:
 * mark what must not reach further children). Never returns (mp__child_exit). */
typedef void (*mp__entry_fn)(const void *payload, size_t len, int *fds, int nfds);
__attribute__((noreturn)) void mp__process_entry(const void *payload, size_t len, int *fds,
                                                 int nfds);
__attribute__((noreturn)) void mp__factory_entry(const void *payload, size_t len, int *fds,
                                                 int nfds);

#define MP__LAUNCH_FDS_MAX 160 /* fds one request may carry */

typedef struct mp__launch_req {
    mp_start_method method; /* MP_START_SPAWN or MP_START_FORKSERVER (resolved) */
    int entry;              /* MP__ENTRY_* */
    const char *name;       /* the child's process name (mp_process_current), may be NULL */
    bool daemon;            /* the child's daemon flag (its own children inherit it) */
    const void *payload;    /* copied into the request; at most MP_PROCESS_ARG_MAX + 64 KiB */
    size_t len;
    const int *fds; /* sent with SCM_RIGHTS: the child gets its own copies; the caller keeps and
                     * closes its own */
    int nfds;
} mp__launch_req;

/* A launched child, as its starter holds it. */
typedef struct mp__launched {
    pid_t pid;
    /* spawn: a pidfd on our own child (or the pidfd-less fallback's death socket): reap it with
     * mp__reap_pidfd, signal it with mp__pidfd_send_signal, like a forked child.
     * forkserver: the child's status socket from the server: readable when the child ended (the
     * server reaped it and wrote the exit code), or when the server died. */
    int handle;
    bool via_server;
} mp__launched;

/* Starts a child running req->entry. The handle is close-on-exec and marked internal. Errors:
 * MP_ENOTSUP (mp_init() was not called: the message from mp__start_error() says what to add),
 * MP_ETOOBIG (payload), -EINVAL, -EMFILE/-ENFILE, -EAGAIN/-ENOMEM (spawn/fork), -EPIPE (the
 * forkserver could not be (re)started). Thread-safe: may be called from any thread. */
int mp__launch(const mp__launch_req *req, mp__launched *out);

/* Waits (dl NULL: not at all) for the child to end and reaps it (spawn) or reads its status
 * (forkserver). Returns 1 with *code (exit status or -signal), 0 while it runs, -ENODATA when it
 * ended but its exit code is lost (the forkserver died first), another -errno. */
int mp__launched_reap(mp__launched *l, const mp__deadline *dl, int *code);
/* Sends sig (0: check only). A child already ended: 0, nothing sent. Async-signal-safe. */
int mp__launched_signal(const mp__launched *l, int sig);
/* Unmarks and closes the handle (after reaping; a running child is not touched). */
void mp__launched_close(mp__launched *l);

/* The detail of the last start error of this thread ("" before any). */
const char *mp__start_error(void);
void mp__start_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the request on the wire (launch.c), shared with forkserver.c ------------------------------
 * One SOCK_SEQPACKET message: a header, then the payload inline (up to MP__REQ_INLINE_MAX) or in
 * a memfd sent as the last fd; the entry's fds travel with it (SCM_RIGHTS). */
#define MP__REQ_MAGIC      0x4d505251u
#define MP__REQ_VERSION    1u
#define MP__REQ_INLINE_MAX (48u << 10)

typedef struct mp__req_hdr {
    uint32_t magic, version;
    int32_t entry;
    int32_t nfds;       /* the entry's fds (not counting a payload memfd or a status socket) */
    int32_t parent_pid; /* the program that asked for the child */
    int32_t daemon;
    int32_t in_memfd; /* 1: the payload is in the fd after the entry's fds */
    int32_t pad;
    uint64_t len; /* payload bytes */
    char name[64];
} mp__req_hdr;

typedef struct mp__req_out {
    void *msg; /* header + inline payload */
    size_t msglen;
    int fds[MP__LAUNCH_FDS_MAX + 2]; /* the caller's fds (borrowed) + our memfd (owned) */
    int nfds;
    int memfd;
} mp__req_out;

int mp__req_build(const mp__launch_req *r, mp__req_out *o);
void mp__req_release(mp__req_out *o);
/* Sends the request with extra_fd (>= 0) appended after every other fd. */
int mp__req_send(int sock, const mp__req_out *o, int extra_fd);

/* A received request. */
typedef struct mp__boot {
    mp__req_hdr hdr;
    void *msg;
    const void *payload;
    size_t len;
    int fds[MP__LAUNCH_FDS_MAX + 2];
    int nfds;     /* the entry's fds */
    int extra_fd; /* the fd after them (forkserver: the status socket), -1 for none */
} mp__boot;

/* Receives one request; has_extra: the sender appended an extra fd. Returns 1, 0 at end of file,
 * or -errno / MP_ECORRUPT (everything received is closed then). */
int mp__req_recv(int sock, mp__boot *b, bool has_extra);
void mp__boot_release(mp__boot *b);
/* In the new child: takes on the identity the request gives and runs the entry. */
__attribute__((noreturn)) void mp__boot_run(mp__boot *b);

/* process.c: the identity of a child launched by spawn/forkserver. */
void mp__process_child_setup(const char *name, bool daemon, pid_t parent_pid);

/* process.c: makes sure the exit handler (join children, then stop the forkserver) runs. */
void mp__process_exit_register(void);

/* forkserver.c */
int mp__forkserver_launch(const mp__req_out *o, mp__launched *out);
__attribute__((noreturn)) void mp__forkserver_main(int ctl, pid_t owner);

/* Threads mproc runs itself (pool supervisors): mp_thread_count leaves them out. */
void mp__own_threads_add(int delta);
/* The warning of MPROC_WARN_FORK_THREADS=1, called before every fork of mproc. */
void mp__fork_warn(void);

#endif
