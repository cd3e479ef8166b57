/* milters.c - smtpd_milters on smtpd's event loop (milters.h).
 *
 * Every session connects to each milter when it starts (the connections
 * are the session's: libmilter closes a connection when its SMTP session
 * ends), negotiates, and sends the connect event before the banner. Its
 * milters are smtpd_milters, or what smtpd_milter_maps answers for the
 * client's address (asked off the loop when the table has a server). Each
 * later stage goes to the milters in order and stops at the first answer
 * that is not "go on", as Postfix does. Nothing here blocks: sockets are
 * non-blocking, each step (connect, a request, each reply packet) has its
 * deadline on a timer (milter_connect_timeout, milter_command_timeout, or
 * the milter's own setting), and the packet reader never reads past the
 * end of a reply, so a connection can be handed to cleanup between two
 * packets. A milter that fails (refused, slow, garbage, oversize packet,
 * gone) is logged as Postfix logs it and answers with its
 * milter_default_action from then on; other sessions never wait for it.
 *
 * The message content goes to the milters from cleanup: the connections
 * travel with the cleanup stream (submit.c, SCM_RIGHTS), their negotiated
 * state and the content-stage macros as attributes before the content,
 * and cleanup's answer says how each connection stands afterwards.
 */
#include "lookup_async.h"
#include "milters.h"
#include "peer.h"
#include "session.h"
#include "smtpd.h"
#include "submit.h"
#include "transaction.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "receive_override.h"
#include "milter.h"
#include "resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MILTERS_MAX 32
#define ARGV_MAX 32

#define ENDPOINTS_MAX 64        /* distinct endpoints a process keeps */
#define RESOLVE_POLL_MS 20      /* how often a session looks at a name being resolved */
#define RESOLVE_RETRY 60        /* seconds before a name that failed is asked again */

/* Where a milter listens: its address, or why it has none. Found once per
 * process: smtpd_milters' at start, the endpoints smtpd_milter_maps
 * answers with when a session first needs them (a host name then on
 * glibc's resolver threads, getaddrinfo_a, so that the loop never waits). */
struct endpoint {
    char spec[MILTER_SPEC_MAX];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char error[128];
    char host[256], port[32];
    struct addrinfo hints;
    struct gaicb req, *gai;      /* gai: &req while a name is being resolved */
    time_t failed;               /* when resolving its name failed, else 0 */
};

/* smtpd_milters and smtpd_milter_maps of this process. */
static struct {
    struct milter_settings set[MILTERS_MAX];
    size_t n;
    struct lookup_list *maps;
    struct endpoint ep[ENDPOINTS_MAX];
    size_t nep;
} cfg;

enum phase { PH_IDLE, PH_CHOOSE, PH_RESOLVE, PH_CONNECT, PH_NEGOTIATE, PH_EVENT };

struct smtpd_milters {
    struct session *s;
    struct milter *m[MILTERS_MAX];
    size_t n;
    /* the stage in progress */
    enum milter_event ev;
    struct milter_args args;
    /* the event's strings, on the heap: a session waits most of its life
     * and should not carry buffers for them */
    char *text;
    char *argbuf;
    const char *argv[ARGV_MAX + 1];
    smtpd_milter_done_fn done;
    size_t cur;
    enum phase phase;
    struct milter_buf out;
    size_t out_off;
    int sent;                      /* the whole request is out */
    int expect_reply;
    struct milter_rx rx;
    int sync, finished;            /* run() is waiting for advance() to return */
    char *answer;                  /* the stage's answer, when it came at once */
    struct event *io, *timer;
    time_t resolve_deadline;       /* PH_RESOLVE: the connect timeout */
    /* the transaction */
    char *rcpt;                    /* of the RCPT event, for {rcpt_addr} and logs */
    char *rcpt_reject;             /* smtpd's reply when it rejected that recipient */
    char *auth_author;             /* MAIL's AUTH= value, for {auth_author} */
    char *first_rcpt;              /* the first accepted, {rcpt_*} after RCPT */
    int mail_sent;                 /* MAIL went out: ABORT when it ends */
    int hold, discard;
    char hold_reason[256];
    int handed;                    /* the connections are cleanup's */
    size_t passed[MILTERS_MAX];    /* which milters cleanup got, in order */
    size_t npassed;
};

static void advance(struct smtpd_milters *ms);

/* --- settings --- */

static void endpoint_error(struct endpoint *ep, const char *why)
{
    ep->addrlen = 0;
    snprintf(ep->error, sizeof(ep->error), "%s", why);
}

static void endpoint_take(struct endpoint *ep, const struct addrinfo *res)
{
    memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
    ep->addrlen = res->ai_addrlen;
}

/* Resolve ep: at once for a UNIX path or a numeric address; a host name
 * blocking at start (wait), else started on the resolver threads. */
static void endpoint_resolve(struct endpoint *ep, int wait)
{
    int is_unix;
    if (milter_endpoint(ep->spec, ep->host, sizeof(ep->host), ep->port, sizeof(ep->port),
                        &is_unix) < 0) {
        endpoint_error(ep, "bad endpoint");
        return;
    }
    if (is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ep->addr;
        if (strlen(ep->host) >= sizeof(un->sun_path)) {
            endpoint_error(ep, "socket path too long");
            return;
        }
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", ep->host);
        ep->addrlen = sizeof(*un);
        return;
    }
    struct addrinfo *res = NULL;
    ep->hints = (struct addrinfo){.ai_socktype = SOCK_STREAM,
                                  .ai_flags = wait ? 0 : AI_NUMERICHOST};
    int rc = getaddrinfo(ep->host, ep->port, &ep->hints, &res);
    if (rc == 0 && res) {
        endpoint_take(ep, res);
        freeaddrinfo(res);
        return;
    }
    if (wait || rc != EAI_NONAME) {
        endpoint_error(ep, gai_strerror(rc));
        if (wait)
            ep->failed = time(NULL);   /* sessions ask again later, off the loop */
        return;
    }
    ep->hints.ai_flags = 0;
    ep->req = (struct gaicb){.ar_name = ep->host, .ar_service = ep->port,
                             .ar_request = &ep->hints};
    struct gaicb *list[1] = {&ep->req};
    if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL)) != 0)
        endpoint_error(ep, gai_strerror(rc));
    else
        ep->gai = &ep->req;
}

