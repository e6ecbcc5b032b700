/* SPDX-License-Identifier: MIT */
/* mproc/shared.h - shared memory: Python's Value, Array and shared_memory, in C.
 *
 *     mp_value *n;
 *     mp_value_new(&n, MP_TYPE_INT, NULL, true);  // Value('i', 0): an int with its own lock
 *     // in any process forked after this point:
 *     mp_lock_acquire(mp_value_lock(n), MP_FOREVER);
 *     int64_t x; mp_value_get_i64(n, &x); mp_value_set_i64(n, x + 1);
 *     mp_lock_release(mp_value_lock(n));
 *     // or, lock-free:  mp_value_add(n, 1, NULL);
 *     mp_value_free(&n);
 *
 * Value and Array live in anonymous MAP_SHARED memory: every process forked after mp_*_new() sees
 * the same bytes at the same address. A synchronized object (the default in Python) carries a
 * process-shared recursive lock (an RLock, see mproc/sync.h), taken by every get/set/read/write
 * call, and available to the caller for read-modify-write sequences; the calls also work while
 * the caller holds it (they see that it does and skip the lock, so "acquire; get; set; release"
 * costs one lock operation). A raw object has no lock (mp_*_lock() gives NULL).
 *
 * Lock owner died: when a process holding an object's lock dies, the next get/set/read/write
 * takes the lock over, does its work, and returns -EOWNERDEAD instead of 0 (the result is valid:
 * *out is filled, the store was made). It tells the caller that a multi-step update by the dead
 * process may be half done. The lock is marked consistent at once, so only one caller sees it.
 * A lock that cannot be taken at all (-ENOTRECOVERABLE: someone took it over from a dead holder
 * with raw pthread calls and released it without pthread_mutex_consistent) is reported as that
 * error, and nothing is read or stored.
 *
 * Atomic operations (mp_value_add/cas, mp_array_add/cas) exist for the integer types (Python has
 * none). They never take the lock: mixing them with lock-protected get+set sequences on the same
 * element is the caller's business. Arithmetic wraps modulo 2^bits, as C's unsigned arithmetic.
 *
 * Named blocks (mp_shm_*) can be attached by name from processes that did not fork from the
 * creator. See the section below for names, permissions and clean-up.
 *
 * Thread safety: the objects may be used from several threads and processes at once (that is
 * their point); mp_*_free() must not race with other calls on the same handle in one process.
 * Memory footprint: each Value or Array takes its own mapping (at least one 4 KiB page).
 */
#ifndef MPROC_SHARED_H
#define MPROC_SHARED_H

#include "common.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The element types, with Python's ctypes/array type codes as values, so 'i' works as well as
 * MP_TYPE_INT. Sizes are those of this platform's C types (LP64 Linux: long is 8 bytes).
 *   'c' char (c_char: one byte, read back as 0..255)    'b'/'B' signed/unsigned char
 *   'h'/'H' short / unsigned short                      'i'/'I' int / unsigned int
 *   'l'/'L' long / unsigned long                        'q'/'Q' long long / unsigned long long
 *   'f' float   'd' double   '?' bool (_Bool, 0 or 1)   'n' size_t                          */
typedef enum mp_type {
    MP_TYPE_CHAR = 'c',
    MP_TYPE_BYTE = 'b',
    MP_TYPE_UBYTE = 'B',
    MP_TYPE_SHORT = 'h',
    MP_TYPE_USHORT = 'H',
    MP_TYPE_INT = 'i',
    MP_TYPE_UINT = 'I',
    MP_TYPE_LONG = 'l',
    MP_TYPE_ULONG = 'L',
    MP_TYPE_LONGLONG = 'q',
    MP_TYPE_ULONGLONG = 'Q',
    MP_TYPE_FLOAT = 'f',
    MP_TYPE_DOUBLE = 'd',
    MP_TYPE_BOOL = '?',
    MP_TYPE_SIZE = 'n',
} mp_type;

/* Size in bytes of one element of `type`, or MP_ETYPE for an unknown code. Async-signal-safe. */
MP_API int mp_type_size(int type);
/* The ctypes name of a type ("c_int", "c_double", ...), or "unknown". Never NULL. */
MP_API const char *mp_type_name(int type);

/* ---- Value --------------------------------------------------------------------------------- */

typedef struct mp_value mp_value;

/* Creates a shared Value of `type`. init points at one element of that C type to copy in (an
 * `int` for 'i', a `double` for 'd', ...) or is NULL for zero. synchronized: true gives the value
 * its own RLock (Python's default, lock=True), false a raw value (lock=False).
 * The caller owns the handle; processes forked afterwards share the memory, and each frees its
 * own handle (the memory goes when the last process unmaps it).
 * Errors: -EINVAL (out NULL), MP_ETYPE (unknown type), MP_ERANGE ('?' init not 0 or 1),
 * -ENOMEM. */
MP_API int mp_value_new(mp_value **out, int type, const void *init, bool synchronized);

/* Releases the handle (unmaps this process's view) and sets *pp to NULL. NULL-safe. Another
 * process holding the lock is not affected. Returns 0, or -EBUSY while the calling thread holds
 * the value's lock (release it first; see mp_lock_free). */
