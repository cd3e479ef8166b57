/* auth.c - the AUTH command (RFC 4954, auth.h) against one of two SASL
 * servers (smtpd_sasl_type):
 *   cyrus    (Postfix's default name) Postern's own table of user ->
 *            crypt(3) hash, smtpd_sasl_password_maps, with PLAIN and LOGIN
 *            (lib/util/sasl.h), checked here at once; Cyrus itself is not
 *            used;
 *   dovecot  Dovecot's auth server (auth_dovecot.c), whose mechanisms are
 *            passed through and whose answers come later: the session
 *            waits in ST_WAIT_AUTH and smtpd_auth_answer resumes it.
 * Both end in smtpd_auth_answer, so replies and log lines are the same
 * (Postfix's, with its Dovecot texts).
 *
 * EHLO offers the server's mechanisms less those that
 * smtpd_sasl_security_options (smtpd_sasl_tls_security_options under TLS)
 * exclude, and only over TLS unless smtpd_tls_auth_only = no. A failed
 * attempt is answered after smtpd_error_sleep_time, on a timer
 * (session_pause), so guessing is slow for the client while the event loop
 * serves everyone else; after smtpd_sasl_auth_failure_limit failures the
 * session ends. A temporary failure (the server away, slow or broken) is
 * 454 and neither counts nor waits.
 */
#include "auth.h"
#include "auth_dovecot.h"
#include "session.h"
#include "smtpd.h"

#include "auth_client.h"
#include "config.h"
#include "log.h"
#include "sasl.h"
#include "service.h"
#include "strlist.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHALLENGE_MAX 64
#define MECH_LIST_MAX 512
#define NO_REASON "(reason unavailable)"

/* The own table's mechanisms: both send the password as it is typed. */
static const struct auth_mech table_mechs[] = {
    {"PLAIN", AUTH_MECH_PLAINTEXT},
    {"LOGIN", AUTH_MECH_PLAINTEXT},
};

/* --- settings --------------------------------------------------------- */

static unsigned security_options(const char *value, const char *param)
{
    static const struct {
        const char *word;
        unsigned bit;
    } words[] = {
        {"noanonymous", SMTPD_SASL_SEC_NOANONYMOUS},
        {"noplaintext", SMTPD_SASL_SEC_NOPLAINTEXT},
        {"noactive", SMTPD_SASL_SEC_NOACTIVE},
        {"nodictionary", SMTPD_SASL_SEC_NODICTIONARY},
        {"mutual_auth", SMTPD_SASL_SEC_MUTUAL_AUTH},
        {"forward_secrecy", SMTPD_SASL_SEC_FORWARD_SECRECY},
    };
    unsigned bits = 0;
    char word[64];
    int rc;
    while ((rc = strlist_next(&value, word, sizeof(word))) != 0) {
        size_t i = 0;
        while (rc > 0 && i < sizeof(words) / sizeof(words[0]) && strcasecmp(word, words[i].word))
            i++;
        if (rc < 0 || i == sizeof(words) / sizeof(words[0]))
            msg_fatal("%s: unknown SASL security option \"%s\"", param, rc < 0 ? "" : word);
        bits |= words[i].bit;
    }
    return bits;
}

void smtpd_auth_settings(void)
{
    smtpd_cfg.sasl_type = strcasecmp(var.smtpd_sasl_type, "dovecot") == 0 ? SMTPD_SASL_DOVECOT
                                                                          : SMTPD_SASL_TABLE;
    if (smtpd_cfg.sasl_enable && smtpd_cfg.sasl_type == SMTPD_SASL_TABLE &&
        strcasecmp(var.smtpd_sasl_type, "cyrus") != 0)
        msg_fatal("smtpd_sasl_type: unsupported SASL server implementation \"%s\" "
                  "(cyrus: Postern's own password table, or dovecot)", var.smtpd_sasl_type);
    smtpd_cfg.sasl_security = security_options(var.smtpd_sasl_security_options,
                                               "smtpd_sasl_security_options");
    smtpd_cfg.sasl_tls_security = security_options(var.smtpd_sasl_tls_security_options,
                                                   "smtpd_sasl_tls_security_options");
    smtpd_cfg.sasl_auth_header = var.smtpd_sasl_authenticated_header;
    smtpd_cfg.broken_sasl_clients = var.broken_sasl_auth_clients;
    smtpd_cfg.sasl_local_domain = var.smtpd_sasl_local_domain;
    if (smtpd_cfg.sasl_enable && smtpd_cfg.sasl_type == SMTPD_SASL_DOVECOT)
        smtpd_dovecot_settings();
}

void smtpd_auth_init(void)
{
    if (smtpd_cfg.sasl_enable && smtpd_cfg.sasl_type == SMTPD_SASL_DOVECOT)
        smtpd_dovecot_init();
}

