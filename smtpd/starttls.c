/* starttls.c - TLS for smtpd: STARTTLS (RFC 3207) and wrapper mode
 * (smtpd_tls_wrappermode, port 465), on libevent's OpenSSL bufferevents.
 *
 * STARTTLS puts an OpenSSL filter over the session's socket bufferevent
 * right after our "220 Ready" is queued. Whatever the client pipelined in
 * plaintext behind the STARTTLS command is thrown away and everything
 * learnt before TLS (HELO, AUTH, a transaction) is forgotten, so a
 * man-in-the-middle cannot inject commands that would run inside the
 * encrypted session (CVE-2011-0411).
 */
#include "starttls.h"
#include "session.h"
#include "smtpd.h"

#include "config.h"
#include "log.h"
#include "service.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <unistd.h>

#define INPUT_HIGH_WATER (256 * 1024)

static SSL_CTX *server_ctx;

int smtpd_starttls_init(void)
{
    if (smtpd_cfg.tls_level == SMTPD_TLS_NONE && !smtpd_cfg.wrappermode)
        return -1;
    char err[512] = "";
    server_ctx = tls_server_ctx(var.smtpd_tls_cert_file,
                                var.smtpd_tls_key_file,
                                var.smtpd_tls_protocols,
                                var.smtpd_tls_ciphers, err, sizeof(err));
    if (!server_ctx) {
        msg_warn("TLS is not available: %s", err);
        return -1;
    }
    tls_server_resumption(server_ctx, var.smtpd_tls_session_cache_timeout, service_secret(),
                          service_secret() ? SERVICE_SECRET_LEN : 0);
    return 0;
}

int smtpd_starttls_offered(const struct session *s)
{
    return server_ctx && !s->tls && smtpd_cfg.tls_level != SMTPD_TLS_NONE;
}

int smtpd_starttls_required(const struct session *s)
{
    return smtpd_cfg.tls_level == SMTPD_TLS_ENCRYPT && !s->tls;
}

/* Settings every TLS bufferevent of a session gets. */
static void setup_tls_bev(struct bufferevent *bev)
{
    struct timeval tmo = {.tv_sec = smtpd_cfg.timeout};
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_set_timeouts(bev, NULL, &tmo);
    bufferevent_setwatermark(bev, EV_READ, 0, INPUT_HIGH_WATER);
}

/* A server connection object for a new session, NULL without TLS. */
static SSL *new_server_ssl(void)
{
    if (!server_ctx)
        return NULL;
    tls_server_ticket_key_check(server_ctx);
    return SSL_new(server_ctx);
}

