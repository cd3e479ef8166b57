/* test_xforward_proto.c - unit tests for lib/mail/xforward_proto.c:
 * XFORWARD as smtpd parses it (Postfix's checks and 501 replies, a refused
 * command changes nothing) and as remote writes it (two lines, only what
 * the server offers, [UNAVAILABLE] for what is not known).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "xforward_proto.h"

static void test_parse(void **state)
{
    struct xforward xf = {0};
    char reply[160];
    assert_int_equal(xforward_parse("NAME=mail.example.com ADDR=IPv6:2001:db8::1 PORT=4000",
                                     &xf, reply, sizeof(reply)), 0);
    assert_string_equal(xf.value[XF_NAME], "mail.example.com");
    assert_string_equal(xf.value[XF_ADDR], "2001:db8::1");
    assert_string_equal(xf.value[XF_PORT], "4000");
    assert_int_equal(xforward_parse("proto=ESMTP helo=a+2Eb IDENT=ABC source=REMOTE", &xf, reply,
                                    sizeof(reply)), 0);
    assert_string_equal(xf.value[XF_HELO], "a.b");
    /* a HELO with a space is taken, neutered, as Postfix does */
    assert_int_equal(xforward_parse("HELO=a+20b", &xf, reply, sizeof(reply)), 0);
    assert_string_equal(xf.value[XF_HELO], "a?b");
    assert_int_equal(xforward_parse("NAME=[UNAVAILABLE] IDENT=[TEMPUNAVAIL]", &xf, reply,
                                    sizeof(reply)), 0);
    assert_string_equal(xf.value[XF_NAME], "unknown");
    assert_string_equal(xf.value[XF_IDENT], "");
    assert_true(xf.given & (1u << XF_SOURCE));
}

static void test_refusals_change_nothing(void **state)
{
    struct xforward xf = {0}, before;
    char reply[160];
    xforward_parse("HELO=x.test", &xf, reply, sizeof(reply));
    before = xf;
    static const struct {
        const char *arg, *reply;
    } bad[] = {
        {"", "501 5.5.4 Syntax: XFORWARD attribute=value..."},
        {"NAME", "501 5.5.4 Error: attribute=value expected"},
        {"=x", "501 5.5.4 Error: attribute=value expected"},
        {"COLOR=red", "501 5.5.4 Bad XFORWARD attribute name: COLOR"},
        {"NAME=ok ADDR=1.2.3", "501 5.5.4 Bad ADDR syntax: 1.2.3"},
        {"PORT=12a", "501 5.5.4 Bad PORT syntax: 12a"},
        {"SOURCE=ELSEWHERE", "501 5.5.4 Bad SOURCE syntax: ELSEWHERE"},
        {"NAME=a+20b", "501 5.5.4 Bad NAME syntax: a+20b"},
        {"HELO=a+0Db", "501 5.5.4 Bad HELO syntax: a+0Db"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(xforward_parse(bad[i].arg, &xf, reply, sizeof(reply)), -1);
        assert_string_equal(reply, bad[i].reply);
        assert_memory_equal(&xf, &before, sizeof(xf));
    }
}

static void test_offered_and_format(void **state)
{
    unsigned offered = xforward_offered("NAME ADDR PROTO HELO SOURCE PORT IDENT");
    assert_int_equal(offered, (1u << XF_COUNT) - 1);
    struct xforward xf = {0};
    char reply[160], lines[2][XFORWARD_LINE_MAX];
    xforward_parse("NAME=c.example ADDR=2001:db8::5 HELO=hi", &xf, reply, sizeof(reply));
    assert_int_equal(xforward_format(&xf, offered, lines), 2);
    assert_string_equal(lines[0], "XFORWARD NAME=c.example ADDR=IPv6:2001:db8::5 PORT=[UNAVAILABLE]");
    assert_string_equal(lines[1], "XFORWARD PROTO=[UNAVAILABLE] HELO=hi IDENT=[UNAVAILABLE] "
                                  "SOURCE=[UNAVAILABLE]");
    /* only what the server offers */
    assert_int_equal(xforward_format(&xf, xforward_offered("ADDR"), lines), 1);
    assert_string_equal(lines[0], "XFORWARD ADDR=IPv6:2001:db8::5");
    assert_int_equal(xforward_format(&xf, 0, lines), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_refusals_change_nothing),
        cmocka_unit_test(test_offered_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
