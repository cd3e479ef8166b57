/* transaction.c - one mail transaction (transaction.h): MAIL FROM, RCPT
 * TO and DATA, the envelope and content streamed out (submit.h), our
 * Received: header, and the answer at the end of data.
 *
 * Paths and ESMTP parameters are parsed by parse.c (session-free, also
 * fuzzed) with the settings of main.cf passed in; here its results go into
 * the transaction and its refusals out as replies. The stream opens at the
 * first accepted recipient, so that cleanup creates the queue file (and
 * names it) while the client sends more recipients. DATA is answered 354
 * at once, even before the queue id is known: the content then waits in
 * the client's input buffer (bounded by the session's input high water)
 * until the id for our Received: header arrives. data.c decodes the
 * content; it goes out in chunks, and when the other side falls behind,
 * reading from the client pauses (back-pressure). The 250 goes out only
 * once the message is queued: after cleanup's status 0, which it sends
 * once the queue file is safe on disk (in stand-alone mode, after
 * postdrop's exit status 0, once the maildrop file is).
 *
 * smtpd_milters (milters.c) see MAIL, each RCPT the restrictions accepted,
 * and DATA before they are answered (the session waits in
 * ST_WAIT_MILTER); with milters, DATA also waits for the queue id, which
 * they get as the "i" macro. The connections go to cleanup with the stream,
 * for the content, and cleanup's answer carries the milters' reply.
 */
#include "transaction.h"
#include "anvil.h"
#include "data.h"
#include "delegate.h"
#include "milters.h"
#include "parse.h"
#include "restrict.h"
#include "session.h"
#include "smtpd.h"
#include "storage.h"
#include "submit.h"
#include "filter.h"
#include "xforward.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "mail_date.h"
#include "record.h"
#include "service.h"
#include "xforward_proto.h"
#include "smtp_command.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUBMIT_HIGH_WATER (1024 * 1024)   /* stop reading the client above this backlog */

/* The recipient of a RCPT command while its restrictions are evaluated. */
struct rcpt_request {
    char addr[ADDRESS_MAX];
    char *params;               /* the ESMTP parameters as given (milters) */
    int notify;                 /* DSN_NOTIFY_* mask, 0 = not given */
    char *orcpt;                /* "type;address", decoded; NULL = not given */
    char *rejected;             /* the restrictions' reply when they refused it */
};

struct smtpd_tx {
    struct session *session;
    char *sender;
    char *mail_params;          /* MAIL's ESMTP parameters as given (milters) */
    int smtputf8;
    long long declared_size;    /* MAIL SIZE=, else 0 */
    char *dsn_envid;
    const char *dsn_ret;
    struct rcpt_request *rcpt;  /* RCPT being checked */
    int nrcpt;
    long overshoot;             /* RCPTs refused over smtpd_recipient_limit */
    char *first_rcpt;
    struct smtpd_submit *submit;
    int client_logged;
    int milter_rcpt;            /* waiting for the queue id before the milters' RCPT */
    int policy_rcpt;            /* waiting for it before a policy service's RCPT request */
    int policy_data;            /* ... and its DATA request */
    /* DATA */
    int milter_data;            /* waiting for the queue id before the milters' DATA */
    int go_ahead;               /* 354 sent */
    struct smtpd_data data;
    struct evbuffer *content;   /* decoded, not yet sent */
    struct evbuffer *prepend;   /* PREPEND headers, each ending in LF */
    struct smtpd_anvil_req *anvil_req;   /* a message or recipient rate asked */
};

static void submit_ready(void *ctx);
static void submit_done(void *ctx, int status, const char *reason);
static void submit_drained(void *ctx);

static const struct smtpd_submit_events submit_events = {submit_ready, submit_done,
                                                         submit_drained};

/* --- the transaction's lifetime --- */

static void free_rcpt_request(struct smtpd_tx *tx)
{
    if (tx->rcpt) {
        free(tx->rcpt->orcpt);
        free(tx->rcpt->params);
        free(tx->rcpt->rejected);
        free(tx->rcpt);
        tx->rcpt = NULL;
    }
}

void smtpd_tx_reset(struct session *s)
{
    struct smtpd_tx *tx = s->tx;
    if (!tx)
        return;
    smtpd_xforward_reset(s);
    smtpd_filter_reset(s);
    smtpd_delegate_reset(s);
    smtpd_milter_abort(s);
    smtpd_restrict_cancel(s);
    smtpd_anvil_cancel(tx->anvil_req);
    smtpd_submit_close(tx->submit);
    free_rcpt_request(tx);
    free(tx->sender);
    free(tx->mail_params);
    free(tx->first_rcpt);
    free(tx->dsn_envid);
    if (tx->content)
        evbuffer_free(tx->content);
    if (tx->prepend)
        evbuffer_free(tx->prepend);
    free(tx);
    s->tx = NULL;
}

