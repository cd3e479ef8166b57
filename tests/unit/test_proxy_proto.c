/* test_proxy_proto.c - unit tests for lib/util/proxy_proto.c, the PROXY
 * header smtpd reads from a load balancer: both versions, the header's
 * exact length (nothing after it is taken), "need more" for a beginning,
 * and the refusals smtpd logs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy_proto.h"

static long parse(const char *text, size_t len, struct proxy_header *h, const char **why)
{
    return proxy_header_parse((const unsigned char *)text, len, h, why);
}

static void test_v1_tcp4_and_what_follows(void **state)
{
    const char *in = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n";
    struct proxy_header h;
    const char *why;
    long n = parse(in, strlen(in), &h, &why);
    assert_int_equal(n, (long)strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n"));
    assert_int_equal(h.local, 0);
    const struct sockaddr_in *c = (const struct sockaddr_in *)&h.client;
    char addr[INET_ADDRSTRLEN];
    assert_int_equal(c->sin_family, AF_INET);
    inet_ntop(AF_INET, &c->sin_addr, addr, sizeof(addr));
    assert_string_equal(addr, "192.0.2.1");
    assert_int_equal(ntohs(c->sin_port), 56324);
    /* every beginning asks for more */
    for (long i = 0; i < n; i++)
        assert_int_equal(parse(in, (size_t)i, &h, &why), 0);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    struct proxy_header h;
    const char *why;
    const char *v6 = "PROXY TCP6 2001:db8::1 2001:db8::2 4000 25\r\n";
    assert_int_equal(parse(v6, strlen(v6), &h, &why), (long)strlen(v6));
    assert_int_equal(h.client.ss_family, AF_INET6);
    const char *unk = "PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n";
    assert_int_equal(parse(unk, strlen(unk), &h, &why), (long)strlen(unk));
    assert_int_equal(h.local, 1);
}

static void test_v1_refusals(void **state)
{
    struct proxy_header h;
    const char *why;
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"EHLO x\r\n", "unrecognized protocol header"},
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported protocol type"},
        {"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "bad or missing client address"},
        {"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "bad or missing server address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad or missing client port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad or missing client port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "bad or missing server port"},
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "bad or missing client address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad line ending"},
        {"PROXY TCP4 1.2.3.4\x01 5.6.7.8 1 2\r\n", "bad character in protocol header"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i].in, strlen(bad[i].in), &h, &why), -1);
        assert_string_equal(why, bad[i].why);
    }
    char longline[200];
    memset(longline, '1', sizeof(longline));
    memcpy(longline, "PROXY TCP4 ", 11);
    assert_int_equal(parse(longline, sizeof(longline), &h, &why), -1);
    assert_string_equal(why, "line > 107 characters");
}

static size_t v2(unsigned char *b, unsigned char ver_cmd, unsigned char fam, size_t len)
{
    static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                          0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    memcpy(b, sig, 12);
    b[12] = ver_cmd;
    b[13] = fam;
    b[14] = (unsigned char)(len >> 8);
    b[15] = (unsigned char)len;
    return 16;
}

static void test_v2(void **state)
{
    unsigned char b[600] = {0};
    struct proxy_header h;
    const char *why;
    size_t off = v2(b, 0x21, 0x11, 12 + 5);
    const unsigned char addrs[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 25};
    memcpy(b + off, addrs, 12);
    memcpy(b + off + 12, "\x04\x00\x02" "ab", 5);   /* a TLV, skipped */
    long n = proxy_header_parse(b, 16 + 17 + 4, &h, &why);
    assert_int_equal(n, 16 + 17);
    const struct sockaddr_in *c = (const struct sockaddr_in *)&h.client;
    assert_int_equal(c->sin_family, AF_INET);
    assert_int_equal(ntohs(c->sin_port), 0xdc04);
    assert_int_equal(proxy_header_parse(b, 20, &h, &why), 0);
    /* LOCAL: the connection's own addresses */
    v2(b, 0x20, 0x00, 0);
    assert_int_equal(proxy_header_parse(b, 16, &h, &why), 16);
    assert_int_equal(h.local, 1);
    /* refusals */
    v2(b, 0x31, 0x11, 12);
    assert_int_equal(proxy_header_parse(b, 28, &h, &why), -1);
    assert_string_equal(why, "unsupported protocol version");
    v2(b, 0x21, 0x11, 4);
    assert_int_equal(proxy_header_parse(b, 20, &h, &why), -1);
    assert_string_equal(why, "short version 2 protocol header");
    v2(b, 0x21, 0x11, 0xffff);
    assert_int_equal(proxy_header_parse(b, 16, &h, &why), -1);
    assert_string_equal(why, "short version 2 protocol header");
    v2(b, 0x21, 0x31, 216);
    assert_int_equal(proxy_header_parse(b, 16 + 216, &h, &why), -1);
    assert_string_equal(why, "unsupported v2 address family or transport");
    b[3] = 'X';
    assert_int_equal(proxy_header_parse(b, 16, &h, &why), -1);
    assert_string_equal(why, "unrecognized protocol header");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4_and_what_follows),
        cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_refusals),
        cmocka_unit_test(test_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
