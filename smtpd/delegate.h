/* delegate.h - the access(5) actions that smtpd cannot carry out itself
 * and hands to cleanup with the message (delegate.c): HOLD, DISCARD,
 * REDIRECT user@domain and BCC user@domain, whether an access table
 * (restrict.c) or a policy answer gave them. Each is logged where it
 * happens, in Postfix's words; each goes to cleanup as an attribute of
 * the cleanup_protocol stream: those decided by RCPT or DATA before the
 * content, those decided by smtpd_end_of_data_restrictions after it,
 * before the end record (cleanup applies them before it commits).
 *   HOLD      milter_hold=REASON: the file is committed into hold/
 *   DISCARD   milter_discard=1: accepted, then dropped
 *   REDIRECT  redirect=ADDR: the last one wins; cleanup records it and
 *             qmgr delivers to that one address instead (qmgr.c)
 *   BCC       bcc=ADDR: every one adds a recipient (NOTIFY=NEVER), as
 *             Postfix 3.2 and later
 * The FILTER action has its own module (filter.h).
 */
#ifndef POSTERN_SMTPD_DELEGATE_H
#define POSTERN_SMTPD_DELEGATE_H

struct session;
struct smtpd_submit;

/* Postfix's line for an action of the restrictions:
 * "ID: WHAT: WHERE from CLIENT: TEXT; from=<S> [to=<R>] proto=P helo=<H>"
 * (NOQUEUE while the queue file has no name; to= only with a recipient:
 * rcpt NULL or ""). */
void smtpd_delegate_log(const struct session *s, const char *what, const char *where,
                        const char *rcpt, const char *text);

/* The actions, for the transaction in progress (nothing without one). A
 * REDIRECT or BCC target that is no user@domain is refused: -1, and the
 * caller warns. */
void smtpd_delegate_hold(struct session *s, const char *reason);
void smtpd_delegate_discard(struct session *s);
int smtpd_delegate_redirect(struct session *s, const char *addr);
int smtpd_delegate_bcc(struct session *s, const char *addr);

/* Send what was decided since the last call (none yet: everything). */
void smtpd_delegate_submit(struct session *s, struct smtpd_submit *m);
/* Forget the transaction's actions. */
void smtpd_delegate_reset(struct session *s);

#endif
