/* test_strbuf.c - unit tests for lib/util/strbuf.c, the growing string of
 * query templates, header rewriting and pipe's argv words: appends keep
 * the text NUL-terminated whatever their size, binary bytes included, and
 * freeing leaves an empty buffer that can be used again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "strbuf.h"

static void test_appends_grow_and_stay_terminated(void **state)
{
    (void)state;
    struct strbuf b = {0};
    strbuf_add(&b, "abc", 3);
    assert_string_equal(b.s, "abc");
    assert_int_equal(b.len, 3);
    char big[1000];
    memset(big, 'x', sizeof(big));
    strbuf_add(&b, big, sizeof(big));
    assert_int_equal(b.len, 1003);
    assert_true(b.cap > b.len);
    assert_int_equal(b.s[b.len], 0);
    assert_memory_equal(b.s, "abcxxx", 6);
    strbuf_add(&b, "\0z", 2);   /* bytes, not a C string */
    assert_int_equal(b.len, 1005);
    assert_int_equal(b.s[1003], 0);
    assert_int_equal(b.s[1004], 'z');
    strbuf_free(&b);
    assert_null(b.s);
    assert_int_equal(b.len, 0);
    strbuf_add(&b, "", 0);
    assert_string_equal(b.s, "");
    strbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_grow_and_stay_terminated),
    };
    return cmocka_run_group_tests_name("strbuf", tests, NULL, NULL);
}
