/* SPDX-License-Identifier: MIT */
/* shared.c - Value and Array (mproc/shared.h): the type table and its conversions, and the typed
 * shared objects with their optional lock. Named blocks are in shared_shm.c.
 *
 * A Value is an Array of one element. Both live in one MAP_SHARED mapping (anonymous, or a memfd
 * after mp_init() so that it can travel to a spawned child: handoff.h) laid out as
 *     [0, 64)    header (type, count) for debugging and sanity checks
 *     [64, 128)  the RLock's state (synchronized objects)
 *     [128, ..)  the elements, 64-byte aligned so every element is naturally aligned for atomics
 * Element loads and stores are relaxed atomics of the element's width, so a raw object read while
 * another process writes gives an old or a new value, never a torn one.
 */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "atomics.h"
#include "handoff.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "platform/platform.h"
#include "sync_internal.h"

/* ---- types --------------------------------------------------------------------------------- */

enum family { F_SIGNED, F_UNSIGNED, F_CHAR, F_BOOL, F_FLOAT };

typedef struct tinfo {
    char code;
    unsigned char size;
    unsigned char family;
    const char *name;
} tinfo;

static const tinfo types[] = {
    {'c', sizeof(char), F_CHAR, "c_char"},
    {'b', sizeof(signed char), F_SIGNED, "c_byte"},
    {'B', sizeof(unsigned char), F_UNSIGNED, "c_ubyte"},
    {'h', sizeof(short), F_SIGNED, "c_short"},
    {'H', sizeof(unsigned short), F_UNSIGNED, "c_ushort"},
    {'i', sizeof(int), F_SIGNED, "c_int"},
    {'I', sizeof(unsigned), F_UNSIGNED, "c_uint"},
    {'l', sizeof(long), F_SIGNED, "c_long"},
    {'L', sizeof(unsigned long), F_UNSIGNED, "c_ulong"},
    {'q', sizeof(long long), F_SIGNED, "c_longlong"},
    {'Q', sizeof(unsigned long long), F_UNSIGNED, "c_ulonglong"},
    {'f', sizeof(float), F_FLOAT, "c_float"},
    {'d', sizeof(double), F_FLOAT, "c_double"},
    {'?', sizeof(_Bool), F_BOOL, "c_bool"},
    {'n', sizeof(size_t), F_UNSIGNED, "c_size_t"},
};

static const tinfo *type_info(int code)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].code == code) return &types[i];
    return NULL;
}

int mp_type_size(int type)
{
    const tinfo *t = type_info(type);
    return t ? t->size : MP_ETYPE;
}

const char *mp_type_name(int type)
{
    const tinfo *t = type_info(type);
    return t ? t->name : "unknown";
}

static uint64_t raw_load(const void *p, int size)
{
    switch (size) {
    case 1:
        return mp__load_relaxed(mp__as_atomic(uint8_t, p));
    case 2:
        return mp__load_relaxed(mp__as_atomic(uint16_t, p));
    case 4:
        return mp__load_relaxed(mp__as_atomic(uint32_t, p));
    default:
        return mp__load_relaxed(mp__as_atomic(uint64_t, p));
    }
}

static void raw_store(void *p, int size, uint64_t bits)
{
    switch (size) {
    case 1:
        mp__store_relaxed(mp__as_atomic(uint8_t, p), (uint8_t)bits);
        break;
    case 2:
        mp__store_relaxed(mp__as_atomic(uint16_t, p), (uint16_t)bits);
        break;
    case 4:
        mp__store_relaxed(mp__as_atomic(uint32_t, p), (uint32_t)bits);
        break;
    default:
        mp__store_relaxed(mp__as_atomic(uint64_t, p), bits);
    }
}

static int64_t sign_extend(uint64_t bits, int size)
{
    int shift = 64 - 8 * size;
    return (int64_t)(bits << shift) >> shift;
}

static uint64_t umax_of(int size)
{
    return size == 8 ? UINT64_MAX : (1ull << (8 * size)) - 1;
}

/* Checks that x fits type t and gives its bit pattern. Returns 0, MP_ETYPE or MP_ERANGE. */
static int bits_from_i64(const tinfo *t, int64_t x, uint64_t *bits)
{
    int64_t lo, hi;
    switch (t->family) {
    case F_SIGNED:
        hi = (int64_t)(umax_of(t->size) >> 1);
        lo = -hi - 1;
        break;
    case F_CHAR:
        lo = SCHAR_MIN, hi = UCHAR_MAX;
        break;
    case F_BOOL:
        lo = 0, hi = 1;
        break;
    case F_UNSIGNED:
        lo = 0, hi = t->size == 8 ? INT64_MAX : (int64_t)umax_of(t->size);
        break;
    default:
        return MP_ETYPE;
    }
    if (x < lo || x > hi) return MP_ERANGE;
    *bits = (uint64_t)x & umax_of(t->size);
    return 0;
}

