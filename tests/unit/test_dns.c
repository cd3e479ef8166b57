/* test_dns.c - unit tests for lib/dns.c: the c-ares wrapper that remote
 * uses for every MX and address lookup, and smtpd for the client's PTR.
 *
 * The pure helpers (MX sort and shuffle, inet_protocols, address literals)
 * are checked directly. The resolver runs for real inside a libevent loop
 * against a UDP responder on 127.0.0.1 in the same loop, which answers
 * every query with a chosen RCODE and no records (SERVFAIL, NXDOMAIN,
 * REFUSED, NOERROR/NODATA) or with PTR records, so each status mapping is
 * seen end to end, and the reverse name that was asked; a
 * closed port gives the "no server" case. Callbacks must run exactly once
 * and never from inside dns_lookup_*.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"

static char logpath[] = "/tmp/test_dns.log.XXXXXX";

/* --- helpers under test without the network ------------------------------- */

static unsigned rnd_zero(unsigned bound)
{
    (void)bound;
    return 0;
}

static unsigned rnd_real(unsigned bound)
{
    return (unsigned)random() % bound;
}

static void fill_mx(struct dns_mx *mx, const unsigned *prefs, const char *const *hosts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mx[i].pref = prefs[i];
        snprintf(mx[i].host, sizeof(mx[i].host), "%s", hosts[i]);
    }
}

static void test_mx_sort_orders_by_preference(void **state)
{
    static const unsigned prefs[] = {30, 10, 20, 10, 5};
    static const char *const hosts[] = {"c", "a1", "b", "a2", "first"};
    struct dns_mx mx[5];

    fill_mx(mx, prefs, hosts, 5);
    dns_mx_sort(mx, 5, rnd_zero);
    assert_string_equal(mx[0].host, "first");
    assert_int_equal(mx[1].pref, 10);
    assert_int_equal(mx[2].pref, 10);
    assert_true((strcmp(mx[1].host, "a1") == 0 && strcmp(mx[2].host, "a2") == 0)
                || (strcmp(mx[1].host, "a2") == 0 && strcmp(mx[2].host, "a1") == 0));
    assert_string_equal(mx[3].host, "b");
    assert_string_equal(mx[4].host, "c");
}

/* Equal preferences are shuffled: over many runs each of three hosts comes
 * first (a fixed order would fail with certainty; chance failure ~1e-35). */
static void test_mx_sort_shuffles_equal_preferences(void **state)
{
    static const unsigned prefs[] = {10, 10, 10, 20};
    static const char *const hosts[] = {"x", "y", "z", "last"};
    int first[3] = {0, 0, 0};

    srandom(12345);
    for (int run = 0; run < 200; run++) {
        struct dns_mx mx[4];
        fill_mx(mx, prefs, hosts, 4);
        dns_mx_sort(mx, 4, rnd_real);
        assert_string_equal(mx[3].host, "last");
        first[mx[0].host[0] - 'x']++;
    }
    assert_true(first[0] > 0 && first[1] > 0 && first[2] > 0);
}

static void test_mx_sort_small_inputs(void **state)
{
    struct dns_mx one = {.pref = 7, .host = "only"};

    dns_mx_sort(NULL, 0, rnd_zero);
    dns_mx_sort(&one, 1, rnd_zero);
    assert_string_equal(one.host, "only");
}

static void test_families(void **state)
{
    assert_int_equal(dns_families("all"), DNS_INET4 | DNS_INET6);
    assert_int_equal(dns_families("ipv4"), DNS_INET4);
    assert_int_equal(dns_families("IPv6"), DNS_INET6);
    assert_int_equal(dns_families("ipv4, ipv6"), DNS_INET4 | DNS_INET6);
    assert_int_equal(dns_families(""), 0);
    assert_int_equal(dns_families("appletalk"), 0);
}

