/* test_sasl_client.c - unit tests for lib/util/sasl_client.c: mechanism
 * lists as EHLO writes them, the security options and what they rule out,
 * the choice of mechanism, "user:password" table values, and the PLAIN,
 * LOGIN and CRAM-MD5 responses (RFC 2195's own example; challenges that
 * are not base64 or too long; outputs that do not fit).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sasl.h"
#include "sasl_client.h"

static unsigned mechs(const char *list)
{
    return sasl_client_mechs_parse(list, strlen(list));
}

static void test_mechanism_lists(void **state)
{
    assert_int_equal(mechs("PLAIN LOGIN"), SASL_CLIENT_PLAIN | SASL_CLIENT_LOGIN);
    assert_int_equal(mechs("cram-md5,XOAUTH2  plain"), SASL_CLIENT_CRAM_MD5 | SASL_CLIENT_PLAIN);
    assert_int_equal(mechs(""), 0);
    assert_int_equal(mechs("PLAINX LOGI CRAM-MD5X"), 0);
    /* A NUL ends the list even inside the given length. */
    assert_int_equal(sasl_client_mechs_parse("LOGIN\0PLAIN", 11), SASL_CLIENT_LOGIN);
    assert_string_equal(sasl_client_mech_name(SASL_CLIENT_CRAM_MD5), "CRAM-MD5");
    assert_string_equal(sasl_client_mech_name(SASL_CLIENT_ALL), "");
}

static void test_security_options(void **state)
{
    unsigned flags = 99;
    char err[128];

    assert_int_equal(sasl_client_security_parse("noplaintext, noanonymous", &flags, err,
                                                sizeof(err)), 0);
    assert_int_equal(flags, SASL_SEC_NOPLAINTEXT | SASL_SEC_NOANONYMOUS);
    assert_int_equal(sasl_client_security_parse("", &flags, err, sizeof(err)), 0);
    assert_int_equal(flags, 0);
    assert_int_equal(sasl_client_security_parse("noanonymous, nosuch", &flags, err,
                                                sizeof(err)), -1);
    assert_non_null(strstr(err, "nosuch"));

    assert_int_equal(sasl_client_mechs_allowed(SASL_CLIENT_ALL, SASL_SEC_NOPLAINTEXT),
                     SASL_CLIENT_CRAM_MD5);
    assert_int_equal(sasl_client_mechs_allowed(SASL_CLIENT_PLAIN | SASL_CLIENT_LOGIN,
                                               SASL_SEC_NOPLAINTEXT | SASL_SEC_NOANONYMOUS), 0);
    assert_int_equal(sasl_client_mechs_allowed(SASL_CLIENT_ALL, SASL_SEC_NOANONYMOUS),
                     SASL_CLIENT_ALL);
    assert_int_equal(sasl_client_mechs_allowed(SASL_CLIENT_ALL, SASL_SEC_NODICTIONARY), 0);
    assert_int_equal(sasl_client_mechs_allowed(SASL_CLIENT_ALL, SASL_SEC_MUTUAL_AUTH), 0);
}

static void test_choice(void **state)
{
    assert_int_equal(sasl_client_mech_choose(SASL_CLIENT_ALL), SASL_CLIENT_CRAM_MD5);
    assert_int_equal(sasl_client_mech_choose(SASL_CLIENT_PLAIN | SASL_CLIENT_LOGIN),
                     SASL_CLIENT_PLAIN);
    assert_int_equal(sasl_client_mech_choose(SASL_CLIENT_LOGIN), SASL_CLIENT_LOGIN);
    assert_int_equal(sasl_client_mech_choose(0), 0);
}

static void test_credentials(void **state)
{
    char user[SASL_CLIENT_USER_MAX], pass[SASL_CLIENT_PASS_MAX], big[600];

    assert_int_equal(sasl_client_split_credentials("alice:pa:ss word", user, sizeof(user), pass,
                                                   sizeof(pass)), 0);
    assert_string_equal(user, "alice");
    assert_string_equal(pass, "pa:ss word");
    assert_int_equal(sasl_client_split_credentials("alice:", user, sizeof(user), pass,
                                                   sizeof(pass)), 0);
    assert_string_equal(pass, "");
    assert_int_equal(sasl_client_split_credentials("nocolon", user, sizeof(user), pass,
                                                   sizeof(pass)), -1);
    assert_int_equal(sasl_client_split_credentials(":pass", user, sizeof(user), pass,
                                                   sizeof(pass)), -1);
    assert_int_equal(sasl_client_split_credentials("a\tb:pass", user, sizeof(user), pass,
                                                   sizeof(pass)), -1);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    big[10] = ':';
    assert_int_equal(sasl_client_split_credentials(big, user, sizeof(user), pass, sizeof(pass)),
                     -1);
    big[10] = 'x';
    big[300] = ':';
    assert_int_equal(sasl_client_split_credentials(big, user, sizeof(user), pass, sizeof(pass)),
                     -1);
}

static void test_plain_and_login(void **state)
{
    char out[SASL_CLIENT_RESPONSE_MAX];

    assert_int_equal(sasl_client_plain("tim", "tanstaaf", out, sizeof(out)), 20);
    assert_string_equal(out, "AHRpbQB0YW5zdGFhZg==");
    assert_int_equal(sasl_client_login("tim", out, sizeof(out)), 4);
    assert_string_equal(out, "dGlt");
    assert_int_equal(sasl_client_login("tanstaaf", out, 8), -1);
}

static void test_cram_md5(void **state)
{
    char out[SASL_CLIENT_RESPONSE_MAX], chal[2 * SASL_CLIENT_CHALLENGE_MAX];

    /* RFC 2195, section 2. */
    assert_true(sasl_client_cram_md5("tim", "tanstaaftanstaaf",
                                     "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
                                     out, sizeof(out)) > 0);
    assert_string_equal(out, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    assert_int_equal(sasl_client_cram_md5("tim", "x", "!!!", out, sizeof(out)), -1);
    assert_int_equal(sasl_client_cram_md5("tim", "x", "", out, sizeof(out)), -1);
    assert_int_equal(sasl_client_cram_md5("tim", "x", "PDE4OTY+", out, 10), -1);
    memset(chal, 'A', sizeof(chal) - 1);
    chal[sizeof(chal) - 1] = 0;
    assert_int_equal(sasl_client_cram_md5("tim", "x", chal, out, sizeof(out)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mechanism_lists), cmocka_unit_test(test_security_options),
        cmocka_unit_test(test_choice),          cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_plain_and_login), cmocka_unit_test(test_cram_md5),
    };
    return cmocka_run_group_tests_name("sasl_client", tests, NULL, NULL);
}