static int bits_from_u64(const tinfo *t, uint64_t x, uint64_t *bits)
{
    if (t->family == F_FLOAT) return MP_ETYPE;
    uint64_t hi = t->family == F_SIGNED ? umax_of(t->size) >> 1
                  : t->family == F_BOOL ? 1
                                        : umax_of(t->size);
    if (x > hi) return MP_ERANGE;
    *bits = x;
    return 0;
}

static int i64_from_bits(const tinfo *t, uint64_t bits, int64_t *out)
{
    if (t->family == F_FLOAT) return MP_ETYPE;
    if (t->family == F_SIGNED) {
        *out = sign_extend(bits, t->size);
        return 0;
    }
    if (bits > INT64_MAX) return MP_ERANGE;
    *out = (int64_t)bits;
    return 0;
}

static int u64_from_bits(const tinfo *t, uint64_t bits, uint64_t *out)
{
    if (t->family == F_FLOAT) return MP_ETYPE;
    if (t->family == F_SIGNED) {
        int64_t v = sign_extend(bits, t->size);
        if (v < 0) return MP_ERANGE;
        *out = (uint64_t)v;
        return 0;
    }
    *out = bits;
    return 0;
}

/* ---- the shared object behind Value and Array ------------------------------------------------ */

#define OBJ_MAGIC    0x6d706f62u /* "mpob" */
#define OBJ_LOCK_OFF 64
#define OBJ_DATA_OFF 128

typedef struct obj_hdr {
    uint32_t magic;
    uint32_t type;
    uint64_t count;
} obj_hdr;

struct mp_array {
    uint32_t magic;
    bool sync;
    const tinfo *t;
    size_t count;
    void *map;
    size_t map_size;
    char *data;
    mp__shm_fd mem; /* the mapping's memfd (fd -1: anonymous, cannot travel; handoff.h) */
    mp_lock lock;   /* embedded handle on the state at OBJ_LOCK_OFF */
};

struct mp_value {
    struct mp_array a;
};

static int obj_init(struct mp_array *a, int type, size_t count, const void *init, bool sync)
{
    const tinfo *t = type_info(type);
    if (!t) return MP_ETYPE;
    if (count == 0 || count > (SIZE_MAX - OBJ_DATA_OFF) / t->size) return -EINVAL;
    if (init && t->family == F_BOOL)
        for (size_t i = 0; i < count; i++)
            if (((const unsigned char *)init)[i] > 1) return MP_ERANGE;
    size_t size = OBJ_DATA_OFF + count * t->size;
    void *map;
    int r = mp__shm_fd_map(size, &map, &a->mem);
    if (r) return r;
    obj_hdr *h = map;
    h->magic = OBJ_MAGIC;
    h->type = (uint32_t)type;
    h->count = count;
    a->magic = MP__HANDLE_MAGIC;
    a->sync = sync;
    a->t = t;
    a->count = count;
    a->map = map;
    a->map_size = size;
    a->data = (char *)map + OBJ_DATA_OFF;
    if (init) memcpy(a->data, init, count * t->size);
    if (sync) {
        mp__lock_state *ls = (mp__lock_state *)((char *)map + OBJ_LOCK_OFF);
        if ((r = mp__lock_state_init(ls, true))) {
            mp__shm_unmap(map, size);
            mp__shm_fd_close(&a->mem);
            return r;
        }
        mp__lock_handle_embed(&a->lock, ls);
    }
    return 0;
}

/* True while the calling thread holds the object's lock: unmapping it then would break the
 * thread's robust list (see mp_lock_free). */
static bool obj_held(const struct mp_array *a)
{
    return a->sync && mp__lock_owned(&a->lock);
}

static inline bool obj_ok(const struct mp_array *a)
{
    return a && a->magic == MP__HANDLE_MAGIC;
}

/* The one constructor of Value and Array. A Value's only member is its one-element Array, so a
 * pointer to the Array is a pointer to the Value (C11 6.7.2.1p15) and one allocation serves both.
 */
