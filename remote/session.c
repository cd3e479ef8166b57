/* session.c - one SMTP (or LMTP) client connection of remote, and the
 * cache of idle ones (remote.h).
 *
 * A session is a bufferevent (a TLS filter on top of the socket after
 * STARTTLS) with a queue of expected replies. Commands are written as the
 * owner likes (pipelined or not); replies are read line by line through the
 * bounded parser of reply.c and handed, in order, to the callback queued
 * for them. One timer bounds every stage: the connect, each expected reply,
 * each step of the message content; anything that goes wrong (timeout, EOF,
 * a malformed or oversized reply, unexpected data) breaks the session and
 * is reported once, with a Postfix-style text ("lost connection with
 * host[addr] while sending RCPT TO").
 *
 * Opening walks the server through the greeting, EHLO (HELO when EHLO is
 * refused; LHLO, without a fallback, for LMTP), STARTTLS as
 * smtp_tls_security_level says, and AUTH (auth.c) when
 * smtp_sasl_auth_enable is on. An LMTP target may be a UNIX socket
 * (relative paths are under the queue directory). A finished
 * transaction leaves the session idle: it then waits in the cache under its
 * nexthop for smtp_connection_cache_time_limit, watched for EOF, and the
 * next job for the same nexthop takes it instead of connecting again.
 */
#include "remote.h"

#include "config.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_HIGH_WATER (2 * REPLY_LINE_MAX + 64)   /* input we hold at most */
#define WRITE_LOW_WATER 16384      /* refill message content below this */
#define TLS_RAW_HIGH_WATER 65536   /* encrypted input held at most */
#define CACHE_MAX 256              /* idle sessions kept, all nexthops */
#define QUIT_WAIT_MAX 10           /* seconds we wait for the QUIT reply */

enum phase { PH_CONNECT, PH_SETUP, PH_TLS_HANDSHAKE, PH_READY, PH_CACHED, PH_QUIT };

struct expect {
    session_reply_fn fn;
    long timeout;
    const char *command;
    const char *doing;
};

struct session {
    enum phase phase;
    int fd;
    struct bufferevent *bev;
    struct event *timer;
    struct event *connect_ev;      /* writability of the connecting socket */
    int connect_errno;             /* connect(2) failed at once */
    struct target target;
    char peer[HOST_RELAY_SIZE];    /* host[addr] */
    char relay[HOST_RELAY_SIZE];   /* host[addr]:port */
    char nexthop_name[DNS_NAME_SIZE];
    struct tls_policy tls;         /* tls.tlsa only while opening */
    char nexthop[DNS_NAME_SIZE + 16];
    struct sasl_creds creds;       /* the sender's, when found */
    struct auth_state *auth;       /* while AUTH runs */
    int no_tls, tls_active;
    struct smtp_features feat;
    /* opening */
    session_open_fn open_done;
    void *open_owner;
    int greeted;
    /* the transaction owner */
    void *owner;
    session_error_fn on_error;
    /* replies */
    struct smtp_reply reply;
    struct expect *exp;
    size_t exp_head, exp_count, exp_cap;
    session_drain_fn on_drain;
    long drain_timeout;
    /* lifetime */
    int broken, reused, cb_depth, free_pending;
    time_t created;
    long uses;
    char key[DNS_NAME_SIZE + 16];
    struct session *prev, *next;   /* cache list, most recent first */
};

