/* test_strlist.c - unit tests for lib/util/strlist.c, the one list syntax of
 * main.cf values: items separated by commas and white space, braces keeping
 * an inline table whole, over-long items skipped rather than cut, and the
 * "type:name" test that tells a table from a domain or network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "strlist.h"

static void test_next_separators_and_braces(void **state)
{
    (void)state;
    const char *p = " a,b\t, ,\r\ninline:{ x=1, y=2 }  hash:/etc/t ,";
    char item[64];
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 1);
    assert_string_equal(item, "a");
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 1);
    assert_string_equal(item, "b");
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 1);
    assert_string_equal(item, "inline:{ x=1, y=2 }");
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 1);
    assert_string_equal(item, "hash:/etc/t");
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 0);
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 0);
}

static void test_next_too_long_is_skipped_whole(void **state)
{
    (void)state;
    const char *p = "abcdefgh, ok";
    char item[8];
    assert_int_equal(strlist_next(&p, item, sizeof(item)), -1);
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 1);
    assert_string_equal(item, "ok");
    /* Exactly size - 1 bytes fit. */
    p = "1234567";
    assert_int_equal(strlist_next(&p, item, sizeof(item)), 1);
    assert_string_equal(item, "1234567");
}

static void test_is_table(void **state)
{
    (void)state;
    assert_true(strlist_is_table("hash:/etc/x"));
    assert_true(strlist_is_table("inline:{a=b}"));
    assert_true(strlist_is_table("pgsql2:/x"));
    assert_false(strlist_is_table("example.com"));
    assert_false(strlist_is_table("[::1]/128"));
    assert_false(strlist_is_table("2001:db8::/32"));
    assert_false(strlist_is_table(":x"));
    assert_false(strlist_is_table(""));
}

static void test_split(void **state)
{
    (void)state;
    char buf[64], *items[3];
    assert_int_equal(strlist_split("a, b c,d", buf, items, 3), 3);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[2], "c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_separators_and_braces),
        cmocka_unit_test(test_next_too_long_is_skipped_whole),
        cmocka_unit_test(test_is_table),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests_name("strlist", tests, NULL, NULL);
}
