/* match.h - matching against the list parameters of main.cf: domains
 * (mydestination, relay_domains) and networks (mynetworks).
 */
#ifndef POSTERN_MATCH_H
#define POSTERN_MATCH_H

struct sockaddr;

/* 1 when domain equals an item of the comma/space separated list, ignoring
 * case and a trailing dot. */
int match_domain_list(const char *list, const char *domain);
/* 1 when the address falls in an item of the list: "a.b.c.d", "a.b.c.d/n",
 * "[v6]" or "[v6]/n" or bare v6 with /n. Malformed items are warned about and
 * skipped. IPv4-mapped IPv6 addresses match IPv4 items. */
int match_network_list(const char *list, const struct sockaddr *sa);
/* The same for a printable address. */
int match_network_list_str(const char *list, const char *addr);
/* A host list (smtpd_authorized_xforward_hosts): network items match the
 * printable address addr, other items the host name name (verified; NULL
 * or "unknown" when none): "host.example" that name, ".example" any name
 * under it. The first matching item decides, "!" negates. */
int match_client_list(const char *list, const char *name, const char *addr);

#endif
