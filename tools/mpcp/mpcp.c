/* mpcp.c - copy files with several worker processes: the seed's file copy, made real.
 *
 * The parent plans the work and never copies a byte itself. Every file is cut into chunks (by
 * default four per worker, at least 1 MiB); the chunks of all files of a batch form one numbered
 * list, and the workers (forked with mp_process) take the next chunk number from a counter in
 * anonymous shared memory until the list is exhausted. So one big file is split across the
 * workers, and many small files are copied side by side. Each worker copies the data segments of
 * its range (SEEK_DATA/SEEK_HOLE, so holes stay holes) with copy_file_range, or pread/pwrite where
 * the filesystem refuses it, and adds what it did to a shared byte counter that the parent turns
 * into a progress bar.
 *
 * Nothing is lost: every file is copied into a temporary file beside its destination (created
 * with O_EXCL, size set with ftruncate first) and renamed into place only when every chunk of it
 * was copied (and verified, with --verify). On any failure - an error in a worker, a worker that
 * died, SIGINT/SIGTERM/SIGHUP - the temporary is unlinked and an existing destination is left as
 * it was. Signal handlers only raise flags; all clean-up runs in the normal flow of the parent.
 *
 * With -r the parent first walks the trees: it creates the directories (mode 0700 until the end,
 * when they get their final mode and, with -p, times), copies symbolic links as links, and queues
 * the regular files, which then go through the workers like any other.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mproc/process.h"
#include "platform/platform.h"

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
#define STEP_BYTES        (8u << 20)  /* one copy_file_range call at most: progress, stop checks */
#define BUF_BYTES         (1u << 20)  /* pread/pwrite and verify buffers */
#define SLOW_STEP_BYTES   (64u << 10) /* MPCP_TEST_SLOW: small steps, a sleep after each */

/* Error codes a worker stores besides errno values. */
enum { ERR_MISMATCH = -1, ERR_SHRANK = -2, ERR_WORKER_DIED = -3 };
/* What failed, for the message. */
enum { OP_COPY = 1, OP_READ, OP_WRITE, OP_VERIFY_READ, OP_VERIFY_DST };
enum { PHASE_COPY = 0, PHASE_VERIFY = 1 };
enum { OVW_REPLACE, OVW_FORCE, OVW_NOCLOBBER };

typedef struct options {
    int jobs;
    uint64_t chunk; /* 0: automatic */
    int overwrite;  /* OVW_* */
    bool preserve, verbose, quiet, verify, recursive;
    int progress; /* -1 auto, 0 off, 1 on */
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

/* One file to copy; lives in the parent's memory, which the workers see as a fork-time copy. */
typedef struct job {
    const char *src;
    char *dst; /* final path */
    char *tmp; /* temporary beside dst, NULL when none exists */
    int sfd, tfd;
    struct stat sst;
    bool dst_existed;
    mode_t dst_mode;
    uint64_t size, chunk, nchunks, base; /* base: the file's first global chunk number */
    bool active;                         /* still in the running (not failed, not skipped) */
    bool sparse; /* fewer blocks than bytes: worth looking for holes (SEEK_HOLE is not free) */
} job;

typedef struct worker_arg {
    int idx;
} worker_arg;

static options opt = {.progress = -1};
static shared *sh;
static job *batch;
static int nbatch;
static uint64_t round_chunks;
static int slow_ms;
static volatile sig_atomic_t got_signal;
static const char *prog = "mpcp";

/* ---- messages -------------------------------------------------------------------------------- */

static bool progress_visible;

static void progress_clear(void)
{
    if (progress_visible) {
        fputs("\r\033[K", stderr);
        progress_visible = false;
    }
}

static void __attribute__((format(printf, 1, 2))) say_error(const char *fmt, ...)
{
    progress_clear();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: %s [OPTION]... SRC DST\n"
        "  or:  %s [OPTION]... SRC... DIRECTORY\n"
        "Copy regular files with several worker processes. One file is split by size across\n"
        "the workers; several files are copied side by side. Each file is written to a\n"
        "temporary file beside its destination and renamed into place only when the whole\n"
        "copy succeeded, so a failed or interrupted copy never leaves a partial file and\n"
        "never harms an existing destination. Holes of sparse files stay holes.\n"
        "\n"
        "Options:\n"
        "  -j, --jobs=N       worker processes (default: the number of usable CPUs)\n"
        "      --chunk=SIZE   bytes per work item, with K, M, G or T suffix (binary);\n"
        "                     default: file size / (4 N), at least 1M\n"
        "  -p, --preserve     keep mode, owner (when permitted) and access/modification times\n"
        "  -f, --force        replace an existing destination even when it is not writable\n"
        "  -n, --no-clobber   never replace an existing destination (skip it); the last of\n"
        "                     -f and -n wins\n"
        "  -v, --verbose      print 'SRC' -> 'DST' for each file copied\n"
        "  -q, --quiet        print errors only (no progress bar unless --progress)\n"
        "  -r, --recursive    copy directories and all they hold (also -R); symbolic links\n"
        "                     inside are copied as links, other special files refused\n"
        "      --verify       read source and copy back and compare them (checksums\n"
        "                     computed in parallel by the workers) before renaming\n"
        "      --progress     always draw the progress bar (bytes, rate, ETA) on stderr\n"
        "      --no-progress  never draw it (default: only when stdout and stderr are terminals)\n"
        "  -h, --help         show this help and exit\n"
        "  -V, --version      show the version and exit\n"
        "\n"
        "Regular files are copied; directories only with -r; FIFOs, devices and sockets are\n"
        "refused, as is copying a file onto itself. An existing destination is replaced by\n"
        "a new file (its mode is kept unless -p); a destination that is a symlink to a file\n"
        "is resolved and the file it points to is replaced.\n"
        "\n"
        "Exit status:\n"
        "  0    every file was copied (or skipped by -n)\n"
        "  1    at least one file failed (its message names the path and the cause)\n"
        "  2    usage error (bad option or argument)\n"
        "  130  interrupted by SIGINT (143 SIGTERM, 129 SIGHUP); no partial file is left\n",
        prog, prog);
}

