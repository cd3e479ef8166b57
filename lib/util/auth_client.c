/* auth_client.c - Dovecot authentication protocol client (auth_client.h).
 *
 * The connection goes IDLE -> CONNECTING -> HANDSHAKE -> READY and back to
 * IDLE when it breaks (EOF, an error, a malformed or over-long line, a
 * handshake that does not finish in time). Requests wait in a list: those
 * started before the handshake is done are sent when it is; a broken
 * connection fails every request still waiting for the server, and the next
 * request connects again.
 *
 * Every answer reaches its owner from the request's own timer event, never
 * from inside a call of the owner and never from the middle of the read
 * loop: the timer is both the request's deadline and its way of delivering
 * a result, so nothing an owner does in its callback (start another
 * request, abort its own, end its session) can pull the ground from under
 * this code.
 */
#include "auth_client.h"

#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#define FIELDS_MAX 64                /* TAB-separated fields of one line */
#define LOST_REASON "Connection lost to authentication server"

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY };

enum req_state {
    REQ_WAIT_READY,   /* auth_client_when_ready */
    REQ_QUEUED,       /* AUTH line made, the connection not ready */
    REQ_SENT,         /* waiting for the server's OK, CONT or FAIL */
    REQ_CLIENT,       /* CONT passed on: waiting for the owner's response */
    REQ_FINISHING,    /* a result waits for the timer to deliver it */
};

struct auth_request {
    struct auth_client *c;
    struct auth_request *prev, *next;
    enum req_state state;
    int lost;                       /* REQ_CLIENT: the server forgot it */
    unsigned long id;
    char *line;                     /* REQ_QUEUED: the AUTH line to send */
    struct event *timer;            /* deadline, and delivery of results */
    auth_answer_fn fn;
    void *ctx;
    /* the result to deliver */
    enum auth_result result;
    char *data;
    char user[AUTH_USER_MAX];
    char reason[AUTH_REASON_MAX];
};

struct auth_client {
    struct event_base *base;
    struct auth_endpoint ep;
    char service[64];
    long timeout;
    enum conn_state state;
    int fd;                         /* while connecting */
    struct event *connect_ev;
    struct bufferevent *bev;
    struct event *handshake_timer;
    int got_version;
    struct auth_mech mechs[AUTH_MECHS_MAX], next_mechs[AUTH_MECHS_MAX];
    size_t nmechs, next_nmechs;
    int known;
    unsigned long last_id;
    struct auth_request *reqs;
};

/* --- parsing the server's lines -------------------------------------- */

static int split_fields(char *line, char **fields)
{
    int n = 0;
    for (char *p = line;; p++) {
        if (n == FIELDS_MAX)
            return -1;
        fields[n++] = p;
        p = strchr(p, '\t');
        if (!p)
            return n;
        *p = 0;
    }
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 10)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Dovecot's tab escapes: \001 then '1', 't', 'r', 'n' or '0' (a NUL,
 * which becomes '?'). Returns the length, or -1 when an escape is broken
 * or out is too small (unless truncate: then the text is cut short). */
static int unescape(const char *in, char *out, size_t outlen, int truncate)
{
    size_t n = 0;
    for (; *in; in++) {
        char ch = *in;
        if (ch == '\001') {
            switch (*++in) {
            case '1': ch = '\001'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'n': ch = '\n'; break;
            case '0': ch = '?'; break;
            default: return -1;
            }
        }
        if (n + 1 >= outlen) {
            if (!truncate)
                return -1;
            break;
        }
        out[n++] = ch;
    }
    out[n] = 0;
    return (int)n;
}

static int printable_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int base64_text(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/' && *s != '=')
            return 0;
    return 1;
}

static int valid_mech_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= AUTH_MECH_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return 0;
    return 1;
}

static unsigned mech_flag(const char *word)
{
    static const struct {
        const char *name;
        unsigned flag;
    } flags[] = {
        {"anonymous", AUTH_MECH_ANONYMOUS},   {"plaintext", AUTH_MECH_PLAINTEXT},
        {"dictionary", AUTH_MECH_DICTIONARY}, {"active", AUTH_MECH_ACTIVE},
        {"forward-secrecy", AUTH_MECH_FORWARD_SECRECY},
        {"mutual-auth", AUTH_MECH_MUTUAL_AUTH}, {"private", AUTH_MECH_PRIVATE},
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strcmp(word, flags[i].name) == 0)
            return flags[i].flag;
    return 0;
}

