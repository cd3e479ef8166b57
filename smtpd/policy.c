/* policy.c - the policy client (policy.h). Each request gets an idle
 * connection of its service or a new one; many sessions may wait on one
 * service at once, each on its own connection, none blocking the loop. A
 * request has smtpd_policy_service_timeout per attempt and up to
 * _try_limit attempts _retry_delay apart; then the service's default
 * action answers, with a warning. Connections go back to the idle list
 * after a complete answer, until _max_idle, _max_ttl or _request_limit.
 */
#include "policy.h"
#include "smtpd.h"

#include "attr_lines.h"
#include "config.h"
#include "log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#define ANSWER_LINE_MAX 2048    /* one attribute line */
#define ANSWER_MAX 8192         /* the whole answer */
#define ACTION_MAX 1024

struct policy_conn {
    struct policy_conn *next;          /* in the idle list */
    struct policy_service *svc;
    struct bufferevent *bev;
    time_t born;
    long requests;
    struct policy_request *req;        /* NULL while idle */
    struct event *idle_timer;
};

struct policy_service {
    struct policy_service *next;
    char *spec;                        /* as given: shared by equal specs */
    char *name;                        /* the endpoint without its type, for logs */
    char *endpoint;                    /* as configured */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    long timeout, max_idle, max_ttl, request_limit, try_limit, retry_delay;
    char *default_action;
    char *context;
    struct policy_conn *idle;
};

struct policy_request {
    struct policy_service *svc;
    char *text;
    policy_done_fn done;
    void *ctx;
    struct policy_conn *conn;
    long tries;
    struct event *timer;               /* next attempt, or this one's deadline */
};

static struct policy_service *services;

/* --- the service's description --- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        msg_fatal("out of memory");
    return d;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* "10", "10s", "2m", "1h", "1d": seconds; -1 when it is none of those. */
static long parse_time(const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || n < 0)
        return -1;
    long unit = *end == 0 || strcmp(end, "s") == 0 ? 1
                : strcmp(end, "m") == 0             ? 60
                : strcmp(end, "h") == 0             ? 3600
                : strcmp(end, "d") == 0             ? 86400
                                                    : -1;
    return unit < 0 ? -1 : n * unit;
}

static int set_endpoint(struct policy_service *svc, const char *ep, char *err, size_t errlen)
{
    svc->endpoint = xstrdup(ep);
    /* Logged as Postfix does: without the "inet:" or "unix:" type. */
    svc->name = xstrdup(strncmp(ep, "inet:", 5) == 0 || strncmp(ep, "unix:", 5) == 0 ? ep + 5 : ep);
    if (strncmp(ep, "inet:", 5) == 0) {
        char host[256];
        const char *hp = ep + 5, *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof(host)) {
            snprintf(err, errlen, "bad inet endpoint \"%s\"", ep);
            return -1;
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = 0;
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
            memmove(host, host + 1, strlen(host));
            host[strlen(host) - 1] = 0;
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(host, colon + 1, &hints, &res);
        if (rc != 0 || !res) {
            snprintf(err, errlen, "%s: %s", ep, gai_strerror(rc));
            return -1;
        }
        memcpy(&svc->addr, res->ai_addr, res->ai_addrlen);
        svc->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
    }
    const char *path = strncmp(ep, "unix:", 5) == 0 ? ep + 5 : ep;
    struct sockaddr_un *un = (struct sockaddr_un *)&svc->addr;
    un->sun_family = AF_UNIX;
    int n = path[0] == '/' ? snprintf(un->sun_path, sizeof(un->sun_path), "%s", path)
                           : snprintf(un->sun_path, sizeof(un->sun_path), "%s/%s",
                                      var.queue_directory, path);
    if (n < 0 || (size_t)n >= sizeof(un->sun_path)) {
        snprintf(err, errlen, "%s: path too long", ep);
        return -1;
    }
    svc->addrlen = sizeof(*un);
    return 0;
}