static struct {
    struct session *head, *tail;
    size_t idle;
    size_t total;
} sc;

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_fail(struct session *s, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void setup_greeting(void *owner, const struct smtp_reply *r);
static void session_quit(struct session *s);

size_t session_count(void)
{
    return sc.total;
}

const struct smtp_features *session_features(const struct session *s)
{
    return &s->feat;
}

const char *session_relay(const struct session *s)
{
    return s->relay;
}

const char *session_peer(const struct session *s)
{
    return s->peer;
}

int session_reused(const struct session *s)
{
    return s->reused;
}

int session_tls_active(const struct session *s)
{
    return s->tls_active;
}

struct auth_state **session_auth_state(struct session *s)
{
    return &s->auth;
}

struct evbuffer *session_output(struct session *s)
{
    return bufferevent_get_output(s->bev);
}

/* --- lifetime --------------------------------------------------------- */

static void cache_unlink(struct session *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        sc.head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    else
        sc.tail = s->prev;
    s->prev = s->next = NULL;
    sc.idle--;
}

static void session_destroy(struct session *s)
{
    if (s->phase == PH_CACHED)
        cache_unlink(s);
    if (s->bev != NULL)
        bufferevent_free(s->bev);
    else if (s->fd >= 0)
        close(s->fd);
    if (s->connect_ev != NULL)
        event_free(s->connect_ev);
    event_free(s->timer);
    auth_state_free(s->auth);
    auth_creds_clear(&s->creds);
    free(s->exp);
    free(s);
    sc.total--;
}

/* Free now, or when the callback that is running returns. */
static void session_free(struct session *s)
{
    if (s->cb_depth > 0) {
        s->free_pending = 1;
        if (s->bev != NULL)
            bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        evtimer_del(s->timer);
        return;
    }
    session_destroy(s);
}

/* After a callback: 1 when the session is gone and must not be touched. */
static int session_leave_cb(struct session *s)
{
    if (--s->cb_depth == 0 && s->free_pending) {
        session_destroy(s);
        return 1;
    }
    return s->free_pending;
}

static void arm_timer(struct session *s, long seconds)
{
    struct timeval tv = {.tv_sec = seconds > 0 ? seconds : 1};

    evtimer_add(s->timer, &tv);
}

/* The timer follows the oldest expected reply, else the content flow. */
static void rearm_for_state(struct session *s)
{
    if (s->exp_count > 0)
        arm_timer(s, s->exp[s->exp_head].timeout);
    else if (s->on_drain != NULL)
        arm_timer(s, s->drain_timeout);
    else
        evtimer_del(s->timer);
}

static const char *current_doing(const struct session *s)
{
    if (s->exp_count > 0)
        return s->exp[s->exp_head].doing;
    if (s->on_drain != NULL)
        return "sending message body";
    return "waiting for the next command";
}

/* --- failures --------------------------------------------------------- */

static void tls_handshake_failed(struct session *s, const char *why);

static void report_failure(struct session *s, struct session_failure *f)
{
    enum phase phase = s->phase;

    s->broken = 1;
    s->exp_count = 0;
    s->on_drain = NULL;
    evtimer_del(s->timer);
    if (s->bev != NULL)
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    f->greeted = s->greeted;
    if (phase == PH_CONNECT || phase == PH_SETUP || phase == PH_TLS_HANDSHAKE) {
        s->cb_depth++;
        s->open_done(s->open_owner, NULL, f);
        s->cb_depth--;
        session_free(s);
    } else if (phase == PH_READY && s->on_error != NULL) {
        s->cb_depth++;
        s->on_error(s->owner, f);
        session_leave_cb(s);
    } else {
        session_free(s);   /* idle in the cache, or quitting */
    }
}

static void session_fail(struct session *s, const char *dsn, const char *fmt, ...)
{
    struct session_failure f;
    va_list ap;

    memset(&f, 0, sizeof(f));
    snprintf(f.dsn, sizeof(f.dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(f.text, sizeof(f.text), fmt, ap);
    va_end(ap);
    report_failure(s, &f);
}

static void fail_lost(struct session *s)
{
    session_fail(s, "4.4.2", "lost connection with %s while %s", s->peer, current_doing(s));
}

/* --- replies ---------------------------------------------------------- */

void session_said(const struct session *s, const struct smtp_reply *r, const char *command,
                  char *out, size_t outlen)
{
    char text[DELIVERY_TEXT_MAX], head[HOST_RELAY_SIZE + 16], tail[64];
    size_t fixed, room;

    text_printf(head, sizeof(head), "host %s said: ", s->peer);
    text_printf(tail, sizeof(tail), " (in reply to %s command)", command);
    /* A long reply is cut, never the words around it. */
    fixed = strlen(head) + strlen(tail);
    room = outlen > fixed + 1 ? outlen - fixed : 1;
    delivery_text_clean(text, room < sizeof(text) ? room : sizeof(text), r->text);
    text_printf(out, outlen, "%s%s%s", head, text, tail);
}

void session_send(struct session *s, const char *line)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);

    evbuffer_add(out, line, strlen(line));
    evbuffer_add(out, "\r\n", 2);
}

void session_expect(struct session *s, session_reply_fn fn, long timeout, const char *command,
                    const char *doing)
{
    if (s->exp_count == s->exp_cap) {
        size_t cap = s->exp_cap ? s->exp_cap * 2 : 8;
        struct expect *e = malloc(cap * sizeof(*e));
        if (e == NULL)
            msg_fatal("out of memory for %zu expected replies", cap);
        for (size_t i = 0; i < s->exp_count; i++)
            e[i] = s->exp[(s->exp_head + i) % s->exp_cap];
        free(s->exp);
        s->exp = e;
        s->exp_cap = cap;
        s->exp_head = 0;
    }
    s->exp[(s->exp_head + s->exp_count) % s->exp_cap] =
        (struct expect){.fn = fn, .timeout = timeout, .command = command, .doing = doing};
    if (s->exp_count++ == 0)
        rearm_for_state(s);
}

/* A complete reply: hand it to the oldest expectation. Returns 1 when the
 * session is gone. */
static int deliver_reply(struct session *s)
{
    struct expect e = s->exp[s->exp_head];
    void *owner = s->phase == PH_READY ? s->owner : s;

    s->exp_head = (s->exp_head + 1) % s->exp_cap;
    s->exp_count--;
    rearm_for_state(s);
    s->cb_depth++;
    e.fn(owner, &s->reply);
    reply_reset(&s->reply);
    return session_leave_cb(s);
}

/* Take one line from in into line (at most REPLY_LINE_MAX bytes).
 * Returns its length, -1 when no complete line is there yet, -2 when the
 * line is too long. */
static ssize_t take_line(struct evbuffer *in, char *line)
{
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);

    if (eol.pos < 0)
        return evbuffer_get_length(in) > REPLY_LINE_MAX + 1 ? -2 : -1;
    if ((size_t)eol.pos > REPLY_LINE_MAX)
        return -2;
    evbuffer_remove(in, line, (size_t)eol.pos);
    evbuffer_drain(in, eol_len);
    line[eol.pos] = 0;
    return eol.pos;
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char line[REPLY_LINE_MAX + 1];

    while (!s->broken && !s->free_pending && evbuffer_get_length(in) > 0) {
        if (s->exp_count == 0) {
            if (s->phase == PH_CACHED)
                session_free(s);   /* a server talking while idle: drop it */
            else
                session_fail(s, "4.5.0", "host %s sent unexpected data while %s", s->peer,
                             current_doing(s));
            return;
        }
        ssize_t n = take_line(in, line);
        if (n == -1)
            return;
        if (n == -2) {
            session_fail(s, "4.5.0", "host %s sent an oversized reply while %s", s->peer,
                         current_doing(s));
            return;
        }
        int rc = reply_add_line(&s->reply, line, (size_t)n);
        if (rc == REPLY_BAD) {
            session_fail(s, "4.5.0", "host %s sent a malformed reply while %s", s->peer,
                         current_doing(s));
            return;
        }
        if (rc == REPLY_DONE && deliver_reply(s))
            return;
    }
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    if (s->on_drain == NULL || s->broken)
        return;
    arm_timer(s, s->drain_timeout);
    s->cb_depth++;
    s->on_drain(s->owner);
    session_leave_cb(s);
}

