/* dane.c - DANE for SMTP (RFC 7672) in remote (remote.h): the TLSA
 * records of a server, from a validating resolver.
 *
 * With smtp_dns_support_level = dnssec every lookup of remote asks for the
 * AD bit (dns.h). A server at level dane or dane-only whose MX RRset (when
 * there was one) and address records were validated has its TLSA records
 * looked up at _PORT._tcp.HOST:
 *   validated records, some usable      TLS is mandatory and the
 *                                       certificate must match one of them
 *   validated, none usable; validated   "no usable TLSA": dane goes on as
 *   denial; an unvalidated answer or    "may", dane-only fails this server
 *   an unvalidated way to the server
 *   SERVFAIL (a bogus signature among   the lookup failed: this server is
 *   other causes), timeout              skipped for now (4.7.5)
 * Usable records are DANE-TA(2) and DANE-EE(3) with selector 0 or 1 and
 * matching type full(0), or SHA2-256(1) and SHA2-512(2) as
 * tls_dane_digests allows, with the digest's length; PKIX-TA(0) and
 * PKIX-EE(1) are not used for SMTP (RFC 7672 3.1.3).
 */
#include "remote.h"

#include "config.h"
#include "log.h"
#include "strlist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dane_lookup {
    struct dns_query *q;
    dane_fn fn;
    void *ctx;
    char host[DNS_NAME_SIZE];
    unsigned port;
};

static struct {
    int dnssec;
    int sha256, sha512;
} dn;

void dane_init(void)
{
    const char *level = var.smtp_dns_support_level;
    char buf[256], *items[8];
    size_t n;

    if (strcasecmp(level, "dnssec") == 0) {
        dn.dnssec = 1;
        dns_resolver_set_dnssec(remote_dns, 1);
    } else if (*level && strcasecmp(level, "enabled") != 0 && strcasecmp(level, "disabled") != 0) {
        msg_fatal("smtp_dns_support_level: unknown value \"%s\"", level);
    }
    if (!dn.dnssec && (strcasecmp(var.smtp_tls_security_level, "dane") == 0
                       || strcasecmp(var.smtp_tls_security_level, "dane-only") == 0))
        msg_warn("smtp_tls_security_level = %s needs smtp_dns_support_level = dnssec: "
                 "without it dane is \"may\" and dane-only defers", var.smtp_tls_security_level);
    if (strlen(var.tls_dane_digests) >= sizeof(buf))
        msg_fatal("tls_dane_digests: value too long");
    n = strlist_split(var.tls_dane_digests, buf, items, 8);
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(items[i], "sha256") == 0)
            dn.sha256 = 1;
        else if (strcasecmp(items[i], "sha512") == 0)
            dn.sha512 = 1;
        else
            msg_warn("tls_dane_digests: ignoring unsupported digest \"%s\"", items[i]);
    }
}

int dane_dnssec(void)
{
    return dn.dnssec;
}

void tlsa_set_free(struct tlsa_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        free(set->rec[i].data);
    free(set->rec);
    free(set);
}

int dane_record_usable(unsigned usage, unsigned selector, unsigned mtype, size_t len)
{
    if ((usage != 2 && usage != 3) || selector > 1)
        return 0;
    switch (mtype) {
    case 0: return len > 0;
    case 1: return dn.sha256 && len == 32;
    case 2: return dn.sha512 && len == 64;
    default: return 0;
    }
}

/* The usable ones of a validated answer; NULL when out of memory. */
static struct tlsa_set *usable_set(const char *host, const struct dns_tlsa *tlsa, size_t n)
{
    struct tlsa_set *set = calloc(1, sizeof(*set));

    if (set == NULL || (n > 0 && (set->rec = calloc(n, sizeof(*set->rec))) == NULL)) {
        free(set);
        return NULL;
    }
    snprintf(set->base, sizeof(set->base), "%s", host);
    for (size_t i = 0; i < n; i++) {
        const struct dns_tlsa *t = &tlsa[i];
        struct tlsa_record *r = &set->rec[set->n];
        if (!dane_record_usable(t->usage, t->selector, t->mtype, t->len))
            continue;
        if ((r->data = malloc(t->len)) == NULL) {
            tlsa_set_free(set);
            return NULL;
        }
        memcpy(r->data, t->data, t->len);
        r->usage = t->usage;
        r->selector = t->selector;
        r->mtype = t->mtype;
        r->len = t->len;
        set->n++;
    }
    return set;
}

static void on_tlsa(void *ctx, enum dns_status status, const struct dns_tlsa *tlsa, size_t n,
                    const char *why)
{
    struct dane_lookup *d = ctx;
    int secure = dns_query_secure(d->q);
    struct tlsa_set *set = NULL;
    enum dane_result result;

    d->q = NULL;
    if (status == DNS_TEMPFAIL) {
        result = DANE_ERROR;
    } else if (!secure) {
        result = DANE_INSECURE;
    } else if (status != DNS_OK) {
        result = DANE_UNUSABLE;
    } else if ((set = usable_set(d->host, tlsa, n)) == NULL) {
        result = DANE_ERROR;
    } else if (set->n == 0) {
        tlsa_set_free(set);
        set = NULL;
        result = DANE_UNUSABLE;
    } else {
        result = DANE_RECORDS;
    }
    d->fn(d->ctx, result, set);
    free(d);
}

struct dane_lookup *dane_start(const struct target *t, dane_fn fn, void *ctx)
{
    struct dane_lookup *d = calloc(1, sizeof(*d));
    char name[DNS_NAME_SIZE + 16];

    if (d == NULL)
        msg_fatal("out of memory for a TLSA lookup");
    d->fn = fn;
    d->ctx = ctx;
    d->port = t->port;
    snprintf(d->host, sizeof(d->host), "%s", t->host);
    snprintf(name, sizeof(name), "_%u._tcp.%s", t->port, t->host);
    if ((d->q = dns_lookup_tlsa(remote_dns, name, on_tlsa, d)) == NULL)
        msg_fatal("out of memory for a TLSA lookup");
    return d;
}

void dane_cancel(struct dane_lookup *d)
{
    if (d == NULL)
        return;
    dns_cancel(d->q);
    free(d);
}
