/* SPDX-License-Identifier: MIT */
/* mproc/queue.h - multi-producer, multi-consumer message queues in shared memory: Python's
 * multiprocessing.Queue and JoinableQueue, in C.
 *
 *     mp_queue *q;
 *     mp_queue_new(&q, 0, 0);                       // unbounded in messages, 1 MiB ring
 *     if (fork() == 0) {                            // or mp_process_start()
 *         mp_queue_put(q, "hello", 5, MP_FOREVER);  // returns once the message is in the queue
 *         _exit(0);
 *     }
 *     char buf[64]; size_t n;
 *     mp_queue_get(q, buf, sizeof buf, &n, 5.0);    // waits at most 5 s
 *     mp_queue_free(&q);
 *
 * What a queue is: a byte ring in shared memory (MAP_SHARED: anonymous, or a memfd after
 * mp_init(), so it can be passed to spawn/forkserver children), created by mp_queue_new
 * and inherited by every process forked after it (directly or through mp_process_start). All of
 * them may put and get. A process that did not fork from the creator cannot reach the queue: use
 * a local socket (mproc/socket.h) between unrelated processes. There is no feeder thread: put
 * returns only when the whole message is in the queue (or with an error, in which case none of it
 * will ever be received), so nothing is lost silently.
 *
 * Messages are byte strings of 0 to MP_QUEUE_MSG_MAX bytes. Messages are delivered whole, once,
 * in the order they were put (FIFO across the queue, hence also per producer). A message larger
 * than half the ring goes whole when the ring has room for it at that moment (so a message up to
 * the ring's size goes into an empty queue with no consumer running); otherwise it is streamed
 * through the ring in chunks: its producer keeps the producer side until the last chunk is in, and
 * its consumer keeps the consumer side until it has taken the last chunk, so big messages never
 * interleave with others.
 *
 * Crash safety: a process killed at any instant (SIGKILL included) inside any call leaves the
 * queue usable and consistent for the others: no hang, and no torn, duplicated or reordered
 * message. The message in flight in the killed process is lost or delivered whole, never both and
 * never in part: a put killed before its message was committed is never received (a partly
 * streamed big message is withdrawn or skipped, as for a put that fails); a get killed before it
 * took the message leaves
 * it for the next consumer; a get killed after it took the message (or part of a streamed one)
 * loses that message. Sides are protected by process-shared robust mutexes; the next process that
 * enters a side whose owner died repairs it first (see docs/queue.md). Every wait, for a side's
 * mutex too, sleeps in 20 ms slices and re-checks, so a wake-up lost with a process killed right
 * after it was woken costs the others at most one slice: a put never stays blocked while the
 * queue has room, nor a get while it has messages.
 *
 * Timeouts are seconds as a double on CLOCK_MONOTONIC (docs/conventions.md): MP_FOREVER (or
 * +INFINITY) is the only "no limit"; 0, and any other negative value or NaN, does not wait. A
 * call that could not finish in the time given, waiting or not (the *_nowait forms are the same
 * calls with timeout 0), returns -ETIMEDOUT. Signals never interrupt a call (EINTR is retried
 * against the same deadline).
 *
 * Thread safety: every call may be used from many processes and threads at once on the same queue,
 * except mp_queue_free, which the caller must not race with other calls on the same handle.
 * No call is async-signal-safe (they take mutexes). All calls are safe in a child after fork.
 */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "common.h"
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_queue mp_queue;

/* Byte capacity of the ring when mp_queue_new is given 0. */
#define MP_QUEUE_DEFAULT_CAPACITY ((size_t)1 << 20)
/* Bounds on the ring's byte capacity (a capacity is rounded up to a multiple of 64). */
#define MP_QUEUE_MIN_CAPACITY ((size_t)256)
#define MP_QUEUE_MAX_CAPACITY ((size_t)1 << 32)
/* Largest maxsize (in messages) accepted by mp_queue_new. */
#define MP_QUEUE_MAXSIZE_MAX ((size_t)UINT32_MAX)
/* Largest message, in bytes (1 TiB). Bigger messages are refused with MP_ETOOBIG. */
#define MP_QUEUE_MSG_MAX ((size_t)1 << 40)