static void bad_line(struct auth_line *out, const char *why)
{
    out->kind = AUTH_LINE_BAD;
    out->why = why;
}

static void parse_mech(char **f, int n, struct auth_line *out)
{
    if (n < 2 || !valid_mech_name(f[1])) {
        bad_line(out, "bad MECH line");
        return;
    }
    snprintf(out->mech.name, sizeof(out->mech.name), "%s", f[1]);
    for (char *p = out->mech.name; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    for (int i = 2; i < n; i++)
        out->mech.flags |= mech_flag(f[i]);
    out->kind = AUTH_LINE_MECH;
}

/* "user=", "reason=", "resp=", "temp" of OK and FAIL; others are ignored. */
static void parse_params(char **f, int n, struct auth_line *out)
{
    for (int i = 2; i < n && out->kind != AUTH_LINE_BAD; i++) {
        if (strncmp(f[i], "user=", 5) == 0) {
            if (unescape(f[i] + 5, out->user, sizeof(out->user), 0) <= 0 ||
                !printable_text(out->user)) {
                out->user[0] = 0;
                bad_line(out, "bad user name");
            }
        } else if (strncmp(f[i], "reason=", 7) == 0) {
            if (unescape(f[i] + 7, out->reason, sizeof(out->reason), 1) < 0)
                snprintf(out->reason, sizeof(out->reason), "%s", "(unreadable reason)");
            for (char *p = out->reason; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    *p = '?';
        } else if (strncmp(f[i], "resp=", 5) == 0) {
            if (!base64_text(f[i] + 5))
                bad_line(out, "bad final response");
            else
                out->data = f[i] + 5;
        } else if (strcmp(f[i], "temp") == 0) {
            out->temp = 1;
        }
    }
}

static void parse_reply(char **f, int n, enum auth_line_kind kind, struct auth_line *out)
{
    if (n < 2 || parse_ulong(f[1], 0xffffffffUL, &out->id) < 0 || out->id == 0) {
        bad_line(out, "bad request id");
        return;
    }
    out->kind = kind;
    if (kind == AUTH_LINE_CONT) {
        out->data = n > 2 ? f[2] : "";
        if (!base64_text(out->data))
            bad_line(out, "bad challenge");
        return;
    }
    parse_params(f, n, out);
}

void auth_line_parse(char *line, size_t len, struct auth_line *out)
{
    char *f[FIELDS_MAX];
    memset(out, 0, sizeof(*out));
    if (len > AUTH_LINE_MAX || memchr(line, 0, len) != NULL) {
        bad_line(out, len > AUTH_LINE_MAX ? "line too long" : "NUL byte");
        return;
    }
    line[len] = 0;
    int n = split_fields(line, f);
    if (n < 0) {
        bad_line(out, "too many fields");
        return;
    }
    if (strcmp(f[0], "VERSION") == 0) {
        if (n < 3 || parse_ulong(f[1], 1000000, &out->major) < 0 ||
            parse_ulong(f[2], 1000000, &out->minor) < 0)
            bad_line(out, "bad VERSION line");
        else
            out->kind = AUTH_LINE_VERSION;
    } else if (strcmp(f[0], "MECH") == 0) {
        parse_mech(f, n, out);
    } else if (strcmp(f[0], "SPID") == 0) {
        out->kind = AUTH_LINE_SPID;
    } else if (strcmp(f[0], "CUID") == 0) {
        out->kind = AUTH_LINE_CUID;
    } else if (strcmp(f[0], "COOKIE") == 0) {
        out->kind = AUTH_LINE_COOKIE;
    } else if (strcmp(f[0], "DONE") == 0) {
        out->kind = AUTH_LINE_DONE;
    } else if (strcmp(f[0], "OK") == 0) {
        parse_reply(f, n, AUTH_LINE_OK, out);
    } else if (strcmp(f[0], "CONT") == 0) {
        parse_reply(f, n, AUTH_LINE_CONT, out);
    } else if (strcmp(f[0], "FAIL") == 0) {
        parse_reply(f, n, AUTH_LINE_FAIL, out);
    } else if (*f[0] && printable_text(f[0])) {
        out->kind = AUTH_LINE_OTHER;
    } else {
        bad_line(out, "not a command");
    }
}

/* --- endpoints ---------------------------------------------------------- */

static int unix_endpoint(const char *path, struct auth_endpoint *ep, char *err, size_t errlen)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&ep->addr;
    if (!*path || strlen(path) >= sizeof(sun->sun_path)) {
        snprintf(err, errlen, "bad UNIX socket path \"%.100s\"", path);
        return -1;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    ep->addrlen = (socklen_t)sizeof(*sun);
    return 0;
}

static int inet_endpoint(const char *hostport, struct auth_endpoint *ep, char *err,
                         size_t errlen)
{
    char host[256];
    const char *port;
    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        if (!end || end[1] != ':' || (size_t)(end - hostport - 1) >= sizeof(host))
            goto bad;
        memcpy(host, hostport + 1, (size_t)(end - hostport - 1));
        host[end - hostport - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (!colon || (size_t)(colon - hostport) >= sizeof(host))
            goto bad;
        memcpy(host, hostport, (size_t)(colon - hostport));
        host[colon - hostport] = 0;
        port = colon + 1;
    }
    if (!*host || !*port)
        goto bad;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "inet:%.200s: %s", hostport, gai_strerror(rc));
        return -1;
    }
    memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
    ep->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(err, errlen, "bad endpoint \"inet:%.200s\" (inet:host:port)", hostport);
    return -1;
}

