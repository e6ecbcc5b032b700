/* SPDX-License-Identifier: MIT */
/* mproc/pipe.h - message connections: Python's Pipe() and Connection, in C.
 *
 *     mp_conn *a, *b;
 *     mp_pipe_new(&a, &b, true);                  // duplex: both ends send and receive
 *     // fork; the child keeps b, the parent keeps a (each closes the other end)
 *     mp_conn_send(b, "hello", 5, MP_FOREVER);    // one whole message
 *     char buf[64]; size_t n;
 *     mp_conn_recv(a, buf, sizeof buf, &n, 5.0);  // n == 5
 *     mp_conn_free(&a);
 *
 * An mp_conn carries whole messages of bytes, 0 bytes up to far beyond 4 GiB (the default limit is
 * MP_CONN_MAX_MESSAGE, 1 TiB; memory is the practical limit). The same type is returned by the
 * local-socket calls of mproc/socket.h, so everything here works on socket connections too.
 *
 * Underneath, each direction of a pipe is a pipe2() pipe (a pipe write costs about half a
 * Unix-socket send, which matters for small messages), and the two ends share a Unix socketpair
 * that carries payloads of 64 KiB and more (a socket moves 1 MiB messages several times faster than
 * a pipe). Each message goes on the wire as an 8-byte little-endian length and the payload, written
 * with one write() (small messages are copied behind the header; larger ones use writev()). The
 * receiver reads in large chunks into a per-connection buffer, so a burst of small messages costs
 * about one read for many messages; the payload of a large message is read straight into the
 * caller's buffer. A duplex pipe end holds 5 fds, a one-way pipe's ends 2 (receiving) and 4
 * (sending; 3 before its first send). A receiver that finds nothing to read spins for up to 50 us
 * before sleeping, but only when the sender runs on another CPU (the header says which CPU it sent
 * from): waking a halted vCPU costs more.
 *
 * No SIGPIPE, ever: socket writes use MSG_NOSIGNAL, and each writing pipe end keeps a read end
 * of its own pipe open, so the kernel never sees a pipe without a reader. Whether the real peer
 * still exists is asked of the socketpair, through an io_uring poll armed by the first send, so a
 * small send is one write() system call (without io_uring: one epoll_wait() per send more): a
 * send after the peer closed its end, or died, returns -EPIPE. As with any socket, a message sent
 * just before the peer closes is lost with the peer. See docs/pipe.md, "How it works".
 *
 * Timeouts: seconds as a double on CLOCK_MONOTONIC. MP_FOREVER (or +INFINITY) waits without
 * limit; 0, any other negative value and NaN do not wait. "Not within the time given" is
 * -ETIMEDOUT, also the "would block" of a zero timeout (mp_conn_poll and mp_wait return 0
 * instead: they count what is ready). Signals never surface as EINTR: waits resume against the
 * same deadline.
 *   - A receive that times out part-way through a message loses nothing: the part read so far is
 *     kept inside the connection and the next receive continues with it.
 *   - A send that times out before its first byte was written has done nothing. A send that times
 *     out part-way through a message cannot take the bytes back: the stream would be torn, so the
 *     connection's sending side is shut down (the peer sees end of file after the messages before
 *     it; the partial one is dropped), the send returns -ETIMEDOUT, and later sends return
 *     MP_ECLOSED. Receiving on the connection still works. Large messages with short timeouts
 *     risk this; use MP_FOREVER, or a timeout sized to the message, when that matters.
 *
 * Fork: a connection copied by fork() refers to the same pipes and socket in both processes. As in
 * Python, each end should be used by one process: after forking, close the end you do not use
 * (mp_conn_free in the child closes only the child's copy). Received-but-unread data buffered in
 * the connection is copied too, so fork a connection only while its receive buffer is empty.
 *
 * Threads: one thread may send while another receives on the same connection (the two sides keep
 * separate state), but two threads must not send (or receive) on one connection at the same time,
 * and close/free must not race any other call.
 *
 * Async-signal safety: none of these calls is async-signal-safe except mp_conn_fileno.
 */
#ifndef MPROC_PIPE_H
#define MPROC_PIPE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct iovec;

/* One end of a pipe or of a local-socket connection. Opaque. */
typedef struct mp_conn mp_conn;

/* The default (and largest settable) message size: 1 TiB. A header from the peer claiming more than
 * the connection's limit is taken as corrupt data (MP_ECORRUPT), never allocated. */