/* Whether ep's name is still being resolved (else its result is in). */
static int endpoint_resolving(struct endpoint *ep)
{
    if (!ep->gai)
        return 0;
    int rc = gai_error(ep->gai);
    if (rc == EAI_INPROGRESS)
        return 1;
    if (rc == 0 && ep->req.ar_result) {
        endpoint_take(ep, ep->req.ar_result);
    } else {
        endpoint_error(ep, gai_strerror(rc));
        ep->failed = time(NULL);
    }
    if (ep->req.ar_result)
        freeaddrinfo(ep->req.ar_result);
    ep->gai = NULL;
    return 0;
}

/* The endpoint of spec, known or new; NULL when the process has as many
 * as it keeps. */
static struct endpoint *endpoint_of(const char *spec, int wait)
{
    for (size_t i = 0; i < cfg.nep; i++) {
        struct endpoint *ep = &cfg.ep[i];
        if (strcmp(ep->spec, spec) != 0)
            continue;
        if (ep->failed && !wait && time(NULL) - ep->failed >= RESOLVE_RETRY) {
            ep->failed = 0;   /* the name server may answer now */
            endpoint_resolve(ep, 0);
        }
        return ep;
    }
    if (cfg.nep >= ENDPOINTS_MAX)
        return NULL;
    struct endpoint *ep = &cfg.ep[cfg.nep++];
    snprintf(ep->spec, sizeof(ep->spec), "%s", spec);
    endpoint_resolve(ep, wait);
    return ep;
}

void smtpd_milter_init(void)
{
    char err[256];
    /* receive_override_options = no_milters: a reinjection service */
    const char *list = receive_override_mask() & RECEIVE_NO_MILTERS ? "" : var.smtpd_milters;
    int n = milter_list_parse(list, cfg.set, MILTERS_MAX, err, sizeof(err));
    if (n < 0)
        msg_fatal("smtpd_milters: %s", err);
    cfg.n = (size_t)n;
    for (size_t i = 0; i < cfg.n; i++)
        endpoint_of(cfg.set[i].spec, 1);
    if (*var.smtpd_milter_maps &&
        !(cfg.maps = lookup_list_open(var.smtpd_milter_maps, err, sizeof(err))))
        msg_fatal("smtpd_milter_maps: %s", err);
    if (cfg.n || cfg.maps)
        resolve_init();
}

/* --- macros (Postfix's smtpd values) --- */

/* The address and port the client connected to. */
static int socket_port(const struct session *s, char *addr, size_t alen, char *port, size_t plen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = (int)bufferevent_getfd(s->bev);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    return getnameinfo((struct sockaddr *)&ss, sl, addr, (socklen_t)alen, port, (socklen_t)plen,
                       NI_NUMERICHOST | NI_NUMERICSERV) == 0 ? 0 : -1;
}

/* {mail_host}, {mail_mailer} and the rcpt ones: the address's route (the
 * null sender's is the local one, as trivial-rewrite resolves it). */
static const char *route_of(const char *addr, int host, char *buf, size_t len)
{
    struct route r;
    if (!addr || resolve_recipient(NULL, addr, &r) < 0)
        return NULL;
    snprintf(buf, len, "%s", host ? r.nexthop : r.transport);
    return buf;
}

/* The common name of a certificate name (subject or issuer). */
static const char *common_name(X509_NAME *name, char *buf, size_t len)
{
    if (!name || len > INT_MAX || X509_NAME_get_text_by_NID(name, NID_commonName, buf, (int)len) < 0)
        return NULL;
    return buf;
}

/* Postfix's values: the protocol and cipher once TLS is on; a client
 * certificate's subject and issuer names only when it was verified. */
static const char *tls_value(const struct session *s, const char *name, char *buf, size_t len)
{
    SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    if (!ssl)
        return NULL;
    if (strcmp(name, "{tls_version}") == 0)
        return SSL_get_version(ssl);
    if (strncmp(name, "{cert_", 6) == 0) {
        X509 *peer = SSL_get0_peer_certificate(ssl);
        if (!peer || SSL_get_verify_result(ssl) != X509_V_OK)
            return NULL;
        return common_name(strcmp(name, "{cert_subject}") == 0 ? X509_get_subject_name(peer)
                                                               : X509_get_issuer_name(peer),
                           buf, len);
    }
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    if (!c)
        return NULL;
    if (strcmp(name, "{cipher}") == 0)
        return SSL_CIPHER_get_name(c);
    if (strcmp(name, "{cipher_bits}") != 0)
        return NULL;
    snprintf(buf, len, "%d", SSL_CIPHER_get_bits(c, NULL));
    return buf;
}

static const char *resolve_status(const struct session *s)
{
    switch (s->name_status) {
    case SMTPD_PEER_OK:
        return "OK";
    case SMTPD_PEER_FORGED:
        return "FORGED";
    case SMTPD_PEER_TEMP:
        return "TEMP";
    default:
        return "FAIL";
    }
}

