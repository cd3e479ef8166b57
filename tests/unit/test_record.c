/* test_record.c - unit tests for lib/record.c, the one record framing
 * (type byte, unsigned LEB128 length, payload) shared by queue files and IPC.
 *
 * The pure header codec is checked at every LEB128 width boundary, then
 * rec_put/rec_get run through real streams on a temporary file and on a pipe,
 * including truncation, oversize payloads and a read timeout.
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

#include "record.h"
#include "stream.h"

#define LEN_LIMIT ((size_t)1 << 40)   /* record.h: longer is malformed */

/* Encode, check the expected header size, decode, compare. */
static void round_trip(size_t len, size_t want_hlen)
{
    unsigned char hdr[REC_MAX_HEADER];
    size_t hlen = rec_header_encode(hdr, REC_CONTENT, len);
    assert_int_equal(hlen, want_hlen);
    assert_int_equal(hdr[0], REC_CONTENT);

    int type = 0;
    size_t got = 0;
    assert_int_equal(rec_header_decode(hdr, hlen, &type, &got), (int)hlen);
    assert_int_equal(type, REC_CONTENT);
    assert_true(got == len);

    /* Extra bytes after the header are not part of it. */
    unsigned char more[REC_MAX_HEADER + 4];
    memcpy(more, hdr, hlen);
    memset(more + hlen, 0xff, sizeof(more) - hlen);
    assert_int_equal(rec_header_decode(more, sizeof(more), &type, &got), (int)hlen);
    assert_true(got == len);

    /* Every proper prefix asks for more bytes. */
    for (size_t avail = 0; avail < hlen; avail++)
        assert_int_equal(rec_header_decode(hdr, avail, &type, &got), 0);
}

static void test_header_round_trip(void **state)
{
    round_trip(0, 2);
    round_trip(1, 2);
    round_trip(127, 2);
    round_trip(128, 3);
    round_trip(16383, 3);
    round_trip(16384, 4);
    round_trip(REC_CHUNK_SIZE, 4);
    round_trip((size_t)1 << 32, 1 + 5);
    round_trip(LEN_LIMIT - 1, 1 + 6);
    round_trip(LEN_LIMIT, 1 + 6);   /* the largest length record.h allows */
}

static void test_header_known_bytes(void **state)
{
    unsigned char hdr[REC_MAX_HEADER];
    /* 300 = 0b10_0101100: low group 0x2c with the continuation bit, then 2. */
    assert_int_equal(rec_header_encode(hdr, REC_RCPT, 300), 3);
    assert_int_equal(hdr[0], 'R');
    assert_int_equal(hdr[1], 0xac);
    assert_int_equal(hdr[2], 0x02);
    assert_int_equal(rec_header_encode(hdr, REC_END, 0), 2);
    assert_int_equal(hdr[0], 'E');
    assert_int_equal(hdr[1], 0x00);
}

static void test_header_truncated(void **state)
{
    int type = 0;
    size_t len = 0;
    const unsigned char only_type[] = {'S'};
    assert_int_equal(rec_header_decode(only_type, 0, &type, &len), 0);
    assert_int_equal(rec_header_decode(only_type, 1, &type, &len), 0);
    /* Continuation bit set on the last available byte: need more. */
    const unsigned char cont[] = {'S', 0x80, 0x80, 0x80};
    assert_int_equal(rec_header_decode(cont, sizeof(cont), &type, &len), 0);
}

static void test_header_malformed(void **state)
{
    int type = 0;
    size_t len = 0;
    /* Ten continuation bytes: longer than any legal header. */
    unsigned char over[REC_MAX_HEADER + 2];
    over[0] = 'C';
    memset(over + 1, 0x80, sizeof(over) - 1);
    assert_int_equal(rec_header_decode(over, sizeof(over), &type, &len), -1);

    /* One past the length limit is malformed, however well encoded. */
    unsigned char hdr[REC_MAX_HEADER];
    size_t hlen = rec_header_encode(hdr, 'C', LEN_LIMIT + 1);
    assert_int_equal(rec_header_decode(hdr, hlen, &type, &len), -1);
    /* So is 2^63. */
    hlen = rec_header_encode(hdr, 'C', (size_t)1 << 63);
    assert_int_equal(rec_header_decode(hdr, hlen, &type, &len), -1);
}

