/* milters.h - smtpd_milters for one SMTP session (milters.c), on the event
 * loop: each stage (connect, HELO, MAIL, RCPT, DATA, unknown command)
 * goes to the milters in order until one decides; the message content
 * (headers, body, end of message) goes to them from cleanup, which gets
 * the connections for it (submit.h) and answers for the whole message.
 *
 * Each stage call returns 1 when the answer is known at once (no milter,
 * or none that takes part), with *reply set; 0 when the session must wait:
 * done(s, reply) comes later, never from inside the call. reply is NULL
 * to go on, else Postfix's internal form (lib/mail/milter.h), which
 * smtpd_milter_verdict turns into what the client hears.
 */
#ifndef POSTERN_SMTPD_MILTERS_H
#define POSTERN_SMTPD_MILTERS_H

#include <stddef.h>

struct session;
struct smtpd_submit;

typedef void (*smtpd_milter_done_fn)(struct session *s, const char *reply);

/* Read smtpd_milters (fatal when malformed). */
void smtpd_milter_init(void);

int smtpd_milter_connect(struct session *s, smtpd_milter_done_fn done, const char **reply);
int smtpd_milter_helo(struct session *s, const char *helo, smtpd_milter_done_fn done,
                      const char **reply);
/* sender and rcpt in internal form; params: the ESMTP parameters as the
 * client gave them (after the path) */
int smtpd_milter_mail(struct session *s, const char *sender, const char *params,
                      smtpd_milter_done_fn done, const char **reply);
/* rejected: NULL, or the reply with which smtpd rejects this recipient;
 * then only milters that asked for rejected recipients (SMFIP_RCPT_REJ)
 * hear it, and their answer has no effect (the caller ignores it). */
int smtpd_milter_rcpt(struct session *s, const char *rcpt, const char *params,
                      const char *rejected, smtpd_milter_done_fn done, const char **reply);
int smtpd_milter_data(struct session *s, smtpd_milter_done_fn done, const char **reply);
int smtpd_milter_unknown(struct session *s, const char *line, smtpd_milter_done_fn done,
                         const char **reply);

/* Whether any milter takes part in this session (DATA waits for the queue
 * id when one does: milters get the "i" macro). */
int smtpd_milter_active(const struct session *s);

/* What the client hears for a reply of a stage ("CONNECT", "EHLO",
 * "MAIL", "RCPT", "DATA", "UNKNOWN"), logged as Postfix logs it: NULL to
 * go on (also after a hold or discard, which apply to the message), else
 * the SMTP reply. After a 421 (a shutdown too) the session ends. */
const char *smtpd_milter_verdict(struct session *s, const char *stage, const char *reply);

/* The transaction ended without a message (RSET, HELO, an error). */
void smtpd_milter_abort(struct session *s);
/* The session ends: QUIT to the milters, connections closed. */
void smtpd_milter_end(struct session *s);

/* --- the message, through cleanup --- */

/* The connections cleanup gets with the stream (fds, at most max). */
size_t smtpd_milter_fds(struct session *s, int *fds, size_t max);
/* Before the content: the state of each connection passed, the macro
 * values of the content stages, and hold or discard decided at RCPT or
 * DATA, as attributes cleanup takes and does not store. */
void smtpd_milter_message(struct session *s, struct smtpd_submit *m);
/* From the end of data to cleanup's answer the connections are cleanup's. */
void smtpd_milter_handed(struct session *s);
/* cleanup's report on the connections after the message (its "milter"
 * answer attributes, NULL when there is no answer: the connections are
 * then in an unknown state and closed). */
void smtpd_milter_returned(struct session *s, const char *const *states, size_t n);

#endif