static int obj_new(struct mp_array **out, int type, size_t count, const void *init, bool sync)
{
    _Static_assert(sizeof(struct mp_value) == sizeof(struct mp_array), "a Value is its Array");
    struct mp_array *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    int r = obj_init(a, type, count, init, sync);
    if (r) {
        free(a);
        return r;
    }
    *out = a;
    return 0;
}

/* The one destructor of Value and Array, for a non-NULL handle; the caller clears its pointer on
 * success. */
static int obj_free(struct mp_array *a)
{
    if (!obj_ok(a)) return -EINVAL;
    if (obj_held(a)) return -EBUSY;
    mp__shm_unmap(a->map, a->map_size);
    mp__shm_fd_close(&a->mem);
    a->magic = 0;
    free(a);
    return 0;
}

enum { OBJ_NOTHING = 0, OBJ_TAKEN = 1, OBJ_TAKEN_DEAD = 2 };

/* Take the object's lock when it has one and the caller does not hold it already (the usual
 * "lock; get; set; unlock" sequence then costs one lock operation, not three). Returns
 * OBJ_TAKEN, OBJ_NOTHING (nothing to take), OBJ_TAKEN_DEAD (taken from a dead holder), or a
 * negative error when the lock could not be taken (-ENOTRECOVERABLE, ...): the caller must then
 * leave the data alone and return the error. */
static int obj_lock(const struct mp_array *a)
{
    if (!a->sync || mp__lock_owned(&a->lock)) return OBJ_NOTHING;
    /* The handle is private and unchanged by acquire/release: only the shared lock changes, so
     * a read through a const object may take it. */
    int r = mp_lock_acquire((mp_lock *)&a->lock, MP_FOREVER);
    if (r == 0) return OBJ_TAKEN;
    return r == -EOWNERDEAD ? OBJ_TAKEN_DEAD : r;
}

static void obj_unlock(const struct mp_array *a, int taken)
{
    if (taken > 0) mp_lock_release((mp_lock *)&a->lock);
}

/* obj_lock's result as the caller's return value: 0, -EOWNERDEAD (done, after taking the lock
 * from a dead holder), or the error that kept it from taking the lock. */
static int dead_of(int taken)
{
    return taken == OBJ_TAKEN_DEAD ? -EOWNERDEAD : taken < 0 ? taken : 0;
}

/* True for results after which the data was accessed (0 or -EOWNERDEAD). */
static bool done(int r)
{
    return r == 0 || r == -EOWNERDEAD;
}

static int obj_get_bits(const struct mp_array *a, size_t i, uint64_t *bits)
{
    int taken = obj_lock(a);
    if (taken < 0) return taken;
    *bits = raw_load(a->data + i * a->t->size, a->t->size);
    obj_unlock(a, taken);
    return dead_of(taken);
}

static int obj_set_bits(struct mp_array *a, size_t i, uint64_t bits)
{
    int taken = obj_lock(a);
    if (taken < 0) return taken;
    raw_store(a->data + i * a->t->size, a->t->size, bits);
    obj_unlock(a, taken);
    return dead_of(taken);
}

static int obj_check(const struct mp_array *a, size_t i)
{
    if (!obj_ok(a)) return -EINVAL;
    return i < a->count ? 0 : MP_ERANGE;
}

/* The checks and the load every typed getter makes: the handle, the index, the out pointer and
 * the type's family (floating or not, as the getter wants), then the element's bits. Returns what
 * obj_get_bits does, or the error of a failed check. */
static int obj_get_checked(const struct mp_array *a, size_t i, const void *out, bool fp,
                           uint64_t *bits)
{
    int r = obj_check(a, i);
    if (r || !out) return r ? r : -EINVAL;
    if ((a->t->family == F_FLOAT) != fp) return MP_ETYPE;
    return obj_get_bits(a, i, bits);
}

static int obj_get_i64(const struct mp_array *a, size_t i, int64_t *out)
{
    uint64_t bits;
    int dead = obj_get_checked(a, i, out, false, &bits);
    if (!done(dead)) return dead;
    int r = i64_from_bits(a->t, bits, out);
    return r ? r : dead;
}

static int obj_get_u64(const struct mp_array *a, size_t i, uint64_t *out)
{
    uint64_t bits;
    int dead = obj_get_checked(a, i, out, false, &bits);
    if (!done(dead)) return dead;
    int r = u64_from_bits(a->t, bits, out);
    return r ? r : dead;
}

