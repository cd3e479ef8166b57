/* params.c - the session side of MAIL FROM and RCPT TO: paths and ESMTP
 * parameters are parsed by parse.c (session-free, also fuzzed); here its
 * results go into the session and its refusals out as replies, with the
 * settings of main.cf (message_size_limit, smtputf8_enable) passed in.
 */
#include "smtpd.h"

#include <stdlib.h>

int parse_path(struct session *s, const char *path, char *addr, size_t addrlen,
               const char **params, enum smtpd_path_role role)
{
    char why[SMTPD_REPLY_MAX];
    if (smtpd_parse_path(path, role, smtpd_cfg.smtputf8, addr, addrlen, params, why,
                         sizeof(why)) < 0) {
        reply(s, "%s", why);
        return -1;
    }
    return 0;
}

int mail_params(struct session *s, const char *params, long long *size)
{
    struct smtpd_mail_params p;
    char why[SMTPD_REPLY_MAX];
    if (smtpd_parse_mail_params(params, smtpd_cfg.message_size_limit, smtpd_cfg.smtputf8, &p,
                                why, sizeof(why)) < 0) {
        reply(s, "%s", why);
        return -1;
    }
    if (p.smtputf8)
        s->smtputf8 = 1;
    s->dsn_ret = p.ret;
    free(s->dsn_envid);
    s->dsn_envid = p.envid;   /* the session owns it now */
    *size = p.size > 0 ? p.size : 0;
    return 0;
}

int rcpt_params(struct session *s, const char *params, struct rcpt_request *r)
{
    struct smtpd_rcpt_params p;
    char why[SMTPD_REPLY_MAX];
    if (smtpd_parse_rcpt_params(params, &p, why, sizeof(why)) < 0) {
        reply(s, "%s", why);
        return -1;
    }
    r->notify = p.notify;
    free(r->orcpt);
    r->orcpt = p.orcpt;   /* the request owns it now */
    return 0;
}