/* One "name=value" of the braced form. */
static int set_option(struct policy_service *svc, char *opt, char *err, size_t errlen)
{
    char *eq = strchr(opt, '=');
    if (!eq) {
        snprintf(err, errlen, "missing '=' in \"%s\"", opt);
        return -1;
    }
    *eq = 0;
    char *name = trim(opt), *value = trim(eq + 1);
    if (strcmp(name, "default_action") == 0) {
        free(svc->default_action);
        svc->default_action = xstrdup(value);
        return 0;
    }
    if (strcmp(name, "policy_context") == 0) {
        free(svc->context);
        svc->context = xstrdup(value);
        return 0;
    }
    static const struct {
        const char *name;
        size_t off;
        int is_time;
    } nums[] = {
        {"timeout", offsetof(struct policy_service, timeout), 1},
        {"max_idle", offsetof(struct policy_service, max_idle), 1},
        {"max_ttl", offsetof(struct policy_service, max_ttl), 1},
        {"retry_delay", offsetof(struct policy_service, retry_delay), 1},
        {"request_limit", offsetof(struct policy_service, request_limit), 0},
        {"try_limit", offsetof(struct policy_service, try_limit), 0},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (strcmp(name, nums[i].name) != 0)
            continue;
        char *end;
        long v = nums[i].is_time ? parse_time(value) : strtol(value, &end, 10);
        if (v < 0 || (!nums[i].is_time && *end)) {
            snprintf(err, errlen, "bad value \"%s\" for %s", value, name);
            return -1;
        }
        *(long *)((char *)svc + nums[i].off) = v;
        return 0;
    }
    snprintf(err, errlen, "unknown attribute \"%s\"", name);
    return -1;
}

static int parse_spec(struct policy_service *svc, const char *spec, char *err, size_t errlen)
{
    if (spec[0] != '{')
        return set_endpoint(svc, spec, err, errlen);
    size_t n = strlen(spec);
    if (n < 2 || spec[n - 1] != '}') {
        snprintf(err, errlen, "missing '}' in \"%s\"", spec);
        return -1;
    }
    char *copy = xstrdup(spec + 1), *save = NULL;
    copy[n - 2] = 0;
    int rc = 0, first = 1;
    for (char *part = strtok_r(copy, ",", &save); part && rc == 0;
         part = strtok_r(NULL, ",", &save)) {
        char *t = trim(part);
        if (!*t)
            continue;
        rc = first ? set_endpoint(svc, t, err, errlen) : set_option(svc, t, err, errlen);
        first = 0;
    }
    if (rc == 0 && first) {
        snprintf(err, errlen, "no endpoint in \"%s\"", spec);
        rc = -1;
    }
    free(copy);
    return rc;
}

struct policy_service *policy_service_open(const char *spec, char *err, size_t errlen)
{
    for (struct policy_service *s = services; s; s = s->next)
        if (strcmp(s->spec, spec) == 0)
            return s;
    struct policy_service *svc = calloc(1, sizeof(*svc));
    if (!svc)
        msg_fatal("out of memory");
    svc->spec = xstrdup(spec);
    svc->timeout = var.smtpd_policy_service_timeout;
    svc->max_idle = var.smtpd_policy_service_max_idle;
    svc->max_ttl = var.smtpd_policy_service_max_ttl;
    svc->request_limit = var.smtpd_policy_service_request_limit;
    svc->try_limit = var.smtpd_policy_service_try_limit;
    svc->retry_delay = var.smtpd_policy_service_retry_delay;
    svc->default_action = xstrdup(var.smtpd_policy_service_default_action);
    svc->context = xstrdup(var.smtpd_policy_service_policy_context);
    if (parse_spec(svc, spec, err, errlen) < 0) {
        free(svc->spec);
        free(svc->name);
        free(svc->endpoint);
        free(svc->default_action);
        free(svc->context);
        free(svc);
        return NULL;
    }
    if (svc->try_limit < 1)
        svc->try_limit = 1;
    svc->next = services;
    services = svc;
    return svc;
}

const char *policy_service_context(const struct policy_service *svc)
{
    return svc->context;
}

const char *policy_service_endpoint(const struct policy_service *svc)
{
    return svc->endpoint ? svc->endpoint : svc->spec;
}

/* --- connections --- */

static void conn_close(struct policy_conn *c)
{
    struct policy_conn **pp = &c->svc->idle;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    if (c->idle_timer)
        event_free(c->idle_timer);
    bufferevent_free(c->bev);
    free(c);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_close(arg);
}

static void request_failed(struct policy_request *req, const char *why);
static void request_answered(struct policy_request *req, const char *action);

static void on_read(struct bufferevent *bev, void *arg)
{
    struct policy_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!c->req) {          /* an idle connection does not talk */
        conn_close(c);
        return;
    }
    size_t len = evbuffer_get_length(in);
    size_t look = len > ANSWER_MAX ? ANSWER_MAX : len;
    const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    char action[ACTION_MAX];
    int found = 0;
    long used = attr_lines_scan(data, look, ANSWER_LINE_MAX, "action", action, sizeof(action),
                                &found);
    if (used == ATTR_LINES_INCOMPLETE && len < ANSWER_MAX)
        return;
    if (used <= 0) {
        request_failed(c->req, "malformed response");
        return;
    }
    if (!found) {
        request_failed(c->req, "response without action");
        return;
    }
    evbuffer_drain(in, (size_t)used);
    request_answered(c->req, action);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct policy_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (!c->req) {
        conn_close(c);
        return;
    }
    char why[128];
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "lost connection");
    else
        snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR() ? EVUTIL_SOCKET_ERROR()
                                                                         : ECONNRESET));
    request_failed(c->req, why);
}