static void test_address_literals(void **state)
{
    struct dns_addr a;
    char text[INET6_ADDRSTRLEN];

    assert_int_equal(dns_addr_parse("127.0.0.2", &a), 0);
    assert_int_equal(a.family, AF_INET);
    dns_addr_str(&a, text, sizeof(text));
    assert_string_equal(text, "127.0.0.2");
    assert_int_equal(dns_addr_parse("::1", &a), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_int_equal(dns_addr_parse("IPv6:2001:db8::5", &a), 0);
    dns_addr_str(&a, text, sizeof(text));
    assert_string_equal(text, "2001:db8::5");
    assert_int_equal(dns_addr_parse("mx.example", &a), -1);
    assert_int_equal(dns_addr_parse("127.0.0.256", &a), -1);
    assert_int_equal(dns_addr_parse("IPv6:127.0.0.1", &a), -1);
}

static void test_bad_server_list(void **state)
{
    struct event_base *base = event_base_new();
    char err[256] = "";

    assert_null(dns_resolver_new(base, "not an address", err, sizeof(err)));
    assert_non_null(strstr(err, "dns_servers"));
    event_base_free(base);
}

/* --- the resolver against a responder in the same loop ------------------- */

struct responder {
    int fd;
    int rcode;          /* answered to every query */
    int queries;
    struct event *ev;
    const char *ptr[3]; /* PTR records answered, NULL-terminated */
    char question[300]; /* the last name asked, dotted */
};

/* The dotted form of the question name at buf + 12. */
static void note_question(struct responder *r, const unsigned char *buf, size_t n)
{
    size_t pos = 12, out = 0;

    while (pos < n && buf[pos] != 0 && out + buf[pos] + 2 < sizeof(r->question)) {
        if (out > 0)
            r->question[out++] = '.';
        memcpy(r->question + out, buf + pos + 1, buf[pos]);
        out += buf[pos];
        pos += (size_t)buf[pos] + 1;
    }
    r->question[out] = 0;
}

/* One PTR answer record for the question (name by compression pointer). */
static size_t add_ptr(unsigned char *p, const char *name)
{
    static const unsigned char head[] = {0xc0, 0x0c, 0, 12, 0, 1, 0, 0, 1, 44};
    size_t len = 0, rd = sizeof(head) + 2;

    memcpy(p, head, sizeof(head));
    for (const char *label = name; *label;) {
        size_t l = strcspn(label, ".");
        p[rd + len++] = (unsigned char)l;
        memcpy(p + rd + len, label, l);
        len += l;
        label += l + (label[l] == '.');
    }
    p[rd + len++] = 0;
    p[sizeof(head)] = (unsigned char)(len >> 8);
    p[sizeof(head) + 1] = (unsigned char)len;
    return rd + len;
}

/* Echo the question back with QR set and the chosen RCODE, and the PTR
 * records when there are any. */
static void responder_cb(evutil_socket_t fd, short what, void *arg)
{
    struct responder *r = arg;
    unsigned char buf[1500];
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    ssize_t n = recvfrom(fd, buf, 512, 0, (struct sockaddr *)&peer, &len);
    int answers = 0;

    if (n < 12)
        return;
    r->queries++;
    note_question(r, buf, (size_t)n);
    buf[2] = (unsigned char)(0x80 | (buf[2] & 0x01));  /* QR, keep RD */
    buf[3] = (unsigned char)(0x80 | r->rcode);         /* RA, RCODE */
    memset(buf + 6, 0, 6);                             /* no other records */
    for (; r->ptr[answers] != NULL; answers++)
        n += (ssize_t)add_ptr(buf + n, r->ptr[answers]);
    buf[7] = (unsigned char)answers;
    sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
}

static int responder_start(struct responder *r, struct event_base *base, int rcode)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);

    memset(r, 0, sizeof(*r));
    r->rcode = rcode;
    r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(r->fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(r->fd, (struct sockaddr *)&sin, &len), 0);
    r->ev = event_new(base, r->fd, EV_READ | EV_PERSIST, responder_cb, r);
    event_add(r->ev, NULL);
    return ntohs(sin.sin_port);
}

static void responder_stop(struct responder *r)
{
    event_free(r->ev);
    close(r->fd);
}

struct outcome {
    int calls;
    enum dns_status status;
    size_t n;
    char why[DNS_ERROR_SIZE];
    struct event_base *base;
};

static void on_mx(void *ctx, enum dns_status status, const struct dns_mx *mx, size_t n,
                  const char *why)
{
    struct outcome *o = ctx;

    o->calls++;
    o->status = status;
    o->n = n;
    snprintf(o->why, sizeof(o->why), "%s", why ? why : "");
    event_base_loopbreak(o->base);
}

static void on_addr(void *ctx, enum dns_status status, const struct dns_addr *addr, size_t n,
                    const char *why)
{
    on_mx(ctx, status, NULL, n, why);
}

/* Run the loop until the callback ran, at most 20 seconds. */
static void run_until_called(struct event_base *base, struct outcome *o)
{
    struct timeval limit = {.tv_sec = 20};

    o->base = base;
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
}

static struct dns_resolver *resolver_on(struct event_base *base, int port)
{
    char servers[64], err[256];
    struct dns_resolver *r;

    snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
    r = dns_resolver_new(base, servers, err, sizeof(err));
    assert_non_null(r);
    return r;
}

static void check_mx_status(int rcode, enum dns_status expect, const char *why)
{
    struct event_base *base = event_base_new();
    struct responder resp;
    struct outcome o = {0};
    struct dns_resolver *r = resolver_on(base, responder_start(&resp, base, rcode));

    assert_non_null(dns_lookup_mx(r, "example.test", on_mx, &o));
    assert_int_equal(o.calls, 0);   /* never from inside the call */
    run_until_called(base, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, expect);
    assert_int_equal(o.n, 0);
    assert_string_equal(o.why, why);
    assert_true(resp.queries >= 1);
    dns_resolver_free(r);
    responder_stop(&resp);
    event_base_free(base);
}

