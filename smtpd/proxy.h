/* proxy.h - smtpd_upstream_proxy_protocol = haproxy (proxy.c): before
 * anything else, the session reads the PROXY header (v1 or v2,
 * lib/util/proxy_proto.h) a load balancer sends, on the event loop,
 * within smtpd_upstream_proxy_timeout, and takes the client it names as
 * its own: restrictions, names, logs, Received: and the queue file all see
 * that client. A missing, bad or over-long header, or none in time, is
 * logged with Postfix's warning "haproxy read: ..."; the session then
 * goes on as the connection's own client only to be refused (session.c:
 * "421 4.3.0 HOST Server local error", as Postfix answers).
 */
#ifndef POSTERN_SMTPD_PROXY_H
#define POSTERN_SMTPD_PROXY_H

#include <sys/socket.h>

struct session;

/* The header was read (ok 1): client is the client it names, or the
 * connection's own peer for a LOCAL/UNKNOWN header; or it failed (ok 0,
 * logged): client is the connection's own peer. */
typedef void (*smtpd_proxy_done_fn)(struct session *s, const struct sockaddr_storage *client,
                                    int ok);

/* 1 when this service expects a PROXY header. */
int smtpd_proxy_enabled(void);
/* Start reading it on s->fd; done runs once it is read or failed. -1
 * when it could not start. */
int smtpd_proxy_start(struct session *s, const struct sockaddr_storage *peer,
                      smtpd_proxy_done_fn done);
void smtpd_proxy_free(struct session *s);

#endif
