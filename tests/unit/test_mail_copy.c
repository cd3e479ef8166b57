/* test_mail_copy.c - unit tests for lib/mail/mail_copy.c, the bytes every
 * delivery agent writes: the filter's ">From " quoting, dot doubling, CR LF
 * line ends, final line end and empty line, each under every way the
 * content can be split into pieces; the size limit and a failing sink; the
 * whole copy from a real queue file with the From_ line and the trace
 * headers; the all-or-nothing append; the Delivered-To: loop check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT_OWN_FIXTURE
#include "unit_support.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail_copy.h"
#include "queue_file.h"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_mail_copy");
    char log[PATH_MAX];
    if (!f || queue_dirs_create() < 0)
        return -1;
    snprintf(log, sizeof(log), "%s/log", f->dir);
    log_set_file(log);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    log_set_file(NULL);
    return unit_queue_fixture_free(*state);
}

/* A sink into memory that can be told to fail. */
struct out {
    char buf[8192];
    size_t len;
    int calls;
    int fail_after;   /* calls that succeed before one fails; -1 never */
};

static int to_memory(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;

    if (o->fail_after >= 0 && o->calls >= o->fail_after) {
        errno = EIO;
        return -1;
    }
    o->calls++;
    assert_true(o->len + n < sizeof(o->buf));
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->buf[o->len] = 0;
    return 0;
}

/* in through a filter with flags, fed in the given pieces (cuts are
 * offsets, ascending); the output must be expected. */
static void filter_cut(int flags, const char *in, const size_t *cuts, size_t ncuts,
                       const char *expected)
{
    struct out o = {.fail_after = -1};
    struct mail_copy_filter f;
    size_t from = 0, len = strlen(in);

    mail_copy_filter_init(&f, flags, 0, to_memory, &o);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        assert_int_equal(mail_copy_filter_put(&f, in + from, to - from), 0);
        from = to;
    }
    assert_int_equal(mail_copy_filter_end(&f), 0);
    assert_string_equal(o.buf, expected);
}

/* The same output whole, split in two at every place, and byte by byte. */
static void filter_is(int flags, const char *in, const char *expected)
{
    size_t len = strlen(in), cuts[4096];

    assert_true(len < sizeof(cuts) / sizeof(cuts[0]));
    filter_cut(flags, in, NULL, 0, expected);
    for (size_t at = 0; at <= len; at++)
        filter_cut(flags, in, &at, 1, expected);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    filter_cut(flags, in, cuts, len, expected);
}

static void test_no_flags_is_byte_for_byte(void **state)
{
    (void)state;
    filter_is(0, "From x\n.dot\r\nno end", "From x\n.dot\r\nno end");
    filter_is(0, "", "");
}

static void test_quote_from(void **state)
{
    (void)state;
    filter_is(MAIL_COPY_QUOTE_FROM, "From a\nFrom b\n", ">From a\n>From b\n");
    filter_is(MAIL_COPY_QUOTE_FROM, "x From y\nFrom\nFromage\nfrom z\nFrom ",
              "x From y\nFrom\nFromage\nfrom z\n>From ");
    filter_is(MAIL_COPY_QUOTE_FROM, ">From a\nFro", ">From a\nFro");
    filter_is(MAIL_COPY_QUOTE_FROM, "\nFrom \n", "\n>From \n");
}

static void test_dots_and_crlf(void **state)
{
    (void)state;
    filter_is(MAIL_COPY_DOT, ".\n..x\na.b\n.", "..\n...x\na.b\n..");
    filter_is(MAIL_COPY_CRLF, "a\nb\n\nc", "a\r\nb\r\n\r\nc");
    filter_is(MAIL_COPY_CRLF | MAIL_COPY_DOT, ".a\nb\n.\n", "..a\r\nb\r\n..\r\n");
    /* A CR already there is kept: the queue file has LF line ends. */
    filter_is(MAIL_COPY_CRLF, "a\r\n", "a\r\r\n");
    filter_is(MAIL_COPY_CRLF | MAIL_COPY_QUOTE_FROM, "From a\nFr\n", ">From a\r\nFr\r\n");
}

