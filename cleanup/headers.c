/* headers.c - the message's own header block (cleanup.h), one logical
 * header at a time, in Postfix's order:
 *   1. header_checks (mime_header_checks for Content-* and MIME-Version)
 *      see the header as received; checks.c handles the match, and
 *      IGNORE, STRIP, REPLACE and PREPEND edit the header here.
 *   2. local submissions: To/Cc/Bcc recipients collected for sendmail -t,
 *      then Bcc: and Resent-Bcc: removed.
 *   3. the addresses in sender and recipient headers get canonical form,
 *      the canonical maps and masquerading (lib/rewrite.h, header classes)
 *      when header rewriting applies: always for local and internal mail;
 *      for SMTP mail when the client matches local_header_rewrite_clients,
 *      else only when remote_header_rewrite_domain is set (that domain
 *      then qualifies incomplete addresses).
 *   4. Content-Type is noted, so the body walker knows the MIME structure.
 * Headers cleanup adds afterwards (Message-ID, Date, From) are not
 * inspected, as in Postfix.
 */
#include "cleanup.h"

#include "addrlist.h"
#include "address.h"
#include "config.h"
#include "header_line.h"
#include "log.h"
#include "lookup.h"
#include "match.h"
#include "queue_file.h"
#include "rewrite.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Recipients for sendmail -t, and the headers a blind copy loses. */
static const char *const rcpt_headers[] = {"To", "Cc", "Bcc", NULL};
static const char *const resent_rcpt_headers[] = {"Resent-To", "Resent-Cc", "Resent-Bcc", NULL};
static const char *const blind_headers[] = {"Bcc", "Resent-Bcc", NULL};

/* --- whose headers are rewritten --- */

/* Binary form of a printable address; IPv4-mapped IPv6 becomes IPv4.
 * Returns the family, or 0 when text is no address. */
static int parse_ip(const char *text, unsigned char out[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (inet_pton(AF_INET, text, out) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, text, out) != 1)
        return 0;
    if (memcmp(out, mapped, sizeof(mapped)) == 0) {
        memmove(out, out + 12, 4);
        return AF_INET;
    }
    return AF_INET6;
}

static int is_loopback(int family, const unsigned char *a)
{
    static const unsigned char v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return family == AF_INET ? a[0] == 127 : memcmp(a, v6, 16) == 0;
}

/* This machine's interface addresses, read once per process (a cleanup
 * process lives for max_use connections): asking the kernel for every
 * message would cost more than the rest of the decision. */
static struct ifaddrs *interfaces;
static int interfaces_read;

static int is_interface_address(int family, const unsigned char *a)
{
    if (!interfaces_read) {
        interfaces_read = 1;
        if (getifaddrs(&interfaces) < 0)
            interfaces = NULL;
    }
    for (struct ifaddrs *i = interfaces; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != family)
            continue;
        if (family == AF_INET
                ? memcmp(&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, a, 4) == 0
                : memcmp(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr, a, 16) == 0)
            return 1;
    }
    return 0;
}

struct iface_match {
    int family;
    unsigned char addr[16];
    int found;
};

static int iface_item(const char *item, void *ctx)
{
    struct iface_match *m = ctx;
    unsigned char a[16];
    int family;
    if (strcasecmp(item, "all") == 0)
        m->found = is_interface_address(m->family, m->addr);
    else if (strcasecmp(item, "loopback-only") == 0 || strcasecmp(item, "localhost") == 0)
        m->found = is_loopback(m->family, m->addr);
    else if ((family = parse_ip(item, a)) != 0)
        m->found = family == m->family && memcmp(a, m->addr, family == AF_INET ? 4 : 16) == 0;
    return m->found;
}

/* permit_inet_interfaces: the client is this machine, on an address that
 * inet_interfaces listens on (host names there are not resolved). */
static int client_on_inet_interfaces(const char *client)
{
    struct iface_match m = {0};
    if (!(m.family = parse_ip(client, m.addr)))
        return 0;
    rewrite_list_walk(var.inet_interfaces, iface_item, &m);
    return m.found;
}

struct client_match {
    const struct cleanup_state *st;
    int found;
};

