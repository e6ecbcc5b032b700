/* SPDX-License-Identifier: MIT */
/* plan.c - from operands to a list of regular files: the parent walks directory trees (-r),
 * creates the directories (mode 0700 until the end, when they get their final mode and, with
 * --preserve, owner and times), copies symbolic links as links where they are not followed, and
 * queues the regular files, which then go through the workers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpcp.h"

typedef struct dir_item {
    char *path;
    struct stat st; /* of the source directory */
    bool created;
} dir_item;

/* The directories above the one being walked, to refuse a cycle that -L would follow. */
typedef struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
} ancestor;

item *items;
size_t nitems;
int plan_failed;
static size_t items_cap;
static dir_item *dirs;
static size_t ndirs, dirs_cap;

char *path_join(const char *dir, const char *name)
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
const char *base_name(const char *path, char *out, size_t len)
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
char *temp_path(const char *dst)
{
    static unsigned counter;
    char base[128];
    base_name(dst, base, 100);
    const char *slash = strrchr(dst, '/');
    size_t dirlen = slash ? (size_t)(slash - dst + 1) : 0;
    char name[200];
    unsigned rnd = (unsigned)(now_ns() ^ ((int64_t)getpid() << 16)) * 2654435761u;
    snprintf(name, sizeof name, ".%s.mpcp-%d-%u-%08x", base, (int)getpid(), counter++, rnd);
    char *tmp = malloc(dirlen + strlen(name) + 1);
    if (!tmp) return NULL;
    memcpy(tmp, dst, dirlen);
    strcpy(tmp + dirlen, name);
    return tmp;
}

static bool newer(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec != b->tv_sec ? a->tv_sec > b->tv_sec : a->tv_nsec > b->tv_nsec;
}

/* The checks before an existing destination is replaced, in GNU cp's order: -u (skip unless the
 * source is newer), then -n (skip) or -i (ask). Returns 1 to go on, 0 to skip. */
int may_replace(const char *src, const struct stat *sst, const char *dst, const struct stat *dst_st)
{
    if (opt.update && !newer(&sst->st_mtim, &dst_st->st_mtim)) return 0;
    if (opt.interactive == ASK_ALWAYS_NO || (opt.interactive == ASK_USER && !ask_overwrite(dst))) {
        if (opt.verbose) printf("skipped '%s'\n", dst);
        return 0;
    }
    (void)src;
    return 1;
}

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
static void add_item(char *src, char *dst, bool nofollow)
{
    if (!src || !dst || !grow((void **)&items, &items_cap, nitems, sizeof(item))) {
        free(src);
        free(dst);
        say_error("out of memory");
        plan_failed++;
        return;
    }
    items[nitems++] = (item){src, dst, nofollow};
}

/* A symbolic link that is not followed is copied as a link, made under a temporary name and
 * renamed into place. */
static void copy_symlink(const char *src, const struct stat *lst, const char *dst)
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
        if (st.st_dev == lst->st_dev && st.st_ino == lst->st_ino) {
            say_error("'%s' and '%s' are the same file", src, dst);
            plan_failed++;
            return;
        }
        if (S_ISDIR(st.st_mode)) {
            say_error("cannot overwrite directory '%s' with non-directory '%s'", dst, src);
            plan_failed++;
            return;
        }
        if (!may_replace(src, lst, dst, &st)) return;
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
        r = opt.interactive == ASK_ALWAYS_NO
                ? renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE)
                : rename(tmp, dst);
        e = errno;
        if (r < 0) unlink(tmp);
    }
    if (r < 0) {
        if (!(e == EEXIST && opt.interactive == ASK_ALWAYS_NO)) {
            say_error("cannot create symbolic link '%s': %s", dst, strerror(e));
            plan_failed++;
        }
    } else {
        /* Best effort, as cp -p on links (a link's mode means nothing on Linux). */
        struct timespec ts[2] = {lst->st_atim, lst->st_mtim};
        if (opt.keep_owner && lchown(dst, lst->st_uid, lst->st_gid) < 0 && errno != EPERM)
            say_error("cannot keep the owner of '%s': %s", dst, strerror(errno));
        if (opt.keep_times) utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
        if (opt.verbose) printf("'%s' -> '%s'\n", src, dst);
    }
    free(tmp);
}

