/* dns.h - the one DNS client of Postern: c-ares driven by a libevent loop.
 *
 * A resolver belongs to one event base; c-ares' sockets and retry timer are
 * events of that base, so a lookup never blocks the loop. Callers ask for MX
 * records or for the addresses of a host and get one callback per lookup,
 * with a status that tells a bounce (DNS_NOTFOUND, DNS_NODATA) from a reason
 * to try later (DNS_TEMPFAIL: SERVFAIL, REFUSED, timeout, malformed reply).
 *
 * Results are bounded: at most DNS_RECORDS_MAX records of a reply are kept,
 * the rest is dropped (never used to size anything), and every name fits in
 * DNS_NAME_SIZE. Result arrays live only for the duration of the callback.
 *
 * Used by remote (SMTP client: MX, A/AAAA of the nexthop) and smtpd (the
 * client's name: PTR, then A or AAAA to confirm it; RBL and sender domain
 * checks).
 * DNSSEC (dns_resolver_set_dnssec): every query then asks for the AD bit
 * (RFC 6840 5.7), and dns_query_secure tells, inside the callback, whether
 * the answer came with it: the configured resolver validated it. c-ares
 * takes answers only from the servers it asked, so the bit is trusted
 * only as far as dns_servers (or resolv.conf) is: a validating resolver
 * on this host. TLSA records (RFC 6698) are looked up in this mode.
 *
 * Used by remote (SMTP client: MX, A/AAAA of the nexthop, TLSA for DANE).
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>
#include <netinet/in.h>

struct event_base;
struct dns_resolver;
struct dns_query;

#define DNS_RECORDS_MAX 100   /* records kept from one reply */
#define DNS_NAME_SIZE 256     /* a domain name (253 octets) and its NUL */
#define DNS_ERROR_SIZE 160    /* the text of a lookup failure */

enum dns_status {
    DNS_OK = 0,
    DNS_NOTFOUND,   /* NXDOMAIN: the name does not exist */
    DNS_NODATA,     /* the name exists, without records of that type */
    DNS_TEMPFAIL,   /* SERVFAIL, REFUSED, timeout, no server, bad reply */
};

/* Address families for dns_lookup_addr and dns_families. */
#define DNS_INET4 1
#define DNS_INET6 2

struct dns_mx {
    unsigned pref;
    char host[DNS_NAME_SIZE];   /* "" for the root: a null MX (RFC 7505) */
};

struct dns_addr {
    int family;                 /* AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
};

struct dns_name {
    char name[DNS_NAME_SIZE];   /* without the trailing dot */
};

/* why is a short text for logs and bounces when status is not DNS_OK, e.g.
 * "Host not found, try again"; arrays are NULL when n is 0. */
typedef void (*dns_mx_fn)(void *ctx, enum dns_status status, const struct dns_mx *mx,
                          size_t n, const char *why);
typedef void (*dns_addr_fn)(void *ctx, enum dns_status status, const struct dns_addr *addr,
                            size_t n, const char *why);
typedef void (*dns_ptr_fn)(void *ctx, enum dns_status status, const struct dns_name *names,
                           size_t n, const char *why);

/* One TLSA record (RFC 6698 2.1). */
#define DNS_TLSA_MAX 16          /* TLSA records kept from one reply */
#define DNS_TLSA_DATA_MAX 4096   /* longer association data is dropped */
struct dns_tlsa {
    unsigned usage, selector, mtype;
    size_t len;
    unsigned char *data;         /* len bytes, owned by the result */
};
typedef void (*dns_tlsa_fn)(void *ctx, enum dns_status status, const struct dns_tlsa *tlsa,
                            size_t n, const char *why);

/* A resolver on base. servers: "" for resolv.conf, or a comma/space list of
 * "ip", "ip:port", "[ipv6]:port" (the dns_servers parameter). Returns NULL
 * with a message in err on failure. Caller owns it (dns_resolver_free). */
struct dns_resolver *dns_resolver_new(struct event_base *base, const char *servers,
                                      char *err, size_t errlen);