static int client_item(const char *item, void *ctx)
{
    struct client_match *m = ctx;
    const char *addr = m->st->client_addr;
    if (strcasecmp(item, "permit_inet_interfaces") == 0)
        m->found = client_on_inet_interfaces(addr);
    else if (strcasecmp(item, "permit_mynetworks") == 0)
        m->found = *addr && match_network_list_str(var.mynetworks, addr);
    else if (strcasecmp(item, "permit_sasl_authenticated") == 0)
        m->found = m->st->sasl_authenticated;
    else if (strchr(item, ':'))
        m->found = rewrite_match_list(item, addr, 0) == 1;   /* static:all, tables */
    else
        msg_warn("local_header_rewrite_clients: unsupported item \"%s\" ignored", item);
    return m->found;
}

void cleanup_headers_init(struct cleanup_state *st)
{
    struct client_match m = {.st = st};
    const char *remote = var.remote_header_rewrite_domain;
    st->hdr_domain = NULL;
    st->hdr_rewrite = 1;
    if (st->origin != ORIGIN_SMTP)
        return;
    rewrite_list_walk(var.local_header_rewrite_clients, client_item, &m);
    if (m.found)
        return;
    st->hdr_rewrite = remote && *remote;
    if (st->hdr_rewrite)
        st->hdr_domain = remote;
}

/* --- where the block ends --- */

long cleanup_headers_block_end(const char *buf, size_t len, int at_end)
{
    const char *end = buf + len;
    for (const char *p = buf; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl && !at_end)
            return -1;
        const char *next = nl ? nl + 1 : end;
        int continuation = (*p == ' ' || *p == '\t') && p != buf;
        if (*p == '\n' || (!continuation && header_name_len(p, (size_t)(next - p)) == 0))
            return p - buf;
        p = next;
    }
    return at_end ? (long)len : -1;
}

/* --- one header --- */

/* One address of a header: canonical form (with the remote domain when
 * that applies), then the canonical maps and masquerading. */
static int rewrite_one(void *ctx, const char *addr, char *out, size_t outlen)
{
    struct cleanup_state *st = ctx;
    if (rewrite_canonical_form(addr, st->hdr_domain, st->hdr_domain, out, outlen) != REWRITE_OK)
        return 0;
    int rc = rewrite_address(st->hdr_class, out, out, outlen);
    if (rc == REWRITE_TEMPFAIL || rc == REWRITE_LIMIT) {
        char why[ADDRESS_MAX + 64];
        snprintf(why, sizeof(why), "header address lookup problem for %s", addr);
        cleanup_defer(st, why);
        return rc;
    }
    return rc == REWRITE_OK;
}

static int rewrite_header(struct cleanup_state *st, int cls, const char *h, size_t hlen,
                          size_t nlen, struct dynbuf *out)
{
    char *edited = NULL;
    size_t elen = 0;
    st->hdr_class = cls;
    if (rewrite_header_addresses(h, hlen, nlen, rewrite_one, st, &edited, &elen) != 1)
        return cleanup_dynbuf_add(out, h, hlen);
    int rc = cleanup_dynbuf_add(out, edited, elen);
    free(edited);
    return rc;
}

static int collect_rcpt(const struct addrlist_item *item, void *ctx)
{
    char addr[ADDRESS_MAX];
    const char *at = strrchr(item->address, '@');
    if (at == item->address || (at && !at[1]))
        return 0;   /* no local part, or no domain after '@': not an address */
    if (rewrite_canonical_form(item->address, NULL, NULL, addr, sizeof(addr)) != REWRITE_OK)
        return 0;
    return cleanup_rcpt_list_add(ctx, addr, item->address) < 0;
}

/* Steps 2 to 4 for one header h[0..hlen) (its newline included). */
static int emit_header(struct cleanup_state *st, const char *h, size_t hlen, size_t nlen,
                       const char *const *extract_from, struct dynbuf *out)
{
    if (header_is(h, nlen, "Content-Type"))
        st->mime_kind = hc_content_type(h, hlen, st->mime_boundary, sizeof(st->mime_boundary));
    if (st->local && st->extract && header_in(h, nlen, extract_from) &&
        addrlist_parse(h + nlen + 1, hlen - nlen - 1, collect_rcpt, &st->extracted) < 0)
        return -1;
    if (st->local && header_in(h, nlen, blind_headers))
        return 0;   /* the point of a blind copy */
    int cls = st->hdr_rewrite ? rewrite_header_class(h, header_name_trim(h, nlen)) : 0;
    if (cls)
        return rewrite_header(st, cls, h, hlen, nlen, out);
    return cleanup_dynbuf_add(out, h, hlen);
}

