/* restrict.c - smtpd_client/helo/sender/relay/recipient_restrictions
 * and smtpd_data_restrictions (restrict.h).
 *
 * As in Postfix with smtpd_delay_reject = yes, all five lists are evaluated
 * at RCPT time, in that order, for each recipient: in each list the first
 * restriction that decides (permit or reject) ends that list; a reject ends
 * everything; a permit moves on to the next list. When all lists pass, a
 * recipient in a local domain must be a known local recipient
 * (lib/mail/local_recipient.h). Reply texts and codes are Postfix's.
 *
 * Relay decisions use the recipient after parsing and de-quoting: a local
 * part with '@', '%' or '!' is sender-specified routing and never counts as
 * an authorized destination, however the domain looks.
 *
 * In stand-alone mode (sendmail -bs) none of this applies, as in Postfix:
 * the client is a local user whose mail goes through postdrop like any
 * other local submission, trusted as such.
 *
 * A configuration error never stops smtpd (it would only be restarted to
 * stop again): an unknown restriction, a Postfix restriction Postern does
 * not implement yet, a table that cannot be opened and relay restrictions
 * without an open-relay guard are logged once at start and answered
 * "451 4.3.5 Server configuration error" (Postfix's reply) for every
 * request that reaches them, while the rest keeps working.
 *
 * reject_unknown_client_hostname and reject_unknown_reverse_client_hostname
 * go by the names peer.c found before the greeting.
 *
 * DNS (reject_rbl_client, reject_unknown_sender_domain) goes through
 * lib/util/dns.h on smtpd's event loop: evaluation stops at the restriction
 * that needs an answer and starts again at that same restriction when the
 * answer is in the session's cache, so nothing ever blocks.
 *
 * check_policy_service (policy.h) waits the same way: the answer is kept
 * in the evaluation and taken when it starts again at that restriction.
 * smtpd_data_restrictions run alone at DATA (smtpd_restrict_data).
 */
#include "restrict.h"
#include "peer.h"
#include "policy.h"
#include "session.h"
#include "smtpd.h"
#include "transaction.h"
#include "filter.h"
#include "delegate.h"

#include "address.h"
#include "config.h"
#include "dns.h"
#include "header_line.h"
#include "local_recipient.h"
#include "log.h"
#include "lookup.h"
#include "match.h"
#include "strlist.h"
#include "sasl.h"
#include "virtual_mailbox.h"
#include "receive_override.h"
#include "lookup_async.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_MAX 1024
#define DNS_CACHE_MAX 32   /* answers remembered per session */
#define QNAME_MAX (DNS_NAME_SIZE + 80)   /* room to build a name before its length check */

/* The first five are evaluated at RCPT; smtpd_data_restrictions at DATA. */
enum stage { STAGE_CLIENT, STAGE_HELO, STAGE_SENDER, STAGE_RELAY, STAGE_RECIPIENT, STAGE_DATA,
             STAGE_EOD, STAGE_COUNT };

static const struct {
    enum param_id param;
    const char *reply_class;
} stages[STAGE_COUNT] = {
    {PARAM_smtpd_client_restrictions, "Client host"},
    {PARAM_smtpd_helo_restrictions, "Helo command"},
    {PARAM_smtpd_sender_restrictions, "Sender address"},
    {PARAM_smtpd_relay_restrictions, "Recipient address"},
    {PARAM_smtpd_recipient_restrictions, "Recipient address"},
    {PARAM_smtpd_data_restrictions, "Data command"},
    {PARAM_smtpd_end_of_data_restrictions, "End-of-data"},
};

enum r_kind {
    R_PERMIT, R_REJECT, R_DEFER, R_DUNNO,
    R_PERMIT_MYNETWORKS, R_PERMIT_SASL, R_PERMIT_AUTH_DEST,
    R_REJECT_UNAUTH_DEST, R_DEFER_UNAUTH_DEST,
    R_CHECK_CLIENT, R_CHECK_HELO, R_CHECK_SENDER, R_CHECK_RECIPIENT,
    R_UNKNOWN_SENDER_DOMAIN, R_NON_FQDN_SENDER, R_NON_FQDN_RECIPIENT,
    R_NON_FQDN_HELO, R_INVALID_HELO, R_RBL_CLIENT, R_LOGIN_MISMATCH,
    R_KNOWN_LOGIN_MISMATCH, R_AUTH_LOGIN_MISMATCH, R_UNAUTH_LOGIN_MISMATCH,
    R_UNLISTED_RECIPIENT, R_UNLISTED_SENDER, R_UNKNOWN_RCPT_DOMAIN, R_UNKNOWN_CLIENT, R_UNKNOWN_REVERSE_CLIENT,
    R_POLICY,         /* check_policy_service */
    R_UNAUTH_PIPELINING,
    R_CONFIG_ERROR,   /* unknown or not implemented: 451 4.3.5 */
};

static const struct {
    const char *name;
    enum r_kind kind;
    int has_arg;
} known[] = {
    {"permit", R_PERMIT, 0},
    {"reject", R_REJECT, 0},
    {"defer", R_DEFER, 0},
    {"dunno", R_DUNNO, 0},
    {"permit_mynetworks", R_PERMIT_MYNETWORKS, 0},
    {"permit_sasl_authenticated", R_PERMIT_SASL, 0},
    {"permit_auth_destination", R_PERMIT_AUTH_DEST, 0},
    {"reject_unauth_destination", R_REJECT_UNAUTH_DEST, 0},
    {"defer_unauth_destination", R_DEFER_UNAUTH_DEST, 0},
    {"check_client_access", R_CHECK_CLIENT, 1},
    {"check_helo_access", R_CHECK_HELO, 1},
    {"check_sender_access", R_CHECK_SENDER, 1},
    {"check_recipient_access", R_CHECK_RECIPIENT, 1},
    {"reject_unknown_sender_domain", R_UNKNOWN_SENDER_DOMAIN, 0},
    {"reject_non_fqdn_sender", R_NON_FQDN_SENDER, 0},
    {"reject_non_fqdn_recipient", R_NON_FQDN_RECIPIENT, 0},
    {"reject_non_fqdn_helo_hostname", R_NON_FQDN_HELO, 0},
    {"reject_non_fqdn_hostname", R_NON_FQDN_HELO, 0},        /* before Postfix 2.3 */
    {"reject_invalid_helo_hostname", R_INVALID_HELO, 0},
    {"reject_invalid_hostname", R_INVALID_HELO, 0},          /* before Postfix 2.3 */
    {"reject_rbl_client", R_RBL_CLIENT, 1},
    {"reject_sender_login_mismatch", R_LOGIN_MISMATCH, 0},
    {"reject_known_sender_login_mismatch", R_KNOWN_LOGIN_MISMATCH, 0},
    {"reject_authenticated_sender_login_mismatch", R_AUTH_LOGIN_MISMATCH, 0},
    {"reject_unauthenticated_sender_login_mismatch", R_UNAUTH_LOGIN_MISMATCH, 0},
    {"reject_unlisted_recipient", R_UNLISTED_RECIPIENT, 0},
    {"reject_unlisted_sender", R_UNLISTED_SENDER, 0},
    {"reject_unknown_recipient_domain", R_UNKNOWN_RCPT_DOMAIN, 0},
    {"reject_unknown_client_hostname", R_UNKNOWN_CLIENT, 0},
    {"reject_unknown_client", R_UNKNOWN_CLIENT, 0},          /* before Postfix 2.3 */
    {"reject_unknown_reverse_client_hostname", R_UNKNOWN_REVERSE_CLIENT, 0},
    {"reject_unauth_pipelining", R_UNAUTH_PIPELINING, 0},
    {"check_policy_service", R_POLICY, 1},
};

/* Postfix restrictions Postern does not implement yet. Each is a
 * configuration error where it stands (the arguments of those that take
 * one are skipped), never a silent pass. */
