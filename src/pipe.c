/* SPDX-License-Identifier: MIT */
/* pipe.c - mp_pipe_new: Python's Pipe(duplex) over pipe2() plus a bulk socketpair.
 *
 * Each direction is a pipe (small messages: a pipe write costs about half a Unix-socket send
 * here), and the two ends share one socketpair that carries large payloads (a socket moves 1 MiB
 * messages several times faster than a 64 KiB pipe). A one-way pipe has one pipe: a reads, b
 * writes. See conn.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
}

int mp_pipe_new(mp_conn **a, mp_conn **b, bool duplex)
{
    if (!a || !b || a == b) return -EINVAL;
    /* fd[0..1]: b -> a, fd[2..3]: a -> b (duplex only), fd[4..5]: the bulk socketpair */
    int fd[6] = {-1, -1, -1, -1, -1, -1};
    int rc = 0;
    if (pipe2(fd, O_CLOEXEC) < 0 || (duplex && pipe2(fd + 2, O_CLOEXEC) < 0) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd + 4) < 0) {
        rc = -errno;
        close_all(fd, 6);
        return rc;
    }
    mp__conn_tune_socket(fd[4]);
    mp__conn_tune_socket(fd[5]);
    /* keepers: each writing end holds a read end of its own pipe, so a write never raises
     * SIGPIPE (see send_frame in conn.c) */
    int keep_b = fcntl(fd[0], F_DUPFD_CLOEXEC, 0);
    int keep_a = duplex ? fcntl(fd[2], F_DUPFD_CLOEXEC, 0) : -1;
    mp_conn *ca = NULL, *cb = NULL;
    if (keep_b < 0 || (duplex && keep_a < 0)) rc = -errno;
    if (rc == 0) rc = mp__conn_new_fds(&ca, fd[0], fd[3], fd[4], false, false);
    if (rc == 0) rc = mp__conn_new_fds(&cb, fd[2], fd[1], fd[5], false, false);
    if (rc < 0) {
        free(ca);
        close_all(fd, 6);
        if (keep_a >= 0) close(keep_a);
        if (keep_b >= 0) close(keep_b);
        return rc;
    }
    ca->kfd = keep_a;
    cb->kfd = keep_b;
    /* The write ends are O_NONBLOCK: a pipe write never blocks anyway (write_all in conn.c waits
     * with poll, watching for the peer's death), and a plain write() on a non-blocking fd costs
     * less than pwritev2(RWF_NOWAIT). Only the writers use these open file descriptions. */
    for (int i = 1; i < 4; i += 2) {
        if (fd[i] < 0) continue;
        int fl = fcntl(fd[i], F_GETFL);
        if (fl >= 0 && fcntl(fd[i], F_SETFL, fl | O_NONBLOCK) == 0)
            (i == 1 ? cb : ca)->wr_nb = true;
    }
    /* the writing ends learn of the peer's hang-up from the bulk socket, through a platform
     * hang-up watch set up at their first send (peer_gone in conn.c) */
    *a = ca;
    *b = cb;
    return 0;
}