MP_API int mp_value_free(mp_value **pp);

/* The type code, or -EINVAL for NULL. */
MP_API int mp_value_type(const mp_value *v);

/* The value's lock (borrowed, valid until mp_value_free), or NULL for a raw value or NULL v. */
MP_API mp_lock *mp_value_lock(const mp_value *v);

/* The element itself, for code that holds the lock or uses its own atomics. NULL for NULL v. */
MP_API void *mp_value_ptr(const mp_value *v);

/* Typed access, under the lock when synchronized.
 *   _i64: integer types ('c','b','B','h','H','i','I','l','L','q','Q','n','?').
 *   _u64: the same types; the natural choice for 'Q', 'L', 'n'.
 *   _f64: 'f' and 'd' only.
 * set checks that x fits the type (bool: 0 or 1) and returns MP_ERANGE without storing when it
 * does not; get returns MP_ERANGE when the value does not fit the out type (a negative value via
 * _u64, or one above INT64_MAX via _i64).
 * Errors: -EINVAL (NULL v or out), MP_ETYPE (wrong family of type), MP_ERANGE, -EOWNERDEAD (done,
 * but the lock was taken over from a dead holder; see above), -ENOTRECOVERABLE (not done). Not
 * async-signal-safe when synchronized (a handler interrupting the holder would deadlock on the
 * lock's owner check). */
MP_API int mp_value_get_i64(const mp_value *v, int64_t *out);
MP_API int mp_value_set_i64(mp_value *v, int64_t x);
MP_API int mp_value_get_u64(const mp_value *v, uint64_t *out);
MP_API int mp_value_set_u64(mp_value *v, uint64_t x);
MP_API int mp_value_get_f64(const mp_value *v, double *out);
MP_API int mp_value_set_f64(mp_value *v, double x);

/* Untyped access: copy the element to/from a C object of exactly the element's size.
 * Errors: -EINVAL (NULL), MP_ETYPE (size differs from the element size), -EOWNERDEAD as above. */
MP_API int mp_value_read(const mp_value *v, void *out, size_t size);
MP_API int mp_value_write(mp_value *v, const void *in, size_t size);

/* Atomically adds delta (wrapping in the element's width) and stores the previous value in *old
 * (may be NULL; for unsigned 64-bit types it carries the bit pattern). Lock-free: does not take
 * the lock. Async-signal-safe. Errors: -EINVAL, MP_ETYPE (float, double or bool). */
MP_API int mp_value_add(mp_value *v, int64_t delta, int64_t *old);

/* Atomically: if the value equals expected, store desired. *swapped (may be NULL) says whether it
 * did. Lock-free, async-signal-safe. Errors: -EINVAL, MP_ETYPE (float, double), MP_ERANGE
 * (expected or desired does not fit the type). */
MP_API int mp_value_cas(mp_value *v, int64_t expected, int64_t desired, bool *swapped);

/* ---- Array --------------------------------------------------------------------------------- */

typedef struct mp_array mp_array;

/* Creates a shared Array of count elements of `type`: from initial values (init points at count
 * C elements, like Python's Array('i', [1, 2, 3])) or zero-filled (init NULL, like Array('i', 3)).
 * synchronized as for mp_value_new. Ownership and sharing as for Value.
 * Errors: -EINVAL (out NULL, count 0, or count * size overflows), MP_ETYPE, -ENOMEM. */
MP_API int mp_array_new(mp_array **out, int type, size_t count, const void *init,
                        bool synchronized);
/* Releases the handle and sets *pp to NULL. NULL-safe. Returns 0, or -EBUSY while the calling
 * thread holds the array's lock. */
MP_API int mp_array_free(mp_array **pp);

/* Number of elements (0 for NULL). */
MP_API size_t mp_array_len(const mp_array *a);
/* Type code, or -EINVAL. */
MP_API int mp_array_type(const mp_array *a);
/* The lock (borrowed) or NULL for a raw array / NULL a. */
MP_API mp_lock *mp_array_lock(const mp_array *a);
/* The first element, for the fast path (hold the lock, or use your own atomics). NULL for NULL. */
MP_API void *mp_array_ptr(const mp_array *a);

/* Element access by index, as the Value calls, plus MP_ERANGE for index >= length. */
MP_API int mp_array_get_i64(const mp_array *a, size_t index, int64_t *out);
MP_API int mp_array_set_i64(mp_array *a, size_t index, int64_t x);
MP_API int mp_array_get_u64(const mp_array *a, size_t index, uint64_t *out);
MP_API int mp_array_set_u64(mp_array *a, size_t index, uint64_t x);
MP_API int mp_array_get_f64(const mp_array *a, size_t index, double *out);
MP_API int mp_array_set_f64(mp_array *a, size_t index, double x);

/* Bulk copies of n elements starting at index `start`, under the lock once (Python's slices).
 * dst/src are C arrays of the element type. n == 0 is a no-op.
 * Errors: -EINVAL (NULL a, or NULL buffer with n > 0), MP_ERANGE (start + n > length),
 * -EOWNERDEAD as for Value. */