void session_on_drain(struct session *s, session_drain_fn fn, long timeout)
{
    s->on_drain = fn;
    s->drain_timeout = timeout;
    rearm_for_state(s);
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;

    if (s->phase == PH_CONNECT)
        session_fail(s, "4.4.1", "connect to %s: %s", s->relay,
                     s->connect_errno ? strerror(s->connect_errno) : "Connection timed out");
    else if (s->phase == PH_CACHED)
        session_quit(s);   /* idle long enough */
    else if (s->phase == PH_QUIT)
        session_free(s);
    else if (s->phase == PH_TLS_HANDSHAKE)
        tls_handshake_failed(s, "timed out");
    else
        session_fail(s, "4.4.2", "conversation with %s timed out while %s", s->peer,
                     current_doing(s));
}

/* --- TLS -------------------------------------------------------------- */

static int tls_mandatory(const struct session *s)
{
    return tls_policy_mandatory(&s->tls);
}

static void session_ready(struct session *s)
{
    s->tls.tlsa = NULL;   /* the job's; not needed past the handshake */
    s->phase = PH_READY;
    evtimer_del(s->timer);
    s->cb_depth++;
    s->open_done(s->open_owner, s, NULL);
    session_leave_cb(s);
}

static void setup_ehlo(void *owner, const struct smtp_reply *r);
static void setup_auth(struct session *s);