static void test_servfail_is_temporary(void **state)
{
    check_mx_status(2, DNS_TEMPFAIL, "Host not found, try again");
}

static void test_nxdomain_is_not_found(void **state)
{
    check_mx_status(3, DNS_NOTFOUND, "Host not found");
}

static void test_refused_is_temporary(void **state)
{
    check_mx_status(5, DNS_TEMPFAIL, "Host not found, try again");
}

static void test_empty_answer_is_nodata(void **state)
{
    check_mx_status(0, DNS_NODATA, "Host found but no data record of requested type");
}

static void test_address_lookup_merges_families(void **state)
{
    struct event_base *base = event_base_new();
    struct responder resp;
    struct outcome o = {0};
    struct dns_resolver *r = resolver_on(base, responder_start(&resp, base, 3));

    assert_non_null(dns_lookup_addr(r, "host.example.test", DNS_INET4 | DNS_INET6, on_addr, &o));
    run_until_called(base, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, DNS_NOTFOUND);
    assert_int_equal(resp.queries, 2);   /* A and AAAA */
    dns_resolver_free(r);
    responder_stop(&resp);
    event_base_free(base);
}

static void test_malformed_name_needs_no_query(void **state)
{
    struct event_base *base = event_base_new();
    struct responder resp;
    struct outcome o = {0};
    struct dns_resolver *r = resolver_on(base, responder_start(&resp, base, 0));

    assert_non_null(dns_lookup_mx(r, "bad..name", on_mx, &o));
    assert_int_equal(o.calls, 0);
    run_until_called(base, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, DNS_NOTFOUND);
    assert_string_equal(o.why, "Malformed domain name");
    assert_int_equal(resp.queries, 0);
    dns_resolver_free(r);
    responder_stop(&resp);
    event_base_free(base);
}

static void test_no_server_is_temporary(void **state)
{
    struct event_base *base = event_base_new();
    struct responder resp;
    struct outcome o = {0};
    int port = responder_start(&resp, base, 0);
    struct dns_resolver *r;

    responder_stop(&resp);   /* now nothing listens on that port */
    r = resolver_on(base, port);
    assert_non_null(dns_lookup_addr(r, "example.test", DNS_INET4, on_addr, &o));
    run_until_called(base, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, DNS_TEMPFAIL);
    dns_resolver_free(r);
    event_base_free(base);
}

struct ptr_outcome {
    struct outcome o;
    char names[3][DNS_NAME_SIZE];
};

static void on_ptr(void *ctx, enum dns_status status, const struct dns_name *names, size_t n,
                   const char *why)
{
    struct ptr_outcome *p = ctx;

    for (size_t i = 0; i < n && i < 3; i++)
        snprintf(p->names[i], sizeof(p->names[i]), "%s", names[i].name);
    on_mx(&p->o, status, NULL, n, why);
}

/* A PTR lookup of text against a responder with rcode and records. */
static void ptr_lookup(const char *text, int rcode, const char *const *records,
                       struct ptr_outcome *p, char *question, size_t qlen)
{
    struct event_base *base = event_base_new();
    struct responder resp;
    struct dns_addr addr;
    struct dns_resolver *r = resolver_on(base, responder_start(&resp, base, rcode));

    for (size_t i = 0; records != NULL && records[i] != NULL && i < 2; i++)
        resp.ptr[i] = records[i];
    assert_int_equal(dns_addr_parse(text, &addr), 0);
    assert_non_null(dns_lookup_ptr(r, &addr, on_ptr, p));
    assert_int_equal(p->o.calls, 0);   /* never from inside the call */
    run_until_called(base, &p->o);
    assert_int_equal(p->o.calls, 1);
    snprintf(question, qlen, "%s", resp.question);
    dns_resolver_free(r);
    responder_stop(&resp);
    event_base_free(base);
}

static void test_ptr_names_in_order(void **state)
{
    static const char *const records[] = {"first.example.test", "second.example.test", NULL};
    struct ptr_outcome p = {0};
    char question[300];

    ptr_lookup("192.0.2.1", 0, records, &p, question, sizeof(question));
    assert_string_equal(question, "1.2.0.192.in-addr.arpa");
    assert_int_equal(p.o.status, DNS_OK);
    assert_int_equal(p.o.n, 2);
    assert_string_equal(p.names[0], "first.example.test");
    assert_string_equal(p.names[1], "second.example.test");
}

