/* peer.c - the client's names (peer.h), as Postfix's smtpd finds them:
 * the PTR record of the client address gives reverse_client_name; that
 * name's addresses of the client's family (A for IPv4, AAAA for IPv6)
 * must include the client address for it to be client_name as well.
 *
 * Both lookups run through lib/util/dns.h on smtpd's event loop, so a
 * slow name server delays only this client's greeting, and never beyond
 * smtpd_peername_lookup_timeout: c-ares alone may retry for much longer.
 * Log lines are Postfix's, with the texts its resolver library gives for
 * the same DNS answers.
 */
#include "peer.h"
#include "session.h"
#include "smtpd.h"

#include "config.h"
#include "dns.h"
#include "log.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A lookup in progress. */
struct smtpd_peer_lookup {
    smtpd_peer_done_fn done;
    struct dns_query *query;
    struct event *deadline;
    struct dns_addr client;
    char ptr_name[DNS_NAME_SIZE];   /* once the PTR answered: the forward lookup's */
};

/* One allocation holds client_name, reverse_client_name and "name[addr]". */
static int set_names(struct session *s, const char *name, enum smtpd_peer_status status,
                     const char *reverse, enum smtpd_peer_status reverse_status)
{
    size_t nlen = strlen(name) + 1, rlen = strlen(reverse) + 1;
    size_t alen = nlen + strlen(s->addr) + 2;
    char *names = malloc(nlen + rlen + alen);
    if (!names)
        return -1;
    memcpy(names, name, nlen);
    memcpy(names + nlen, reverse, rlen);
    snprintf(names + nlen + rlen, alen, "%s[%s]", name, s->addr);
    free(s->names);
    s->names = names;
    s->name = names;
    s->reverse_name = names + nlen;
    s->namaddr = names + nlen + rlen;
    s->name_status = (unsigned char)status;
    s->reverse_name_status = (unsigned char)reverse_status;
    return 0;
}

int smtpd_peer_set(struct session *s, const char *name)
{
    return set_names(s, name, SMTPD_PEER_OK, name, SMTPD_PEER_OK);
}

static void unknown(struct session *s, enum smtpd_peer_status status)
{
    set_names(s, SMTPD_PEER_UNKNOWN, status, SMTPD_PEER_UNKNOWN, status);
}

static void lookup_free(struct smtpd_peer_lookup *l)
{
    if (l->query)
        dns_cancel(l->query);
    event_free(l->deadline);
    free(l);
}

void smtpd_peer_free(struct session *s)
{
    if (s->peer_lookup)
        lookup_free(s->peer_lookup);
    s->peer_lookup = NULL;
    free(s->names);
    s->names = NULL;
}

/* The names are set: the session goes on. */
static void finish(struct session *s)
{
    smtpd_peer_done_fn done = s->peer_lookup->done;
    lookup_free(s->peer_lookup);
    s->peer_lookup = NULL;
    done(s);
}

/* What Postfix logs after its resolver library's error text. */
static const char *resolver_text(enum dns_status status)
{
    switch (status) {
    case DNS_NOTFOUND:
        return "Name or service not known";
    case DNS_NODATA:
        return "No address associated with hostname";
    default:
        return "Temporary failure in name resolution";
    }
}

static void not_confirmed(struct session *s, enum dns_status status)
{
    const char *ptr = s->peer_lookup->ptr_name;
    msg_warn("hostname %s does not resolve to address %s: %s", ptr, s->addr,
             resolver_text(status));
    set_names(s, SMTPD_PEER_UNKNOWN,
              status == DNS_TEMPFAIL ? SMTPD_PEER_TEMP : SMTPD_PEER_FORGED, ptr, SMTPD_PEER_OK);
}

static int same_address(const struct dns_addr *a, const struct dns_addr *b)
{
    if (a->family != b->family)
        return 0;
    return a->family == AF_INET ? memcmp(&a->u.v4, &b->u.v4, sizeof(a->u.v4)) == 0
                                : memcmp(&a->u.v6, &b->u.v6, sizeof(a->u.v6)) == 0;
}