static int obj_set_i64(struct mp_array *a, size_t i, int64_t x)
{
    int r = obj_check(a, i);
    if (r) return r;
    uint64_t bits;
    if ((r = bits_from_i64(a->t, x, &bits))) return r;
    return obj_set_bits(a, i, bits);
}

static int obj_set_u64(struct mp_array *a, size_t i, uint64_t x)
{
    int r = obj_check(a, i);
    if (r) return r;
    uint64_t bits;
    if ((r = bits_from_u64(a->t, x, &bits))) return r;
    return obj_set_bits(a, i, bits);
}

static int obj_get_f64(const struct mp_array *a, size_t i, double *out)
{
    uint64_t bits;
    int dead = obj_get_checked(a, i, out, true, &bits);
    if (!done(dead)) return dead;
    if (a->t->size == sizeof(float)) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, sizeof f);
        *out = f;
    } else {
        memcpy(out, &bits, sizeof *out);
    }
    return dead;
}

static int obj_set_f64(struct mp_array *a, size_t i, double x)
{
    int r = obj_check(a, i);
    if (r) return r;
    if (a->t->family != F_FLOAT) return MP_ETYPE;
    uint64_t bits = 0;
    if (a->t->size == sizeof(float)) {
        if (isfinite(x) && (x > FLT_MAX || x < -FLT_MAX)) return MP_ERANGE;
        float f = (float)x;
        uint32_t b32;
        memcpy(&b32, &f, sizeof b32);
        bits = b32;
    } else {
        memcpy(&bits, &x, sizeof bits);
    }
    return obj_set_bits(a, i, bits);
}

static int obj_add(struct mp_array *a, size_t i, int64_t delta, int64_t *old)
{
    int r = obj_check(a, i);
    if (r) return r;
    const tinfo *t = a->t;
    if (t->family == F_FLOAT || t->family == F_BOOL) return MP_ETYPE;
    void *p = a->data + i * t->size;
    uint64_t prev;
    switch (t->size) {
    case 1:
        prev = mp__fetch_add(mp__as_atomic(uint8_t, p), (uint8_t)delta);
        break;
    case 2:
        prev = mp__fetch_add(mp__as_atomic(uint16_t, p), (uint16_t)delta);
        break;
    case 4:
        prev = mp__fetch_add(mp__as_atomic(uint32_t, p), (uint32_t)delta);
        break;
    default:
        prev = mp__fetch_add(mp__as_atomic(uint64_t, p), (uint64_t)delta);
    }
    if (old) *old = t->family == F_SIGNED ? sign_extend(prev, t->size) : (int64_t)prev;
    return 0;
}

/* The bits of x for a CAS operand: any value of the type, and for unsigned 64-bit types any bit
 * pattern (the int64 carries it). */
static int cas_bits(const tinfo *t, int64_t x, uint64_t *bits)
{
    if (t->family == F_UNSIGNED && t->size == 8) {
        *bits = (uint64_t)x;
        return 0;
    }
    return bits_from_i64(t, x, bits);
}

static int obj_cas(struct mp_array *a, size_t i, int64_t expected, int64_t desired, bool *swapped)
{
    int r = obj_check(a, i);
    if (r) return r;
    const tinfo *t = a->t;
    if (t->family == F_FLOAT) return MP_ETYPE;
    uint64_t e, d;
    if ((r = cas_bits(t, expected, &e)) || (r = cas_bits(t, desired, &d))) return r;
    void *p = a->data + i * t->size;
    bool ok;
    switch (t->size) {
    case 1: {
        uint8_t x = (uint8_t)e;
        ok = mp__cas(mp__as_atomic(uint8_t, p), &x, (uint8_t)d);
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)e;
        ok = mp__cas(mp__as_atomic(uint16_t, p), &x, (uint16_t)d);
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)e;
        ok = mp__cas(mp__as_atomic(uint32_t, p), &x, (uint32_t)d);
        break;
    }
    default: {
        uint64_t x = e;
        ok = mp__cas(mp__as_atomic(uint64_t, p), &x, d);
    }
    }
    if (swapped) *swapped = ok;
    return 0;
}

/* ---- Value --------------------------------------------------------------------------------- */

int mp_value_new(mp_value **out, int type, const void *init, bool synchronized)
{
    if (!out) return -EINVAL;
    struct mp_array *a;
    int r = obj_new(&a, type, 1, init, synchronized);
    if (!r) *out = (mp_value *)a;
    return r;
}

