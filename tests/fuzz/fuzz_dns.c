/* fuzz_dns.c - libFuzzer target for the DNS answer handling of lib/dns.c:
 * what remote does with the MX, A and AAAA replies, and smtpd with the PTR
 * replies, a name server (any name server an attacker controls: the
 * reverse zone of a client's address is the client's) sends back.
 *
 * The answer parsers are static functions of dns.c, reached here by
 * compiling dns.c into this file (the archive's dns.o is then not linked);
 * dns.c itself is not changed. An answer goes through the same steps as in
 * the resolver: c-ares parses it, parse_mx/parse_a/parse_aaaa keep the
 * bounded result, query_finish_cb merges the parts and calls back.
 *
 * Input: byte 0 picks MX (even, bit 1 clear), PTR (even, bit 1 set; bit 2
 * an IPv6 address) or an address lookup (odd; bits 1-2 the families); the
 * rest is the DNS message, given to every part of the lookup. Properties:
 * the callback runs once; DNS_OK comes with at least one record and
 * nothing else with any; at most DNS_RECORDS_MAX records; names
 * NUL-terminated within DNS_NAME_SIZE; every failure has a reason;
 * dns_mx_sort leaves preferences in order. dns_reverse_name of an address
 * made from the message's first bytes is a valid name of 4 (IPv4) or 32
 * (IPv6) labels in the reverse zone.
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

static void on_ptr(void *ctx, enum dns_status status, const struct dns_name *names, size_t n,
                   const char *why)
{
    calls++;
    check_verdict(status, n, names, why);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(memchr(names[i].name, 0, sizeof(names[i].name)) != NULL);
}

static size_t count_labels(const char *name, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += name[i] == '.';
    return n;
}

static void check_reverse_name(const uint8_t *data, size_t size)
{
    struct dns_addr a = {0};
    char name[DNS_NAME_SIZE];

    a.family = size > 0 && (data[0] & 8) ? AF_INET6 : AF_INET;
    memcpy(&a.u, data, size < sizeof(a.u) ? size : sizeof(a.u));
    FUZZ_ASSERT(dns_reverse_name(&a, NULL, name, sizeof(name)) == 0);
    FUZZ_ASSERT(dns_valid_name(name));
    const char *zone = a.family == AF_INET ? ".in-addr.arpa" : ".ip6.arpa";
    size_t len = strlen(name), zlen = strlen(zone);
    FUZZ_ASSERT(len > zlen && strcmp(name + len - zlen, zone) == 0);
    FUZZ_ASSERT(count_labels(name, len - zlen) == (a.family == AF_INET ? 4 : 32));
    /* No room: refused, never cut short. */
    FUZZ_ASSERT(dns_reverse_name(&a, NULL, name, len) == -1);
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
    if ((data[0] & 3) == 0) {
        q->kind = QUERY_MX;
        q->mx_fn = on_mx;
        parse_mx(q, abuf, alen);
    } else if ((data[0] & 1) == 0) {
        q->kind = QUERY_PTR;
        q->ptr_fn = on_ptr;
        if (data[0] & 4) {
            q->ptr_addr.family = AF_INET6;
            q->ptr_addr.u.v6.s6_addr[15] = 1;
        } else {
            q->ptr_addr.family = AF_INET;
            q->ptr_addr.u.v4.s_addr = htonl(0x7f000001);
        }
        parse_ptr(q, abuf, alen);
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

    check_reverse_name(abuf, (size_t)alen);

    char *text = fuzz_cstring(abuf, (size_t)alen);
    struct dns_addr a;
    dns_addr_parse(text, &a);
    dns_families(text);
    dns_valid_name(text);
    free(text);
    return 0;
}