#define MP_CONN_MAX_MESSAGE ((uint64_t)1 << 40)

/* Creates a pipe: two connected ends, both owned by the caller (free each with mp_conn_free).
 * duplex true: both ends send and receive (Python's Pipe(duplex=True)). duplex false: *a only
 * receives and *b only sends (Python's Pipe(duplex=False)); using an end the wrong way returns
 * MP_EWRONGDIR. Every fd is close-on-exec.
 * Errors: -EINVAL (a or b NULL, or a == b), -EMFILE/-ENFILE, -ENOMEM. On error *a and *b are
 * left untouched. Safe after fork. */
MP_API int mp_pipe_new(mp_conn **a, mp_conn **b, bool duplex);

/* Wraps a connected AF_UNIX SOCK_STREAM socket fd (one inherited across exec, or made by hand) in
 * a connection that may receive (readable) and/or send (writable). Takes ownership of fd on
 * success only (the connection closes it); on error the caller still owns it, unchanged. The fd
 * is made close-on-exec. The peer must speak mproc's framing (another mp_conn). A socket whose
 * peer has already closed is accepted (its first receive gives MP_EEOF).
 * Errors: -EINVAL (out NULL, fd < 0, neither readable nor writable, not a SOCK_STREAM socket),
 * -ENOTSOCK (fd is not a socket), -ENOTCONN (a stream socket that is not connected: never
 * connected, or a listening socket), -ENOMEM. */
MP_API int mp_conn_from_fd(mp_conn **out, int fd, bool readable, bool writable);

/* Sends one message of len bytes (0 allowed; buf may be NULL only when len is 0). Returns when the
 * whole message has been handed to the kernel (it is then delivered even if the sender exits), or
 * when the timeout expires. The caller keeps ownership of buf. See the header comment for a send
 * that times out part-way.
 * Errors: -EINVAL (c NULL, buf NULL with len > 0), MP_ETOOBIG (len > the connection's limit, see
 * mp_conn_set_max_message), MP_EWRONGDIR (receive-only end), MP_ECLOSED (closed, or sending side
 * shut down after a torn send), -EPIPE (no receiver: the peer closed its end or exited; no SIGPIPE
 * is raised; a peer that reset the connection gives -EPIPE too), -ETIMEDOUT, -ENOBUFS/-ENOMEM. */
MP_API int mp_conn_send(mp_conn *c, const void *buf, size_t len, double timeout);

/* Sends one message made of the concatenation of iovcnt buffers (a header and a body without
 * copying them together). Same contract and errors as mp_conn_send; also -EINVAL for iov NULL
 * with iovcnt > 0, iovcnt < 0 or > 64. */
MP_API int mp_conn_sendv(mp_conn *c, const struct iovec *iov, int iovcnt, double timeout);

/* Receives one message into buf (cap bytes) and stores its size in *len. Blocks until a message is
 * there or the timeout expires.
 * When the message is larger than cap, returns MP_ETOOSMALL, stores the size needed in *len, and
 * keeps the message: the next receive (with a big enough buffer, or mp_conn_recv_alloc) gets it.
 * Errors: -EINVAL (c or len NULL, buf NULL with cap > 0), MP_EWRONGDIR (send-only end),
 * MP_ECLOSED (closed, or the receiving side broke, see -ENOMEM), MP_EEOF (the peer closed its end
 * and every message it sent has been received; a message cut short by the peer's exit is dropped
 * and also gives MP_EEOF), MP_ETOOSMALL, -ETIMEDOUT, MP_ECORRUPT (the peer sent a length above the
 * connection's limit: the stream cannot be resynchronised, so every later receive returns
 * MP_ECORRUPT too), -ENOMEM (the receive buffer could not be allocated; or a receive that stopped
 * part-way through a message, by timeout or error, could not allocate the copy that keeps the part
 * read so far: those bytes are lost, so the receiving side breaks and every later receive returns
 * MP_ECLOSED). A peer that reset the connection (it closed with our messages unread) counts as end
 * of file: MP_EEOF. */
MP_API int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, double timeout);

/* Receives one message into a buffer the library allocates with malloc(): on success *buf owns
 * it (release it with free(); a 0-byte message still gives a non-NULL buffer) and *len is its
 * size. On error *buf is NULL.
 * Errors: as mp_conn_recv (never MP_ETOOSMALL), plus -EINVAL (buf NULL) and -ENOMEM (the message
 * does not fit in memory: it stays in the connection, so a receive into a caller's buffer, e.g.
 * an mmap'd one, can still take it). */