static void send_ehlo(struct session *s)
{
    char line[DNS_NAME_SIZE + 8];
    const char *verb = remote_cfg.lmtp ? "LHLO" : "EHLO";

    snprintf(line, sizeof(line), "%s %s", verb, remote_cfg.helo_name);
    session_send(s, line);
    session_expect(s, setup_ehlo, remote_cfg.helo_timeout, verb,
                   remote_cfg.lmtp ? "performing the LHLO handshake"
                                   : "performing the EHLO handshake");
}

static void tls_established(struct session *s)
{
    char text[DELIVERY_TEXT_MAX];

    if (!tls_policy_established(bufferevent_openssl_get_ssl(s->bev), &s->tls, s->relay, text,
                                sizeof(text))) {
        session_fail(s, "4.7.5", "%s", text);
        return;
    }
    s->tls_active = 1;
    s->phase = PH_SETUP;
    /* RFC 3207: forget everything learned before TLS and ask again. */
    memset(&s->feat, 0, sizeof(s->feat));
    send_ehlo(s);
}

/* why is NULL for an OpenSSL error, else e.g. "timed out". Under "may" the
 * job tries the same server again without STARTTLS, as Postfix does. */
static void tls_handshake_failed(struct session *s, const char *why)
{
    char err[256];
    struct session_failure f;

    if (why == NULL)
        tls_error_text(err, sizeof(err));
    memset(&f, 0, sizeof(f));
    snprintf(f.dsn, sizeof(f.dsn), "4.7.5");
    text_printf(f.text, sizeof(f.text), "Cannot start TLS: handshake failure with %s: %s",
                s->peer, why != NULL ? why : err);
    f.retry_plain = !tls_mandatory(s);
    report_failure(s, &f);
}

static void start_tls(struct session *s)
{
    char err[256] = "";
    SSL *ssl = tls_policy_ssl(&s->tls, s->target.host, s->relay, s->nexthop_name, err,
                              sizeof(err));
    struct bufferevent *tls;

    if (ssl == NULL) {
        msg_warn("%s: %s", s->relay, err);
        session_fail(s, "4.7.5", "client TLS configuration problem");
        return;
    }
    tls = bufferevent_openssl_filter_new(remote_base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (tls == NULL) {
        SSL_free(ssl);
        session_fail(s, "4.7.5", "Cannot start TLS: out of memory");
        return;
    }
    /* The raw side must hold a whole TLS record (16 KB and change). */
    bufferevent_setwatermark(s->bev, EV_READ, 0, TLS_RAW_HIGH_WATER);
    s->bev = tls;
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    bufferevent_setcb(tls, session_read_cb, session_write_cb, session_event_cb, s);
    bufferevent_setwatermark(tls, EV_READ, 0, READ_HIGH_WATER);
    bufferevent_setwatermark(tls, EV_WRITE, WRITE_LOW_WATER, 0);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    s->phase = PH_TLS_HANDSHAKE;
    arm_timer(s, remote_cfg.starttls_timeout);
}

static void setup_starttls(void *owner, const struct smtp_reply *r)
{
    struct session *s = owner;
    char said[DELIVERY_TEXT_MAX];

    if (r->code != 220) {
        if (!tls_mandatory(s)) {
            setup_auth(s);   /* "may": go on in plain text */
            return;
        }
        session_said(s, r, "STARTTLS", said, sizeof(said));
        session_fail(s, r->code >= 500 ? "5.7.4" : "4.7.4", "%s", said);
        return;
    }
    /* Plain text pipelined behind the 220 could be an injection. */
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
        session_fail(s, "4.5.0", "host %s sent unexpected data after the STARTTLS reply",
                     s->peer);
        return;
    }
    start_tls(s);
}

