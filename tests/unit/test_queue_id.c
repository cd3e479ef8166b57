/* test_queue_id.c - unit tests for lib/queue_id.c.
 *
 * Queue ids name queue files, so they must be safe file names, unique for
 * distinct (arrival time, inode) pairs, sort by arrival as plain strings
 * (qmgr and postqueue rely on that), and give the arrival time back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_id.h"

static int is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void make_id(char out[QUEUE_ID_SIZE], long sec, long usec, unsigned long ino)
{
    struct timeval tv = {.tv_sec = sec, .tv_usec = usec};
    memset(out, 0x55, QUEUE_ID_SIZE);   /* catch a missing NUL */
    queue_id_make(out, &tv, (ino_t)ino);
    assert_true(memchr(out, 0, QUEUE_ID_SIZE) != NULL);
}

static void test_made_ids_are_valid(void **state)
{
    static const unsigned long inodes[] = {0, 1, 61, 62, 123456789UL, 0xffffffffUL,
                                           0xffffffffffffffffUL};
    static const long secs[] = {0, 1, 1700000000L, 4102444800L /* 2100 */};
    char id[QUEUE_ID_SIZE];
    for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++)
        for (size_t j = 0; j < sizeof(inodes) / sizeof(inodes[0]); j++) {
            make_id(id, secs[i], 999999, inodes[j]);
            assert_true(queue_id_valid(id));
            size_t len = strlen(id);
            /* 10 time digits and at least one inode digit, NUL included. */
            assert_true(len >= 11);
            assert_true(len < QUEUE_ID_SIZE);
            for (size_t k = 0; k < len; k++)
                assert_true(is_base62(id[k]));
        }
}

static void test_invalid_ids(void **state)
{
    assert_false(queue_id_valid(""));
    assert_false(queue_id_valid("ABC"));
    assert_false(queue_id_valid("0123456789"));   /* time only, no inode */
    assert_false(queue_id_valid("0123456789/"));
    assert_false(queue_id_valid("../../etc/pw"));
    assert_false(queue_id_valid("01234.56789A"));
    assert_false(queue_id_valid("0123456789A "));
    assert_false(queue_id_valid("0123456789A\n"));
    assert_false(queue_id_valid("0123456789-A"));
    /* Longer than fits in QUEUE_ID_SIZE. */
    char longid[QUEUE_ID_SIZE + 8];
    memset(longid, 'A', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    assert_false(queue_id_valid(longid));
    assert_true(queue_id_valid("0123456789A"));
}

static void test_ids_sort_by_arrival(void **state)
{
    /* Increasing times, with inodes that go up and down and change width. */
    char prev[QUEUE_ID_SIZE], cur[QUEUE_ID_SIZE];
    long sec = 1700000000L, usec = 999990;
    unsigned long ino = 5;
    make_id(prev, sec, usec, ino);
    for (int i = 0; i < 20000; i++) {
        /* Steps of 1 us to a few seconds, crossing second boundaries. */
        usec += 1 + (i % 7) * 137 + (i % 13 == 0 ? 999000 : 0);
        sec += usec / 1000000;
        usec %= 1000000;
        if (i % 101 == 0)
            sec += 3600;
        ino = (i % 2) ? ino * 977 % 100000007UL : (unsigned long)(i % 5);
        make_id(cur, sec, usec, ino);
        if (strcmp(prev, cur) >= 0)
            fail_msg("ids out of order: %s then %s (sec=%ld usec=%ld)", prev, cur, sec, usec);
        memcpy(prev, cur, QUEUE_ID_SIZE);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_distinct_pairs_give_distinct_ids(void **state)
{
    enum { N = 100000 };
    char *storage = malloc((size_t)N * QUEUE_ID_SIZE);
    char **ids = malloc(N * sizeof(*ids));
    assert_non_null(storage);
    assert_non_null(ids);
    /* Mixes pairs with the same time and different inodes, and the same
     * inode at different times (inode reuse), including 1 us apart. */
    for (int i = 0; i < N; i++) {
        ids[i] = storage + (size_t)i * QUEUE_ID_SIZE;
        long sec = 1700000000L + (i / 50000);
        long usec = (i % 50000) / 100;
        unsigned long ino = (unsigned long)(i % 100) * 62 + (unsigned long)(i % 3);
        if (i % 3 != 0)
            ino += 1000000UL * (unsigned long)(i % 3);
        make_id(ids[i], sec, usec, ino);
    }
    qsort(ids, N, sizeof(*ids), cmp_str);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate id %s", ids[i]);
    free(ids);
    free(storage);
}

static void test_time_round_trip(void **state)
{
    static const struct timeval tvs[] = {
        {0, 0}, {1, 1}, {1700000000L, 123456}, {1700000000L, 999999}, {4102444800L, 500000},
    };
    char id[QUEUE_ID_SIZE];
    for (size_t i = 0; i < sizeof(tvs) / sizeof(tvs[0]); i++) {
        queue_id_make(id, &tvs[i], (ino_t)(98765 + i));
        struct timeval got = {-1, -1};
        assert_int_equal(queue_id_time(id, &got), 0);
        assert_int_equal(got.tv_sec, tvs[i].tv_sec);
        assert_int_equal(got.tv_usec, tvs[i].tv_usec);
    }
    struct timeval got;
    assert_int_equal(queue_id_time("not/valid", &got), -1);
    assert_int_equal(queue_id_time("", &got), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_made_ids_are_valid),
        cmocka_unit_test(test_invalid_ids),
        cmocka_unit_test(test_ids_sort_by_arrival),
        cmocka_unit_test(test_distinct_pairs_give_distinct_ids),
        cmocka_unit_test(test_time_round_trip),
    };
    return cmocka_run_group_tests_name("queue_id", tests, NULL, NULL);
}