/* The connect stage's: who the client is and where it came in. */
static const char *client_macro(const struct session *s, const char *name, char *buf, size_t len)
{
    char port[32], addr[INET6_ADDRSTRLEN + 8];
    if (strcmp(name, "_") == 0) {
        /* the PTR name, and a warning when it is not the confirmed one */
        snprintf(buf, len, "%s [%s]%s", s->reverse_name, s->addr,
                 strcasecmp(s->name, s->reverse_name) != 0 ? " (may be forged)" : "");
        return buf;
    }
    if (strcmp(name, "{client_addr}") == 0) {
        snprintf(buf, len, "%s%s", strchr(s->addr, ':') ? "IPv6:" : "", s->addr);
        return buf;
    }
    if (strcmp(name, "{client_name}") == 0)
        return s->name;
    if (strcmp(name, "{client_ptr}") == 0)
        return s->reverse_name;
    if (strcmp(name, "{client_resolve}") == 0)
        return resolve_status(s);
    if (strcmp(name, "{client_connections}") == 0) {
        /* 0 for a client that is not counted (smtpd_client_event_limit_exceptions) */
        snprintf(buf, len, "%ld", s->counted ? smtpd_client_count(s->addr) : 0L);
        return buf;
    }
    if (strcmp(name, "{client_port}") == 0)   /* the PROXY header's client's too */
        return s->port[0] ? s->port : "0";
    if (strcmp(name, "{daemon_port}") == 0 || strcmp(name, "{daemon_addr}") == 0) {
        if (socket_port(s, addr, sizeof(addr), port, sizeof(port)) < 0)
            return NULL;
        snprintf(buf, len, "%s", strstr(name, "port") ? port : addr);
        return buf;
    }
    return NULL;
}

static const char *session_macro(struct smtpd_milters *ms, const char *name, char *buf,
                                 size_t len)
{
    struct session *s = ms->s;
    const char *v = milter_config_macro(name);
    if (v)
        return v;
    if (strncmp(name, "{tls_", 5) == 0 || strncmp(name, "{cipher", 7) == 0 ||
        strncmp(name, "{cert_", 6) == 0)
        return tls_value(s, name, buf, len);
    if (strcmp(name, "{auth_type}") == 0)
        return s->sasl_user ? s->sasl_method : NULL;
    if (strcmp(name, "{auth_authen}") == 0)
        return s->sasl_user;
    return client_macro(s, name, buf, len);
}

/* {mail_addr}, {rcpt_addr}: the address as SMTP quotes it; "" for <>. */
static const char *quoted(const char *addr, char *buf, size_t len)
{
    if (!*addr)
        return "";
    return address_quote(addr, buf, len) == 0 ? buf : addr;
}

/* The recipient of {rcpt_addr} and the logs: RCPT's own while it runs,
 * then the transaction's first, as Postfix. */
static const char *macro_rcpt(const struct smtpd_milters *ms)
{
    return ms->ev == MILTER_RCPT ? ms->rcpt : ms->first_rcpt;
}

/* {rcpt_*} of a recipient smtpd rejected, as Postfix derives them from
 * the reply "554 5.7.1 <a@b>: Relay access denied": the mailer "error",
 * the host the status "5.7.1", the address the text after "<a@b>:". */
static const char *rejected_rcpt_macro(const char *reply, const char *name, char *buf,
                                       size_t len)
{
    if (strcmp(name, "{rcpt_mailer}") == 0)
        return "error";
    const char *status = strlen(reply) > 4 ? reply + 4 : "";
    size_t n = strcspn(status, " ");
    if (strcmp(name, "{rcpt_host}") == 0) {
        snprintf(buf, len, "%.*s", (int)n, status);
        return buf;
    }
    const char *sp = status[n] ? strchr(status + n + 1, ' ') : NULL;
    return sp ? sp + 1 : NULL;
}

static const char *transaction_macro(struct smtpd_milters *ms, const char *name, char *buf,
                                     size_t len)
{
    const char *rcpt = macro_rcpt(ms);
    const char *sender = smtpd_tx_sender(ms->s);
    if (strcmp(name, "i") == 0)
        return smtpd_tx_queue_id(ms->s);
    if (!sender)
        return NULL;
    if (strcmp(name, "{auth_author}") == 0)
        return ms->auth_author;
    if (strcmp(name, "{mail_addr}") == 0)
        return quoted(sender, buf, len);
    if (strcmp(name, "{mail_host}") == 0 || strcmp(name, "{mail_mailer}") == 0)
        return route_of(sender, name[6] == 'h', buf, len);
    if (!rcpt)
        return NULL;
    if (strcmp(name, "{rcpt_addr}") == 0 && !*rcpt)
        return "";
    if (ms->ev == MILTER_RCPT && ms->rcpt_reject && strncmp(name, "{rcpt_", 6) == 0)
        return rejected_rcpt_macro(ms->rcpt_reject, name, buf, len);
    if (strcmp(name, "{rcpt_addr}") == 0)
        return quoted(rcpt, buf, len);
    if (strcmp(name, "{rcpt_host}") == 0 || strcmp(name, "{rcpt_mailer}") == 0)
        return route_of(rcpt, name[6] == 'h', buf, len);
    return NULL;
}

static const char *macro_value(void *ctx, const char *name)
{
    static char buf[1024];
    const char *v = session_macro(ctx, name, buf, sizeof(buf));
    return v ? v : transaction_macro(ctx, name, buf, sizeof(buf));
}

/* --- connections --- */

static void close_milter(struct smtpd_milters *ms, struct milter *m)
{
    if (m->fd >= 0) {
        if (ms->cur < ms->n && ms->m[ms->cur] == m && ms->io) {
            event_free(ms->io);
            ms->io = NULL;
        }
        close(m->fd);
        m->fd = -1;
    }
}

static void fail(struct smtpd_milters *ms, struct milter *m)
{
    milter_comm_error(m);
    close_milter(ms, m);
}

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* Wait for fd to be readable (or writable) until the step's deadline;
 * when that cannot be arranged the milter fails (m->fd < 0). */