MP_API int mp_conn_recv_alloc(mp_conn *c, void **buf, size_t *len, double timeout);

/* Waits until a receive would not block: a message (or part of one) is buffered or readable, or
 * the peer closed (a receive then returns MP_EEOF). Returns 1 when ready, 0 when the timeout
 * expired (timeout 0, or any negative timeout but MP_FOREVER: just checks; Python's poll() returns
 * False). Errors: -EINVAL, MP_EWRONGDIR (send-only end), MP_ECLOSED. */
MP_API int mp_conn_poll(const mp_conn *c, double timeout);

/* Closes the connection's fd and releases its buffers; the object stays allocated (free it with
 * mp_conn_free). Idempotent: returns 0 every time (also for NULL). Afterwards every other call on
 * it returns MP_ECLOSED. The peer's receive returns MP_EEOF once it has drained what was sent,
 * and its send returns -EPIPE. */
MP_API int mp_conn_close(mp_conn *c);

/* Closes (if needed) and releases the connection, then sets *pp to NULL. NULL-safe; returns 0. */
MP_API int mp_conn_free(mp_conn **pp);

/* The fd where messages arrive (a pipe's read end, or the socket; for a send-only end, the fd it
 * writes to), for your own poll/epoll: readable when a receive could make progress. Do not
 * read, write or close it yourself: messages are framed, and received data may already sit in the
 * connection's buffer (mp_conn_poll and mp_wait take that into account; a raw poll does not).
 * Returns the fd, or -EINVAL (NULL) / MP_ECLOSED. Async-signal-safe. */
MP_API int mp_conn_fileno(const mp_conn *c);

/* Whether the end may receive / send (Python's readable and writable): 1 or 0, fixed when the
 * end was made (also after close), or -EINVAL for NULL. */
MP_API int mp_conn_is_readable(const mp_conn *c);
MP_API int mp_conn_is_writable(const mp_conn *c);

/* Whether mp_conn_close was called on this end (Python's closed): 1 or 0, or -EINVAL for NULL.
 * Only this process's own close counts: a peer that closed its end shows as MP_EEOF on receive
 * and -EPIPE on send, not here. */
MP_API int mp_conn_is_closed(const mp_conn *c);

/* Sets the largest message this connection sends or accepts (default and maximum
 * MP_CONN_MAX_MESSAGE). Use a small limit on connections from untrusted peers.
 * Errors: -EINVAL (c NULL, max 0 or > MP_CONN_MAX_MESSAGE), MP_ECLOSED. */
MP_API int mp_conn_set_max_message(mp_conn *c, uint64_t max);

/* The process id and user id of the peer, from the kernel (SO_PEERCRED): for a pipe, the process
 * that created it; for a socket connection, the process at the other end when it connected or
 * listened. Either out pointer may be NULL. Errors: -EINVAL (c NULL), MP_ECLOSED. */
MP_API int mp_conn_peer(const mp_conn *c, pid_t *pid, uid_t *uid);

/* ---- waiting on many objects: Python's multiprocessing.connection.wait ---------------------- */

/* One object to wait for: set conn to a connection, or conn to NULL and fd to any fd that becomes
 * readable when the event happens: a process sentinel (mp_process_sentinel), a listener
 * (mp_listener_fileno), a pipe's raw fd... An entry with conn NULL and fd < 0 is ignored.
 * mp_wait sets ready. */
typedef struct mp_wait_item {
    mp_conn *conn;
    int fd;
    bool ready;
} mp_wait_item;

/* Waits until at least one of the n items is ready or the timeout expires: a connection is ready
 * when mp_conn_poll would return 1 (data buffered or readable, or end of file); an fd when poll()
 * reports it readable, hung up or in error (a sentinel: the process ended). Sets every item's ready
 * flag and returns how many are ready; 0 when the timeout expired (Python returns an empty list).
 * n does not depend on the fd limit (ulimit -n): items naming the same fd count once, and more
 * distinct fds than poll() accepts are waited for with epoll.
 * Errors: -EINVAL (items NULL with n > 0, n > 4096), MP_EWRONGDIR (a send-only connection),
 * MP_ECLOSED (a closed connection), -ENOMEM, -EMFILE (more distinct fds than RLIMIT_NOFILE and
 * not one free fd for the epoll instance). */
MP_API int mp_wait(mp_wait_item *items, size_t n, double timeout);

#ifdef __cplusplus
}
#endif
#endif
