/* xforward.h - the XFORWARD command on smtpd's side (xforward.c): which
 * clients may send it (smtpd_authorized_xforward_hosts), the EHLO keyword
 * they are offered, and the client a transaction is for. Attributes given
 * by XFORWARD apply to the next transaction only (RSET, HELO and EHLO
 * forget them too, as in Postfix) and stand, in the queue
 * file and the "client=" log line (as orig_client), for the client's own;
 * restrictions and the Received: header, as in Postfix, still name the
 * connection's client (the filter).
 */
#ifndef POSTERN_SMTPD_XFORWARD_H
#define POSTERN_SMTPD_XFORWARD_H

#include <stddef.h>

struct session;
struct smtpd_submit;

/* Decide once per session, from its address and name. */
void smtpd_xforward_session_init(struct session *s);
/* The EHLO keyword line for s, or NULL when s may not use XFORWARD. */
const char *smtpd_xforward_ehlo(const struct session *s);
void smtpd_xforward_command(struct session *s, const char *arg);
/* Forget the attributes (the end of a transaction, the end of a session). */
void smtpd_xforward_reset(struct session *s);

/* The client attributes of the queue file (client_name,
 * reverse_client_name, client_address, helo_name, protocol): XFORWARD's
 * values where it gave them, else the session's own (proto: the protocol
 * smtpd would name). */
void smtpd_xforward_submit_client(const struct session *s, struct smtpd_submit *m,
                                  const char *proto);
/* ", orig_queue_id=ID, orig_client=NAME[ADDR]" for the "client=" line, as
 * far as XFORWARD gave them, else "". */
void smtpd_xforward_log_suffix(const struct session *s, char *buf, size_t len);

#endif