int auth_endpoint_parse(const char *spec, const char *path, struct auth_endpoint *ep, char *err,
                        size_t errlen)
{
    memset(ep, 0, sizeof(*ep));
    snprintf(ep->name, sizeof(ep->name), "%s", spec);
    if (strncmp(spec, "inet:", 5) == 0)
        return inet_endpoint(spec + 5, ep, err, errlen);
    return unix_endpoint(path, ep, err, errlen);
}

/* --- requests ------------------------------------------------------------ */

static void request_unlink(struct auth_request *r)
{
    struct auth_client *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else if (c->reqs == r)
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void request_free(struct auth_request *r)
{
    request_unlink(r);
    event_free(r->timer);
    free(r->line);
    free(r->data);
    free(r);
}

static void arm(struct event *ev, double seconds)
{
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(ev, &tv);
}

/* The result goes to the owner from the timer, at the next loop pass. */
static void finish_later(struct auth_request *r, enum auth_result result, const char *data,
                         const char *user, const char *reason)
{
    r->state = REQ_FINISHING;
    r->result = result;
    free(r->data);
    r->data = data ? strdup(data) : NULL;
    if (data && !r->data)
        msg_fatal("out of memory");
    snprintf(r->user, sizeof(r->user), "%s", user ? user : "");
    snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
    arm(r->timer, 0);
}

static void request_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct auth_request *r = arg;
    if (r->state != REQ_FINISHING) {
        /* The deadline passed: this request fails; the connection stays
         * for the others (the server may be slow for one user only). */
        if (r->state == REQ_SENT)
            msg_warn("SASL: Dovecot auth server '%s' did not answer request %lu in %ld s",
                     r->c->ep.name, r->id, r->c->timeout);
        finish_later(r, AUTH_RESULT_TEMPFAIL, NULL, NULL, LOST_REASON);
        return;
    }
    struct auth_answer a = {r->result, r->data, r->user, r->reason};
    if (r->result == AUTH_RESULT_CONTINUE) {
        r->state = REQ_CLIENT;   /* before fn: it may continue at once */
        r->fn(r->ctx, &a);
        return;
    }
    /* Unlinked first, so the owner's callback never finds it. */
    request_unlink(r);
    r->fn(r->ctx, &a);
    request_free(r);
}