static void test_ptr_ipv6_question(void **state)
{
    static const char *const records[] = {"six.example.test", NULL};
    struct ptr_outcome p = {0};
    char question[300];

    ptr_lookup("2001:db8::5", 0, records, &p, question, sizeof(question));
    assert_string_equal(question, "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
                                  "8.b.d.0.1.0.0.2.ip6.arpa");
    assert_int_equal(p.o.status, DNS_OK);
    assert_int_equal(p.o.n, 1);
    assert_string_equal(p.names[0], "six.example.test");
}

static void test_ptr_failures(void **state)
{
    static const struct {
        int rcode;
        enum dns_status status;
    } cases[] = {{3, DNS_NOTFOUND}, {2, DNS_TEMPFAIL}, {5, DNS_TEMPFAIL}, {0, DNS_NODATA}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ptr_outcome p = {0};
        char question[300];

        ptr_lookup("127.0.0.2", cases[i].rcode, NULL, &p, question, sizeof(question));
        assert_string_equal(question, "2.0.0.127.in-addr.arpa");
        assert_int_equal(p.o.status, cases[i].status);
        assert_int_equal(p.o.n, 0);
        assert_true(p.o.why[0] != 0);
    }
}

static void test_reverse_names(void **state)
{
    struct dns_addr a;
    char out[DNS_NAME_SIZE];

    assert_int_equal(dns_addr_parse("192.0.2.10", &a), 0);
    assert_int_equal(dns_reverse_name(&a, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "10.2.0.192.in-addr.arpa");
    assert_int_equal(dns_reverse_name(&a, "rbl.example.test", out, sizeof(out)), 0);
    assert_string_equal(out, "10.2.0.192.rbl.example.test");
    /* Exactly the room it needs, then one byte less. */
    assert_int_equal(dns_reverse_name(&a, NULL, out, strlen("10.2.0.192.in-addr.arpa") + 1), 0);
    assert_int_equal(dns_reverse_name(&a, NULL, out, strlen("10.2.0.192.in-addr.arpa")), -1);
    assert_int_equal(dns_addr_parse("::1", &a), 0);
    assert_int_equal(dns_reverse_name(&a, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
                             "ip6.arpa");
    a.family = AF_UNSPEC;
    assert_int_equal(dns_reverse_name(&a, NULL, out, sizeof(out)), -1);
}

/* A cancelled lookup never calls back, and freeing a resolver with lookups
 * in flight calls nothing and leaks nothing (ASan checks the latter). */
static void test_cancel_and_free_with_queries_in_flight(void **state)
{
    struct event_base *base = event_base_new();
    struct responder resp;
    struct outcome cancelled = {0}, other = {0}, dropped = {0};
    struct dns_resolver *r = resolver_on(base, responder_start(&resp, base, 2));
    struct dns_query *q = dns_lookup_mx(r, "one.test", on_mx, &cancelled);

    assert_non_null(dns_lookup_mx(r, "two.test", on_mx, &other));
    dns_cancel(q);
    run_until_called(base, &other);
    assert_int_equal(other.calls, 1);
    /* Let the cancelled one's answer arrive too. */
    struct timeval shortly = {0, 300000};
    event_base_loopexit(base, &shortly);
    event_base_dispatch(base);
    assert_int_equal(cancelled.calls, 0);

    assert_non_null(dns_lookup_mx(r, "three.test", on_mx, &dropped));
    dns_resolver_free(r);
    event_base_loopexit(base, &shortly);
    event_base_dispatch(base);
    assert_int_equal(dropped.calls, 0);
    responder_stop(&resp);
    event_base_free(base);
}

static int setup_log(void **state)
{
    int fd = mkstemp(logpath);
    if (fd < 0)
        return -1;
    close(fd);
    log_init("test_dns", 0);
    log_set_file(logpath);
    return 0;
}

static int teardown_log(void **state)
{
    unlink(logpath);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mx_sort_orders_by_preference),
        cmocka_unit_test(test_mx_sort_shuffles_equal_preferences),
        cmocka_unit_test(test_mx_sort_small_inputs),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_address_literals),
        cmocka_unit_test(test_bad_server_list),
        cmocka_unit_test(test_servfail_is_temporary),
        cmocka_unit_test(test_nxdomain_is_not_found),
        cmocka_unit_test(test_refused_is_temporary),
        cmocka_unit_test(test_empty_answer_is_nodata),
        cmocka_unit_test(test_address_lookup_merges_families),
        cmocka_unit_test(test_malformed_name_needs_no_query),
        cmocka_unit_test(test_no_server_is_temporary),
        cmocka_unit_test(test_cancel_and_free_with_queries_in_flight),
        cmocka_unit_test(test_ptr_names_in_order),
        cmocka_unit_test(test_ptr_ipv6_question),
        cmocka_unit_test(test_ptr_failures),
        cmocka_unit_test(test_reverse_names),
    };
    return cmocka_run_group_tests(tests, setup_log, teardown_log);
}
