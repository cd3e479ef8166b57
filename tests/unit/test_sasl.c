/* test_sasl.c - unit tests for lib/sasl.c: base64 (RFC 4648 vectors and
 * malformed input), the PLAIN and LOGIN exchanges step by step (initial
 * responses, cancellation, proxy authorization refused, control characters
 * in user names refused), and password checks against an inline table of
 * crypt(3) SHA-512 hashes (right, wrong, unknown user, an entry that is not
 * a hash, an unreadable table = temporary failure).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "lookup.h"
#include "sasl.h"

static char logpath[] = "/tmp/test_sasl.log.XXXXXX";

static void test_base64_vectors(void **state)
{
    static const char *const vec[][2] = {{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char enc[32];
        unsigned char dec[32];
        assert_int_equal(sasl_base64_encode(vec[i][0], strlen(vec[i][0]), enc, sizeof(enc)),
                         (int)strlen(vec[i][1]));
        assert_string_equal(enc, vec[i][1]);
        assert_int_equal(sasl_base64_decode(vec[i][1], dec, sizeof(dec)), (int)strlen(vec[i][0]));
        assert_string_equal((char *)dec, vec[i][0]);
    }
}

static void test_base64_malformed(void **state)
{
    unsigned char dec[32];
    const char *bad[] = {"Zg=", "Z===", "Zm9v!", "=Zm9", "Zg==Zg==", "Zm=v", "Zm9 ", "Zg\n=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sasl_base64_decode(bad[i], dec, sizeof(dec)), -1);
    /* No room for the bytes and the NUL. */
    assert_int_equal(sasl_base64_decode("Zm9v", dec, 3), -1);
    assert_int_equal(sasl_base64_decode("Zm9v", dec, 4), 3);
    char enc[4];
    assert_int_equal(sasl_base64_encode("foo", 3, enc, sizeof(enc)), -1);
}

static void test_plain_exchange(void **state)
{
    struct sasl_exchange x;
    char ch[64], resp[128];
    assert_true(sasl_plain_response("alice", "s3cret", resp, sizeof(resp)) > 0);
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, resp, ch, sizeof(ch)),
                     SASL_CREDENTIALS);
    assert_string_equal(x.user, "alice");
    assert_string_equal(x.pass, "s3cret");
    sasl_exchange_clear(&x);
    assert_string_equal(x.pass, "");
    /* Without an initial response: an empty challenge, then the answer. */
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, NULL, ch, sizeof(ch)),
                     SASL_CONTINUE);
    assert_string_equal(ch, "");
    assert_int_equal(sasl_exchange_step(&x, resp, ch, sizeof(ch)), SASL_CREDENTIALS);
    /* authzid equal to the user is fine; another one is proxy auth. */
    char raw[] = "alice\0alice\0pw";
    sasl_base64_encode(raw, sizeof(raw) - 1, resp, sizeof(resp));
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, resp, ch, sizeof(ch)),
                     SASL_CREDENTIALS);
    char proxy[] = "root\0alice\0pw";
    sasl_base64_encode(proxy, sizeof(proxy) - 1, resp, sizeof(resp));
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, resp, ch, sizeof(ch)),
                     SASL_BAD_RESPONSE);
}

static void test_plain_malformed(void **state)
{
    struct sasl_exchange x;
    char ch[64], resp[128];
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, "*", ch, sizeof(ch)),
                     SASL_CANCELLED);
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, "=", ch, sizeof(ch)),
                     SASL_BAD_RESPONSE);
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, "not base64!", ch, sizeof(ch)),
                     SASL_BAD_RESPONSE);
    static const struct {
        const char *raw;
        size_t len;
    } bad[] = {
        {"alice", 5},               /* no NUL at all */
        {"\0alice", 6},             /* no password */
        {"\0\0pw", 4},              /* empty user */
        {"\0al\rice\0pw", 10},      /* control character in the user name */
        {"\0alice\0pw\0x", 11},     /* a NUL inside the password */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sasl_base64_encode(bad[i].raw, bad[i].len, resp, sizeof(resp));
        assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, resp, ch, sizeof(ch)),
                         SASL_BAD_RESPONSE);
    }
    /* Longer than any user name plus password we take. */
    char big[1200];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_PLAIN, big, ch, sizeof(ch)),
                     SASL_BAD_RESPONSE);
}