/* Creates a queue: a shared mapping holding the ring (capacity_bytes, 0 for
 * MP_QUEUE_DEFAULT_CAPACITY) plus a small control block. maxsize_msgs bounds the number of
 * messages in the queue (0: bounded only by the ring's bytes). The caller owns the handle; every
 * process forked afterwards has its own copy of it and frees it on its own.
 * Errors: -EINVAL (out NULL, capacity below MP_QUEUE_MIN_CAPACITY or above MP_QUEUE_MAX_CAPACITY,
 * maxsize above MP_QUEUE_MAXSIZE_MAX), -ENOMEM. */
MP_API int mp_queue_new(mp_queue **out, size_t maxsize_msgs, size_t capacity_bytes);

/* As mp_queue_new, for a JoinableQueue: every put counts one unfinished task; consumers call
 * mp_queue_task_done for each message they got, and mp_queue_join waits until none is left. */
MP_API int mp_queue_new_joinable(mp_queue **out, size_t maxsize_msgs, size_t capacity_bytes);

/* Puts a copy of buf[0..len) at the tail, waiting up to timeout for room (a slot under maxsize
 * and bytes in the ring). Returns 0 once the whole message is in the queue; the caller keeps buf.
 * A put that fails, for any reason, leaves the queue as it was: qsize, full, the maxsize slot and
 * a JoinableQueue's unfinished count do not count it, and no consumer receives any of it or gets
 * MP_ETOOSMALL for it. A big message partly streamed when the put fails is withdrawn from the ring
 * when no consumer has taken a chunk of it yet (this may take the consumer side for an instant,
 * waiting up to 40 ms beyond the timeout for it), otherwise consumers skip what is left of it.
 * Errors: -EINVAL (q NULL or freed, buf NULL with len > 0), MP_ETOOBIG (len > MP_QUEUE_MSG_MAX),
 * MP_ECLOSED (the queue is closed, also when it gets closed during the wait), -ETIMEDOUT. */
MP_API int mp_queue_put(mp_queue *q, const void *buf, size_t len, double timeout);

/* mp_queue_put with timeout 0: -ETIMEDOUT when the message cannot go in at once (in particular,
 * always for a message larger than the ring's free space). */
MP_API int mp_queue_put_nowait(mp_queue *q, const void *buf, size_t len);

/* mp_queue_put of one message gathered from iov[0..iovcnt) (a header and a body without a copy).
 * Errors as mp_queue_put, and -EINVAL for iovcnt < 0 or > 1024, iov NULL with iovcnt > 0, or an
 * entry with a NULL base and a non-zero length. */
MP_API int mp_queue_putv(mp_queue *q, const struct iovec *iov, int iovcnt, double timeout);

/* Puts the messages msgs[0..n) at the tail in order, one message per iovec (iov_base, iov_len),
 * as one batch: the producer side is taken once for all of them and whole messages are published
 * in groups with one commit each, so small messages cost a fraction of one mp_queue_put each.
 * No other producer's message comes between them. Waits up to timeout (for the whole call) for
 * room as needed; timeout 0 puts what fits at once. Returns n once all are in the queue. When the
 * wait ends first (timeout, or the queue closed meanwhile) after some were put, returns how many
 * (the first k; the others are not in the queue and will never be received, as for a failed put:
 * a big message partly streamed is withdrawn or skipped). Messages bigger than half the ring are
 * streamed as by mp_queue_put (timeout 0 never starts a stream it cannot finish at once).
 * Crash: a producer killed inside the call has put a prefix of the batch; the rest is never
 * received. Returns 0 for n == 0. Errors, only when none was put: -EINVAL (q NULL or freed, msgs
 * NULL with n > 0, an entry with a NULL base and a non-zero length: then nothing is put),
 * MP_ETOOBIG (an entry over MP_QUEUE_MSG_MAX: nothing is put), MP_ECLOSED, -ETIMEDOUT. */
