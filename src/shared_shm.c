/* SPDX-License-Identifier: MIT */
/* shared_shm.c - named shared memory blocks (mp_shm_*, mproc/shared.h): create and attach by name,
 * unlink with an identity check, keep, the sweep of dead creators' leftovers, and the exit hook
 * that unlinks what this process still owns (mp__shm_exit_cleanup, shared_internal.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handoff.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "platform/platform.h"
#include "process_internal.h"
#include "shared_internal.h"
#include "sync_internal.h"

#define SHM_NAME_MAX 200 /* bytes, counting the leading '/' */
#define SHM_SIZE_MAX (1ull << 48)

/* The mode bits of a block in /dev/shm. A generated-name block that its creator will unlink on
 * free or exit also carries the sticky bit (meaningless on a file, so the permissions stay
 * owner-only 0600): that is the mark mp_shm_sweep looks for, so a user-named block (even one
 * whose name has the generated form) and a kept block, which the docs promise are never swept,
 * are never touched by it. */
#define SHM_MODE       0600
#define SHM_MODE_SWEEP (S_ISVTX | 0600)

/* A block's identity: a name can be unlinked and given to a new block at any time, so every
 * unlink by a creator or a handle first checks that the name still refers to this one. */
typedef struct shm_id {
    dev_t dev;
    ino_t ino;
} shm_id;

struct mp_shm {
    uint32_t magic;
    bool created;   /* this process created the name */
    bool owned;     /* ... and will unlink it on free/exit (not kept, not unlinked yet) */
    bool generated; /* the name was generated (candidate for the sweep) */
    pid_t creator;
    shm_id id;
    void *ptr;
    size_t size;
    char name[SHM_NAME_MAX + 1];
};

/* Names this process created and still owns, for the atexit handler. A fork child inherits the
 * list but each entry records its creator's pid, so only the creator unlinks. */
typedef struct owned_name {
    struct owned_name *next;
    pid_t pid;
    shm_id id;
    char name[SHM_NAME_MAX + 1];
} owned_name;

static pthread_mutex_t owned_lock = PTHREAD_MUTEX_INITIALIZER;
static owned_name *owned_head;
static pthread_once_t shm_once = PTHREAD_ONCE_INIT;

/* Opens `name` read-only and compares its identity with `id`: 1 same block, 0 another block
 * now has the name, or -errno (-ENOENT: no block has it). With `fd_out`, the open fd is handed
 * over when the result is 1. */
static int shm_same(const char *name, const shm_id *id, int *fd_out)
{
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : (st.st_dev == id->dev && st.st_ino == id->ino);
    if (r == 1 && fd_out)
        *fd_out = fd;
    else
        close(fd);
    return r;
}

/* Unlinks `name` when it still refers to the block `id`. Returns 0, -ENOENT (the name is gone,
 * or names another block now: that one is left alone) or -errno. What remains is the instant
 * between the identity check and the unlink, which no shm API can close. */
static int unlink_if_same(const char *name, const shm_id *id)
{
    int r = shm_same(name, id, NULL);
    if (r < 0) return r;
    if (r == 0) return -ENOENT;
    return shm_unlink(name) < 0 ? -errno : 0;
}

void mp__shm_exit_cleanup(void)
{
    pthread_mutex_lock(&owned_lock);
    pid_t me = getpid();
    for (owned_name **pp = &owned_head; *pp;) {
        owned_name *o = *pp;
        if (o->pid == me) {
            unlink_if_same(o->name, &o->id);
            *pp = o->next;
            free(o);
        } else {
            pp = &o->next;
        }
    }
    pthread_mutex_unlock(&owned_lock);
}

static void owned_lock_take(void)
{
    pthread_mutex_lock(&owned_lock);
}

static void owned_lock_drop(void)
{
    pthread_mutex_unlock(&owned_lock);
}

/* mp__shm_exit_cleanup is an exit hook (process_internal.h): it runs at exit() and in the child
 * of a fork on its way out (mp__child_exit), so the list's lock must not be inherited in the
 * locked state from another thread: hold it across every fork. */
static void register_exit(void)
{
    mp__exit_hook_add(mp__shm_exit_cleanup); /* -ENOSPC cannot happen: a handful of modules */
    pthread_atfork(owned_lock_take, owned_lock_drop, owned_lock_drop);
}

static int own_name(const char *name, const shm_id *id)
{
    pthread_once(&shm_once, register_exit);
    owned_name *o = calloc(1, sizeof *o);
    if (!o) return -ENOMEM;
    o->pid = getpid();
    o->id = *id;
    snprintf(o->name, sizeof o->name, "%s", name);
    pthread_mutex_lock(&owned_lock);
    o->next = owned_head;
    owned_head = o;
    pthread_mutex_unlock(&owned_lock);
    return 0;
}

/* Forget this process's claim on `name`; with id, only the claim on that very block. */
static void disown_name(const char *name, const shm_id *id)
{
    pthread_mutex_lock(&owned_lock);
    pid_t me = getpid();
    for (owned_name **pp = &owned_head; *pp; pp = &(*pp)->next) {
        owned_name *o = *pp;
        if (o->pid == me && strcmp(o->name, name) == 0 &&
            (!id || (o->id.dev == id->dev && o->id.ino == id->ino))) {
            *pp = o->next;
            free(o);
            break;
        }
    }
    pthread_mutex_unlock(&owned_lock);
}