static void auth_done(struct session *s, const struct session_failure *f)
{
    struct session_failure copy;

    if (f == NULL) {
        session_ready(s);
        return;
    }
    copy = *f;
    report_failure(s, &copy);
}

/* The last step before MAIL: AUTH, when configured (auth.c). */
static void setup_auth(struct session *s)
{
    if (!auth_enabled()) {
        session_ready(s);
        return;
    }
    auth_run(s, &s->creds, s->target.host, s->nexthop, auth_done);
}

/* After EHLO or HELO: STARTTLS when the policy and the server agree. */
static void setup_maybe_tls(struct session *s)
{
    if (s->tls_active || s->no_tls || s->tls.level == TLS_LEVEL_NONE) {
        setup_auth(s);
        return;
    }
    if (!s->feat.starttls) {
        if (!tls_mandatory(s))
            setup_auth(s);
        else
            session_fail(s, "4.7.4", "TLS is required, but was not offered by host %s",
                         s->peer);
        return;
    }
    session_send(s, "STARTTLS");
    session_expect(s, setup_starttls, remote_cfg.starttls_timeout, "STARTTLS",
                   "performing the STARTTLS handshake");
}

static void setup_helo(void *owner, const struct smtp_reply *r)
{
    struct session *s = owner;
    char said[DELIVERY_TEXT_MAX];

    if (r->code / 100 != 2) {
        session_said(s, r, "HELO", said, sizeof(said));
        session_fail(s, r->dsn, "%s", said);
        return;
    }
    memset(&s->feat, 0, sizeof(s->feat));
    s->feat.size_limit = -1;
    setup_maybe_tls(s);
}

static void setup_ehlo(void *owner, const struct smtp_reply *r)
{
    struct session *s = owner;
    char said[DELIVERY_TEXT_MAX];
    char line[DNS_NAME_SIZE + 8];

    if (r->code / 100 == 2) {
        reply_parse_ehlo(r, &s->feat);
        setup_maybe_tls(s);
        return;
    }
    /* LMTP has no HELO to fall back to (RFC 2033). */
    if (r->code / 100 == 5 && !s->tls_active && !remote_cfg.lmtp) {
        snprintf(line, sizeof(line), "HELO %s", remote_cfg.helo_name);
        session_send(s, line);
        session_expect(s, setup_helo, remote_cfg.helo_timeout, "HELO",
                       "performing the HELO handshake");
        return;
    }
    session_said(s, r, remote_cfg.lmtp ? "LHLO" : "EHLO", said, sizeof(said));
    session_fail(s, r->dsn, "%s", said);
}

static void setup_greeting(void *owner, const struct smtp_reply *r)
{
    struct session *s = owner;
    char text[DELIVERY_TEXT_MAX];

    s->greeted = 1;
    if (r->code / 100 != 2) {
        /* Another MX may take the mail, and this one may talk tomorrow: a
         * 5xx greeting only skips the server (Postfix's
         * smtp_skip_5xx_greeting = yes), it never bounces. */
        char dsn[sizeof(r->dsn)];
        snprintf(dsn, sizeof(dsn), "%s", r->dsn);
        dsn[0] = '4';
        delivery_text_clean(text, sizeof(text), r->text);
        session_fail(s, dsn, "host %s refused to talk to me: %s", s->peer, text);
        return;
    }
    send_ehlo(s);
}

