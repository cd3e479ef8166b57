/* standalone.h - smtpd -S: one SMTP session on standard input and output,
 * without master, as the user who runs it. sendmail -bs execs it, as
 * Postfix's sendmail does (cmd/sendmail.c).
 */
#ifndef POSTERN_SMTPD_STANDALONE_H
#define POSTERN_SMTPD_STANDALONE_H

/* Run the session; returns the exit status: 0 when it ended with QUIT or
 * at the end of input between transactions, EX_TEMPFAIL when it ended in
 * the middle of one (that message is not queued) or otherwise (timeout,
 * errors). */
int smtpd_standalone_run(void);
/* From smtpd_session_closed: the session is over. */
void smtpd_standalone_session_closed(int clean);

#endif