static struct auth_request *request_new(struct auth_client *c, auth_answer_fn fn, void *ctx)
{
    struct auth_request *r = calloc(1, sizeof(*r));
    if (!r || !(r->timer = evtimer_new(c->base, request_timer_cb, r)))
        msg_fatal("out of memory for an authentication request");
    r->c = c;
    r->fn = fn;
    r->ctx = ctx;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    return r;
}

/* --- the connection -------------------------------------------------------- */

static void conn_start(struct auth_client *c);

static void conn_close(struct auth_client *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->connect_ev)
        event_free(c->connect_ev);
    c->connect_ev = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    evtimer_del(c->handshake_timer);
    c->state = CONN_IDLE;
}

/* The connection is gone: whatever waited for the server fails (later,
 * from each request's timer); a request whose challenge the owner holds
 * fails when the owner answers it. */
static void conn_broken(struct auth_client *c)
{
    conn_close(c);
    for (struct auth_request *r = c->reqs; r; r = r->next) {
        if (r->state == REQ_CLIENT)
            r->lost = 1;
        else if (r->state != REQ_FINISHING)
            finish_later(r, AUTH_RESULT_TEMPFAIL, NULL, NULL, LOST_REASON);
    }
}

static void conn_protocol_error(struct auth_client *c, const char *why)
{
    msg_warn("SASL: Dovecot auth server '%s': %s; closing the connection", c->ep.name, why);
    conn_broken(c);
}

static void send_line(struct auth_client *c, const char *line)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, line, strlen(line));
    evbuffer_add(out, "\n", 1);
}

static unsigned long next_id(struct auth_client *c)
{
    if (++c->last_id > 0xffffffffUL)
        c->last_id = 1;
    return c->last_id;
}

static void send_request(struct auth_request *r)
{
    struct auth_client *c = r->c;
    char head[64];
    r->id = next_id(c);
    snprintf(head, sizeof(head), "AUTH\t%lu\t", r->id);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, head, strlen(head));
    send_line(c, r->line);
    free(r->line);
    r->line = NULL;
    r->state = REQ_SENT;
    arm(r->timer, (double)c->timeout);
}

/* DONE: the mechanisms are known; queued requests go out, waiters hear. */
static void handshake_done(struct auth_client *c)
{
    if (!c->got_version) {
        conn_protocol_error(c, "DONE before VERSION");
        return;
    }
    memcpy(c->mechs, c->next_mechs, sizeof(c->mechs));
    c->nmechs = c->next_nmechs;
    c->known = 1;
    c->state = CONN_READY;
    evtimer_del(c->handshake_timer);
    for (struct auth_request *r = c->reqs; r; r = r->next) {
        if (r->state == REQ_QUEUED)
            send_request(r);
        else if (r->state == REQ_WAIT_READY)
            finish_later(r, AUTH_RESULT_READY, NULL, NULL, NULL);
    }
}

static void handshake_line(struct auth_client *c, const struct auth_line *l)
{
    switch (l->kind) {
    case AUTH_LINE_VERSION:
        if (l->major != 1) {
            conn_protocol_error(c, "unsupported protocol version");
            return;
        }
        c->got_version = 1;
        c->next_nmechs = 0;
        return;
    case AUTH_LINE_MECH:
        if (c->next_nmechs < AUTH_MECHS_MAX)
            c->next_mechs[c->next_nmechs++] = l->mech;
        return;
    case AUTH_LINE_DONE:
        handshake_done(c);
        return;
    case AUTH_LINE_OK:
    case AUTH_LINE_CONT:
    case AUTH_LINE_FAIL:
        conn_protocol_error(c, "a reply before the handshake was done");
        return;
    default:
        return;   /* SPID, CUID, COOKIE, and what we do not use */
    }
}

static struct auth_request *find_sent(struct auth_client *c, unsigned long id)
{
    for (struct auth_request *r = c->reqs; r; r = r->next)
        if (r->state == REQ_SENT && r->id == id)
            return r;
    return NULL;
}

