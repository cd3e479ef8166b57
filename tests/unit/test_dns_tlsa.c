/* test_dns_tlsa.c - unit tests for dns_tlsa_parse (lib/util/dns.c): TLSA
 * records read from DNS messages built here: two records with compressed
 * owner names, a CNAME on the way skipped, records beyond the maximum and
 * data beyond the buffer dropped, a record too short to be TLSA skipped,
 * and messages cut anywhere refused or read only as far as they hold.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "dns.h"

static size_t put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return 2;
}

/* Header, the question _25._tcp.mx.test TLSA, then count answers. */
static size_t message_start(unsigned char *m, unsigned answers)
{
    static const unsigned char qname[] = "\x03_25\x04_tcp\x02mx\x04test";
    size_t n = 0;

    n += put16(m + n, 1);
    n += put16(m + n, 0x81a0);
    n += put16(m + n, 1);
    n += put16(m + n, answers);
    n += put16(m + n, 0);
    n += put16(m + n, 0);
    memcpy(m + n, qname, sizeof(qname));
    n += sizeof(qname);
    n += put16(m + n, 52);
    n += put16(m + n, 1);
    return n;
}

static size_t add_rr(unsigned char *m, size_t n, unsigned type, const unsigned char *rd,
                     size_t rdlen)
{
    n += put16(m + n, 0xc00c);   /* the question's name */
    n += put16(m + n, type);
    n += put16(m + n, 1);
    memset(m + n, 0, 4);
    n += 4;
    n += put16(m + n, (unsigned)rdlen);
    memcpy(m + n, rd, rdlen);
    return n + rdlen;
}

static void test_records(void **state)
{
    unsigned char m[512], rd1[35] = {3, 1, 1}, rd2[67] = {2, 0, 2}, cname[] = {2, 'm', 'x', 0};
    unsigned char data[256];
    struct dns_tlsa out[4];
    size_t n;

    memset(rd1 + 3, 0xab, 32);
    memset(rd2 + 3, 0xcd, 64);
    n = message_start(m, 3);
    n = add_rr(m, n, 5, cname, sizeof(cname));
    n = add_rr(m, n, 52, rd1, sizeof(rd1));
    n = add_rr(m, n, 52, rd2, sizeof(rd2));
    assert_int_equal(dns_tlsa_parse(m, n, out, 4, data, sizeof(data)), 2);
    assert_int_equal(out[0].usage, 3);
    assert_int_equal(out[0].selector, 1);
    assert_int_equal(out[0].mtype, 1);
    assert_int_equal(out[0].len, 32);
    assert_memory_equal(out[0].data, rd1 + 3, 32);
    assert_int_equal(out[1].usage, 2);
    assert_int_equal(out[1].mtype, 2);
    assert_int_equal(out[1].len, 64);
    /* At most max records, and only data that fits. */
    assert_int_equal(dns_tlsa_parse(m, n, out, 1, data, sizeof(data)), 1);
    assert_int_equal(dns_tlsa_parse(m, n, out, 4, data, 40), 1);
    /* Cut anywhere: refused, never read past the end. */
    for (size_t cut = 0; cut < n; cut++)
        assert_true(dns_tlsa_parse(m, cut, out, 4, data, sizeof(data)) <= 2);
    assert_int_equal(dns_tlsa_parse(m, n - 1, out, 4, data, sizeof(data)), -1);
    assert_int_equal(dns_tlsa_parse(m, 11, out, 4, data, sizeof(data)), -1);
}

static void test_short_and_empty(void **state)
{
    unsigned char m[256], shortrd[] = {3, 1}, data[64];
    struct dns_tlsa out[2];
    size_t n = message_start(m, 1);

    n = add_rr(m, n, 52, shortrd, sizeof(shortrd));
    assert_int_equal(dns_tlsa_parse(m, n, out, 2, data, sizeof(data)), 0);
    n = message_start(m, 0);
    assert_int_equal(dns_tlsa_parse(m, n, out, 2, data, sizeof(data)), 0);
    /* A label running past the message. */
    m[12] = 60;
    assert_int_equal(dns_tlsa_parse(m, n, out, 2, data, sizeof(data)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_short_and_empty),
    };
    return cmocka_run_group_tests_name("dns_tlsa", tests, NULL, NULL);
}