/* --- connecting -------------------------------------------------------- */

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;

    if (what & BEV_EVENT_CONNECTED) {
        if (s->phase == PH_TLS_HANDSHAKE)
            tls_established(s);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (s->phase == PH_TLS_HANDSHAKE)
        tls_handshake_failed(s, NULL);
    else if (s->phase == PH_QUIT || s->phase == PH_CACHED)
        session_free(s);
    else
        fail_lost(s);
}

/* The socket is connected: wrap it and wait for the greeting. */
static void connected(struct session *s)
{
    s->bev = bufferevent_socket_new(remote_base, s->fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL) {
        session_fail(s, "4.3.0", "out of memory for a connection to %s", s->relay);
        return;
    }
    s->fd = -1;
    bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, READ_HIGH_WATER);
    bufferevent_setwatermark(s->bev, EV_WRITE, WRITE_LOW_WATER, 0);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    s->phase = PH_SETUP;
    session_expect(s, setup_greeting, remote_cfg.helo_timeout, "CONNECT",
                   "receiving the initial server greeting");
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    event_free(s->connect_ev);
    s->connect_ev = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        session_fail(s, "4.4.1", "connect to %s: %s", s->relay, strerror(err));
        return;
    }
    connected(s);
}

/* Where a target is; 0 when it cannot be addressed (a socket path that
 * is too long once made absolute). */
static socklen_t target_sockaddr(const struct target *t, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (t->path[0]) {
        /* A relative path is under the queue directory, as in Postfix. */
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        int n = t->path[0] == '/'
                    ? snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", t->path)
                    : snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s",
                               var.queue_directory, t->path);
        if (n < 0 || (size_t)n >= sizeof(sun->sun_path))
            return 0;
        sun->sun_family = AF_UNIX;
        return sizeof(*sun);
    }
    if (t->addr.family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)t->port);
        sin6->sin6_addr = t->addr.u.v6;
        return sizeof(*sin6);
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)t->port);
    sin->sin_addr = t->addr.u.v4;
    return sizeof(*sin);
}

/* smtp_bind_address / smtp_bind_address6: the source address of the
 * connection, when set for its family. */
static int bind_source(struct session *s)
{
    const struct dns_addr *src = s->target.addr.family == AF_INET6 ? &remote_cfg.bind6
                                                                   : &remote_cfg.bind4;
    struct target local;
    struct sockaddr_storage ss;
    char addr[INET6_ADDRSTRLEN];

    if (src->family == 0)
        return 0;
    memset(&local, 0, sizeof(local));
    local.addr = *src;
    if (bind(s->fd, (struct sockaddr *)&ss, target_sockaddr(&local, &ss)) == 0)
        return 0;
    int err = errno;
    dns_addr_str(src, addr, sizeof(addr));
    msg_warn("%s: bind %s: %s", s->relay, addr, strerror(err));
    errno = err;
    return -1;
}

/* Start the non-blocking connect; an immediate error is reported through
 * the timer so that the owner never hears back from inside session_open. */
static void start_connect(struct session *s)
{
    struct sockaddr_storage ss;
    socklen_t len = target_sockaddr(&s->target, &ss);
    struct timeval now = {0, 0};

    if (len == 0) {
        s->connect_errno = ENAMETOOLONG;
        s->fd = -1;
    } else if ((s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0))
               < 0) {
        s->connect_errno = errno;
    } else if (bind_source(s) < 0) {
        s->connect_errno = errno;
        close(s->fd);
        s->fd = -1;
    } else if (connect(s->fd, (struct sockaddr *)&ss, len) == 0 || errno == EINPROGRESS) {
        s->connect_ev = event_new(remote_base, s->fd, EV_WRITE, connect_cb, s);
        if (s->connect_ev == NULL || event_add(s->connect_ev, NULL) < 0)
            msg_fatal("cannot watch a connecting socket");
        arm_timer(s, remote_cfg.connect_timeout);
        return;
    } else {
        s->connect_errno = errno;
        close(s->fd);
        s->fd = -1;
    }
    evtimer_add(s->timer, &now);
}

