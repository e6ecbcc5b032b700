/* SPDX-License-Identifier: MIT */
/* shm_fd.c - shared memory that can travel to another program image (handoff.h): a memfd mapped
 * MAP_SHARED, whose fd a spawned or forkserver child receives with SCM_RIGHTS and maps again.
 *
 * Only after mp_init(): a program that never asked for spawn or forkserver keeps today's
 * anonymous mappings and pays no fd per object. And never the last fds of the process: an object
 * takes a memfd only while RLIMIT_NOFILE's soft limit leaves a reserve above it (see
 * fd_reserve_ok), so a program that makes thousands of locks after mp_init() does not find its own
 * open() failing with EMFILE; the objects beyond that point are anonymous and cannot travel (the
 * handoff says so at start).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handoff.h"
#include "mproc/error.h"
#include "platform/platform.h"

/* Fds kept free for the program: an eighth of the soft limit, at least 64. */
static bool fd_reserve_ok(int fd)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return true;
    rlim_t reserve = rl.rlim_cur / 8 < 64 ? 64 : rl.rlim_cur / 8;
    return rl.rlim_cur > reserve && (rlim_t)fd < rl.rlim_cur - reserve;
}

int mp__shm_map_shareable(size_t size, void **out, int *fd)
{
    if (!out || !fd || size == 0) return -EINVAL;
    *fd = -1;
    if (mp__init_called()) {
        int m = mp__memfd_new("mproc", size);
        if (m >= 0 && !fd_reserve_ok(m)) {
            close(m);
            m = -EMFILE;
        }
        if (m >= 0) {
            /* The size is fixed for good: a process that got the fd cannot shrink the file under
             * the others' mappings (SIGBUS) nor grow it. */
            (void)fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
            void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
            if (p == MAP_FAILED) {
                int e = errno;
                close(m);
                return -e;
            }
            mp__fd_internal_add(m);
            *out = p;
            *fd = m;
            return 0;
        }
        /* No fd left (or memfd_create unavailable): anonymous memory, which cannot travel. */
        if (m != -EMFILE && m != -ENFILE && m != -ENOSYS && m != -EPERM) return m;
    }
    return mp__shm_map_anon(size, out);
}

int mp__shm_map_fd(int fd, size_t size, void **out)
{
    if (fd < 0 || size == 0 || !out) return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != (uint64_t)size) return MP_ECORRUPT;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
}
