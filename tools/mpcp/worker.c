/* SPDX-License-Identifier: MIT */
/* worker.c - the worker processes. Each takes the next chunk number from a counter in shared
 * memory until the round's list is exhausted, and copies (or verifies) that byte range of its
 * file: data segments only when the source has holes (SEEK_DATA/SEEK_HOLE), with copy_file_range
 * or pread/pwrite. What a worker did goes into shared counters; a failure is recorded once per
 * file (the first wins) and makes the other workers leave that file alone.
 *
 * Verification compares bytes, never checksums: the source is read normally, the copy is read
 * back from the storage - with O_DIRECT where the filesystem allows it, else after fdatasync and
 * POSIX_FADV_DONTNEED have emptied the page cache of that range - and the two buffers are
 * compared with memcmp. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpcp.h"

typedef struct wstate {
    int idx;
    bool use_cfr;
    char *buf;         /* BUF_BYTES: copy buffer, verify's source buffer */
    char *dbuf;        /* verify: the copy, aligned for O_DIRECT, BUF_BYTES + 2 DIRECT_MAX_ALIGN */
    const job *cached; /* the file whose copy rfd reads through the cache */
    const job *synced; /* the file last flushed with fdatasync (no writes follow the copy) */
    int rfd;           /* that fd (when O_DIRECT reads failed on the shared one) */
} wstate;

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

static bool all_zero(const char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

static int pwrite_full(job *j, int idx, const char *p, size_t n, uint64_t pos)
{
    for (size_t w = 0; w < n;) {
        ssize_t m = pwrite(j->tfd, p + w, n - w, (off_t)(pos + w));
        if (m < 0 && errno == EINTR) continue;
        if (m <= 0) {
            record_error(j, idx, m < 0 ? errno : EIO, OP_WRITE, pos + w);
            return -1;
        }
        w += (size_t)m;
    }
    return 0;
}

/* Writes n bytes read from pos. With j->zeros, blocks (aligned in the file) that are all zero
 * are not written: the temporary was sized with ftruncate, so they stay holes. */
static int put(job *j, int idx, const char *p, size_t n, uint64_t pos)
{
    if (!j->zeros) return pwrite_full(j, idx, p, n, pos);
    size_t run = 0, i = 0; /* [run, i): data not yet written */
    while (i < n) {
        uint64_t at = pos + i;
        size_t len = (size_t)(j->blk - at % j->blk);
        if (len > n - i) len = n - i;
        if (all_zero(p + i, len)) {
            if (i > run && pwrite_full(j, idx, p + run, i - run, pos + run) < 0) return -1;
            run = i + len;
        }
        i += len;
    }
    return n > run ? pwrite_full(j, idx, p + run, n - run, pos + run) : 0;
}

/* Copies [pos, end) of one file. Returns 0, 1 when told to stop, or -1 after recording an
 * error. */
static int copy_segment(job *j, wstate *w, uint64_t pos, uint64_t end)
{
    size_t step_max = slow_ms > 0 ? SLOW_STEP_BYTES : STEP_BYTES;
    while (pos < end) {
        if (stopping(j)) return 1;
        size_t step = end - pos < step_max ? (size_t)(end - pos) : step_max;
        ssize_t n;
        if (w->use_cfr) {
            loff_t in = (loff_t)pos, out = (loff_t)pos;
            n = copy_file_range(j->sfd, &in, j->tfd, &out, step, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                    errno == ENOTSUP) {
                    w->use_cfr = false; /* this filesystem pair wants the plain way */
                    continue;
                }
                record_error(j, w->idx, errno, OP_COPY, pos);
                return -1;
            }
            if (n == 0) { /* some filesystems answer 0 instead of an error: try the plain way */
                w->use_cfr = false;
                continue;
            }
        } else {
            if (step > BUF_BYTES) step = BUF_BYTES;
            n = pread(j->sfd, w->buf, step, (off_t)pos);
            if (n < 0) {
                if (errno == EINTR) continue;
                record_error(j, w->idx, errno, OP_READ, pos);
                return -1;
            }
            if (n == 0) {
                record_error(j, w->idx, ERR_SHRANK, OP_READ, pos);
                return -1;
            }
            if (put(j, w->idx, w->buf, (size_t)n, pos) < 0) return -1;
        }
        pos += (uint64_t)n;
        atomic_fetch_add_explicit(&sh->bytes, (uint64_t)n, memory_order_relaxed);
        slow_down();
    }
    return 0;
}

/* Copies [off, end) of one file, skipping its holes: the temporary was sized with ftruncate, so
 * a range never written stays a hole. */
static int copy_range(job *j, wstate *w, uint64_t off, uint64_t end)
{
    if (!j->holes) return copy_segment(j, w, off, end);
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
                record_error(j, w->idx, errno, OP_READ, pos);
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
        int r = copy_segment(j, w, seg, seg_end);
        if (r) return r;
        pos = seg_end;
    }
    return 0;
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

/* The copy's bytes [pos, pos + len) as the storage holds them; *out points at them in w->dbuf.
 * Returns the number of bytes available there (less than len at the end of the file), or -1. */