static void __attribute__((noreturn)) usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
    va_end(ap);
    exit(EXIT_USAGE);
}

static const char *type_name(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

static void human(char *out, size_t len, double v)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* ---- progress -------------------------------------------------------------------------------- */

static bool progress_on;
static uint64_t progress_total;
static int64_t progress_start_ns;

static void progress_draw(const char *label)
{
    uint64_t done = atomic_load_explicit(&sh->bytes, memory_order_relaxed);
    if (done > progress_total) done = progress_total;
    double secs = (double)(mp__now_ns() - progress_start_ns) / 1e9;
    double rate = secs > 0 ? (double)done / secs : 0;
    char d[32], t[32], r[32], eta[32] = "--:--";
    human(d, sizeof d, (double)done);
    human(t, sizeof t, (double)progress_total);
    human(r, sizeof r, rate);
    if (rate > 0) {
        uint64_t left = (uint64_t)((double)(progress_total - done) / rate + 0.5);
        snprintf(eta, sizeof eta, "%" PRIu64 ":%02" PRIu64, left / 60, left % 60);
    }
    int pct = progress_total ? (int)(done * 100 / progress_total) : 100;
    char bar[21];
    int fill = pct / 5;
    for (int i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    fprintf(stderr, "\r%-6s [%s] %3d%%  %s / %s  %s/s  ETA %s\033[K", label, bar, pct, d, t, r,
            eta);
    fflush(stderr);
    progress_visible = true;
}

/* ---- workers --------------------------------------------------------------------------------- */

static void record_error(job *j, int idx, int err, int op, uint64_t at)
{
    file_slot *s = &sh->files[j - batch];
    int zero = 0;
    if (atomic_compare_exchange_strong(&s->err, &zero, err)) {
        s->op = op;
        s->at = at;
        s->worker = idx;
    }
}

static void slow_down(void)
{
    if (slow_ms > 0) {
        struct timespec ts = {slow_ms / 1000, (long)(slow_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

static bool stopping(const job *j)
{
    return atomic_load_explicit(&sh->stop, memory_order_relaxed) ||
           atomic_load_explicit(&sh->files[j - batch].err, memory_order_relaxed);
}

/* Copies the data segment [pos, end) of one file. Returns 0, 1 when told to stop, or -1 after
 * recording an error. */
static int copy_segment(job *j, int idx, uint64_t pos, uint64_t end, bool *use_cfr, char **buf)
{
    size_t step_max = slow_ms > 0 ? SLOW_STEP_BYTES : STEP_BYTES;
    while (pos < end) {
        if (stopping(j)) return 1;
        size_t step = end - pos < step_max ? (size_t)(end - pos) : step_max;
        ssize_t n;
        if (*use_cfr) {
            loff_t in = (loff_t)pos, out = (loff_t)pos;
            n = copy_file_range(j->sfd, &in, j->tfd, &out, step, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                    errno == ENOTSUP) {
                    *use_cfr = false; /* this filesystem pair wants the plain way */
                    continue;
                }
                record_error(j, idx, errno, OP_COPY, pos);
                return -1;
            }
            if (n == 0) { /* some filesystems answer 0 instead of an error: try the plain way */
                *use_cfr = false;
                continue;
            }
        } else {
            if (!*buf && !(*buf = malloc(BUF_BYTES))) {
                record_error(j, idx, ENOMEM, OP_COPY, pos);
                return -1;
            }
            if (step > BUF_BYTES) step = BUF_BYTES;
            n = pread(j->sfd, *buf, step, (off_t)pos);
            if (n < 0) {
                if (errno == EINTR) continue;
                record_error(j, idx, errno, OP_READ, pos);
                return -1;
            }
            if (n == 0) {
                record_error(j, idx, ERR_SHRANK, OP_READ, pos);
                return -1;
            }
            for (ssize_t w = 0; w < n;) {
                ssize_t m = pwrite(j->tfd, *buf + w, (size_t)(n - w), (off_t)pos + w);
                if (m < 0 && errno == EINTR) continue;
                if (m <= 0) {
                    record_error(j, idx, m < 0 ? errno : EIO, OP_WRITE, pos + (uint64_t)w);
                    return -1;
                }
                w += m;
            }
        }
        pos += (uint64_t)n;
        atomic_fetch_add_explicit(&sh->bytes, (uint64_t)n, memory_order_relaxed);
        slow_down();
    }
    return 0;
}

/* Copies [off, end) of one file, skipping its holes: the temporary was sized with ftruncate, so
 * a range never written stays a hole. */
static int copy_range(job *j, int idx, uint64_t off, uint64_t end, bool *use_cfr, char **buf)
{
    if (!j->sparse) return copy_segment(j, idx, off, end, use_cfr, buf);
    uint64_t pos = off;
    while (pos < end) {
        if (stopping(j)) return 1;
        off_t data = lseek(j->sfd, (off_t)pos, SEEK_DATA);
        off_t hole;
        if (data < 0) {
            if (errno == ENXIO)
                data = (off_t)end; /* only a hole from here to the end */
            else if (errno == EINVAL || errno == EOPNOTSUPP)
                data = (off_t)pos;
            else {
                record_error(j, idx, errno, OP_READ, pos);
                return -1;
            }
            hole = (off_t)end;
        } else {
            hole = lseek(j->sfd, data, SEEK_HOLE);
            if (hole < 0) hole = (off_t)end;
        }
        uint64_t seg = (uint64_t)data < end ? (uint64_t)data : end;
        uint64_t seg_end = (uint64_t)hole < end ? (uint64_t)hole : end;
        atomic_fetch_add_explicit(&sh->bytes, seg - pos, memory_order_relaxed); /* the hole */
        if (seg >= end) return 0;
        int r = copy_segment(j, idx, seg, seg_end, use_cfr, buf);
        if (r) return r;
        pos = seg_end;
    }
    return 0;
}

/* A fast 64-bit checksum (four independent multiply lanes, so it runs near memory speed). */
static uint64_t checksum(const unsigned char *p, size_t n, uint64_t h)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t l[4] = {h, h ^ 1, h ^ 2, h ^ 3};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int q = 0; q < 4; q++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * q, 8);
            l[q] = (l[q] ^ w) * k;
            l[q] ^= l[q] >> 29;
        }
    }
    uint64_t r = l[0] ^ (l[1] * 3) ^ (l[2] * 5) ^ (l[3] * 7);
    for (; i < n; i++)
        r = (r ^ p[i]) * 0x100000001B3ull;
    return r ^ n;
}

static ssize_t pread_full(int fd, char *b, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, b + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* The next offset >= pos where fd has data, or end when only a hole is left; pos itself when
 * the filesystem cannot tell (then everything counts as data). */
static uint64_t next_data(int fd, uint64_t pos, uint64_t end)
{
    off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
    if (d < 0) return errno == ENXIO ? end : pos;
    return (uint64_t)d < end ? (uint64_t)d : end;
}

static uint64_t next_hole(int fd, uint64_t pos, uint64_t end)
{
    off_t h = lseek(fd, (off_t)pos, SEEK_HOLE);
    if (h < 0) return end;
    return (uint64_t)h < end ? (uint64_t)h : end;
}

/* Reads [pos, end) of source and copy and compares their checksums block by block. */
static int verify_segment(job *j, int idx, uint64_t pos, uint64_t end, char *a, char *b)
{
    size_t step_max = slow_ms > 0 ? SLOW_STEP_BYTES : BUF_BYTES;
    while (pos < end) {
        if (stopping(j)) return 1;
        size_t len = end - pos < step_max ? (size_t)(end - pos) : step_max;
        ssize_t n = pread_full(j->sfd, a, len, pos);
        if (n != (ssize_t)len) {
            record_error(j, idx, n < 0 ? errno : ERR_SHRANK, OP_VERIFY_READ, pos);
            return -1;
        }
        ssize_t m = pread_full(j->tfd, b, len, pos);
        if (m != (ssize_t)len) {
            record_error(j, idx, m < 0 ? errno : EIO, OP_VERIFY_DST, pos);
            return -1;
        }
        if (checksum((unsigned char *)a, len, pos) != checksum((unsigned char *)b, len, pos)) {
            record_error(j, idx, ERR_MISMATCH, OP_VERIFY_DST, pos);
            return -1;
        }
        pos += len;
        atomic_fetch_add_explicit(&sh->bytes, len, memory_order_relaxed);
        slow_down();
    }
    return 0;
}

/* Compares [off, end) of source and copy. Where both are holes there is nothing to read (both
 * read as zeros); every stretch where either has data is read back from both and compared. */
static int verify_range(job *j, int idx, uint64_t off, uint64_t end, char **buf)
{
    if (!*buf && !(*buf = malloc(2 * (size_t)BUF_BYTES))) {
        record_error(j, idx, ENOMEM, OP_VERIFY_READ, off);
        return -1;
    }
    if (!j->sparse) return verify_segment(j, idx, off, end, *buf, *buf + BUF_BYTES);
    uint64_t pos = off;
    while (pos < end) {
        uint64_t ds = next_data(j->sfd, pos, end), dd = next_data(j->tfd, pos, end);
        uint64_t from = ds < dd ? ds : dd;
        atomic_fetch_add_explicit(&sh->bytes, from - pos, memory_order_relaxed);
        if (from >= end) break;
        uint64_t hs = next_hole(j->sfd, from, end), hd = next_hole(j->tfd, from, end);
        uint64_t to = hs > hd ? hs : hd;
        if (to <= from) to = end; /* cannot happen with a sane filesystem; never loop forever */
        int r = verify_segment(j, idx, from, to, *buf, *buf + BUF_BYTES);
        if (r) return r;
        pos = to;
    }
    return 0;
}

/* The file that global chunk number c belongs to (binary search over the batch's bases). */
static job *chunk_owner(uint64_t c)
{
    int lo = 0, hi = nbatch - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (batch[mid].base <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return &batch[lo];
}

static int worker_main(void *arg)
{
    int idx = ((worker_arg *)arg)->idx;
    bool use_cfr = true;
    const job *last = NULL;
    char *buf = NULL;
    while (!atomic_load(&sh->stop)) {
        uint64_t c = atomic_fetch_add(&sh->next_chunk, 1);
        if (c >= round_chunks) break;
        job *j = chunk_owner(c);
        if (!j->active || c >= j->base + j->nchunks) continue; /* empty or failed file */
        if (atomic_load(&sh->files[j - batch].err)) continue;  /* failed meanwhile */
        atomic_store(&sh->current[idx], (int64_t)(j - batch));
        if (j != last) use_cfr = true; /* another file may sit on a filesystem that can */
        last = j;
        uint64_t off = (c - j->base) * j->chunk;
        uint64_t end = off + j->chunk < j->size ? off + j->chunk : j->size;
        int r = sh->phase == PHASE_COPY ? copy_range(j, idx, off, end, &use_cfr, &buf)
                                        : verify_range(j, idx, off, end, &buf);
        if (r == 0) atomic_fetch_add(&sh->files[j - batch].chunks_done, 1);
        atomic_store(&sh->current[idx], -1);
    }
    free(buf);
    return 0;
}

/* ---- the parent: rounds of workers ----------------------------------------------------------- */

static void on_signal(int sig)
{
    got_signal = sig;
    if (sh) atomic_store(&sh->stop, 1); /* lock-free atomic: async-signal-safe */
}

static void report_worker_death(int w, pid_t pid, int code)
{
    int64_t f = atomic_load(&sh->current[w]);
    if (f >= 0 && f < nbatch) {
        file_slot *s = &sh->files[f];
        int zero = 0;
        if (atomic_compare_exchange_strong(&s->err, &zero, ERR_WORKER_DIED)) {
            s->op = OP_COPY;
            s->worker = (int)pid;
            s->worker_sig = code;
        }
    } else if (!got_signal) {
        /* It died between chunks; any chunk it had claimed stays uncounted, so its file fails. */
        if (code < 0)
            say_error("worker %d (pid %d) was killed by signal %d (%s)", w, (int)pid, -code,
                      strsignal(-code));
        else
            say_error("worker %d (pid %d) exited with status %d", w, (int)pid, code);
    }
}

/* Runs one round (copy or verify) over the active files of the batch with up to opt.jobs
 * workers, drawing progress while it waits. */
static void run_round(int phase)
{
    uint64_t chunks = 0, bytes = 0;
    for (int i = 0; i < nbatch; i++) {
        job *j = &batch[i];
        j->base = chunks;
        if (!j->active) continue;
        chunks += j->nchunks;
        bytes += j->size;
        atomic_store(&sh->files[i].chunks_done, 0);
    }
    if (chunks == 0) return;
    round_chunks = chunks;
    sh->phase = (uint32_t)phase;
    atomic_store(&sh->next_chunk, 0);
    atomic_store(&sh->bytes, 0);
    for (int w = 0; w < MAX_JOBS; w++)
        atomic_store(&sh->current[w], -1);
    progress_total = bytes;
    progress_start_ns = mp__now_ns();

    int n = opt.jobs < (int64_t)chunks ? opt.jobs : (int)chunks;
    mp_process *procs[MAX_JOBS] = {0};
    worker_arg args[MAX_JOBS];
    bool alive[MAX_JOBS] = {0};
    int running = 0;
    fflush(NULL);
    for (int w = 0; w < n && !got_signal; w++) {
        args[w].idx = w;
        char name[32];
        snprintf(name, sizeof name, "mpcp-worker-%d", w);
        int r = mp_process_new(&procs[w], name, worker_main, &args[w]);
        if (r == 0) r = mp_process_start(procs[w]);
        if (r < 0) {
            say_error("cannot start worker %d: %s", w, strerror(-r));
            mp_process_free(&procs[w]);
            if (w == 0) { /* nobody to do the work: fail every file of the round */
                for (int i = 0; i < nbatch; i++)
                    if (batch[i].active) record_error(&batch[i], 0, -r, OP_COPY, 0);
            }
            break;
        }
        alive[w] = true;
        running++;
    }

    const char *label = phase == PHASE_COPY ? "copy" : "verify";
    int64_t kill_at = -1;
    while (running > 0) {
        struct pollfd pfd[MAX_JOBS];
        int map[MAX_JOBS], np = 0;
        for (int w = 0; w < n; w++) {
            if (!alive[w]) continue;
            pfd[np].fd = mp_process_sentinel(procs[w]);
            pfd[np].events = POLLIN;
            map[np++] = w;
        }
        if (progress_on) progress_draw(label);
        poll(pfd, (nfds_t)np, progress_on ? 200 : 1000); /* EINTR: re-check below */
        for (int k = 0; k < np; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int w = map[k], code = 0;
            mp_process_join(procs[w], MP_FOREVER);
            if (mp_process_exitcode(procs[w], &code) == 0 && code != 0)
                report_worker_death(w, mp_process_pid(procs[w]), code);
            alive[w] = false;
            running--;
        }
        if (got_signal) {
            atomic_store(&sh->stop, 1);
            if (kill_at < 0)
                kill_at = mp__now_ns() + 3000000000LL;
            else if (mp__now_ns() > kill_at) /* a worker stuck in a syscall: don't wait forever */
                for (int w = 0; w < n; w++)
                    if (alive[w]) mp_process_kill(procs[w]);
        }
    }
    for (int w = 0; w < n; w++)
        mp_process_free(&procs[w]);
    if (progress_on) {
        progress_draw(label);
        fputc('\n', stderr);
        progress_visible = false;
    }
}

/* ---- the parent: planning and finishing files ------------------------------------------------ */

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

/* The last component of a path, ignoring trailing slashes (into a buffer). */
static const char *base_name(const char *path, char *out, size_t len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/')
        s--;
    size_t l = n - s < len - 1 ? n - s : len - 1;
    memcpy(out, path + s, l);
    out[l] = 0;
    return out;
}

/* A fresh name for a temporary beside dst: ".NAME.mpcp-PID-N-RAND" in dst's directory. */
static char *temp_path(const char *dst)
{
    static unsigned counter;
    char base[128];
    base_name(dst, base, 100);
    const char *slash = strrchr(dst, '/');
    size_t dirlen = slash ? (size_t)(slash - dst + 1) : 0;
    char name[200];
    unsigned rnd = (unsigned)(mp__now_ns() ^ ((int64_t)getpid() << 16)) * 2654435761u;
    snprintf(name, sizeof name, ".%s.mpcp-%d-%u-%08x", base, (int)getpid(), counter++, rnd);
    char *tmp = malloc(dirlen + strlen(name) + 1);
    if (!tmp) return NULL;
    memcpy(tmp, dst, dirlen);
    strcpy(tmp + dirlen, name);
    return tmp;
}

/* Creates the temporary file beside j->dst, O_EXCL, mode 0600 until the final mode is set. */
static int make_temp(job *j)
{
    for (int tries = 0; tries < 100; tries++) {
        char *tmp = temp_path(j->dst);
        if (!tmp) return -ENOMEM;
        int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd >= 0) {
            j->tmp = tmp;
            j->tfd = fd;
            return 0;
        }
        int e = errno;
        free(tmp);
        if (e != EEXIST) return -e;
    }
    return -EEXIST;
}

static void drop_temp(job *j)
{
    if (j->tfd >= 0) close(j->tfd);
    j->tfd = -1;
    if (j->tmp) unlink(j->tmp);
    free(j->tmp);
    j->tmp = NULL;
}

static void job_close(job *j)
{
    drop_temp(j);
    if (j->sfd >= 0) close(j->sfd);
    j->sfd = -1;
    free(j->dst);
    j->dst = NULL;
}

/* Checks and opens one source, resolves its destination and creates the temporary.
 * Returns 1 when the file is ready to copy, 0 when it was skipped (-n), -1 after an error. */
static int prepare(job *j, const char *dst)
{
    struct stat st;
    j->sfd = j->tfd = -1;
    if (stat(j->src, &st) < 0) {
        say_error("cannot stat '%s': %s", j->src, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) { /* refuse before open: opening a FIFO or a device has effects */
        if (S_ISDIR(st.st_mode))
            say_error("'%s' is a directory: not copied (-r copies directories)", j->src);
        else
            say_error("'%s' is %s: not copied (mpcp copies regular files only)", j->src,
                      type_name(st.st_mode));
        return -1;
    }
    j->sfd = open(j->src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (j->sfd < 0) {
        say_error("cannot open '%s': %s", j->src, strerror(errno));
        return -1;
    }
    if (fstat(j->sfd, &j->sst) < 0 || !S_ISREG(j->sst.st_mode)) {
        say_error("'%s' changed while being opened: not copied", j->src);
        return -1;
    }
    fcntl(j->sfd, F_SETFL, 0);
    j->size = (uint64_t)j->sst.st_size;
    /* Scanning for holes costs time in proportion to the data (the kernel walks the page cache
     * up to the next hole), so do it only for files that have fewer blocks than bytes, as cp
     * does. */
    j->sparse = (uint64_t)j->sst.st_blocks * 512 < j->size;

    j->dst = strdup(dst);
    if (!j->dst) {
        say_error("out of memory");
        return -1;
    }
    struct stat dl, ds;
    if (lstat(j->dst, &dl) == 0) {
        if (S_ISLNK(dl.st_mode)) { /* write where the link points, as cp does */
            if (stat(j->dst, &ds) < 0) {
                say_error("not writing through dangling symlink '%s'", j->dst);
                return -1;
            }
            char *real = realpath(j->dst, NULL);
            if (!real) {
                say_error("cannot resolve '%s': %s", j->dst, strerror(errno));
                return -1;
            }
            free(j->dst);
            j->dst = real;
        } else
            ds = dl;
        if (ds.st_dev == j->sst.st_dev && ds.st_ino == j->sst.st_ino) {
            say_error("'%s' and '%s' are the same file: not copied", j->src, j->dst);
            return -1;
        }
        if (S_ISDIR(ds.st_mode)) {
            say_error("cannot overwrite directory '%s' with non-directory '%s'", j->dst, j->src);
            return -1;
        }
        if (opt.overwrite == OVW_NOCLOBBER) {
            if (opt.verbose) printf("skipped '%s' (exists)\n", j->dst);
            return 0;
        }
        if (opt.overwrite != OVW_FORCE && access(j->dst, W_OK) < 0 && errno == EACCES) {
            say_error("cannot overwrite '%s': %s (-f replaces it)", j->dst, strerror(EACCES));
            return -1;
        }
        j->dst_existed = true;
        j->dst_mode = ds.st_mode;
    } else if (errno != ENOENT) {
        say_error("cannot stat '%s': %s", j->dst, strerror(errno));
        return -1;
    }
    for (job *k = batch; k < j; k++) { /* two sources, one destination: the first one wins */
        if (k->active && !strcmp(k->dst, j->dst)) {
            say_error("will not overwrite just-created '%s' with '%s'", j->dst, j->src);
            return -1;
        }
    }
    int r = make_temp(j);
    if (r < 0) {
        say_error("cannot create a temporary file beside '%s': %s", j->dst, strerror(-r));
        return -1;
    }
    if (ftruncate(j->tfd, (off_t)j->size) < 0) {
        say_error("cannot allocate %" PRIu64 " bytes for '%s': %s", j->size, j->dst,
                  strerror(errno));
        return -1;
    }
    uint64_t chunk = opt.chunk;
    if (!chunk) {
        uint64_t parts = (uint64_t)opt.jobs * CHUNKS_PER_WORKER;
        chunk = (j->size + parts - 1) / parts;
        chunk = (chunk + CHUNK_ALIGN - 1) / CHUNK_ALIGN * CHUNK_ALIGN;
        if (chunk < MIN_AUTO_CHUNK) chunk = MIN_AUTO_CHUNK;
    }
    j->chunk = chunk;
    j->nchunks = (j->size + chunk - 1) / chunk;
    j->active = true;
    return 1;
}

/* ---- planning: operands and directory trees (-r) --------------------------------------------- */

typedef struct item {
    char *src, *dst;
} item;
typedef struct dir_item {
    char *path;
    struct stat st; /* of the source directory */
    bool created;
} dir_item;

static item *items;
static size_t nitems, items_cap;
static dir_item *dirs;
static size_t ndirs, dirs_cap;
static int plan_failed;

static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return true;
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

/* Queues one regular file; takes ownership of both strings. */
static void add_item(char *src, char *dst)
{
    if (!src || !dst || !grow((void **)&items, &items_cap, nitems, sizeof(item))) {
        free(src);
        free(dst);
        say_error("out of memory");
        plan_failed++;
        return;
    }
    items[nitems++] = (item){src, dst};
}

/* A symbolic link inside a tree is copied as a link (as cp -r does), made under a temporary
 * name and renamed into place. */
static void copy_symlink(const char *src, const char *dst)
{
    char target[PATH_MAX];
    ssize_t n = readlink(src, target, sizeof target - 1);
    if (n < 0) {
        say_error("cannot read symbolic link '%s': %s", src, strerror(errno));
        plan_failed++;
        return;
    }
    target[n] = 0;
    struct stat st;
    if (lstat(dst, &st) == 0) {
        if (opt.overwrite == OVW_NOCLOBBER) {
            if (opt.verbose) printf("skipped '%s' (exists)\n", dst);
            return;
        }
        if (S_ISDIR(st.st_mode)) {
            say_error("cannot overwrite directory '%s' with symbolic link '%s'", dst, src);
            plan_failed++;
            return;
        }
    }
    char *tmp = NULL;
    int r = -1, e = ENOMEM;
    for (int tries = 0; tries < 100 && r < 0; tries++) {
        free(tmp);
        if (!(tmp = temp_path(dst))) break;
        r = symlink(target, tmp);
        e = errno;
        if (r < 0 && e != EEXIST) break;
    }
    if (r == 0) {
        r = opt.overwrite == OVW_NOCLOBBER
                ? renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE)
                : rename(tmp, dst);
        e = errno;
        if (r < 0) unlink(tmp);
    }
    if (r < 0) {
        say_error("cannot create symbolic link '%s': %s", dst, strerror(e));
        plan_failed++;
    } else {
        struct stat ls;
        if (opt.preserve && lstat(src, &ls) == 0) { /* best effort, as cp -p on links */
            struct timespec ts[2] = {ls.st_atim, ls.st_mtim};
            if (lchown(dst, ls.st_uid, ls.st_gid) < 0 && errno != EPERM)
                say_error("cannot keep the owner of '%s': %s", dst, strerror(errno));
            utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
        }
        if (opt.verbose) printf("'%s' -> '%s'\n", src, dst);
    }
    free(tmp);
}

/* Creates dst (or reuses an existing directory there, as cp -r does) and queues everything
 * under src: regular files for the workers, links at once, subdirectories recursively. Other
 * file types are refused. */
static void walk(const char *src, const char *dst, const struct stat *sst)
{
    if (got_signal) return;
    bool created = mkdir(dst, 0700) == 0;
    if (!created) {
        int e = errno;
        struct stat ds;
        if (e != EEXIST) {
            say_error("cannot create directory '%s': %s", dst, strerror(e));
            plan_failed++;
            return;
        }
        if (stat(dst, &ds) < 0 || !S_ISDIR(ds.st_mode)) {
            say_error("cannot overwrite non-directory '%s' with directory '%s'", dst, src);
            plan_failed++;
            return;
        }
    }
    if (grow((void **)&dirs, &dirs_cap, ndirs, sizeof(dir_item)) &&
        (dirs[ndirs].path = strdup(dst))) {
        dirs[ndirs].st = *sst;
        dirs[ndirs++].created = created;
    }
    DIR *d = opendir(src);
    if (!d) {
        say_error("cannot open directory '%s': %s", src, strerror(errno));
        plan_failed++;
        return;
    }
    struct dirent *e;
    while (!got_signal && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *s = path_join(src, e->d_name), *t = path_join(dst, e->d_name);
        struct stat st;
        if (!s || !t) {
            say_error("out of memory");
            plan_failed++;
        } else if (lstat(s, &st) < 0) {
            say_error("cannot stat '%s': %s", s, strerror(errno));
            plan_failed++;
        } else if (S_ISREG(st.st_mode)) {
            add_item(s, t);
            continue;
        } else if (S_ISDIR(st.st_mode)) {
            walk(s, t, &st);
        } else if (S_ISLNK(st.st_mode)) {
            copy_symlink(s, t);
        } else {
            say_error("'%s' is %s: not copied (mpcp copies regular files only)", s,
                      type_name(st.st_mode));
            plan_failed++;
        }
        free(s);
        free(t);
    }
    closedir(d);
}

/* True when the path dst (which may not exist yet) is the directory src or lies inside it. */
static bool inside(const char *src, const char *dst)
{
    char *rs = realpath(src, NULL), *parent = strdup(dst), base[NAME_MAX + 1];
    bool in = false;
    if (rs && parent) {
        base_name(dst, base, sizeof base);
        size_t n = strlen(parent);
        while (n > 1 && parent[n - 1] == '/')
            parent[--n] = 0;
        char *slash = strrchr(parent, '/');
        if (!slash)
            strcpy(parent, ".");
        else if (slash == parent)
            parent[1] = 0;
        else
            *slash = 0;
        char *rp = realpath(parent, NULL);
        if (rp) {
            char *full = path_join(rp, base);
            size_t l = strlen(rs);
            in = full && !strncmp(full, rs, l) && (full[l] == '/' || full[l] == 0 || l == 1);
            free(full);
            free(rp);
        }
    }
    free(rs);
    free(parent);
    return in;
}

/* Directories get their final mode (and with -p owner and times) after their files are in,
 * deepest first, so that writing into them does not change the times set. */
static void finish_dirs(void)
{
    mode_t um = umask(0);
    umask(um);
    for (size_t i = ndirs; i-- > 0;) {
        dir_item *d = &dirs[i];
        int r = 0;
        if (opt.preserve) {
            if (lchown(d->path, d->st.st_uid, d->st.st_gid) < 0 && errno != EPERM) r = -1;
            if (r == 0 && chmod(d->path, d->st.st_mode & 07777) < 0) r = -1;
            struct timespec ts[2] = {d->st.st_atim, d->st.st_mtim};
            if (r == 0 && utimensat(AT_FDCWD, d->path, ts, 0) < 0) r = -1;
        } else if (d->created) {
            r = chmod(d->path, d->st.st_mode & 0777 & ~um);
        }
        if (r < 0) {
            say_error("cannot set the attributes of directory '%s': %s", d->path, strerror(errno));
            plan_failed++;
        }
        free(d->path);
    }
    ndirs = 0;
}

static void plan(char **srcs, int nsrc, const char *dst, bool dst_is_dir)
{
    for (int i = 0; i < nsrc && !got_signal; i++) {
        char base[NAME_MAX + 1];
        char *t = dst_is_dir ? path_join(dst, base_name(srcs[i], base, sizeof base)) : strdup(dst);
        struct stat st;
        if (opt.recursive && t && stat(srcs[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if (inside(srcs[i], t)) {
                say_error("cannot copy directory '%s' into itself ('%s')", srcs[i], t);
                plan_failed++;
            } else {
                walk(srcs[i], t, &st);
            }
            free(t);
        } else {
            add_item(strdup(srcs[i]), t);
        }
    }
}

static void report_failure(job *j)
{
    file_slot *s = &sh->files[j - batch];
    int e = atomic_load(&s->err);
    if (e == ERR_WORKER_DIED) {
        int c = s->worker_sig;
        if (c < 0)
            say_error("copying '%s' to '%s': worker (pid %d) was killed by signal %d (%s)", j->src,
                      j->dst, s->worker, -c, strsignal(-c));
        else
            say_error("copying '%s' to '%s': worker (pid %d) exited with status %d", j->src, j->dst,
                      s->worker, c);
    } else if (e == ERR_MISMATCH) {
        say_error("verification failed: '%s' differs from '%s' near byte %" PRIu64, j->dst, j->src,
                  s->at);
    } else if (e == ERR_SHRANK) {
        say_error("'%s' shrank while being copied (at byte %" PRIu64 ")", j->src, s->at);
    } else if (e > 0) {
        const char *what = s->op == OP_READ          ? "reading '%s'"
                           : s->op == OP_WRITE       ? "writing '%s'"
                           : s->op == OP_VERIFY_READ ? "verifying: reading '%s'"
                           : s->op == OP_VERIFY_DST  ? "verifying: reading back '%s'"
                                                     : "copying '%s' to '%s'";
        const char *a = s->op == OP_READ || s->op == OP_VERIFY_READ ? j->src : j->dst;
        progress_clear();
        fprintf(stderr, "%s: ", prog);
        if (s->op == OP_COPY || s->op == 0)
            fprintf(stderr, what, j->src, j->dst);
        else
            fprintf(stderr, what, a);
        fprintf(stderr, " (at byte %" PRIu64 "): %s\n", s->at, strerror(e));
    } else {
        say_error("copying '%s' to '%s': incomplete (a worker died)", j->src, j->dst);
    }
}

/* After the rounds: a file whose chunks were all done gets its metadata and is renamed into
 * place. Returns 1 copied, 0 skipped, -1 failed. */
static int finish(job *j)
{
    file_slot *s = &sh->files[j - batch];
    if (atomic_load(&s->err) || atomic_load(&s->chunks_done) != j->nchunks) {
        report_failure(j);
        return -1;
    }
    if (opt.preserve) {
        /* chown first: it clears set-id bits that the chmod then restores. Not being allowed to
         * give the file away is not an error (cp -p behaves the same). */
        if (fchown(j->tfd, j->sst.st_uid, j->sst.st_gid) < 0 && errno != EPERM)
            say_error("cannot keep the owner of '%s': %s", j->dst, strerror(errno));
        if (fchmod(j->tfd, j->sst.st_mode & 07777) < 0) {
            say_error("cannot set the mode of '%s': %s", j->dst, strerror(errno));
            return -1;
        }
        struct timespec ts[2] = {j->sst.st_atim, j->sst.st_mtim};
        if (futimens(j->tfd, ts) < 0) {
            say_error("cannot set the times of '%s': %s", j->dst, strerror(errno));
            return -1;
        }
    } else {
        mode_t um = umask(0);
        umask(um);
        mode_t m = j->dst_existed ? j->dst_mode & 07777 : j->sst.st_mode & 0777 & ~um;
        if (fchmod(j->tfd, m) < 0) {
            say_error("cannot set the mode of '%s': %s", j->dst, strerror(errno));
            return -1;
        }
    }
    if (got_signal) return -1;
    int r;
    if (opt.overwrite == OVW_NOCLOBBER) {
        r = renameat2(AT_FDCWD, j->tmp, AT_FDCWD, j->dst, RENAME_NOREPLACE);
        struct stat st;
        if (r < 0 && errno == EINVAL) /* no RENAME_NOREPLACE here: a narrow race is the best */
            r = lstat(j->dst, &st) == 0 ? (errno = EEXIST, -1) : rename(j->tmp, j->dst);
        if (r < 0 && errno == EEXIST) { /* it appeared while we copied: still never replace it */
            if (opt.verbose) printf("skipped '%s' (exists)\n", j->dst);
            return 0;
        }
    } else {
        r = rename(j->tmp, j->dst);
    }
    if (r < 0) {
        say_error("cannot rename '%s' to '%s': %s", j->tmp, j->dst, strerror(errno));
        return -1;
    }
    free(j->tmp);
    j->tmp = NULL; /* now it is the destination: job_close must not unlink it */
    if (opt.verbose) {
        progress_clear();
        printf("'%s' -> '%s'\n", j->src, j->dst);
    }
    return 1;
}

/* Test hook (MPCP_TEST_CORRUPT=1): flip one byte of every copy between copy and verify. */
static void corrupt_for_test(void)
{
    for (int i = 0; i < nbatch; i++) {
        job *j = &batch[i];
        if (!j->active || !j->size) continue;
        unsigned char c;
        off_t at = (off_t)(j->size / 2);
        if (pread(j->tfd, &c, 1, at) == 1) {
            c ^= 0x5a;
            if (pwrite(j->tfd, &c, 1, at) != 1) say_error("test hook: cannot corrupt '%s'", j->tmp);
        }
    }
}

/* ---- options --------------------------------------------------------------------------------- */

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && (*end == 'i' || *end == 'I')) end++;
    if (shift && (*end == 'b' || *end == 'B')) end++;
    if (!shift && (*end == 'b' || *end == 'B')) end++;
    if (*end || v == 0 || v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

static void parse_options(int argc, char **argv)
{
    enum { O_CHUNK = 256, O_VERIFY, O_PROGRESS, O_NO_PROGRESS };
    static const struct option longopts[] = {{"jobs", required_argument, NULL, 'j'},
                                             {"chunk", required_argument, NULL, O_CHUNK},
                                             {"preserve", no_argument, NULL, 'p'},
                                             {"force", no_argument, NULL, 'f'},
                                             {"no-clobber", no_argument, NULL, 'n'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"verify", no_argument, NULL, O_VERIFY},
                                             {"progress", no_argument, NULL, O_PROGRESS},
                                             {"no-progress", no_argument, NULL, O_NO_PROGRESS},
                                             {"recursive", no_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":j:pfnvqrRhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > MAX_JOBS)
                usage_error("invalid number of jobs '%s' (1..%d)", optarg, MAX_JOBS);
            opt.jobs = (int)v;
            break;
        }
        case O_CHUNK:
            if (!parse_size(optarg, &opt.chunk))
                usage_error("invalid chunk size '%s' (a positive number, K/M/G/T suffix)", optarg);
            break;
        case 'p':
            opt.preserve = true;
            break;
        case 'f':
            opt.overwrite = OVW_FORCE;
            break;
        case 'n':
            opt.overwrite = OVW_NOCLOBBER;
            break;
        case 'v':
            opt.verbose = true;
            break;
        case 'q':
            opt.quiet = true;
            break;
        case O_VERIFY:
            opt.verify = true;
            break;
        case O_PROGRESS:
            opt.progress = 1;
            break;
        case O_NO_PROGRESS:
            opt.progress = 0;
            break;
        case 'r':
        case 'R':
            opt.recursive = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        case 'V':
            printf("mpcp (mproc) %s\n", MPROC_TOOL_VERSION);
            exit(EXIT_OK);
        case ':':
            usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            if (optopt) usage_error("invalid option -- '%c'", optopt);
            usage_error("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind < 2) {
        if (argc - optind == 1)
            usage_error("missing destination file operand after '%s'", argv[optind]);
        usage_error("missing file operand");
    }
    if (!opt.jobs) opt.jobs = mp_cpu_count();
    if (opt.jobs > MAX_JOBS) opt.jobs = MAX_JOBS;
    /* The bar is drawn on stderr, but only for a person watching: none when either stream is
     * redirected, so a pipeline or a log never gets one. */
    if (opt.progress < 0)
        opt.progress = !opt.quiet && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
    if (opt.quiet) opt.verbose = false;
    progress_on = opt.progress;
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A file size limit must surface as EFBIG with a message, not kill us (workers inherit it). */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    const char *env = getenv("MPCP_TEST_SLOW");
    slow_ms = env ? atoi(env) : 0;
    bool corrupt = getenv("MPCP_TEST_CORRUPT") != NULL;

    int nsrc = argc - optind - 1;
    const char *dst = argv[argc - 1];
    struct stat dst_st;
    bool dst_is_dir = stat(dst, &dst_st) == 0 && S_ISDIR(dst_st.st_mode);
    if (nsrc > 1 && !dst_is_dir) {
        say_error("target '%s' is not a directory%s", dst,
                  access(dst, F_OK) < 0 ? " (it does not exist)" : "");
        return EXIT_FAILED;
    }
    if (!dst_is_dir && dst[strlen(dst) - 1] == '/') {
        say_error("cannot create '%s': %s", dst, strerror(ENOTDIR));
        return EXIT_FAILED;
    }

    void *mem;
    int r = mp__shm_map_anon(sizeof(shared), &mem);
    if (r < 0) {
        say_error("cannot map shared memory: %s", strerror(-r));
        return EXIT_FAILED;
    }
    sh = mem;
    install_signals();
    batch = calloc(BATCH_FILES, sizeof(job));
    if (!batch) {
        say_error("out of memory");
        return EXIT_FAILED;
    }

    plan(argv + optind, nsrc, dst, dst_is_dir);
    int failed = plan_failed;
    size_t n = nitems;
    for (size_t first = 0; first < n && !got_signal; first += BATCH_FILES) {
        nbatch = n - first < BATCH_FILES ? (int)(n - first) : BATCH_FILES;
        memset(batch, 0, (size_t)nbatch * sizeof(job));
        for (int i = 0; i < nbatch; i++) {
            memset(&sh->files[i], 0, sizeof(file_slot));
            batch[i].src = items[first + i].src;
            batch[i].sfd = batch[i].tfd = -1;
        }
        for (int i = 0; i < nbatch && !got_signal; i++)
            if (prepare(&batch[i], items[first + i].dst) < 0) failed++;
        if (!got_signal) run_round(PHASE_COPY);
        if (opt.verify && !got_signal) {
            for (int i = 0; i < nbatch; i++) /* verify only the copies that are whole */
                if (batch[i].active &&
                    (atomic_load(&sh->files[i].err) ||
                     atomic_load(&sh->files[i].chunks_done) != batch[i].nchunks)) {
                    report_failure(&batch[i]);
                    batch[i].active = false;
                    failed++;
                }
            if (corrupt) corrupt_for_test();
            run_round(PHASE_VERIFY);
        }
        for (int i = 0; i < nbatch; i++) {
            job *j = &batch[i];
            if (j->active && !got_signal && finish(j) < 0) failed++;
            job_close(j); /* unlinks the temporary of anything not renamed */
        }
    }
    plan_failed = 0;
    finish_dirs(); /* also after a signal: directories made 0700 get their mode */
    failed += plan_failed;
    for (size_t i = 0; i < nitems; i++) {
        free(items[i].src);
        free(items[i].dst);
    }
    free(items);
    free(dirs);
    free(batch);
    progress_clear();
    if (got_signal) {
        say_error("interrupted by signal %d (%s): no partial file left", (int)got_signal,
                  strsignal(got_signal));
        return 128 + got_signal;
    }
    return failed ? EXIT_FAILED : EXIT_OK;
}