struct bufferevent *smtpd_starttls_wrap_socket(int fd)
{
    SSL *ssl = new_server_ssl();
    if (!ssl) {
        close(fd);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(smtpd_base, fd, ssl,
                                                             BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    setup_tls_bev(bev);
    return bev;
}

static void start_tls(struct session *s);
static void starttls_counted(struct session *s, int ok, long rate, const char *arg);

void smtpd_starttls_command(struct session *s, const char *arg)
{
    smtpd_count(s, C_STARTTLS, 0);
    if (*arg) {
        smtpd_reply(s, "501 5.5.4 Syntax: STARTTLS");
        smtpd_error_reply(s);
        return;
    }
    if (s->tls) {
        smtpd_reply(s, "554 5.5.1 Error: TLS already active");
        smtpd_error_reply(s);
        return;
    }
    if (smtpd_cfg.tls_level == SMTPD_TLS_NONE) {
        smtpd_reply(s, "502 5.5.1 Error: command not implemented");
        smtpd_error_reply(s);
        return;
    }
    /* smtpd_client_new_tls_session_rate_limit: anvil's count of this
     * client's new sessions decides before any handshake work. */
    if (smtpd_cfg.newtls_rate_limit > 0 && !s->count_exempt &&
        smtpd_session_ask_anvil(s, "newtls_stat", "", starttls_counted) == 0)
        return;
    start_tls(s);
}

static void starttls_counted(struct session *s, int ok, long rate, const char *arg)
{
    if (ok && rate > smtpd_cfg.newtls_rate_limit) {
        msg_warn("Refusing STARTTLS request from %s for service %s", s->namaddr,
                 service_name());
        smtpd_reply(s, "454 4.7.0 Error: too many new TLS sessions from %s", s->namaddr);
        smtpd_error_reply(s);
        return;
    }
    start_tls(s);
}

static void start_tls(struct session *s)
{
    SSL *ssl = new_server_ssl();
    if (!ssl) {
        smtpd_reply(s, "454 4.7.0 TLS not available due to local problem");
        return;
    }
    smtpd_reply(s, "220 2.0.0 Ready to start TLS");
    struct evbuffer *in = bufferevent_get_input(s->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    smtpd_session_reset_for_tls(s);
    /* The 220 stays queued in the socket bufferevent and goes out in
     * plaintext ahead of the handshake. */
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        smtpd_base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!tls) {
        SSL_free(ssl);
        msg_warn("cannot start TLS for %s", s->namaddr);
        smtpd_session_close_after_reply(s);
        return;
    }
    s->bev = tls;
    setup_tls_bev(tls);
    smtpd_session_attach_bev(s);
    s->state = ST_TLS_HANDSHAKE;
    smtpd_session_begin_request(s);
}

static void tls_session_go(struct session *s);
static void newtls_counted(struct session *s, int ok, long rate, const char *arg);

static void handshake_done(struct session *s)
{
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    s->tls = 1;
    tls_describe(ssl, s->tls_info, sizeof(s->tls_info));
    msg_info("Anonymous TLS connection established from %s: %s", s->namaddr, s->tls_info);
    if (!smtpd_cfg.wrappermode)
        s->ok[C_STARTTLS]++;
    /* A new (not resumed) session counts towards the client's rate. */
    if (smtpd_cfg.newtls_rate_limit > 0 && !s->count_exempt && !SSL_session_reused(ssl) &&
        smtpd_session_ask_anvil(s, "newtls", "", newtls_counted) == 0)
        return;
    tls_session_go(s);
}

/* Over the limit only now: refused, as Postfix does, though the handshake
 * work is done; the next STARTTLS is refused before it. */
static void newtls_counted(struct session *s, int ok, long rate, const char *arg)
{
    if (ok && rate > smtpd_cfg.newtls_rate_limit) {
        msg_warn("New TLS session rate limit exceeded: %ld from %s for service %s", rate,
                 s->namaddr, service_name());
        smtpd_reply(s, "421 4.7.0 %s Error: too many new TLS sessions from %s",
                    smtpd_cfg.myhostname, s->namaddr);
        smtpd_session_close_after_reply(s);
        return;
    }
    tls_session_go(s);
}

static void tls_session_go(struct session *s)
{
    s->state = ST_COMMAND;
    smtpd_session_begin_request(s);
    if (!s->greeted)
        smtpd_session_greet(s);   /* wrapper mode: the banner comes now */
    if (s->state == ST_COMMAND)
        smtpd_session_process(s);
}

static void handshake_failed(struct session *s, short what)
{
    char why[256] = "lost connection";
    unsigned long e = (what & BEV_EVENT_ERROR) ? bufferevent_get_openssl_error(s->bev) : 0;
    if (e)
        ERR_error_string_n(e, why, sizeof(why));
    while (bufferevent_get_openssl_error(s->bev))
        ;
    msg_info("SSL_accept error from %s: %s", s->namaddr, why);
    s->last_cmd = NULL;
    smtpd_session_free(s);
}

int smtpd_starttls_event(struct session *s, short what)
{
    if (s->state != ST_TLS_HANDSHAKE)
        return 0;
    if (what & BEV_EVENT_CONNECTED) {
        handshake_done(s);
        return 1;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        handshake_failed(s, what);
        return 1;
    }
    return 0;
}