static ssize_t read_back(job *j, wstate *w, size_t len, uint64_t pos, const char **out)
{
    if (j->direct && w->cached != j) {
        uint64_t a0 = pos / j->align * j->align;
        uint64_t a1 = (pos + len + j->align - 1) / j->align * j->align;
        ssize_t n = pread_full(j->tfd, w->dbuf, (size_t)(a1 - a0), a0);
        if (n >= 0) {
            *out = w->dbuf + (pos - a0);
            ssize_t have = n - (ssize_t)(pos - a0);
            return have < 0 ? 0 : have > (ssize_t)len ? (ssize_t)len : have;
        }
        if (errno != EINVAL) return -1;
        /* The open succeeded but the filesystem refuses these reads: through the cache, on an
         * fd of our own (the shared one has O_DIRECT set). */
        if (w->rfd >= 0) close(w->rfd);
        w->rfd = open(j->tmp, O_RDONLY | O_CLOEXEC);
        if (w->rfd < 0) return -1;
        w->cached = j;
    }
    int fd = w->cached == j ? w->rfd : j->tfd;
    /* Written-back pages are clean, and clean pages can be dropped: the read goes to storage. */
    if (w->synced != j) {
        if (fdatasync(j->tfd) < 0) return -1;
        w->synced = j;
    }
    posix_fadvise(fd, (off_t)pos, (off_t)len, POSIX_FADV_DONTNEED);
    *out = w->dbuf;
    return pread_full(fd, w->dbuf, len, pos);
}

/* Reads [pos, end) of source and copy and compares them byte for byte. */
static int verify_segment(job *j, wstate *w, uint64_t pos, uint64_t end)
{
    size_t step_max = slow_ms > 0 ? SLOW_STEP_BYTES : BUF_BYTES;
    while (pos < end) {
        if (stopping(j)) return 1;
        size_t len = end - pos < step_max ? (size_t)(end - pos) : step_max;
        ssize_t n = pread_full(j->sfd, w->buf, len, pos);
        if (n != (ssize_t)len) {
            record_error(j, w->idx, n < 0 ? errno : ERR_SHRANK, OP_VERIFY_READ, pos);
            return -1;
        }
        const char *copy;
        ssize_t m = read_back(j, w, len, pos, &copy);
        if (m != (ssize_t)len) {
            record_error(j, w->idx, m < 0 ? errno : EIO, OP_VERIFY_DST, pos);
            return -1;
        }
        if (memcmp(w->buf, copy, len)) {
            size_t i = 0;
            while (w->buf[i] == copy[i])
                i++;
            record_error(j, w->idx, ERR_MISMATCH, OP_VERIFY_DST, pos + i);
            return -1;
        }
        pos += len;
        atomic_fetch_add_explicit(&sh->bytes, len, memory_order_relaxed);
        slow_down();
    }
    return 0;
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

/* Compares [off, end) of source and copy. Where both are holes there is nothing to read (both
 * read as zeros); every stretch where either has data is read back from both and compared. */
static int verify_range(job *j, wstate *w, uint64_t off, uint64_t end)
{
    if (!j->holes && !j->zeros) return verify_segment(j, w, off, end);
    uint64_t pos = off;
    while (pos < end) {
        uint64_t ds = next_data(j->sfd, pos, end), dd = next_data(j->tfd, pos, end);
        uint64_t from = ds < dd ? ds : dd;
        atomic_fetch_add_explicit(&sh->bytes, from - pos, memory_order_relaxed);
        if (from >= end) break;
        uint64_t hs = next_hole(j->sfd, from, end), hd = next_hole(j->tfd, from, end);
        uint64_t to = hs > hd ? hs : hd;
        if (to <= from) to = end; /* cannot happen with a sane filesystem; never loop forever */
        int r = verify_segment(j, w, from, to);
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

int worker_main(void *arg)
{
    wstate w = {.idx = *(int *)arg, .rfd = -1};
    const job *last = NULL;
    bool verify = sh->phase == PHASE_VERIFY;
    w.buf = malloc(BUF_BYTES);
    if (verify && posix_memalign((void **)&w.dbuf, DIRECT_MAX_ALIGN,
                                 BUF_BYTES + 2 * (size_t)DIRECT_MAX_ALIGN) != 0)
        w.dbuf = NULL;
    while (!atomic_load(&sh->stop)) {
        uint64_t c = atomic_fetch_add(&sh->next_chunk, 1);
        if (c >= round_chunks) break;
        job *j = chunk_owner(c);
        /* chunk_owner gives the last file whose base is <= c; files that sit the round out have
         * the base of the next one, so they come first and are never picked. Still: */
        if (!j->active || c >= j->base + j->nchunks || (!verify && j->cloned)) continue;
        if (atomic_load(&sh->files[j - batch].err)) continue; /* failed meanwhile */
        uint64_t off = (c - j->base) * j->chunk;
        if (!w.buf || (verify && !w.dbuf)) {
            record_error(j, w.idx, ENOMEM, verify ? OP_VERIFY_READ : OP_COPY, off);
            continue;
        }
        atomic_store(&sh->current[w.idx], (int64_t)(j - batch));
        if (j != last) /* another file may sit on a filesystem that can */
            w.use_cfr = !j->zeros && !j->dense && opt.reflink != REFLINK_NEVER;
        last = j;
        uint64_t end = off + j->chunk < j->size ? off + j->chunk : j->size;
        int r = verify ? verify_range(j, &w, off, end) : copy_range(j, &w, off, end);
        if (r == 0) atomic_fetch_add(&sh->files[j - batch].chunks_done, 1);
        atomic_store(&sh->current[w.idx], -1);
    }
    if (w.rfd >= 0) close(w.rfd);
    free(w.buf);
    free(w.dbuf);
    return 0;
}
