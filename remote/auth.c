/* auth.c - SMTP AUTH as a client (remote.h), as Postfix's smtp(8) does it
 * with smtp_sasl_auth_enable = yes.
 *
 * Credentials come from smtp_sasl_password_maps ("username:password"):
 * first by sender (full address, then @domain) when
 * smtp_sender_dependent_authentication is on, then by the server's host
 * name, then by the nexthop exactly as qmgr wrote it ("[host]:port",
 * "domain"). Without an entry, or when the server offers no AUTH, the
 * session goes on without authenticating.
 *
 * The mechanism is one the server offers, smtp_sasl_mechanism_filter
 * keeps, and the security options allow (smtp_sasl_tls_security_options
 * once TLS is up, else smtp_sasl_security_options; "noplaintext" rules out
 * PLAIN and LOGIN): CRAM-MD5, then PLAIN, then LOGIN. A 4xx or 5xx answer
 * fails the session with "SASL authentication failed; server H[A] said:
 * ..." (5xx as 4xx under smtp_sasl_auth_soft_bounce), and the job tries
 * the next server as after any failed session.
 *
 * The server's answers are untrusted: a 334 challenge is decoded into a
 * bounded buffer, an exchange takes at most AUTH_STEPS_MAX challenges, and
 * a malformed or over-long reply breaks the session (session.c). Neither
 * the password nor a response carrying it is ever logged.
 */
#include "remote.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_STEPS_MAX 3          /* 334 challenges one exchange may take */
#define AUTH_LINE_MAX (SASL_CLIENT_RESPONSE_MAX + 32)

struct auth_state {
    struct sasl_creds creds;
    unsigned mech;
    int steps;
    auth_done_fn done;
};

static struct {
    int enabled;
    int sender_dependent;
    int soft_bounce;
    struct lookup_list *passwords;
    struct lookup_list *filter_maps;  /* type:table items of the filter */
    unsigned filter;                  /* mechanisms the filter names */
    int filter_set;
    unsigned security, tls_security;  /* SASL_SEC_* */
} au;

/* --- settings ------------------------------------------------------------ */

static void parse_security(const char *name, const char *value, unsigned *flags)
{
    char err[160];

    if (sasl_client_security_parse(value, flags, err, sizeof(err)) < 0)
        msg_fatal("%s: %s", name, err);
}

/* Mechanism names, and type:table items whose keys are mechanism names. */
static void parse_filter(const char *value)
{
    char **items = NULL, err[256];
    long n = lookup_split_specs(value, &items);
    char *tables = calloc(1, strlen(value) + 1);

    if (n < 0 || tables == NULL)
        msg_fatal("smtp_sasl_mechanism_filter: bad value \"%.100s\"", value);
    au.filter_set = n > 0;
    for (long i = 0; i < n; i++) {
        if (strchr(items[i], ':') != NULL) {
            if (*tables)
                strcat(tables, ",");
            strcat(tables, items[i]);
        } else {
            au.filter |= sasl_client_mech_bit(items[i], strlen(items[i]));
        }
    }
    if (*tables && (au.filter_maps = lookup_list_open(tables, err, sizeof(err))) == NULL)
        msg_fatal("smtp_sasl_mechanism_filter: %s", err);
    free(tables);
    lookup_free_specs(items, n);
}

void auth_init(void)
{
    char err[256];

    au.enabled = var.smtp_sasl_auth_enable;
    if (!au.enabled)
        return;
    au.sender_dependent = var.smtp_sender_dependent_authentication;
    au.soft_bounce = var.smtp_sasl_auth_soft_bounce;
    parse_security("smtp_sasl_security_options", var.smtp_sasl_security_options, &au.security);
    parse_security("smtp_sasl_tls_security_options", var.smtp_sasl_tls_security_options,
                   &au.tls_security);
    parse_filter(var.smtp_sasl_mechanism_filter);
    if (*var.smtp_sasl_password_maps == 0) {
        msg_warn("smtp_sasl_auth_enable = yes, but smtp_sasl_password_maps is empty");
        return;
    }
    if ((au.passwords = lookup_list_open(var.smtp_sasl_password_maps, err, sizeof(err))) == NULL)
        msg_fatal("smtp_sasl_password_maps: %s", err);
}

int auth_enabled(void)
{
    return au.enabled;
}

/* --- credentials --------------------------------------------------------- */

