/* auth_dovecot.h - smtpd's side of Dovecot's auth server
 * (smtpd_sasl_type = dovecot, auth_dovecot.c): the process's one client
 * (lib/util/auth_client.h) and each session's request on it.
 */
#ifndef POSTERN_SMTPD_AUTH_DOVECOT_H
#define POSTERN_SMTPD_AUTH_DOVECOT_H

#include <stddef.h>

struct auth_mech;
struct session;

/* smtpd_sasl_path into an endpoint: "private/auth" (under
 * queue_directory), an absolute path, or "inet:host:port". msg_fatal when
 * it cannot be. */
void smtpd_dovecot_settings(void);
/* The client, on smtpd's event loop. */
void smtpd_dovecot_init(void);
/* The mechanisms of the last handshake; 0 before any. */
size_t smtpd_dovecot_mechs(const struct auth_mech **mechs);
/* Whether a handshake ever completed (else EHLO waits for one). */
int smtpd_dovecot_known(void);
/* Wait for the first handshake (EHLO): 1 when the session waits, and
 * smtpd_session_ehlo_reply runs when it is over, whatever its outcome; 0
 * when an earlier wait failed a moment ago (the EHLO then goes without
 * AUTH rather than wait again). */
int smtpd_dovecot_wait(struct session *s);
/* Start an exchange (initial: base64, "" empty, NULL none) and go on with
 * the client's response; answers come through smtpd_auth_answer. */
void smtpd_dovecot_start(struct session *s, const char *mech, const char *initial);
void smtpd_dovecot_step(struct session *s, const char *response);
/* Forget the session's request, if any. */
void smtpd_dovecot_abort(struct session *s);

#endif