/* Creates dst (or reuses an existing directory there, as cp -r does) and queues everything
 * under src: regular files for the workers, links at once, subdirectories recursively. Other
 * file types are refused. */
static void walk(const char *src, const char *dst, const struct stat *sst, const ancestor *up)
{
    if (got_signal) return;
    for (const ancestor *a = up; a; a = a->up) {
        if (a->dev == sst->st_dev && a->ino == sst->st_ino) {
            say_error("'%s': a directory loop (a symbolic link to a directory above it): not "
                      "copied",
                      src);
            plan_failed++;
            return;
        }
    }
    ancestor self = {sst->st_dev, sst->st_ino, up};
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
    bool follow = opt.deref == DEREF_ALWAYS;
    struct dirent *e;
    while (!got_signal && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *s = path_join(src, e->d_name), *t = path_join(dst, e->d_name);
        struct stat st;
        if (!s || !t) {
            say_error("out of memory");
            plan_failed++;
        } else if ((follow ? stat(s, &st) : lstat(s, &st)) < 0) {
            say_error("cannot stat '%s': %s", s, strerror(errno));
            plan_failed++;
        } else if (S_ISREG(st.st_mode)) {
            add_item(s, t, !follow);
            continue;
        } else if (S_ISDIR(st.st_mode)) {
            walk(s, t, &st, &self);
        } else if (S_ISLNK(st.st_mode)) {
            copy_symlink(s, &st, t);
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

/* Directories get their final mode (and with --preserve owner and times) after their files
 * are in, deepest first, so that writing into them does not change the times set. */
void finish_dirs(void)
{
    mode_t um = umask(0);
    umask(um);
    for (size_t i = ndirs; i-- > 0;) {
        dir_item *d = &dirs[i];
        int r = 0;
        if (opt.keep_owner && lchown(d->path, d->st.st_uid, d->st.st_gid) < 0 && errno != EPERM)
            r = -1;
        if (r == 0 && opt.keep_mode)
            r = chmod(d->path, d->st.st_mode & 07777);
        else if (r == 0 && d->created)
            r = chmod(d->path, d->st.st_mode & 0777 & ~um);
        struct timespec ts[2] = {d->st.st_atim, d->st.st_mtim};
        if (r == 0 && opt.keep_times) r = utimensat(AT_FDCWD, d->path, ts, 0);
        if (r < 0) {
            say_error("cannot set the attributes of directory '%s': %s", d->path, strerror(errno));
            plan_failed++;
        }
        free(d->path);
    }
    ndirs = 0;
}

void plan(char **srcs, int nsrc, const char *dst, bool dst_is_dir)
{
    bool follow = opt.deref == DEREF_ALWAYS || opt.deref == DEREF_CMDLINE;
    for (int i = 0; i < nsrc && !got_signal; i++) {
        char base[NAME_MAX + 1];
        char *t = dst_is_dir ? path_join(dst, base_name(srcs[i], base, sizeof base)) : strdup(dst);
        struct stat st;
        if (!t || (follow ? stat(srcs[i], &st) : lstat(srcs[i], &st)) < 0) {
            add_item(strdup(srcs[i]), t, !follow); /* prepare() reports what is wrong */
        } else if (S_ISLNK(st.st_mode)) {
            copy_symlink(srcs[i], &st, t);
            free(t);
        } else if (opt.recursive && S_ISDIR(st.st_mode)) {
            if (inside(srcs[i], t)) {
                say_error("cannot copy directory '%s' into itself ('%s')", srcs[i], t);
                plan_failed++;
            } else {
                walk(srcs[i], t, &st, NULL);
            }
            free(t);
        } else {
            add_item(strdup(srcs[i]), t, !follow);
        }
    }
}

void plan_free(void)
{
    for (size_t i = 0; i < nitems; i++) {
        free(items[i].src);
        free(items[i].dst);
    }
    free(items);
    free(dirs);
    items = NULL;
    dirs = NULL;
    nitems = 0;
}
