/* delegate.c - HOLD, DISCARD, REDIRECT and BCC for cleanup (delegate.h).
 * The actions of one transaction are kept in the session until it ends;
 * what has gone to cleanup is counted, so that the end of the message
 * sends only what smtpd_end_of_data_restrictions added.
 */
#include "delegate.h"
#include "session.h"
#include "submit.h"
#include "transaction.h"

#include "address.h"
#include "log.h"
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BCC_MAX 64   /* BCC actions kept per transaction */

struct smtpd_delegated {
    int hold, discard;
    char hold_reason[256];
    char *redirect;
    char *bcc[BCC_MAX];
    size_t nbcc;
    /* what cleanup has already */
    int hold_sent, discard_sent, redirect_sent;
    size_t bcc_sent;
};

void smtpd_delegate_log(const struct session *s, const char *what, const char *where,
                        const char *rcpt, const char *text)
{
    const char *sender = smtpd_tx_sender(s);
    const char *id = smtpd_tx_queue_id(s);
    char qs[ADDRESS_MAX + 2], qr[ADDRESS_MAX + 2], to[ADDRESS_MAX + 16] = "";
    if (rcpt && *rcpt)
        snprintf(to, sizeof(to), " to=<%s>",
                 address_quote(rcpt, qr, sizeof(qr)) == 0 ? qr : rcpt);
    msg_info("%s: %s: %s from %s: %s; from=<%s>%s proto=%s helo=<%s>", id ? id : "NOQUEUE",
             what, where, s->namaddr, text,
             sender && address_quote(sender, qs, sizeof(qs)) == 0 ? qs : (sender ? sender : ""),
             to, s->esmtp ? "ESMTP" : "SMTP", s->helo);
}

/* The transaction's actions, made on first use; NULL without a
 * transaction or memory. */
static struct smtpd_delegated *actions(struct session *s)
{
    if (!smtpd_tx_sender(s))
        return NULL;
    if (!s->delegated)
        s->delegated = calloc(1, sizeof(*s->delegated));
    return s->delegated;
}

/* user@domain, printable, no white space: what cleanup may take as a
 * recipient. */
static int target_ok(const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (!at || at == addr || !at[1] || strlen(addr) >= ADDRESS_MAX)
        return 0;
    for (const char *p = addr; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return 0;
    return 1;
}

void smtpd_delegate_hold(struct session *s, const char *reason)
{
    struct smtpd_delegated *d = actions(s);
    if (!d || d->hold)
        return;   /* the first reason stays, as in Postfix */
    d->hold = 1;
    snprintf(d->hold_reason, sizeof(d->hold_reason), "%s", reason);
}

void smtpd_delegate_discard(struct session *s)
{
    struct smtpd_delegated *d = actions(s);
    if (d)
        d->discard = 1;
}

int smtpd_delegate_redirect(struct session *s, const char *addr)
{
    struct smtpd_delegated *d;
    if (!target_ok(addr))
        return -1;
    char *copy = strdup(addr);
    if (!copy || !(d = actions(s))) {
        free(copy);
        return 0;
    }
    free(d->redirect);
    d->redirect = copy;
    d->redirect_sent = 0;
    return 0;
}

int smtpd_delegate_bcc(struct session *s, const char *addr)
{
    struct smtpd_delegated *d;
    if (!target_ok(addr))
        return -1;
    if (!(d = actions(s)))
        return 0;
    if (d->nbcc == BCC_MAX) {
        msg_warn("more than %d BCC actions in one transaction; \"%.100s\" dropped", BCC_MAX,
                 addr);
        return 0;
    }
    if ((d->bcc[d->nbcc] = strdup(addr)))
        d->nbcc++;
    return 0;
}

void smtpd_delegate_submit(struct session *s, struct smtpd_submit *m)
{
    struct smtpd_delegated *d = s->delegated;
    if (!d)
        return;
    if (d->hold && !d->hold_sent) {
        d->hold_sent = 1;
        smtpd_submit_attr(m, "milter_hold", d->hold_reason);
    }
    if (d->discard && !d->discard_sent) {
        d->discard_sent = 1;
        smtpd_submit_attr(m, "milter_discard", "1");
    }
    if (d->redirect && !d->redirect_sent) {
        d->redirect_sent = 1;
        smtpd_submit_attr(m, ATTR_REDIRECT, d->redirect);
    }
    for (; d->bcc_sent < d->nbcc; d->bcc_sent++)
        smtpd_submit_attr(m, ATTR_BCC, d->bcc[d->bcc_sent]);
}

void smtpd_delegate_reset(struct session *s)
{
    struct smtpd_delegated *d = s->delegated;
    if (!d)
        return;
    free(d->redirect);
    for (size_t i = 0; i < d->nbcc; i++)
        free(d->bcc[i]);
    free(d);
    s->delegated = NULL;
}
