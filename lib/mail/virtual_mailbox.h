/* virtual_mailbox.h - hosted domains: the virtual alias domain class and the
 * virtual mailbox domain class of Postfix, asked by smtpd at RCPT time
 * (550 5.1.1 ... User unknown in virtual mailbox table), by qmgr when it
 * routes a recipient, and by the virtual delivery agent.
 *
 * virtual_alias_domains (default $virtual_alias_maps) and
 * virtual_mailbox_domains (default $virtual_mailbox_maps) are domain lists
 * like mydestination, plus "type:table" items: a domain is in the class
 * when the table has the domain as a key. virtual_mailbox_maps maps a
 * hosted address to its mailbox path relative to virtual_mailbox_base
 * ("hosted.example/user/": a trailing '/' means Maildir, anything else an
 * mbox file); "@domain" keys catch the rest of a domain.
 */
#ifndef POSTERN_VIRTUAL_MAILBOX_H
#define POSTERN_VIRTUAL_MAILBOX_H

#include "params.h"

#include <stddef.h>

/* Domain classes: 1 when domain is in the class, 0 when not,
 * LOOKUP_TEMPFAIL (lookup.h) when a table could not be read. Here and
 * below, LOOKUP_PENDING passes on from a lookup that smtpd runs off its
 * event loop (lookup_set_defer): ask again when its answer is in. */
int virtual_alias_domain(const char *domain);
int virtual_mailbox_domain(const char *domain);

/* The tables of main.cf parameter param (virtual_mailbox_maps,
 * virtual_uid_maps, virtual_gid_maps) for addr, keyed as virtual(8) does:
 * "user+ext@domain", "user@domain", "@domain". LOOKUP_FOUND with the value
 * in *value (malloc'd, caller frees), LOOKUP_NOTFOUND or LOOKUP_TEMPFAIL. */
int virtual_map_lookup(enum param_id param, const char *addr, char **value);
/* The same for virtual_mailbox_maps. */
int virtual_mailbox_lookup(const char *addr, char **path);

/* A mailbox path from virtual_mailbox_maps made absolute under
 * virtual_mailbox_base. Refuses (-1, reason in why) an empty path and any
 * ".." component, so a table cannot point outside the base. */
int virtual_mailbox_path(const char *value, char *out, size_t outlen, char *why, size_t whylen);

/* 1 when virtual_alias_maps has an entry for addr (then smtpd accepts it
 * whatever its domain class), 0 when not, LOOKUP_TEMPFAIL. */
int virtual_alias_listed(const char *addr);

/* smtpd's RCPT check for an internal-form address. Addresses outside the
 * two classes, and any address with a virtual_alias_maps entry, pass.
 * Otherwise an address of a virtual alias domain is unknown, and one of a
 * virtual mailbox domain is unknown unless virtual_mailbox_maps has it.
 * Returns LOOKUP_FOUND (accept), LOOKUP_NOTFOUND with *table naming the
 * table for the reply ("virtual alias table" or "virtual mailbox table"),
 * or LOOKUP_TEMPFAIL (a 450, never a 550). */
int virtual_recipient_check(const char *addr, const char **table);

#endif
