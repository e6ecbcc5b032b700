/* SPDX-License-Identifier: MIT */
/* mproc/socket.h - local sockets: Python's multiprocessing.connection Listener and Client, in C.
 *
 *     // server                                       // any process of the same user
 *     mp_listener *l;                                 mp_conn *c;
 *     mp_listener_new(&l, "@myservice", 16);          mp_client_connect(&c, "@myservice", 5.0);
 *     mp_conn *c;                                     mp_conn_send(c, "hi", 2, 5.0);
 *     mp_listener_accept(l, &c, MP_FOREVER);          mp_conn_free(&c);
 *     pid_t pid; uid_t uid; mp_conn_peer(c, &pid, &uid);
 *     ...mp_conn_recv(c, ...)...
 *     mp_conn_free(&c); mp_listener_free(&l);
 *
 * This is how processes that did not fork from each other talk. Addresses:
 *   - "@name": a Linux abstract socket (no file; it disappears with the listener).
 *   - anything else: a filesystem path (at most 107 bytes). Creating a listener where a socket file
 *     already exists asks whether anybody listens there: if not (connect fails with ECONNREFUSED,
 *     the file was left by a crashed server) the stale file is removed and replaced; if a server is
 *     listening, -EADDRINUSE. A file that is not a socket is never removed (-EADDRINUSE).
 *     Asking means connecting: a live server sees one client that disconnects at once (its
 *     accept returns a connection whose first receive gives MP_EEOF). Abstract names leave no
 *     files behind, so they are never stale: a name in use is always -EADDRINUSE.
 *     The listener removes its socket file when it is closed, if the file is still the one it
 *     created and the caller is the process that created the listener (not a forked child).
 *     Processes creating a listener at one path at once: exactly one succeeds, the others get
 *     -EADDRINUSE (creation and removal hold an flock on the path's directory; see docs/socket.md).
 *
 * Connections are AF_UNIX SOCK_STREAM, close-on-exec, framed like pipes: an accepted or connected
 * end is an ordinary mp_conn (mp_conn_send/recv/poll, mp_wait, mp_conn_peer; free with
 * mp_conn_free).
 *
 * Peer check: the kernel reports the connecting process's credentials (SO_PEERCRED), which cannot
 * be forged. By default a listener accepts only peers whose uid equals the listener's effective
 * uid; any other peer is disconnected at once and accept returns MP_EPEERCRED (call accept again
 * to wait for the next client). mp_listener_allow_any_uid() lifts the check. The client side does
 * not check the server; use mp_conn_peer on the connected end when that matters.
 *
 * Timeouts follow mproc/pipe.h: only MP_FOREVER (or +INFINITY) waits without limit; 0 and any
 * other negative value do not wait, and "not within the time given" is -ETIMEDOUT.
 *
 * Threads: a listener must not be used by two threads at once. None of these calls is
 * async-signal-safe except mp_listener_fileno.
 */
#ifndef MPROC_SOCKET_H
#define MPROC_SOCKET_H

#include "common.h"
#include "pipe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_listener mp_listener;

/* Creates a listener bound to address (see above) with the given backlog (<= 0: SOMAXCONN).
 * The caller owns it (mp_listener_free).
 * Errors: -EINVAL (out or address NULL, address empty or "@" alone), -ENAMETOOLONG (address over
 * 107 bytes), -EADDRINUSE (a live server listens there, or a non-socket file is in the way),
 * -EACCES / -ENOENT / -ENOTDIR (the path's directory), -EMFILE, -ENOMEM. */
MP_API int mp_listener_new(mp_listener **out, const char *address, int backlog);

/* Accept peers of any uid (allow true) or only the listener's own uid (false, the default).
 * Errors: -EINVAL, MP_ECLOSED. */
MP_API int mp_listener_allow_any_uid(mp_listener *l, bool allow);

/* Waits for a client for up to timeout seconds and returns its connection in *conn (owned by the
 * caller). Timeout 0 (or negative, but MP_FOREVER) takes a waiting client without waiting:
 * -ETIMEDOUT when there is none. Errors: -EINVAL (l or conn NULL), MP_ECLOSED, -ETIMEDOUT,
 * MP_EPEERCRED (the client runs as another user: it was disconnected; *conn is untouched),
 * -EMFILE/-ENFILE, -ENOMEM. */
MP_API int mp_listener_accept(mp_listener *l, mp_conn **conn, double timeout);

/* The listener's address as given to mp_listener_new (borrowed, valid until free; "" for NULL). */
MP_API const char *mp_listener_address(const mp_listener *l);

/* The listening fd, readable when a client is waiting (for mp_wait or poll). Do not accept on it
 * yourself. Returns the fd, -EINVAL or MP_ECLOSED. Async-signal-safe. */
MP_API int mp_listener_fileno(const mp_listener *l);

/* Stops listening: closes the fd and removes the socket file (see above). Clients connecting later
 * get -ECONNREFUSED / -ENOENT; connections already accepted are not affected. Idempotent: returns
 * 0 every time (also for NULL); later calls on the listener return MP_ECLOSED. */
MP_API int mp_listener_close(mp_listener *l);

/* Closes (if needed) and releases the listener, then sets *pp to NULL. NULL-safe; returns 0. */
MP_API int mp_listener_free(mp_listener **pp);

/* Connects to the listener at address, waiting up to timeout seconds for a listener that exists
 * but whose backlog is full. Does not wait for a listener that does not exist yet.
 * Errors: -EINVAL (conn or address NULL or empty), -ENAMETOOLONG, -ECONNREFUSED (nobody listens
 * at that name, or a stale socket file), -ENOENT (no such path), -EACCES, -ETIMEDOUT, -EMFILE,
 * -ENOMEM. */
MP_API int mp_client_connect(mp_conn **conn, const char *address, double timeout);

#ifdef __cplusplus
}
#endif
#endif