/* --- mechanisms -------------------------------------------------------- */

static size_t server_mechs(const struct auth_mech **mechs)
{
    if (smtpd_cfg.sasl_type == SMTPD_SASL_DOVECOT)
        return smtpd_dovecot_mechs(mechs);
    *mechs = table_mechs;
    return sizeof(table_mechs) / sizeof(table_mechs[0]);
}

/* Whether the session's security options let m be offered. */
static int mech_allowed(const struct session *s, const struct auth_mech *m)
{
    unsigned sec = s->tls ? smtpd_cfg.sasl_tls_security : smtpd_cfg.sasl_security;
    unsigned f = m->flags;
    if (f & AUTH_MECH_PRIVATE)
        return 0;
    if (((sec & SMTPD_SASL_SEC_NOANONYMOUS) && (f & AUTH_MECH_ANONYMOUS)) ||
        ((sec & SMTPD_SASL_SEC_NOPLAINTEXT) && (f & AUTH_MECH_PLAINTEXT)) ||
        ((sec & SMTPD_SASL_SEC_NOACTIVE) && (f & AUTH_MECH_ACTIVE)) ||
        ((sec & SMTPD_SASL_SEC_NODICTIONARY) && (f & AUTH_MECH_DICTIONARY)))
        return 0;
    if (((sec & SMTPD_SASL_SEC_MUTUAL_AUTH) && !(f & AUTH_MECH_MUTUAL_AUTH)) ||
        ((sec & SMTPD_SASL_SEC_FORWARD_SECRECY) && !(f & AUTH_MECH_FORWARD_SECRECY)))
        return 0;
    return 1;
}

static int mech_offered(const struct session *s, const char *name)
{
    const struct auth_mech *m;
    size_t n = server_mechs(&m);
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(m[i].name, name) == 0)
            return mech_allowed(s, &m[i]);
    return 0;
}

/* "PLAIN LOGIN ..." into out; 0 when nothing is offered. */
static size_t offered_list(const struct session *s, char *out, size_t len)
{
    const struct auth_mech *m;
    size_t n = server_mechs(&m), used = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mech_allowed(s, &m[i]) || used + strlen(m[i].name) + 2 > len)
            continue;
        used += (size_t)snprintf(out + used, len - used, "%s%s", used ? " " : "", m[i].name);
    }
    return used;
}

int smtpd_auth_offered(const struct session *s)
{
    return smtpd_cfg.sasl_enable && (s->tls || !smtpd_cfg.tls_auth_only);
}

int smtpd_auth_ehlo_keywords(const struct session *s, char *kw, size_t kwlen, char *old,
                             size_t oldlen)
{
    char list[MECH_LIST_MAX];
    old[0] = 0;
    if (!smtpd_auth_offered(s) || offered_list(s, list, sizeof(list)) == 0)
        return 0;
    snprintf(kw, kwlen, "AUTH %s", list);
    if (smtpd_cfg.broken_sasl_clients)
        snprintf(old, oldlen, "AUTH=%s", list);
    return 1;
}

int smtpd_auth_ehlo_wait(struct session *s)
{
    if (!smtpd_auth_offered(s) || smtpd_cfg.sasl_type != SMTPD_SASL_DOVECOT ||
        smtpd_dovecot_known())
        return 0;
    s->state = ST_WAIT_AUTH;
    if (smtpd_dovecot_wait(s))
        return 1;
    s->state = ST_COMMAND;
    return 0;
}

/* --- outcomes ----------------------------------------------------------- */

static void end_exchange(struct session *s)
{
    if (s->sasl) {
        sasl_exchange_clear(s->sasl);
        free(s->sasl);
        s->sasl = NULL;
    }
    smtpd_dovecot_abort(s);
    s->auth_final = 0;
    if (s->state == ST_AUTH)
        s->state = ST_COMMAND;
}

void smtpd_auth_reset(struct session *s)
{
    end_exchange(s);
    free(s->sasl_user);
    s->sasl_user = NULL;
    s->sasl_method[0] = 0;
}

static void log_failure(const struct session *s, const char *reason, const char *user)
{
    msg_warn("%s: SASL %s authentication failed: %s, sasl_username=%s", s->namaddr,
             s->sasl_method, reason, user && *user ? user : "(unavailable)");
}