int mp_value_free(mp_value **pp)
{
    if (!pp || !*pp) return 0;
    int r = obj_free(&(*pp)->a);
    if (!r) *pp = NULL;
    return r;
}

int mp_value_type(const mp_value *v)
{
    return v && obj_ok(&v->a) ? v->a.t->code : -EINVAL;
}

mp_lock *mp_value_lock(const mp_value *v)
{
    return v && obj_ok(&v->a) && v->a.sync ? (mp_lock *)&v->a.lock : NULL;
}

void *mp_value_ptr(const mp_value *v)
{
    return v && obj_ok(&v->a) ? v->a.data : NULL;
}

#define VA(v) ((v) ? &(v)->a : NULL)

int mp_value_get_i64(const mp_value *v, int64_t *out)
{
    return obj_get_i64(VA(v), 0, out);
}

int mp_value_set_i64(mp_value *v, int64_t x)
{
    return obj_set_i64(VA(v), 0, x);
}

int mp_value_get_u64(const mp_value *v, uint64_t *out)
{
    return obj_get_u64(VA(v), 0, out);
}

int mp_value_set_u64(mp_value *v, uint64_t x)
{
    return obj_set_u64(VA(v), 0, x);
}

int mp_value_get_f64(const mp_value *v, double *out)
{
    return obj_get_f64(VA(v), 0, out);
}

int mp_value_set_f64(mp_value *v, double x)
{
    return obj_set_f64(VA(v), 0, x);
}

int mp_value_add(mp_value *v, int64_t delta, int64_t *old)
{
    return obj_add(VA(v), 0, delta, old);
}

int mp_value_cas(mp_value *v, int64_t expected, int64_t desired, bool *swapped)
{
    return obj_cas(VA(v), 0, expected, desired, swapped);
}

/* ---- Array --------------------------------------------------------------------------------- */

int mp_array_new(mp_array **out, int type, size_t count, const void *init, bool synchronized)
{
    return out ? obj_new(out, type, count, init, synchronized) : -EINVAL;
}

int mp_array_free(mp_array **pp)
{
    if (!pp || !*pp) return 0;
    int r = obj_free(*pp);
    if (!r) *pp = NULL;
    return r;
}

size_t mp_array_len(const mp_array *a)
{
    return obj_ok(a) ? a->count : 0;
}

int mp_array_type(const mp_array *a)
{
    return obj_ok(a) ? a->t->code : -EINVAL;
}

mp_lock *mp_array_lock(const mp_array *a)
{
    return obj_ok(a) && a->sync ? (mp_lock *)&a->lock : NULL;
}

void *mp_array_ptr(const mp_array *a)
{
    return obj_ok(a) ? a->data : NULL;
}

int mp_array_get_i64(const mp_array *a, size_t index, int64_t *out)
{
    return obj_get_i64(a, index, out);
}

int mp_array_set_i64(mp_array *a, size_t index, int64_t x)
{
    return obj_set_i64(a, index, x);
}

int mp_array_get_u64(const mp_array *a, size_t index, uint64_t *out)
{
    return obj_get_u64(a, index, out);
}

int mp_array_set_u64(mp_array *a, size_t index, uint64_t x)
{
    return obj_set_u64(a, index, x);
}

int mp_array_get_f64(const mp_array *a, size_t index, double *out)
{
    return obj_get_f64(a, index, out);
}

int mp_array_set_f64(mp_array *a, size_t index, double x)
{
    return obj_set_f64(a, index, x);
}

static int range_check(const mp_array *a, size_t start, const void *buf, size_t n)
{
    if (!obj_ok(a) || (n > 0 && !buf)) return -EINVAL;
    if (start > a->count || n > a->count - start) return MP_ERANGE;
    return 0;
}

int mp_array_read(const mp_array *a, size_t start, void *dst, size_t n)
{
    int r = range_check(a, start, dst, n);
    if (r || n == 0) return r;
    int taken = obj_lock(a);
    if (taken < 0) return taken;
    memcpy(dst, a->data + start * a->t->size, n * a->t->size);
    obj_unlock(a, taken);
    return dead_of(taken);
}

int mp_array_write(mp_array *a, size_t start, const void *src, size_t n)
{
    int r = range_check(a, start, src, n);
    if (r || n == 0) return r;
    if (a->t->family == F_BOOL)
        for (size_t i = 0; i < n; i++)
            if (((const unsigned char *)src)[i] > 1) return MP_ERANGE;
    int taken = obj_lock(a);
    if (taken < 0) return taken;
    memcpy(a->data + start * a->t->size, src, n * a->t->size);
    obj_unlock(a, taken);
    return dead_of(taken);
}

