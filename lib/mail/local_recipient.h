/* local_recipient.h - "is this a known local recipient?", asked by smtpd at
 * RCPT time (550 5.1.1 ... User unknown in local recipient table) and
 * usable by anything that must decide the same way.
 *
 * The answer follows local_recipient_maps (Postfix's default: the passwd
 * database plus alias_maps; an empty value turns the check off). In
 * instance mode every local part of a mydestination domain is a mailbox,
 * so every such recipient is known, unless main.cf (or -o) sets
 * local_recipient_maps: then that applies, as in system mode.
 */
#ifndef POSTERN_LOCAL_RECIPIENT_H
#define POSTERN_LOCAL_RECIPIENT_H

/* addr is an internal-form address whose domain is local (or that has no
 * domain). Returns LOOKUP_FOUND, LOOKUP_NOTFOUND or LOOKUP_TEMPFAIL
 * (lookup.h); a temporary failure must become a 450/451, never a 550. */
int local_recipient_check(const char *addr);

#endif
