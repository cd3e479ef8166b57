/* test_header_line.c - unit tests for lib/util/header_line.c, the one
 * reading of header names that cleanup, header_checks, remote's generic
 * maps and sendmail -t share:
 * name characters, optional white space, colon (Postfix's rule), so that
 * "Bcc : x" and a MIME part's "Content-Type : x" are headers everywhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "header_line.h"

static size_t colon_of(const char *line)
{
    return header_name_len(line, strlen(line));
}

static void test_plain_headers(void **state)
{
    assert_int_equal(colon_of("Subject: hello"), 7);
    assert_int_equal(colon_of("X-A:b"), 3);
    assert_int_equal(colon_of("Subject:"), 7);
    assert_int_equal(colon_of("a:"), 1);
    /* Every printable character but ':' may be in a name. */
    const char *all = "!#$%&'*+-./09;<=>?@AZ[\\]^_`az{|}~\"(),: x";
    assert_int_equal(colon_of(all), strcspn(all, ":"));
}

static void test_white_space_before_the_colon(void **state)
{
    const char *bcc = "Bcc : x@example.org";
    size_t colon = colon_of(bcc);
    assert_int_equal(colon, 4);
    assert_int_equal(header_name_trim(bcc, colon), 3);
    assert_true(header_is(bcc, colon, "bcc"));
    assert_int_equal(colon_of("Content-Type \t :text/plain"), 15);
    assert_int_equal(header_name_trim("Content-Type \t :text/plain", 15), 12);
    assert_int_equal(header_name_trim("Subject: x", 7), 7);
}

static void test_not_headers(void **state)
{
    const char *bad[] = {"",        ":",          " Subject: x", "\tSubject: x", "Subject",
                         "Sub ject: x", "Subject \t", "Sub\x01ject: x", "Sub\x7fject: x",
                         "Sub\xc3\xa9ject: x", "From someone Sat Jan 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(colon_of(bad[i]), 0);
    /* The length bounds the look: the colon must be inside it. */
    assert_int_equal(header_name_len("Subject: x", 7), 0);
    assert_int_equal(header_name_len("Subject : x", 8), 0);
    assert_int_equal(header_name_len("Subject: x", 8), 7);
}

static void test_names_compare_without_case_or_space(void **state)
{
    static const char *const names[] = {"To", "Cc", "Bcc", NULL};
    const char *line = "CC  : a@b";
    size_t colon = colon_of(line);
    assert_true(header_is(line, colon, "cc"));
    assert_false(header_is(line, colon, "c"));
    assert_false(header_is(line, colon, "ccc"));
    assert_true(header_in(line, colon, names));
    assert_false(header_in("Reply-To: a", colon_of("Reply-To: a"), names));
    assert_false(header_is("x", 0, "Subject"));
}

static void test_header_end_takes_continuation_lines(void **state)
{
    const char block[] = "Subject: a\n b\n\tc\nTo: d\n\nbody\n";
    const char *end = block + strlen(block);
    const char *next = header_end(block, end);
    assert_int_equal(next - block, 17);
    next = header_end(next, end);
    assert_string_equal(next, "\nbody\n");
    const char unterminated[] = "Subject: a\n b";
    end = unterminated + strlen(unterminated);
    assert_ptr_equal(header_end(unterminated, end), end);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_headers),
        cmocka_unit_test(test_white_space_before_the_colon),
        cmocka_unit_test(test_not_headers),
        cmocka_unit_test(test_names_compare_without_case_or_space),
        cmocka_unit_test(test_header_end_takes_continuation_lines),
    };
    return cmocka_run_group_tests_name("header_line", tests, NULL, NULL);
}
