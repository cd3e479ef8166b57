/* resolve.c - where a recipient goes: (transport, nexthop), as Postfix's
 * trivial-rewrite resolves it.
 *
 * Order: transport_maps (full address, then the domain, then each parent
 * ".domain", then "*"), then the domain class: mydestination -> local
 * transport; relay_domains -> relay_transport; anything else ->
 * default_transport. Postfix's other classes (lib/virtual_mailbox.h):
 * virtual_alias_domains -> bounce (5.1.1: cleanup already expanded every
 * known alias), virtual_mailbox_domains -> virtual_transport. Before all
 * that, a recipient in relocated_maps bounces with 5.1.6 and its new
 * address (lib/rewrite.h). An empty nexthop means relayhost when set (for the
 * relay and default transports), else the recipient domain. "error:text"
 * bounces and "retry:text" defers without delivery.
 *
 * The sender may change two of these, as in Postfix: a
 * sender_dependent_default_transport_maps answer ("transport:nexthop")
 * stands for default_transport, and a sender_dependent_relayhost_maps
 * answer for relayhost; each is looked up by the sender address, then
 * "@domain" (the null sender by empty_address_*_lookup_key), and "DUNNO"
 * ends the search without an override. transport_maps still wins over
 * both, and a nexthop named by a transport wins over any relayhost.
 */
#include "qmgr.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "match.h"
#include "rewrite.h"
#include "virtual_mailbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct {
    struct lookup_list *transport_maps;
    struct lookup_list *sender_transport_maps, *sender_relayhost_maps;
    const char *mydestination, *relay_domains, *relayhost;
    const char *local_transport, *relay_transport, *default_transport, *virtual_transport;
    const char *myhostname;
} rs;

/* "local:host" -> "local"; Postfix configs name the nexthop too. */
static const char *transport_name(const char *value, char *buf, size_t len)
{
    snprintf(buf, len, "%s", value);
    char *colon = strchr(buf, ':');
    if (colon)
        *colon = 0;
    return buf;
}

static struct lookup_list *open_maps(const char *name, const char *maps)
{
    char err[256];
    struct lookup_list *l;

    if (*maps == 0)
        return NULL;
    if ((l = lookup_list_open(maps, err, sizeof(err))) == NULL)
        msg_fatal("%s: %s", name, err);
    return l;
}

void resolve_init(void)
{
    static char local[64], relay[64], deflt[64], virt[64];
    rs.mydestination = var.mydestination;
    rs.relay_domains = var.relay_domains;
    rs.relayhost = var.relayhost;
    rs.myhostname = var.myhostname;
    rs.local_transport = transport_name(var.local_transport, local, sizeof(local));
    rs.relay_transport = transport_name(var.relay_transport, relay, sizeof(relay));
    rs.default_transport = transport_name(var.default_transport, deflt, sizeof(deflt));
    rs.virtual_transport = transport_name(var.virtual_transport, virt, sizeof(virt));
    rs.transport_maps = open_maps("transport_maps", var.transport_maps);
    rs.sender_transport_maps = open_maps("sender_dependent_default_transport_maps",
                                         var.sender_dependent_default_transport_maps);
    rs.sender_relayhost_maps = open_maps("sender_dependent_relayhost_maps",
                                         var.sender_dependent_relayhost_maps);
}

/* A sender-dependent table: LOOKUP_* with the malloc'd answer; "DUNNO"
 * reads as not found. */
static int sender_lookup(struct lookup_list *maps, const char *empty_key, const char *sender,
                         char **value)
{
    int rc;

    *value = NULL;
    if (maps == NULL)
        return LOOKUP_NOTFOUND;
    if (*sender == 0)
        rc = lookup_list_get(maps, empty_key, value);
    else
        rc = lookup_list_address(maps, sender, 0, var.recipient_delimiter, value);
    if (rc == LOOKUP_FOUND && strcasecmp(*value, "DUNNO") == 0) {
        free(*value);
        *value = NULL;
        rc = LOOKUP_NOTFOUND;
    }
    return rc;
}

/* transport_maps; returns LOOKUP_* and the malloc'd value in *value. */
static int transport_lookup(const char *addr, const char *domain, char **value)
{
    if (!rs.transport_maps)
        return LOOKUP_NOTFOUND;
    int rc = lookup_list_get(rs.transport_maps, addr, value);
    if (rc != LOOKUP_NOTFOUND || !domain)
        return rc;
    if ((rc = lookup_list_get(rs.transport_maps, domain, value)) != LOOKUP_NOTFOUND)
        return rc;
    for (const char *p = strchr(domain, '.'); p; p = strchr(p + 1, '.'))
        if ((rc = lookup_list_get(rs.transport_maps, p, value)) != LOOKUP_NOTFOUND)
            return rc;
    return lookup_list_get(rs.transport_maps, "*", value);
}

