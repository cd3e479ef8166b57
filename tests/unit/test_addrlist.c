/* test_addrlist.c - unit tests for lib/addrlist.c: the address lists of
 * To:/Cc:/Bcc: headers and sendmail's arguments. cleanup takes sendmail -t
 * recipients from them and appends "@myorigin" at the reported spans, so
 * both the addresses and their byte positions are checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrlist.h"

#define MAX_FOUND 16

struct found {
    int n;
    char addr[MAX_FOUND][ADDRESS_MAX];
    char span[MAX_FOUND][ADDRESS_MAX];
    int qualified[MAX_FOUND];
    const char *text;
    int stop_after;   /* 0: never stop */
};

static int collect(const struct addrlist_item *item, void *ctx)
{
    struct found *f = ctx;
    assert_true(f->n < MAX_FOUND);
    assert_true(item->start < item->end);
    snprintf(f->addr[f->n], ADDRESS_MAX, "%s", item->address);
    snprintf(f->span[f->n], ADDRESS_MAX, "%.*s", (int)(item->end - item->start),
             f->text + item->start);
    f->qualified[f->n] = item->qualified;
    f->n++;
    return f->stop_after && f->n >= f->stop_after;
}

static int parse(const char *text, struct found *f)
{
    memset(f, 0, sizeof(*f));
    f->text = text;
    return addrlist_parse(text, strlen(text), collect, f);
}

static void test_plain_list(void **state)
{
    struct found f;
    assert_int_equal(parse(" a@b.example, c@d.example ,e", &f), 3);
    assert_string_equal(f.addr[0], "a@b.example");
    assert_string_equal(f.addr[1], "c@d.example");
    assert_string_equal(f.addr[2], "e");
    assert_string_equal(f.span[0], "a@b.example");
    assert_string_equal(f.span[2], "e");
    assert_true(f.qualified[0] && f.qualified[1]);
    assert_false(f.qualified[2]);
}

static void test_display_names_and_comments(void **state)
{
    struct found f;
    const char *text = "\"Doe, John\" <john@x.example>, Carol Q <carol>, (me) alice (really),"
                       " bob@y.example (Bob B)";
    assert_int_equal(parse(text, &f), 4);
    assert_string_equal(f.addr[0], "john@x.example");
    assert_string_equal(f.addr[1], "carol");
    assert_string_equal(f.span[1], "carol");
    assert_false(f.qualified[1]);
    assert_string_equal(f.addr[2], "alice");
    assert_string_equal(f.span[2], "alice");
    assert_string_equal(f.addr[3], "bob@y.example");
}

static void test_groups(void **state)
{
    struct found f;
    assert_int_equal(parse("undisclosed-recipients:;", &f), 0);
    assert_int_equal(parse("team: a@x.example, b;, c@y.example", &f), 3);
    assert_string_equal(f.addr[0], "a@x.example");
    assert_string_equal(f.addr[1], "b");
    assert_string_equal(f.addr[2], "c@y.example");
}

static void test_quoted_local_parts_and_literals(void **state)
{
    struct found f;
    assert_int_equal(parse("\"john q\"@x.example, \"a\\\"b\", joe@[127.0.0.1]", &f), 3);
    assert_string_equal(f.addr[0], "john q@x.example");
    assert_string_equal(f.addr[1], "a\"b");
    assert_string_equal(f.span[1], "\"a\\\"b\"");
    assert_false(f.qualified[1]);
    assert_string_equal(f.addr[2], "joe@[127.0.0.1]");
}

static void test_source_route_and_folding(void **state)
{
    struct found f;
    assert_int_equal(parse("<@relay.example,@r2.example:user@z.example>,\n\tsecond@z.example",
                           &f), 2);
    assert_string_equal(f.addr[0], "user@z.example");
    assert_string_equal(f.addr[1], "second@z.example");
}

static void test_empty_members_and_junk(void **state)
{
    struct found f;
    assert_int_equal(parse("", &f), 0);
    assert_int_equal(parse(" , ,, <> ,", &f), 0);
    assert_int_equal(parse("(only a comment)", &f), 0);
    /* Unterminated quotes and comments end with the text, without overrun. */
    assert_int_equal(parse("\"unterminated", &f), 1);
    assert_string_equal(f.addr[0], "unterminated");
    assert_int_equal(parse("a@b (open comment", &f), 1);
    assert_string_equal(f.addr[0], "a@b");
    /* An unterminated quote ends before a header's line end, so text
     * appended at the span stays on the header's own line. */
    assert_int_equal(parse("\"open quote\n", &f), 1);
    assert_string_equal(f.span[0], "\"open quote");
    assert_int_equal(parse("esc\\\n", &f), 1);
    assert_string_equal(f.span[0], "esc\\");
    /* Control characters never reach an address. */
    assert_int_equal(parse("ev\001il@x.example", &f), 1);
    assert_string_equal(f.addr[0], "evil@x.example");
}

static void test_long_address_skipped(void **state)
{
    struct found f;
    char text[ADDRESS_MAX * 2 + 32];
    memset(text, 'a', ADDRESS_MAX + 10);
    snprintf(text + ADDRESS_MAX + 10, sizeof(text) - ADDRESS_MAX - 10, ", ok@x.example");
    assert_int_equal(parse(text, &f), 1);
    assert_string_equal(f.addr[0], "ok@x.example");
}

static void test_callback_stops(void **state)
{
    struct found f;
    memset(&f, 0, sizeof(f));
    f.text = "a, b, c";
    f.stop_after = 2;
    assert_int_equal(addrlist_parse(f.text, strlen(f.text), collect, &f), 2);
    assert_int_equal(f.n, 2);
}

static void test_not_nul_terminated(void **state)
{
    struct found f;
    const char text[] = "a@x.example, b@x.example";
    memset(&f, 0, sizeof(f));
    f.text = text;
    assert_int_equal(addrlist_parse(text, 11, collect, &f), 1);
    assert_string_equal(f.addr[0], "a@x.example");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_list),
        cmocka_unit_test(test_display_names_and_comments),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_quoted_local_parts_and_literals),
        cmocka_unit_test(test_source_route_and_folding),
        cmocka_unit_test(test_empty_members_and_junk),
        cmocka_unit_test(test_long_address_skipped),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_not_nul_terminated),
    };
    return cmocka_run_group_tests_name("addrlist", tests, NULL, NULL);
}