static void forward_answer(void *ctx, enum dns_status status, const struct dns_addr *addr,
                           size_t n, const char *why)
{
    struct session *s = ctx;
    struct smtpd_peer_lookup *l = s->peer_lookup;
    l->query = NULL;
    if (status != DNS_OK) {
        not_confirmed(s, status);
    } else {
        size_t i = 0;
        while (i < n && !same_address(&addr[i], &l->client))
            i++;
        if (i < n) {
            set_names(s, l->ptr_name, SMTPD_PEER_OK, l->ptr_name, SMTPD_PEER_OK);
        } else {
            msg_warn("hostname %s does not resolve to address %s", l->ptr_name, s->addr);
            set_names(s, SMTPD_PEER_UNKNOWN, SMTPD_PEER_FORGED, l->ptr_name, SMTPD_PEER_OK);
        }
    }
    finish(s);
}

/* A PTR name fit to stand for the client: a host name, not an address
 * dressed up as one. */
static int usable_name(const char *name)
{
    struct dns_addr a;
    if (dns_addr_parse(name, &a) == 0) {
        msg_warn("numeric hostname: %s", name);
        return 0;
    }
    return dns_valid_name(name);
}

static void ptr_answer(void *ctx, enum dns_status status, const struct dns_name *names, size_t n,
                       const char *why)
{
    struct session *s = ctx;
    struct smtpd_peer_lookup *l = s->peer_lookup;
    l->query = NULL;
    if (status != DNS_OK) {
        unknown(s, status == DNS_TEMPFAIL ? SMTPD_PEER_TEMP : SMTPD_PEER_PERM);
        finish(s);
        return;
    }
    /* The first name, as the resolver library gives Postfix. */
    if (!usable_name(names[0].name)) {
        unknown(s, SMTPD_PEER_PERM);
        finish(s);
        return;
    }
    snprintf(l->ptr_name, sizeof(l->ptr_name), "%s", names[0].name);
    int family = l->client.family == AF_INET6 ? DNS_INET6 : DNS_INET4;
    l->query = dns_lookup_addr(smtpd_resolver(), l->ptr_name, family, forward_answer, s);
    if (!l->query) {
        not_confirmed(s, DNS_TEMPFAIL);
        finish(s);
    }
}

/* smtpd_peername_lookup_timeout: what is not known yet is a temporary
 * failure. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    struct smtpd_peer_lookup *l = s->peer_lookup;
    if (l->ptr_name[0])
        not_confirmed(s, DNS_TEMPFAIL);
    else
        unknown(s, SMTPD_PEER_TEMP);
    finish(s);
}

int smtpd_peer_lookup(struct session *s, smtpd_peer_done_fn done)
{
    struct dns_addr client;
    struct dns_resolver *r;
    if (!var.smtpd_peername_lookup || dns_addr_parse(s->addr, &client) < 0) {
        unknown(s, SMTPD_PEER_PERM);
        return s->names ? 1 : -1;
    }
    unknown(s, SMTPD_PEER_TEMP);   /* until the answers are in */
    if (!s->names)
        return -1;
    if (!(r = smtpd_resolver()))
        return 1;
    struct smtpd_peer_lookup *l = calloc(1, sizeof(*l));
    if (!l)
        return -1;
    l->done = done;
    l->client = client;
    struct timeval tmo = {.tv_sec = var.smtpd_peername_lookup_timeout};
    if (!(l->deadline = evtimer_new(smtpd_base, deadline_cb, s)) ||
        evtimer_add(l->deadline, &tmo) < 0 ||
        !(l->query = dns_lookup_ptr(r, &client, ptr_answer, s))) {
        if (l->deadline)
            event_free(l->deadline);
        free(l);
        return -1;
    }
    s->peer_lookup = l;
    return 0;
}
