/* SPDX-License-Identifier: MIT */
/* file.c - one file from start to end in the parent: check and open the source, resolve the
 * destination, create the temporary beside it (O_EXCL, sized with ftruncate so it starts as one
 * hole), clone it when the filesystem can (--reflink), and after the rounds give it its
 * attributes, flush it (--fsync) and rename it into place. Every message names the paths as the
 * user typed them: never the temporary, never the file a symbolic link destination points to. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "mpcp.h"

static int make_temp(job *j)
{
    for (int tries = 0; tries < 100; tries++) {
        char *tmp = temp_path(j->real);
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

void job_close(job *j)
{
    drop_temp(j);
    if (j->sfd >= 0) close(j->sfd);
    j->sfd = -1;
    free(j->dst);
    free(j->real);
    j->dst = j->real = NULL;
}

/* Resolves an existing destination. Returns 1 to copy, 0 to skip, -1 after an error. */
static int check_destination(job *j)
{
    struct stat dl, ds;
    if (lstat(j->dst, &dl) < 0) {
        if (errno == ENOENT) return 1;
        say_error("cannot stat '%s': %s", j->dst, strerror(errno));
        return -1;
    }
    if (S_ISLNK(dl.st_mode)) { /* write where the link points, as cp does */
        if (stat(j->dst, &ds) < 0) {
            say_error("not writing through dangling symlink '%s'", j->dst);
            return -1;
        }
        if (!(j->real = realpath(j->dst, NULL))) {
            say_error("cannot resolve '%s': %s", j->dst, strerror(errno));
            return -1;
        }
    } else {
        ds = dl;
    }
    if (ds.st_dev == j->sst.st_dev && ds.st_ino == j->sst.st_ino) {
        say_error("'%s' and '%s' are the same file", j->src, j->dst);
        return -1;
    }
    if (S_ISDIR(ds.st_mode)) {
        say_error("cannot overwrite directory '%s' with non-directory '%s'", j->dst, j->src);
        return -1;
    }
    if (!may_replace(j->src, &j->sst, j->dst, &ds)) return 0;
    if (!opt.force && access(j->real ? j->real : j->dst, W_OK) < 0 && errno == EACCES) {
        say_error("cannot overwrite '%s': %s (-f replaces it)", j->dst, strerror(EACCES));
        return -1;
    }
    j->dst_existed = true;
    j->dst_st = ds;
    return 1;
}

/* Checks and opens one source, resolves its destination and creates the temporary.
 * Returns 1 when the file is ready to copy, 0 when it was skipped, -1 after an error. */