static const struct {
    const char *name;
    int has_arg;
} not_implemented[] = {
    {"check_address_map", 1},
    {"check_ccert_access", 1},
    {"check_client_a_access", 1},
    {"check_client_mx_access", 1},
    {"check_client_ns_access", 1},
    {"check_etrn_access", 1},
    {"check_helo_a_access", 1},
    {"check_helo_mx_access", 1},
    {"check_helo_ns_access", 1},
    {"check_recipient_a_access", 1},
    {"check_recipient_mx_access", 1},
    {"check_recipient_ns_access", 1},
    {"check_relay_domains", 0},
    {"check_reverse_client_hostname_a_access", 1},
    {"check_reverse_client_hostname_access", 1},
    {"check_reverse_client_hostname_mx_access", 1},
    {"check_reverse_client_hostname_ns_access", 1},
    {"check_sasl_access", 1},
    {"check_sender_a_access", 1},
    {"check_sender_mx_access", 1},
    {"check_sender_ns_access", 1},
    {"defer_if_permit", 0},
    {"defer_if_reject", 0},
    {"permit_dnswl_client", 1},
    {"permit_inet_interfaces", 0},
    {"permit_mx_backup", 0},
    {"permit_naked_ip_address", 0},
    {"permit_rhswl_client", 1},
    {"permit_tls_all_clientcerts", 0},
    {"permit_tls_clientcerts", 0},
    {"reject_authenticated_sender_login_mismatch", 0},
    {"reject_known_sender_login_mismatch", 0},
    {"reject_maps_rbl", 0},
    {"reject_multi_recipient_bounce", 0},
    {"reject_plaintext_session", 0},
    {"reject_rhsbl_client", 1},
    {"reject_rhsbl_helo", 1},
    {"reject_rhsbl_recipient", 1},
    {"reject_rhsbl_reverse_client", 1},
    {"reject_rhsbl_sender", 1},
    {"reject_unauthenticated_sender_login_mismatch", 0},
    {"reject_unknown_helo_hostname", 0},
    {"reject_unknown_hostname", 0},
    {"reject_unverified_recipient", 0},
    {"reject_unverified_sender", 0},
    {"sleep", 1},
    {"warn_if_reject", 0},
};

struct restriction {
    enum r_kind kind;
    char *arg;                  /* table spec or RBL domain */
    struct lookup_list *table;  /* check_*_access; NULL when it could not be opened */
    struct policy_service *policy;   /* check_policy_service */
};

static struct {
    struct restriction *items;
    size_t n;
} lists[STAGE_COUNT];

/* No reject_unauth_destination or the like in the relay and recipient
 * lists: every request that gets that far is a configuration error. */
static int relay_unguarded;

enum verdict { V_DUNNO, V_PERMIT, V_REJECT, V_PENDING };

/* What DNS told us, remembered for the rest of the session. */
enum dns_kind { DK_RBL, DK_SENDER_DOMAIN };
enum domain_result { DOMAIN_FOUND, DOMAIN_NOTFOUND, DOMAIN_NULLMX, DOMAIN_TEMPFAIL };

struct dns_cache_entry {
    struct dns_cache_entry *next;
    enum dns_kind kind;
    int result;            /* RBL: 1 listed; domain: enum domain_result */
    char *addrs;           /* RBL: the A records, comma separated */
    char key[];
};

struct smtpd_dns_cache {
    struct dns_cache_entry *head;
    int n;
};

/* The evaluation in progress for one RCPT. */
struct smtpd_check {
    smtpd_restrict_done_fn done;
    const char *sender_addr;        /* internal forms, the caller's */
    const char *rcpt_addr;
    int stage;
    int end_stage;                  /* STAGE_DATA at RCPT, STAGE_EOD at DATA, STAGE_COUNT at
                                     * the end of the message */
    long recipient_count;           /* at DATA */
    size_t item;
    struct dns_query *query;
    enum dns_kind dns_kind;
    char dns_key[QNAME_MAX];
    char sender[ADDRESS_MAX + 2];   /* quoted as RFC 5321 wants, for replies */
    char rcpt[ADDRESS_MAX + 2];
    /* check_policy_service: the request in flight, then its answer */
    struct policy_request *policy_req;
    char *policy_action;
    /* DEFER_IF_PERMIT and DEFER_IF_REJECT answers, held until the end */
    int defer_if_permit_code, defer_if_reject_code;
    char defer_if_permit[ADDRESS_MAX + 600], defer_if_reject[ADDRESS_MAX + 600];
};

struct outcome {
    int *code;
    char *text;
    size_t len;
    struct session *s;              /* for actions with side effects (FILTER) */
};

/* --- parsing the lists --- */


/* Next word of a restriction list; "inline:{ a=b, c=d }" stays one word.
 * Returns 0 at the end. */
static int next_token(const char **pp, char *out, size_t outlen)
{
    int r;
    while ((r = strlist_next(pp, out, outlen)) < 0)
        ;   /* an over-long token is skipped, with strlist's warning */
    return r;
}

static const char *const SERVER_CONFIG_ERROR = "451 4.3.5 Server configuration error";

static size_t find_known(const char *name)
{
    size_t k = 0;
    while (k < sizeof(known) / sizeof(known[0]) && strcasecmp(name, known[k].name) != 0)
        k++;
    return k;
}

/* -1 when name is no restriction Postfix has that Postern lacks, else
 * whether it takes an argument. */
static int not_implemented_arg(const char *name)
{
    for (size_t i = 0; i < sizeof(not_implemented) / sizeof(not_implemented[0]); i++)
        if (strcasecmp(name, not_implemented[i].name) == 0)
            return not_implemented[i].has_arg;
    return -1;
}

static void add_restriction(enum stage st, struct restriction r)
{
    struct restriction *items = realloc(lists[st].items, (lists[st].n + 1) * sizeof(*items));
    if (!items)
        msg_fatal("out of memory");
    items[lists[st].n++] = r;
    lists[st].items = items;
}

/* A table a check_*_access names. One that cannot be opened (an
 * unsupported type, a bad spec) is left NULL: lookups in it answer 451
 * 4.3.5, as Postfix answers for a table it cannot open. */
static void open_table(const char *param, const char *restriction, struct restriction *r)
{
    char err[256] = "";
    if (!(r->table = lookup_list_open(r->arg, err, sizeof(err))))
        msg_warn("%s: %s %s is unavailable. %s", param, restriction, r->arg, err);
}

/* A policy service that cannot be used (a bad endpoint or attribute) is
 * a configuration error where it stands. */
static void open_policy(const char *param, struct restriction *r)
{
    char err[256] = "";
    if (!(r->policy = policy_service_open(r->arg, err, sizeof(err)))) {
        msg_warn("%s: check_policy_service %s is unusable: %s; requests that reach it get "
                 "\"%s\"", param, r->arg, err, SERVER_CONFIG_ERROR);
        r->kind = R_CONFIG_ERROR;
    }
}

/* A word that is no restriction Postern has. Postfix itself warns about
 * an unknown one and answers 451 4.3.5 when a request reaches it: the
 * daemon stays up and the rest of the configuration keeps working. */
static void config_error(enum stage st, const char *param, const char *tok, const char **pp)
{
    char arg[TOKEN_MAX];
    int has_arg = not_implemented_arg(tok);
    if (has_arg < 0)
        msg_warn("%s: unknown smtpd restriction: \"%s\"; requests that reach it get \"%s\"",
                 param, tok, SERVER_CONFIG_ERROR);
    else
        msg_warn("%s: smtpd restriction \"%s\" is not implemented in Postern; requests that "
                 "reach it get \"%s\"", param, tok, SERVER_CONFIG_ERROR);
    if (has_arg > 0)
        next_token(pp, arg, sizeof(arg));
    add_restriction(st, (struct restriction){.kind = R_CONFIG_ERROR});
}

