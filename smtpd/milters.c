/* milters.c - smtpd_milters on smtpd's event loop (milters.h).
 *
 * Every session connects to each milter when it starts (the connections
 * are the session's: libmilter closes a connection when its SMTP session
 * ends), negotiates, and sends the connect event before the banner. Each
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
#include "milters.h"
#include "session.h"
#include "smtpd.h"
#include "submit.h"
#include "transaction.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "milter.h"
#include "resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MILTERS_MAX 32
#define ARGV_MAX 32

/* smtpd_milters of this process, with each endpoint's address. */
static struct {
    struct milter_settings set[MILTERS_MAX];
    struct sockaddr_storage addr[MILTERS_MAX];
    socklen_t addrlen[MILTERS_MAX];
    char error[MILTERS_MAX][128];   /* why the endpoint cannot be reached */
    size_t n;
} cfg;

enum phase { PH_IDLE, PH_CONNECT, PH_NEGOTIATE, PH_EVENT };

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
    /* the transaction */
    char *rcpt;                    /* of the RCPT event, for {rcpt_addr} and logs */
    int mail_sent;                 /* MAIL went out: ABORT when it ends */
    int hold, discard;
    char hold_reason[256];
    int handed;                    /* the connections are cleanup's */
    size_t passed[MILTERS_MAX];    /* which milters cleanup got, in order */
    size_t npassed;
};

static void advance(struct smtpd_milters *ms);

/* --- settings --- */

/* The address of an inet endpoint, found once per process: name lookups
 * would block the loop if done per session. */
static void endpoint_address(size_t i)
{
    char host[256], port[32];
    int is_unix;
    cfg.addrlen[i] = 0;
    if (milter_endpoint(cfg.set[i].spec, host, sizeof(host), port, sizeof(port), &is_unix) < 0) {
        snprintf(cfg.error[i], sizeof(cfg.error[i]), "bad endpoint");
        return;
    }
    if (is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)&cfg.addr[i];
        if (strlen(host) >= sizeof(un->sun_path)) {
            snprintf(cfg.error[i], sizeof(cfg.error[i]), "socket path too long");
            return;
        }
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", host);
        cfg.addrlen[i] = sizeof(*un);
        return;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(cfg.error[i], sizeof(cfg.error[i]), "%s", gai_strerror(rc));
        return;
    }
    memcpy(&cfg.addr[i], res->ai_addr, res->ai_addrlen);
    cfg.addrlen[i] = res->ai_addrlen;
    freeaddrinfo(res);
}

void smtpd_milter_init(void)
{
    char err[256];
    int n = milter_list_parse(var.smtpd_milters, cfg.set, MILTERS_MAX, err, sizeof(err));
    if (n < 0)
        msg_fatal("smtpd_milters: %s", err);
    cfg.n = (size_t)n;
    for (size_t i = 0; i < cfg.n; i++)
        endpoint_address(i);
    if (cfg.n)
        resolve_init();
}

/* --- macros (Postfix's smtpd values) --- */

static const char *client_name(const struct session *s, char *buf, size_t len)
{
    const char *bracket = strchr(s->namaddr, '[');
    size_t n = bracket ? (size_t)(bracket - s->namaddr) : strlen(s->namaddr);
    snprintf(buf, len, "%.*s", (int)n, s->namaddr);
    return buf;
}

static int socket_port(const struct session *s, int local, char *addr, size_t alen, char *port,
                       size_t plen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = (int)bufferevent_getfd(s->bev);
    if (fd < 0 || (local ? getsockname(fd, (struct sockaddr *)&ss, &sl)
                         : getpeername(fd, (struct sockaddr *)&ss, &sl)) < 0)
        return -1;
    return getnameinfo((struct sockaddr *)&ss, sl, addr, (socklen_t)alen, port, (socklen_t)plen,
                       NI_NUMERICHOST | NI_NUMERICSERV) == 0 ? 0 : -1;
}

/* {mail_host}, {mail_mailer} and the rcpt ones: the address's route. */
static const char *route_of(const char *addr, int host, char *buf, size_t len)
{
    struct route r;
    if (!addr || !*addr || resolve_recipient(NULL, addr, &r) < 0)
        return NULL;
    snprintf(buf, len, "%s", host ? r.nexthop : r.transport);
    return buf;
}

static const char *tls_value(const struct session *s, const char *name, char *buf, size_t len)
{
    SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    if (!ssl)
        return NULL;
    if (strcmp(name, "{tls_version}") == 0)
        return SSL_get_version(ssl);
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    if (!c)
        return NULL;
    if (strcmp(name, "{cipher}") == 0)
        return SSL_CIPHER_get_name(c);
    int bits = SSL_CIPHER_get_bits(c, NULL);
    snprintf(buf, len, "%d", bits);
    return buf;   /* {cipher_bits}; no client certificates: no cert_* */
}