int mp_array_add(mp_array *a, size_t index, int64_t delta, int64_t *old)
{
    return obj_add(a, index, delta, old);
}

int mp_array_cas(mp_array *a, size_t index, int64_t expected, int64_t desired, bool *swapped)
{
    return obj_cas(a, index, expected, desired, swapped);
}

/* Untyped Value access goes through the same lock as the typed calls. */
int mp_value_read(const mp_value *v, void *out, size_t size)
{
    if (!v || !obj_ok(&v->a) || !out) return -EINVAL;
    if (size != v->a.t->size) return MP_ETYPE;
    return mp_array_read(&v->a, 0, out, 1);
}

int mp_value_write(mp_value *v, const void *in, size_t size)
{
    if (!v || !obj_ok(&v->a) || !in) return -EINVAL;
    if (size != v->a.t->size) return MP_ETYPE;
    return mp_array_write(&v->a, 0, in, 1);
}

/* ---- handoff to a spawned or forkserver child (handoff.h) ------------------------------------
 * A Value or Array travels as its memfd: header, lock and elements are one mapping, so the child
 * works on the same elements under the same RLock (a holder that dies on either side is reported
 * to the next locker as -EOWNERDEAD, as under fork). */

#define OBJ_DESC_MAGIC 0x6d706876u /* "mphv" */

struct obj_desc {
    uint32_t magic;
    uint32_t type;
    uint64_t count;
    uint64_t map_size;
    uint32_t sync;
    uint32_t pad;
};

static int obj_export(const struct mp_array *a, mp__handoff *h, const char **why)
{
    if (!obj_ok(a)) return -EINVAL;
    int r = mp__shm_fd_export(&a->mem, h, why);
    if (r) return r;
    struct obj_desc d = {
        OBJ_DESC_MAGIC, (uint32_t)(unsigned char)a->t->code, a->count, a->map_size, a->sync, 0};
    mp__handoff_desc_put(h, &d, sizeof d);
    return 0;
}

static int obj_import(mp__handoff *h, bool value, void **out)
{
    struct obj_desc d;
    if (!mp__handoff_desc_get(h, &d, sizeof d) || d.magic != OBJ_DESC_MAGIC || h->nfds != 1 ||
        d.sync > 1)
        return MP_ECORRUPT;
    const tinfo *t = type_info((int)d.type);
    if (!t || d.count == 0 || (value && d.count != 1) ||
        d.count > (SIZE_MAX - OBJ_DATA_OFF) / t->size ||
        d.map_size != OBJ_DATA_OFF + d.count * t->size)
        return MP_ECORRUPT;
    struct mp_array *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    void *map;
    int r = mp__shm_fd_import(h, 0, (size_t)d.map_size, &map, &a->mem);
    if (r) {
        free(a);
        return r;
    }
    obj_hdr *oh = map;
    mp__lock_state *ls = (mp__lock_state *)((char *)map + OBJ_LOCK_OFF);
    if (oh->magic != OBJ_MAGIC || oh->type != d.type || oh->count != d.count ||
        (d.sync && (mp__load_acq(&ls->magic) != MP__SYNC_MAGIC || ls->kind != MP__K_RLOCK))) {
        mp__shm_unmap(map, (size_t)d.map_size);
        mp__shm_fd_close(&a->mem);
        free(a);
        return MP_ECORRUPT;
    }
    a->magic = MP__HANDLE_MAGIC;
    a->sync = d.sync;
    a->t = t;
    a->count = (size_t)d.count;
    a->map = map;
    a->map_size = (size_t)d.map_size;
    a->data = (char *)map + OBJ_DATA_OFF;
    if (d.sync) mp__lock_handle_embed(&a->lock, ls);
    *out = a;
    return 0;
}

int mp__value_export(const void *obj, mp__handoff *h, const char **why)
{
    const struct mp_array *a = obj;
    if (obj_ok(a) && a->count != 1) {
        *why = "an Array passed as a Value";
        return -EINVAL;
    }
    return obj_export(a, h, why);
}

int mp__value_import(mp__handoff *h, void **out)
{
    return obj_import(h, true, out);
}

int mp__array_export(const void *obj, mp__handoff *h, const char **why)
{
    return obj_export(obj, h, why);
}

int mp__array_import(mp__handoff *h, void **out)
{
    return obj_import(h, false, out);
}
