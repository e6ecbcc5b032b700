/* SPDX-License-Identifier: MIT */
/* value_array.c - shared Value and Array (Python's classic examples): deposit/withdraw, a shared
 * list.
 *
 * Python:                                  C:
 *     money = Value('i', 2000)                 mp_value_new(&money, 'i', &init, true)
 *     with money.get_lock():                   mp_lock_acquire(mp_value_lock(money), ...)
 *         money.value += 1                     get + set under it; or, on a raw Value, mp_value_add
 *     shm = Array('i', [1, 2, 3, 4, 5])        mp_array_new(&shm, 'i', 5, init, true)
 *     shm = Array('i', 5)                      mp_array_new(&shm, 'i', 5, NULL, true)
 */
#include <stdio.h>
#include <string.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "value_array: check failed: %s (line %d)\n", #cond, __LINE__);         \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static mp_value *money;

/* money.value += 1, 100000 times, each under the value's lock (the classic race, fixed). */
static int deposit(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        int64_t m;
        mp_lock_acquire(mp_value_lock(money), MP_FOREVER);
        mp_value_get_i64(money, &m);
        mp_value_set_i64(money, m + 1);
        mp_lock_release(mp_value_lock(money));
    }
    return 0;
}

/* The same in the other direction. */
static int withdraw(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        int64_t m;
        mp_lock_acquire(mp_value_lock(money), MP_FOREVER);
        mp_value_get_i64(money, &m);
        mp_value_set_i64(money, m - 1);
        mp_lock_release(mp_value_lock(money));
    }
    return 0;
}

/* Python has no atomic add; here a raw Value (lock=False) counts without any lock. Never mix
 * the two styles on one value: a get+set under the lock would overwrite concurrent adds. */
static mp_value *hits;

static int count(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        mp_value_add(hits, 1, NULL);
    return 0;
}

static mp_array *shm, *text;

/* The child reads the list, then writes its own values (the parent sees them after join). */
static int fill(void *arg)
{
    (void)arg;
    int now[5];
    mp_array_read(shm, 0, now, 5);
    printf("  child sees:  [%d, %d, %d, %d, %d]\n", now[0], now[1], now[2], now[3], now[4]);
    for (size_t i = 0; i < mp_array_len(shm); i++)
        mp_array_set_i64(shm, i, (int64_t)(i * i));
    mp_array_write(text, 0, "HELLO", 5);
    return 0;
}

static int run(mp_target_fn fn)
{
    mp_process *p;
    int code = -1;
    if (mp_process_new(&p, NULL, fn, NULL) || mp_process_start(p)) return -1;
    mp_process_join(p, 30);
    mp_process_exitcode(p, &code);
    mp_process_free(&p);
    return code;
}

int main(void)
{
    /* ---- Value ---- */
    int init = 2000;
    CHECK(mp_value_new(&money, MP_TYPE_INT, &init, true) == 0);
    mp_process *d, *w;
    CHECK(mp_process_new(&d, "deposit", deposit, NULL) == 0);
    CHECK(mp_process_new(&w, "withdraw", withdraw, NULL) == 0);
    CHECK(mp_process_start(d) == 0 && mp_process_start(w) == 0);
    CHECK(mp_process_join(d, 30) == 0 && mp_process_join(w, 30) == 0);
    mp_process_free(&d);
    mp_process_free(&w);
    int64_t m;
    CHECK(mp_value_get_i64(money, &m) == 0);
    printf("Value('i', 2000) after 100000 deposits and 100000 withdrawals: %lld\n", (long long)m);
    CHECK(m == 2000);
    mp_value_free(&money);

    CHECK(mp_value_new(&hits, 'q', NULL, false) == 0);
    CHECK(mp_process_new(&d, "count-1", count, NULL) == 0);
    CHECK(mp_process_new(&w, "count-2", count, NULL) == 0);
    CHECK(mp_process_start(d) == 0 && mp_process_start(w) == 0);
    CHECK(mp_process_join(d, 30) == 0 && mp_process_join(w, 30) == 0);
    mp_process_free(&d);
    mp_process_free(&w);
    CHECK(mp_value_get_i64(hits, &m) == 0);
    printf("Value('q', 0, lock=False) after 2 x 100000 atomic adds: %lld\n", (long long)m);
    CHECK(m == 200000);
    mp_value_free(&hits);

    /* ---- Array from a list, and from a count ---- */
    int list[5] = {1, 2, 3, 4, 5};
    CHECK(mp_array_new(&shm, 'i', 5, list, true) == 0);
    CHECK(mp_array_new(&text, 'c', 5, "hello", true) == 0);
    printf("Array('i', [1, 2, 3, 4, 5]) and Array('c', b'hello')\n");
    CHECK(run(fill) == 0);
    int after[5];
    CHECK(mp_array_read(shm, 0, after, 5) == 0);
    printf("  parent sees: [%d, %d, %d, %d, %d]\n", after[0], after[1], after[2], after[3],
           after[4]);
    for (int i = 0; i < 5; i++)
        CHECK(after[i] == i * i);
    char word[6] = {0};
    CHECK(mp_array_read(text, 0, word, 5) == 0);
    printf("  text: %s\n", word);
    CHECK(strcmp(word, "HELLO") == 0);
    int64_t x;
    CHECK(mp_array_get_i64(shm, 5, &x) == MP_ERANGE); /* Python's IndexError */
    mp_array_free(&shm);
    mp_array_free(&text);

    mp_array *zeros;
    CHECK(mp_array_new(&zeros, 'd', 3, NULL, false) == 0); /* Array('d', 3, lock=False) */
    double z;
    CHECK(mp_array_get_f64(zeros, 2, &z) == 0 && z == 0.0);
    printf("Array('d', 3, lock=False): %zu zeros, no lock (%s)\n", mp_array_len(zeros),
           mp_array_lock(zeros) ? "locked" : "raw");
    mp_array_free(&zeros);
    return 0;
}