static void test_line_end_and_blank_line(void **state)
{
    (void)state;
    filter_is(MAIL_COPY_NEWLINE_END, "a\nb", "a\nb\n");
    filter_is(MAIL_COPY_NEWLINE_END, "a\n", "a\n");
    filter_is(MAIL_COPY_NEWLINE_END, "", "");
    filter_is(MAIL_COPY_BLANK_END, "a", "a\n\n");
    filter_is(MAIL_COPY_BLANK_END, "a\n", "a\n\n");
    filter_is(MAIL_COPY_BLANK_END, "", "\n");
    filter_is(MAIL_COPY_BLANK_END | MAIL_COPY_QUOTE_FROM, "From", "From\n\n");
    filter_is(MAIL_COPY_BLANK_END | MAIL_COPY_CRLF, "a", "a\r\n\r\n");
    filter_is(MAIL_COPY_NEWLINE_END | MAIL_COPY_CRLF | MAIL_COPY_DOT, "x\n.", "x\r\n..\r\n");
}

static void test_limit_and_failing_sink(void **state)
{
    (void)state;
    struct out o = {.fail_after = -1};
    struct mail_copy_filter f;

    mail_copy_filter_init(&f, 0, 10, to_memory, &o);
    assert_int_equal(mail_copy_filter_put(&f, "0123456789", 10), 0);
    assert_int_equal(mail_copy_filter_put(&f, "x", 1), MAIL_COPY_ETOOBIG);
    assert_int_equal(mail_copy_filter_put(&f, "y", 1), MAIL_COPY_ETOOBIG);
    assert_int_equal(mail_copy_filter_end(&f), MAIL_COPY_ETOOBIG);
    assert_string_equal(o.buf, "0123456789");

    o = (struct out){.fail_after = 1};
    mail_copy_filter_init(&f, MAIL_COPY_CRLF, 0, to_memory, &o);
    assert_int_equal(mail_copy_filter_line(&f, "Header: 1"), MAIL_COPY_EWRITE);
    assert_int_equal(mail_copy_filter_put(&f, "more\n", 5), MAIL_COPY_EWRITE);
    assert_string_equal(o.buf, "Header: 1");   /* nothing after the failure */
}

/* --- the whole copy from a queue file --- */

static const char *const chunks[] = {
    "Subject: hi\n\nFrom the start\nline\nFr",   /* "From " split across records */
    "om here\n.dot\nlast",
};
static const char body[] = "Subject: hi\n\nFrom the start\nline\nFrom here\n.dot\nlast";

static void message(const char *sender, char id[QUEUE_ID_SIZE], struct deliver_message *m)
{
    const char *rcpts[] = {"bob@example.com"};
    unit_write_message(1700000000, sender, rcpts, 1, chunks, 2, NULL, id);
    unit_open_message(id, sender, m);
}

static void test_mbox_copy_with_from_line_and_trace(void **state)
{
    (void)state;
    struct deliver_message m;
    char id[QUEUE_ID_SIZE];
    struct mail_copy_trace t = {.sender = "alice@example.org", .orig_rcpt = "sales@example.com",
                                .delivered_to = "bob@example.com"};
    struct out o = {.fail_after = -1};
    regex_t re;

    message("alice@example.org", id, &m);
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_MBOX, 0, to_memory, &o), 0);
    assert_int_equal(regcomp(&re, "^From alice@example\\.org [A-Z][a-z]{2} [A-Z][a-z]{2} "
                             "[ 1-3][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}\n", REG_EXTENDED),
                     0);
    assert_int_equal(regexec(&re, o.buf, 0, NULL, 0), 0);
    regfree(&re);
    const char *rest = strchr(o.buf, '\n') + 1;
    assert_string_equal(rest, "Return-Path: <alice@example.org>\n"
                              "X-Original-To: sales@example.com\n"
                              "Delivered-To: bob@example.com\n"
                              "Subject: hi\n\n>From the start\nline\n>From here\n.dot\nlast\n\n");
    assert_int_equal(o.calls, 1);   /* gathered into one write */
    stream_close(m.queue);
}