void session_open(const struct target *t, const struct session_opts *o, session_open_fn done,
                  void *owner)
{
    struct session *s = calloc(1, sizeof(*s));
    char addr[INET6_ADDRSTRLEN];

    if (s == NULL || (s->timer = evtimer_new(remote_base, session_timer_cb, s)) == NULL)
        msg_fatal("out of memory for an SMTP session");
    sc.total++;
    s->fd = -1;
    s->target = *t;
    s->open_done = done;
    s->open_owner = owner;
    s->no_tls = o->no_tls;
    snprintf(s->nexthop, sizeof(s->nexthop), "%s", o->nexthop != NULL ? o->nexthop : "");
    if (o->creds != NULL && o->creds->found)
        s->creds = *o->creds;
    s->created = time(NULL);
    s->phase = PH_CONNECT;
    snprintf(s->nexthop_name, sizeof(s->nexthop_name), "%s", o->nexthop_name);
    s->tls = *o->tls;
    if (t->path[0]) {
        /* host[path], Postfix's name for an LMTP socket, without a port. */
        text_printf(s->peer, sizeof(s->peer), "%s[%s]", t->host, t->path);
        text_printf(s->relay, sizeof(s->relay), "%s", s->peer);
    } else {
        dns_addr_str(&t->addr, addr, sizeof(addr));
        text_printf(s->peer, sizeof(s->peer), "%s[%s]", t->host, addr);
        text_printf(s->relay, sizeof(s->relay), "%s:%u", s->peer, t->port);
    }
    reply_reset(&s->reply);
    start_connect(s);
}

/* --- transaction owner ------------------------------------------------- */

void session_bind(struct session *s, void *owner, session_error_fn on_error)
{
    s->owner = owner;
    s->on_error = on_error;
}

void session_abort(struct session *s)
{
    s->broken = 1;
    session_free(s);
}

/* --- the cache and QUIT ------------------------------------------------- */

static void quit_reply(void *owner, const struct smtp_reply *r)
{
    session_free(owner);
}

static void session_quit(struct session *s)
{
    if (s->broken || s->bev == NULL) {
        session_free(s);
        return;
    }
    if (s->phase == PH_CACHED)
        cache_unlink(s);
    s->phase = PH_QUIT;
    s->on_drain = NULL;
    s->exp_count = 0;
    s->owner = s;
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    session_send(s, "QUIT");
    session_expect(s, quit_reply,
                   remote_cfg.quit_timeout < QUIT_WAIT_MAX ? remote_cfg.quit_timeout : QUIT_WAIT_MAX,
                   "QUIT", "sending QUIT");
}

static int reuse_allowed(const struct session *s)
{
    if (s->broken || s->free_pending || s->phase != PH_READY || s->exp_count > 0)
        return 0;
    if (remote_cfg.cache_time_limit <= 0)
        return 0;
    if (time(NULL) - s->created >= remote_cfg.reuse_time_limit)
        return 0;
    return remote_cfg.reuse_count_limit <= 0 || s->uses < remote_cfg.reuse_count_limit;
}

void session_release(struct session *s, const char *key, int reusable)
{
    s->owner = NULL;
    s->on_error = NULL;
    s->on_drain = NULL;
    s->uses++;
    if (!reusable || !reuse_allowed(s)) {
        session_quit(s);
        return;
    }
    if (sc.idle >= CACHE_MAX && sc.tail != NULL)
        session_quit(sc.tail);
    snprintf(s->key, sizeof(s->key), "%s", key);
    s->phase = PH_CACHED;
    s->next = sc.head;
    s->prev = NULL;
    if (sc.head != NULL)
        sc.head->prev = s;
    else
        sc.tail = s;
    sc.head = s;
    sc.idle++;
    arm_timer(s, remote_cfg.cache_time_limit);
}

struct session *session_cache_take(const char *key)
{
    for (struct session *s = sc.head; s != NULL; s = s->next) {
        if (strcmp(s->key, key) != 0 || s->broken)
            continue;
        cache_unlink(s);
        evtimer_del(s->timer);
        s->phase = PH_READY;
        s->reused = 1;
        return s;
    }
    return NULL;
}

void session_cache_flush(void)
{
    while (sc.head != NULL)
        session_quit(sc.head);
}