static const char *session_macro(struct smtpd_milters *ms, const char *name, char *buf,
                                 size_t len)
{
    struct session *s = ms->s;
    char cname[256], port[32], addr[INET6_ADDRSTRLEN + 8];
    if (strcmp(name, "j") == 0)
        return var.myhostname;
    if (strcmp(name, "{daemon_name}") == 0)
        return var.milter_macro_daemon_name;
    if (strcmp(name, "v") == 0)
        return var.milter_macro_v;
    if (strcmp(name, "_") == 0) {
        snprintf(buf, len, "%s [%s]", client_name(s, cname, sizeof(cname)), s->addr);
        return buf;
    }
    if (strcmp(name, "{client_addr}") == 0)
        return s->addr;
    if (strcmp(name, "{client_name}") == 0 || strcmp(name, "{client_ptr}") == 0)
        return client_name(s, buf, len);
    if (strcmp(name, "{client_resolve}") == 0)
        return strcmp(client_name(s, cname, sizeof(cname)), "unknown") == 0 ? "FAIL" : "OK";
    if (strcmp(name, "{client_port}") == 0 || strcmp(name, "{daemon_port}") == 0 ||
        strcmp(name, "{daemon_addr}") == 0) {
        int local = strncmp(name, "{daemon", 7) == 0;
        if (socket_port(s, local, addr, sizeof(addr), port, sizeof(port)) < 0)
            return NULL;
        snprintf(buf, len, "%s", strstr(name, "port") ? port : addr);
        return buf;
    }
    if (strncmp(name, "{tls_", 5) == 0 || strncmp(name, "{cipher", 7) == 0)
        return tls_value(s, name, buf, len);
    if (strcmp(name, "{auth_type}") == 0)
        return s->sasl_user ? s->sasl_method : NULL;
    if (strcmp(name, "{auth_authen}") == 0)
        return s->sasl_user;
    return NULL;
}

static const char *transaction_macro(struct smtpd_milters *ms, const char *name, char *buf,
                                     size_t len)
{
    const char *sender = smtpd_tx_sender(ms->s);
    if (strcmp(name, "i") == 0)
        return smtpd_tx_queue_id(ms->s);
    if (!sender)
        return NULL;
    if (strcmp(name, "{mail_addr}") == 0)
        return address_quote(sender, buf, len) == 0 ? buf : sender;
    if (strcmp(name, "{mail_host}") == 0 || strcmp(name, "{mail_mailer}") == 0)
        return route_of(sender, name[6] == 'h', buf, len);
    if (!ms->rcpt)
        return NULL;
    if (strcmp(name, "{rcpt_addr}") == 0)
        return address_quote(ms->rcpt, buf, len) == 0 ? buf : ms->rcpt;
    if (strcmp(name, "{rcpt_host}") == 0 || strcmp(name, "{rcpt_mailer}") == 0)
        return route_of(ms->rcpt, name[6] == 'h', buf, len);
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
static void start_connect(struct smtpd_milters *ms, struct milter *m, size_t i)
{
    const struct sockaddr *sa = (const struct sockaddr *)&cfg.addr[i];
    if (!cfg.addrlen[i]) {
        msg_warn("connect to Milter service %s: %s", m->set.spec, cfg.error[i]);
        fail(ms, m);
        return;
    }
    m->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m->fd < 0 || (connect(m->fd, sa, cfg.addrlen[i]) < 0 && errno != EINPROGRESS)) {
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

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_milters *ms = arg;
    struct milter *m = ms->m[ms->cur];
    if (ms->phase == PH_CONNECT)
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
        start_connect(ms, m, ms->cur);
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

static void set_rcpt(struct smtpd_milters *ms, const char *rcpt)
{
    free(ms->rcpt);
    ms->rcpt = rcpt ? strdup(rcpt) : NULL;
}

static struct smtpd_milters *session_milters(struct session *s)
{
    if (s->milters || !cfg.n || smtpd_cfg.stand_alone)
        return s->milters;
    struct smtpd_milters *ms = calloc(1, sizeof(*ms));
    if (!ms || !(ms->timer = evtimer_new(smtpd_base, timer_cb, ms))) {
        free(ms);
        msg_warn("milters: out of memory");
        return NULL;
    }
    ms->s = s;
    for (size_t i = 0; i < cfg.n; i++)
        if ((ms->m[ms->n] = milter_new(&cfg.set[i])))
            ms->n++;
    s->milters = ms;
    return ms;
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

int smtpd_milter_connect(struct session *s, smtpd_milter_done_fn done, const char **reply)
{
    char name[256];
    struct smtpd_milters *ms = session_milters(s);
    *reply = NULL;
    if (!ms)
        return 1;
    ms->ev = MILTER_CONNECT;
    memset(&ms->args, 0, sizeof(ms->args));
    ms->args.client_name = set_text(ms, client_name(s, name, sizeof(name)));
    ms->args.client_addr = s->addr;
    ms->args.family = strchr(s->addr, ':') ? SMFIA_INET6 : SMFIA_INET;
    char addr[INET6_ADDRSTRLEN + 8], port[32];
    ms->args.port = socket_port(s, 0, addr, sizeof(addr), port, sizeof(port)) == 0
                        ? (unsigned)atoi(port) : 0;
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

int smtpd_milter_mail(struct session *s, const char *sender, const char *params,
                      smtpd_milter_done_fn done, const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms)
        return 1;
    ms->hold = ms->discard = 0;
    set_rcpt(ms, NULL);
    ms->ev = MILTER_MAIL;
    memset(&ms->args, 0, sizeof(ms->args));
    envelope_argv(ms, sender, params);
    ms->mail_sent = 1;
    return run(s, done, reply);
}

int smtpd_milter_rcpt(struct session *s, const char *rcpt, const char *params,
                      smtpd_milter_done_fn done, const char **reply)
{
    struct smtpd_milters *ms = s->milters;
    *reply = NULL;
    if (!ms || ms->discard)
        return 1;
    set_rcpt(ms, rcpt);
    ms->ev = MILTER_RCPT;
    memset(&ms->args, 0, sizeof(ms->args));
    envelope_argv(ms, rcpt, params);
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
    const char *rcpt = s->milters ? s->milters->rcpt : NULL;
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
    set_rcpt(ms, NULL);
}

void smtpd_milter_end(struct session *s)
{
    struct smtpd_milters *ms = s->milters;
    if (!ms)
        return;
    cancel(ms);
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
    free(ms->rcpt);
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
