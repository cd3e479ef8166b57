/* test_rewrite.c - unit tests for lib/rewrite.c, the address rewriting that
 * cleanup applies: canonical form (append_at_myorigin, append_dot_mydomain),
 * sender/recipient/common canonical maps with their classes, recursion and
 * loop limit, "@domain" results and unmatched extensions, masquerading with
 * exceptions and "!" items, virtual alias expansion (fan-out, recursion,
 * self-reference, loops, size and nesting limits, table failures),
 * relocated_maps, and the list matcher used for domain classes.
 *
 * Each case writes a main.cf into a fresh mkdtemp directory and loads it;
 * tables are inline: or regexp: files, or missing cdb: files for failures.
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

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "rewrite.h"

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_rewrite");
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
    fprintf(fp, "queue_directory = %s\nmyhostname = mx.example.com\nmydomain = example.com\n"
                "mydestination = $myhostname, localhost\n%s\n",
            f->dir, extra);
    assert_int_equal(fclose(fp), 0);
    config_load(f->dir, NULL, 0);
}

static void write_file(const struct fixture *f, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static void expect_rewrite(int cls, const char *in, const char *want)
{
    char out[ADDRESS_MAX];
    assert_int_equal(rewrite_address(cls, in, out, sizeof(out)), REWRITE_OK);
    assert_string_equal(out, want);
}

static void test_canonical_form(void **state)
{
    char out[ADDRESS_MAX];
    load(*state, "");
    assert_int_equal(rewrite_canonical_form("bob", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "bob@mx.example.com");
    assert_int_equal(rewrite_canonical_form("", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* append_dot_mydomain is off by default (Postfix 3). */
    assert_int_equal(rewrite_canonical_form("bob@host", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "bob@host");
    assert_int_equal(rewrite_canonical_form("bob@example.org.", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "bob@example.org");
    /* Headers of remote mail: the given domain instead. */
    assert_int_equal(rewrite_canonical_form("bob", "d.invalid", "d.invalid", out, sizeof(out)), 0);
    assert_string_equal(out, "bob@d.invalid");
    assert_int_equal(rewrite_canonical_form("bob", NULL, NULL, out, 10), REWRITE_TOOLONG);

    load(*state, "append_dot_mydomain = yes\nappend_at_myorigin = no\nmyorigin = example.com");
    assert_int_equal(rewrite_canonical_form("bob", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "bob");
    assert_int_equal(rewrite_canonical_form("bob@host", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "bob@host.example.com");
    assert_int_equal(rewrite_canonical_form("bob@[192.0.2.1]", NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "bob@[192.0.2.1]");
    assert_int_equal(rewrite_canonical_form("bob@h.example.org", NULL, NULL, out, sizeof(out)),
                     0);
    assert_string_equal(out, "bob@h.example.org");
}

static void test_canonical_maps_and_classes(void **state)
{
    load(*state,
         "sender_canonical_maps = inline:{ joe@example.com=joe.user@example.com }\n"
         "recipient_canonical_maps = inline:{ bob@example.com=robert@example.com }\n"
         "canonical_maps = inline:{ joe.user@example.com=j.user@example.com, "
         "@old.example=@new.example }\n"
         "sender_canonical_classes = envelope_sender");
    /* sender map, then the common map, for the sender's own class only */
    expect_rewrite(REWRITE_ENV_SENDER, "joe@example.com", "j.user@example.com");
    expect_rewrite(REWRITE_HDR_SENDER, "joe@example.com", "joe@example.com");
    expect_rewrite(REWRITE_ENV_RCPT, "joe@example.com", "joe@example.com");
    expect_rewrite(REWRITE_HDR_RCPT, "bob@example.com", "robert@example.com");
    expect_rewrite(REWRITE_ENV_SENDER, "bob@example.com", "bob@example.com");
    /* "@domain" keys and results keep the local part; keys ignore case */
    expect_rewrite(REWRITE_ENV_RCPT, "Ann@OLD.example", "Ann@new.example");
    expect_rewrite(REWRITE_ENV_SENDER, "", "");
}

static void test_canonical_recursion_and_loop(void **state)
{
    char out[ADDRESS_MAX];
    load(*state, "canonical_maps = inline:{ a@x.example=b@x.example, b@x.example=c@x.example, "
                 "p@x.example=q@x.example, q@x.example=p@x.example, s@x.example=s@x.example }");
    expect_rewrite(REWRITE_ENV_RCPT, "a@x.example", "c@x.example");
    expect_rewrite(REWRITE_ENV_RCPT, "s@x.example", "s@x.example");
    assert_int_equal(rewrite_address(REWRITE_ENV_RCPT, "p@x.example", out, sizeof(out)),
                     REWRITE_LIMIT);
    assert_string_equal(out, "p@x.example");
}

static void test_unmatched_extensions(void **state)
{
    load(*state, "recipient_delimiter = +\n"
                 "canonical_maps = inline:{ joe@example.com=joseph@example.org, "
                 "ann+x@example.com=annx@example.org, joe=joe@example.net }");
    expect_rewrite(REWRITE_ENV_RCPT, "joe+lists@example.com", "joseph+lists@example.org");
    expect_rewrite(REWRITE_ENV_RCPT, "ann+x@example.com", "annx@example.org");
    /* the bare local part matches only in a local domain */
    expect_rewrite(REWRITE_ENV_RCPT, "joe+a@localhost", "joe+a@example.net");
    expect_rewrite(REWRITE_ENV_RCPT, "joe+a@elsewhere.example", "joe+a@elsewhere.example");
    load(*state, "recipient_delimiter = +\npropagate_unmatched_extensions = virtual\n"
                 "canonical_maps = inline:{ joe@example.com=joseph@example.org }");
    expect_rewrite(REWRITE_ENV_RCPT, "joe+lists@example.com", "joseph@example.org");
}

static void test_masquerade(void **state)
{
    load(*state, "masquerade_domains = !secret.example.com, example.com\n"
                 "masquerade_exceptions = root, inline:{ admin=1 }");
    expect_rewrite(REWRITE_ENV_SENDER, "user@host.example.com", "user@example.com");
    expect_rewrite(REWRITE_HDR_SENDER, "user@a.b.example.com", "user@example.com");
    expect_rewrite(REWRITE_HDR_RCPT, "user@host.example.com", "user@example.com");
    expect_rewrite(REWRITE_ENV_SENDER, "user@example.com", "user@example.com");
    expect_rewrite(REWRITE_ENV_SENDER, "user@notexample.com", "user@notexample.com");
    expect_rewrite(REWRITE_ENV_SENDER, "root@host.example.com", "root@host.example.com");
    expect_rewrite(REWRITE_ENV_SENDER, "admin@host.example.com", "admin@host.example.com");
    expect_rewrite(REWRITE_ENV_SENDER, "user@x.secret.example.com", "user@x.secret.example.com");
    /* envelope recipients are not in the default masquerade_classes */
    expect_rewrite(REWRITE_ENV_RCPT, "user@host.example.com", "user@host.example.com");
    load(*state, "masquerade_domains = example.com\nmasquerade_classes = envelope_recipient");
    expect_rewrite(REWRITE_ENV_RCPT, "user@host.example.com", "user@example.com");
    expect_rewrite(REWRITE_ENV_SENDER, "user@host.example.com", "user@host.example.com");
}

static void expand(const char *addr, int want_rc, const char *want)
{
    struct rewrite_list l = {0};
    char why[512], got[4096] = "";
    assert_int_equal(rewrite_virtual_alias(addr, &l, why, sizeof(why)), want_rc);
    for (size_t i = 0; i < l.n; i++) {
        strcat(got, i ? " " : "");
        strcat(got, l.addr[i]);
    }
    if (want_rc == REWRITE_OK)
        assert_string_equal(got, want);
    else
        assert_string_equal(why, want);
    rewrite_list_free(&l);
}

static void test_virtual_alias(void **state)
{
    struct fixture *f = *state;
    char extra[PATH_MAX + 256];
    write_file(f, "virtual.re",
               "/^list@example\\.com$/ a@example.com, b@example.com, list@example.com\n"
               "/^a@example\\.com$/ alice@localhost\n"
               "/^(.*)@old\\.example$/ $1@new.example\n");
    snprintf(extra, sizeof(extra),
             "recipient_delimiter = +\n"
             "virtual_alias_maps = inline:{ {sales@example.com = bob, carol@localhost}, "
             "ping@x.example=pong@x.example, pong@x.example=ping@x.example, "
             "@catch.example=@localhost, dup@example.com=dup2@example.com }, regexp:%s/virtual.re",
             f->dir);
    load(f, extra);
    expand("nobody@example.com", REWRITE_OK, "nobody@example.com");
    /* bare results get @myorigin */
    expand("sales@example.com", REWRITE_OK, "bob@mx.example.com carol@localhost");
    /* recursion, and an address that lists itself stays */
    expand("list@example.com", REWRITE_OK, "alice@localhost b@example.com list@example.com");
    expand("x@old.example", REWRITE_OK, "x@new.example");
    /* a loop ends at the first address met twice */
    expand("ping@x.example", REWRITE_OK, "ping@x.example");
    /* "@domain" catch-all keeps the local part (and its extension) */
    expand("who+tag@catch.example", REWRITE_OK, "who+tag@localhost");
    expand("sales+promo@example.com", REWRITE_OK, "bob+promo@mx.example.com carol+promo@localhost");
}

static void test_virtual_alias_limits(void **state)
{
    load(*state, "virtual_alias_expansion_limit = 2\nvirtual_alias_recursion_limit = 2\n"
                 "virtual_alias_maps = inline:{ {big@x.example = a@x.example, b@x.example, "
                 "c@x.example}, d0@x.example=d1@x.example, d1@x.example=d2@x.example, "
                 "d2@x.example=d3@x.example }");
    expand("big@x.example", REWRITE_LIMIT,
           "unreasonable virtual_alias_maps map expansion size for big@x.example");
    expand("d1@x.example", REWRITE_OK, "d3@x.example");
    expand("d0@x.example", REWRITE_LIMIT,
           "unreasonable virtual_alias_maps map nesting for d0@x.example");
}

static void test_virtual_alias_table_failure(void **state)
{
    struct fixture *f = *state;
    char extra[PATH_MAX + 64];
    snprintf(extra, sizeof(extra), "virtual_alias_maps = inline:{a@x.example=b@x.example}, "
                                   "cdb:%s/missing", f->dir);
    load(f, extra);
    /* Every result is looked up again, so the broken table is reached. */
    expand("a@x.example", REWRITE_TEMPFAIL,
           "virtual_alias_maps map lookup problem for b@x.example");
    expand("c@x.example", REWRITE_TEMPFAIL,
           "virtual_alias_maps map lookup problem for c@x.example");
    load(f, "canonical_maps = nosuchtype:/x");
    char out[ADDRESS_MAX];
    assert_int_equal(rewrite_address(REWRITE_ENV_RCPT, "a@x.example", out, sizeof(out)),
                     REWRITE_TEMPFAIL);
    assert_string_equal(out, "a@x.example");
}

static void test_relocated(void **state)
{
    char *newloc = NULL;
    load(*state, "relocated_maps = inline:{ old@example.com=new@example.org, "
                 "gone=gone@elsewhere.example, @moved.example=contact@new.example }");
    assert_int_equal(rewrite_relocated("old@example.com", &newloc), LOOKUP_FOUND);
    assert_string_equal(newloc, "new@example.org");
    free(newloc);
    assert_int_equal(rewrite_relocated("gone@localhost", &newloc), LOOKUP_FOUND);
    assert_string_equal(newloc, "gone@elsewhere.example");
    free(newloc);
    assert_int_equal(rewrite_relocated("gone@example.net", &newloc), LOOKUP_NOTFOUND);
    assert_null(newloc);
    assert_int_equal(rewrite_relocated("anyone@moved.example", &newloc), LOOKUP_FOUND);
    assert_string_equal(newloc, "contact@new.example");
    free(newloc);
    load(*state, "");
    assert_int_equal(rewrite_relocated("old@example.com", &newloc), LOOKUP_NOTFOUND);
}

static void test_match_list_and_classes(void **state)
{
    load(*state, "");
    assert_int_equal(rewrite_match_list("a.example, B.example", "b.example", 1), 1);
    assert_int_equal(rewrite_match_list("a.example b.example", "b.example.", 1), 1);
    assert_int_equal(rewrite_match_list("!b.example, inline:{b.example=1}", "b.example", 1), 0);
    assert_int_equal(rewrite_match_list("inline:{ c.example=x, d=y }", "C.example", 1), 1);
    assert_int_equal(rewrite_match_list("inline:{ c.example=x }", "e.example", 1), 0);
    assert_int_equal(rewrite_match_list("root, Admin", "admin", 0), 1);
    assert_int_equal(rewrite_match_list("", "admin", 0), 0);
    assert_int_equal(rewrite_match_list("nosuchtype:/x", "admin", 0), LOOKUP_TEMPFAIL);
    assert_int_equal(rewrite_parse_classes("envelope_sender, header_recipient"),
                     REWRITE_ENV_SENDER | REWRITE_HDR_RCPT);
    assert_int_equal(rewrite_parse_classes("bogus"), 0);
    assert_true(rewrite_domain_is_local("LOCALHOST"));
    assert_true(rewrite_domain_is_local("mx.example.com"));
    assert_false(rewrite_domain_is_local("example.com"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_canonical_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_maps_and_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_recursion_and_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmatched_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_masquerade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_virtual_alias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_virtual_alias_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_virtual_alias_table_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relocated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_list_and_classes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