static void test_trace_flags_and_odd_addresses(void **state)
{
    (void)state;
    struct deliver_message m;
    char id[QUEUE_ID_SIZE], expected[512];
    struct mail_copy_trace t = {.sender = "", .orig_rcpt = NULL,
                                .delivered_to = "bob\nX-Evil: 1@example.com"};
    struct out o = {.fail_after = -1};

    message("", id, &m);
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_TRACE, 0, to_memory, &o), 0);
    snprintf(expected, sizeof(expected), "Return-Path: <>\n"
             "Delivered-To: \"bob?X-Evil: 1\"@example.com\n%s", body);
    assert_string_equal(o.buf, expected);

    o = (struct out){.fail_after = -1};
    t = (struct mail_copy_trace){.sender = "john doe@example.org", .delivered_to = "b@x"};
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_FROM_LINE | MAIL_COPY_DELIVERED_TO, 0,
                               to_memory, &o), 0);
    static const char from_line[] = "From \"john_doe\"@example.org ";
    assert_memory_equal(o.buf, from_line, strlen(from_line));
    snprintf(expected, sizeof(expected), "Delivered-To: b@x\n%s", body);
    assert_string_equal(strchr(o.buf, '\n') + 1, expected);

    o = (struct out){.fail_after = -1};
    t.sender = "";
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_FROM_LINE, 0, to_memory, &o), 0);
    assert_memory_equal(o.buf, "From MAILER-DAEMON ", strlen("From MAILER-DAEMON "));
    stream_close(m.queue);
}

static void test_copy_limit_counts_every_byte(void **state)
{
    (void)state;
    struct deliver_message m;
    char id[QUEUE_ID_SIZE];
    struct mail_copy_trace t = {.sender = "a@x", .delivered_to = "b@x"};
    struct out o = {.fail_after = -1};
    long long total = (long long)(strlen("Return-Path: <a@x>\nDelivered-To: b@x\n")
                                  + strlen(body));

    message("a@x", id, &m);
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_TRACE, total, to_memory, &o), 0);
    o = (struct out){.fail_after = -1};
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_TRACE, total - 1, to_memory, &o),
                     MAIL_COPY_ETOOBIG);
    o = (struct out){.fail_after = 0};
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_TRACE, 0, to_memory, &o), MAIL_COPY_EWRITE);
    assert_int_equal(errno, EIO);
    stream_close(m.queue);
}

static void test_unreadable_content(void **state)
{
    (void)state;
    struct deliver_message m;
    char id[QUEUE_ID_SIZE], path[PATH_MAX];
    struct mail_copy_trace t = {.sender = "a@x", .delivered_to = "b@x"};
    struct out o = {.fail_after = -1};

    message("a@x", id, &m);
    assert_int_equal(queue_path(path, sizeof(path), QUEUE_INCOMING, id), 0);
    assert_int_equal(truncate(path, (off_t)m.content_offset + 10), 0);   /* a cut record */
    assert_int_equal(mail_copy(&m, &t, MAIL_COPY_TRACE, 0, to_memory, &o), MAIL_COPY_EREAD);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "b@x"), -1);
    stream_close(m.queue);
}

/* --- append all or nothing --- */

static void test_append_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    struct deliver_message m;
    char id[QUEUE_ID_SIZE], path[PATH_MAX];
    struct mail_copy_trace t = {.sender = "a@x", .delivered_to = "b@x"};
    static const char before[] = "From old Mon Jan  1 00:00:00 2024\nold\n\n";
    long long one = 0;

    message("a@x", id, &m);
    snprintf(path, sizeof(path), "%s/mbox", f->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, before, strlen(before)), (ssize_t)strlen(before));

    assert_int_equal(mail_copy_append(fd, path, &m, &t, MAIL_COPY_MBOX, 0), 0);
    char *text = unit_read_file(path, NULL);
    assert_non_null(text);
    assert_memory_equal(text, before, strlen(before));
    assert_memory_equal(text + strlen(before), "From a@x ", strlen("From a@x "));
    assert_non_null(strstr(text, "Delivered-To: b@x\nSubject: hi\n\n>From the start\n"));
    one = (long long)(strlen(text) - strlen(before));
    free(text);

    /* Room for exactly one more copy: it fits; then the file is full. */
    long long limit = (long long)strlen(before) + 2 * one;
    assert_int_equal(mail_copy_append(fd, path, &m, &t, MAIL_COPY_MBOX, limit), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, limit);
    assert_int_equal(mail_copy_append(fd, path, &m, &t, MAIL_COPY_MBOX, limit),
                     MAIL_COPY_EFULL);
    /* Too big: cut back to exactly what was there. */
    assert_int_equal(mail_copy_append(fd, path, &m, &t, MAIL_COPY_MBOX, limit + one - 1),
                     MAIL_COPY_ETOOBIG);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, limit);
    close(fd);
    stream_close(m.queue);
}