/* A temporary file opened read-write, already unlinked. */
static int temp_fd(void)
{
    char path[] = "/tmp/test_record.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void test_put_get_file(void **state)
{
    struct stream *s = stream_open(temp_fd(), 0);
    assert_non_null(s);
    size_t big_len = 3 * REC_CHUNK_SIZE / 2;
    char *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(i * 7 + 3);   /* includes NUL bytes: payloads are binary */

    assert_int_equal(rec_put_str(s, REC_SENDER, "alice@example.com"), 0);
    assert_int_equal(rec_put(s, REC_ATTR, "", 0), 0);
    assert_int_equal(rec_putf(s, REC_TIME, "%ld.%06ld", 1700000000L, 42L), 0);
    assert_int_equal(rec_put(s, REC_CONTENT, big, big_len), 0);
    /* rec_putf with output larger than any small stack buffer. */
    assert_int_equal(rec_putf(s, REC_ATTR, "long=%0*d", 3000, 7), 0);
    assert_int_equal(rec_put(s, REC_END, NULL, 0), 0);
    assert_int_equal(stream_flush(s), 0);
    assert_int_equal(stream_seek(s, 0), 0);

    struct rec_buf b = {0};
    off_t off = -1;
    assert_int_equal(rec_get(s, &b, 1 << 20, &off), REC_SENDER);
    assert_int_equal(off, 0);
    assert_string_equal(b.data, "alice@example.com");
    assert_int_equal(b.len, 17);

    assert_int_equal(rec_get(s, &b, 1 << 20, &off), REC_ATTR);
    assert_int_equal(off, 2 + 17);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");

    assert_int_equal(rec_get(s, &b, 1 << 20, &off), REC_TIME);
    assert_int_equal(off, 2 + 17 + 2);
    assert_string_equal(b.data, "1700000000.000042");

    assert_int_equal(rec_get(s, &b, 1 << 20, &off), REC_CONTENT);
    assert_int_equal(off, 2 + 17 + 2 + 2 + 17);
    assert_int_equal(b.len, big_len);
    assert_memory_equal(b.data, big, big_len);
    assert_int_equal(b.data[big_len], 0);

    assert_int_equal(rec_get(s, &b, 1 << 20, NULL), REC_ATTR);
    assert_int_equal(b.len, 5 + 3000);
    assert_memory_equal(b.data, "long=000", 8);
    assert_int_equal(b.data[b.len - 1], '7');

    assert_int_equal(rec_get(s, &b, 1 << 20, NULL), REC_END);
    assert_int_equal(b.len, 0);
    assert_int_equal(rec_get(s, &b, 1 << 20, NULL), REC_EOF);

    rec_buf_free(&b);
    free(big);
    assert_int_equal(stream_close(s), 0);
}

static void test_put_get_pipe(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct stream *w = stream_open(fds[1], 5);
    struct stream *r = stream_open(fds[0], 5);
    assert_non_null(w);
    assert_non_null(r);

    char rcpt[64];
    for (int i = 0; i < 100; i++) {
        snprintf(rcpt, sizeof(rcpt), "user%03d@localhost", i);
        assert_int_equal(rec_put_str(w, REC_RCPT, rcpt), 0);
    }
    assert_int_equal(rec_put(w, REC_END, NULL, 0), 0);
    assert_int_equal(stream_close(w), 0);   /* flushes, then EOF for the reader */

    struct rec_buf b = {0};
    for (int i = 0; i < 100; i++) {
        snprintf(rcpt, sizeof(rcpt), "user%03d@localhost", i);
        assert_int_equal(rec_get(r, &b, 1024, NULL), REC_RCPT);
        assert_string_equal(b.data, rcpt);
    }
    assert_int_equal(rec_get(r, &b, 1024, NULL), REC_END);
    assert_int_equal(rec_get(r, &b, 1024, NULL), REC_EOF);
    rec_buf_free(&b);
    stream_close(r);
}

static void test_too_big(void **state)
{
    struct stream *s = stream_open(temp_fd(), 0);
    char payload[1000];
    memset(payload, 'x', sizeof(payload));
    assert_int_equal(rec_put(s, REC_CONTENT, payload, sizeof(payload)), 0);
    assert_int_equal(stream_flush(s), 0);
    assert_int_equal(stream_seek(s, 0), 0);
    struct rec_buf b = {0};
    assert_int_equal(rec_get(s, &b, 999, NULL), REC_TOOBIG);
    /* Exactly max is fine. */
    assert_int_equal(stream_seek(s, 0), 0);
    assert_int_equal(rec_get(s, &b, 1000, NULL), REC_CONTENT);
    assert_int_equal(b.len, 1000);
    rec_buf_free(&b);
    stream_close(s);
}

/* Write raw bytes to a temp file and return a stream positioned at 0. */
static struct stream *stream_with_bytes(const void *bytes, size_t len)
{
    int fd = temp_fd();
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    return s;
}

static void test_truncated_payload(void **state)
{
    /* Header says 10 bytes, only 5 follow. */
    const unsigned char bytes[] = {'C', 10, 'a', 'b', 'c', 'd', 'e'};
    struct stream *s = stream_with_bytes(bytes, sizeof(bytes));
    struct rec_buf b = {0};
    assert_int_equal(rec_get(s, &b, 1024, NULL), REC_ERROR);
    rec_buf_free(&b);
    stream_close(s);
}

static void test_truncated_header(void **state)
{
    const unsigned char bytes[] = {'C', 0x80, 0x80};
    struct stream *s = stream_with_bytes(bytes, sizeof(bytes));
    struct rec_buf b = {0};
    assert_int_equal(rec_get(s, &b, 1024, NULL), REC_ERROR);
    rec_buf_free(&b);
    stream_close(s);

    const unsigned char only_type[] = {'C'};
    s = stream_with_bytes(only_type, sizeof(only_type));
    assert_int_equal(rec_get(s, &b, 1024, NULL), REC_ERROR);
    rec_buf_free(&b);
    stream_close(s);
}

static void test_overlong_header_in_stream(void **state)
{
    unsigned char bytes[16];
    bytes[0] = 'C';
    memset(bytes + 1, 0xff, sizeof(bytes) - 1);
    struct stream *s = stream_with_bytes(bytes, sizeof(bytes));
    struct rec_buf b = {0};
    assert_int_equal(rec_get(s, &b, (size_t)-1, NULL), REC_ERROR);
    rec_buf_free(&b);
    stream_close(s);
}

static void test_read_timeout(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct stream *r = stream_open(fds[0], 1);
    struct rec_buf b = {0};
    /* The writer stays open and silent: the read must give up, not hang. */
    assert_int_equal(rec_get(r, &b, 1024, NULL), REC_ERROR);
    assert_true(stream_timed_out(r));
    rec_buf_free(&b);
    stream_close(r);
    close(fds[1]);
}

static void test_buf_set(void **state)
{
    struct rec_buf b = {0};
    assert_int_equal(rec_buf_set(&b, "hello", 5), 0);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "hello");
    assert_int_equal(rec_buf_set(&b, "hi", 2), 0);
    assert_string_equal(b.data, "hi");
    assert_int_equal(rec_buf_set(&b, "", 0), 0);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    rec_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_attr_split(void **state)
{
    char *name, *value;
    char a[] = "client=unknown[127.0.0.1]";
    assert_int_equal(rec_attr_split(a, &name, &value), 0);
    assert_string_equal(name, "client");
    assert_string_equal(value, "unknown[127.0.0.1]");

    char b[] = "expr=a=b";   /* the first '=' splits */
    assert_int_equal(rec_attr_split(b, &name, &value), 0);
    assert_string_equal(name, "expr");
    assert_string_equal(value, "a=b");

    char c[] = "empty=";
    assert_int_equal(rec_attr_split(c, &name, &value), 0);
    assert_string_equal(name, "empty");
    assert_string_equal(value, "");

    char d[] = "no equals sign";
    assert_int_equal(rec_attr_split(d, &name, &value), -1);
}

/* Found by fuzzing: only the shortest LEB128 form is accepted, because
 * in-place updates (the Z record's warn field) assume the header length the
 * writer produces. 0x3F encoded as BF 00 is refused. */
static void test_non_minimal_length_is_malformed(void **state)
{
    const unsigned char padded[] = {'Z', 0xBF, 0x00};
    const unsigned char minimal[] = {'Z', 0x3F};
    int type;
    size_t len;
    assert_int_equal(rec_header_decode(padded, sizeof(padded), &type, &len), -1);
    assert_int_equal(rec_header_decode(minimal, sizeof(minimal), &type, &len), 2);
    assert_int_equal(len, 0x3F);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_header_known_bytes),
        cmocka_unit_test(test_header_truncated),
        cmocka_unit_test(test_header_malformed),
        cmocka_unit_test(test_put_get_file),
        cmocka_unit_test(test_put_get_pipe),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_truncated_payload),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_overlong_header_in_stream),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_buf_set),
        cmocka_unit_test(test_attr_split),
        cmocka_unit_test(test_non_minimal_length_is_malformed),
    };
    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