static void parse_list(enum stage st)
{
    const char *param = config_name(stages[st].param);
    const char *p = config_value(stages[st].param);
    char tok[TOKEN_MAX], arg[TOKEN_MAX];
    while (p && next_token(&p, tok, sizeof(tok))) {
        size_t k = find_known(tok);
        if (k == sizeof(known) / sizeof(known[0])) {
            config_error(st, param, tok, &p);
            continue;
        }
        struct restriction r = {.kind = known[k].kind};
        if (known[k].has_arg) {
            if (!next_token(&p, arg, sizeof(arg))) {
                msg_warn("%s: restriction \"%s\" needs an argument; requests that reach it "
                         "get \"%s\"", param, tok, SERVER_CONFIG_ERROR);
                add_restriction(st, (struct restriction){.kind = R_CONFIG_ERROR});
                continue;
            }
            if (!(r.arg = strdup(arg)))
                msg_fatal("out of memory");
            if (r.kind == R_POLICY)
                open_policy(param, &r);
            else if (r.kind != R_RBL_CLIENT)
                open_table(param, tok, &r);
        }
        add_restriction(st, r);
    }
}

static int stops_relaying(enum r_kind k)
{
    return k == R_REJECT_UNAUTH_DEST || k == R_DEFER_UNAUTH_DEST || k == R_REJECT ||
           k == R_DEFER;
}

void smtpd_restrict_init(void)
{
    if (smtpd_cfg.stand_alone)
        return;   /* its tables may not even be readable by the user */
    for (int st = 0; st < STAGE_COUNT; st++)
        parse_list((enum stage)st);
    /* As Postfix: never an open relay by configuration. Postfix refuses to
     * start; Postern answers every recipient 451 until it is fixed, so
     * the mistake shows in the log and to clients, not as a crash loop. */
    int guarded = 0;
    for (int st = STAGE_RELAY; st <= STAGE_RECIPIENT; st++)
        for (size_t i = 0; i < lists[st].n; i++)
            guarded |= stops_relaying(lists[st].items[i].kind);
    relay_unguarded = !guarded;
    if (relay_unguarded)
        msg_warn("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, "
                 "specify at least one working instance of: reject_unauth_destination, "
                 "defer_unauth_destination, reject or defer; every recipient gets \"%s\"",
                 SERVER_CONFIG_ERROR);
}

/* --- replies --- */

static enum verdict reject_with(struct outcome *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum verdict reject_with(struct outcome *o, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->text, o->len, fmt, ap);
    va_end(ap);
    *o->code = code;
    return V_REJECT;
}

/* The name a reply quotes for a stage: client, HELO, sender or recipient. */
static const char *reply_name(const struct session *s, enum stage st)
{
    switch (st) {
    case STAGE_CLIENT:
        return s->namaddr;
    case STAGE_HELO:
        return s->helo;
    case STAGE_SENDER:
        return s->check->sender;
    case STAGE_DATA:
        return "DATA";
    case STAGE_EOD:
        return "END-OF-MESSAGE";
    default:
        return s->check->rcpt;
    }
}

/* --- destinations --- */

static int domain_is_local(const char *domain)
{
    return !domain || match_domain_list(smtpd_cfg.mydestination, domain);
}

/* The recipient is ours to accept: a local or relay domain, and no
 * routing hidden in the local part. 1, 0, or LOOKUP_TEMPFAIL or
 * LOOKUP_PENDING from a hosted-domain table. */
static int authorized_destination(const char *rcpt)
{
    const char *domain = address_domain(rcpt);
    size_t local_len = domain ? (size_t)(domain - 1 - rcpt) : strlen(rcpt);
    for (size_t i = 0; i < local_len; i++)
        if (rcpt[i] == '@' || rcpt[i] == '%' || rcpt[i] == '!')
            return 0;
    if (!domain)
        return 1;
    if (match_domain_list(smtpd_cfg.mydestination, domain) ||
        match_domain_list(smtpd_cfg.relay_domains, domain))
        return 1;
    int alias = virtual_alias_domain(domain);
    return alias != 0 ? alias : virtual_mailbox_domain(domain);
}

/* A hosted-domain table that failed or has not answered yet decides
 * nothing: V_PENDING, a temporary failure, or -1 to go on. */
static int destination_unknown(int d, struct session *s, struct outcome *o)
{
    if (d == LOOKUP_PENDING)
        return V_PENDING;
    if (d == LOOKUP_TEMPFAIL)
        return reject_with(o, 451, "451 4.3.0 <%s>: Temporary lookup failure", s->check->rcpt);
    return -1;
}

/* --- access tables --- */

/* An enhanced status code leading text ("4.2.0 Greylisted") replaces
 * the default one, in the reply's class as Postfix does: *text moves past
 * it. */
static void leading_dsn(const char **text, char cls, const char *fallback, char *dsn, size_t len)
{
    int a, b, c, used = 0;
    if (sscanf(*text, "%1d.%3d.%3d%n", &a, &b, &c, &used) == 3 && (a == 4 || a == 5) &&
        ((*text)[used] == 0 || (*text)[used] == ' ')) {
        snprintf(dsn, len, "%c.%d.%d", cls, b, c);
        *text += used;
        while (**text == ' ')
            (*text)++;
        return;
    }
    snprintf(dsn, len, "%s", fallback);
}

/* The command a restriction's log line names: RCPT, DATA, or
 * END-OF-MESSAGE for smtpd_end_of_data_restrictions. */
static const char *where_now(const struct session *s)
{
    if (!s->check || s->check->end_stage == STAGE_DATA)
        return "RCPT";
    return s->check->end_stage == STAGE_EOD ? "DATA" : "END-OF-MESSAGE";
}

/* The recipient a restriction's log line names, "" for none. */
static const char *rcpt_now(const struct session *s)
{
    return s->check ? s->check->rcpt_addr : "";
}

/* FILTER transport:destination: the message goes there after it is
 * queued (filter.h); evaluation goes on. */
static enum verdict access_filter(struct session *s, const char *dest, const char *name,
                                  const char *cls)
{
    char reason[600];
    snprintf(reason, sizeof(reason), "<%s>: %s triggers FILTER %s", name, cls, dest);
    smtpd_filter_action(s, dest, where_now(s), rcpt_now(s), reason);
    return V_DUNNO;
}

/* HOLD and DISCARD: for cleanup with the message (delegate.h), logged in
 * Postfix's words ("<NAME>: CLASS TEXT", or "triggers HOLD action").
 * DISCARD is OK for the list, as in Postfix. */
static enum verdict access_hold_discard(struct session *s, int hold, const char *text,
                                        const char *name, const char *cls)
{
    char why[ADDRESS_MAX + 600];
    snprintf(why, sizeof(why), "<%s>: %s %.400s", name, cls,
             *text ? text : hold ? "triggers HOLD action" : "triggers DISCARD action");
    smtpd_delegate_log(s, hold ? "hold" : "discard", where_now(s), rcpt_now(s), why);
    if (hold)
        smtpd_delegate_hold(s, text);
    else
        smtpd_delegate_discard(s);
    return hold ? V_DUNNO : V_PERMIT;
}

/* REDIRECT user@domain and BCC user@domain: for cleanup with the message
 * (delegate.h), logged as Postfix logs them; evaluation goes on. */
static enum verdict access_redirect_bcc(struct session *s, int redirect, const char *addr,
                                        const char *name, const char *cls)
{
    const char *word = redirect ? "REDIRECT" : "BCC";
    if ((redirect ? smtpd_delegate_redirect : smtpd_delegate_bcc)(s, addr) < 0) {
        msg_warn("access table entry \"%s %.200s\" requires user@domain target; treated as "
                 "DUNNO", word, addr);
        return V_DUNNO;
    }
    char why[ADDRESS_MAX * 2 + 600];
    snprintf(why, sizeof(why), "<%s>: %s triggers %s %s", name, cls, word, addr);
    smtpd_delegate_log(s, redirect ? "redirect" : "bcc", where_now(s), rcpt_now(s), why);
    return V_DUNNO;
}

/* An access(5) result. OK (or a number) permits, REJECT/DEFER and 4NN/5NN
 * refuse, DUNNO and what we do not implement go on. */
