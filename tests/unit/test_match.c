/* test_match.c - unit tests for lib/match.c: domain lists (mydestination,
 * relay_domains) and network lists (mynetworks), which decide what is local
 * and who may relay. A wrong answer here makes an open relay, so both the
 * matches and the near misses are checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "match.h"

static char logpath[] = "/tmp/test_match.log.XXXXXX";

static void test_domain_list(void **state)
{
    const char *list = "localhost, mx.test.example  other.example,,last.example";
    assert_true(match_domain_list(list, "localhost"));
    assert_true(match_domain_list(list, "mx.test.example"));
    assert_true(match_domain_list(list, "other.example"));
    assert_true(match_domain_list(list, "last.example"));
    /* Case and one trailing dot do not matter. */
    assert_true(match_domain_list(list, "MX.Test.Example"));
    assert_true(match_domain_list(list, "mx.test.example."));
    assert_true(match_domain_list("mx.test.example.", "mx.test.example"));
    /* Near misses. */
    assert_false(match_domain_list(list, "example"));
    assert_false(match_domain_list(list, "test.example"));
    assert_false(match_domain_list(list, "sub.localhost"));
    assert_false(match_domain_list(list, "localhost.example"));
    assert_false(match_domain_list(list, "mx.test.example.."));
    assert_false(match_domain_list(list, "mx.test.exampl"));
    assert_false(match_domain_list(list, ""));
    assert_false(match_domain_list("", "localhost"));
    assert_false(match_domain_list("  ,  ", "localhost"));
}

static void test_domain_list_tabs_and_newlines(void **state)
{
    /* Continuation lines leave newlines or tabs in a value. */
    assert_true(match_domain_list("a.example,\n\tb.example", "b.example"));
    assert_true(match_domain_list("a.example\tb.example", "a.example"));
}

static void test_network_v4(void **state)
{
    const char *list = "127.0.0.0/8 10.1.2.3, 192.168.0.0/16";
    assert_true(match_network_list_str(list, "127.0.0.1"));
    assert_true(match_network_list_str(list, "127.255.255.254"));
    assert_true(match_network_list_str(list, "10.1.2.3"));
    assert_true(match_network_list_str(list, "192.168.77.1"));
    assert_false(match_network_list_str(list, "128.0.0.1"));
    assert_false(match_network_list_str(list, "126.255.255.255"));
    assert_false(match_network_list_str(list, "10.1.2.4"));
    assert_false(match_network_list_str(list, "192.169.0.1"));

    assert_true(match_network_list_str("127.0.0.1/32", "127.0.0.1"));
    assert_false(match_network_list_str("127.0.0.1/32", "127.0.0.2"));
    /* Prefixes that do not fall on a byte boundary. */
    assert_true(match_network_list_str("172.16.0.0/12", "172.31.255.255"));
    assert_false(match_network_list_str("172.16.0.0/12", "172.32.0.0"));
    assert_true(match_network_list_str("10.0.0.0/31", "10.0.0.1"));
    assert_false(match_network_list_str("10.0.0.0/31", "10.0.0.2"));
    assert_true(match_network_list_str("0.0.0.0/0", "203.0.113.9"));
    assert_false(match_network_list_str("", "127.0.0.1"));
}

static void test_network_v6(void **state)
{
    assert_true(match_network_list_str("[::1]/128", "::1"));
    assert_false(match_network_list_str("[::1]/128", "::2"));
    assert_true(match_network_list_str("[::1]", "::1"));
    assert_true(match_network_list_str("[2001:db8::]/32", "2001:db8:ffff::1"));
    assert_false(match_network_list_str("[2001:db8::]/32", "2001:db9::1"));
    /* Bare v6 with a prefix. */
    assert_true(match_network_list_str("2001:db8::/48", "2001:db8:0:ffff::1"));
    assert_false(match_network_list_str("2001:db8::/48", "2001:db8:1::1"));
    assert_true(match_network_list_str("fe80::/10", "febf::1"));
    assert_false(match_network_list_str("fe80::/10", "fec0::1"));
    /* Families do not mix. */
    assert_false(match_network_list_str("[::1]/128", "127.0.0.1"));
    assert_false(match_network_list_str("127.0.0.0/8", "::1"));
    assert_false(match_network_list_str("[::]/0", "127.0.0.1"));
}

