/* transaction.h - one mail transaction of a session (RFC 5321 MAIL, RCPT,
 * DATA): the envelope the client gives, the stream of the message
 * (submit.h), our Received: header and the reply at the end of data.
 * session.c hands over the three commands and, in ST_DATA, the client's
 * input; everything else about a transaction happens in transaction.c.
 * A session has at most one, s->tx, from an accepted MAIL to the answer at
 * the end of data or a reset.
 */
#ifndef POSTERN_SMTPD_TRANSACTION_H
#define POSTERN_SMTPD_TRANSACTION_H

struct session;

void smtpd_tx_mail(struct session *s, const char *arg);
void smtpd_tx_rcpt(struct session *s, const char *arg);
void smtpd_tx_data(struct session *s, const char *arg);
/* ST_DATA: take the message from the client's input. Returns 1 when it
 * stopped for want of input. */
int smtpd_tx_read_content(struct session *s);
/* Bytes of the message so far as Postfix counts them, line ends as CR LF
 * (for "timeout after DATA (N bytes)" and "lost connection after ..."). */
long long smtpd_tx_content_size(const struct session *s);
/* A PREPEND action (policy service): the header goes before our
 * Received: header, in the order given. Returns -1 when there is no
 * transaction or no more room (PREPEND_MAX bytes in all). */
#define PREPEND_MAX 8192
int smtpd_tx_prepend(struct session *s, const char *header);
/* The message size MAIL announced (SIZE=), 0 when none: the policy
 * request's "size". */
long long smtpd_tx_declared_size(const struct session *s);
/* The sender of the transaction (internal form), NULL when none; its queue
 * id once cleanup named the file, else NULL (milter macros, log lines). */
const char *smtpd_tx_sender(const struct session *s);
const char *smtpd_tx_queue_id(const struct session *s);
/* Abort and forget the transaction, if any (RSET, HELO, errors, end of
 * session): a message not yet queued is not queued. */
void smtpd_tx_reset(struct session *s);

#endif
