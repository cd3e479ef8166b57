/* auth.h - the AUTH command (RFC 4954) with PLAIN and LOGIN (auth.c). */
#ifndef POSTERN_SMTPD_AUTH_H
#define POSTERN_SMTPD_AUTH_H

struct session;

/* Whether EHLO offers AUTH now. */
int smtpd_auth_offered(const struct session *s);
void smtpd_auth_command(struct session *s, const char *arg);
/* ST_AUTH: the client's next line of the exchange. */
void smtpd_auth_response(struct session *s, const char *line);
/* Forget the exchange and who authenticated (STARTTLS, end of session). */
void smtpd_auth_reset(struct session *s);

#endif
