/* resolve.c - where a recipient goes: (transport, nexthop), as Postfix's
 * trivial-rewrite resolves it (resolve.h): qmgr routes with it, smtpd's
 * milter macros ({rcpt_host}, {rcpt_mailer}, ...) show it.
 *
 * Order: transport_maps (full address, then the domain, then each parent
 * ".domain", then "*"), then the domain class: mydestination -> local
 * transport; relay_domains -> relay_transport; anything else ->
 * default_transport. Postfix's other classes (lib/virtual_mailbox.h):
 * virtual_alias_domains -> bounce (5.1.1: cleanup already expanded every
 * known alias), virtual_mailbox_domains -> virtual_transport. Before all
 * that, a recipient in relocated_maps bounces with 5.1.6 and its new
 * address (lib/rewrite.h). A class's transport may name its nexthop
 * (virtual_transport = lmtp:unix:private/dovecot-lmtp); else an empty
 * nexthop means relayhost when set (for the relay and default transports),
 * else the recipient domain. "error:text"
 * bounces and "retry:text" defers without delivery. For the default
 * transport, sender_dependent_default_transport_maps may choose another
 * one, and sender_dependent_relayhost_maps another relayhost, by sender
 * (then its @domain; DUNNO stops the search).
 */
#include "resolve.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "match.h"
#include "rewrite.h"
#include "virtual_mailbox.h"

#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

/* A class's transport: "lmtp:unix:private/dovecot-lmtp" is the transport
 * "lmtp" with the nexthop "unix:private/dovecot-lmtp", which then wins over
 * relayhost and the recipient's domain, as in Postfix. */
struct class_transport {
    char name[64];
    char nexthop[512];
};

static struct {
    struct lookup_list *transport_maps;
    struct lookup_list *sender_transport_maps, *sender_relayhost_maps;
    const char *mydestination, *relay_domains, *relayhost;
    struct class_transport local, relay, deflt, virt;
    const char *local_transport, *relay_transport, *default_transport, *virtual_transport;
    const char *myhostname;
} rs;

static struct lookup_list *open_maps(enum param_id param)
{
    const char *maps = config_value(param);
    char err[256];
    if (*maps == 0)
        return NULL;
    struct lookup_list *l = lookup_list_open(maps, err, sizeof(err));
    if (!l)
        msg_fatal("%s: %s", config_name(param), err);
    return l;
}

static const char *class_split(const char *value, struct class_transport *ct)
{
    const char *colon = strchr(value, ':');
    size_t n = colon ? (size_t)(colon - value) : strlen(value);
    snprintf(ct->name, sizeof(ct->name), "%.*s", (int)(n < sizeof(ct->name) ? n : 0), value);
    snprintf(ct->nexthop, sizeof(ct->nexthop), "%s", colon ? colon + 1 : "");
    return ct->name;
}

void resolve_init(void)
{
    rs.mydestination = var.mydestination;
    rs.relay_domains = var.relay_domains;
    rs.relayhost = var.relayhost;
    rs.myhostname = var.myhostname;
    rs.local_transport = class_split(var.local_transport, &rs.local);
    rs.relay_transport = class_split(var.relay_transport, &rs.relay);
    rs.default_transport = class_split(var.default_transport, &rs.deflt);
    rs.virtual_transport = class_split(var.virtual_transport, &rs.virt);
    rs.transport_maps = open_maps(PARAM_transport_maps);
    rs.sender_transport_maps = open_maps(PARAM_sender_dependent_default_transport_maps);
    rs.sender_relayhost_maps = open_maps(PARAM_sender_dependent_relayhost_maps);
}

/* A sender-dependent table: LOOKUP_* with the malloc'd answer; "DUNNO"
 * reads as not found. The null sender is looked up by empty_key. */
static int sender_lookup(struct lookup_list *maps, const char *empty_key, const char *sender,
                         char **value)
{
    *value = NULL;
    if (maps == NULL)
        return LOOKUP_NOTFOUND;
    int rc = *sender == 0 ? lookup_list_get(maps, empty_key, value)
                          : lookup_list_address(maps, sender, 0, var.recipient_delimiter, value);
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

/* The default transport, or the one the sender's table names. */
static int default_route(const char *sender, const struct class_transport *ct, struct route *r)
{
    char *value = NULL;
    int rc = sender_lookup(rs.sender_transport_maps,
                           var.empty_address_default_transport_maps_lookup_key, sender, &value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_FOUND) {
        route_from_table(value, ct->name, r);
    } else {
        snprintf(r->transport, sizeof(r->transport), "%s", ct->name);
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", ct->nexthop);
    }
    free(value);
    return 0;
}

/* relayhost, or the one the sender's table names. */
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
    if (!sender)
        sender = "";
    memset(r, 0, sizeof(*r));
    const char *domain = address_domain(addr);
    int local = !domain || match_domain_list(rs.mydestination, domain);
    int virtual_mailbox = 0;
    int unknown = resolve_unknown(addr, domain, local, &virtual_mailbox, r);
    if (unknown != 0)
        return unknown < 0 ? -1 : 0;
    const struct class_transport *ct =
        local ? &rs.local
        : virtual_mailbox ? &rs.virt
        : *rs.relay_domains && match_domain_list(rs.relay_domains, domain) ? &rs.relay
                                                                             : &rs.deflt;
    const char *class_transport = ct->name;
    char *value = NULL;
    int rc = transport_lookup(addr, domain, &value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_FOUND) {
        route_from_table(value, class_transport, r);
    } else if (ct == &rs.deflt) {
        rc = default_route(sender, ct, r) < 0 ? LOOKUP_TEMPFAIL : rc;
    } else {
        snprintf(r->transport, sizeof(r->transport), "%s", class_transport);
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", ct->nexthop);
    }
    free(value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (r->error[0] || r->nexthop[0])
        return 0;
    /* The sender's own default transport counts as the default one. */
    int relayed = strcmp(r->transport, rs.local_transport) != 0 &&
                  (strcmp(r->transport, rs.default_transport) == 0 ||
                   strcmp(r->transport, rs.relay_transport) == 0 ||
                   (rc != LOOKUP_FOUND && ct == &rs.deflt));
    if (relayed && relayhost_route(sender, r) < 0)
        return -1;
    if (!r->nexthop[0])
        snprintf(r->nexthop, sizeof(r->nexthop), "%s", domain ? domain : rs.myhostname);
    return 0;
}