/* A copy that fails after some of it reached the file (more than one
 * 64 KiB write) is cut back to exactly the old size. */
static void test_append_cut_back_after_partial_write(void **state)
{
    struct fixture *f = *state;
    const char *rcpts[] = {"b@x"};
    static char big[4][60001];
    const char *pieces[4];
    struct deliver_message m;
    struct mail_copy_trace t = {.sender = "a@x", .delivered_to = "b@x"};
    char id[QUEUE_ID_SIZE], path[PATH_MAX];
    struct stat st;

    for (size_t i = 0; i < 4; i++) {
        memset(big[i], 'a' + (int)i, sizeof(big[i]) - 1);
        big[i][sizeof(big[i]) - 2] = '\n';
        pieces[i] = big[i];
    }
    unit_write_message(1700000000, "a@x", rcpts, 1, pieces, 4, NULL, id);
    unit_open_message(id, "a@x", &m);
    snprintf(path, sizeof(path), "%s/mbox", f->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "old\n", 4), 4);
    assert_int_equal(mail_copy_append(fd, path, &m, &t, MAIL_COPY_MBOX, 4 + 200000),
                     MAIL_COPY_ETOOBIG);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 4);
    assert_int_equal(mail_copy_append(fd, path, &m, &t, MAIL_COPY_MBOX, 0), 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_size > 240000);
    close(fd);
    stream_close(m.queue);
}

/* --- Delivered-To: --- */

static void test_delivered_to_seen(void **state)
{
    (void)state;
    const char *rcpts[] = {"bob@example.com"};
    const char *headers[] = {
        "Received: x\nX-Delivered-To: eve@example.com\nDelivered-To: alice@example.com\n"
        "Delivered-To:\n  Bob@Example.COM  \nDelivered-To : dave@example.com\n"
        "Delivered-To\t:frank@example.com\nDelivered -To: gina@example.com\nSubj",
        "ect: s\n\nDelivered-To: carol@example.com\n",
    };
    struct deliver_message m;
    char id[QUEUE_ID_SIZE];

    unit_write_message(1700000000, "a@x", rcpts, 1, headers, 2, NULL, id);
    unit_open_message(id, "a@x", &m);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "alice@example.com"), 1);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "bob@example.com"), 1);   /* folded */
    assert_int_equal(mail_copy_delivered_to_seen(&m, "eve@example.com"), 0);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "carol@example.com"), 0);  /* body */
    assert_int_equal(mail_copy_delivered_to_seen(&m, "alice@example"), 0);
    /* White space before the colon is still the header (header_line.h);
     * inside the name it is not a header at all. */
    assert_int_equal(mail_copy_delivered_to_seen(&m, "dave@example.com"), 1);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "frank@example.com"), 1);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "gina@example.com"), 0);
    stream_close(m.queue);
}

static void test_delivered_to_beyond_header_size_limit(void **state)
{
    struct fixture *f = *state;
    const char *rcpts[] = {"bob@example.com"};
    const char *headers[] = {"X-Pad: 0123456789012345678901234567890123456789\n"
                             "Delivered-To: bob@example.com\n\nbody\n"};
    struct deliver_message m;
    char id[QUEUE_ID_SIZE];

    unit_write_message(1700000000, "a@x", rcpts, 1, headers, 1, NULL, id);
    unit_open_message(id, "a@x", &m);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "bob@example.com"), 1);
    assert_int_equal(unit_load_queue_config(f->dir, "header_size_limit = 40\n"), 0);
    assert_int_equal(mail_copy_delivered_to_seen(&m, "bob@example.com"), 0);
    stream_close(m.queue);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_flags_is_byte_for_byte),
        cmocka_unit_test(test_quote_from),
        cmocka_unit_test(test_dots_and_crlf),
        cmocka_unit_test(test_line_end_and_blank_line),
        cmocka_unit_test(test_limit_and_failing_sink),
        T(test_mbox_copy_with_from_line_and_trace),
        T(test_trace_flags_and_odd_addresses),
        T(test_copy_limit_counts_every_byte),
        T(test_unreadable_content),
        T(test_append_all_or_nothing),
        T(test_append_cut_back_after_partial_write),
        T(test_delivered_to_seen),
        T(test_delivered_to_beyond_header_size_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