MP_API ssize_t mp_queue_put_many(mp_queue *q, const struct iovec *msgs, size_t n, double timeout);

/* Takes the message at the head into buf[0..cap), waiting up to timeout for one, and stores its
 * length in *len. When cap is too small, returns MP_ETOOSMALL, stores the size needed in *len and
 * leaves the message in the queue (buf may be NULL with cap 0 to ask for the size).
 * Once the first chunk of a streamed message has been taken, the call waits for the rest beyond
 * its timeout as long as the producer lives (that producer is bounded by its own timeout; if it
 * gives up or dies, the message is discarded and the call goes on to the next). MP_ETOOSMALL is
 * reported only for a message that is complete or still being streamed by a live producer; one
 * whose producer gave up or died is skipped.
 * Errors: -EINVAL (q or len NULL, buf NULL with cap > 0), MP_ETOOSMALL, -ETIMEDOUT,
 * MP_ECLOSED (closed and nothing left), MP_ECORRUPT (the shared memory was overwritten by
 * someone outside this library; the queue is unusable). */
MP_API int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout);

/* mp_queue_get with timeout 0: -ETIMEDOUT when no message is there at once. */
MP_API int mp_queue_get_nowait(mp_queue *q, void *buf, size_t cap, size_t *len);

/* As mp_queue_get, into a buffer the library allocates with malloc: on success *out (free it with
 * free(); never NULL, also for a 0-byte message) and *len are set. On error *out is NULL.
 * Errors as mp_queue_get (never MP_ETOOSMALL), and -ENOMEM (the message stays in the queue). */
MP_API int mp_queue_get_alloc(mp_queue *q, void **out, size_t *len, double timeout);

/* Takes up to n messages from the head in order, message i into bufs[i] (iov_base, iov_len its
 * capacity), and stores each one's length in lens[i]: the consumer side is taken once for all of
 * them. Waits up to timeout for the first message exactly as mp_queue_get does (streamed
 * messages and MP_ETOOSMALL included: then lens[0] holds the size needed); then takes, without
 * waiting, the messages already in the queue behind it, as long as each is a whole message (not
 * a streamed one) that fits its buffer. Returns how many were taken (1..n); what it stopped
 * before stays at the head. A message that came streamed ends the batch.
 * Crash: each message is taken on its own; a consumer killed inside the call loses the ones it
 * had taken (at most all of this batch), and the others stay in the queue for other consumers.
 * For a JoinableQueue every message taken counts one task for mp_queue_task_done.
 * Errors: -EINVAL (q, bufs or lens NULL, n == 0, an entry with a NULL base and a non-zero
 * length), MP_ETOOSMALL, -ETIMEDOUT, MP_ECLOSED (closed and nothing left), MP_ECORRUPT. */
MP_API ssize_t mp_queue_get_many(mp_queue *q, const struct iovec *bufs, size_t n, size_t *lens,
                                 double timeout);

/* The approximate number of messages in the queue (exact when nobody else is putting or getting),
 * >= 0, or -EINVAL. As in Python, it may change before the caller looks at it. */
MP_API ssize_t mp_queue_qsize(const mp_queue *q);
/* 1 when the queue holds no message, 0 when it holds some, -EINVAL. Approximate as qsize. */
MP_API int mp_queue_is_empty(const mp_queue *q);
/* 1 when qsize has reached maxsize (never for maxsize 0), 0 otherwise, -EINVAL. A put may still
 * wait for ring bytes when this says 0. */
MP_API int mp_queue_is_full(const mp_queue *q);

/* The ring's byte capacity and the maxsize given at creation (0 on NULL). */
MP_API size_t mp_queue_capacity(const mp_queue *q);
MP_API size_t mp_queue_maxsize(const mp_queue *q);

