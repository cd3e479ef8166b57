/* peer.h - the client's names (peer.c): the name its address has in DNS
 * (PTR) and whether that name resolves back to the address, as Postfix's
 * smtpd finds them before the greeting. client_name is the confirmed
 * name, reverse_client_name the PTR name as it is; each is "unknown"
 * without one, with a status that reject_unknown_client_hostname and
 * reject_unknown_reverse_client_hostname (restrict.c) go by.
 */
#ifndef POSTERN_SMTPD_PEER_H
#define POSTERN_SMTPD_PEER_H

struct session;

/* In Postfix's order: from PERM on a refusal takes unknown_client_reject_code,
 * a temporary failure always 450. FORGED: the PTR name does not resolve
 * back to the address. */
enum smtpd_peer_status { SMTPD_PEER_OK, SMTPD_PEER_TEMP, SMTPD_PEER_PERM, SMTPD_PEER_FORGED };

#define SMTPD_PEER_UNKNOWN "unknown"

typedef void (*smtpd_peer_done_fn)(struct session *s);

/* Find the names of s's client (s->addr). Returns 1 when they are set
 * already (smtpd_peername_lookup = no, no resolver, an address that has
 * no reverse name), 0 when lookups run on the event loop: done(s) is
 * called once the names are set, within smtpd_peername_lookup_timeout
 * (what is not known by then is a temporary failure). -1 when out of
 * memory. Until done, the names read "unknown". */
int smtpd_peer_lookup(struct session *s, smtpd_peer_done_fn done);
/* Names known without a lookup (stand-alone mode: "localhost"). 0, or -1
 * when out of memory. */
int smtpd_peer_set(struct session *s, const char *name);
/* Cancel a lookup in progress (done will not run) and free the names. */
void smtpd_peer_free(struct session *s);

#endif