static void auth_failed(struct session *s, const char *reason, const char *user)
{
    if (!reason || !*reason)
        reason = NO_REASON;
    log_failure(s, reason, user);
    end_exchange(s);
    s->auth_failures++;
    /* The answer waits out the delay; so does anything pipelined after. */
    smtpd_session_pause(s, smtpd_cfg.error_sleep_time);
    smtpd_reply(s, "535 5.7.8 Error: authentication failed: %s", reason);
    if (smtpd_cfg.sasl_failure_limit > 0 && s->auth_failures >= smtpd_cfg.sasl_failure_limit) {
        msg_info("too many failed authentication attempts from %s", s->namaddr);
        smtpd_reply(s, "421 4.7.0 %s Error: too many failed authentication attempts",
                    smtpd_cfg.myhostname);
        smtpd_session_close_after_reply(s);
        return;
    }
    smtpd_error_reply(s);
}

static void auth_tempfailed(struct session *s, const char *reason)
{
    log_failure(s, reason, NULL);
    end_exchange(s);
    smtpd_reply(s, "454 4.7.0 Temporary authentication failure: %s", reason);
}

static void auth_succeeded(struct session *s, const char *user, const char *final)
{
    free(s->sasl_user);
    if (!(s->sasl_user = strdup(user))) {
        auth_tempfailed(s, "out of memory");
        return;
    }
    end_exchange(s);
    if (final && *final) {
        /* Data with the success (RFC 4954 section 4): a 334 first, the
         * 235 after the client's empty line. */
        s->auth_final = 1;
        s->state = ST_AUTH;
        smtpd_reply(s, "334 %s", final);
        return;
    }
    s->ok[C_AUTH]++;
    smtpd_reply(s, "235 2.7.0 Authentication successful");
}

static void auth_aborted(struct session *s)
{
    msg_warn("%s: SASL %s authentication aborted", s->namaddr, s->sasl_method);
    end_exchange(s);
    free(s->sasl_user);   /* a success whose final 334 the client refused */
    s->sasl_user = NULL;
    smtpd_reply(s, "501 5.7.0 Authentication aborted");
    smtpd_error_reply(s);
}

void smtpd_auth_answer(struct session *s, enum smtpd_auth_status st, const char *text,
                       const char *user)
{
    int waited = s->state == ST_WAIT_AUTH;
    s->state = ST_COMMAND;
    switch (st) {
    case SMTPD_AUTH_CHALLENGE:
        s->state = ST_AUTH;
        smtpd_reply(s, "334 %s", text);
        break;
    case SMTPD_AUTH_OK:
        auth_succeeded(s, user, text);
        break;
    case SMTPD_AUTH_FAIL:
        auth_failed(s, text, user);
        break;
    case SMTPD_AUTH_TEMPFAIL:
        auth_tempfailed(s, text && *text ? text : NO_REASON);
        break;
    }
    /* An answer that came later: on with what the client pipelined. */
    if (waited && (s->state == ST_COMMAND || s->state == ST_AUTH)) {
        smtpd_session_begin_request(s);
        smtpd_session_process(s);
    }
}

/* --- Postern's own table ------------------------------------------------- */

/* smtpd_sasl_local_domain: a name without a domain is user@domain. */
static void table_identity(const char *given, char *out, size_t outlen)
{
    const char *realm = smtpd_cfg.sasl_local_domain;
    if (realm && *realm && !strchr(given, '@'))
        snprintf(out, outlen, "%s@%s", given, realm);
    else
        snprintf(out, outlen, "%s", given);
}

static void table_check(struct session *s)
{
    struct sasl_exchange *x = s->sasl;
    char user[2 * SASL_NAME_MAX];
    table_identity(x->user, user, sizeof(user));
    /* A table that cannot be opened fails for the time being, not as a
     * wrong password. */
    int rc = smtpd_cfg.sasl_password_maps_broken
                 ? SASL_AUTH_TEMPFAIL
                 : sasl_verify_password(smtpd_cfg.sasl_password_maps, user, x->pass);
    if (rc == SASL_AUTH_OK)
        smtpd_auth_answer(s, SMTPD_AUTH_OK, NULL, user);
    else if (rc == SASL_AUTH_TEMPFAIL)
        smtpd_auth_answer(s, SMTPD_AUTH_TEMPFAIL, "temporary lookup failure", NULL);
    else
        smtpd_auth_answer(s, SMTPD_AUTH_FAIL, "authentication failure", user);
}

static void table_step(struct session *s, enum sasl_step step, const char *challenge)
{
    switch (step) {
    case SASL_CONTINUE:
        smtpd_auth_answer(s, SMTPD_AUTH_CHALLENGE, challenge, NULL);
        return;
    case SASL_CREDENTIALS:
        table_check(s);
        return;
    case SASL_CANCELLED:
        auth_aborted(s);
        return;
    case SASL_BAD_RESPONSE:
        end_exchange(s);
        smtpd_reply(s, "501 5.5.2 Cannot decode response");
        smtpd_error_reply(s);
        return;
    }
}