int smtpd_tx_prepend(struct session *s, const char *header)
{
    struct smtpd_tx *tx = s->tx;
    if (!tx || (!tx->prepend && !(tx->prepend = evbuffer_new())))
        return -1;
    if (evbuffer_get_length(tx->prepend) + strlen(header) + 1 > PREPEND_MAX)
        return -1;
    evbuffer_add_printf(tx->prepend, "%s\n", header);
    return 0;
}

long long smtpd_tx_declared_size(const struct session *s)
{
    return s->tx ? s->tx->declared_size : 0;
}

long long smtpd_tx_content_size(const struct session *s)
{
    return s->tx ? s->tx->data.log_size : 0;
}

const char *smtpd_tx_sender(const struct session *s)
{
    return s->tx ? s->tx->sender : NULL;
}

const char *smtpd_tx_queue_id(const struct session *s)
{
    return s->tx && s->tx->submit ? smtpd_submit_queue_id(s->tx->submit) : NULL;
}

static const char *queue_id_or_noqueue(const struct smtpd_tx *tx)
{
    const char *id = tx->submit ? smtpd_submit_queue_id(tx->submit) : NULL;
    return id ? id : "NOQUEUE";
}

/* Addresses in logs are in their external (quoted) form, as in replies. */
static const char *quoted(const char *addr, char *buf, size_t len)
{
    return address_quote(addr, buf, len) == 0 ? buf : addr;
}

static void log_reject(const struct smtpd_tx *tx, const char *cmd, const char *rcpt,
                       const char *text)
{
    const struct session *s = tx->session;
    char to[ADDRESS_MAX + 16] = "", qrcpt[ADDRESS_MAX + 2], qsender[ADDRESS_MAX + 2];
    if (rcpt)
        snprintf(to, sizeof(to), " to=<%s>", quoted(rcpt, qrcpt, sizeof(qrcpt)));
    msg_info("%s: reject: %s from %s: %s; from=<%s>%s proto=%s helo=<%s>", queue_id_or_noqueue(tx),
             cmd, s->namaddr, text, quoted(tx->sender, qsender, sizeof(qsender)), to,
             s->esmtp ? "ESMTP" : "SMTP", s->helo);
}