static enum verdict access_result(const char *value, const char *name, const char *cls,
                                  struct outcome *o)
{
    while (isspace((unsigned char)*value))
        value++;
    size_t wlen = strcspn(value, " \t");
    const char *text = value + wlen;
    while (isspace((unsigned char)*text))
        text++;
    char dsn[16];
    if ((wlen == 2 && strncasecmp(value, "OK", 2) == 0))
        return V_PERMIT;
    if (wlen == 6 && strncasecmp(value, "REJECT", 6) == 0) {
        leading_dsn(&text, '5', "5.7.1", dsn, sizeof(dsn));
        return reject_with(o, 554, "554 %s <%s>: %s rejected: %s", dsn, name, cls,
                           *text ? text : "Access denied");
    }
    if (wlen == 5 && strncasecmp(value, "DEFER", 5) == 0) {
        leading_dsn(&text, '4', "4.7.1", dsn, sizeof(dsn));
        return reject_with(o, 450, "450 %s <%s>: %s rejected: %s", dsn, name, cls,
                           *text ? text : "Access denied");
    }
    if (wlen == 5 && strncasecmp(value, "DUNNO", 5) == 0)
        return V_DUNNO;
    if (wlen == 6 && strncasecmp(value, "FILTER", 6) == 0)
        return access_filter(o->s, text, name, cls);
    if ((wlen == 8 && strncasecmp(value, "REDIRECT", 8) == 0) ||
        (wlen == 3 && strncasecmp(value, "BCC", 3) == 0))
        return access_redirect_bcc(o->s, wlen == 8, text, name, cls);
    if ((wlen == 4 && strncasecmp(value, "HOLD", 4) == 0) ||
        (wlen == 7 && strncasecmp(value, "DISCARD", 7) == 0))
        return access_hold_discard(o->s, wlen == 4, text, name, cls);
    if (wlen > 0 && strspn(value, "0123456789") == wlen) {
        if (wlen != 3 || (value[0] != '4' && value[0] != '5'))
            return V_PERMIT;   /* numbers other than 4NN/5NN mean OK */
        int code = atoi(value);
        /* An enhanced status code of the right class may lead the text. */
        int a, b, c, used = 0;
        if (sscanf(text, "%1d.%3d.%3d%n", &a, &b, &c, &used) == 3 && a == value[0] - '0' &&
            (text[used] == 0 || text[used] == ' ')) {
            snprintf(dsn, sizeof(dsn), "%d.%d.%d", a, b, c);
            text += used;
            while (*text == ' ')
                text++;
        } else {
            snprintf(dsn, sizeof(dsn), "%c.7.1", value[0]);
        }
        return reject_with(o, code, "%d %s <%s>: %s rejected: %s", code, dsn, name, cls,
                           *text ? text : "Access denied");
    }
    static int warned;
    if (!warned++)
        msg_warn("access table result \"%.40s\" is not supported; treated as DUNNO", value);
    return V_DUNNO;
}

/* Look keys up in order; the first answer decides. A table that could
 * not be opened answers as Postfix's does. */
static enum verdict access_keys(struct lookup_list *table, const char *const *keys, size_t n,
                                const char *name, const char *cls, struct outcome *o)
{
    if (!table)
        return reject_with(o, 451, "451 4.3.5 <%s>: %s rejected: Server configuration error",
                           name, cls);
    for (size_t i = 0; i < n; i++) {
        if (!keys[i] || !*keys[i])
            continue;
        char *value = NULL;
        int rc = lookup_list_get(table, keys[i], &value);
        if (rc == LOOKUP_PENDING)
            return V_PENDING;
        if (rc == LOOKUP_TEMPFAIL)
            return reject_with(o, 451, "451 4.3.0 <%s>: Temporary lookup failure", name);
        if (rc == LOOKUP_FOUND) {
            enum verdict v = access_result(value, name, cls, o);
            free(value);
            return v;
        }
    }
    return V_DUNNO;
}

/* A domain, then its parent domains ("a.b.c", "b.c", "c"). */
static enum verdict access_domain(struct lookup_list *table, const char *domain,
                                  const char *name, const char *cls, struct outcome *o)
{
    for (const char *d = domain; d && *d;) {
        const char *key[1] = {d};
        enum verdict v = access_keys(table, key, 1, name, cls, o);
        if (v != V_DUNNO)
            return v;
        d = strchr(d, '.');
        if (d)
            d++;
    }
    return V_DUNNO;
}

/* Postfix's order for addresses: user@domain, the domain and its parents,
 * then user@. The null sender is looked up as "<>". */
static enum verdict access_address(struct lookup_list *table, const char *addr, const char *name,
                                   const char *cls, struct outcome *o)
{
    if (!*addr) {
        const char *key[1] = {"<>"};
        return access_keys(table, key, 1, "", cls, o);
    }
    const char *key[1] = {addr};
    enum verdict v = access_keys(table, key, 1, name, cls, o);
    const char *domain = address_domain(addr);
    if (v == V_DUNNO && domain)
        v = access_domain(table, domain, name, cls, o);
    if (v == V_DUNNO && domain) {
        char local[ADDRESS_MAX + 1];
        size_t n = (size_t)(domain - addr);   /* the local part and its '@' */
        if (n < sizeof(local)) {
            memcpy(local, addr, n);
            local[n] = 0;
            key[0] = local;
            v = access_keys(table, key, 1, name, cls, o);
        }
    }
    return v;
}

/* As Postfix: the client name and its parent domains (the name is
 * "unknown" when there is none, a key a table may list), then the
 * client address and its shorter IPv4 prefixes ("1.2.3", "1.2", "1"). */
static enum verdict access_client(struct lookup_list *table, const struct session *s,
                                  const char *cls, struct outcome *o)
{
    enum verdict by_name = access_domain(table, s->name, s->namaddr, cls, o);
    if (by_name != V_DUNNO)
        return by_name;
    char net[INET6_ADDRSTRLEN];
    snprintf(net, sizeof(net), "%s", s->addr);
    for (;;) {
        const char *key[1] = {net};
        enum verdict v = access_keys(table, key, 1, s->namaddr, cls, o);
        char *dot = strrchr(net, '.');
        if (v != V_DUNNO || !dot || strchr(s->addr, ':'))
            return v;
        *dot = 0;
    }
}

/* --- DNS --- */

