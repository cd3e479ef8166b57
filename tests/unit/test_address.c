/* test_address.c - unit tests for lib/address.c: RFC 5321 paths as smtpd
 * receives them after "MAIL FROM:" / "RCPT TO:", the internal (unquoted)
 * form, and quoting back to the external form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "address.h"

/* Parse arg and check the internal form and the parameters. */
static void parses_to(const char *arg, const char *want, const char *want_params)
{
    char out[ADDRESS_MAX];
    const char *params = NULL, *err = NULL;
    int rc = address_parse_path(arg, out, sizeof(out), &params, &err);
    if (rc != 0)
        fail_msg("address_parse_path(\"%s\") failed: %s", arg, err ? err : "(no reason)");
    assert_string_equal(out, want);
    assert_non_null(params);
    assert_string_equal(params, want_params);
}

static void rejects(const char *arg)
{
    char out[ADDRESS_MAX];
    const char *params = NULL, *err = NULL;
    int rc = address_parse_path(arg, out, sizeof(out), &params, &err);
    if (rc != -1)
        fail_msg("address_parse_path(\"%s\") accepted it as \"%s\"", arg, out);
    /* A reason for the 501 reply. */
    assert_non_null(err);
    assert_true(err[0] != 0);
}

static void test_plain_paths(void **state)
{
    parses_to("<alice@example.com>", "alice@example.com", "");
    parses_to("<Alice.Smith+tag@Example.COM>", "Alice.Smith+tag@Example.COM", "");
    parses_to("<o'brien@example.com>", "o'brien@example.com", "");
    parses_to("<postmaster>", "postmaster", "");
}

static void test_null_sender(void **state)
{
    parses_to("<>", "", "");
    parses_to("<> SIZE=100", "", "SIZE=100");
}

static void test_esmtp_params(void **state)
{
    parses_to("<alice@example.com> SIZE=12345 BODY=8BITMIME", "alice@example.com",
              "SIZE=12345 BODY=8BITMIME");
    parses_to("<alice@example.com>   SIZE=1", "alice@example.com", "SIZE=1");
}

static void test_source_route_dropped(void **state)
{
    parses_to("<@relay.example:joe@example.com>", "joe@example.com", "");
    parses_to("<@a.example,@b.example:joe@c.example>", "joe@c.example", "");
}

static void test_quoted_local_part(void **state)
{
    parses_to("<\"john doe\"@example.com>", "john doe@example.com", "");
    parses_to("<\"a\\\"b\"@example.com>", "a\"b@example.com", "");
    parses_to("<\"back\\\\slash\"@example.com>", "back\\slash@example.com", "");
    parses_to("<\"odd@local\"@example.com>", "odd@local@example.com", "");
}

static void test_domain_literals(void **state)
{
    parses_to("<joe@[192.0.2.1]>", "joe@[192.0.2.1]", "");
    parses_to("<joe@[IPv6:2001:db8::1]>", "joe@[IPv6:2001:db8::1]", "");
}

static void test_reject_cases(void **state)
{
    rejects("");
    rejects("   ");
    rejects("<alice@example.com");          /* unterminated */
    rejects("<\"alice@example.com>");       /* unterminated quote */
    rejects("<alice smith@example.com>");   /* unquoted space */
    rejects("<alice@exa mple.com>");
    rejects("<alice@>");                    /* empty domain */
    rejects("<@example.com>");              /* route without mailbox */
    rejects("<alice@example..com>");        /* empty label */
    rejects("<alice@[300.1.1.1]>");         /* bad literal */
    rejects("<alice@[192.0.2.1>");
    rejects("<alice@example.com>junk");     /* no space before params */
    rejects("<<alice@example.com>>");
    rejects("<ali\001ce@example.com>");     /* control character */
    rejects("<alice@exam\177ple.com>");
    rejects("<alice@ex\303\244mple.com>");  /* 8-bit without SMTPUTF8 */
}

static void test_reject_too_long(void **state)
{
    char arg[ADDRESS_MAX + 64];
    /* A 65-byte local part is over RFC 5321's 64. */
    snprintf(arg, sizeof(arg), "<%065d@example.com>", 1);
    rejects(arg);
    /* A 64-byte one is fine. */
    snprintf(arg, sizeof(arg), "<%064d@example.com>", 1);
    char out[ADDRESS_MAX];
    const char *params, *err;
    assert_int_equal(address_parse_path(arg, out, sizeof(out), &params, &err), 0);

    /* An address that does not fit the caller's buffer is refused, not cut. */
    char small[10];
    assert_int_equal(
        address_parse_path("<alice@example.com>", small, sizeof(small), &params, &err), -1);
    assert_non_null(err);
}

