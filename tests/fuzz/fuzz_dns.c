/* fuzz_dns.c - libFuzzer target for the DNS answer handling of lib/dns.c:
 * what remote does with the MX, A and AAAA replies a name server (any name
 * server an attacker controls) sends back.
 *
 * The answer parsers are static functions of dns.c, reached here by
 * compiling dns.c into this file (the archive's dns.o is then not linked);
 * dns.c itself is not changed. An answer goes through the same steps as in
 * the resolver: c-ares parses it, parse_mx/parse_a/parse_aaaa keep the
 * bounded result, query_finish_cb merges the parts and calls back.
 *
 * Input: byte 0 picks MX (even) or an address lookup (odd; bits 1-2 the
 * families); the rest is the DNS message, given to every part of the
 * lookup. Properties: the callback runs once; DNS_OK comes with at least
 * one record and nothing else with any; at most DNS_RECORDS_MAX records;
 * names NUL-terminated within DNS_NAME_SIZE; every failure has a reason;
 * dns_mx_sort leaves preferences in order.
 */
#include "../../lib/util/dns.c"
#include "fuzz.h"

static int calls;

static unsigned first_choice(unsigned bound)
{
    return bound > 1 ? 1 : 0;
}

static void check_verdict(enum dns_status status, size_t n, const void *records, const char *why)
{
    FUZZ_ASSERT(status >= DNS_OK && status <= DNS_TEMPFAIL);
    FUZZ_ASSERT(n <= DNS_RECORDS_MAX);
    FUZZ_ASSERT((n > 0) == (records != NULL));
    if (status == DNS_OK)
        FUZZ_ASSERT(n > 0);
    else
        FUZZ_ASSERT(n == 0 && why != NULL && *why != 0);
}

static void on_mx(void *ctx, enum dns_status status, const struct dns_mx *mx, size_t n,
                  const char *why)
{
    struct dns_mx copy[DNS_RECORDS_MAX];

    calls++;
    check_verdict(status, n, mx, why);
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(memchr(mx[i].host, 0, sizeof(mx[i].host)) != NULL);
        copy[i] = mx[i];
    }
    dns_mx_sort(copy, n, first_choice);
    for (size_t i = 1; i < n; i++)
        FUZZ_ASSERT(copy[i - 1].pref <= copy[i].pref);
}

static void on_addr(void *ctx, enum dns_status status, const struct dns_addr *addr, size_t n,
                    const char *why)
{
    char text[INET6_ADDRSTRLEN];
    struct dns_addr back;

    calls++;
    check_verdict(status, n, addr, why);
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(addr[i].family == AF_INET || addr[i].family == AF_INET6);
        dns_addr_str(&addr[i], text, sizeof(text));
        FUZZ_ASSERT(dns_addr_parse(text, &back) == 0 && back.family == addr[i].family);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_resolver fake = {0};   /* only the query list is used */
    struct dns_query *q;

    if (size < 1 || size > 65536)
        return 0;
    const unsigned char *abuf = data + 1;
    int alen = (int)(size - 1);
    q = calloc(1, sizeof(*q));
    FUZZ_ASSERT(q != NULL);
    q->r = &fake;
    fake.queries = q;
    if ((data[0] & 1) == 0) {
        q->kind = QUERY_MX;
        q->mx_fn = on_mx;
        parse_mx(q, abuf, alen);
    } else {
        q->kind = QUERY_ADDR;
        q->addr_fn = on_addr;
        q->families = (data[0] >> 1) & (DNS_INET4 | DNS_INET6);
        if (q->families == 0)
            q->families = DNS_INET4 | DNS_INET6;
        if (q->families & DNS_INET4)
            parse_a(q, abuf, alen);
        if (q->families & DNS_INET6)
            parse_aaaa(q, abuf, alen);
    }
    calls = 0;
    query_finish_cb(-1, 0, q);   /* calls back, then frees q */
    FUZZ_ASSERT(calls == 1 && fake.queries == NULL);

    char *text = fuzz_cstring(abuf, (size_t)alen);
    struct dns_addr a;
    dns_addr_parse(text, &a);
    dns_families(text);
    dns_valid_name(text);
    free(text);
    return 0;
}