/* Step 1: the checks. Returns the header to go on with: h itself, NULL
 * when it is removed, or a REPLACE text (malloc'd into *replaced). */
static const char *check_header(struct cleanup_state *st, const char *h, size_t *hlen,
                                char **replaced, struct dynbuf *out)
{
    struct hc_result r;
    size_t tlen = *hlen - (h[*hlen - 1] == '\n');
    int rc = hc_check(HC_PRIMARY_HEADER, h, tlen, &r);
    if (rc == LOOKUP_TEMPFAIL && cleanup_checks_tempfail(st))
        st->inspect = 0;
    if (rc != LOOKUP_FOUND || r.action == HC_DUNNO)
        return h;
    if (cleanup_checks_matched(st, "header", h, tlen, &r))
        st->inspect = 0;
    switch (r.action) {
    case HC_IGNORE:
    case HC_STRIP:
        return NULL;
    case HC_PREPEND:
        /* Text that is no header would end the header block early. */
        if (header_name_len(r.text, strlen(r.text)) == 0)
            msg_warn("%s: PREPEND text \"%.100s\" is not a header; not added",
                     queue_writer_id(st->writer), r.text);
        else if (cleanup_dynbuf_add(out, r.text, strlen(r.text)) < 0 ||
                 cleanup_dynbuf_add(out, "\n", 1) < 0)
            st->write_error = ENOMEM;
        return h;
    case HC_REPLACE:
        if (header_name_len(r.text, strlen(r.text)) == 0) {
            msg_warn("%s: REPLACE text \"%.100s\" is not a header; header kept",
                     queue_writer_id(st->writer), r.text);
            return h;
        }
        if (asprintf(replaced, "%s\n", r.text) < 0) {
            *replaced = NULL;
            st->write_error = ENOMEM;
            return h;
        }
        *hlen = strlen(*replaced);
        return *replaced;
    default:
        return h;
    }
}

static int any_header(const char *block, size_t len, const char *const *names)
{
    const char *end = block + len;
    for (const char *p = block; p < end;) {
        const char *next = header_end(p, end);
        size_t nlen = header_name_len(p, (size_t)(next - p));
        if (nlen && header_in(p, nlen, names))
            return 1;
        p = next;
    }
    return 0;
}

/* A block that ends inside a line (the message ended there, or
 * header_size_limit cut it): the header gets its newline, or the headers
 * cleanup adds next would run into it. */
static int process_terminated(struct cleanup_state *st, const char *block, size_t len,
                              struct dynbuf *out)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, block, len);
    copy[len] = '\n';
    int rc = cleanup_headers_process(st, copy, len + 1, out);
    free(copy);
    return rc;
}

int cleanup_headers_process(struct cleanup_state *st, const char *block, size_t len,
                            struct dynbuf *out)
{
    if (len > 0 && block[len - 1] != '\n')
        return process_terminated(st, block, len, out);
    const char *const *extract_from =
        any_header(block, len, resent_rcpt_headers) ? resent_rcpt_headers : rcpt_headers;
    const char *end = block + len;
    for (const char *p = block; p < end;) {
        const char *next = header_end(p, end), *h = p;
        size_t hlen = (size_t)(next - p);
        size_t nlen = header_name_len(p, hlen);
        char *replaced = NULL;
        int rc = 0;
        p = next;
        if (!nlen) {
            if (cleanup_dynbuf_add(out, h, hlen) < 0)
                return -1;
            continue;
        }
        if (st->inspect && st->outcome == OUTCOME_QUEUE) {
            h = check_header(st, h, &hlen, &replaced, out);
            if (!h)
                continue;
            nlen = header_name_len(h, hlen);
        }
        rc = emit_header(st, h, hlen, nlen, extract_from, out);
        free(replaced);
        if (rc < 0)
            return -1;
    }
    return 0;
}
