/* starttls.h - TLS for smtpd: STARTTLS and wrapper mode (starttls.c). */
#ifndef POSTERN_SMTPD_STARTTLS_H
#define POSTERN_SMTPD_STARTTLS_H

struct bufferevent;
struct session;

/* Load the server context (as root: the key may be readable by root
 * only); 0 when TLS is usable. */
int smtpd_starttls_init(void);
/* Whether EHLO offers STARTTLS now. */
int smtpd_starttls_offered(const struct session *s);
/* smtpd_tls_security_level = encrypt and no TLS yet. */
int smtpd_starttls_required(const struct session *s);
void smtpd_starttls_command(struct session *s, const char *arg);
/* Wrap a new connection for wrapper mode; NULL on failure (fd closed). */
struct bufferevent *smtpd_starttls_wrap_socket(int fd);
/* Handshake events of s->bev; 1 when what was handled here. */
int smtpd_starttls_event(struct session *s, short what);

#endif
