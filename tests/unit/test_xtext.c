/* test_xtext.c - unit tests for lib/xtext.c: RFC 3461 xtext as smtpd
 * decodes ENVID and ORCPT. A value must never decode to a CR, LF or NUL
 * (they would split queue records and log lines downstream), and "+HH"
 * must be exactly two hex digits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "xtext.h"

static void test_decode_plain_and_escaped(void **state)
{
    char out[64];
    assert_int_equal(xtext_decode("abc", out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(xtext_decode("abc+2Bdef+3D1", out, sizeof(out)), 9);
    assert_string_equal(out, "abc+def=1");
    /* Lower-case hex is tolerated. */
    assert_int_equal(xtext_decode("a+2bb", out, sizeof(out)), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(xtext_decode("rfc822;u+40example.com", out, sizeof(out)), 20);
    assert_string_equal(out, "rfc822;u@example.com");
    assert_int_equal(xtext_decode("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* 8-bit bytes may be encoded (they are not xchars themselves). */
    assert_int_equal(xtext_decode("+C3+A9", out, sizeof(out)), 2);
    assert_string_equal(out, "\xc3\xa9");
}

static void test_decode_refuses_controls(void **state)
{
    char out[64];
    assert_int_equal(xtext_decode("a+0Db", out, sizeof(out)), XTEXT_CONTROL);
    assert_int_equal(xtext_decode("a+0Ab", out, sizeof(out)), XTEXT_CONTROL);
    assert_int_equal(xtext_decode("a+00b", out, sizeof(out)), XTEXT_CONTROL);
    assert_int_equal(xtext_decode("+0d+0a", out, sizeof(out)), XTEXT_CONTROL);
}

static void test_decode_malformed(void **state)
{
    char out[64];
    const char *bad[] = {"+", "+2", "a+G1", "a+1G", "a b", "a=b", "a\tb", "\x7f", "\xc3\xa9",
                         "+2+41"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(xtext_decode(bad[i], out, sizeof(out)), XTEXT_MALFORMED);
}

static void test_decode_bounds(void **state)
{
    char out[4];
    assert_int_equal(xtext_decode("abc", out, sizeof(out)), 3);
    assert_int_equal(xtext_decode("abcd", out, sizeof(out)), XTEXT_TOO_LONG);
    assert_int_equal(xtext_decode("ab+41+42", out, sizeof(out)), XTEXT_TOO_LONG);
    assert_int_equal(xtext_decode("", out, 0), XTEXT_TOO_LONG);
}

static void test_encode_round_trip(void **state)
{
    char in[256], enc[1024], dec[256];
    size_t n = 0;
    for (int c = 1; c < 256; c++)
        if (c != '\r' && c != '\n')
            in[n++] = (char)c;
    in[n] = 0;
    int elen = xtext_encode(in, enc, sizeof(enc));
    assert_true(elen > 0);
    for (const char *p = enc; *p; p++)
        assert_true(*p >= '!' && *p <= '~' && *p != '=');
    assert_int_equal(xtext_decode(enc, dec, sizeof(dec)), (int)n);
    assert_memory_equal(dec, in, n + 1);
    assert_int_equal(xtext_encode("a+b=c d", enc, sizeof(enc)), 13);
    assert_string_equal(enc, "a+2Bb+3Dc+20d");
    assert_int_equal(xtext_encode("a+b", enc, 4), XTEXT_TOO_LONG);
    assert_int_equal(xtext_encode("abc", enc, 4), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_plain_and_escaped),
        cmocka_unit_test(test_decode_refuses_controls),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_decode_bounds),
        cmocka_unit_test(test_encode_round_trip),
    };
    return cmocka_run_group_tests_name("xtext", tests, NULL, NULL);
}