void auth_creds_clear(struct sasl_creds *c)
{
    OPENSSL_cleanse(c, sizeof(*c));
}

/* A table answer into c. 1 found, -1 when it is no "user:password". */
static int take_creds(char *value, const char *key, struct sasl_creds *c)
{
    int rc = sasl_client_split_credentials(value, c->user, sizeof(c->user), c->pass,
                                           sizeof(c->pass));

    OPENSSL_cleanse(value, strlen(value));
    free(value);
    if (rc < 0) {
        /* The key is no secret; the value is. */
        msg_warn("smtp_sasl_password_maps: the entry for %.200s is not username:password", key);
        auth_creds_clear(c);
        return -1;
    }
    c->found = 1;
    return 1;
}

static int lookup_key(const char *key, struct sasl_creds *c)
{
    char *value = NULL;
    int rc;

    if (au.passwords == NULL || *key == 0)
        return 0;
    rc = lookup_list_get(au.passwords, key, &value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc != LOOKUP_FOUND)
        return 0;
    return take_creds(value, key, c);
}

int auth_lookup_sender(const char *sender, struct sasl_creds *c)
{
    char *value = NULL;
    int rc;

    memset(c, 0, sizeof(*c));
    if (!au.enabled || !au.sender_dependent || au.passwords == NULL || *sender == 0)
        return 0;
    rc = lookup_list_address(au.passwords, sender, 0, "", &value);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc != LOOKUP_FOUND)
        return 0;
    return take_creds(value, sender, c) < 0 ? -1 : 1;
}

/* --- the exchange --------------------------------------------------------- */

