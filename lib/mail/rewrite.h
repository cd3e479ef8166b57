/* rewrite.h - address rewriting in Postfix's order, shared by cleanup (which
 * applies it to every new message) and by qmgr (relocated_maps).
 *
 * For one address, in this order (docs/rewriting.md has the whole picture):
 *   1. canonical form (rewrite_canonical_form): "user" gets "@$myorigin"
 *      (append_at_myorigin), "user@host" gets ".$mydomain"
 *      (append_dot_mydomain); headers of remote mail use
 *      remote_header_rewrite_domain instead of myorigin/mydomain.
 *   2. sender_canonical_maps (senders) or recipient_canonical_maps
 *      (recipients), then canonical_maps, each only for the address classes
 *      its *_classes parameter names; lookups are recursive.
 *   3. masquerade_domains, except for masquerade_exceptions, for the
 *      classes of masquerade_classes.
 *   4. envelope recipients only: virtual_alias_maps, one to many,
 *      recursive, bounded by virtual_alias_recursion_limit and
 *      virtual_alias_expansion_limit (rewrite_virtual_alias).
 * relocated_maps is applied later, when qmgr resolves the final recipient.
 *
 * Table keys follow canonical(5)/virtual(5): "user+ext@domain",
 * "user@domain", "user+ext", "user" (the last two only when the domain is
 * $myorigin or in $mydestination), "@domain". A result "@other" keeps the
 * local part; an unmatched extension is carried over to the result when
 * propagate_unmatched_extensions names the table class.
 *
 * Tables are opened on first use and reopened when their parameter's value
 * changes (after a reload); lookup.c itself picks up rebuilt table files.
 */
#ifndef POSTERN_REWRITE_H
#define POSTERN_REWRITE_H

#include "params.h"

#include <stddef.h>

struct lookup_list;

/* Address classes (canonical_classes, masquerade_classes). */
#define REWRITE_ENV_SENDER 1
#define REWRITE_ENV_RCPT 2
#define REWRITE_HDR_SENDER 4
#define REWRITE_HDR_RCPT 8

#define REWRITE_OK 0
#define REWRITE_TEMPFAIL (-1)   /* a table could not be read: try again later */
#define REWRITE_LIMIT (-2)      /* loop, nesting or size limit (logged) */
#define REWRITE_TOOLONG (-3)    /* the result does not fit in ADDRESS_MAX */

/* The open lookup tables of main.cf parameter param, reopened when its
 * value changes. NULL when the value is empty (*failed = 0) or does not
 * parse (*failed = 1, logged). Owned here; valid until the next call for
 * the same parameter with a different value. */
struct lookup_list *rewrite_param_maps(enum param_id param, int *failed);

/* Walk a list parameter's value ("a, b c, inline:{x=1, y=2}"): items are
 * split at commas and white space outside braces. fn's first nonzero
 * return stops the walk and is returned. */
int rewrite_list_walk(const char *value, int (*fn)(const char *item, void *ctx), void *ctx);

/* Match name against a list parameter's value the Postfix way: items are
 * literal (compared ignoring case; for domains as match_domain_list does),
 * "type:table" (name looked up as a key, the result ignored), or
 * "!item" (a match means "no"); the first item that matches decides.
 * Returns 1, 0, LOOKUP_TEMPFAIL, or LOOKUP_PENDING while a lookup runs
 * elsewhere (lookup_set_defer). */
int rewrite_match_list(const char *value, const char *name, int is_domain);

/* 1 when domain is $myorigin or listed in $mydestination: the domains
 * whose tables may be keyed by the bare local part. */
int rewrite_domain_is_local(const char *domain);

/* Step 1 for one internal-form address. origin is the domain for a bare
 * local part and dot_domain the one for "user@host" (NULL: $myorigin and
 * $mydomain). The null address stays empty. Returns 0 or REWRITE_TOOLONG. */
int rewrite_canonical_form(const char *addr, const char *origin, const char *dot_domain,
                           char *out, size_t outlen);

/* Steps 2 and 3 for an address of class cls (one REWRITE_ENV_* or
 * REWRITE_HDR_* bit). out may be addr. Returns REWRITE_OK or a negative
 * REWRITE_* (out then holds addr unchanged, unless outlen is too small for
 * addr itself: then REWRITE_TOOLONG and out is untouched). */
int rewrite_address(int cls, const char *addr, char *out, size_t outlen);

/* Step 3 alone: masquerading, when masquerade_classes names cls. */
int rewrite_masquerade(int cls, const char *addr, char *out, size_t outlen);

/* A growable list of addresses; owns its strings. */
struct rewrite_list {
    char **addr;
    size_t n, cap;
};
void rewrite_list_free(struct rewrite_list *l);

/* Step 4: the addresses addr expands to through virtual_alias_maps (addr
 * itself when it has no entry), duplicates removed, in expansion order.
 * Returns REWRITE_OK or a negative REWRITE_* with why filled (the text
 * cleanup logs). */
int rewrite_virtual_alias(const char *addr, struct rewrite_list *out, char *why, size_t whylen);

/* smtp_generic_maps (Postfix's generic(5)), for the SMTP client: one lookup
 * in canonical(5) order, no recursion; "@domain" results keep the local
 * part, unmatched extensions carry over when propagate_unmatched_extensions
 * names "generic". out may be addr. Returns REWRITE_OK (out holds the
 * result, addr itself when nothing matched) or REWRITE_TEMPFAIL. */
int rewrite_generic(const char *addr, char *out, size_t outlen);

/* The address class of a header by its name (nlen bytes, no colon):
 * REWRITE_HDR_SENDER for From, Sender, Errors-To, Resent-From,
 * Resent-Sender, Return-Receipt-To, Disposition-Notification-To;
 * REWRITE_HDR_RCPT for To, Cc, Bcc, Apparently-To, Reply-To,
 * Mail-Followup-To and the Resent- recipients; 0 for the rest. */
int rewrite_header_class(const char *name, size_t nlen);

/* Called for each address of a header (internal form): fill out and
 * return 1 when the address changes, 0 when it stays, or a negative
 * REWRITE_* to stop. */
typedef int (*rewrite_header_fn)(void *ctx, const char *addr, char *out, size_t outlen);

/* The header h[0..hlen) (name, colon, value with its folding and final
 * newline; nlen the name's length) with its addresses passed through fn;
 * display names, comments and folding stay as they were. Returns 1 with
 * a malloc'd new header in *out (*outlen bytes) when an address changed,
 * 0 when none did, or fn's negative REWRITE_* (nothing allocated). */
int rewrite_header_addresses(const char *h, size_t hlen, size_t nlen, rewrite_header_fn fn,
                             void *ctx, char **out, size_t *outlen);

/* relocated_maps: LOOKUP_FOUND with the new contact information in
 * *newloc (malloc'd, caller frees), LOOKUP_NOTFOUND or LOOKUP_TEMPFAIL. */
int rewrite_relocated(const char *addr, char **newloc);

/* The classes named in a *_classes value ("envelope_sender, ..."); unknown
 * names are warned about. */
int rewrite_parse_classes(const char *value);

#endif
