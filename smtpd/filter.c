/* filter.c - the after-queue content filter of a transaction (filter.h).
 * The FILTER action is one function so that every source of it (access
 * tables, policy answers) goes the same way; its log line is Postfix's
 * "filter:" line (delegate.h's smtpd_delegate_log).
 */
#include "filter.h"
#include "delegate.h"
#include "session.h"
#include "smtpd.h"
#include "submit.h"

#include "log.h"
#include "params.h"
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "transport:destination" with a transport name before the colon. */
static int filter_syntax_ok(const char *dest)
{
    const char *colon = strchr(dest, ':');
    if (!colon || colon == dest || strlen(dest) >= 512)
        return 0;
    for (const char *p = dest; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

int smtpd_filter_action(struct session *s, const char *dest, const char *what,
                        const char *rcpt, const char *reason)
{
    if (!filter_syntax_ok(dest)) {
        msg_warn("FILTER action without valid transport:destination \"%.100s\" ignored", dest);
        return -1;
    }
    char *copy = strdup(dest);
    if (!copy)
        return -1;
    free(s->filter);
    s->filter = copy;
    smtpd_delegate_log(s, "filter", what, rcpt, reason);
    return 0;
}

const char *smtpd_filter_destination(const struct session *s)
{
    return s->filter ? s->filter : var.content_filter;
}

void smtpd_filter_submit(struct session *s, struct smtpd_submit *m)
{
    const char *dest = smtpd_filter_destination(s);
    if (*dest && !smtpd_cfg.stand_alone)
        smtpd_submit_attr(m, ATTR_CONTENT_FILTER, dest);
}

void smtpd_filter_reset(struct session *s)
{
    free(s->filter);
    s->filter = NULL;
}