static void table_start(struct session *s, const char *name, const char *initial)
{
    enum sasl_mech mech = sasl_mech_lookup(name);
    char challenge[CHALLENGE_MAX];
    if (mech == SASL_MECH_NONE || !mech_offered(s, name)) {
        smtpd_reply(s, "504 5.5.4 Unrecognized authentication type");
        smtpd_error_reply(s);
        return;
    }
    if (!(s->sasl = calloc(1, sizeof(*s->sasl)))) {
        smtpd_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
        return;
    }
    table_step(s, sasl_exchange_start(s->sasl, mech, initial, challenge, sizeof(challenge)),
               challenge);
}

/* --- Dovecot ----------------------------------------------------------- */

static void dovecot_start(struct session *s, const char *initial)
{
    /* Before the first handshake the server decides what it knows. */
    if (smtpd_dovecot_known() && !mech_offered(s, s->sasl_method)) {
        auth_failed(s, "Invalid authentication mechanism", NULL);
        return;
    }
    if (initial && strcmp(initial, "=") == 0)
        initial = "";   /* an empty initial response (RFC 4954) */
    s->state = ST_WAIT_AUTH;   /* resumed by smtpd_auth_answer */
    smtpd_dovecot_start(s, s->sasl_method, initial);
}

/* --- the command -------------------------------------------------------- */

/* Why AUTH cannot start now, or NULL. */
static const char *auth_refusal(const struct session *s)
{
    if (!smtpd_auth_offered(s))
        return "503 5.5.1 Error: authentication not enabled";
    if (!s->esmtp)
        return "503 5.5.1 Error: send HELO/EHLO first";
    if (s->sasl_user)
        return "503 5.5.1 Error: already authenticated";
    if (s->tx)
        return "503 5.5.1 Error: MAIL transaction in progress";
    return NULL;
}

static void auth_command(struct session *s, const char *arg);

/* smtpd_client_auth_rate_limit: anvil counted this AUTH (as Postfix,
 * before anything else is looked at). */
static void auth_counted(struct session *s, int ok, long rate, const char *arg)
{
    if (ok && rate > smtpd_cfg.auth_rate_limit) {
        msg_warn("AUTH command rate limit exceeded: %ld from %s for service %s", rate,
                 s->namaddr, service_name());
        smtpd_reply(s, "450 4.7.1 Error: too many AUTH commands from %s", s->addr);
        smtpd_error_reply(s);
        return;
    }
    auth_command(s, arg);
}

void smtpd_auth_command(struct session *s, const char *arg)
{
    smtpd_count(s, C_AUTH, 0);
    if (smtpd_cfg.auth_rate_limit > 0 && !s->count_exempt &&
        smtpd_session_ask_anvil(s, "auth", arg, auth_counted) == 0)
        return;
    auth_command(s, arg);
}

static void auth_command(struct session *s, const char *arg)
{
    const char *sp = strchr(arg, ' ');
    size_t mlen = sp ? (size_t)(sp - arg) : strlen(arg);
    const char *refusal = auth_refusal(s);
    if (!refusal && (mlen == 0 || mlen >= sizeof(s->sasl_method)))
        refusal = "501 5.5.4 Syntax: AUTH mechanism";
    if (refusal) {
        smtpd_reply(s, "%s", refusal);
        smtpd_error_reply(s);
        return;
    }
    for (size_t i = 0; i < mlen; i++)
        s->sasl_method[i] = (char)toupper((unsigned char)arg[i]);
    s->sasl_method[mlen] = 0;
    const char *initial = NULL;
    if (sp) {
        initial = sp + 1;
        while (*initial == ' ')
            initial++;
        if (!*initial)
            initial = NULL;
    }
    if (smtpd_cfg.sasl_type == SMTPD_SASL_DOVECOT)
        dovecot_start(s, initial);
    else
        table_start(s, s->sasl_method, initial);
}

void smtpd_auth_response(struct session *s, const char *line)
{
    char challenge[CHALLENGE_MAX];
    if (s->auth_final) {
        s->auth_final = 0;
        s->state = ST_COMMAND;
        if (strcmp(line, "*") == 0) {
            auth_aborted(s);
            return;
        }
        s->ok[C_AUTH]++;
        smtpd_reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    if (s->auth_req) {
        if (strcmp(line, "*") == 0) {
            auth_aborted(s);
            return;
        }
        s->state = ST_WAIT_AUTH;   /* resumed by smtpd_auth_answer */
        smtpd_dovecot_step(s, line);
        return;
    }
    if (!s->sasl) {
        s->state = ST_COMMAND;
        return;
    }
    table_step(s, sasl_exchange_step(s->sasl, line, challenge, sizeof(challenge)), challenge);
}
