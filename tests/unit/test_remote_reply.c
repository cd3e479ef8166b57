/* test_remote_reply.c - unit tests for remote/reply.c, the SMTP reply
 * parser of the SMTP client: the first thing a hostile server's bytes
 * meet. Every limit is probed at its edge (a line of exactly
 * REPLY_LINE_MAX bytes passes, one more fails; likewise the reply's total
 * size and line count), as are malformed codes, mixed codes in one reply,
 * NUL bytes, enhanced status codes that lie about their class, and the EHLO
 * keywords that drive PIPELINING, SIZE, 8BITMIME and STARTTLS.
 *
 * reply.c belongs to remote, not lib/, so it is compiled into this test
 * directly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../remote/reply.c"

static int add(struct smtp_reply *r, const char *line)
{
    return reply_add_line(r, line, strlen(line));
}

static struct smtp_reply *fresh(void)
{
    static struct smtp_reply r;

    reply_reset(&r);
    return &r;
}

static void test_single_line(void **state)
{
    struct smtp_reply *r = fresh();

    assert_int_equal(add(r, "250 2.1.5 Ok"), REPLY_DONE);
    assert_int_equal(r->code, 250);
    assert_string_equal(r->dsn, "2.1.5");
    assert_string_equal(r->text, "250 2.1.5 Ok");
    r = fresh();
    assert_int_equal(add(r, "354"), REPLY_DONE);   /* a bare code is a reply */
    assert_int_equal(r->code, 354);
}

static void test_multi_line(void **state)
{
    struct smtp_reply *r = fresh();

    assert_int_equal(add(r, "550-5.7.1 first"), REPLY_MORE);
    assert_int_equal(add(r, "550-5.7.1 second"), REPLY_MORE);
    assert_int_equal(add(r, "550 5.7.1 last"), REPLY_DONE);
    assert_string_equal(r->text, "550-5.7.1 first\n550-5.7.1 second\n550 5.7.1 last");
    assert_string_equal(r->dsn, "5.7.1");
    assert_int_equal(r->nlines, 3);
}

static void test_malformed_lines(void **state)
{
    static const char *const bad[] = {
        "", "25", "2x0 ok", "250*ok", "250ok", "650 out of range", "150 too low",
        "099 no", " 250 leading space",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(add(fresh(), bad[i]), REPLY_BAD);
}

static void test_codes_must_agree(void **state)
{
    struct smtp_reply *r = fresh();

    assert_int_equal(add(r, "250-one"), REPLY_MORE);
    assert_int_equal(add(r, "251 two"), REPLY_BAD);
}

static void test_nul_byte_is_malformed(void **state)
{
    static const char line[] = "250 ok\0hidden";

    assert_int_equal(reply_add_line(fresh(), line, sizeof(line) - 1), REPLY_BAD);
}

static void test_line_length_limit(void **state)
{
    char *line = malloc(REPLY_LINE_MAX + 2);

    memset(line, 'x', REPLY_LINE_MAX + 1);
    memcpy(line, "250 ", 4);
    line[REPLY_LINE_MAX] = 0;
    assert_int_equal(add(fresh(), line), REPLY_DONE);
    line[REPLY_LINE_MAX] = 'x';
    line[REPLY_LINE_MAX + 1] = 0;
    assert_int_equal(add(fresh(), line), REPLY_BAD);
    free(line);
}

static void test_total_size_limit(void **state)
{
    struct smtp_reply *r = fresh();
    char line[1001];
    int rc = REPLY_MORE, lines = 0;

    memset(line, 'y', sizeof(line) - 1);
    line[sizeof(line) - 1] = 0;
    memcpy(line, "250-", 4);
    while (rc == REPLY_MORE) {
        rc = add(r, line);
        lines++;
    }
    /* 1000-byte lines plus separators: the fifth cannot fit in 4096. */
    assert_int_equal(rc, REPLY_BAD);
    assert_int_equal(lines, 5);
    assert_true(r->len < REPLY_TEXT_MAX);
}

static void test_line_count_limit(void **state)
{
    struct smtp_reply *r = fresh();
    int i;

    for (i = 0; i < REPLY_LINES_MAX; i++)
        assert_int_equal(add(r, "250-x"), REPLY_MORE);
    assert_int_equal(add(r, "250 x"), REPLY_BAD);
}

static void dsn_of(const char *line, const char *expect)
{
    struct smtp_reply *r = fresh();

    assert_int_equal(add(r, line), REPLY_DONE);
    assert_string_equal(r->dsn, expect);
}

static void test_enhanced_status_codes(void **state)
{
    dsn_of("550 5.1.1 <x>: unknown", "5.1.1");
    dsn_of("250 2.1.5", "2.1.5");
    dsn_of("452 4.5.3 Too many", "4.5.3");
    dsn_of("550 4.1.1 lies about its class", "5.0.0");
    dsn_of("550 5.1 short", "5.0.0");
    dsn_of("550 5.1.1.1 long", "5.0.0");
    dsn_of("550 5.1234.1 wide", "5.0.0");
    dsn_of("550 no code", "5.0.0");
    dsn_of("421", "4.0.0");

    struct smtp_reply *r = fresh();
    assert_int_equal(add(r, "250-2.0.0"), REPLY_MORE);
    assert_int_equal(add(r, "250 2.0.0 second"), REPLY_DONE);
    assert_string_equal(r->dsn, "2.0.0");
}

static struct smtp_features ehlo(const char *const *lines, size_t n)
{
    struct smtp_reply *r = fresh();
    struct smtp_features f;

    for (size_t i = 0; i < n; i++)
        assert_int_equal(add(r, lines[i]), i + 1 < n ? REPLY_MORE : REPLY_DONE);
    reply_parse_ehlo(r, &f);
    return f;
}

static void test_ehlo_keywords(void **state)
{
    static const char *const all[] = {
        "250-mx.example Hello", "250-pipelining", "250-SIZE 10240000", "250-8BITMIME",
        "250-STARTTLS", "250 DSN",
    };
    static const char *const none[] = {"250 mx.example"};
    static const char *const greeting_only[] = {"250-PIPELINING STARTTLS", "250 HELP"};
    static const char *const size_bare[] = {"250-mx", "250 SIZE"};
    static const char *const size_junk[] = {"250-mx", "250 SIZE 12ab"};
    struct smtp_features f = ehlo(all, 6);

    assert_true(f.esmtp && f.pipelining && f.eightbitmime && f.starttls && f.dsn);
    assert_int_equal(f.size_limit, 10240000);
    f = ehlo(none, 1);
    assert_false(f.pipelining || f.eightbitmime || f.starttls || f.dsn);
    assert_int_equal(f.size_limit, -1);
    /* The first line is the server's name, never a keyword. */
    f = ehlo(greeting_only, 2);
    assert_false(f.pipelining || f.starttls);
    assert_int_equal(ehlo(size_bare, 2).size_limit, 0);
    assert_int_equal(ehlo(size_junk, 2).size_limit, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line),
        cmocka_unit_test(test_multi_line),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_codes_must_agree),
        cmocka_unit_test(test_nul_byte_is_malformed),
        cmocka_unit_test(test_line_length_limit),
        cmocka_unit_test(test_total_size_limit),
        cmocka_unit_test(test_line_count_limit),
        cmocka_unit_test(test_enhanced_status_codes),
        cmocka_unit_test(test_ehlo_keywords),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