static void wait_io(struct smtpd_milters *ms, struct milter *m, short what, long timeout)
{
    if (ms->io)
        event_free(ms->io);
    ms->io = event_new(smtpd_base, m->fd, what, io_cb, ms);
    struct timeval tv = {.tv_sec = timeout};
    if (!ms->io || event_add(ms->io, NULL) < 0 || evtimer_add(ms->timer, &tv) < 0) {
        msg_warn("milter %s: cannot wait for it: out of memory", m->set.spec);
        fail(ms, m);
    }
}

/* Start a non-blocking connect; the connect event follows. */
static void start_connect(struct smtpd_milters *ms, struct milter *m, const struct endpoint *ep)
{
    const struct sockaddr *sa = (const struct sockaddr *)&ep->addr;
    if (!ep->addrlen) {
        msg_warn("connect to Milter service %s: %s", m->set.spec, ep->error);
        fail(ms, m);
        return;
    }
    m->fd = milter_socket(sa->sa_family);
    if (m->fd < 0 || (connect(m->fd, sa, ep->addrlen) < 0 && errno != EINPROGRESS)) {
        msg_warn("connect to Milter service %s: %s", m->set.spec, strerror(errno));
        fail(ms, m);
        return;
    }
    ms->phase = PH_CONNECT;
    wait_io(ms, m, EV_WRITE, m->set.connect_timeout);
}

static int connect_result(struct smtpd_milters *ms, struct milter *m)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        msg_warn("connect to Milter service %s: %s", m->set.spec, strerror(err));
        fail(ms, m);
        return -1;
    }
    return 0;
}

/* --- one request and its reply --- */

static long step_timeout(const struct smtpd_milters *ms, const struct milter *m)
{
    return ms->phase == PH_NEGOTIATE ? m->set.command_timeout : milter_event_timeout(m, ms->ev);
}

/* Send ms->out: at once as far as the socket takes it, the rest when it
 * is writable; then the replies, if one comes. */
static void send_request(struct smtpd_milters *ms, struct milter *m, int reply)
{
    ms->out_off = 0;
    ms->sent = 0;
    ms->expect_reply = reply;
    milter_rx_reset(&ms->rx);
    if (ms->out.failed) {
        msg_warn("milter %s: out of memory", m->set.spec);
        fail(ms, m);
        return;
    }
    int rc = milter_tx_write(&ms->out, &ms->out_off, m->fd);
    if (rc < 0) {
        msg_warn("milter %s: error writing command: %s", m->set.spec, strerror(errno));
        fail(ms, m);
        return;
    }
    ms->sent = rc == 1;
    if (ms->sent && !reply)
        return;   /* nothing to wait for */
    wait_io(ms, m, ms->sent ? EV_READ : EV_WRITE, step_timeout(ms, m));
}

static const char *request_name(const struct smtpd_milters *ms)
{
    return milter_command_name(ms->phase == PH_NEGOTIATE ? SMFIC_OPTNEG
                                                         : milter_event_command(ms->ev));
}

/* A complete reply packet: 1 when the milter's answer is complete. */
static int take_packet(struct smtpd_milters *ms, struct milter *m)
{
    char *pkt = ms->rx.pkt;
    int done;
    if (ms->phase == PH_NEGOTIATE) {
        done = 1;
        if (milter_negotiated(m, pkt[0], pkt + 1, ms->rx.len - 1) < 0)
            close_milter(ms, m);
    } else {
        done = milter_reply(m, ms->ev, pkt[0], pkt + 1, ms->rx.len - 1, NULL, NULL);
    }
    milter_rx_reset(&ms->rx);
    return done;
}

/* Read what the milter sent; 1 when its answer is complete (or it failed). */
static int read_reply(struct smtpd_milters *ms, struct milter *m)
{
    for (;;) {
        enum milter_rx_status st = milter_rx_read(&ms->rx, m->fd, MILTER_PACKET_MAX);
        switch (st) {
        case MILTER_RX_MORE:
            return 0;
        case MILTER_RX_DONE:
            if (take_packet(ms, m))
                return 1;
            continue;   /* progress or more: the next packet */
        case MILTER_RX_TOOBIG:
            msg_warn("milter %s: unreasonable packet length: %zu > %d", m->set.spec, ms->rx.len,
                     MILTER_PACKET_MAX);
            break;
        case MILTER_RX_BAD:
            msg_warn("milter %s: bad packet length: 0", m->set.spec);
            break;
        case MILTER_RX_EOF:
        case MILTER_RX_ERROR:
            msg_warn("milter %s: can't read %s reply packet %s: %s", m->set.spec,
                     request_name(ms), ms->rx.hdr_have < 4 ? "header" : "data",
                     st == MILTER_RX_EOF ? "Unexpected EOF" : strerror(errno));
            break;
        }
        fail(ms, m);
        return 1;
    }
}

/* --- running a stage through the milters --- */

/* The stage's answer: to run() when it came without waiting, else to the
 * session's callback. */
static void finish(struct smtpd_milters *ms, const char *reply)
{
    char copy[MILTER_REPLY_MAX];
    ms->phase = PH_IDLE;
    ms->cur = ms->n;
    if (ms->sync) {
        free(ms->answer);
        ms->answer = reply ? strdup(reply) : NULL;
        ms->finished = 1;
        return;
    }
    smtpd_milter_done_fn done = ms->done;
    ms->done = NULL;
    if (reply)
        snprintf(copy, sizeof(copy), "%s", reply);
    if (done)
        done(ms->s, reply ? copy : NULL);
}

/* The current milter answered (or failed): on to the next, or done. */
static void milter_answered(struct smtpd_milters *ms)
{
    struct milter *m = ms->m[ms->cur];
    evtimer_del(ms->timer);
    if (ms->io) {
        event_free(ms->io);
        ms->io = NULL;
    }
    if (milter_wants_close(m))
        close_milter(ms, m);
    const char *r = milter_result(m);
    ms->phase = PH_IDLE;
    if (r) {
        finish(ms, r);
        return;
    }
    ms->cur++;
    advance(ms);
}