static void test_network_v4_mapped(void **state)
{
    assert_true(match_network_list_str("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_false(match_network_list_str("127.0.0.0/8", "::ffff:128.0.0.1"));
    assert_true(match_network_list_str("127.0.0.1/32", "::ffff:127.0.0.1"));
    assert_false(match_network_list_str("127.0.0.1/32", "::ffff:127.0.0.2"));
}

static void test_network_sockaddr(void **state)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "127.0.0.2", &sin.sin_addr), 1);
    assert_true(match_network_list("127.0.0.0/8", (struct sockaddr *)&sin));
    assert_false(match_network_list("127.0.0.1/32", (struct sockaddr *)&sin));

    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr), 1);
    /* What a dual-stack listener sees for an IPv4 client. */
    assert_true(match_network_list("127.0.0.1/32", (struct sockaddr *)&sin6));
    assert_false(match_network_list("[::1]/128", (struct sockaddr *)&sin6));

    assert_int_equal(inet_pton(AF_INET6, "::1", &sin6.sin6_addr), 1);
    assert_true(match_network_list("127.0.0.0/8 [::1]/128", (struct sockaddr *)&sin6));
    assert_false(match_network_list("127.0.0.0/8", (struct sockaddr *)&sin6));

    struct sockaddr unix_sa;
    memset(&unix_sa, 0, sizeof(unix_sa));
    unix_sa.sa_family = AF_UNIX;
    assert_false(match_network_list("0.0.0.0/0 [::]/0", &unix_sa));
}

static char *read_log(void)
{
    FILE *fp = fopen(logpath, "r");
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    if (fp) {
        size_t n = fread(buf, 1, 65535, fp);
        buf[n] = 0;
        fclose(fp);
    }
    return buf;
}

static void test_malformed_items_skipped(void **state)
{
    const char *list = "bogus, 300.1.1.1/8, 10.0.0.0/33, 10.0.0.0/, 10.0.0.0/x, 127.0.0.0/8";
    assert_true(match_network_list_str(list, "127.0.0.1"));
    assert_false(match_network_list_str(list, "10.0.0.1"));
    assert_false(match_network_list_str(list, "300.1.1.1"));
    char *log = read_log();
    if (!strstr(log, "warning") || !strstr(log, "bogus") || !strstr(log, "10.0.0.0/33"))
        fail_msg("malformed items not warned about; log: [%s]", log);
    free(log);
}

static void test_bad_client_address(void **state)
{
    assert_false(match_network_list_str("0.0.0.0/0 [::]/0", "not-an-address"));
    assert_false(match_network_list_str("0.0.0.0/0 [::]/0", ""));
    assert_false(match_network_list_str("0.0.0.0/0", "127.0.0.1/8"));
}

/* Host lists: networks by address, names by the verified name. */
static void test_client_list(void **state)
{
    (void)state;
    const char *list = "10.0.0.0/8, filter.example, .trusted.example, !bad.ok.example, .ok.example";
    assert_true(match_client_list(list, "unknown", "10.1.2.3"));
    assert_true(match_client_list(list, "FILTER.example.", "192.0.2.1"));
    assert_false(match_client_list(list, "x.filter.example", "192.0.2.1"));
    assert_true(match_client_list(list, "a.b.trusted.example", "192.0.2.1"));
    assert_false(match_client_list(list, "trusted.example", "192.0.2.1"));
    assert_false(match_client_list(list, "bad.ok.example", "192.0.2.1"));
    assert_true(match_client_list(list, "good.ok.example", "192.0.2.1"));
    assert_false(match_client_list(list, NULL, "192.0.2.1"));
    assert_false(match_client_list("unknown", "unknown", "192.0.2.1"));
}

int main(void)
{
    int fd = mkstemp(logpath);
    if (fd >= 0)
        close(fd);
    log_init("test_match", 0);
    log_set_file(logpath);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_list),
        cmocka_unit_test(test_domain_list_tabs_and_newlines),
        cmocka_unit_test(test_network_v4),
        cmocka_unit_test(test_network_v6),
        cmocka_unit_test(test_network_v4_mapped),
        cmocka_unit_test(test_network_sockaddr),
        cmocka_unit_test(test_malformed_items_skipped),
        cmocka_unit_test(test_bad_client_address),
        cmocka_unit_test(test_client_list),
    };
    int rc = cmocka_run_group_tests_name("match", tests, NULL, NULL);
    log_set_file(NULL);
    unlink(logpath);
    return rc;
}