/* Cancels every outstanding lookup (their callbacks do not run) and frees. */
void dns_resolver_free(struct dns_resolver *r);

/* Start a lookup of name's MX records / of host's addresses in families
 * (DNS_INET4 | DNS_INET6; both are asked at once and merged, IPv4 first).
 * The callback runs exactly once, later, from the event loop (never from
 * inside these calls); a name that is not a valid domain name ends in
 * DNS_NOTFOUND without a query. Returns a handle valid until the callback
 * has run or until dns_cancel; NULL only when out of memory. */
struct dns_query *dns_lookup_mx(struct dns_resolver *r, const char *name, dns_mx_fn fn,
                                void *ctx);
struct dns_query *dns_lookup_addr(struct dns_resolver *r, const char *host, int families,
                                  dns_addr_fn fn, void *ctx);
/* Start a lookup of the PTR records of addr (in-addr.arpa or ip6.arpa),
 * names in the order of the reply; a CNAME on the way (RFC 2317 classless
 * delegation) is followed. Same contract as the lookups above. */
struct dns_query *dns_lookup_ptr(struct dns_resolver *r, const struct dns_addr *addr,
                                 dns_ptr_fn fn, void *ctx);
/* TLSA records of name ("_25._tcp.mx.example.com"), with the AD bit asked
 * for whether or not the resolver is in DNSSEC mode. */
struct dns_query *dns_lookup_tlsa(struct dns_resolver *r, const char *name, dns_tlsa_fn fn,
                                  void *ctx);
/* Ask every later query for the AD bit. */
void dns_resolver_set_dnssec(struct dns_resolver *r, int on);
/* Inside q's callback: 1 when every answer it is made of had the AD bit
 * (for an address lookup, each family asked), 0 otherwise. */
int dns_query_secure(const struct dns_query *q);
/* The TLSA records of an answer (abuf, alen), at most max into out, data
 * copied into data_buf (data_len bytes) and bounded by DNS_TLSA_DATA_MAX;
 * records of another type, class or malformed length are skipped.
 * Returns the count, or -1 when the message itself is malformed. */
long dns_tlsa_parse(const unsigned char *abuf, size_t alen, struct dns_tlsa *out, size_t max,
                    unsigned char *data_buf, size_t data_len);

/* The callback of q will not run (its storage is released when c-ares is
 * done with it). Only for a handle whose callback has not run yet. */
void dns_cancel(struct dns_query *q);

/* Sort MX records by preference, shuffling records of equal preference
 * (RFC 5321 section 5.1) with the random source rnd (returns 0..bound-1). */
void dns_mx_sort(struct dns_mx *mx, size_t n, unsigned (*rnd)(unsigned bound));

/* DNS_INET4 | DNS_INET6 for an inet_protocols value ("all", "ipv4",
 * "ipv6", "ipv4, ipv6"); 0 when the value names neither. */
int dns_families(const char *inet_protocols);

/* "127.0.0.1" or "::1" for addr into out (at least INET6_ADDRSTRLEN bytes). */
void dns_addr_str(const struct dns_addr *addr, char *out, size_t outlen);
/* Parse an IPv4 or IPv6 literal (no brackets; an "IPv6:" prefix is
 * allowed). Returns 0, or -1 when text is not an address. */
int dns_addr_parse(const char *text, struct dns_addr *addr);

/* The name addr has under domain, in reverse order ("4.3.2.1.DOMAIN"; the
 * 32 nibbles of an IPv6 address): domain "in-addr.arpa" or "ip6.arpa" for
 * its PTR records, an RBL zone for a DNSBL query; NULL for the reverse
 * zone of the address family. Returns 0, or -1 when it does not fit. */
int dns_reverse_name(const struct dns_addr *addr, const char *domain, char *out, size_t outlen);

/* 1 for an RFC 1035 host name (letters, digits, '-', and the '_' real
 * zones use; labels of 1-63, at most 253 characters, optional trailing dot). */
int dns_valid_name(const char *name);

#endif