/* The connect finished: negotiate. */
static void connected(struct smtpd_milters *ms, struct milter *m)
{
    if (connect_result(ms, m) < 0) {
        milter_answered(ms);
        return;
    }
    ms->phase = PH_NEGOTIATE;
    milter_buf_reset(&ms->out);
    if (milter_negotiate(m, &ms->out) < 0) {
        close_milter(ms, m);
        milter_answered(ms);
        return;
    }
    send_request(ms, m, 1);
    if (m->fd < 0)
        milter_answered(ms);
}

/* The socket took more of the request. */
static void write_more(struct smtpd_milters *ms, struct milter *m)
{
    int rc = milter_tx_write(&ms->out, &ms->out_off, m->fd);
    if (rc < 0) {
        msg_warn("milter %s: error writing command: %s", m->set.spec, strerror(errno));
        fail(ms, m);
        milter_answered(ms);
        return;
    }
    ms->sent = rc == 1;
    if (ms->sent && !ms->expect_reply) {
        milter_answered(ms);
        return;
    }
    wait_io(ms, m, ms->sent ? EV_READ : EV_WRITE, step_timeout(ms, m));
    if (m->fd < 0)
        milter_answered(ms);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_milters *ms = arg;
    struct milter *m = ms->m[ms->cur];
    evtimer_del(ms->timer);
    if (ms->phase == PH_CONNECT) {
        connected(ms, m);
    } else if (!ms->sent) {
        write_more(ms, m);
    } else if (!read_reply(ms, m)) {
        wait_io(ms, m, EV_READ, step_timeout(ms, m));   /* a fresh deadline per packet */
        if (m->fd < 0)
            milter_answered(ms);
    } else if (ms->phase == PH_NEGOTIATE && m->state == MILTER_ST_READY) {
        ms->phase = PH_IDLE;
        advance(ms);   /* now the event itself */
    } else {
        milter_answered(ms);
    }
}