static struct dns_cache_entry *cache_find(struct session *s, enum dns_kind kind, const char *key)
{
    if (!s->dns_cache)
        return NULL;
    for (struct dns_cache_entry *e = s->dns_cache->head; e; e = e->next)
        if (e->kind == kind && strcasecmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void cache_free(struct dns_cache_entry *e)
{
    free(e->addrs);
    free(e);
}

static void cache_put(struct session *s, enum dns_kind kind, const char *key, int result,
                      const char *addrs)
{
    if (!s->dns_cache && !(s->dns_cache = calloc(1, sizeof(*s->dns_cache))))
        return;
    struct dns_cache_entry *e = calloc(1, sizeof(*e) + strlen(key) + 1);
    if (!e)
        return;
    e->kind = kind;
    e->result = result;
    e->addrs = addrs ? strdup(addrs) : NULL;
    memcpy(e->key, key, strlen(key) + 1);
    e->next = s->dns_cache->head;
    s->dns_cache->head = e;
    /* Bounded: drop the oldest entry. */
    if (++s->dns_cache->n > DNS_CACHE_MAX) {
        struct dns_cache_entry **pp = &s->dns_cache->head;
        while ((*pp)->next)
            pp = &(*pp)->next;
        cache_free(*pp);
        *pp = NULL;
        s->dns_cache->n--;
    }
}

static int run_checks(struct session *s, struct outcome *o);

/* An answer arrived: remember it and go on where evaluation stopped. */
static void resume_checks(struct session *s)
{
    if (!s->check)
        return;   /* the evaluation is over (a late table answer) */
    int code = 0;
    char text[ADDRESS_MAX + 256];
    struct outcome o = {&code, text, sizeof(text), s};
    smtpd_restrict_done_fn done = s->check->done;   /* run_checks frees the check */
    if (run_checks(s, &o))
        done(s, code, text);
}

static void rbl_answer(void *ctx, enum dns_status status, const struct dns_addr *addr, size_t n,
                       const char *why)
{
    struct session *s = ctx;
    char list[512] = "";
    size_t off = 0;
    for (size_t i = 0; status == DNS_OK && i < n; i++) {
        char a[INET6_ADDRSTRLEN];
        dns_addr_str(&addr[i], a, sizeof(a));
        int w = snprintf(list + off, sizeof(list) - off, "%s%s", off ? "," : "", a);
        if (w < 0 || off + (size_t)w >= sizeof(list))
            break;
        off += (size_t)w;
    }
    if (status == DNS_TEMPFAIL)
        msg_warn("%s: RBL lookup error: %s", s->check->dns_key, why ? why : "temporary failure");
    s->check->query = NULL;
    cache_put(s, DK_RBL, s->check->dns_key, status == DNS_OK && n > 0, list);
    resume_checks(s);
}

static void domain_addr_answer(void *ctx, enum dns_status status, const struct dns_addr *addr,
                               size_t n, const char *why)
{
    struct session *s = ctx;
    int result = status == DNS_OK && n > 0 ? DOMAIN_FOUND
                 : status == DNS_TEMPFAIL  ? DOMAIN_TEMPFAIL
                                           : DOMAIN_NOTFOUND;
    s->check->query = NULL;
    cache_put(s, DK_SENDER_DOMAIN, s->check->dns_key, result, NULL);
    resume_checks(s);
}

static void domain_mx_answer(void *ctx, enum dns_status status, const struct dns_mx *mx, size_t n,
                             const char *why)
{
    struct session *s = ctx;
    s->check->query = NULL;
    if (status == DNS_NODATA || (status == DNS_OK && n == 0)) {
        /* No MX: the domain still receives mail if it has an address. */
        s->check->query = dns_lookup_addr(smtpd_resolver(), s->check->dns_key,
                                          DNS_INET4 | DNS_INET6, domain_addr_answer, s);
        if (s->check->query)
            return;
        status = DNS_TEMPFAIL;
    }
    int result = status == DNS_OK         ? (n == 1 && !mx[0].host[0] ? DOMAIN_NULLMX : DOMAIN_FOUND)
                 : status == DNS_TEMPFAIL ? DOMAIN_TEMPFAIL
                                          : DOMAIN_NOTFOUND;
    cache_put(s, DK_SENDER_DOMAIN, s->check->dns_key, result, NULL);
    resume_checks(s);
}

/* Start a lookup; V_PENDING, or V_DUNNO when no resolver can be had. */
static enum verdict start_lookup(struct session *s, enum dns_kind kind, const char *name)
{
    struct dns_resolver *r = smtpd_resolver();
    if (!r || strlen(name) >= DNS_NAME_SIZE)
        return V_DUNNO;
    snprintf(s->check->dns_key, sizeof(s->check->dns_key), "%s", name);
    s->check->dns_kind = kind;
    s->check->query = kind == DK_RBL
                          ? dns_lookup_addr(r, name, DNS_INET4, rbl_answer, s)
                          : dns_lookup_mx(r, name, domain_mx_answer, s);
    return s->check->query ? V_PENDING : V_DUNNO;
}

/* reject_rbl_client domain[=d.d.d.d]: only the given answer counts when
 * one is given. */
static enum verdict rbl_client(struct session *s, const char *arg, struct outcome *o)
{
    char domain[DNS_NAME_SIZE], name[QNAME_MAX];
    const char *eq = strchr(arg, '=');
    size_t dlen = eq ? (size_t)(eq - arg) : strlen(arg);
    if (dlen == 0 || dlen >= sizeof(domain))
        return V_DUNNO;
    memcpy(domain, arg, dlen);
    domain[dlen] = 0;
    struct dns_addr client;
    if (dns_addr_parse(s->addr, &client) < 0 ||
        dns_reverse_name(&client, domain, name, sizeof(name)) < 0)
        return V_DUNNO;
    struct dns_cache_entry *e = cache_find(s, DK_RBL, name);
    if (!e)
        return start_lookup(s, DK_RBL, name);
    if (!e->result)
        return V_DUNNO;
    if (eq) {
        int match = 0;
        char list[512];
        snprintf(list, sizeof(list), "%s", e->addrs ? e->addrs : "");
        char *save = NULL;
        for (char *a = strtok_r(list, ",", &save); a && !match; a = strtok_r(NULL, ",", &save))
            match = strcmp(a, eq + 1) == 0;
        if (!match)
            return V_DUNNO;
    }
    return reject_with(o, 554, "554 5.7.1 Service unavailable; Client host [%s] blocked using %s",
                       s->addr, domain);
}

/* reject_unknown_sender_domain and reject_unknown_recipient_domain: no MX
 * and no address, or a null MX. quoted is the address as the client gave
 * it, role "Sender" or "Recipient", dsn the x.1.y detail Postfix uses. */
static enum verdict unknown_domain(struct session *s, const char *domain, const char *quoted,
                                   const char *role, const char *dsn, struct outcome *o)
{
    if (!domain || !*domain || domain[0] == '[')
        return V_DUNNO;
    struct dns_cache_entry *e = cache_find(s, DK_SENDER_DOMAIN, domain);
    if (!e)
        return start_lookup(s, DK_SENDER_DOMAIN, domain);
    switch (e->result) {
    case DOMAIN_NOTFOUND:
    case DOMAIN_TEMPFAIL:
        return reject_with(o, 450, "450 4.%s <%s>: %s address rejected: Domain not found", dsn,
                           quoted, role);
    case DOMAIN_NULLMX:
        return reject_with(o, 556,
                           "556 5.7.27 <%s>: %s address rejected: Domain %s does not accept "
                           "mail (nullMX)",
                           quoted, role, domain);
    default:
        return V_DUNNO;
    }
}

static enum verdict unknown_sender_domain(struct session *s, struct outcome *o)
{
    return unknown_domain(s, address_domain(s->check->sender_addr), s->check->sender, "Sender",
                          "1.8", o);
}

/* As Postfix, only for a domain we are not the final destination of. */
static enum verdict unknown_recipient_domain(struct session *s, struct outcome *o)
{
    const char *domain = address_domain(s->check->rcpt_addr);
    if (!domain || domain_is_local(domain) || virtual_alias_domain(domain) == 1 ||
        virtual_mailbox_domain(domain) == 1)
        return V_DUNNO;
    return unknown_domain(s, domain, s->check->rcpt, "Recipient", "1.2", o);
}

/* --- the client's names --- */

/* reject_unknown_client_hostname (no name that resolves back to the
 * address) and reject_unknown_reverse_client_hostname (no PTR name at
 * all), with Postfix's codes: unknown_client_reject_code, 450 whatever
 * it says when the lookup failed for the time being. */
static enum verdict unknown_client(struct session *s, int reverse, struct outcome *o)
{
    int status = reverse ? s->reverse_name_status : s->name_status;
    if (status == SMTPD_PEER_OK)
        return V_DUNNO;
    int code = status >= SMTPD_PEER_PERM ? (int)var.unknown_client_reject_code : 450;
    return reject_with(o, code, "%d %d.7.%s Client host rejected: cannot find your %shostname, [%s]",
                       code, code / 100, reverse ? "1" : "25", reverse ? "reverse " : "", s->addr);
}

/* --- the other restrictions --- */

static int fqdn(const char *domain)
{
    return domain && (domain[0] == '[' || strchr(domain, '.'));
}

/* A HELO name is a host name or an address literal. */
static int valid_hostname(const char *name)
{
    if (name[0] == '[')
        return name[strlen(name) - 1] == ']';
    return dns_valid_name(name);
}

/* Whether user is one of the owners ("a, b c") the login map gave. */
static int owner_listed(const char *owners, const char *user)
{
    const char *p = owners;
    char tok[SASL_NAME_MAX];
    while (next_token(&p, tok, sizeof(tok)))
        if (strcasecmp(tok, user) == 0)
            return 1;
    return 0;
}

/* reject_sender_login_mismatch: an authenticated client may only use a
 * sender address it owns; an unauthenticated one may not use a sender
 * address that someone owns. The variants apply it to authenticated or
 * unauthenticated clients only, or to senders the map lists only. */
static enum verdict login_mismatch(struct session *s, enum r_kind kind, struct outcome *o)
{
    const char *sender = s->check->sender_addr;
    if (!*sender || (kind == R_AUTH_LOGIN_MISMATCH && !s->sasl_user) ||
        (kind == R_UNAUTH_LOGIN_MISMATCH && s->sasl_user))
        return V_DUNNO;
    if (smtpd_cfg.sender_login_maps_broken)
        return reject_with(o, 451,
                           "451 4.3.5 <%s>: Sender address rejected: Server configuration error",
                           s->check->sender);
    if (!smtpd_cfg.sender_login_maps) {
        static int warned;
        if (!warned++)
            msg_warn("reject_sender_login_mismatch: smtpd_sender_login_maps is not set");
        return V_DUNNO;
    }
    char *owners = NULL;
    int rc = lookup_list_address(smtpd_cfg.sender_login_maps, sender,
                                 domain_is_local(address_domain(sender)),
                                 smtpd_cfg.recipient_delimiter, &owners);
    if (rc == LOOKUP_PENDING)
        return V_PENDING;
    if (rc == LOOKUP_TEMPFAIL)
        return reject_with(o, 451, "451 4.3.0 <%s>: Temporary lookup failure", s->check->sender);
    int owned = rc == LOOKUP_FOUND && s->sasl_user && owner_listed(owners, s->sasl_user);
    free(owners);
    if (kind == R_KNOWN_LOGIN_MISMATCH && rc != LOOKUP_FOUND)
        return V_DUNNO;
    if (s->sasl_user && !owned)
        return reject_with(o, 553, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s",
                           s->check->sender, s->sasl_user);
    if (!s->sasl_user && rc == LOOKUP_FOUND)
        return reject_with(o, 553, "553 5.7.1 <%s>: Sender address rejected: not logged in",
                           s->check->sender);
    return V_DUNNO;
}

/* A recipient table that cannot answer (its database down): Postfix's
 * reply, without the "address rejected" of the other refusals (compared
 * with Postfix 3.7 for local_recipient_maps and virtual_mailbox_maps). */
static enum verdict lookup_failure(const char *quoted, struct outcome *o)
{
    return reject_with(o, 451, "451 4.3.0 <%s>: Temporary lookup failure", quoted);
}

/* An address of a hosted domain (virtual alias or virtual mailbox class,
 * lib/mail/virtual_mailbox.h) must exist. role and dsn as unlisted(). */
static enum verdict unlisted_virtual(const char *addr, const char *quoted, const char *role,
                                     const char *dsn, struct outcome *o)
{
    const char *table;
    int rc = virtual_recipient_check(addr, &table);
    if (rc == LOOKUP_PENDING)
        return V_PENDING;
    if (rc == LOOKUP_NOTFOUND)
        return reject_with(o, 550, "550 5.%s <%s>: %s address rejected: User unknown in %s", dsn,
                           quoted, role, table);
    if (rc == LOOKUP_TEMPFAIL)
        return lookup_failure(quoted, o);
    return V_DUNNO;
}

/* reject_unlisted_recipient and reject_unlisted_sender: an address of a
 * domain we are the final destination of must exist (a virtual alias
 * counts); Postfix's detail is 1.1 for a recipient, 1.0 for a sender. */
static enum verdict unlisted(const char *addr, const char *quoted, const char *role,
                             const char *dsn, struct outcome *o)
{
    if (!*addr)
        return V_DUNNO;
    if (!domain_is_local(address_domain(addr)))
        return unlisted_virtual(addr, quoted, role, dsn, o);
    int rc = local_recipient_check(addr);
    if (rc == LOOKUP_NOTFOUND) {
        int listed = virtual_alias_listed(addr);
        rc = listed == 1 ? LOOKUP_FOUND : listed == LOOKUP_PENDING ? listed : rc;
    }
    if (rc == LOOKUP_PENDING)
        return V_PENDING;
    if (rc == LOOKUP_NOTFOUND)
        return reject_with(o, 550,
                           "550 5.%s <%s>: %s address rejected: User unknown in local "
                           "recipient table",
                           dsn, quoted, role);
    if (rc == LOOKUP_TEMPFAIL)
        return lookup_failure(quoted, o);
    return V_DUNNO;
}

static enum verdict unlisted_recipient(struct session *s, struct outcome *o)
{
    if (receive_override_mask() & RECEIVE_NO_UNKNOWN_RCPT_CHECKS)
        return V_DUNNO;   /* a reinjection service: the first smtpd checked */
    return unlisted(s->check->rcpt_addr, s->check->rcpt, "Recipient", "1.1", o);
}

/* --- policy services --- */

/* A 5xx reject after DEFER_IF_REJECT becomes that deferral. */
static void defer_instead_of_reject(const struct smtpd_check *c, struct outcome *o)
{
    if (c->defer_if_reject_code && *o->code >= 500)
        reject_with(o, c->defer_if_reject_code, "%s", c->defer_if_reject);
}

/* One attribute line; a value never carries a line end into the request. */
static void put_attr(struct evbuffer *b, const char *name, const char *value)
{
    evbuffer_add_printf(b, "%s=", name);
    for (const char *p = value ? value : ""; *p; p++)
        if (*p != '\n' && *p != '\r')
            evbuffer_add(b, p, 1);
    evbuffer_add(b, "\n", 1);
}

static void put_server_address(struct evbuffer *b, const struct session *s)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    char host[INET6_ADDRSTRLEN] = "", port[8] = "";
    int fd = s->bev ? (int)bufferevent_getfd(s->bev) : s->fd;
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
            snprintf(port, sizeof(port), "%u", ntohs(in->sin_port));
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
            snprintf(port, sizeof(port), "%u", ntohs(in6->sin6_port));
        }
    }
    put_attr(b, "server_address", host);
    put_attr(b, "server_port", port);
}