static void reply_line(struct auth_client *c, const struct auth_line *l)
{
    if (l->kind != AUTH_LINE_OK && l->kind != AUTH_LINE_CONT && l->kind != AUTH_LINE_FAIL)
        return;   /* MECH etc. after DONE: nothing to do */
    struct auth_request *r = find_sent(c, l->id);
    if (!r)
        return;   /* aborted by its owner, or past its deadline */
    if (l->kind == AUTH_LINE_CONT) {
        finish_later(r, AUTH_RESULT_CONTINUE, l->data, NULL, NULL);
    } else if (l->kind == AUTH_LINE_FAIL) {
        finish_later(r, l->temp ? AUTH_RESULT_TEMPFAIL : AUTH_RESULT_FAIL, NULL, l->user,
                     l->reason);
    } else if (!l->user[0]) {
        msg_warn("SASL: Dovecot auth server '%s' accepted request %lu without a user name",
                 c->ep.name, l->id);
        finish_later(r, AUTH_RESULT_TEMPFAIL, NULL, NULL, "Authentication backend error");
    } else {
        finish_later(r, AUTH_RESULT_OK, l->data, l->user, NULL);
    }
}

/* One complete line into buf; 1 when taken, 0 when not complete yet, -1
 * when it is longer than AUTH_LINE_MAX. */
