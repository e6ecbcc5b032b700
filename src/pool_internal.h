/* SPDX-License-Identifier: MIT */
/* pool_internal.h - what the pool's parts share: record formats, the task-side result, the
 * registry's private calls, and the worker configuration every transport passes to its workers.
 *
 * Records. Everything between the parent and a worker is a record: a fixed header and a payload.
 * Records are what a transport carries; how it carries them (shared-memory rings here, MPI
 * messages later) is the transport's business (pool_transport.h).
 *
 *   task record   = mp__trec header + payload
 *       MP__T_ITEMS: count times { u32 len, len bytes }          (apply, map, starmap, imap)
 *       MP__T_FIXED: count times item_size bytes, back to back    (map_fixed)
 *       MP__T_STOP:  no payload: the worker exits with status 0
 *   result record = mp__rrec header + count times { mp__ritem_hdr, len bytes }
 *       status 0: the bytes are the item's result; otherwise they are the error message (no NUL)
 *       A worker may split one task's results into several records (first/count say which
 *       items); the last one has MP__R_LAST.
 */
#ifndef MP_POOL_INTERNAL_H
#define MP_POOL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mproc/pool.h"

enum { MP__T_ITEMS = 1, MP__T_FIXED = 2, MP__T_STOP = 3, MP__T_PAD = 4 };
enum { MP__R_RESULT = 1, MP__R_PAD = 4 };
#define MP__R_LAST 1u

typedef struct mp__trec {
    uint32_t size; /* whole record, header included, rounded up to 8 */
    uint16_t type;
    uint16_t flags;
    uint32_t count;     /* items */
    uint32_t item_size; /* MP__T_FIXED */
    uint64_t id;        /* task id, echoed in its result records */
    uint64_t func;      /* function id (mp__func_hash of its name) */
} mp__trec;

typedef struct mp__rrec {
    uint32_t size;
    uint16_t type;
    uint16_t flags; /* MP__R_LAST */
    uint32_t first; /* index of the first item in the task */
    uint32_t count;
    uint64_t id;
} mp__rrec;

typedef struct mp__ritem_hdr {
    int32_t status;
    int32_t code;
    uint32_t len;
} mp__ritem_hdr;

#define MP__REC_ALIGN(n) (((n) + 7u) & ~(size_t)7u)
/* Record overhead allowed for in the per-item size limit (max_message - MP__REC_SLACK). */
#define MP__REC_SLACK 64u

/* The task-side result: lives in the worker, reused from task to task. */
struct mp_task_result {
    size_t max; /* largest result bytes allowed */
    char *buf;
    size_t cap;
    size_t len;
    int status; /* 0, MP_ETASKFAILED, MP_ETOOBIG */
    int code;
    bool set;
    size_t msglen;
    char msg[1024];
};

/* Registry internals (pool_func.c). */
struct mp_func;
uint64_t mp__func_hash(const char *name);
const struct mp_func *mp__func_by_id(uint64_t id);
mp_task_fn mp__func_fn(const struct mp_func *f);
/* The registration order of f, and the last one so far: a pool remembers mp__func_gen() from
 * when its workers' registry was copied and refuses functions registered later. */
uint64_t mp__func_seq(const struct mp_func *f);
uint64_t mp__func_gen(void);
/* -EEXIST (and the detail set) when two MP_FUNC_REGISTERs gave one name to two functions. */
int mp__func_clash(void);
/* Sets this thread's detail string (mp_pool_last_error). */
void mp__pool_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef MP_TEST_HOOKS
/* How long a thread waiting for p's results spins for a worker on peer_cpu (0 when the pool's
 * spin option or the program-wide switch is off). Lets tests see the per-pool switch. */
int64_t mp__pool_spin_ns(const mp_pool *p, int peer_cpu);
#endif

/* What a worker needs to know, whatever the transport. */
typedef struct mp__worker_conf {
    size_t max_message;
    unsigned maxtasks;  /* 0: unlimited */
    uint64_t init_func; /* 0: no initializer */
    const void *initarg;
    size_t initarg_len;
    int pin_cpu; /* -1: none */
    bool spin;   /* mp_pool_options.spin: the worker may spin while it waits for a task */
} mp__worker_conf;

/* Runs one task record in a worker and emits its result records through emit(). Generic: every
 * transport's worker loop calls it. Returns 0, or a negative code when emit failed. */
typedef int (*mp__emit_fn)(void *ctx, const void *rec, size_t size);
int mp__worker_exec(const mp__trec *t, const mp__worker_conf *conf, mp_task_result *res,
                    char **scratch, size_t *scratch_cap, mp__emit_fn emit, void *ctx);

/* Runs the initializer. Returns 0, or the error with res->msg filled. */
int mp__worker_init(const mp__worker_conf *conf, mp_task_result *res);

#endif