/* The milter's endpoint has a name being resolved: look again soon. */
static void wait_resolved(struct smtpd_milters *ms, const struct milter *m)
{
    struct timeval tv = {.tv_usec = RESOLVE_POLL_MS * 1000};
    if (ms->phase != PH_RESOLVE) {
        ms->phase = PH_RESOLVE;
        ms->resolve_deadline = time(NULL) + m->set.connect_timeout;
    }
    evtimer_add(ms->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_milters *ms = arg;
    struct milter *m = ms->m[ms->cur];
    if (ms->phase == PH_RESOLVE) {
        struct endpoint *ep = endpoint_of(m->set.spec, 0);
        if (ep && endpoint_resolving(ep) && time(NULL) < ms->resolve_deadline) {
            wait_resolved(ms, m);
            return;
        }
        ms->phase = PH_IDLE;
        if (!ep || !ep->gai) {
            advance(ms);   /* resolved (or failed): on to the connect */
            return;
        }
    }
    if (ms->phase == PH_CONNECT || ms->phase == PH_IDLE)
        msg_warn("connect to Milter service %s: Connection timed out", m->set.spec);
    else
        msg_warn("milter %s: can't read %s reply packet header: Connection timed out",
                 m->set.spec, request_name(ms));
    fail(ms, m);
    milter_answered(ms);
}

/* Send the stage to the milters from ms->cur on, without waiting where
 * none is needed. */
static void advance(struct smtpd_milters *ms)
{
    if (ms->cur >= ms->n) {
        finish(ms, NULL);
        return;
    }
    struct milter *m = ms->m[ms->cur];
    if (m->state == MILTER_ST_CLOSED && ms->ev == MILTER_CONNECT) {
        struct endpoint *ep = endpoint_of(m->set.spec, 0);
        if (!ep) {
            msg_warn("connect to Milter service %s: more than %d milter endpoints",
                     m->set.spec, ENDPOINTS_MAX);
            fail(ms, m);
            milter_answered(ms);
            return;
        }
        if (endpoint_resolving(ep)) {
            wait_resolved(ms, m);
            return;   /* timer_cb goes on */
        }
        start_connect(ms, m, ep);
        if (m->fd < 0)
            milter_answered(ms);
        return;   /* else io_cb goes on */
    }
    milter_buf_reset(&ms->out);
    enum milter_step step = milter_event(m, ms->ev, &ms->args, macro_value, ms, &ms->out);
    if (step != MILTER_SKIP) {
        ms->phase = PH_EVENT;
        send_request(ms, m, step == MILTER_SEND);
        if (m->fd >= 0 && (step == MILTER_SEND || !ms->sent))
            return;   /* io_cb goes on */
    }
    milter_answered(ms);
}

/* The event's text; "" when out of memory (the event still goes out). */
static const char *set_text(struct smtpd_milters *ms, const char *text)
{
    free(ms->text);
    ms->text = strdup(text);
    return ms->text ? ms->text : "";
}

static void set_str(char **slot, const char *value)
{
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

static void set_rcpt(struct smtpd_milters *ms, const char *rcpt)
{
    set_str(&ms->rcpt, rcpt);
}

/* A new transaction, or none: forget the last one's addresses. */
static void forget_transaction(struct smtpd_milters *ms)
{
    set_rcpt(ms, NULL);
    set_str(&ms->rcpt_reject, NULL);
    set_str(&ms->first_rcpt, NULL);
    set_str(&ms->auth_author, NULL);
}

/* The session's milters, none chosen yet. */
static struct smtpd_milters *session_milters(struct session *s)
{
    struct smtpd_milters *ms = calloc(1, sizeof(*ms));
    if (!ms || !(ms->timer = evtimer_new(smtpd_base, timer_cb, ms))) {
        free(ms);
        msg_warn("milters: out of memory");
        return NULL;
    }
    ms->s = s;
    s->milters = ms;
    return ms;
}

static void add_milters(struct smtpd_milters *ms, const struct milter_settings *set, size_t n)
{
    for (size_t i = 0; i < n && ms->n < MILTERS_MAX; i++)
        if ((ms->m[ms->n] = milter_new(&set[i])))
            ms->n++;
}

/* smtpd_milter_maps' answer for the client's address: the session's
 * milters (1), none (DISABLE: 0), smtpd_milters when the address is not
 * listed, the answer is malformed or the lookup failed, as Postfix; -1
 * while a table server is asked (maps_resumed comes back). */
static void maps_resumed(void *owner);

static int choose_milters(struct smtpd_milters *ms)
{
    char *value = NULL, err[256];
    struct milter_settings set[MILTERS_MAX];
    smtpd_lookup_async_begin(ms, maps_resumed);
    int rc = lookup_list_get(cfg.maps, ms->s->addr, &value);
    smtpd_lookup_async_end();
    if (rc == LOOKUP_PENDING)
        return -1;
    smtpd_lookup_async_reset(ms);
    int n = -1;
    if (rc == LOOKUP_FOUND && strcasecmp(value, "DISABLE") == 0)
        n = 0;
    else if (rc == LOOKUP_FOUND &&
             (n = milter_list_parse(value, set, MILTERS_MAX, err, sizeof(err))) < 0)
        msg_warn("smtpd_milter_maps: %s in the answer for %s", err, ms->s->addr);
    else if (rc == LOOKUP_TEMPFAIL)
        msg_warn("%s lookup error for \"%s\"", var.smtpd_milter_maps, ms->s->addr);
    free(value);
    if (n > 0)
        add_milters(ms, set, (size_t)n);
    else if (n < 0)
        add_milters(ms, cfg.set, cfg.n);
    return ms->n > 0;
}

/* Run ms->ev: 1 with *reply when no milter needed waiting for, else 0
 * and done() later. */
static int run(struct session *s, smtpd_milter_done_fn done, const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    ms->cur = 0;
    ms->sync = 1;
    ms->finished = 0;
    ms->done = NULL;
    advance(ms);
    ms->sync = 0;
    if (ms->finished) {
        *reply = ms->answer;
        return 1;
    }
    ms->done = done;
    return 0;
}

/* Only one stage at a time: the session waits for each. */
static int start(struct session *s, enum milter_event ev, smtpd_milter_done_fn done,
                 const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms || ms->handed || ms->discard)
        return 1;
    ms->ev = ev;
    memset(&ms->args, 0, sizeof(ms->args));
    return run(s, done, reply);
}

int smtpd_milter_active(const struct session *s)
{
    const struct smtpd_milters *ms = s->milters;
    for (size_t i = 0; ms && i < ms->n; i++)
        if (ms->m[i]->fd >= 0)
            return 1;
    return 0;
}

/* The connect event's arguments. */
static void connect_args(struct smtpd_milters *ms)
{
    struct session *s = ms->s;
    char name[INET6_ADDRSTRLEN + 2];
    ms->ev = MILTER_CONNECT;
    memset(&ms->args, 0, sizeof(ms->args));
    /* Sendmail's form of a client without a name: "[addr]" */
    snprintf(name, sizeof(name), "[%s]", s->addr);
    ms->args.client_name = set_text(ms, strcmp(s->name, SMTPD_PEER_UNKNOWN) == 0 ? name : s->name);
    ms->args.client_addr = s->addr;
    ms->args.family = strchr(s->addr, ':') ? SMFIA_INET6 : SMFIA_INET;
    ms->args.port = (unsigned)atoi(s->port);
}

/* A table server answered: the milters are chosen, on to the connect. */
static void maps_resumed(void *owner)
{
    struct smtpd_milters *ms = owner;
    if (ms->phase != PH_CHOOSE || choose_milters(ms) < 0)
        return;
    ms->phase = PH_IDLE;
    connect_args(ms);
    ms->cur = 0;
    advance(ms);   /* done() at the end, as for any stage that waited */
}

int smtpd_milter_connect(struct session *s, smtpd_milter_done_fn done, const char **reply)
{
    *reply = NULL;
    if ((!cfg.n && !cfg.maps) || smtpd_cfg.stand_alone || s->milters)
        return 1;
    struct smtpd_milters *ms = session_milters(s);
    if (!ms)
        return 1;
    if (!cfg.maps) {
        add_milters(ms, cfg.set, cfg.n);
    } else {
        int rc = choose_milters(ms);
        if (rc < 0) {
            ms->phase = PH_CHOOSE;
            ms->done = done;
            return 0;
        }
        if (rc == 0) {   /* none for this client */
            smtpd_milter_end(s);
            return 1;
        }
    }
    connect_args(ms);
    return run(s, done, reply);
}

int smtpd_milter_helo(struct session *s, const char *helo, smtpd_milter_done_fn done,
                      const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms)
        return 1;
    ms->ev = MILTER_HELO;
    memset(&ms->args, 0, sizeof(ms->args));
    ms->args.text = set_text(ms, helo);
    return run(s, done, reply);
}

/* "<address>" and the ESMTP parameters, split on spaces, into ms->argv. */
static void envelope_argv(struct smtpd_milters *ms, const char *addr, const char *params)
{
    size_t n = 0;
    char quoted[ADDRESS_MAX + 2];
    if (address_quote(addr, quoted, sizeof(quoted)) < 0)
        snprintf(quoted, sizeof(quoted), "%s", addr);
    free(ms->argbuf);
    /* "<quoted>" NUL params NUL */
    if (asprintf(&ms->argbuf, "<%s>%c%s", quoted, 0, params ? params : "") < 0) {
        ms->argbuf = NULL;
        ms->argv[0] = NULL;
        ms->args.argv = ms->argv;
        return;
    }
    ms->argv[n++] = ms->argbuf;
    char *save = NULL;
    for (char *t = strtok_r(ms->argbuf + strlen(ms->argbuf) + 1, " ", &save); t && n < ARGV_MAX;
         t = strtok_r(NULL, " ", &save))
        ms->argv[n++] = t;
    ms->argv[n] = NULL;
    ms->args.argv = ms->argv;
}