/* Closes the queue for every process that shares it (unlike Python, where close is per process):
 * later puts fail with MP_ECLOSED, gets drain what is left and then fail with MP_ECLOSED, and
 * every blocked put and get (in any process) wakes up. A put streaming a big message when the
 * queue is closed gives up (MP_ECLOSED; the message is discarded). Idempotent: returns 0 also
 * when already closed. Errors: -EINVAL. */
MP_API int mp_queue_close(mp_queue *q);
/* 1 when closed, 0 when open, -EINVAL. */
MP_API int mp_queue_is_closed(const mp_queue *q);

/* Busy-waiting for this handle (mproc/spin.h). A put waiting for room or a get waiting for a
 * message first spins for a few tens of microseconds while the other side last ran on another
 * CPU, then sleeps: that makes a cross-CPU hand-over take about a microsecond instead of tens,
 * and keeps the waiting CPU busy meanwhile. mp_queue_set_spin(q, 0) makes this handle's waits
 * sleep at once; any other value allows spinning again (the default for a new handle).
 * The setting belongs to the handle in the calling process, not to the queue: a producer may
 * spin while a consumer of the same queue sleeps. A process forked afterwards starts with its
 * parent's setting (its copy of the handle). The program-wide switch (MPROC_SPIN=0,
 * mp_spin_set(0)) turns spinning off whatever the handle says. Takes effect from the next wait;
 * may be called from any thread. Errors: -EINVAL (q NULL or freed). */
MP_API int mp_queue_set_spin(mp_queue *q, int enabled);
/* 1 when this handle's waits may spin (its own setting; the program-wide switch, mp_spin_get,
 * may still forbid it), 0 when set off, -EINVAL. */
MP_API int mp_queue_is_spin_enabled(const mp_queue *q);

/* Releases the calling process's handle (its mapping) and sets *qp to NULL. Other processes keep
 * theirs; the memory goes away with the last one. It does not close the queue. Returns 0; NULL
 * and &NULL are no-ops returning 0. A later call through the freed pointer's variable gets
 * -EINVAL. */
MP_API int mp_queue_free(mp_queue **qp);

/* JoinableQueue: marks one message taken with get as processed. Errors: -EINVAL (q NULL), MP_ETYPE
 * (not a joinable queue), MP_EOVERRELEASE (called more times than messages were put: Python's
 * ValueError). Works after close. */
MP_API int mp_queue_task_done(mp_queue *q);

/* JoinableQueue: waits up to timeout until every message put has been finished: marked with
 * task_done, discarded because its consumer died while it was being streamed, or lost with its
 * taker. Unlike Python's, join does not wait forever for a message whose taker died: the queue
 * records which process took each message (got and not yet task_done), and when that process is
 * gone (killed, exited, even while still a zombie) its messages count as finished and are added to
 * mp_queue_tasks_lost; join notices within 20 ms. Compare mp_queue_tasks_lost before and after
 * to know whether work was lost. Up to 256 taker processes are tracked at once (the slot of a
 * gone one is reused); messages got by further ones are waited for as in Python.
 * task_done is credited to the caller's own messages first, then to another live taker's (an item
 * handed on to another process for processing).
 * Returns 0 when no task is unfinished. Errors: -EINVAL, MP_ETYPE, -ETIMEDOUT (at the deadline). */
MP_API int mp_queue_join(mp_queue *q, double timeout);

/* JoinableQueue: the number of unfinished tasks (put and not yet finished, see mp_queue_join),
 * >= 0, or -EINVAL, MP_ETYPE. Items of a taker that died count until a join notices its death. */
MP_API ssize_t mp_queue_unfinished(const mp_queue *q);

/* JoinableQueue: how many messages were taken by a process that died before marking them with
 * task_done (counted finished for join), since the queue was created; >= 0, or -EINVAL,
 * MP_ETYPE. */
MP_API ssize_t mp_queue_tasks_lost(const mp_queue *q);

#ifdef __cplusplus
}
#endif
#endif