void auth_state_free(struct auth_state *a)
{
    if (a == NULL)
        return;
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

static void auth_finish(struct session *s, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* End the exchange: dsn NULL for success, else fail the session. */
static void auth_finish(struct session *s, const char *dsn, const char *fmt, ...)
{
    struct auth_state **slot = session_auth_state(s);
    auth_done_fn done = (*slot)->done;
    struct session_failure f;
    va_list ap;

    auth_state_free(*slot);
    *slot = NULL;
    if (dsn == NULL) {
        done(s, NULL);
        return;
    }
    memset(&f, 0, sizeof(f));
    snprintf(f.dsn, sizeof(f.dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(f.text, sizeof(f.text), fmt, ap);
    va_end(ap);
    done(s, &f);
}

/* "SASL authentication failed; server H[A] said: 535 ...", as Postfix
 * says it; a 5xx is a 4xx under smtp_sasl_auth_soft_bounce. */
static void auth_refused(struct session *s, const struct smtp_reply *r)
{
    char text[DELIVERY_TEXT_MAX], dsn[sizeof(r->dsn)];

    snprintf(dsn, sizeof(dsn), "%s", r->dsn);
    if (dsn[0] == '5' && au.soft_bounce)
        dsn[0] = '4';
    delivery_text_clean(text, sizeof(text), r->text);
    auth_finish(s, dsn, "SASL authentication failed; server %s said: %s", session_peer(s), text);
}

static void auth_reply(void *owner, const struct smtp_reply *r);

static void auth_send(struct session *s, const char *line)
{
    session_send(s, line);
    session_expect(s, auth_reply, remote_cfg.helo_timeout, "AUTH", "performing the AUTH handshake");
}

/* The answer to one 334 challenge into out; -1 when we have none. */
static int answer_challenge(struct auth_state *a, const char *challenge, char *out, size_t len)
{
    switch (a->mech) {
    case SASL_CLIENT_LOGIN:
        /* Username, then password, whatever the prompts say. */
        if (a->steps == 1)
            return sasl_client_login(a->creds.user, out, len);
        if (a->steps == 2)
            return sasl_client_login(a->creds.pass, out, len);
        return -1;
    case SASL_CLIENT_CRAM_MD5:
        return a->steps == 1 ? sasl_client_cram_md5(a->creds.user, a->creds.pass, challenge, out,
                                                    len)
                             : -1;
    case SASL_CLIENT_PLAIN:
        /* A server that ignored the initial response asks again. */
        return a->steps == 1 ? sasl_client_plain(a->creds.user, a->creds.pass, out, len) : -1;
    default:
        return -1;
    }
}

/* The first line of a 334 reply after "334 ", bounded. */
static void challenge_text(const struct smtp_reply *r, char *out, size_t outlen)
{
    const char *p = r->len > 4 ? r->text + 4 : "";
    size_t n = strcspn(p, "\n");

    if (n >= outlen)
        n = 0;   /* too long to be a challenge of ours: answered as garbage */
    memcpy(out, p, n);
    out[n] = 0;
}

static void auth_reply(void *owner, const struct smtp_reply *r)
{
    struct session *s = owner;
    struct auth_state *a = *session_auth_state(s);
    char challenge[SASL_CLIENT_CHALLENGE_MAX * 2], line[AUTH_LINE_MAX];
    int n;

    if (r->code / 100 == 2) {
        auth_finish(s, NULL, "authenticated");
        return;
    }
    if (r->code != 334) {
        auth_refused(s, r);
        return;
    }
    challenge_text(r, challenge, sizeof(challenge));
    a->steps++;
    n = a->steps <= AUTH_STEPS_MAX ? answer_challenge(a, challenge, line, sizeof(line)) : -1;
    if (n < 0) {
        /* Cancel (RFC 4954 4) and give up on this server. */
        OPENSSL_cleanse(line, sizeof(line));
        session_send(s, "*");
        auth_finish(s, "4.7.0",
                    "SASL authentication failed; server %s sent an unexpected %s challenge",
                    session_peer(s), sasl_client_mech_name(a->mech));
        return;
    }
    auth_send(s, line);
    OPENSSL_cleanse(line, sizeof(line));
}

/* The mechanisms the filter keeps. */
static unsigned filtered(unsigned offered)
{
    unsigned kept = 0;

    if (!au.filter_set)
        return offered;
    for (unsigned bit = 1; bit <= SASL_CLIENT_ALL; bit <<= 1) {
        char *value = NULL, key[32];
        if (!(offered & bit))
            continue;
        if (au.filter & bit) {
            kept |= bit;
            continue;
        }
        snprintf(key, sizeof(key), "%s", sasl_client_mech_name(bit));
        if (au.filter_maps != NULL && lookup_list_get(au.filter_maps, key, &value) == LOOKUP_FOUND)
            kept |= bit;
        free(value);
    }
    return kept;
}

static int find_creds(struct sasl_creds *c, const char *host, const char *nexthop)
{
    int rc = lookup_key(host, c);

    if (rc == 0)
        rc = lookup_key(nexthop, c);
    return rc;
}

void auth_run(struct session *s, const struct sasl_creds *c, const char *host,
              const char *nexthop, auth_done_fn done)
{
    const struct smtp_features *f = session_features(s);
    struct auth_state *a;
    char line[AUTH_LINE_MAX];
    unsigned allowed;
    int rc;

    if (!f->auth) {
        done(s, NULL);
        return;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL)
        msg_fatal("out of memory for an AUTH exchange");
    a->done = done;
    *session_auth_state(s) = a;
    if (c != NULL && c->found)
        a->creds = *c;
    else if ((rc = find_creds(&a->creds, host, nexthop)) <= 0) {
        if (rc < 0)
            auth_finish(s, "4.3.0", "mail system configuration error: "
                        "smtp_sasl_password_maps lookup failure");
        else
            auth_finish(s, NULL, "no credentials");
        return;
    }
    allowed = sasl_client_mechs_allowed(filtered(f->auth_mechs),
                                        session_tls_active(s) ? au.tls_security : au.security);
    if ((a->mech = sasl_client_mech_choose(allowed)) == 0) {
        auth_finish(s, "4.7.0",
                    "SASL authentication failed: cannot authenticate to server %s: "
                    "no mechanism available", session_peer(s));
        return;
    }
    if (a->mech == SASL_CLIENT_PLAIN) {
        char resp[SASL_CLIENT_RESPONSE_MAX];
        if (sasl_client_plain(a->creds.user, a->creds.pass, resp, sizeof(resp)) < 0) {
            auth_finish(s, "4.7.0", "SASL authentication failed: credentials for server %s "
                        "too long", session_peer(s));
            return;
        }
        snprintf(line, sizeof(line), "AUTH PLAIN %s", resp);
        OPENSSL_cleanse(resp, sizeof(resp));
    } else {
        snprintf(line, sizeof(line), "AUTH %s", sasl_client_mech_name(a->mech));
    }
    auth_send(s, line);
    OPENSSL_cleanse(line, sizeof(line));
}
