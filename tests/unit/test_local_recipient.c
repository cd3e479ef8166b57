/* test_local_recipient.c - unit tests for lib/local_recipient.c, smtpd's
 * "User unknown in local recipient table" decision: local_recipient_maps
 * in Postfix's address lookup order, an empty value turning the check
 * off, a broken table being a temporary failure (451 in smtpd, never 550), and
 * instance mode knowing every recipient unless main.cf sets the maps.
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
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "local_recipient.h"
#include "log.h"
#include "lookup.h"
#include "table_file.h"

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_local_recipient");
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

/* A user that is not us, so that the configuration is not an instance. */
static const char *other_user(void)
{
    return getuid() == 0 ? "nobody" : "root";
}

static void load(const struct fixture *f, const char *owner, const char *extra)
{
    char main_cf[PATH_MAX];
    snprintf(main_cf, sizeof(main_cf), "%s/main.cf", f->dir);
    FILE *fp = fopen(main_cf, "w");

    assert_non_null(fp);
    fprintf(fp, "mail_owner = %s\nrecipient_delimiter = +\n%s\n", owner, extra);
    assert_int_equal(fclose(fp), 0);
    config_load(f->dir, NULL, 0);
}

static void test_known_and_unknown(void **state)
{
    struct fixture *f = *state;

    load(f, other_user(), "local_recipient_maps = inline:{ alice=1, bob=1 } unix:passwd.byname");
    assert_int_equal(local_recipient_check("alice@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("Alice@LocalHost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("bob+folder@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("bob"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("root@localhost"), LOOKUP_FOUND);   /* passwd */
    assert_int_equal(local_recipient_check("carol@localhost"), LOOKUP_NOTFOUND);
    assert_int_equal(local_recipient_check("alicex@localhost"), LOOKUP_NOTFOUND);
    assert_int_equal(local_recipient_check("no-such-user-postern@localhost"), LOOKUP_NOTFOUND);
}

static void test_default_is_passwd_and_aliases(void **state)
{
    struct fixture *f = *state;
    char extra[PATH_MAX + 64], want[PATH_MAX + 64], src[PATH_MAX], err[256];
    FILE *fp;

    snprintf(src, sizeof(src), "%s/aliases", f->dir);
    snprintf(extra, sizeof(extra), "alias_maps = cdb:%s", src);
    load(f, other_user(), extra);
    snprintf(want, sizeof(want), "unix:passwd.byname cdb:%s", src);
    assert_string_equal(var.local_recipient_maps, want);
    /* The alias table does not exist yet: any recipient may be an alias,
     * so this is a temporary failure, not "unknown" (the whole address
     * is looked up in every table before its local part is). */
    assert_int_equal(local_recipient_check("listname@localhost"), LOOKUP_TEMPFAIL);
    assert_int_equal(local_recipient_check("root@localhost"), LOOKUP_TEMPFAIL);
    fp = fopen(src, "w");
    assert_non_null(fp);
    fputs("listname: root\n", fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(table_file_build(src, TABLE_SYNTAX_ALIASES, TABLE_DUPS_WARN, 0, err,
                                      sizeof(err)), 1);
    assert_int_equal(local_recipient_check("ListName@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("listname+x@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("root@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("other@localhost"), LOOKUP_NOTFOUND);
}

static void test_empty_maps_turn_the_check_off(void **state)
{
    struct fixture *f = *state;

    load(f, other_user(), "local_recipient_maps =");
    assert_int_equal(local_recipient_check("anybody@localhost"), LOOKUP_FOUND);
}

static void test_broken_tables_are_temporary_failures(void **state)
{
    struct fixture *f = *state;
    char extra[PATH_MAX + 64];

    /* An answer found before the broken table is reached stands. */
    snprintf(extra, sizeof(extra),
             "local_recipient_maps = inline:{a@localhost=1}, cdb:%s/missing", f->dir);
    load(f, other_user(), extra);
    assert_int_equal(local_recipient_check("a@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("b@localhost"), LOOKUP_TEMPFAIL);

    load(f, other_user(), "local_recipient_maps = nosuchtype:/x");
    assert_int_equal(local_recipient_check("a@localhost"), LOOKUP_TEMPFAIL);
    /* A reload with a good value recovers. */
    load(f, other_user(), "local_recipient_maps = inline:{a=1}");
    assert_int_equal(local_recipient_check("a@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("b@localhost"), LOOKUP_NOTFOUND);
}

static void test_instance_mode_knows_everyone(void **state)
{
    struct fixture *f = *state;
    struct passwd *me = getpwuid(getuid());
    char extra[PATH_MAX + 64];

    assert_non_null(me);
    /* The default (passwd, and an alias table that does not exist) would
     * know nobody in an instance: every local part is a mailbox. */
    snprintf(extra, sizeof(extra), "alias_maps = cdb:%s/missing", f->dir);
    load(f, me->pw_name, extra);
    assert_int_equal(local_recipient_check("zzz@localhost"), LOOKUP_FOUND);
    /* One main.cf sets applies, as in system mode. */
    load(f, me->pw_name, "local_recipient_maps = inline:{a=1}");
    assert_int_equal(local_recipient_check("a+x@localhost"), LOOKUP_FOUND);
    assert_int_equal(local_recipient_check("zzz@localhost"), LOOKUP_NOTFOUND);
    load(f, me->pw_name, "local_recipient_maps =");
    assert_int_equal(local_recipient_check("zzz@localhost"), LOOKUP_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_known_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_is_passwd_and_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_maps_turn_the_check_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_tables_are_temporary_failures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_instance_mode_knows_everyone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
