/* test_attr_lines.c - unit tests for lib/util/attr_lines.c: reading a
 * policy server's answer. Only a complete block (ended by an empty line)
 * counts; a line without '=', an over-long line or a NUL makes the answer
 * malformed; the last value of a name wins; CR LF is accepted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "attr_lines.h"

static long scan(const char *buf, size_t len, char *value, size_t vlen, int *found)
{
    return attr_lines_scan(buf, len, 32, "action", value, vlen, found);
}

static void test_complete_answer(void **state)
{
    char v[64];
    int found;
    const char *a = "action=DEFER 4.2.0 Greylisted\n\nnext";
    assert_int_equal(scan(a, strlen(a), v, sizeof(v), &found), (long)strlen(a) - 4);
    assert_true(found);
    assert_string_equal(v, "DEFER 4.2.0 Greylisted");
    const char *b = "x=1\r\naction=OK\r\n\r\n";
    assert_int_equal(scan(b, strlen(b), v, sizeof(v), &found), (long)strlen(b));
    assert_string_equal(v, "OK");
    const char *c = "action=REJECT\naction=DUNNO\n\n";
    assert_true(scan(c, strlen(c), v, sizeof(v), &found) > 0);
    assert_string_equal(v, "DUNNO");
    const char *d = "other=1\n\n";
    assert_true(scan(d, strlen(d), v, sizeof(v), &found) > 0);
    assert_false(found);
}

static void test_incomplete_answers_find_nothing(void **state)
{
    char v[64];
    int found;
    const char *a = "action=OK\n";
    assert_int_equal(scan(a, strlen(a), v, sizeof(v), &found), ATTR_LINES_INCOMPLETE);
    assert_false(found);
    assert_string_equal(v, "");
    assert_int_equal(scan("action=O", 8, v, sizeof(v), &found), ATTR_LINES_INCOMPLETE);
    assert_int_equal(scan("", 0, v, sizeof(v), &found), ATTR_LINES_INCOMPLETE);
}

static void test_malformed_answers(void **state)
{
    char v[64];
    int found;
    const char *a = "garbage\n\n";
    assert_int_equal(scan(a, strlen(a), v, sizeof(v), &found), ATTR_LINES_MALFORMED);
    const char *b = "=value\n\n";
    assert_int_equal(scan(b, strlen(b), v, sizeof(v), &found), ATTR_LINES_MALFORMED);
    const char *c = "action=0123456789012345678901234567890123456789\n\n";
    assert_int_equal(scan(c, strlen(c), v, sizeof(v), &found), ATTR_LINES_MALFORMED);
    /* An over-long line is malformed before its end arrives. */
    const char *d = "action=0123456789012345678901234567890123456789";
    assert_int_equal(scan(d, strlen(d), v, sizeof(v), &found), ATTR_LINES_MALFORMED);
    const char e[] = "action=O\0K\n\n";
    assert_int_equal(scan(e, sizeof(e) - 1, v, sizeof(v), &found), ATTR_LINES_MALFORMED);
    assert_false(found);
}

static void test_value_truncated_to_buffer(void **state)
{
    char v[4];
    int found;
    const char *a = "action=REJECT\n\n";
    assert_true(scan(a, strlen(a), v, sizeof(v), &found) > 0);
    assert_true(found);
    assert_string_equal(v, "REJ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_answer),
        cmocka_unit_test(test_incomplete_answers_find_nothing),
        cmocka_unit_test(test_malformed_answers),
        cmocka_unit_test(test_value_truncated_to_buffer),
    };
    return cmocka_run_group_tests_name("attr_lines", tests, NULL, NULL);
}