static void quotes_to(const char *internal, const char *want)
{
    char out[ADDRESS_MAX];
    assert_int_equal(address_quote(internal, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void test_quote(void **state)
{
    quotes_to("alice@example.com", "alice@example.com");
    quotes_to("first.last@example.com", "first.last@example.com");
    quotes_to("", "");
    quotes_to("john doe@example.com", "\"john doe\"@example.com");
    quotes_to("a\"b@example.com", "\"a\\\"b\"@example.com");
    quotes_to("odd@local@example.com", "\"odd@local\"@example.com");
    quotes_to(".dot@example.com", "\".dot\"@example.com");
    quotes_to("dot.@example.com", "\"dot.\"@example.com");
    quotes_to("two..dots@example.com", "\"two..dots\"@example.com");
    quotes_to("postmaster", "postmaster");

    char small[8];
    assert_int_equal(address_quote("alice@example.com", small, sizeof(small)), -1);
    char exact[18];   /* strlen("alice@example.com") + 1 */
    assert_int_equal(address_quote("alice@example.com", exact, sizeof(exact)), 0);
    assert_string_equal(exact, "alice@example.com");
}

static void test_quote_parse_round_trip(void **state)
{
    static const char *const internals[] = {
        "alice@example.com", "john doe@example.com", "a\"b\\c@example.com",
        "odd@local@example.com", ".x.@example.com", "",
    };
    for (size_t i = 0; i < sizeof(internals) / sizeof(internals[0]); i++) {
        char ext[ADDRESS_MAX], arg[ADDRESS_MAX + 2], back[ADDRESS_MAX];
        const char *params, *err;
        assert_int_equal(address_quote(internals[i], ext, sizeof(ext)), 0);
        snprintf(arg, sizeof(arg), "<%s>", ext);
        assert_int_equal(address_parse_path(arg, back, sizeof(back), &params, &err), 0);
        assert_string_equal(back, internals[i]);
    }
}

/* The shown form: quoted, control characters '?', never failing. */
static void test_quote_shown(void **state)
{
    (void)state;
    char out[2 * ADDRESS_MAX + 8], tiny[8];

    address_quote_shown("john doe@example.com", out, sizeof(out));
    assert_string_equal(out, "\"john doe\"@example.com");
    address_quote_shown("a\r\nB: c@example.com", out, sizeof(out));
    assert_string_equal(out, "\"a??B: c\"@example.com");
    address_quote_shown("", out, sizeof(out));
    assert_string_equal(out, "");
    address_quote_shown(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    address_quote_shown("x y\t@example.com", tiny, sizeof(tiny));   /* cut, still shown */
    assert_string_equal(tiny, "x y?@ex");
}

static void test_domain_and_localpart(void **state)
{
    assert_string_equal(address_domain("alice@example.com"), "example.com");
    assert_string_equal(address_domain("odd@local@example.com"), "example.com");
    assert_null(address_domain("postmaster"));
    assert_null(address_domain(""));

    char lp[64];
    assert_int_equal(address_localpart("john doe@example.com", lp, sizeof(lp)), 0);
    assert_string_equal(lp, "john doe");
    assert_int_equal(address_localpart("odd@local@example.com", lp, sizeof(lp)), 0);
    assert_string_equal(lp, "odd@local");
    assert_int_equal(address_localpart("postmaster", lp, sizeof(lp)), 0);
    assert_string_equal(lp, "postmaster");
    char tiny[4];
    assert_int_equal(address_localpart("alice@example.com", tiny, sizeof(tiny)), -1);
}

static void test_lowercase(void **state)
{
    char out[64];
    assert_int_equal(address_lowercase("Alice@Example.COM", out, sizeof(out)), 0);
    assert_string_equal(out, "alice@example.com");
    assert_int_equal(address_lowercase("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    char tiny[5];
    assert_int_equal(address_lowercase("ABCDE", tiny, sizeof(tiny)), -1);
    assert_int_equal(address_lowercase("ABCD", tiny, sizeof(tiny)), 0);
    assert_string_equal(tiny, "abcd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_paths),
        cmocka_unit_test(test_null_sender),
        cmocka_unit_test(test_esmtp_params),
        cmocka_unit_test(test_source_route_dropped),
        cmocka_unit_test(test_quoted_local_part),
        cmocka_unit_test(test_domain_literals),
        cmocka_unit_test(test_reject_cases),
        cmocka_unit_test(test_reject_too_long),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_quote_parse_round_trip),
        cmocka_unit_test(test_quote_shown),
        cmocka_unit_test(test_domain_and_localpart),
        cmocka_unit_test(test_lowercase),
    };
    return cmocka_run_group_tests_name("address", tests, NULL, NULL);
}
