/* xforward.c - XFORWARD in smtpd (xforward.h). The command's syntax and
 * values are lib/mail/xforward_proto's; here are the rights (the client's
 * address or verified name is in smtpd_authorized_xforward_hosts),
 * Postfix's replies, and
 * the client a transaction names.
 */
#include "xforward.h"
#include "session.h"
#include "smtpd.h"
#include "submit.h"
#include "transaction.h"

#include "match.h"
#include "params.h"
#include "record.h"
#include "xforward_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void smtpd_xforward_session_init(struct session *s)
{
    s->xforward_allowed = !smtpd_cfg.stand_alone && var.smtpd_authorized_xforward_hosts[0] &&
                          match_client_list(var.smtpd_authorized_xforward_hosts, s->name, s->addr);
}

const char *smtpd_xforward_ehlo(const struct session *s)
{
    return s->xforward_allowed ? XFORWARD_EHLO : NULL;
}

void smtpd_xforward_reset(struct session *s)
{
    free(s->xforward);
    s->xforward = NULL;
}

void smtpd_xforward_command(struct session *s, const char *arg)
{
    char reply[160];
    if (!s->xforward_allowed) {
        smtpd_reply(s, "550 5.7.0 Error: insufficient authorization");
        smtpd_error_reply(s);
        return;
    }
    if (s->tx) {
        smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        smtpd_error_reply(s);
        return;
    }
    struct xforward next = {0};
    if (s->xforward)
        next = *s->xforward;
    if (xforward_parse(arg, &next, reply, sizeof(reply)) < 0) {
        smtpd_reply(s, "%s", reply);
        smtpd_error_reply(s);
        return;
    }
    if (!s->xforward && !(s->xforward = malloc(sizeof(*s->xforward)))) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        return;
    }
    *s->xforward = next;
    smtpd_reply(s, "250 2.0.0 Ok");
}

static const char *given(const struct session *s, enum xforward_attr a)
{
    return s->xforward && (s->xforward->given & (1u << a)) ? s->xforward->value[a] : NULL;
}

static const char *client_name(const struct session *s)
{
    const char *v = given(s, XF_NAME);
    return v ? v : s->name;
}

static const char *client_addr(const struct session *s)
{
    const char *v = given(s, XF_ADDR);
    return v ? v : s->addr;
}

static const char *client_port(const struct session *s)
{
    const char *v = given(s, XF_PORT);
    return v ? v : s->port;
}

static const char *client_helo(const struct session *s)
{
    const char *v = given(s, XF_HELO);
    return v && strcmp(v, "unknown") != 0 ? v : s->helo;
}

static const char *client_proto(const struct session *s, const char *proto)
{
    const char *v = given(s, XF_PROTO);
    return v && strcmp(v, "unknown") != 0 ? v : proto;
}

void smtpd_xforward_submit_client(const struct session *s, struct smtpd_submit *m,
                                  const char *proto)
{
    smtpd_submit_attr(m, ATTR_CLIENT_NAME, client_name(s));
    smtpd_submit_attr(m, ATTR_REVERSE_CLIENT_NAME, s->xforward ? client_name(s)
                                                               : s->reverse_name);
    smtpd_submit_attr(m, ATTR_CLIENT_ADDR, client_addr(s));
    if (*client_port(s))   /* none in stand-alone mode */
        smtpd_submit_attr(m, ATTR_CLIENT_PORT, client_port(s));
    smtpd_submit_attr(m, ATTR_HELO, client_helo(s));
    smtpd_submit_attr(m, ATTR_PROTOCOL, client_proto(s, proto));
}

void smtpd_xforward_log_suffix(const struct session *s, char *buf, size_t len)
{
    const char *ident = given(s, XF_IDENT);
    size_t off = 0;
    buf[0] = 0;
    if (ident && *ident) {
        int n = snprintf(buf, len, ", orig_queue_id=%s", ident);
        off = n > 0 && (size_t)n < len ? (size_t)n : 0;
    }
    if (given(s, XF_NAME) || given(s, XF_ADDR))
        snprintf(buf + off, len - off, ", orig_client=%s[%s]", client_name(s), client_addr(s));
}