/* The TLS facts of the session; empty and 0 without TLS, as Postfix. */
static void put_encryption(struct evbuffer *b, const struct session *s)
{
    SSL *ssl = s->tls && s->bev ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    char bits[16] = "0";
    if (ssl)
        snprintf(bits, sizeof(bits), "%d", SSL_get_cipher_bits(ssl, NULL));
    put_attr(b, "encryption_protocol", ssl ? SSL_get_version(ssl) : "");
    put_attr(b, "encryption_cipher", ssl ? SSL_get_cipher_name(ssl) : "");
    put_attr(b, "encryption_keysize", bits);
}

/* Postfix's request attributes, as smtpd knows them at RCPT time. The
 * queue id once cleanup has named the file (the stream opens at the first
 * accepted recipient, so from the second RCPT on, and at DATA and the end
 * of the message), else empty; size is what MAIL announced; client
 * certificates are not passed on (ccert_* empty). */
static char *policy_request_text(const struct session *s, const struct policy_service *svc)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return NULL;
    char num[64];
    put_attr(b, "request", "smtpd_access_policy");
    int at_eod = s->check->end_stage == STAGE_COUNT;
    int at_data = at_eod || s->check->end_stage == STAGE_EOD;
    put_attr(b, "protocol_state", at_eod ? "END-OF-MESSAGE" : at_data ? "DATA" : "RCPT");
    put_attr(b, "protocol_name", s->esmtp ? "ESMTP" : "SMTP");
    put_attr(b, "helo_name", s->helo);
    put_attr(b, "queue_id", smtpd_tx_queue_id(s));
    put_attr(b, "sender", s->check->sender_addr);
    put_attr(b, "recipient", s->check->rcpt_addr);
    snprintf(num, sizeof(num), "%ld", at_data ? s->check->recipient_count : 0L);
    put_attr(b, "recipient_count", num);
    put_attr(b, "client_address", s->addr);
    put_attr(b, "client_name", s->name);
    put_attr(b, "reverse_client_name", s->reverse_name);
    snprintf(num, sizeof(num), "%lx.%lx.%u", (unsigned long)getpid(),
             (unsigned long)(uintptr_t)s, s->total[C_MAIL]);
    put_attr(b, "instance", num);
    put_attr(b, "sasl_method", s->sasl_user ? s->sasl_method : "");
    put_attr(b, "sasl_username", s->sasl_user);
    put_attr(b, "sasl_sender", "");
    /* At the end of the message its size, as Postfix; before, MAIL's SIZE=. */
    snprintf(num, sizeof(num), "%lld",
             at_eod ? smtpd_tx_content_size(s) : smtpd_tx_declared_size(s));
    put_attr(b, "size", num);
    static const char *const empty[] = {"ccert_subject", "ccert_issuer", "ccert_fingerprint",
                                        "ccert_pubkey_fingerprint", "etrn_domain", "stress"};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
        put_attr(b, empty[i], "");
    put_encryption(b, s);
    put_server_address(b, s);
    put_attr(b, "policy_context", policy_service_context(svc));
    evbuffer_add(b, "\n", 1);
    size_t len = evbuffer_get_length(b);
    char *text = malloc(len + 1);
    if (text) {
        evbuffer_remove(b, text, len);
        text[len] = 0;
    }
    evbuffer_free(b);
    return text;
}