/* {auth_author}: MAIL's AUTH= value as the client wrote it (xtext and
 * all, control characters as '?'), none for AUTH=<>, as Postfix. */
static void set_auth_author(struct smtpd_milters *ms)
{
    for (size_t i = 1; ms->argv[0] && ms->argv[i]; i++) {
        const char *p = ms->argv[i];
        if (strncasecmp(p, "AUTH=", 5) != 0 || strcmp(p + 5, "<>") == 0)
            continue;
        if ((ms->auth_author = strdup(p + 5)))
            for (char *c = ms->auth_author; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    *c = '?';
        return;
    }
}

int smtpd_milter_mail(struct session *s, const char *sender, const char *params,
                      smtpd_milter_done_fn done, const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms)
        return 1;
    ms->hold = ms->discard = 0;
    forget_transaction(ms);
    ms->ev = MILTER_MAIL;
    memset(&ms->args, 0, sizeof(ms->args));
    envelope_argv(ms, sender, params);
    set_auth_author(ms);
    ms->mail_sent = 1;
    return run(s, done, reply);
}

int smtpd_milter_rcpt(struct session *s, const char *rcpt, const char *params,
                      const char *rejected, smtpd_milter_done_fn done, const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms || ms->discard)
        return 1;
    set_rcpt(ms, rcpt);
    set_str(&ms->rcpt_reject, rejected);
    ms->ev = MILTER_RCPT;
    memset(&ms->args, 0, sizeof(ms->args));
    envelope_argv(ms, rcpt, params);
    ms->args.rejected = rejected != NULL;
    return run(s, done, reply);
}

int smtpd_milter_data(struct session *s, smtpd_milter_done_fn done, const char **reply)
{
    return start(s, MILTER_DATA, done, reply);
}

int smtpd_milter_unknown(struct session *s, const char *line, smtpd_milter_done_fn done,
                         const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms || ms->handed)
        return 1;
    ms->ev = MILTER_UNKNOWN;
    memset(&ms->args, 0, sizeof(ms->args));
    ms->args.text = set_text(ms, line);
    return run(s, done, reply);
}

/* --- what the client hears --- */

/* "from=<a> to=<b> proto=ESMTP helo=<h>" as Postfix's smtpd_whatsup. */
static void whatsup(struct session *s, const char *stage, char *out, size_t len)
{
    char q[ADDRESS_MAX + 2];
    size_t o = 0;
    const char *sender = smtpd_tx_sender(s);
    int n;
#define ADD(...)                                                                   \
    do {                                                                           \
        n = snprintf(out + o, len - o, __VA_ARGS__);                               \
        if (n > 0 && (size_t)n < len - o)                                          \
            o += (size_t)n;                                                        \
    } while (0)
    out[0] = 0;
    if (sender)
        ADD(" from=<%s>", address_quote(sender, q, sizeof(q)) == 0 ? q : sender);
    const char *rcpt = s->milters ? macro_rcpt(s->milters) : NULL;
    if (rcpt && sender && (strcmp(stage, "RCPT") == 0 || strcmp(stage, "DATA") == 0))
        ADD(" to=<%s>", address_quote(rcpt, q, sizeof(q)) == 0 ? q : rcpt);
    ADD(" proto=%s", s->esmtp ? "ESMTP" : "SMTP");
    if (s->helo[0])
        ADD(" helo=<%s>", s->helo);
#undef ADD
}

const char *smtpd_milter_verdict(struct session *s, const char *stage, const char *reply)
{
    static char answer[MILTER_REPLY_MAX];
    struct smtpd_milters *ms = s->milters;
    char what[ADDRESS_MAX * 2 + 512], shown[MILTER_REPLY_MAX];
    const char *action = "milter-reject", *text;
    const char *qid = smtpd_tx_queue_id(s);
    if (ms && strcmp(stage, "RCPT") == 0 && !ms->first_rcpt &&
        (!reply || reply[0] == 'H' || reply[0] == 'D'))
        set_str(&ms->first_rcpt, ms->rcpt);   /* accepted, unless the queue file fails */
    if (!reply || !ms)
        return NULL;
    snprintf(answer, sizeof(answer), "%s", reply);
    switch (reply[0]) {
    case 'H':
        if (ms->hold)
            return NULL;
        ms->hold = 1;
        snprintf(ms->hold_reason, sizeof(ms->hold_reason), "%s", reply + 1);
        action = "milter-hold";
        text = reply[1] ? reply + 1 : "milter triggers HOLD action";
        reply = NULL;
        break;
    case 'D':
        if (ms->discard)
            return NULL;
        ms->discard = 1;
        action = "milter-discard";
        text = "milter triggers DISCARD action";
        reply = NULL;
        break;
    case 'S':
        snprintf(answer, sizeof(answer), "421 4.7.0 Server closing connection");
        reply = text = answer;
        smtpd_session_close_after_reply(s);
        break;
    default:
        reply = text = answer;
        if (strncmp(answer, "421", 3) == 0)
            smtpd_session_close_after_reply(s);   /* 421 means the end */
        break;
    }
    whatsup(s, stage, what, sizeof(what));
    milter_printable(text, shown, sizeof(shown));
    msg_info("%s: %s: %s from %s: %s;%s", qid ? qid : "NOQUEUE", action, stage, s->namaddr,
             shown, what);
    return reply;
}

