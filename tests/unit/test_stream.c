/* test_stream.c - unit tests for lib/util/stream.c: stream_copy, the one
 * chunking loop behind every buffered writer, and stream_write on top of
 * it (a write larger than the buffer, on a file, read back whole).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"

#define CHUNK 8

/* A flush that records what it was handed. */
struct sink {
    char buf[CHUNK];
    size_t used;
    char out[256];
    size_t out_len;
    int flushes;
    int fail_at;      /* flush number that fails, 0 = none */
};

static int sink_flush(void *ctx)
{
    struct sink *k = ctx;

    k->flushes++;
    if (k->fail_at != 0 && k->flushes == k->fail_at)
        return -1;
    memcpy(k->out + k->out_len, k->buf, k->used);
    k->out_len += k->used;
    return 0;
}

static void test_small_pieces_stay_in_the_buffer(void **state)
{
    (void)state;
    struct sink k = {0};

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "abc", 3, sink_flush, &k), 0);
    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "de", 2, sink_flush, &k), 0);
    assert_int_equal(k.flushes, 0);
    assert_int_equal(k.used, 5);
    assert_memory_equal(k.buf, "abcde", 5);
}

static void test_each_full_buffer_is_flushed_in_order(void **state)
{
    (void)state;
    struct sink k = {0};
    const char *text = "0123456789abcdefghijKLM";   /* 23 bytes: 2 full chunks + 7 */

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "xyz", 3, sink_flush, &k), 0);
    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, text, strlen(text), sink_flush, &k), 0);
    assert_int_equal(k.flushes, 3);
    assert_int_equal(k.out_len, 24);
    assert_memory_equal(k.out, "xyz0123456789abcdefghijK", 24);
    assert_int_equal(k.used, 2);
    assert_memory_equal(k.buf, "LM", 2);
}

static void test_exact_fill_flushes_and_empties(void **state)
{
    (void)state;
    struct sink k = {0};

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "12345678", CHUNK, sink_flush, &k), 0);
    assert_int_equal(k.flushes, 1);
    assert_int_equal(k.used, 0);
    assert_memory_equal(k.out, "12345678", CHUNK);
}

static void test_a_failed_flush_stops_the_copy(void **state)
{
    (void)state;
    struct sink k = {.fail_at = 2};
    char big[40];

    memset(big, 'q', sizeof(big));
    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, big, sizeof(big), sink_flush, &k), -1);
    assert_int_equal(k.flushes, 2);   /* nothing tried after the failure */
    assert_int_equal(k.out_len, CHUNK);
}

static void test_empty_copy_does_nothing(void **state)
{
    (void)state;
    struct sink k = {0};

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "", 0, sink_flush, &k), 0);
    assert_int_equal(k.flushes, 0);
    assert_int_equal(k.used, 0);
}

/* stream_write over stream_copy: more than STREAM_BUFSIZE in one call,
 * then a small one, all on disk in order after close. */
static void test_stream_write_larger_than_its_buffer(void **state)
{
    (void)state;
    char path[] = "/tmp/test_stream.XXXXXX";
    int fd = mkstemp(path);
    size_t big = STREAM_BUFSIZE * 2 + 100;
    char *data = malloc(big), *back = malloc(big + 3);

    assert_true(fd >= 0);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    assert_int_equal(stream_write(s, data, big), 0);
    assert_int_equal(stream_write(s, "END", 3), 0);
    assert_int_equal(stream_close(s), 0);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, back, big + 3), (ssize_t)(big + 3));
    close(fd);
    unlink(path);
    assert_memory_equal(back, data, big);
    assert_memory_equal(back + big, "END", 3);
    free(data);
    free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_pieces_stay_in_the_buffer),
        cmocka_unit_test(test_each_full_buffer_is_flushed_in_order),
        cmocka_unit_test(test_exact_fill_flushes_and_empties),
        cmocka_unit_test(test_a_failed_flush_stops_the_copy),
        cmocka_unit_test(test_empty_copy_does_nothing),
        cmocka_unit_test(test_stream_write_larger_than_its_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