static void policy_answer(void *ctx, const char *action)
{
    struct session *s = ctx;
    s->check->policy_req = NULL;
    s->check->policy_action = strdup(action);
    if (!s->check->policy_action) {
        int code = 451;
        char text[] = "451 4.3.0 Error: out of memory";
        smtpd_restrict_done_fn done = s->check->done;
        smtpd_restrict_cancel(s);
        done(s, code, text);
        return;
    }
    resume_checks(s);
}

/* Log WARN and INFO answers as Postfix does, then go on. */
static void log_policy_note(struct session *s, const char *what, const char *text)
{
    smtpd_delegate_log(s, what, where_now(s), rcpt_now(s), text);
}

/* Hold a deferral text in the form the reply would take. */
static void hold_deferral(struct session *s, enum stage st, const char *text, int *code,
                          char *buf, size_t len)
{
    char dsn[16];
    leading_dsn(&text, '4', "4.7.1", dsn, sizeof(dsn));
    *code = 450;
    snprintf(buf, len, "450 %s <%s>: %s rejected: %.400s", dsn, reply_name(s, st),
             stages[st].reply_class, *text ? text : "Service unavailable");
}

/* PREPEND: a header for the message, if it is one (name, colon, no line
 * end: the attribute parser let none through). A bad one is skipped with
 * Postfix's warning. */
static enum verdict prepend_header(struct session *s, const struct restriction *r,
                                   const char *action, const char *header)
{
    size_t colon = header_name_len(header, strlen(header));
    if (colon == 0 || header_name_trim(header, colon) == 0) {
        msg_warn("access table %s entry \"%.200s\" requires header: text",
                 policy_service_endpoint(r->policy), action);
        return V_DUNNO;
    }
    if (smtpd_tx_prepend(s, header) < 0)
        msg_warn("PREPEND \"%.100s\": over %d bytes of prepended headers; dropped", header,
                 PREPEND_MAX);
    return V_DUNNO;
}

/* The actions of a policy answer that are more than access(5) results. */
static enum verdict policy_action(struct session *s, enum stage st,
                                  const struct restriction *r, const char *action,
                                  struct outcome *o)
{
    while (isspace((unsigned char)*action))
        action++;
    size_t wlen = strcspn(action, " \t");
    const char *text = action + wlen;
    while (isspace((unsigned char)*text))
        text++;
    struct smtpd_check *c = s->check;
#define IS(word) (wlen == strlen(word) && strncasecmp(action, word, wlen) == 0)
    if (IS("DEFER_IF_PERMIT")) {
        hold_deferral(s, st, text, &c->defer_if_permit_code, c->defer_if_permit,
                      sizeof(c->defer_if_permit));
        return V_DUNNO;
    }
    if (IS("DEFER_IF_REJECT")) {
        hold_deferral(s, st, text, &c->defer_if_reject_code, c->defer_if_reject,
                      sizeof(c->defer_if_reject));
        return V_DUNNO;
    }
    if (IS("WARN") || IS("INFO")) {
        log_policy_note(s, IS("WARN") ? "warn" : "info", text);
        return V_DUNNO;
    }
    if (IS("PREPEND"))
        return prepend_header(s, r, action, text);
    if (IS("REPLACE") || IS("DELAY")) {
        char word[16];   /* named as Postfix's documentation names it */
        for (size_t i = 0; i <= wlen; i++)
            word[i] = i < wlen ? (char)toupper((unsigned char)action[i]) : 0;
        msg_warn("policy action \"%s\" is not implemented in Postern; treated as DUNNO", word);
        return V_DUNNO;
    }
#undef IS
    return access_result(action, reply_name(s, st), stages[st].reply_class, o);
}

/* check_policy_service: ask, wait for the answer, then act on it. */
static enum verdict policy_check(struct session *s, enum stage st, const struct restriction *r,
                                 struct outcome *o)
{
    struct smtpd_check *c = s->check;
    if (c->policy_action) {
        enum verdict v = policy_action(s, st, r, c->policy_action, o);
        free(c->policy_action);
        c->policy_action = NULL;
        return v;
    }
    char *text = policy_request_text(s, r->policy);
    c->policy_req = text ? policy_query(r->policy, text, policy_answer, s) : NULL;
    free(text);
    if (!c->policy_req)
        return reject_with(o, 451, "451 4.3.0 Error: out of memory");
    return V_PENDING;
}

static enum verdict evaluate(struct session *s, enum stage st, const struct restriction *r,
                             struct outcome *o)
{
    const char *cls = stages[st].reply_class;
    const char *name = reply_name(s, st);
    const char *sender = s->check->sender_addr, *rcpt = s->check->rcpt_addr;
    int d;
    switch (r->kind) {
    case R_PERMIT:
        return V_PERMIT;
    case R_DUNNO:
        return V_DUNNO;
    case R_REJECT:
        return reject_with(o, 554, "554 5.7.1 <%s>: %s rejected: Access denied", name, cls);
    case R_DEFER:
        return reject_with(o, 450, "450 4.3.2 <%s>: %s rejected: Try again later", name, cls);
    case R_PERMIT_MYNETWORKS:
        return s->in_mynetworks ? V_PERMIT : V_DUNNO;
    case R_PERMIT_SASL:
        return s->sasl_user ? V_PERMIT : V_DUNNO;
    case R_PERMIT_AUTH_DEST:
        if ((d = destination_unknown(authorized_destination(rcpt), s, o)) >= 0)
            return d;
        return authorized_destination(rcpt) ? V_PERMIT : V_DUNNO;
    case R_REJECT_UNAUTH_DEST:
        if ((d = destination_unknown(authorized_destination(rcpt), s, o)) >= 0)
            return d;
        if (authorized_destination(rcpt))
            return V_DUNNO;
        return reject_with(o, 554, "554 5.7.1 <%s>: Relay access denied", s->check->rcpt);
    case R_DEFER_UNAUTH_DEST:
        if ((d = destination_unknown(authorized_destination(rcpt), s, o)) >= 0)
            return d;
        if (authorized_destination(rcpt))
            return V_DUNNO;
        return reject_with(o, 450, "450 4.7.1 <%s>: Relay access denied", s->check->rcpt);
    case R_CHECK_CLIENT:
        return access_client(r->table, s, "Client host", o);
    case R_CHECK_HELO:
        if (!s->helo[0])
            return V_DUNNO;
        return access_domain(r->table, s->helo, s->helo, "Helo command", o);
    case R_CHECK_SENDER:
        return access_address(r->table, sender, s->check->sender, "Sender address", o);
    case R_CHECK_RECIPIENT:
        return access_address(r->table, rcpt, s->check->rcpt, "Recipient address", o);
    case R_UNKNOWN_SENDER_DOMAIN:
        return unknown_sender_domain(s, o);
    case R_NON_FQDN_SENDER:
        if (!*sender || fqdn(address_domain(sender)))
            return V_DUNNO;
        return reject_with(o, 504,
                           "504 5.5.2 <%s>: Sender address rejected: need fully-qualified address",
                           s->check->sender);
    case R_NON_FQDN_RECIPIENT:
        if (fqdn(address_domain(rcpt)))
            return V_DUNNO;
        return reject_with(
            o, 504, "504 5.5.2 <%s>: Recipient address rejected: need fully-qualified address",
            s->check->rcpt);
    case R_NON_FQDN_HELO:
        if (!s->helo[0] || fqdn(s->helo))
            return V_DUNNO;
        return reject_with(
            o, 504, "504 5.5.2 <%s>: Helo command rejected: need fully-qualified hostname",
            s->helo);
    case R_INVALID_HELO:
        if (!s->helo[0] || valid_hostname(s->helo))
            return V_DUNNO;
        return reject_with(o, 501, "501 5.5.2 <%s>: Helo command rejected: Invalid name",
                           s->helo);
    case R_RBL_CLIENT:
        return rbl_client(s, r->arg, o);
    case R_LOGIN_MISMATCH:
    case R_KNOWN_LOGIN_MISMATCH:
    case R_AUTH_LOGIN_MISMATCH:
    case R_UNAUTH_LOGIN_MISMATCH:
        return login_mismatch(s, r->kind, o);
    case R_UNLISTED_RECIPIENT:
        return unlisted_recipient(s, o);
    case R_UNLISTED_SENDER:
        return unlisted(sender, s->check->sender, "Sender", "1.0", o);
    case R_UNKNOWN_RCPT_DOMAIN:
        return unknown_recipient_domain(s, o);
    case R_UNKNOWN_CLIENT:
    case R_UNKNOWN_REVERSE_CLIENT:
        return unknown_client(s, r->kind == R_UNKNOWN_REVERSE_CLIENT, o);
    case R_UNAUTH_PIPELINING:   /* the session's flag, set in session.c */
        if (!s->ill_pipelining)
            return V_DUNNO;
        return reject_with(o, 503,
                           "503 5.5.0 <%s>: %s rejected: Improper use of SMTP command pipelining",
                           name, cls);
    case R_POLICY:
        return policy_check(s, st, r, o);
    case R_CONFIG_ERROR:
        return reject_with(o, 451, "%s", SERVER_CONFIG_ERROR);
    }
    return V_DUNNO;
}