/* --- ends --- */

/* Best effort, without waiting: ABORT and QUIT get no reply. A milter
 * whose socket is full is dropped rather than waited for. */
static void send_now(struct smtpd_milters *ms, enum milter_event ev)
{
    for (size_t i = 0; i < ms->n; i++) {
        struct milter *m = ms->m[i];
        if (m->fd < 0)
            continue;
        struct milter_buf b = {0};
        size_t off = 0;
        if (milter_event(m, ev, NULL, NULL, NULL, &b) != MILTER_SKIP &&
            milter_tx_write(&b, &off, m->fd) != 1 && ev == MILTER_ABORT) {
            msg_warn("milter %s: error writing command: %s", m->set.spec,
                     errno ? strerror(errno) : "socket full");
            fail(ms, m);
        }
        milter_buf_free(&b);
    }
}

/* A stage in progress is dropped: its milter is in an unknown state. */
static void cancel(struct smtpd_milters *ms)
{
    if (ms->phase == PH_IDLE || ms->cur >= ms->n)
        return;
    evtimer_del(ms->timer);
    struct milter *m = ms->m[ms->cur];
    if (m->fd >= 0)
        fail(ms, m);   /* its answer will not be read */
    ms->phase = PH_IDLE;
    ms->done = NULL;
}

void smtpd_milter_abort(struct session *s)
{
    struct smtpd_milters *ms = s->milters;
    if (!ms || ms->handed)
        return;
    cancel(ms);
    if (ms->mail_sent)
        send_now(ms, MILTER_ABORT);
    ms->mail_sent = ms->hold = ms->discard = 0;
    forget_transaction(ms);
}

void smtpd_milter_end(struct session *s)
{
    struct smtpd_milters *ms = s->milters;
    if (!ms)
        return;
    cancel(ms);
    if (cfg.maps)
        smtpd_lookup_async_forget(ms);
    if (!ms->handed)
        send_now(ms, MILTER_QUIT);
    for (size_t i = 0; i < ms->n; i++) {
        close_milter(ms, ms->m[i]);
        milter_free(ms->m[i]);
    }
    if (ms->io)
        event_free(ms->io);
    event_free(ms->timer);
    milter_buf_free(&ms->out);
    milter_rx_reset(&ms->rx);
    free(ms->text);
    free(ms->argbuf);
    free(ms->answer);
    forget_transaction(ms);
    free(ms);
    s->milters = NULL;
}

/* --- the message, through cleanup --- */

size_t smtpd_milter_fds(struct session *s, int *fds, size_t max)
{
    struct smtpd_milters *ms = s->milters;
    size_t n = 0;
    if (!ms || ms->discard)
        return 0;
    ms->npassed = 0;
    for (size_t i = 0; i < ms->n && n < max; i++)
        if (ms->m[i]->fd >= 0 && milter_in_message(ms->m[i])) {
            ms->passed[n] = i;
            fds[n++] = ms->m[i]->fd;
        }
    ms->npassed = n;
    return n;
}

/* The values of the content-stage macros smtpd knows ("i" is cleanup's). */
static void send_macros(struct smtpd_milters *ms, struct smtpd_submit *sub)
{
    char names[2 * MILTER_MACRO_LIST_MAX + 2], attr[2048];
    for (size_t k = 0; k < ms->npassed; k++) {
        struct milter *m = ms->m[ms->passed[k]];
        snprintf(names, sizeof(names), "%s %s", m->macros[SMFIM_EOH] ? m->macros[SMFIM_EOH] : "",
                 m->macros[SMFIM_EOM] ? m->macros[SMFIM_EOM] : "");
        for (char *save = NULL, *name = strtok_r(names, " ,\t\r\n", &save); name;
             name = strtok_r(NULL, " ,\t\r\n", &save)) {
            const char *v = strcmp(name, "i") == 0 ? NULL : macro_value(ms, name);
            if (v && (size_t)snprintf(attr, sizeof(attr), "%s=%s", name, v) < sizeof(attr))
                smtpd_submit_attr(sub, "milter_macro", attr);
        }
    }
}

void smtpd_milter_message(struct session *s, struct smtpd_submit *sub)
{
    struct smtpd_milters *ms = s->milters;
    char state[4096];
    if (!ms)
        return;
    if (ms->hold)
        smtpd_submit_attr(sub, "milter_hold", ms->hold_reason);
    if (ms->discard)
        smtpd_submit_attr(sub, "milter_discard", "1");
    for (size_t k = 0; k < ms->npassed; k++) {
        if (milter_export(ms->m[ms->passed[k]], state, sizeof(state)) < 0)
            snprintf(state, sizeof(state), "-");   /* cleanup skips it */
        smtpd_submit_attr(sub, "milter", state);
    }
    send_macros(ms, sub);
}

void smtpd_milter_handed(struct session *s)
{
    if (s->milters && s->milters->npassed)
        s->milters->handed = 1;
}

void smtpd_milter_returned(struct session *s, const char *const *states, size_t n)
{
    struct smtpd_milters *ms = s->milters;
    if (!ms)
        return;
    int was_handed = ms->handed;
    ms->handed = 0;
    for (size_t k = 0; was_handed && k < ms->npassed; k++) {
        struct milter *m = ms->m[ms->passed[k]];
        struct milter *back = k < n ? milter_import(states[k]) : NULL;
        if (!back) {
            if (m->fd >= 0)
                fail(ms, m);   /* no answer: the connection may be anywhere */
            continue;
        }
        m->state = back->state == MILTER_ST_MESSAGE ? MILTER_ST_ENVELOPE : back->state;
        free(m->def_reply);
        m->def_reply = back->def_reply ? strdup(back->def_reply) : NULL;
        milter_free(back);
        if (milter_wants_close(m))
            close_milter(ms, m);
    }
    ms->npassed = 0;
}
