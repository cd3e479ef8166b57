/* auth.c - the AUTH command (RFC 4954, auth.h) with PLAIN and LOGIN (lib/util/sasl.h),
 * checked against smtpd_sasl_password_maps.
 *
 * Offered only over TLS unless smtpd_tls_auth_only = no. A failed attempt
 * is answered after smtpd_error_sleep_time, on a timer (session_pause), so
 * guessing is slow for the client while the event loop serves everyone
 * else; after smtpd_sasl_auth_failure_limit failures the session ends.
 */
#include "auth.h"
#include "session.h"
#include "smtpd.h"

#include "log.h"
#include "sasl.h"

#include <stdlib.h>
#include <string.h>

#define CHALLENGE_MAX 64

int smtpd_auth_offered(const struct session *s)
{
    return smtpd_cfg.sasl_enable && (s->tls || !smtpd_cfg.tls_auth_only);
}

void smtpd_auth_reset(struct session *s)
{
    if (s->sasl) {
        sasl_exchange_clear(s->sasl);
        free(s->sasl);
        s->sasl = NULL;
    }
    free(s->sasl_user);
    s->sasl_user = NULL;
    s->sasl_method = NULL;
}

static void end_exchange(struct session *s)
{
    if (s->sasl) {
        sasl_exchange_clear(s->sasl);
        free(s->sasl);
        s->sasl = NULL;
    }
    if (s->state == ST_AUTH)
        s->state = ST_COMMAND;
}

static void auth_failed(struct session *s, const char *mech)
{
    msg_warn("%s: SASL %s authentication failed: authentication failure", s->namaddr, mech);
    s->auth_failures++;
    /* The answer waits out the delay; so does anything pipelined after. */
    smtpd_session_pause(s, smtpd_cfg.error_sleep_time);
    smtpd_reply(s, "535 5.7.8 Error: authentication failed: authentication failure");
    if (smtpd_cfg.sasl_failure_limit > 0 && s->auth_failures >= smtpd_cfg.sasl_failure_limit) {
        msg_info("too many failed authentication attempts from %s", s->namaddr);
        smtpd_reply(s, "421 4.7.0 %s Error: too many failed authentication attempts",
              smtpd_cfg.myhostname);
        smtpd_session_close_after_reply(s);
        return;
    }
    smtpd_error_reply(s);
}

static void check_credentials(struct session *s)
{
    struct sasl_exchange *x = s->sasl;
    const char *mech = sasl_mech_name(x->mech);
    /* A table that cannot be opened fails for the time being, not as a
     * wrong password. */
    int rc = smtpd_cfg.sasl_password_maps_broken
                 ? SASL_AUTH_TEMPFAIL
                 : sasl_verify_password(smtpd_cfg.sasl_password_maps, x->user, x->pass);
    if (rc == SASL_AUTH_OK && !(s->sasl_user = strdup(x->user)))
        rc = SASL_AUTH_TEMPFAIL;
    end_exchange(s);
    if (rc == SASL_AUTH_OK) {
        s->sasl_method = mech;
        s->ok[C_AUTH]++;
        smtpd_reply(s, "235 2.7.0 Authentication successful");
    } else if (rc == SASL_AUTH_TEMPFAIL) {
        msg_warn("%s: SASL %s authentication failed: temporary lookup failure", s->namaddr,
                 mech);
        smtpd_reply(s, "454 4.7.0 Temporary authentication failure");
    } else {
        auth_failed(s, mech);
    }
}

static void exchange_step(struct session *s, enum sasl_step step, const char *challenge)
{
    switch (step) {
    case SASL_CONTINUE:
        s->state = ST_AUTH;
        smtpd_reply(s, "334 %s", challenge);
        return;
    case SASL_CREDENTIALS:
        check_credentials(s);
        return;
    case SASL_CANCELLED:
        end_exchange(s);
        smtpd_reply(s, "501 5.7.0 Authentication aborted");
        smtpd_error_reply(s);
        return;
    case SASL_BAD_RESPONSE:
        end_exchange(s);
        smtpd_reply(s, "501 5.5.2 Cannot decode response");
        smtpd_error_reply(s);
        return;
    }
}

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

void smtpd_auth_command(struct session *s, const char *arg)
{
    smtpd_count(s, C_AUTH, 0);
    char mech_name[32];
    const char *sp = strchr(arg, ' ');
    size_t mlen = sp ? (size_t)(sp - arg) : strlen(arg);
    const char *refusal = auth_refusal(s);
    enum sasl_mech mech = SASL_MECH_NONE;
    if (!refusal && (mlen == 0 || mlen >= sizeof(mech_name)))
        refusal = "501 5.5.4 Syntax: AUTH mechanism";
    if (!refusal) {
        memcpy(mech_name, arg, mlen);
        mech_name[mlen] = 0;
        if ((mech = sasl_mech_lookup(mech_name)) == SASL_MECH_NONE)
            refusal = "504 5.5.4 Unrecognized authentication type";
    }
    if (refusal) {
        smtpd_reply(s, "%s", refusal);
        smtpd_error_reply(s);
        return;
    }
    const char *initial = NULL;
    if (sp) {
        initial = sp + 1;
        while (*initial == ' ')
            initial++;
        if (!*initial)
            initial = NULL;
    }
    s->sasl = calloc(1, sizeof(*s->sasl));
    if (!s->sasl) {
        smtpd_reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
    char challenge[CHALLENGE_MAX];
    exchange_step(s, sasl_exchange_start(s->sasl, mech, initial, challenge, sizeof(challenge)),
                  challenge);
}

void smtpd_auth_response(struct session *s, const char *line)
{
    char challenge[CHALLENGE_MAX];
    if (!s->sasl) {
        s->state = ST_COMMAND;
        return;
    }
    exchange_step(s, sasl_exchange_step(s->sasl, line, challenge, sizeof(challenge)), challenge);
}
