/* auth.h - the AUTH command (RFC 4954, auth.c) against Postern's own
 * password table or Dovecot's auth server (auth_dovecot.h).
 */
#ifndef POSTERN_SMTPD_AUTH_H
#define POSTERN_SMTPD_AUTH_H

#include <stddef.h>

struct session;

/* smtpd_sasl_security_options and smtpd_sasl_tls_security_options. */
#define SMTPD_SASL_SEC_NOANONYMOUS 0x01
#define SMTPD_SASL_SEC_NOPLAINTEXT 0x02
#define SMTPD_SASL_SEC_NOACTIVE 0x04
#define SMTPD_SASL_SEC_NODICTIONARY 0x08
#define SMTPD_SASL_SEC_MUTUAL_AUTH 0x10
#define SMTPD_SASL_SEC_FORWARD_SECRECY 0x20

/* Read the SASL parameters into smtpd_cfg (msg_fatal on a bad one). */
void smtpd_auth_settings(void);
/* Once the event loop exists: connect to the SASL server when it is one. */
void smtpd_auth_init(void);

/* Whether AUTH may be used now (enabled, and TLS when it must be). */
int smtpd_auth_offered(const struct session *s);
/* The EHLO keyword lines: "AUTH mechs" into kw and, with
 * broken_sasl_auth_clients, "AUTH=mechs" into old (else ""). 0 when no
 * mechanism is offered now. */
int smtpd_auth_ehlo_keywords(const struct session *s, char *kw, size_t kwlen, char *old,
                             size_t oldlen);
/* EHLO: 1 when the session waits (ST_WAIT_AUTH) for the SASL server's
 * first handshake before it can list mechanisms; smtpd_session_ehlo_reply
 * follows when it is over. */
int smtpd_auth_ehlo_wait(struct session *s);

void smtpd_auth_command(struct session *s, const char *arg);
/* ST_AUTH: the client's next line of the exchange. */
void smtpd_auth_response(struct session *s, const char *line);
/* Forget the exchange and who authenticated (STARTTLS, end of session). */
void smtpd_auth_reset(struct session *s);

/* What a SASL server answered for the session's exchange (auth_dovecot.c
 * calls this from the event loop; the session is in ST_WAIT_AUTH). */
enum smtpd_auth_status {
    SMTPD_AUTH_OK,         /* text: final server data or NULL; user: who */
    SMTPD_AUTH_CHALLENGE,  /* text: the base64 challenge */
    SMTPD_AUTH_FAIL,       /* text: reason ("" unknown); user if known */
    SMTPD_AUTH_TEMPFAIL,   /* text: reason */
};
void smtpd_auth_answer(struct session *s, enum smtpd_auth_status st, const char *text,
                       const char *user);

#endif