/* "mproc..." or "/mproc...", at most SHM_NAME_MAX bytes counting the leading '/' (which is added
 * when missing), no other '/': copied with the leading '/'. */
static int normalize_name(const char *name, char out[SHM_NAME_MAX + 1])
{
    if (!name) return -EINVAL;
    if (name[0] == '/') name++;
    size_t len = strlen(name);
    if (len < 5 || len + 1 > SHM_NAME_MAX || strncmp(name, "mproc", 5) != 0 || strchr(name, '/'))
        return -EINVAL;
    out[0] = '/';
    memcpy(out + 1, name, len + 1);
    return 0;
}

static void generate_name(char out[SHM_NAME_MAX + 1])
{
    static _Atomic unsigned counter;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)mp__now_ns() ^ (uint32_t)getpid() * 2654435761u;
    snprintf(out, SHM_NAME_MAX + 1, "/mproc.%d.%u.%08x", (int)getpid(), ++counter, rnd);
}

static int map_fd(int fd, size_t size, void **out)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
}

static int shm_create(mp_shm *b, size_t size)
{
    int fd = shm_open(b->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, SHM_MODE);
    if (fd < 0) return -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    /* fchmod, unlike the creation mode, is not subject to the umask. */
    if (!r && b->generated && fchmod(fd, SHM_MODE_SWEEP) < 0) r = -errno;
    if (!r && ftruncate(fd, (off_t)size) < 0) r = -errno;
    if (!r) r = map_fd(fd, size, &b->ptr);
    close(fd);
    if (r) {
        shm_unlink(b->name);
        return r;
    }
    b->id = (shm_id){st.st_dev, st.st_ino};
    return 0;
}

int mp_shm_new(mp_shm **out, const char *name, size_t size)
{
    if (!out || size == 0 || size > SHM_SIZE_MAX) return -EINVAL;
    mp_shm *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    int r;
    if (name) {
        if (!(r = normalize_name(name, b->name))) r = shm_create(b, size);
    } else {
        /* A generated name can only collide with a leftover of a dead process that had our pid
         * and the same counter and random value: try another. */
        b->generated = true;
        for (int tries = 0; tries < 16; tries++) {
            generate_name(b->name);
            if ((r = shm_create(b, size)) != -EEXIST) break;
        }
    }
    if (!r && (r = own_name(b->name, &b->id))) {
        munmap(b->ptr, size);
        shm_unlink(b->name);
    }
    if (r) {
        free(b);
        return r;
    }
    b->magic = MP__HANDLE_MAGIC;
    b->created = b->owned = true;
    b->creator = getpid();
    b->size = size;
    *out = b;
    return 0;
}

int mp_shm_attach(mp_shm **out, const char *name)
{
    if (!out) return -EINVAL;
    mp_shm *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    int r = normalize_name(name, b->name);
    int fd = r ? -1 : shm_open(b->name, O_RDWR | O_CLOEXEC, 0);
    if (!r && fd < 0) r = -errno;
    struct stat st;
    if (!r && fstat(fd, &st) < 0) r = -errno;
    if (!r && st.st_size == 0) r = -EAGAIN;
    if (!r) r = map_fd(fd, (size_t)st.st_size, &b->ptr);
    if (fd >= 0) close(fd);
    if (r) {
        free(b);
        return r;
    }
    b->magic = MP__HANDLE_MAGIC;
    b->id = (shm_id){st.st_dev, st.st_ino};
    b->size = (size_t)st.st_size;
    *out = b;
    return 0;
}

static inline bool shm_ok(const mp_shm *b)
{
    return b && b->magic == MP__HANDLE_MAGIC;
}

void *mp_shm_ptr(const mp_shm *b)
{
    return shm_ok(b) ? b->ptr : NULL;
}

size_t mp_shm_size(const mp_shm *b)
{
    return shm_ok(b) ? b->size : 0;
}

const char *mp_shm_name(const mp_shm *b)
{
    return shm_ok(b) ? b->name : "";
}

/* Only the creating process (not its fork children) owns the name. */
static bool owns(const mp_shm *b)
{
    return b->owned && b->creator == getpid();
}

int mp_shm_unlink(mp_shm *b)
{
    if (!shm_ok(b)) return -EINVAL;
    if (owns(b)) disown_name(b->name, &b->id);
    b->owned = false;
    return unlink_if_same(b->name, &b->id);
}

int mp_shm_unlink_name(const char *name)
{
    char n[SHM_NAME_MAX + 1];
    int r = normalize_name(name, n);
    if (r) return r;
    disown_name(n, NULL);
    return shm_unlink(n) < 0 ? -errno : 0;
}

/* Set or clear the sweep mark on the block, if the name is still its own. */
static void mark_sweepable(mp_shm *b, bool on)
{
    if (!b->generated) return;
    int fd;
    if (shm_same(b->name, &b->id, &fd) != 1) return;
    fchmod(fd, on ? SHM_MODE_SWEEP : SHM_MODE);
    close(fd);
}