static int take_line(struct evbuffer *in, char *buf, size_t *len)
{
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (eol.pos < 0)
        return evbuffer_get_length(in) > AUTH_LINE_MAX ? -1 : 0;
    if ((size_t)eol.pos > AUTH_LINE_MAX)
        return -1;
    evbuffer_remove(in, buf, (size_t)eol.pos);
    evbuffer_drain(in, eol_len);
    *len = (size_t)eol.pos;
    if (*len > 0 && buf[*len - 1] == '\r')
        (*len)--;
    return 1;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    static char buf[AUTH_LINE_MAX + 1];
    struct auth_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;
    int rc;
    while (c->bev == bev && (rc = take_line(in, buf, &len)) != 0) {
        struct auth_line l;
        if (rc < 0) {
            conn_protocol_error(c, "line too long");
            return;
        }
        auth_line_parse(buf, len, &l);
        if (l.kind == AUTH_LINE_BAD) {
            conn_protocol_error(c, l.why);
            return;
        }
        if (c->state == CONN_HANDSHAKE)
            handshake_line(c, &l);
        else
            reply_line(c, &l);
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct auth_client *c = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (what & BEV_EVENT_ERROR)
        msg_warn("SASL: Dovecot auth server '%s': %s", c->ep.name,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    else
        msg_warn("SASL: Dovecot auth server '%s' closed the connection", c->ep.name);
    conn_broken(c);
}

static void conn_connected(struct auth_client *c)
{
    char hello[64];
    c->bev = bufferevent_socket_new(c->base, c->fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        msg_fatal("out of memory for the auth server connection");
    c->fd = -1;
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    /* Reading stops with this much buffered, so a server that never ends
     * a line costs a bounded buffer and is caught by take_line. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, 2 * AUTH_LINE_MAX + 2);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_HANDSHAKE;
    c->got_version = 0;
    c->next_nmechs = 0;
    snprintf(hello, sizeof(hello), "VERSION\t1\t1\nCPID\t%ld", (long)getpid());
    send_line(c, hello);
}

static void connect_failed(struct auth_client *c, int err)
{
    msg_warn("SASL: Connect to Dovecot auth socket '%s' failed: %s", c->ep.name, strerror(err));
    conn_broken(c);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
    struct auth_client *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);
    event_free(c->connect_ev);
    c->connect_ev = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        connect_failed(c, err);
    else
        conn_connected(c);
}

static void handshake_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct auth_client *c = arg;
    if (c->state == CONN_CONNECTING)
        connect_failed(c, ETIMEDOUT);
    else
        conn_protocol_error(c, "no handshake in time");
}

static void conn_start(struct auth_client *c)
{
    if (c->state != CONN_IDLE)
        return;
    int fd = socket(c->ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        connect_failed(c, errno);
        return;
    }
    c->fd = fd;
    /* Small requests from many sessions at once: Nagle would hold them
     * back until the server acknowledges the previous ones. */
    if (c->ep.addr.ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    arm(c->handshake_timer, (double)c->timeout);
    if (connect(fd, (struct sockaddr *)&c->ep.addr, c->ep.addrlen) == 0) {
        conn_connected(c);
        return;
    }
    if (errno != EINPROGRESS) {
        connect_failed(c, errno);
        return;
    }
    c->state = CONN_CONNECTING;
    c->connect_ev = event_new(c->base, fd, EV_WRITE, connect_cb, c);
    if (!c->connect_ev || event_add(c->connect_ev, NULL) < 0)
        msg_fatal("cannot watch the auth server connection");
}

/* --- the interface -------------------------------------------------------- */

struct auth_client *auth_client_new(struct event_base *base, const struct auth_endpoint *ep,
                                    const char *service, long timeout)
{
    struct auth_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->handshake_timer = evtimer_new(base, handshake_timer_cb, c)))
        msg_fatal("out of memory for the auth client");
    c->base = base;
    c->ep = *ep;
    snprintf(c->service, sizeof(c->service), "%s", service);
    c->timeout = timeout > 0 ? timeout : 1;
    c->fd = -1;
    return c;
}

void auth_client_free(struct auth_client *c)
{
    if (!c)
        return;
    conn_close(c);
    while (c->reqs)
        request_free(c->reqs);
    event_free(c->handshake_timer);
    free(c);
}

size_t auth_client_mechs(const struct auth_client *c, const struct auth_mech **mechs)
{
    *mechs = c->mechs;
    return c->nmechs;
}

int auth_client_known(const struct auth_client *c)
{
    return c->known;
}

/* The AUTH line after its id, or NULL with *why set. */
static char *auth_line_for(const struct auth_client *c, const struct auth_request_args *a,
                           const char **why)
{
    char *line = NULL;
    if (!valid_mech_name(a->mech)) {
        *why = "Invalid authentication mechanism";
        return NULL;
    }
    if (a->initial && !base64_text(a->initial)) {
        *why = "Invalid base64 data in initial response";
        return NULL;
    }
    /* The addresses are printed by inet_ntop: no TAB or LF in them. */
    if (asprintf(&line, "%s\tservice=%s\tnologin\tlip=%s\trip=%s%s%s%s", a->mech, c->service,
                 a->local_ip, a->remote_ip, a->secured ? "\tsecured" : "",
                 a->initial ? "\tresp=" : "", a->initial ? a->initial : "") < 0)
        msg_fatal("out of memory");
    return line;
}

struct auth_request *auth_request_start(struct auth_client *c, const struct auth_request_args *a,
                                        auth_answer_fn fn, void *ctx)
{
    struct auth_request *r = request_new(c, fn, ctx);
    const char *why = NULL;
    if (!(r->line = auth_line_for(c, a, &why))) {
        finish_later(r, AUTH_RESULT_FAIL, NULL, NULL, why);
        return r;
    }
    r->state = REQ_QUEUED;
    if (c->state == CONN_READY) {
        send_request(r);
        return r;
    }
    arm(r->timer, (double)c->timeout);
    conn_start(c);
    return r;
}

void auth_request_continue(struct auth_request *r, const char *response)
{
    struct auth_client *c = r->c;
    char head[64];
    if (r->state != REQ_CLIENT)
        return;
    if (!base64_text(response)) {
        finish_later(r, AUTH_RESULT_FAIL, NULL, NULL, "Invalid base64 data in continued response");
        return;
    }
    if (r->lost || c->state != CONN_READY) {
        finish_later(r, AUTH_RESULT_TEMPFAIL, NULL, NULL, LOST_REASON);
        return;
    }
    snprintf(head, sizeof(head), "CONT\t%lu\t", r->id);
    evbuffer_add(bufferevent_get_output(c->bev), head, strlen(head));
    send_line(c, response);
    r->state = REQ_SENT;
    arm(r->timer, (double)c->timeout);
}

void auth_request_abort(struct auth_request *r)
{
    if (r)
        request_free(r);
}

struct auth_request *auth_client_when_ready(struct auth_client *c, auth_answer_fn fn, void *ctx)
{
    struct auth_request *r = request_new(c, fn, ctx);
    if (c->state == CONN_READY) {
        finish_later(r, AUTH_RESULT_READY, NULL, NULL, NULL);
        return r;
    }
    r->state = REQ_WAIT_READY;
    arm(r->timer, (double)c->timeout);
    conn_start(c);
    return r;
}