static struct policy_conn *conn_open(struct policy_service *svc)
{
    struct policy_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->svc = svc;
    c->born = time(NULL);
    c->bev = bufferevent_socket_new(smtpd_base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&svc->addr, (int)svc->addrlen) < 0) {
        bufferevent_free(c->bev);
        free(c);
        return NULL;
    }
    return c;
}

/* An idle connection still within its limits, or NULL. */
static struct policy_conn *conn_take_idle(struct policy_service *svc)
{
    while (svc->idle) {
        struct policy_conn *c = svc->idle;
        svc->idle = c->next;
        c->next = NULL;
        event_del(c->idle_timer);
        if (time(NULL) - c->born < svc->max_ttl)
            return c;
        conn_close(c);
    }
    return NULL;
}

static void conn_release(struct policy_conn *c)
{
    struct policy_service *svc = c->svc;
    c->req = NULL;
    c->requests++;
    if ((svc->request_limit > 0 && c->requests >= svc->request_limit) ||
        time(NULL) - c->born >= svc->max_ttl ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        conn_close(c);
        return;
    }
    if (!c->idle_timer && !(c->idle_timer = evtimer_new(smtpd_base, on_idle_timeout, c))) {
        conn_close(c);
        return;
    }
    struct timeval tv = {svc->max_idle, 0};
    evtimer_add(c->idle_timer, &tv);
    c->next = svc->idle;
    svc->idle = c;
}

/* --- requests --- */

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void arm(struct policy_request *req, long seconds)
{
    struct timeval tv = {seconds, 0};
    evtimer_add(req->timer, &tv);
}

static void attempt(struct policy_request *req)
{
    struct policy_service *svc = req->svc;
    req->tries++;
    req->conn = conn_take_idle(svc);
    if (!req->conn)
        req->conn = conn_open(svc);
    if (!req->conn) {
        request_failed(req, strerror(errno ? errno : ECONNREFUSED));
        return;
    }
    req->conn->req = req;
    bufferevent_write(req->conn->bev, req->text, strlen(req->text));
    bufferevent_enable(req->conn->bev, EV_READ | EV_WRITE);
    arm(req, svc->timeout);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct policy_request *req = arg;
    if (req->conn)
        request_failed(req, "timeout");
    else
        attempt(req);
}

static void request_free(struct policy_request *req)
{
    event_free(req->timer);
    free(req->text);
    free(req);
}

static void request_answered(struct policy_request *req, const char *action)
{
    conn_release(req->conn);
    req->conn = NULL;
    policy_done_fn done = req->done;
    void *ctx = req->ctx;
    request_free(req);
    done(ctx, action);
}

/* This attempt failed: try again after retry_delay, or answer with the
 * default action. */
static void request_failed(struct policy_request *req, const char *why)
{
    struct policy_service *svc = req->svc;
    if (req->conn) {
        conn_close(req->conn);
        req->conn = NULL;
    }
    msg_warn("problem talking to server %s: %s", svc->name, why);
    evtimer_del(req->timer);
    if (req->tries < svc->try_limit) {
        arm(req, svc->retry_delay);
        return;
    }
    policy_done_fn done = req->done;
    void *ctx = req->ctx;
    request_free(req);
    done(ctx, svc->default_action);
}

struct policy_request *policy_query(struct policy_service *svc, const char *request,
                                    policy_done_fn done, void *ctx)
{
    struct policy_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->svc = svc;
    req->done = done;
    req->ctx = ctx;
    req->text = strdup(request);
    req->timer = evtimer_new(smtpd_base, on_timer, req);
    if (!req->text || !req->timer) {
        free(req->text);
        if (req->timer)
            event_free(req->timer);
        free(req);
        return NULL;
    }
    /* The first attempt starts from the loop, so done never runs before
     * the caller has the request. */
    arm(req, 0);
    return req;
}

void policy_cancel(struct policy_request *req)
{
    if (!req)
        return;
    if (req->conn)
        conn_close(req->conn);   /* an answer half read would confuse the next request */
    request_free(req);
}