int mp_shm_keep(mp_shm *b, bool keep)
{
    if (!shm_ok(b)) return -EINVAL;
    if (!b->created || b->creator != getpid()) return 0;
    if (keep && b->owned) {
        disown_name(b->name, &b->id);
        b->owned = false;
        mark_sweepable(b, false);
    } else if (!keep && !b->owned) {
        int r = own_name(b->name, &b->id);
        if (r) return r;
        b->owned = true;
        mark_sweepable(b, true);
    }
    return 0;
}

int mp_shm_free(mp_shm **pp)
{
    if (!pp || !*pp) return 0;
    mp_shm *b = *pp;
    if (!shm_ok(b)) return -EINVAL;
    if (owns(b)) {
        disown_name(b->name, &b->id);
        unlink_if_same(b->name, &b->id);
    }
    munmap(b->ptr, b->size);
    b->magic = 0;
    free(b);
    *pp = NULL;
    return 0;
}

int mp_shm_sweep(int *removed)
{
    int n = 0;
    DIR *d = opendir("/dev/shm");
    if (!d) return -errno;
    uid_t me = geteuid();
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid, end = 0;
        unsigned cnt, rnd;
        if (sscanf(e->d_name, "mproc.%d.%u.%8x%n", &pid, &cnt, &rnd, &end) != 3 ||
            e->d_name[end] != '\0' || pid <= 0)
            continue;
        /* Only blocks that mproc generated and whose creator meant to unlink them carry the
         * sweep mark: a user-named block whose name merely looks generated, and a kept block,
         * are never swept (nor another user's). */
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != me || (st.st_mode & 07777) != SHM_MODE_SWEEP)
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
        char path[sizeof e->d_name + 2];
        snprintf(path, sizeof path, "/%s", e->d_name);
        if (shm_unlink(path) == 0) n++;
    }
    closedir(d);
    if (removed) *removed = n;
    return 0;
}

/* ---- handoff to a spawned or forkserver child (handoff.h) ------------------------------------
 * A block travels as an fd on it (opened by name at export, after checking that the name still
 * refers to this very block), so the child maps the same pages even if the name is unlinked
 * meanwhile. The child attaches: it never unlinks the name on free or exit. Its mp_shm_name is
 * read back from the fd (/proc/self/fd), so the description stays small. */

#define SHM_DESC_MAGIC 0x6d706862u /* "mphb" */

struct shm_desc {
    uint32_t magic;
    uint32_t pad;
    uint64_t size;
};

int mp__shm_export(const void *obj, mp__handoff *h, const char **why)
{
    const mp_shm *b = obj;
    if (!shm_ok(b)) return -EINVAL;
    int fd = shm_open(b->name, O_RDWR | O_CLOEXEC, 0);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_dev != b->id.dev || st.st_ino != b->id.ino) {
        int e = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        if (e == EMFILE || e == ENFILE) return -e;
        *why = "its name was unlinked (or now names another block): keep the name until the "
               "child has started";
        return MP_ENOTSUP;
    }
    if (h->nfds != 0) {
        close(fd);
        return -ENOSPC;
    }
    h->fds[h->nfds++] = fd; /* already close-on-exec: the dup handoff.h asks for */
    struct shm_desc d = {SHM_DESC_MAGIC, 0, b->size};
    mp__handoff_desc_put(h, &d, sizeof d);
    return 0;
}

/* The block's name from its fd: "/dev/shm/NAME" (maybe with " (deleted)") -> "/NAME". */
static void name_from_fd(int fd, char out[SHM_NAME_MAX + 1])
{
    char link[64], path[SHM_NAME_MAX + 64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    out[0] = '\0';
    if (n <= 0) return;
    path[n] = '\0';
    char *del = strstr(path, " (deleted)");
    if (del && del[10] == '\0') *del = '\0';
    const char *base = strncmp(path, "/dev/shm/", 9) == 0 ? path + 8 : NULL;
    if (base && strlen(base) <= SHM_NAME_MAX) memcpy(out, base, strlen(base) + 1);
}

int mp__shm_import(mp__handoff *h, void **out)
{
    struct shm_desc d;
    if (!mp__handoff_desc_get(h, &d, sizeof d) || d.magic != SHM_DESC_MAGIC || h->nfds != 1 ||
        d.size == 0 || d.size > SHM_SIZE_MAX || h->fds[0] < 0)
        return MP_ECORRUPT;
    int fd = h->fds[0];
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != d.size) return MP_ECORRUPT;
    mp_shm *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    int r = map_fd(fd, (size_t)d.size, &b->ptr);
    if (r) {
        free(b);
        return r;
    }
    name_from_fd(fd, b->name);
    b->magic = MP__HANDLE_MAGIC;
    b->id = (shm_id){st.st_dev, st.st_ino};
    b->size = (size_t)d.size;
    *out = b;
    return 0; /* the fd is left in h: the mapping does not need it, the dispatcher closes it */
}