/* Fill the route from a "transport:nexthop" table value. */
static void route_from_table(const char *value, const char *class_transport, struct route *r)
{
    const char *colon = strchr(value, ':');
    size_t tlen = colon ? (size_t)(colon - value) : strlen(value);
    const char *nexthop = colon ? colon + 1 : "";
    if (tlen > 0 && tlen < sizeof(r->transport)) {
        memcpy(r->transport, value, tlen);
        r->transport[tlen] = 0;
    } else {
        snprintf(r->transport, sizeof(r->transport), "%s", class_transport);
    }
    if (strcmp(r->transport, "error") == 0 || strcmp(r->transport, "retry") == 0)
        snprintf(r->error, sizeof(r->error), "%s", *nexthop ? nexthop : "mail delivery disabled");
    else if (strcmp(r->transport, "discard") == 0)
        snprintf(r->error, sizeof(r->error), "%s", *nexthop ? nexthop : "discarded");
    else if (*nexthop)
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", nexthop);
}

/* relocated_maps, then the virtual alias class: recipients that bounce
 * whatever transport_maps says. 1 when r is an error route, 0 when not,
 * -1 on a temporary lookup failure. */
static int resolve_unknown(const char *addr, const char *domain, int local, int *virtual_mailbox,
                           struct route *r)
{
    char *newloc = NULL;
    int rc = rewrite_relocated(addr, &newloc);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_FOUND) {
        snprintf(r->transport, sizeof(r->transport), "error");
        snprintf(r->error, sizeof(r->error), "5.1.6 User has moved to %s", newloc);
        free(newloc);
        return 1;
    }
    if (local)
        return 0;
    int alias = virtual_alias_domain(domain);
    if (alias == 1) {
        snprintf(r->transport, sizeof(r->transport), "error");
        snprintf(r->error, sizeof(r->error), "5.1.1 User unknown in virtual alias table");
        return 1;
    }
    *virtual_mailbox = alias == 0 ? virtual_mailbox_domain(domain) : alias;
    return *virtual_mailbox == LOOKUP_TEMPFAIL ? -1 : 0;
}

/* default_transport, or the sender's own (with its nexthop, if any). */
static int default_route(const char *sender, struct route *r)
{
    char *value = NULL;
    int rc = sender_lookup(rs.sender_transport_maps,
                           var.empty_address_default_transport_maps_lookup_key, sender, &value);

    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_FOUND)
        route_from_table(value, rs.default_transport, r);
    else
        snprintf(r->transport, sizeof(r->transport), "%s", rs.default_transport);
    free(value);
    return 0;
}

/* relayhost, or the sender's own: into r->nexthop when one applies. */
static int relayhost_route(const char *sender, struct route *r)
{
    char *value = NULL;
    int rc = sender_lookup(rs.sender_relayhost_maps, var.empty_address_relayhost_maps_lookup_key,
                           sender, &value);

    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_FOUND && *value)
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", value);
    else if (*rs.relayhost)
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", rs.relayhost);
    free(value);
    return 0;
}

int resolve_recipient(const char *sender, const char *addr, struct route *r)
{
    memset(r, 0, sizeof(*r));
    const char *domain = address_domain(addr);
    int local = !domain || match_domain_list(rs.mydestination, domain);
    int virtual_mailbox = 0;
    int unknown = resolve_unknown(addr, domain, local, &virtual_mailbox, r);
    if (unknown != 0)
        return unknown < 0 ? -1 : 0;
    const char *class_transport = local ? rs.local_transport
                                  : virtual_mailbox ? rs.virtual_transport
                                  : *rs.relay_domains && match_domain_list(rs.relay_domains, domain)
                                      ? rs.relay_transport
                                      : rs.default_transport;
    char *value = NULL;
    int rc = transport_lookup(addr, domain, &value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_FOUND)
        route_from_table(value, class_transport, r);
    else if (class_transport == rs.default_transport && default_route(sender, r) < 0)
        rc = LOOKUP_TEMPFAIL;
    else if (class_transport != rs.default_transport)
        snprintf(r->transport, sizeof(r->transport), "%s", class_transport);
    free(value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (r->error[0] || r->nexthop[0])
        return 0;
    /* The sender's own default transport is the default transport too. */
    int relayed = strcmp(r->transport, rs.local_transport) != 0 &&
                  (strcmp(r->transport, rs.default_transport) == 0 ||
                   strcmp(r->transport, rs.relay_transport) == 0 ||
                   (rc != LOOKUP_FOUND && class_transport == rs.default_transport));
    if (relayed && relayhost_route(sender, r) < 0)
        return -1;
    if (!r->nexthop[0])
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", domain ? domain : rs.myhostname);
    return 0;
}
