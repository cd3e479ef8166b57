/* filter.h - where a message goes after it is queued (filter.c):
 * content_filter (main.cf, or the service's -o content_filter=), or the
 * FILTER action that an access table (restrict.c) or a policy answer
 * gives during the transaction. The last FILTER wins, as in Postfix. The
 * destination goes to cleanup as the "content_filter" attribute, which
 * cleanup writes into the queue file and qmgr obeys (the message goes to
 * that transport:nexthop instead of its recipients' routes).
 */
#ifndef POSTERN_SMTPD_FILTER_H
#define POSTERN_SMTPD_FILTER_H

struct session;
struct smtpd_submit;

/* A FILTER action, "transport:destination" in dest, for the current
 * transaction; what (e.g. "RCPT") and rcpt (NULL if none) name the
 * request in the log line. Returns 0, or -1 (logged, ignored) when dest
 * is not of that form. */
int smtpd_filter_action(struct session *s, const char *dest, const char *what,
                        const char *rcpt, const char *reason);
/* The destination for the current transaction, "" when none. */
const char *smtpd_filter_destination(const struct session *s);
/* Send it to cleanup, before the content (nothing when none). */
void smtpd_filter_submit(struct session *s, struct smtpd_submit *m);
/* Forget the transaction's FILTER action. */
void smtpd_filter_reset(struct session *s);

#endif