MP_API int mp_array_read(const mp_array *a, size_t start, void *dst, size_t n);
MP_API int mp_array_write(mp_array *a, size_t start, const void *src, size_t n);

/* Atomic add and compare-and-swap on one element, as mp_value_add / mp_value_cas, plus MP_ERANGE
 * for an index out of range. */
MP_API int mp_array_add(mp_array *a, size_t index, int64_t delta, int64_t *old);
MP_API int mp_array_cas(mp_array *a, size_t index, int64_t expected, int64_t desired,
                        bool *swapped);

/* ---- named shared memory blocks (Python's shared_memory.SharedMemory) ------------------------
 *
 * Names: every block lives in /dev/shm under a name that starts with "mproc" (so
 * `ls /dev/shm/mproc*` finds all of them). A user name is "mproc..." or "/mproc...": at most 200
 * bytes counting the leading '/' (so 199 after it), no further '/'. A NULL name makes a unique
 * one, "/mproc.<pid>.<counter>.<random>".
 * Blocks are created 0600 (owner only) with O_EXCL: a name already taken is an error (-EEXIST),
 * never a silent attach to someone else's block.
 *
 * Life cycle: the creator unlinks the name when it frees the block, and an atexit handler unlinks
 * every name the process created and still owns, so no entry outlives a program that exits
 * normally (exit() or return from main). Children forked from the creator never unlink on free
 * or exit (they did not create the name). mp_shm_keep(b, true) opts out: the entry then stays
 * until someone calls mp_shm_unlink / mp_shm_unlink_name, or the machine reboots.
 * After a crash (SIGKILL, abort, or a child ending with _exit()) the entry stays in /dev/shm until
 * unlinked or reboot; generated names carry the creator's pid, and mp_shm_sweep() removes the
 * generated-name entries whose creator is dead and did not keep them. Unlinking only removes the
 * name: processes that have the block mapped keep using it; the memory goes with the last mapping.
 * Identity: a name can be unlinked by anyone and given to a new block. The creator's free and exit
 * and mp_shm_unlink(b) remove the name only while it still refers to the handle's own block
 * (same device and inode), never a newer block that took the name over.
 */
typedef struct mp_shm mp_shm;

/* Creates a block of size bytes (zero-filled) and maps it read-write. The caller owns the handle.
 * Errors: -EINVAL (out NULL, size 0 or above 2^48, bad name), -EEXIST (user name taken),
 * -ENOMEM, -ENOSPC, other -errno from shm_open/ftruncate/mmap. */
MP_API int mp_shm_new(mp_shm **out, const char *name, size_t size);

/* Maps an existing block by name, from any process of the same user. Its size is the block's.
 * The attaching process never unlinks the name on free or exit (unless it calls mp_shm_unlink).
 * Errors: -EINVAL (NULL or bad name), -ENOENT (no such block), -EACCES, -EAGAIN (the block exists
 * but its creator has not sized it yet: retry), -ENOMEM. */
MP_API int mp_shm_attach(mp_shm **out, const char *name);

/* The mapping (NULL for NULL b), its size (0), its name with the leading '/' ("" for NULL);
 * borrowed, valid until free. */
MP_API void *mp_shm_ptr(const mp_shm *b);
MP_API size_t mp_shm_size(const mp_shm *b);
MP_API const char *mp_shm_name(const mp_shm *b);

/* Removes the name from /dev/shm now (the mapping stays valid). Afterwards neither free nor the
 * atexit handler unlinks it again. Errors: -EINVAL, -ENOENT (already unlinked by anyone, or the
 * name now refers to another block, which is left alone). */
MP_API int mp_shm_unlink(mp_shm *b);
/* Unlinks a block by name without mapping it, whichever block has the name now.
 * Errors: -EINVAL (bad name), -ENOENT, -EACCES. */
MP_API int mp_shm_unlink_name(const char *name);

/* keep == true: the creator will not unlink the name on free or at exit (the block outlives the
 * program on purpose); false restores the default. Only meaningful in the creating process.
 * Errors: -EINVAL. */
MP_API int mp_shm_keep(mp_shm *b, bool keep);

/* Unmaps the block, unlinks it when this process created it (and did not keep it) and the name
 * still refers to it, releases the handle, and sets *pp to NULL. NULL-safe. Returns 0. */
MP_API int mp_shm_free(mp_shm **pp);

/* Removes the /dev/shm entries with generated names ("mproc.<pid>.<n>.<r>") whose creator pid
 * no longer exists (left behind by crashed programs). Stores how many were removed in *removed
 * (may be NULL). A pid reused by an unrelated live process keeps its entries (conservative).
 * Never removed: user-named blocks (even a name that has the generated form), kept blocks
 * (mp_shm_keep), other users' blocks. The mark it goes by is the sticky bit (mode 01600) that
 * mproc sets on a generated block while its creator means to unlink it; blocks made by earlier
 * mproc versions lack it and are left alone. Returns 0 or -errno from reading /dev/shm. */
MP_API int mp_shm_sweep(int *removed);

#ifdef __cplusplus
}
#endif
#endif
