/* SPDX-License-Identifier: MIT */
/* mpcp.h - what the parts of mpcp share: options, the shared-memory layout, the batch of files.
 *
 * The parts, by responsibility:
 *   main.c     - the run: plan, then batches of files through copy (and verify) rounds
 *   options.c  - command line and --help
 *   ui.c       - messages, the -i prompt and the progress bar
 *   plan.c     - operands, directory trees (-r), symbolic links, directory attributes
 *   file.c     - one file: checks, temporary, clone, attributes, rename into place
 *   round.c    - the parent's side of a round: starting, watching and reaping workers
 *   worker.c   - the workers: copying and verifying byte ranges
 * mpcp uses only the public mproc API (mproc/process.h) and libc.
 */
#ifndef MPCP_H
#define MPCP_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifndef MPROC_TOOL_VERSION
#define MPROC_TOOL_VERSION "0.1.0"
#endif

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

#define MAX_JOBS       256         /* -j limit */
#define BATCH_FILES    128         /* files open at once (two fds each) */
#define MIN_AUTO_CHUNK (1u << 20)  /* default chunks are at least this big ... */
#define CHUNK_ALIGN    (64u << 10) /* ... and a multiple of this */
/* Default chunks per worker: a worker that the machine's load slows down does not hold up the
 * end, because the others take its share of the remaining chunks. */
#define CHUNKS_PER_WORKER 4
#define STEP_BYTES        (8u << 20) /* one copy_file_range call at most: progress, stop checks */
#define BUF_BYTES         (1u << 20) /* pread/pwrite and verify buffers */
/* Test hook MPCP_TEST_SLOW: small steps, a sleep after each. */
#define SLOW_STEP_BYTES  (64u << 10)
#define DIRECT_ALIGN     4096u       /* O_DIRECT offsets, lengths and buffers (at least) */
#define DIRECT_MAX_ALIGN (64u << 10) /* larger alignment demands: read back through the cache */

/* Error codes a worker stores besides errno values. */
enum { ERR_MISMATCH = -1, ERR_SHRANK = -2, ERR_WORKER_DIED = -3 };
/* What failed, for the message. */
enum { OP_COPY = 1, OP_READ, OP_WRITE, OP_VERIFY_READ, OP_VERIFY_DST };
enum { PHASE_COPY = 0, PHASE_VERIFY = 1 };
/* -i / -n: the last one given wins (as in GNU cp); -f is separate. */
enum { ASK_UNSET, ASK_USER, ASK_ALWAYS_NO };
enum { DEREF_UNSET, DEREF_NEVER, DEREF_CMDLINE, DEREF_ALWAYS };
enum { REFLINK_NEVER, REFLINK_AUTO, REFLINK_ALWAYS };
enum { SPARSE_AUTO, SPARSE_ALWAYS, SPARSE_NEVER };

typedef struct options {
    int jobs;
    uint64_t chunk;  /* 0: automatic */
    int interactive; /* ASK_* */
    bool force, update;
    bool keep_mode, keep_owner, keep_times;
    bool require_preserve; /* --preserve=LIST named them: failing to keep them is an error */
    bool verbose, quiet, verify, fsync, recursive;
    int deref;              /* DEREF_* */
    int reflink;            /* REFLINK_* */
    int sparse;             /* SPARSE_* */
    const char *target_dir; /* -t */
    bool no_target_dir;     /* -T */
    int progress;           /* -1 auto, 0 off, 1 on */
} options;

/* Per file, in shared memory: written by workers, read by the parent after the round. */
typedef struct file_slot {
    _Atomic uint64_t chunks_done;
    _Atomic int err; /* 0, an errno value, or ERR_*; the first failure wins */
    int op;          /* OP_*, valid once err != 0 */
    uint64_t at;     /* offset of the failure */
    int worker;      /* who failed (ERR_WORKER_DIED) */
    int worker_sig;  /* signal or exit status of a dead worker */
} file_slot;

typedef struct shared {
    _Atomic uint64_t next_chunk;
    _Atomic uint64_t bytes; /* progress of the current round */
    _Atomic uint32_t stop;  /* set by the parent: workers leave at their next step */
    uint32_t phase;
    _Atomic int64_t current[MAX_JOBS]; /* file each worker works on, -1 none */
    file_slot files[BATCH_FILES];
} shared;

/* One file to copy; lives in the parent's memory, which the workers see as a fork-time copy.
 * Messages always name src and dst as the user typed them (or as built from what was typed,
 * under -r), never real or tmp. */
typedef struct job {
    const char *src; /* as typed */
    char *dst;       /* as typed (or DIR/NAME) */
    char *real;      /* where the copy goes: dst, or the file a symlink dst points to */
    char *tmp;       /* temporary beside real, NULL when none exists */
    int sfd, tfd;
    bool nofollow; /* the source was found with lstat: open it with O_NOFOLLOW */
    struct stat sst;
    bool dst_existed;
    struct stat dst_st;
    uint64_t size, chunk, nchunks, base; /* base: the file's first global chunk number */
    bool active;                         /* still in the running (not failed, not skipped) */
    bool cloned;                         /* FICLONE made the copy: no copy round needed */
    bool holes;  /* fewer blocks than bytes: look for holes with SEEK_DATA/SEEK_HOLE */
    bool zeros;  /* turn all-zero blocks into holes (--sparse=always, or auto on a sparse source) */
    bool dense;  /* --sparse=never: write every byte, holes included */
    bool direct; /* verify reads the copy with O_DIRECT (else: fdatasync + FADV_DONTNEED) */
    unsigned blk;   /* block size of the copy: hole granularity */
    unsigned align; /* O_DIRECT alignment of the copy */
} job;

typedef struct item { /* one regular file found by the plan */
    char *src, *dst;
    bool nofollow;
} item;

/* main.c */
extern options opt;
extern shared *sh;
extern job *batch;
extern int nbatch;
extern uint64_t round_chunks;
extern int slow_ms;
extern volatile sig_atomic_t got_signal;
extern volatile sig_atomic_t got_winch;
extern const char *prog;
int64_t now_ns(void);

/* options.c */
void parse_options(int argc, char **argv);

/* ui.c */
void say_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void __attribute__((noreturn)) usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void usage(FILE *f);
const char *type_name(mode_t m);
bool ask_overwrite(const char *dst);
extern bool progress_on;
void progress_start(uint64_t total);
void progress_draw(const char *label);
void progress_end(const char *label);
void progress_clear(void);

/* plan.c */
extern item *items;
extern size_t nitems;
extern int plan_failed;
void plan(char **srcs, int nsrc, const char *dst, bool dst_is_dir);
void finish_dirs(void);
void plan_free(void);
char *path_join(const char *dir, const char *name);
const char *base_name(const char *path, char *out, size_t len);
char *temp_path(const char *dst);
int may_replace(const char *src, const struct stat *sst, const char *dst,
                const struct stat *dst_st);

/* file.c */
int prepare(job *j, const char *dst);
int finish(job *j);
void job_close(job *j);
void report_failure(job *j);
void prepare_verify(job *j);
void corrupt_for_test(void);

/* round.c */
void run_round(int phase);
void install_signals(void);

/* worker.c */
int worker_main(void *arg);

#endif
