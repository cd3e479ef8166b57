/* resolve.h - where an address goes: the (transport, nexthop) pair of
 * Postfix's trivial-rewrite (resolve.c). qmgr routes every recipient with
 * it; smtpd's milter macros {mail_host}, {mail_mailer}, {rcpt_host} and
 * {rcpt_mailer} show it.
 */
#ifndef POSTERN_RESOLVE_H
#define POSTERN_RESOLVE_H

struct route {
    char transport[64];
    char nexthop[512];
    char error[512];          /* error: transport's text ("" otherwise) */
};

/* Read the parameters and open transport_maps (fatal when it cannot be). */
void resolve_init(void);
/* Returns 0, or -1 on a temporary lookup failure (defer the recipient). */
int resolve_recipient(const char *sender, const char *addr, struct route *out);

#endif
