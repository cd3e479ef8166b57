/* test_maildrop.c - unit tests for lib/maildrop.c: the record layout that
 * postdrop accepts from users and pickup accepts from maildrop/. Anything
 * out of order, oversized or with control characters must be refused, as
 * it comes from an untrusted local user.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "maildrop.h"
#include "record.h"

static int feed(struct maildrop_check *c, int type, const char *data)
{
    return maildrop_check_record(c, type, data, strlen(data));
}

/* A good file, record by record. */
static void test_good_file(void **state)
{
    struct maildrop_check c;
    maildrop_check_init(&c, 1, 0);
    assert_int_equal(feed(&c, REC_TIME, "1700000000.123456"), 0);
    assert_int_equal(feed(&c, REC_SENDER, "user"), 0);
    assert_int_equal(feed(&c, REC_ATTR, "uid=1000"), 0);
    assert_int_equal(feed(&c, REC_ATTR, "full_name=Joe User"), 0);
    assert_int_equal(feed(&c, REC_DSN_NOTIFY, "10"), 0);
    assert_int_equal(feed(&c, REC_RCPT, "bob"), 0);
    assert_int_equal(feed(&c, REC_RCPT, "carol@example.org"), 0);
    assert_int_equal(feed(&c, REC_CONTENT_START, ""), 0);
    assert_int_equal(feed(&c, REC_CONTENT, "Subject: x\n\nbody\n"), 0);
    assert_int_equal(feed(&c, REC_END, ""), 1);
    assert_int_equal(c.nrcpt, 2);
    /* Nothing may follow the end. */
    assert_int_equal(feed(&c, REC_CONTENT, "more"), -1);
    assert_non_null(c.error);
}

/* postdrop's input has no time record; the null sender and no recipients
 * (sendmail -t) are fine. */
static void test_input_without_time(void **state)
{
    struct maildrop_check c;
    maildrop_check_init(&c, 0, 0);
    assert_int_equal(feed(&c, REC_SENDER, ""), 0);
    assert_int_equal(feed(&c, REC_ATTR, "extract=1"), 0);
    assert_int_equal(feed(&c, REC_CONTENT_START, ""), 0);
    assert_int_equal(feed(&c, REC_END, ""), 1);
    maildrop_check_init(&c, 0, 0);
    assert_int_equal(feed(&c, REC_TIME, "1.1"), -1);
}

static void test_order_enforced(void **state)
{
    struct maildrop_check c;
    maildrop_check_init(&c, 1, 0);
    assert_int_equal(feed(&c, REC_SENDER, "user"), -1);   /* time first */
    maildrop_check_init(&c, 1, 0);
    feed(&c, REC_TIME, "1.2");
    assert_int_equal(feed(&c, REC_RCPT, "bob"), -1);      /* sender next */
    maildrop_check_init(&c, 0, 0);
    feed(&c, REC_SENDER, "user");
    feed(&c, REC_RCPT, "bob");
    assert_int_equal(feed(&c, REC_ATTR, "full_name=late"), -1);
    maildrop_check_init(&c, 0, 0);
    feed(&c, REC_SENDER, "user");
    feed(&c, REC_DSN_NOTIFY, "4");
    assert_int_equal(feed(&c, REC_CONTENT_START, ""), -1);   /* N without its R */
    maildrop_check_init(&c, 0, 0);
    feed(&c, REC_SENDER, "user");
    feed(&c, REC_CONTENT_START, "");
    assert_int_equal(feed(&c, REC_RCPT, "bob"), -1);      /* no recipients in content */
    maildrop_check_init(&c, 0, 0);
    feed(&c, REC_SENDER, "user");
    assert_int_equal(feed(&c, REC_SIZE, "1 2 3"), -1);    /* not a maildrop record */
}

static void test_bad_values(void **state)
{
    struct maildrop_check c;
    maildrop_check_init(&c, 1, 0);
    assert_int_equal(feed(&c, REC_TIME, "12x.5"), -1);
    maildrop_check_init(&c, 0, 0);
    assert_int_equal(feed(&c, REC_SENDER, "bad\nsender"), -1);
    maildrop_check_init(&c, 0, 0);
    feed(&c, REC_SENDER, "user");
    assert_int_equal(feed(&c, REC_ATTR, "no equals sign"), -1);
    assert_int_equal(feed(&c, REC_ATTR, "Bad-Name=x"), -1);
    assert_int_equal(feed(&c, REC_RCPT, ""), -1);
    assert_int_equal(feed(&c, REC_DSN_NOTIFY, "0"), -1);
    assert_int_equal(feed(&c, REC_DSN_NOTIFY, "3"), -1);   /* NEVER with SUCCESS */
    assert_int_equal(feed(&c, REC_DSN_NOTIFY, "16"), -1);
    /* An embedded NUL is refused too. */
    assert_int_equal(maildrop_check_record(&c, REC_RCPT, "a\0b", 3), -1);
}

static void test_size_limit(void **state)
{
    struct maildrop_check c;
    maildrop_check_init(&c, 0, 10);
    feed(&c, REC_SENDER, "user");
    feed(&c, REC_RCPT, "bob");
    feed(&c, REC_CONTENT_START, "");
    assert_int_equal(feed(&c, REC_CONTENT, "0123456789"), 0);
    assert_int_equal(feed(&c, REC_CONTENT, "x"), -1);
    assert_string_equal(c.error, "message file too big");
}

static void test_user_attributes(void **state)
{
    assert_true(maildrop_attr_ok("full_name", "Joe Q. User"));
    assert_false(maildrop_attr_ok("full_name", "tab\there"));
    assert_true(maildrop_attr_ok("extract", "1"));
    assert_false(maildrop_attr_ok("extract", "yes"));
    assert_true(maildrop_attr_ok("dsn_ret", "HDRS"));
    assert_true(maildrop_attr_ok("dsn_ret", "full"));
    assert_false(maildrop_attr_ok("dsn_ret", "some"));
    assert_true(maildrop_attr_ok("dsn_envid", "abc-123"));
    assert_false(maildrop_attr_ok("dsn_envid", ""));
    char longid[MAILDROP_ENVID_MAX + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    assert_false(maildrop_attr_ok("dsn_envid", longid));
    assert_true(maildrop_attr_ok("dsn_notify", "1"));
    assert_false(maildrop_attr_ok("dsn_notify", "5"));
    /* What only postdrop and pickup vouch for. */
    assert_false(maildrop_attr_ok("uid", "0"));
    assert_false(maildrop_attr_ok("origin", "smtp"));
    assert_false(maildrop_attr_ok("client_address", "10.0.0.1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_input_without_time),
        cmocka_unit_test(test_order_enforced),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_user_attributes),
    };
    return cmocka_run_group_tests_name("maildrop", tests, NULL, NULL);
}
