/* auth_dovecot.c - smtpd's side of Dovecot's auth server
 * (smtpd_sasl_type = dovecot, auth_dovecot.h).
 *
 * The process has one client (lib/util/auth_client.h) on its event loop,
 * made at start so that it is usually connected before the first EHLO; all
 * sessions share its connection. A session's request carries what
 * Postfix's Dovecot client sends (service, nologin, the local and remote
 * addresses, "secured" under TLS) and its answers go to smtpd_auth_answer.
 *
 * Each answer has AUTH_SERVER_TIMEOUT seconds, Postfix's value: a server
 * that is away, slow or talks nonsense costs a session a 454 after at most
 * that long, never the process. Until a first handshake has listed the
 * mechanisms, an EHLO waits for it (bounded the same way); when that wait
 * fails, EHLOs for the next WAIT_RETRY seconds go without AUTH instead of
 * waiting again, while AUTH itself still tries the server.
 */
#include "auth_dovecot.h"
#include "auth.h"
#include "session.h"
#include "smtpd.h"

#include "auth_client.h"
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define AUTH_SERVER_TIMEOUT 10   /* seconds for the handshake and each answer */
#define WAIT_RETRY 10            /* seconds EHLO does not wait after a failed wait */

static struct {
    struct auth_endpoint ep;
    struct auth_client *client;
    time_t wait_failed;
} dv;

void smtpd_dovecot_settings(void)
{
    const char *spec = var.smtpd_sasl_path;
    char path[PATH_MAX], err[512];
    /* A host name resolved before a chroot stays resolved. */
    if (strncmp(spec, "inet:", 5) == 0 && dv.ep.addrlen && strcmp(dv.ep.name, spec) == 0)
        return;
    const char *p = strncmp(spec, "unix:", 5) == 0 ? spec + 5 : spec;
    if (p[0] == '/')
        snprintf(path, sizeof(path), "%s", p);
    else
        snprintf(path, sizeof(path), "%s/%s", var.queue_directory, p);
    if (auth_endpoint_parse(spec, path, &dv.ep, err, sizeof(err)) < 0)
        msg_fatal("smtpd_sasl_path: %s", err);
}

/* The process's own wait, made at start only to connect early. */
static void started(void *ctx, const struct auth_answer *a)
{
}

void smtpd_dovecot_init(void)
{
    dv.client = auth_client_new(smtpd_base, &dv.ep, var.smtpd_sasl_service,
                                AUTH_SERVER_TIMEOUT);
    auth_client_when_ready(dv.client, started, NULL);
}

size_t smtpd_dovecot_mechs(const struct auth_mech **mechs)
{
    if (!dv.client) {
        *mechs = NULL;
        return 0;
    }
    return auth_client_mechs(dv.client, mechs);
}

int smtpd_dovecot_known(void)
{
    return dv.client && auth_client_known(dv.client);
}

static void wait_over(void *ctx, const struct auth_answer *a)
{
    struct session *s = ctx;
    s->auth_req = NULL;
    if (a->result != AUTH_RESULT_READY)
        dv.wait_failed = time(NULL);
    s->state = ST_COMMAND;
    smtpd_session_ehlo_reply(s);
    smtpd_session_resume(s);
}

int smtpd_dovecot_wait(struct session *s)
{
    if (!dv.client || (dv.wait_failed && time(NULL) - dv.wait_failed < WAIT_RETRY))
        return 0;
    s->auth_req = auth_client_when_ready(dv.client, wait_over, s);
    return 1;
}

static void answered(void *ctx, const struct auth_answer *a)
{
    struct session *s = ctx;
    if (a->result == AUTH_RESULT_CONTINUE) {
        smtpd_auth_answer(s, SMTPD_AUTH_CHALLENGE, a->data, NULL);
        return;
    }
    s->auth_req = NULL;   /* finished: the client frees it */
    switch (a->result) {
    case AUTH_RESULT_OK:
        smtpd_auth_answer(s, SMTPD_AUTH_OK, a->data, a->user);
        break;
    case AUTH_RESULT_FAIL:
        smtpd_auth_answer(s, SMTPD_AUTH_FAIL, a->reason, a->user);
        break;
    default:
        smtpd_auth_answer(s, SMTPD_AUTH_TEMPFAIL, a->reason, NULL);
        break;
    }
}

/* Our address of the client's connection, as lip= wants it. */
static void local_address(const struct session *s, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = bufferevent_getfd(s->bev);
    snprintf(out, len, "unknown");
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                             : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if ((ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
        inet_ntop(ss.ss_family, a, out, (socklen_t)len) && strncmp(out, "::ffff:", 7) == 0 &&
        strchr(out, '.'))
        memmove(out, out + 7, strlen(out + 7) + 1);
}

void smtpd_dovecot_start(struct session *s, const char *mech, const char *initial)
{
    char lip[INET6_ADDRSTRLEN + 8];
    local_address(s, lip, sizeof(lip));
    struct auth_request_args a = {
        .mech = mech, .initial = initial, .local_ip = lip, .remote_ip = s->addr,
        .secured = s->tls,
    };
    s->auth_req = auth_request_start(dv.client, &a, answered, s);
}

void smtpd_dovecot_step(struct session *s, const char *response)
{
    auth_request_continue(s->auth_req, response);
}

void smtpd_dovecot_abort(struct session *s)
{
    if (s->auth_req) {
        auth_request_abort(s->auth_req);
        s->auth_req = NULL;
    }
}
