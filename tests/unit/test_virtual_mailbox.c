/* test_virtual_mailbox.c - unit tests for lib/virtual_mailbox.c: the virtual
 * alias and virtual mailbox domain classes (literal items, type:table
 * items, "!" items, the $virtual_*_maps defaults), mailbox lookups in
 * virtual(8) order, mailbox paths under virtual_mailbox_base (".." refused),
 * and smtpd's RCPT decision, including temporary failures.
 *
 * Each case writes a main.cf into a fresh mkdtemp directory and loads it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_support.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "lookup.h"
#include "virtual_mailbox.h"

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_virtual_mailbox");
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

static void load(const struct fixture *f, const char *extra)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/main.cf", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "queue_directory = %s\nmyhostname = mx.example.com\n%s\n", f->dir, extra);
    assert_int_equal(fclose(fp), 0);
    config_load(f->dir, NULL, 0);
}

#define MAILBOXES                                                                             \
    "virtual_mailbox_maps = inline:{ hosted.example=x, user@hosted.example=hosted.example/user/, " \
    "box@hosted.example=hosted.example/box, @catchall.example=catchall.example/all/, "       \
    "catchall.example=x }\n"

static void test_domain_classes(void **state)
{
    load(*state, MAILBOXES "virtual_alias_domains = alias.example, !no.alias.example, "
                           "inline:{ {table.example=1} }");
    assert_int_equal(virtual_alias_domain("alias.example"), 1);
    assert_int_equal(virtual_alias_domain("ALIAS.example."), 1);
    assert_int_equal(virtual_alias_domain("table.example"), 1);
    assert_int_equal(virtual_alias_domain("sub.alias.example"), 0);
    assert_int_equal(virtual_alias_domain("no.alias.example"), 0);
    /* the default virtual_mailbox_domains is $virtual_mailbox_maps */
    assert_int_equal(virtual_mailbox_domain("hosted.example"), 1);
    assert_int_equal(virtual_mailbox_domain("catchall.example"), 1);
    assert_int_equal(virtual_mailbox_domain("alias.example"), 0);
    assert_int_equal(virtual_mailbox_domain(""), 0);
    load(*state, "virtual_mailbox_domains = cdb:/nonexistent/x");
    assert_int_equal(virtual_mailbox_domain("hosted.example"), LOOKUP_TEMPFAIL);
    load(*state, "");
    assert_int_equal(virtual_alias_domain("alias.example"), 0);
    assert_int_equal(virtual_mailbox_domain("hosted.example"), 0);
}

static void expect_mailbox(const char *addr, int rc, const char *want)
{
    char *value = NULL;
    assert_int_equal(virtual_mailbox_lookup(addr, &value), rc);
    if (want)
        assert_string_equal(value, want);
    else
        assert_null(value);
    free(value);
}

static void test_mailbox_lookup_order(void **state)
{
    load(*state, MAILBOXES "recipient_delimiter = +");
    expect_mailbox("user@hosted.example", LOOKUP_FOUND, "hosted.example/user/");
    expect_mailbox("User+tag@Hosted.Example", LOOKUP_FOUND, "hosted.example/user/");
    expect_mailbox("nobody@hosted.example", LOOKUP_NOTFOUND, NULL);
    expect_mailbox("anyone@catchall.example", LOOKUP_FOUND, "catchall.example/all/");
    /* the bare local part is never a key for hosted mailboxes */
    load(*state, "virtual_mailbox_maps = inline:{ user=x }");
    expect_mailbox("user@hosted.example", LOOKUP_NOTFOUND, NULL);
    char *v = NULL;
    load(*state, "virtual_uid_maps = static:5000");
    assert_int_equal(virtual_map_lookup(PARAM_virtual_uid_maps, "a@b.example", &v), LOOKUP_FOUND);
    assert_string_equal(v, "5000");
    free(v);
}

static void test_mailbox_path(void **state)
{
    char out[PATH_MAX], why[256];
    load(*state, "virtual_mailbox_base = /var/vmail");
    assert_int_equal(virtual_mailbox_path("hosted.example/user/", out, sizeof(out), why,
                                          sizeof(why)), 0);
    assert_string_equal(out, "/var/vmail/hosted.example/user/");
    assert_int_equal(virtual_mailbox_path("../etc/passwd", out, sizeof(out), why, sizeof(why)),
                     -1);
    assert_int_equal(virtual_mailbox_path("a/../../b/", out, sizeof(out), why, sizeof(why)), -1);
    assert_non_null(strstr(why, ".."));
    assert_int_equal(virtual_mailbox_path("  ", out, sizeof(out), why, sizeof(why)), -1);
    assert_int_equal(virtual_mailbox_path("a..b/c/", out, sizeof(out), why, sizeof(why)), 0);
    assert_string_equal(out, "/var/vmail/a..b/c/");
    assert_int_equal(virtual_mailbox_path("x", out, 12, why, sizeof(why)), -1);
    load(*state, "virtual_mailbox_base = /var/vmail/");
    assert_int_equal(virtual_mailbox_path("d/u", out, sizeof(out), why, sizeof(why)), 0);
    assert_string_equal(out, "/var/vmail/d/u");
}

static void expect_rcpt(const char *addr, int rc, const char *table)
{
    const char *t = NULL;
    assert_int_equal(virtual_recipient_check(addr, &t), rc);
    assert_string_equal(t, table);
}

static void test_recipient_check(void **state)
{
    load(*state, MAILBOXES "virtual_alias_domains = alias.example\n"
                           "virtual_alias_maps = inline:{ info@alias.example=a@localhost, "
                           "extra@hosted.example=user@hosted.example }");
    expect_rcpt("info@alias.example", LOOKUP_FOUND, "");
    expect_rcpt("ghost@alias.example", LOOKUP_NOTFOUND, "virtual alias table");
    expect_rcpt("user@hosted.example", LOOKUP_FOUND, "");
    expect_rcpt("extra@hosted.example", LOOKUP_FOUND, "");
    expect_rcpt("nobody@hosted.example", LOOKUP_NOTFOUND, "virtual mailbox table");
    expect_rcpt("who@catchall.example", LOOKUP_FOUND, "");
    expect_rcpt("anyone@elsewhere.example", LOOKUP_FOUND, "");
    expect_rcpt("bare", LOOKUP_FOUND, "");
    assert_int_equal(virtual_alias_listed("info@alias.example"), 1);
    assert_int_equal(virtual_alias_listed("user@hosted.example"), 0);
    /* virtual_alias_domains defaults to $virtual_alias_maps, so a broken
     * alias table leaves every domain's class unknown for now. */
    load(*state, MAILBOXES "virtual_alias_maps = cdb:/nonexistent/x");
    expect_rcpt("nobody@hosted.example", LOOKUP_TEMPFAIL, "");
    expect_rcpt("anyone@elsewhere.example", LOOKUP_TEMPFAIL, "");
    load(*state, MAILBOXES "virtual_alias_maps = cdb:/nonexistent/x\nvirtual_alias_domains =");
    expect_rcpt("nobody@hosted.example", LOOKUP_TEMPFAIL, "");
    expect_rcpt("anyone@elsewhere.example", LOOKUP_FOUND, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_domain_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_lookup_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recipient_check, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