int prepare(job *j, const char *dst)
{
    struct stat st;
    j->sfd = j->tfd = -1;
    if ((j->nofollow ? lstat(j->src, &st) : stat(j->src, &st)) < 0) {
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
    j->sfd =
        open(j->src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (j->nofollow ? O_NOFOLLOW : 0));
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
     * does. Like GNU cp, a source found sparse also gets its zero blocks turned into holes. */
    j->holes = (uint64_t)j->sst.st_blocks * 512 < j->size;
    j->dense = opt.sparse == SPARSE_NEVER;
    j->zeros = opt.sparse == SPARSE_ALWAYS || (opt.sparse == SPARSE_AUTO && j->holes);
    if (j->dense) j->holes = false;

    if (!(j->dst = strdup(dst))) {
        say_error("out of memory");
        return -1;
    }
    int c = check_destination(j);
    if (c <= 0) return c;
    if (!j->real && !(j->real = strdup(j->dst))) {
        say_error("out of memory");
        return -1;
    }
    for (job *k = batch; k < j; k++) { /* two sources, one destination: the first one wins */
        if (k->active && !strcmp(k->real, j->real)) {
            say_error("will not overwrite just-created '%s' with '%s'", j->dst, j->src);
            return -1;
        }
    }
    int r = make_temp(j);
    if (r < 0) {
        say_error("cannot create regular file '%s': %s", j->dst, strerror(-r));
        return -1;
    }
    if (opt.reflink != REFLINK_NEVER) {
        if (ioctl(j->tfd, FICLONE, j->sfd) == 0) {
            j->cloned = true;
        } else if (opt.reflink == REFLINK_ALWAYS) {
            say_error("failed to clone '%s' from '%s': %s", j->dst, j->src, strerror(errno));
            return -1;
        }
    }
    if (!j->cloned && ftruncate(j->tfd, (off_t)j->size) < 0) {
        say_error("cannot allocate %" PRIu64 " bytes for '%s': %s", j->size, j->dst,
                  strerror(errno));
        return -1;
    }
    struct stat ts;
    j->blk = fstat(j->tfd, &ts) == 0 && ts.st_blksize >= 512 && ts.st_blksize <= (1 << 20)
                 ? (unsigned)ts.st_blksize
                 : 4096;
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

/* Before the verify round: the copy is read back with O_DIRECT where the filesystem allows it
 * (the kernel writes back the dirty pages of the range first and then reads the device, not the
 * page cache). Otherwise the workers flush and drop the cached pages before reading them. */
void prepare_verify(job *j)
{
    j->align = DIRECT_ALIGN;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(j->tfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
        unsigned a = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align
                                                                    : sx.stx_dio_mem_align;
        if (a > j->align) j->align = a;
    }
#endif
    int fl = fcntl(j->tfd, F_GETFL);
    /* Test hook MPCP_TEST_NO_DIRECT: take the path of filesystems without O_DIRECT. */
    j->direct = !getenv("MPCP_TEST_NO_DIRECT") && j->align <= DIRECT_MAX_ALIGN && fl >= 0 &&
                fcntl(j->tfd, F_SETFL, fl | O_DIRECT) == 0;
}

void report_failure(job *j)
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
        say_error("verification failed: '%s' differs from '%s' at byte %" PRIu64
                  " (as read back from the storage)",
                  j->dst, j->src, s->at);
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

/* Owner, mode and times of the temporary, before it is renamed. Returns 0 or -1. */
static int set_attributes(job *j)
{
    /* chown first: it clears set-id bits that the chmod then restores. As in GNU cp, a user who
     * may not give files away is not told so; root is, and with --preserve=ownership the file
     * fails. */
    if (opt.keep_owner) {
        if (fchown(j->tfd, j->sst.st_uid, j->sst.st_gid) < 0) {
            bool quiet_ok = (errno == EPERM || errno == EINVAL) && geteuid() != 0;
            if (!quiet_ok) {
                say_error("failed to preserve ownership for '%s': %s", j->dst, strerror(errno));
                if (opt.require_preserve) return -1;
            }
        }
    } else if (j->dst_existed) {
        /* cp writes into an existing file, which keeps its owner; the replacement does too,
         * where we may give it away. */
        if (fchown(j->tfd, j->dst_st.st_uid, j->dst_st.st_gid) < 0) { /* not ours to keep */
        }
    }
    mode_t um = umask(0);
    umask(um);
    mode_t m = opt.keep_mode    ? j->sst.st_mode & 07777
               : j->dst_existed ? j->dst_st.st_mode & 07777
                                : j->sst.st_mode & 0777 & ~um;
    if (fchmod(j->tfd, m) < 0) {
        say_error("cannot set the mode of '%s': %s", j->dst, strerror(errno));
        return -1;
    }
    if (opt.keep_times) {
        struct timespec ts[2] = {j->sst.st_atim, j->sst.st_mtim};
        if (futimens(j->tfd, ts) < 0) {
            say_error("cannot set the times of '%s': %s", j->dst, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* --fsync: the directory entry made by rename is durable only once the directory is flushed. */
static int sync_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir) return -1;
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = fd < 0 ? -1 : fsync(fd);
    int e = errno;
    if (fd >= 0) close(fd);
    free(dir);
    errno = e;
    return r;
}

/* After the rounds: a file whose chunks were all done gets its attributes and is renamed into
 * place. Returns 1 copied, 0 skipped, -1 failed. */
int finish(job *j)
{
    file_slot *s = &sh->files[j - batch];
    if (atomic_load(&s->err) || atomic_load(&s->chunks_done) != j->nchunks) {
        report_failure(j);
        return -1;
    }
    if (set_attributes(j) < 0) return -1;
    if (opt.fsync && fsync(j->tfd) < 0) {
        say_error("cannot flush '%s' to storage: %s", j->dst, strerror(errno));
        return -1;
    }
    if (got_signal) return -1;
    int r;
    if (opt.interactive == ASK_ALWAYS_NO) {
        r = renameat2(AT_FDCWD, j->tmp, AT_FDCWD, j->real, RENAME_NOREPLACE);
        struct stat st;
        if (r < 0 && errno == EINVAL) /* no RENAME_NOREPLACE here: a narrow race is the best */
            r = lstat(j->real, &st) == 0 ? (errno = EEXIST, -1) : rename(j->tmp, j->real);
        if (r < 0 && errno == EEXIST) { /* it appeared while we copied: still never replace it */
            if (opt.verbose) printf("skipped '%s'\n", j->dst);
            return 0;
        }
    } else {
        r = rename(j->tmp, j->real);
    }
    if (r < 0) {
        say_error("cannot put the copy in place as '%s': %s", j->dst, strerror(errno));
        return -1;
    }
    free(j->tmp);
    j->tmp = NULL; /* now it is the destination: job_close must not unlink it */
    if (opt.fsync && sync_parent(j->real) < 0) {
        say_error("cannot flush the directory of '%s' to storage: %s", j->dst, strerror(errno));
        return -1;
    }
    if (opt.verbose) {
        progress_clear();
        printf("'%s' -> '%s'\n", j->src, j->dst);
    }
    return 1;
}

/* Test hook (MPCP_TEST_CORRUPT=1): flip one byte of every copy between copy and verify. */
void corrupt_for_test(void)
{
    for (int i = 0; i < nbatch; i++) {
        job *j = &batch[i];
        if (!j->active || !j->size) continue;
        unsigned char c;
        off_t at = (off_t)(j->size / 2);
        if (pread(j->tfd, &c, 1, at) == 1) {
            c ^= 0x5a;
            if (pwrite(j->tfd, &c, 1, at) != 1) say_error("test hook: cannot corrupt '%s'", j->dst);
        }
    }
}
