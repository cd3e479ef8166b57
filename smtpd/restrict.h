/* restrict.h - smtpd_client/helo/sender/relay/recipient_restrictions,
 * evaluated for each RCPT, and smtpd_data_restrictions at DATA
 * (restrict.c). DNS lookups and policy services run on the event loop: an
 * evaluation that waits for one finishes later through its callback.
 */
#ifndef POSTERN_SMTPD_RESTRICT_H
#define POSTERN_SMTPD_RESTRICT_H

#include <stddef.h>

struct session;

/* Parse the lists. What is wrong in them (an unknown restriction, one
 * Postern lacks, a table that cannot be opened, no open-relay guard) is
 * warned about here, once, and answered 451 4.3.5 where a request
 * reaches it. */
void smtpd_restrict_init(void);

/* A pending evaluation decided: code 0 accepted, else the reply in text. */
typedef void (*smtpd_restrict_done_fn)(struct session *s, int code, const char *text);

/* Evaluate the restrictions for rcpt from sender (internal forms; both
 * must stay valid until the evaluation ends or is cancelled). Returns 1
 * with *code and text set (code 0: accepted), or 0 when DNS is pending:
 * then done is called later, unless smtpd_restrict_cancel comes first. */
int smtpd_restrict_rcpt(struct session *s, const char *sender, const char *rcpt,
                        smtpd_restrict_done_fn done, int *code, char *text, size_t textlen);
/* smtpd_data_restrictions at DATA, the same way (reply name "<DATA>",
 * class "Data command"). */
int smtpd_restrict_data(struct session *s, const char *sender, long recipient_count,
                        smtpd_restrict_done_fn done, int *code, char *text, size_t textlen);
/* smtpd_end_of_data_restrictions once the content is in, before the
 * message is committed ("<END-OF-MESSAGE>", "End-of-data"); rcpt is the
 * one recipient, or "" for several, as Postfix passes it. */
int smtpd_restrict_eod(struct session *s, const char *sender, const char *rcpt,
                       long recipient_count, smtpd_restrict_done_fn done, int *code, char *text,
                       size_t textlen);
/* Whether a check_policy_service is among the lists evaluated at RCPT
 * (at_data 0) or at DATA (1): the request then waits for the queue id
 * (transaction.c), which Postfix always has by then. */
int smtpd_restrict_asks_policy(int at_data);
/* Drop a pending evaluation (its DNS lookup is cancelled). */
void smtpd_restrict_cancel(struct session *s);
/* smtpd_restrict_cancel plus the session's DNS answer cache. */
void smtpd_restrict_session_end(struct session *s);

#endif
