/* SPDX-License-Identifier: MIT */
/* file_copy.c - copy a file with several processes: get its size, split it, each copies its part.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mproc.h"

#define MAX_PARTS 16

struct part {
    const char *src, *dst;
    off_t from, len;
};

/* Runs in each child: copy bytes [from, from + len) with pread/pwrite, which take explicit
 * offsets, so the processes never share a file position. */
static int copy_part(void *arg)
{
    const struct part *pt = arg;
    int in = open(pt->src, O_RDONLY | O_CLOEXEC);
    int out = open(pt->dst, O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0) return 1;
    char buf[64 * 1024];
    off_t done = 0;
    while (done < pt->len) {
        size_t want = (size_t)(pt->len - done) < sizeof buf ? (size_t)(pt->len - done) : sizeof buf;
        ssize_t n = pread(in, buf, want, pt->from + done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 2;
        for (ssize_t w = 0; w < n;) {
            ssize_t m = pwrite(out, buf + w, (size_t)(n - w), pt->from + done + w);
            if (m < 0 && errno == EINTR) continue;
            if (m <= 0) return 3;
            w += m;
        }
        done += n;
    }
    close(in);
    close(out);
    return 0;
}

static int make_random_file(const char *path, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    char buf[64 * 1024];
    for (size_t left = size; left > 0;) {
        size_t n = left < sizeof buf ? left : sizeof buf;
        if (getrandom(buf, n, 0) != (ssize_t)n || write(fd, buf, n) != (ssize_t)n) {
            close(fd);
            return -1;
        }
        left -= n;
    }
    return close(fd);
}

/* Byte-for-byte comparison; 0 when equal. */
static int compare_files(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rbe"), *fb = fopen(b, "rbe");
    int diff = !fa || !fb;
    while (!diff) {
        int ca = getc(fa), cb = getc(fb);
        if (ca != cb) diff = 1;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return diff;
}

int main(int argc, char **argv)
{
    char src_tmp[] = "/tmp/mproc_file_copy_src_XXXXXX",
         dst_tmp[] = "/tmp/mproc_file_copy_dst_XXXXXX";
    const char *src = argc > 2 ? argv[1] : src_tmp;
    const char *dst = argc > 2 ? argv[2] : dst_tmp;
    int own_files = argc <= 2;
    if (own_files) {
        int a = mkstemp(src_tmp), b = mkstemp(dst_tmp);
        if (a < 0 || b < 0) return 1;
        close(a);
        close(b);
        if (make_random_file(src, 5 * 1024 * 1024 + 123) != 0) return 1; /* a few MiB, odd size */
    }

    struct stat st; /* Python's os.path.getsize */
    if (stat(src, &st) < 0) {
        perror(src);
        return 1;
    }
    off_t size = st.st_size;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || ftruncate(out, size) < 0) {
        perror(dst);
        return 1;
    }
    close(out);

    int nparts = mp_cpu_count() * 2;
    if (nparts > MAX_PARTS) nparts = MAX_PARTS;
    struct part parts[MAX_PARTS];
    mp_process *procs[MAX_PARTS];
    off_t chunk = size / nparts;
    for (int i = 0; i < nparts; i++) {
        parts[i] = (struct part){src, dst, chunk * i, i == nparts - 1 ? size - chunk * i : chunk};
        char name[32];
        snprintf(name, sizeof name, "copier-%d", i + 1);
        if (mp_process_new(&procs[i], name, copy_part, &parts[i]) != 0) return 1;
        if (mp_process_start(procs[i]) != 0) return 1;
    }
    int failed = 0;
    for (int i = 0; i < nparts; i++) {
        int code = -1;
        if (mp_process_join(procs[i], 60.0) != 0 || mp_process_exitcode(procs[i], &code) != 0 ||
            code != 0) {
            fprintf(stderr, "%s failed (exit code %d)\n", mp_process_name(procs[i]), code);
            failed = 1;
        }
        mp_process_free(&procs[i]);
    }
    int diff = failed || compare_files(src, dst);
    printf("copied %lld bytes from %s to %s with %d processes: %s\n", (long long)size, src, dst,
           nparts, diff ? "MISMATCH" : "identical");
    if (own_files) {
        unlink(src);
        unlink(dst);
    }
    return diff;
}