/* "ESMTP", "ESMTPSA", "UTF8SMTPS", ... for Received: and the queue file. */
static const char *protocol_name(const struct smtpd_tx *tx)
{
    static const char *const names[2][2][2] = {
        /* [utf8][tls][auth] */
        {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
        {{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}},
    };
    const struct session *s = tx->session;
    if (!s->esmtp)
        return "SMTP";
    return names[tx->smtputf8 != 0][s->tls != 0][s->sasl_user != NULL];
}

static void reject_utf8_undeclared(struct session *s)
{
    smtpd_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
    smtpd_error_reply(s);
}

/* A MAIL/RCPT path (UTF-8 allowed when smtputf8_enable; whether it was
 * declared is the caller's check); -1 after replying 501. */
static int parse_path(struct session *s, const char *path, char *addr, size_t addrlen,
                      const char **params, enum smtpd_path_role role)
{
    char why[SMTPD_REPLY_MAX];
    if (smtpd_parse_path(path, role, smtpd_cfg.smtputf8, addr, addrlen, params, why,
                         sizeof(why)) < 0) {
        smtpd_reply(s, "%s", why);
        return -1;
    }
    return 0;
}

/* --- MAIL --- */

/* A transaction for sender with the MAIL parameters in p (whose envid it
 * takes over); NULL when out of memory. */
static struct smtpd_tx *tx_new(struct session *s, const char *sender,
                               struct smtpd_mail_params *p)
{
    struct smtpd_tx *tx = calloc(1, sizeof(*tx));
    if (!tx || !(tx->sender = strdup(sender))) {
        free(tx);
        smtpd_mail_params_free(p);
        return NULL;
    }
    tx->session = s;
    tx->smtputf8 = p->smtputf8;
    tx->declared_size = p->size > 0 ? p->size : 0;
    tx->dsn_ret = p->ret;
    tx->dsn_envid = p->envid;
    p->envid = NULL;
    return tx;
}

/* The answer to MAIL once the milters had their say. */
static void mail_reply(struct session *s, const char *milter_reply)
{
    const char *refusal = smtpd_milter_verdict(s, "MAIL", milter_reply);
    if (refusal) {
        smtpd_reply(s, "%s", refusal);
        smtpd_tx_reset(s);
        smtpd_error_reply(s);
        return;
    }
    s->ok[C_MAIL]++;
    smtpd_reply(s, "250 2.1.0 Ok");
}

static void mail_checked(struct session *s, const char *reply)
{
    s->state = ST_COMMAND;
    mail_reply(s, reply);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

/* The milters' MAIL event; without milters, the answer at once. */
static void mail_milter(struct session *s)
{
    const char *reply;
    if (!smtpd_milter_mail(s, s->tx->sender, s->tx->mail_params, mail_checked, &reply)) {
        s->state = ST_WAIT_MILTER;   /* resumed by mail_checked */
        return;
    }
    mail_reply(s, reply);
}

/* smtpd_client_message_rate_limit: anvil counted this MAIL (as Postfix,
 * before the milters see it). */
static void message_counted(void *ctx, int ok, long count, long rate)
{
    struct session *s = ctx;
    s->tx->anvil_req = NULL;
    s->state = ST_COMMAND;
    if (ok && rate > smtpd_cfg.message_rate_limit) {
        msg_warn("Message delivery request rate limit exceeded: %ld from %s for service %s",
                 rate, s->namaddr, service_name());
        smtpd_reply(s, "450 4.7.1 Error: too much mail from %s", s->addr);
        smtpd_tx_reset(s);
        smtpd_error_reply(s);
    } else {
        mail_milter(s);
    }
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

void smtpd_tx_mail(struct session *s, const char *arg)
{
    char addr[ADDRESS_MAX], why[SMTPD_REPLY_MAX];
    const char *params;
    struct smtpd_mail_params p;
    smtpd_count(s, C_MAIL, 0);
    if (s->tx) {
        smtpd_reply(s, "503 5.5.1 Error: nested MAIL command");
        smtpd_error_reply(s);
        return;
    }
    const char *path = smtp_path_argument(arg, "FROM:");
    if (!path) {
        smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        smtpd_error_reply(s);
        return;
    }
    if (parse_path(s, path, addr, sizeof(addr), &params, SMTPD_PATH_SENDER) < 0) {
        smtpd_error_reply(s);
        return;
    }
    if (smtpd_parse_mail_params(params, smtpd_cfg.message_size_limit, smtpd_cfg.smtputf8, &p,
                                why, sizeof(why)) < 0) {
        smtpd_reply(s, "%s", why);
        smtpd_error_reply(s);
        return;
    }
    if (smtpd_has_8bit(addr) && !p.smtputf8) {
        smtpd_mail_params_free(&p);
        reject_utf8_undeclared(s);
        return;
    }
    long long size = p.size > 0 ? p.size : 0;
    if (!(s->tx = tx_new(s, addr, &p))) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        return;
    }
    if (!smtpd_storage_room(size)) {
        log_reject(s->tx, "MAIL", NULL, SMTPD_STORAGE_REPLY);
        smtpd_reply(s, "%s", SMTPD_STORAGE_REPLY);
        smtpd_tx_reset(s);
        smtpd_error_reply(s);
        return;
    }
    if (!(s->tx->mail_params = strdup(params))) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        smtpd_tx_reset(s);
        return;
    }
    if (smtpd_cfg.message_rate_limit > 0 && !s->count_exempt &&
        (s->tx->anvil_req = smtpd_anvil_ask("message", s->addr, message_counted, s))) {
        s->state = ST_WAIT_CHECK;   /* resumed by message_counted */
        return;
    }
    mail_milter(s);
}

/* --- RCPT --- */

/* The first recipient opens the stream and sends the envelope. */
static int open_stream(struct smtpd_tx *tx)
{
    struct session *s = tx->session;
    int fds[SMTPD_SUBMIT_FDS_MAX];
    size_t nfds = smtpd_milter_fds(s, fds, SMTPD_SUBMIT_FDS_MAX);
    struct smtpd_submit *m = smtpd_submit_open(&submit_events, tx->session, fds, nfds);
    if (!m)
        return -1;
    tx->submit = m;
    smtpd_submit_record(m, REC_SENDER, tx->sender, strlen(tx->sender));
    smtpd_xforward_submit_client(s, m, protocol_name(tx));   /* XFORWARD's or ours */
    smtpd_submit_attr(m, ATTR_ORIGIN, "smtp");
    if (s->sasl_user) {
        smtpd_submit_attr(m, ATTR_SASL_METHOD, s->sasl_method);
        smtpd_submit_attr(m, ATTR_SASL_USER, s->sasl_user);
    }
    if (tx->dsn_ret)
        smtpd_submit_attr(m, ATTR_DSN_RET, tx->dsn_ret);
    if (tx->dsn_envid)
        smtpd_submit_attr(m, ATTR_DSN_ENVID, tx->dsn_envid);
    /* remote passes SMTPUTF8 on, or returns what needs it (5.6.7). */
    if (tx->smtputf8)
        smtpd_submit_attr(m, ATTR_SMTPUTF8, "1");
    return 0;
}

/* The milters have answered for the recipient the restrictions accepted. */
static void accept_rcpt(struct smtpd_tx *tx, const char *milter_reply)
{
    struct session *s = tx->session;
    struct rcpt_request *r = tx->rcpt;
    const char *refusal = smtpd_milter_verdict(s, "RCPT", milter_reply);
    if (refusal) {
        smtpd_reply(s, "%s", refusal);
        free_rcpt_request(tx);
        smtpd_error_reply(s);
        return;
    }
    if (!tx->submit && open_stream(tx) < 0) {
        free_rcpt_request(tx);
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        return;
    }
    if (r->orcpt)
        smtpd_submit_record(tx->submit, REC_DSN_ORCPT, r->orcpt, strlen(r->orcpt));
    if (r->notify) {
        char mask[16];
        snprintf(mask, sizeof(mask), "%d", r->notify);
        smtpd_submit_record(tx->submit, REC_DSN_NOTIFY, mask, strlen(mask));
    }
    smtpd_submit_record(tx->submit, REC_RCPT, r->addr, strlen(r->addr));
    if (tx->nrcpt++ == 0)
        tx->first_rcpt = strdup(r->addr);
    s->ok[C_RCPT]++;
    free_rcpt_request(tx);
    smtpd_reply(s, "250 2.1.5 Ok");
}

/* The restrictions refused the recipient; milters that asked to hear such
 * recipients have (their answer changes nothing, as in Postfix). */
static void refuse_rcpt(struct smtpd_tx *tx)
{
    struct session *s = tx->session;
    smtpd_reply(s, "%s", tx->rcpt->rejected);
    free_rcpt_request(tx);
    smtpd_error_reply(s);
}

static void rcpt_milters_answered(struct smtpd_tx *tx, const char *milter_reply)
{
    if (tx->rcpt->rejected)
        refuse_rcpt(tx);
    else
        accept_rcpt(tx, milter_reply);
}

static void rcpt_milter_checked(struct session *s, const char *reply)
{
    s->state = ST_COMMAND;
    rcpt_milters_answered(s->tx, reply);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

/* The milters' RCPT event for tx->rcpt. */
static void rcpt_milter(struct smtpd_tx *tx)
{
    struct session *s = tx->session;
    const char *reply;
    if (!smtpd_milter_rcpt(s, tx->rcpt->addr, tx->rcpt->params, tx->rcpt->rejected,
                           rcpt_milter_checked, &reply)) {
        s->state = ST_WAIT_MILTER;   /* resumed by rcpt_milter_checked */
        return;
    }
    rcpt_milters_answered(tx, reply);
}

/* The restrictions have answered for tx->rcpt; the milters hear it next,
 * a refused one too (SMFIP_RCPT_REJ). Milters get the queue id ("i")
 * from the second recipient on, as with Postfix: the stream opened at the
 * first may still be waiting for it. */
static void finish_rcpt(struct smtpd_tx *tx, int code, const char *text)
{
    struct session *s = tx->session;
    struct rcpt_request *r = tx->rcpt;
    if (code != 0) {
        log_reject(tx, "RCPT", r->addr, text);
        if (!(r->rejected = strdup(text))) {
            smtpd_reply(s, "%s", text);
            free_rcpt_request(tx);
            smtpd_error_reply(s);
            return;
        }
    }
    if (tx->submit && !smtpd_submit_queue_id(tx->submit) && !smtpd_submit_failed(tx->submit) &&
        smtpd_milter_active(s)) {
        tx->milter_rcpt = 1;
        s->state = ST_WAIT_QUEUE_ID;   /* resumed by submit_ready */
        return;
    }
    rcpt_milter(tx);
}

static void rcpt_checked(struct session *s, int code, const char *text);

/* A policy request carries the queue id as Postfix's does: once the
 * stream is open, wait for cleanup to name the file (it does so at once)
 * before a list with check_policy_service is evaluated. 1 when waiting
 * (resumed by submit_ready, which clears *flag). */
static int wait_id_for_policy(struct session *s, int at_data, int *flag)
{
    struct smtpd_tx *tx = s->tx;
    if (!tx->submit || smtpd_submit_queue_id(tx->submit) || smtpd_submit_failed(tx->submit) ||
        !smtpd_restrict_asks_policy(at_data))
        return 0;
    *flag = 1;
    s->state = ST_WAIT_QUEUE_ID;
    return 1;
}

/* The restrictions for tx->rcpt: decided at once, or rcpt_checked later. */
static void rcpt_restrictions(struct session *s)
{
    struct smtpd_tx *tx = s->tx;
    if (wait_id_for_policy(s, 0, &tx->policy_rcpt))
        return;
    int code;
    char text[ADDRESS_MAX + 256];
    if (!smtpd_restrict_rcpt(s, tx->sender, tx->rcpt->addr, rcpt_checked, &code, text,
                             sizeof(text))) {
        s->state = ST_WAIT_CHECK;   /* resumed by rcpt_checked */
        return;
    }
    finish_rcpt(tx, code, text);
}

/* smtpd_client_recipient_rate_limit: anvil counted this RCPT; as Postfix,
 * before the restrictions. */
static void recipient_counted(void *ctx, int ok, long count, long rate)
{
    struct session *s = ctx;
    s->tx->anvil_req = NULL;
    s->state = ST_COMMAND;
    if (ok && rate > smtpd_cfg.recipient_rate_limit) {
        msg_warn("Recipient address rate limit exceeded: %ld from %s for service %s", rate,
                 s->namaddr, service_name());
        smtpd_reply(s, "450 4.7.1 Error: too many recipients from %s", s->addr);
        free_rcpt_request(s->tx);
        smtpd_error_reply(s);
    } else {
        rcpt_restrictions(s);
    }
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

/* A restriction that waited (DNS, a table server, a policy service) has
 * decided. */
static void rcpt_checked(struct session *s, int code, const char *text)
{
    s->state = ST_COMMAND;
    finish_rcpt(s->tx, code, text);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

/* The parameters of RCPT into r; -1 after replying. */
static int rcpt_params(struct session *s, const char *params, struct rcpt_request *r)
{
    struct smtpd_rcpt_params p;
    char why[SMTPD_REPLY_MAX];
    if (smtpd_parse_rcpt_params(params, &p, why, sizeof(why)) < 0) {
        smtpd_reply(s, "%s", why);
        return -1;
    }
    r->notify = p.notify;
    r->orcpt = p.orcpt;   /* the request owns it now */
    r->params = strdup(params);
    return 0;
}

/* A RCPT over smtpd_recipient_limit. As in Postfix, the first
 * smtpd_recipient_overshoot_limit of them in a transaction are no errors
 * (and count as accepted commands in the disconnect line), so a client
 * that sends too many in one go simply tries the rest later; each one
 * beyond counts towards the error limits, which end a session that keeps
 * going. */
static void too_many_recipients(struct session *s, struct smtpd_tx *tx)
{
    smtpd_reply(s, "452 4.5.3 Error: too many recipients");
    if (tx->overshoot++ < var.smtpd_recipient_overshoot_limit)
        s->ok[C_RCPT]++;
    else
        smtpd_error_reply(s);
}

void smtpd_tx_rcpt(struct session *s, const char *arg)
{
    struct smtpd_tx *tx = s->tx;
    const char *params;
    smtpd_count(s, C_RCPT, 0);
    if (!tx) {
        smtpd_reply(s, "503 5.5.1 Error: need MAIL command");
        smtpd_error_reply(s);
        return;
    }
    const char *path = smtp_path_argument(arg, "TO:");
    if (!path) {
        smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        smtpd_error_reply(s);
        return;
    }
    struct rcpt_request *r = calloc(1, sizeof(*r));
    if (!r) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        return;
    }
    tx->rcpt = r;
    if (parse_path(s, path, r->addr, sizeof(r->addr), &params, SMTPD_PATH_RECIPIENT) < 0 ||
        rcpt_params(s, params, r) < 0) {
        free_rcpt_request(tx);
        smtpd_error_reply(s);
        return;
    }
    if (smtpd_has_8bit(r->addr) && !tx->smtputf8) {
        free_rcpt_request(tx);
        reject_utf8_undeclared(s);
        return;
    }
    if (tx->nrcpt >= smtpd_cfg.recipient_limit) {
        free_rcpt_request(tx);
        too_many_recipients(s, tx);
        return;
    }
    if (smtpd_cfg.recipient_rate_limit > 0 && !s->count_exempt &&
        (tx->anvil_req = smtpd_anvil_ask("recipient", s->addr, recipient_counted, s))) {
        s->state = ST_WAIT_CHECK;   /* resumed by recipient_counted */
        return;
    }
    rcpt_restrictions(s);
}

/* --- DATA --- */

/* Received: in Postfix's layout, with the TLS lines when TLS is on and the
 * user when smtpd_sasl_authenticated_header says so: "from HELO (NAME
 * [ADDR])", the client name for a missing HELO, an IPv6 address as RFC
 * 5321 writes it ("IPv6:::1"). */
static void add_received(struct smtpd_tx *tx)
{
    const struct session *s = tx->session;
    struct evbuffer *b = tx->content;
    char date[64];
    mail_date(date, sizeof(date), time(NULL));
    if (tx->prepend)   /* above Received:, as Postfix puts them */
        evbuffer_add_buffer(b, tx->prepend);
    evbuffer_add_printf(b, "Received: from %s (%s [%s%s])\n", s->helo[0] ? s->helo : s->name,
                        s->name, strchr(s->addr, ':') ? "IPv6:" : "", s->addr);
    if (s->tls)
        evbuffer_add_printf(b, "\t(using %s)\n\t(No client certificate requested)\n",
                            s->tls_info);
    /* The user name is printable (auth.c checked it on the way in). */
    if (s->sasl_user && smtpd_cfg.sasl_auth_header)
        evbuffer_add_printf(b, "\t(Authenticated sender: %s)\n", s->sasl_user);
    evbuffer_add_printf(b, "\tby %s (%s) with %s id %s", smtpd_cfg.myhostname,
                        smtpd_cfg.mail_name, protocol_name(tx),
                        smtpd_submit_queue_id(tx->submit));
    char rcpt[ADDRESS_MAX + 2];
    if (tx->nrcpt == 1 && tx->first_rcpt &&
        address_quote(tx->first_rcpt, rcpt, sizeof(rcpt)) == 0)
        evbuffer_add_printf(b, "\n\tfor <%s>; %s\n", rcpt, date);
    else
        evbuffer_add_printf(b, ";\n\t%s\n", date);
}

static void go_ahead(struct session *s)
{
    s->tx->go_ahead = 1;
    smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    smtpd_session_begin_request(s);
}

/* The content phase, once the stream is ready. When it failed after the
 * 354, the content is read and dropped and the end of data is answered 451
 * (smtpd_submit_finish refuses). Through postdrop (stand-alone mode) no
 * queue id is known, so Received: is left to pickup, whose line names the
 * queue id and the submitting user. */
static void begin_content(struct session *s)
{
    struct smtpd_tx *tx = s->tx;
    smtpd_milter_message(s, tx->submit);
    smtpd_delegate_submit(s, tx->submit);
    smtpd_filter_submit(s, tx->submit);
    if (smtpd_submit_record(tx->submit, REC_CONTENT_START, "", 0) == 0 &&
        smtpd_submit_queue_id(tx->submit))
        add_received(tx);
    smtpd_data_start(&tx->data, smtpd_cfg.bare_newline, smtpd_cfg.message_size_limit);
    s->state = ST_DATA;
    if (!tx->go_ahead)
        go_ahead(s);
}

/* DATA accepted: 354 now, content once the stream is ready. */
static void data_continue(struct session *s)
{
    struct smtpd_tx *tx = s->tx;
    if (!smtpd_submit_ready(tx->submit)) {
        /* The client sends while cleanup creates the file; its content
         * waits in the input buffer until the queue id for our Received:
         * header arrives. */
        go_ahead(s);
        s->state = ST_WAIT_QUEUE_ID;   /* resumed by submit_ready */
        return;
    }
    begin_content(s);
}

static void data_milter_reply(struct session *s, const char *milter_reply)
{
    const char *refusal = smtpd_milter_verdict(s, "DATA", milter_reply);
    if (refusal) {
        smtpd_reply(s, "%s", refusal);
        smtpd_tx_reset(s);
        smtpd_error_reply(s);
        return;
    }
    data_continue(s);
}

static void data_milter_checked(struct session *s, const char *reply)
{
    s->state = ST_COMMAND;
    data_milter_reply(s, reply);
    smtpd_session_resume(s);
}

/* The milters' DATA event (the queue id is known by now). */
static void data_milter(struct session *s)
{
    const char *reply;
    if (!smtpd_milter_data(s, data_milter_checked, &reply)) {
        s->state = ST_WAIT_MILTER;   /* resumed by data_milter_checked */
        return;
    }
    data_milter_reply(s, reply);
}

static void data_decided(struct session *s, int code, const char *text);
static void data_restrictions(struct session *s);

/* smtpd_data_restrictions that waited have decided. */
static void data_checked(struct session *s, int code, const char *text)
{
    s->state = ST_COMMAND;
    data_decided(s, code, text);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

void smtpd_tx_data(struct session *s, const char *arg)
{
    struct smtpd_tx *tx = s->tx;
    smtpd_count(s, C_DATA, 0);
    if (*arg) {
        smtpd_reply(s, "501 5.5.4 Syntax: DATA");
        smtpd_error_reply(s);
        return;
    }
    if (!tx) {
        smtpd_reply(s, "503 5.5.1 Error: need RCPT command");
        smtpd_error_reply(s);
        return;
    }
    if (tx->nrcpt == 0 || !tx->submit) {
        smtpd_reply(s, "554 5.5.1 Error: no valid recipients");
        smtpd_error_reply(s);
        return;
    }
    if (smtpd_submit_failed(tx->submit)) {
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        smtpd_tx_reset(s);
        return;
    }
    data_restrictions(s);
}

/* smtpd_data_restrictions: decided at once, or data_checked later. */
static void data_restrictions(struct session *s)
{
    struct smtpd_tx *tx = s->tx;
    if (wait_id_for_policy(s, 1, &tx->policy_data))
        return;
    int code;
    char text[ADDRESS_MAX + 256];
    if (!smtpd_restrict_data(s, tx->sender, tx->nrcpt, data_checked, &code, text,
                             sizeof(text))) {
        s->state = ST_WAIT_CHECK;   /* resumed by data_checked */
        return;
    }
    data_decided(s, code, text);
}

/* smtpd_data_restrictions decided: refused (the transaction stays, as in
 * Postfix: the client may RSET), or on to the content. */
static void data_decided(struct session *s, int code, const char *text)
{
    struct smtpd_tx *tx = s->tx;
    if (code) {
        /* to= names the recipient when there is one, as Postfix. */
        log_reject(tx, "DATA", tx->nrcpt == 1 ? tx->first_rcpt : NULL, text);
        smtpd_reply(s, "%s", text);
        smtpd_error_reply(s);
        return;
    }
    if (!tx->content && !(tx->content = evbuffer_new())) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        smtpd_tx_reset(s);
        return;
    }
    if (smtpd_milter_active(s)) {
        if (!smtpd_submit_queue_id(tx->submit) && !smtpd_submit_failed(tx->submit)) {
            tx->milter_data = 1;
            s->state = ST_WAIT_QUEUE_ID;   /* resumed by submit_ready */
            return;
        }
        data_milter(s);
        return;
    }
    data_continue(s);
}

/* Decoded content out in whole chunks, or all of it at the end. */
static void flush_content(struct smtpd_tx *tx, int all)
{
    size_t len = evbuffer_get_length(tx->content);
    if (tx->data.too_big || tx->data.has_nul) {
        evbuffer_drain(tx->content, len);
        return;
    }
    if (!all)
        len -= len % REC_CHUNK_SIZE;
    if (len)
        smtpd_submit_content(tx->submit, tx->content, len);
}

static void eod_checked(struct session *s, int code, const char *text);
static void eod_decided(struct session *s, int code, const char *text);

static void end_of_data(struct session *s)
{
    struct smtpd_tx *tx = s->tx;
    s->last_cmd = SMTPD_AFTER_EOM;
    flush_content(tx, 1);
    const char *refusal = NULL;
    if (tx->data.too_big)
        refusal = "552 5.3.4 Message size exceeds fixed limit";
    else if (tx->data.has_nul)
        refusal = "550 5.6.0 Error: NUL character in message content";
    if (refusal) {
        log_reject(tx, "END-OF-MESSAGE", tx->first_rcpt, refusal);
        s->state = ST_COMMAND;
        smtpd_reply(s, "%s", refusal);
        smtpd_tx_reset(s);
        return;
    }
    int code;
    char text[ADDRESS_MAX + 256];
    if (!smtpd_restrict_eod(s, tx->sender, tx->nrcpt == 1 ? tx->first_rcpt : "", tx->nrcpt,
                            eod_checked, &code, text, sizeof(text))) {
        s->state = ST_WAIT_CHECK;   /* resumed by eod_checked */
        return;
    }
    eod_decided(s, code, text);
}

/* smtpd_end_of_data_restrictions that waited have decided. */
static void eod_checked(struct session *s, int code, const char *text)
{
    s->state = ST_COMMAND;
    eod_decided(s, code, text);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

/* Refused: the message is not queued (cleanup drops the unfinished file);
 * else committed, with the actions of smtpd_end_of_data_restrictions
 * (HOLD, DISCARD, REDIRECT, BCC), which cleanup takes before it commits. */
static void eod_decided(struct session *s, int code, const char *text)
{
    struct smtpd_tx *tx = s->tx;
    if (code) {
        log_reject(tx, "END-OF-MESSAGE", tx->nrcpt == 1 ? tx->first_rcpt : NULL, text);
        s->state = ST_COMMAND;
        smtpd_reply(s, "%s", text);
        smtpd_tx_reset(s);
        smtpd_error_reply(s);
        return;
    }
    smtpd_delegate_submit(s, tx->submit);
    if (smtpd_submit_finish(tx->submit) < 0) {
        s->state = ST_COMMAND;
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        smtpd_tx_reset(s);
        return;
    }
    smtpd_milter_handed(s);
    s->state = ST_WAIT_QUEUED;   /* resumed by submit_done */
}

/* smtpd_forbid_bare_newline = yes: the message is dropped and the session
 * ends, before anything after the offending byte is looked at. */
static void refuse_bare_newline(struct session *s, const char *which)
{
    char text[256];
    snprintf(text, sizeof(text), "521 5.5.2 %s Error: bare <%s> received", smtpd_cfg.myhostname,
             which);
    log_reject(s->tx, "DATA", s->tx->first_rcpt, text);
    smtpd_reply(s, "%s", text);
    smtpd_tx_reset(s);
    smtpd_session_close_after_reply(s);
}

int smtpd_tx_read_content(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->state == ST_DATA) {
        struct smtpd_tx *tx = s->tx;
        if (smtpd_submit_backlog(tx->submit) > SUBMIT_HIGH_WATER) {
            bufferevent_disable(s->bev, EV_READ);   /* resumed by submit_drained */
            return 0;
        }
        switch (smtpd_data_decode(&tx->data, in, tx->content, REC_CHUNK_SIZE, &s->req_bytes)) {
        case SMTPD_DATA_MORE:
            return 1;
        case SMTPD_DATA_FULL:
            flush_content(tx, 0);
            break;
        case SMTPD_DATA_END:
            end_of_data(s);
            break;
        case SMTPD_DATA_BARE_LF:
            refuse_bare_newline(s, "LF");
            break;
        case SMTPD_DATA_BARE_CR:
            refuse_bare_newline(s, "CR");
            break;
        }
    }
    return 0;
}

/* --- the stream's callbacks --- */

static void submit_ready(void *ctx)
{
    struct session *s = ctx;
    struct smtpd_tx *tx = s->tx;
    const char *id = smtpd_submit_queue_id(tx->submit);
    if (id && !tx->client_logged) {
        char orig[XFORWARD_LINE_MAX];
        smtpd_xforward_log_suffix(s, orig, sizeof(orig));
        if (s->sasl_user)
            msg_info("%s: client=%s, sasl_method=%s, sasl_username=%s%s", id, s->namaddr,
                     s->sasl_method, s->sasl_user, orig);
        else
            msg_info("%s: client=%s%s", id, s->namaddr, orig);
        tx->client_logged = 1;
    }
    if (s->state != ST_WAIT_QUEUE_ID)
        return;
    if (tx->policy_rcpt || tx->policy_data) {
        /* a failed stream is reported when DATA comes, or now at DATA */
        int data = tx->policy_data;
        tx->policy_rcpt = tx->policy_data = 0;
        s->state = ST_COMMAND;
        if (data)
            data_restrictions(s);
        else
            rcpt_restrictions(s);
        if (s->state != ST_COMMAND)
            return;
    } else if (tx->milter_rcpt) {
        tx->milter_rcpt = 0;
        s->state = ST_COMMAND;
        rcpt_milter(tx);   /* a failed stream is reported when DATA comes */
        if (s->state == ST_WAIT_MILTER)
            return;
    } else if ((!id || smtpd_submit_failed(tx->submit)) && !tx->go_ahead) {
        s->state = ST_COMMAND;
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        smtpd_tx_reset(s);
    } else if (tx->milter_data) {
        tx->milter_data = 0;
        s->state = ST_COMMAND;
        data_milter(s);
        if (s->state == ST_WAIT_MILTER)
            return;
    } else {
        begin_content(s);
    }
    smtpd_session_resume(s);
}

static void submit_done(void *ctx, int status, const char *reason)
{
    struct session *s = ctx;
    if (s->state != ST_WAIT_QUEUED)
        return;   /* failure before DATA: reported when DATA comes */
    struct smtpd_submit *sub = s->tx->submit;
    const char *id = smtpd_submit_queue_id(sub);
    const char *reply = smtpd_submit_reply(sub);
    size_t nstates;
    const char *const *states = smtpd_submit_milters(sub, &nstates);
    smtpd_milter_returned(s, states, nstates);
    s->state = ST_COMMAND;
    if (status != 0 && reply) {
        /* the milters' own reply, code and all (cleanup logged it) */
        smtpd_reply(s, "%s", reply);
        if (strncmp(reply, "421", 3) == 0)
            smtpd_session_close_after_reply(s);
    } else if (status == 0) {
        s->ok[C_DATA]++;
        if (id)
            smtpd_reply(s, "250 2.0.0 Ok: queued as %s", id);
        else
            smtpd_reply(s, "250 2.0.0 Ok: queued");   /* postdrop: pickup names it */
    } else if (status == 5) {
        /* Postfix answers a message cleanup refused (content checks) with 550. */
        smtpd_reply(s, "550 %s", reason && *reason ? reason : "5.3.0 Error: message rejected");
    } else {
        smtpd_reply(s, "%d %s", smtpd_storage_reply_code(reason),
                    reason && *reason ? reason : "4.3.0 Error: queue file write error");
    }
    smtpd_tx_reset(s);
    smtpd_session_resume(s);
}

static void submit_drained(void *ctx)
{
    struct session *s = ctx;
    if (s->state == ST_DATA && !(bufferevent_get_enabled(s->bev) & EV_READ)) {
        bufferevent_enable(s->bev, EV_READ);
        smtpd_session_process(s);
    }
}