static void resume_after_lookup(void *owner)
{
    resume_checks(owner);
}

static int run_checks_now(struct session *s, struct outcome *o);

/* Evaluate from where s->check stands. 1 when decided (*o->code 0 means
 * accepted), 0 while a DNS answer or a table lookup (lookup_async.h:
 * tables that wait on a server are asked on worker threads) is awaited. */
static int run_checks(struct session *s, struct outcome *o)
{
    smtpd_lookup_async_begin(s, resume_after_lookup);
    int decided = run_checks_now(s, o);
    smtpd_lookup_async_end();
    return decided;
}

static int run_checks_now(struct session *s, struct outcome *o)
{
    struct smtpd_check *c = s->check;
    *o->code = 0;
    o->text[0] = 0;
    for (; c->stage < c->end_stage; c->stage++, c->item = 0) {
        if (c->stage == STAGE_RELAY && relay_unguarded) {
            reject_with(o, 451, "%s", SERVER_CONFIG_ERROR);
            smtpd_restrict_cancel(s);
            return 1;
        }
        for (; c->item < lists[c->stage].n; c->item++) {
            enum verdict v = evaluate(s, (enum stage)c->stage, &lists[c->stage].items[c->item], o);
            if (v == V_PENDING)
                return 0;
            if (v == V_REJECT) {
                defer_instead_of_reject(c, o);
                smtpd_restrict_cancel(s);
                return 1;
            }
            if (v == V_PERMIT)
                break;
        }
    }
    if (c->end_stage == STAGE_DATA) {
        enum verdict v = unlisted_recipient(s, o);
        if (v == V_PENDING)
            return 0;
        if (v == V_REJECT)
            defer_instead_of_reject(c, o);
    }
    if (!*o->code && c->defer_if_permit_code)
        reject_with(o, c->defer_if_permit_code, "%s", c->defer_if_permit);
    smtpd_restrict_cancel(s);
    return 1;
}

static void quote_for_reply(const char *addr, char *out, size_t outlen)
{
    if (address_quote(addr, out, outlen) < 0)
        snprintf(out, outlen, "%s", addr);
}

/* Start an evaluation of the lists from first to before end. */
static int start_checks(struct session *s, const char *sender, const char *rcpt, int first,
                        int end, long nrcpt, smtpd_restrict_done_fn done, int *code,
                        char *text, size_t textlen)
{
    if (smtpd_cfg.stand_alone) {
        *code = 0;
        text[0] = 0;
        return 1;
    }
    if (!s->check && !(s->check = calloc(1, sizeof(*s->check)))) {
        *code = 451;
        snprintf(text, textlen, "451 4.3.0 Error: out of memory");
        return 1;
    }
    s->check->done = done;
    s->check->sender_addr = sender;
    s->check->rcpt_addr = rcpt;
    s->check->stage = first;
    s->check->end_stage = end;
    s->check->recipient_count = nrcpt;
    s->check->item = 0;
    s->check->defer_if_permit_code = s->check->defer_if_reject_code = 0;
    quote_for_reply(sender, s->check->sender, sizeof(s->check->sender));
    quote_for_reply(rcpt, s->check->rcpt, sizeof(s->check->rcpt));
    struct outcome o = {code, text, textlen, s};
    return run_checks(s, &o);
}

int smtpd_restrict_rcpt(struct session *s, const char *sender, const char *rcpt,
                        smtpd_restrict_done_fn done, int *code, char *text, size_t textlen)
{
    return start_checks(s, sender, rcpt, STAGE_CLIENT, STAGE_DATA, 0, done, code, text,
                        textlen);
}

int smtpd_restrict_data(struct session *s, const char *sender, long recipient_count,
                        smtpd_restrict_done_fn done, int *code, char *text, size_t textlen)
{
    if (lists[STAGE_DATA].n == 0) {
        *code = 0;
        text[0] = 0;
        return 1;
    }
    return start_checks(s, sender, "", STAGE_DATA, STAGE_EOD, recipient_count, done, code,
                        text, textlen);
}

int smtpd_restrict_eod(struct session *s, const char *sender, const char *rcpt,
                       long recipient_count, smtpd_restrict_done_fn done, int *code, char *text,
                       size_t textlen)
{
    if (lists[STAGE_EOD].n == 0) {
        *code = 0;
        text[0] = 0;
        return 1;
    }
    return start_checks(s, sender, rcpt, STAGE_EOD, STAGE_COUNT, recipient_count, done, code,
                        text, textlen);
}

int smtpd_restrict_asks_policy(int at_data)
{
    int first = at_data ? STAGE_DATA : STAGE_CLIENT, end = at_data ? STAGE_EOD : STAGE_DATA;
    if (smtpd_cfg.stand_alone)
        return 0;   /* no restrictions, and postdrop names no file */
    for (int st = first; st < end; st++)
        for (size_t i = 0; i < lists[st].n; i++)
            if (lists[st].items[i].kind == R_POLICY)
                return 1;
    return 0;
}

void smtpd_restrict_cancel(struct session *s)
{
    if (!s->check)
        return;
    if (s->check->query)
        dns_cancel(s->check->query);
    policy_cancel(s->check->policy_req);
    free(s->check->policy_action);
    free(s->check);
    s->check = NULL;
    smtpd_lookup_async_reset(s);
}

void smtpd_restrict_session_end(struct session *s)
{
    smtpd_restrict_cancel(s);
    smtpd_lookup_async_forget(s);
    if (!s->dns_cache)
        return;
    struct dns_cache_entry *e = s->dns_cache->head;
    while (e) {
        struct dns_cache_entry *next = e->next;
        cache_free(e);
        e = next;
    }
    free(s->dns_cache);
    s->dns_cache = NULL;
}