static void test_login_exchange(void **state)
{
    struct sasl_exchange x;
    char ch[64];
    assert_int_equal(sasl_mech_lookup("login"), SASL_MECH_LOGIN);
    assert_int_equal(sasl_mech_lookup("CRAM-MD5"), SASL_MECH_NONE);
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_LOGIN, NULL, ch, sizeof(ch)),
                     SASL_CONTINUE);
    assert_string_equal(ch, "VXNlcm5hbWU6");
    assert_int_equal(sasl_exchange_step(&x, "Ym9i", ch, sizeof(ch)), SASL_CONTINUE);
    assert_string_equal(ch, "UGFzc3dvcmQ6");
    assert_int_equal(sasl_exchange_step(&x, "cHc=", ch, sizeof(ch)), SASL_CREDENTIALS);
    assert_string_equal(x.user, "bob");
    assert_string_equal(x.pass, "pw");
    /* The user name as initial response skips the first prompt. */
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_LOGIN, "Ym9i", ch, sizeof(ch)),
                     SASL_CONTINUE);
    assert_string_equal(ch, "UGFzc3dvcmQ6");
    assert_int_equal(sasl_exchange_step(&x, "*", ch, sizeof(ch)), SASL_CANCELLED);
    assert_int_equal(sasl_exchange_start(&x, SASL_MECH_LOGIN, "", ch, sizeof(ch)),
                     SASL_BAD_RESPONSE);
}

static char *hash_of(const char *password)
{
    struct crypt_data data;
    memset(&data, 0, sizeof(data));
    const char *h = crypt_r(password, "$6$unitsalt", &data);
    assert_non_null(h);
    return strdup(h);
}

static void test_verify_password(void **state)
{
    char *h = hash_of("right");
    char spec[512], err[256];
    snprintf(spec, sizeof(spec), "inline:{ alice=%s, plain=right }", h);
    struct lookup_list *l = lookup_list_open(spec, err, sizeof(err));
    assert_non_null(l);
    assert_int_equal(sasl_verify_password(l, "alice", "right"), SASL_AUTH_OK);
    assert_int_equal(sasl_verify_password(l, "alice", "wrong"), SASL_AUTH_FAILED);
    assert_int_equal(sasl_verify_password(l, "alice", ""), SASL_AUTH_FAILED);
    assert_int_equal(sasl_verify_password(l, "nobody", "right"), SASL_AUTH_FAILED);
    /* A clear-text entry is never compared as such. */
    assert_int_equal(sasl_verify_password(l, "plain", "right"), SASL_AUTH_FAILED);
    assert_int_equal(sasl_verify_password(NULL, "alice", "right"), SASL_AUTH_FAILED);
    lookup_list_close(l);
    free(h);
    l = lookup_list_open("cdb:/nonexistent/postern-test/passwords", err, sizeof(err));
    assert_non_null(l);
    assert_int_equal(sasl_verify_password(l, "alice", "right"), SASL_AUTH_TEMPFAIL);
    lookup_list_close(l);
}

int main(void)
{
    int fd = mkstemp(logpath);
    if (fd >= 0)
        close(fd);
    log_init("test_sasl", 0);
    log_set_file(logpath);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_malformed),
        cmocka_unit_test(test_plain_exchange),
        cmocka_unit_test(test_plain_malformed),
        cmocka_unit_test(test_login_exchange),
        cmocka_unit_test(test_verify_password),
    };
    int rc = cmocka_run_group_tests_name("sasl", tests, NULL, NULL);
    log_set_file(NULL);
    unlink(logpath);
    return rc;
}
