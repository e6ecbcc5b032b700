/* SPDX-License-Identifier: MIT */
/* conn.h - private: the message connection shared by pipes (pipe.c) and local sockets (socket.c).
 *
 * A connection has up to three fds:
 *   rfd  where headers and inline payloads arrive (a pipe's read end, or the socket)
 *   wfd  where headers and inline payloads go (a pipe's write end, or the same socket)
 *   bfd  the bulk channel of a pipe: a socketpair end that carries payloads of MP__BULK_MIN bytes
 *        and more (a Unix socket moves 1 MiB messages 3-8x faster than a pipe here, while a pipe
 *        moves small messages about 2x faster than a socket). -1 for socket connections, whose
 *        one socket carries everything.
 */
#ifndef MP_CONN_H
#define MP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mproc/error.h"
#include "mproc/pipe.h"

/* Payloads this large go over the bulk channel when there is one. */
#define MP__BULK_MIN ((size_t)64 * 1024)
/* The receive buffer: big enough to drain a whole default pipe (64 KiB) in one read. */
#define MP__RBUF_SIZE ((size_t)64 * 1024)

struct mp_conn {
    int rfd, wfd, bfd;
    int kfd; /* pipes: a read end of the pipe this end writes, kept so writes never SIGPIPE */
    /* sending pipe ends: whether the peer is gone, asked before each send (peer_gone in conn.c);
     * made at the first send */
    struct mp__hangup_watch *hup;
    bool rd_sock, wr_sock; /* rfd / wfd are sockets (recv/send with flags) rather than pipes */
    bool readable, writable;
    bool closed;
    bool wr_shut;   /* sending side shut down after a torn send */
    bool nonblock;  /* RWF_NOWAIT unsupported: the fds were switched to O_NONBLOCK */
    bool wr_nb;     /* pipes: wfd is O_NONBLOCK (a pipe write never blocks here, see write_all) */
    bool rd_eof;    /* rfd reached end of file */
    bool rd_stream; /* the last read brought more than one message: the peer streams (fill) */
    int rd_err;     /* sticky receive error (MP_ECORRUPT), 0 when none */
    uint64_t max_msg;
    int peer_cpu; /* the CPU the peer sent its last message from, -1 when unknown */

    /* received bytes not yet consumed: rbuf[rpos..rend) */
    unsigned char *rbuf;
    size_t rpos, rend;

    /* the message being received: header consumed, payload in_have of in_len bytes so far, kept
     * in in_data (malloc'd, in_dcap bytes) between calls */
    bool in_msg, in_bulk;
    uint64_t in_len, in_have;
    unsigned char *in_data;
    size_t in_dcap;
};

/* A connection over fds the caller created (each may be -1). Takes ownership on success only. */
int mp__conn_new_fds(mp_conn **out, int rfd, int wfd, int bfd, bool rd_sock, bool wr_sock);

#ifdef MP_TEST_HOOKS
/* Test builds only: the allocator keep_partial (conn.c) uses for a receive cut short; realloc,
 * swapped by tests to inject an allocation failure. */
extern void *(*mp__conn_realloc)(void *p, size_t n);
#endif

#ifdef MP_TEST_HOOKS
/* Test builds only: set, pipe ends run as on a system without io_uring (the epoll check per
 * send). */
extern bool mp__conn_no_uring;
#endif

/* Socket buffer sizes for fast large messages; failures are ignored (limits are the admin's). */
void mp__conn_tune_socket(int fd);

#endif
