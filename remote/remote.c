/* remote - the SMTP client delivery agent: serves deliver_protocol (ipc.h)
 * on private/smtp and private/relay for qmgr; run as "lmtp" (master.cf's
 * lmtp) it is the LMTP client on private/lmtp, with the lmtp_* parameters.
 *
 * One process, one libevent loop, many qmgr connections: each connection
 * carries one request at a time, and every request becomes a job that runs
 * alongside the others: nexthop -> addresses (route.c), a session from the
 * cache or a new one (session.c), one transaction (transact.c), then one
 * log line per recipient (delivery.h) and the reply, one rcpt_status per
 * recipient in request order. Sharing one process lets all jobs for a
 * nexthop share the idle-connection cache, so a stream of messages to one
 * destination rides on a handful of SMTP connections.
 *
 * A request is checked against its queue file before anything is sent: a
 * recipient whose offset and address are not in the file gets 4.3.0.
 * The process exits after max_idle seconds without qmgr connections, or
 * once master goes away and the jobs in hand are finished.
 */
#include "remote.h"

#include "address.h"
#include "config.h"
#include "events.h"
#include "ipc.h"
#include "log.h"
#include "lookup.h"
#include "queue_file.h"
#include "record.h"
#include "service.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS_MAX 1000          /* qmgr connections one process serves */
#define EXIT_WAIT_MAX 5           /* seconds to let QUITs go out at exit */
#define CLIENT_INPUT_MAX (8 * IPC_VALUE_MAX)  /* request bytes buffered at most */
#define CONNECT_TIMEOUT_DEFAULT 30  /* seconds, for lmtp_connect_timeout = 0 */

struct remote_config remote_cfg;
struct event_base *remote_base;
struct dns_resolver *remote_dns;

struct client;

struct job {
    struct client *client;
    struct attr_list attrs;        /* the request as read so far */
    struct deliver_request req;    /* once complete: parsed, with statuses */
    struct rcpt *rcpts;            /* one per req.rcpt */
    size_t nrcpt;
    /* the delivery */
    struct message msg;
    struct nexthop nh;
    struct route *route;
    struct target *targets;
    size_t ntargets, next_target;
    long sessions;                 /* servers that greeted us */
    int plain_retry;               /* same target again, without TLS */
    int no_cache;                  /* a cached connection died: connect anew */
    struct session_failure last;   /* why the last target failed */
    char last_relay[HOST_RELAY_SIZE];
    struct sasl_creds creds;       /* the sender's own, when found */
    size_t next_fallback;          /* smtp_fallback_relay entries tried */
    struct tls_policy tls;         /* of the destination being tried */
    struct tls_policy tls_target;  /* of the target being tried (with its TLSA) */
    struct dane_lookup *dane;      /* while its TLSA records are looked up */
    struct tlsa_set *tlsa;         /* the target's usable TLSA records */
    char nexthop_text[DNS_NAME_SIZE + 16];  /* the nexthop being tried, as written */
    char key[sizeof(((struct nexthop *)0)->key) + SASL_CLIENT_USER_MAX + 8];  /* cache key */
};

struct client {
    struct bufferevent *bev;
    struct rec_buf rec;
    struct job *job;               /* being read, or running */
    int running;
    int closing;                   /* free once the job is done */
    struct client *prev, *next;
};

static struct {
    struct event *accept_ev;
    struct event *idle_ev;
    struct event *exit_ev;
    struct client *clients;
    size_t nclients;
    int full;
    int draining;
    time_t last_activity;
    time_t exit_deadline;
} rm;

static void client_free(struct client *c);
static void client_read_cb(struct bufferevent *bev, void *arg);
static void job_try_next_target(struct job *j);
static void job_start_delivery(struct job *j);

/* --- jobs: the request ---------------------------------------------------- */

static struct job *job_new(struct client *c)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        msg_fatal("out of memory for a job");
    j->client = c;
    j->msg.fd = -1;
    j->msg.eightbit = -1;
    j->msg.header_eightbit = -1;
    return j;
}

static void job_free(struct job *j)
{
    if (j->route != NULL)
        route_cancel(j->route);
    if (j->msg.fd >= 0)
        close(j->msg.fd);
    free(j->rcpts);
    deliver_request_free(&j->req);
    attr_list_free(&j->attrs);
    free(j->targets);
    dane_cancel(j->dane);
    tlsa_set_free(j->tlsa);
    auth_creds_clear(&j->creds);
    free(j);
}

/* One "name=value" of a request. Returns -1 when the request is beyond
 * repair (the connection is then dropped). */
static int job_add_attr(struct job *j, char *payload)
{
    char *name, *value;

    if (rec_attr_split(payload, &name, &value) < 0)
        return 0;
    return attr_list_add(&j->attrs, name, value);
}

/* The complete request, parsed and checked (deliver_request.h). -1 when
 * it cannot be answered. */
static int job_parse(struct job *j, const struct timeval *received)
{
    if (deliver_request_parse(&j->req, &j->attrs, received) < 0)
        return -1;
    j->req.client_fd = bufferevent_getfd(j->client->bev);
    j->nrcpt = j->req.nrcpt;
    if ((j->rcpts = calloc(j->nrcpt ? j->nrcpt : 1, sizeof(*j->rcpts))) == NULL)
        msg_fatal("out of memory for %zu recipients", j->nrcpt);
    for (size_t i = 0; i < j->nrcpt; i++)
        j->rcpts[i].req = &j->req.rcpt[i];
    return 0;
}

static const char *job_queue_id(const struct job *j)
{
    return deliver_request_id(&j->req);
}

static void set_undecided(struct job *j, const char *dsn, const char *relay, const char *text)
{
    for (size_t i = 0; i < j->nrcpt; i++)
        rcpt_set(&j->rcpts[i], dsn, relay, "%s", text);
}

/* --- jobs: finishing ----------------------------------------------------- */

static void job_log(const struct job *j)
{
    for (size_t i = 0; i < j->nrcpt; i++)
        deliver_request_log(&j->req, j->rcpts[i].req, j->rcpts[i].relay);
}

static void maybe_exit(void);

/* Every recipient has a status: log, reply, and read the next request. */
static void job_finish(struct job *j)
{
    struct client *c = j->client;
    struct delivery_times *times = &j->req.times;

    set_undecided(j, "4.3.0", "", "mail delivery failed: internal error");
    if (times->conn_done.tv_sec == times->agent_start.tv_sec
        && times->conn_done.tv_usec == times->agent_start.tv_usec)
        gettimeofday(&times->conn_done, NULL);
    job_log(j);
    deliver_request_mark_sent(&j->req);
    if (!c->closing)
        deliver_request_reply_ev(bufferevent_get_output(c->bev), &j->req);
    c->job = NULL;
    c->running = 0;
    job_free(j);
    rm.last_activity = time(NULL);
    if (c->closing || rm.draining) {
        /* Let the reply drain first when there is one to send. */
        if (!c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
            c->closing = 1;
            return;
        }
        client_free(c);
        maybe_exit();
        return;
    }
    struct timeval tmo = {.tv_sec = var.ipc_timeout};
    bufferevent_set_timeouts(c->bev, &tmo, NULL);
    /* job_finish never runs inside this client's read callback (job_run
     * defers the work), so reading on from here is safe. */
    client_read_cb(c->bev, c);
}

/* --- jobs: delivery ------------------------------------------------------- */

static void on_transact(void *ctx, int broke_early)
{
    struct job *j = ctx;

    if (broke_early) {
        /* A cached connection had died under us: nothing was sent. */
        j->no_cache = 1;
        job_start_delivery(j);
        return;
    }
    job_finish(j);
}

static void on_open(void *owner, struct session *s, const struct session_failure *f)
{
    struct job *j = owner;

    if (s != NULL) {
        gettimeofday(&j->req.times.conn_done, NULL);
        j->plain_retry = 0;
        transact_start(s, j->key, &j->msg, j->rcpts, j->nrcpt, on_transact, j);
        return;
    }
    j->sessions += f->greeted;
    j->last = *f;
    j->last_relay[0] = 0;
    if (f->greeted) {
        const struct target *t = &j->targets[j->next_target];
        char addr[INET6_ADDRSTRLEN];
        dns_addr_str(&t->addr, addr, sizeof(addr));
        snprintf(j->last_relay, sizeof(j->last_relay), "%s[%s]:%u", t->host, addr, t->port);
    }
    if (f->retry_plain && !j->plain_retry) {
        msg_info("%s: %s; trying again without TLS", job_queue_id(j), f->text);
        j->plain_retry = 1;
    } else {
        j->plain_retry = 0;
        j->next_target++;
    }
    job_try_next_target(j);
}

static void job_route(struct job *j);
static void job_cache_key(struct job *j);
static int job_tls_policy(struct job *j);

/* The destination failed for now: the next smtp_fallback_relay, if any
 * is left (never when the destination is one of them). Returns 0 when
 * one is being tried. */
static int job_try_fallback(struct job *j)
{
    const char *next;

    for (size_t i = 0; i < remote_cfg.nfallback && j->next_fallback == 0; i++)
        if (strcasecmp(remote_cfg.fallback[i], j->nexthop_text) == 0)
            return -1;
    while (j->next_fallback < remote_cfg.nfallback) {
        next = remote_cfg.fallback[j->next_fallback++];
        if (nexthop_parse(next, remote_cfg.default_port, &j->nh) < 0) {
            msg_warn("smtp_fallback_relay: bad destination \"%.100s\"", next);
            continue;
        }
        if (j->last.text[0])
            msg_info("%s: %s", job_queue_id(j), j->last.text);
        snprintf(j->nexthop_text, sizeof(j->nexthop_text), "%s", next);
        free(j->targets);
        j->targets = NULL;
        j->ntargets = j->next_target = 0;
        j->sessions = 0;
        j->plain_retry = 0;
        job_cache_key(j);
        if (job_tls_policy(j) < 0) {
            job_finish(j);
            return 0;
        }
        job_start_delivery(j);
        return 0;
    }
    return -1;
}

/* Nothing (more) to try at this destination. */
static void job_exhausted(struct job *j, const char *dsn, const char *relay, const char *text)
{
    if (dsn[0] == '4' && job_try_fallback(j) == 0)
        return;
    set_undecided(j, dsn, relay, text);
    job_finish(j);
}

static int targets_left(const struct job *j)
{
    if (j->next_target >= j->ntargets)
        return 0;
    return remote_cfg.mx_session_limit <= 0 || j->sessions < remote_cfg.mx_session_limit;
}

/* Connect to the current target under its TLS policy. */
static void job_open_target(struct job *j)
{
    const struct target *t = &j->targets[j->next_target];
    struct session_opts o = {.nexthop = j->nexthop_text, .nexthop_name = j->nh.name,
                             .tls = &j->tls_target, .creds = &j->creds};

    j->tls_target = j->tls;
    j->tls_target.tlsa = j->tlsa;
    o.no_tls = j->plain_retry;
    session_open(t, &o, on_open, j);
}

/* The current target cannot be used; on to the next. */
static void job_target_failed(struct job *j, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void job_target_failed(struct job *j, const char *dsn, const char *fmt, ...)
{
    va_list ap;

    memset(&j->last, 0, sizeof(j->last));
    snprintf(j->last.dsn, sizeof(j->last.dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(j->last.text, sizeof(j->last.text), fmt, ap);
    va_end(ap);
    j->last_relay[0] = 0;
    j->plain_retry = 0;
    j->next_target++;
    job_try_next_target(j);
}

/* What DANE decided for the current target (dane.c). */
static void job_dane_decided(struct job *j, enum dane_result result, struct tlsa_set *set)
{
    const struct target *t = &j->targets[j->next_target];

    j->tlsa = set;
    if (result == DANE_ERROR) {
        job_target_failed(j, "4.7.5", "TLSA lookup error for %s:%u", t->host, t->port);
    } else if (result != DANE_RECORDS && j->tls.level == TLS_LEVEL_DANE_ONLY) {
        job_target_failed(j, "4.7.5", "no usable %sTLSA records for %s:%u",
                          result == DANE_INSECURE ? "DNSSEC-validated " : "", t->host, t->port);
    } else {
        job_open_target(j);   /* "dane" without records is "may" */
    }
}

static void on_dane(void *ctx, enum dane_result result, struct tlsa_set *set)
{
    struct job *j = ctx;

    j->dane = NULL;
    job_dane_decided(j, result, set);
}

static void job_try_next_target(struct job *j)
{
    const struct target *t;

    tlsa_set_free(j->tlsa);
    j->tlsa = NULL;
    if (!targets_left(j)) {
        job_exhausted(j, j->last.dsn, j->last_relay, j->last.text);
        return;
    }
    /* Failures before the last are logged here; the last one goes into
     * every recipient's status line. */
    if (j->next_target > 0 && j->last.text[0] && !j->plain_retry)
        msg_info("%s", j->last.text);
    t = &j->targets[j->next_target];
    if (j->tls.level != TLS_LEVEL_DANE && j->tls.level != TLS_LEVEL_DANE_ONLY) {
        job_open_target(j);
    } else if (!dane_dnssec() || !t->dnssec) {
        job_dane_decided(j, DANE_INSECURE, NULL);
    } else {
        j->dane = dane_start(t, on_dane, j);
    }
}

static void on_route(void *ctx, const struct route_result *res)
{
    struct job *j = ctx;

    j->route = NULL;
    if (res->ntargets == 0) {
        /* A destination that is not found is no reason to give up while
         * a fallback relay is left (Postfix's smtp_fallback_relay). */
        char dsn[16];
        snprintf(dsn, sizeof(dsn), "%s", res->dsn);
        if (strcmp(dsn, "5.1.2") == 0 || strcmp(dsn, "5.4.4") == 0) {
            snprintf(j->last.text, sizeof(j->last.text), "%s", res->text);
            if (remote_cfg.nfallback > 0 && job_try_fallback(j) == 0)
                return;
        }
        job_exhausted(j, dsn, "", res->text);
        return;
    }
    if ((j->targets = calloc(res->ntargets, sizeof(*j->targets))) == NULL)
        msg_fatal("out of memory for %zu targets", res->ntargets);
    memcpy(j->targets, res->targets, res->ntargets * sizeof(*j->targets));
    j->ntargets = res->ntargets;
    j->next_target = 0;
    snprintf(j->last.dsn, sizeof(j->last.dsn), "4.4.1");
    snprintf(j->last.text, sizeof(j->last.text), "no server for %s could be reached",
             j->nh.name);
    job_try_next_target(j);
}

static void job_start_delivery(struct job *j)
{
    struct session *s = j->no_cache ? NULL : session_cache_take(j->key);

    if (s != NULL) {
        gettimeofday(&j->req.times.conn_done, NULL);
        transact_start(s, j->key, &j->msg, j->rcpts, j->nrcpt, on_transact, j);
        return;
    }
    if (j->targets != NULL) {
        j->next_target = 0;
        j->sessions = 0;
        job_try_next_target(j);
        return;
    }
    job_route(j);
}

static void job_route(struct job *j)
{
    j->route = route_start(&j->nh, on_route, j);
}

/* Open the queue file; the recipients are checked against it there.
 * Returns 0, or -1 with every status set. */
static int job_open_queue_file(struct job *j)
{
    struct queue_envelope env;
    int fd = deliver_request_open(&j->req, &env);

    if (fd < 0)
        return -1;
    j->msg.fd = fd;
    j->msg.queue_id = j->req.queue_id;
    j->msg.sender = j->req.sender;
    j->msg.dsn_envid = j->req.dsn_envid;
    j->msg.dsn_ret = j->req.dsn_ret;
    j->msg.smtputf8 = queue_envelope_attr(&env, ATTR_SMTPUTF8) != NULL;
    j->msg.content_size = env.content_size;
    j->msg.content_offset = (long long)env.content_offset;
    xforward_from_envelope(&j->msg.xforward, &env, j->req.queue_id);
    queue_envelope_free(&env);
    return 0;
}

/* The nexthop, or the first recipient's domain when qmgr sent none. */
static int job_nexthop(struct job *j)
{
    const char *text = j->req.nexthop;

    if ((text == NULL || *text == 0) && j->nrcpt > 0)
        text = address_domain(j->req.rcpt[0].address);
    if (text != NULL)
        snprintf(j->nexthop_text, sizeof(j->nexthop_text), "%s", text);
    if (text == NULL
        || (remote_cfg.lmtp ? lmtp_nexthop_parse(text, remote_cfg.default_port, &j->nh)
                            : nexthop_parse(text, remote_cfg.default_port, &j->nh)) < 0) {
        msg_warn("%s: bad nexthop \"%.100s\"", job_queue_id(j), text != NULL ? text : "");
        set_undecided(j, "4.3.5", "", "mail system configuration error: bad nexthop");
        return -1;
    }
    return 0;
}

/* The sender's own credentials, when they depend on the sender; a
 * connection authenticated as one user is never reused for another. */
static int job_credentials(struct job *j)
{
    if (auth_lookup_sender(j->req.sender, &j->creds) < 0) {
        set_undecided(j, "4.3.0", "", "mail system configuration error: "
                      "smtp_sasl_password_maps lookup failure");
        return -1;
    }
    job_cache_key(j);
    return 0;
}

/* The TLS policy of the destination; -1 (every status set) when it
 * cannot be had. */
static int job_tls_policy(struct job *j)
{
    char text[DELIVERY_TEXT_MAX];

    if (tls_policy_find(&j->nh, j->nexthop_text, &j->tls, text, sizeof(text)) < 0) {
        set_undecided(j, "4.7.5", "", text);
        return -1;
    }
    return 0;
}

static void job_cache_key(struct job *j)
{
    if (j->creds.found)
        snprintf(j->key, sizeof(j->key), "%s|%s", j->nh.key, j->creds.user);
    else
        snprintf(j->key, sizeof(j->key), "%s", j->nh.key);
}

/* The job proper, from the event loop: never inside the client's read
 * callback, so that nothing a job does can free the client under it. */
static void job_begin(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    size_t undecided = 0;

    if (j->req.bad != NULL) {
        set_undecided(j, "4.3.0", "", "bad request");
        job_finish(j);
        return;
    }
    if (job_open_queue_file(j) < 0 || job_nexthop(j) < 0 || job_credentials(j) < 0
        || job_tls_policy(j) < 0) {
        job_finish(j);
        return;
    }
    for (size_t i = 0; i < j->nrcpt; i++)
        undecided += j->req.rcpt[i].status.dsn[0] == 0;
    if (undecided == 0) {
        job_finish(j);
        return;
    }
    job_start_delivery(j);
}

/* The request is complete: parse it and start the job. -1 when it
 * cannot be answered. */
static int job_run(struct client *c, struct job *j)
{
    struct timeval received, now = {0, 0};

    gettimeofday(&received, NULL);
    if (job_parse(j, &received) < 0)
        return -1;
    c->running = 1;
    /* No idle timeout while we work; qmgr waits for the reply. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (event_base_once(remote_base, -1, EV_TIMEOUT, job_begin, j, &now) < 0)
        msg_fatal("cannot schedule a delivery");
    return 0;
}

/* --- qmgr connections ----------------------------------------------------- */

static void client_free(struct client *c)
{
    if (c->job != NULL && c->running) {
        /* The job goes on and frees the client when it is done. */
        c->closing = 1;
        bufferevent_disable(c->bev, EV_READ);
        return;
    }
    if (c->job != NULL)
        job_free(c->job);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        rm.clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    rec_buf_free(&c->rec);
    free(c);
    rm.nclients--;
    if (rm.full && rm.nclients < CLIENTS_MAX && !rm.draining) {
        rm.full = 0;
        event_add(rm.accept_ev, NULL);
        service_report(1);
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (!c->running && !c->closing) {
        int type = evrec_get(in, &c->rec, IPC_VALUE_MAX);
        if (type == 0)
            return;
        if (type != REC_ATTR && type != REC_END) {
            msg_warn("malformed delivery request from qmgr");
            client_free(c);
            maybe_exit();
            return;
        }
        if (c->job == NULL)
            c->job = job_new(c);
        if (type == REC_ATTR) {
            if (job_add_attr(c->job, c->rec.data) < 0) {
                client_free(c);
                maybe_exit();
                return;
            }
            continue;
        }
        if (job_run(c, c->job) < 0) {
            client_free(c);
            maybe_exit();
            return;
        }
    }
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;

    if (c->closing && !c->running) {
        client_free(c);
        maybe_exit();
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (c->running)
            msg_warn("%s: qmgr went away during delivery", job_queue_id(c->job));
        client_free(c);
        maybe_exit();
    }
}

static void client_start(int fd)
{
    struct client *c = calloc(1, sizeof(*c));
    struct timeval tmo = {.tv_sec = var.ipc_timeout};

    if (c == NULL || (c->bev = bufferevent_socket_new(remote_base, fd, BEV_OPT_CLOSE_ON_FREE))
                         == NULL) {
        msg_warn("out of memory for a qmgr connection");
        free(c);
        close(fd);
        return;
    }
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    /* Reading pauses while a job runs and input piles up; one record
     * (IPC_VALUE_MAX) always fits. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, CLIENT_INPUT_MAX);
    bufferevent_set_timeouts(c->bev, &tmo, NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evrec_put_attr(bufferevent_get_output(c->bev), "protocol", DELIVER_PROTOCOL);
    evrec_put(bufferevent_get_output(c->bev), REC_END, "", 0);
    c->next = rm.clients;
    if (rm.clients != NULL)
        rm.clients->prev = c;
    rm.clients = c;
    rm.nclients++;
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    /* A bounded batch, so a burst cannot starve the jobs in hand. */
    for (int i = 0; i < 64 && rm.nclients < CLIENTS_MAX; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                && errno != ECONNABORTED)
                msg_warn("accept: %s", strerror(errno));
            return;
        }
        rm.last_activity = time(NULL);
        client_start(fd);
    }
    if (rm.nclients >= CLIENTS_MAX && !rm.full) {
        /* Let master start another process for the rest. */
        rm.full = 1;
        event_del(rm.accept_ev);
        service_report(0);
    }
}

/* --- process lifetime ------------------------------------------------------ */

static void exit_check_cb(evutil_socket_t fd, short what, void *arg)
{
    if (session_count() == 0 || time(NULL) >= rm.exit_deadline)
        event_base_loopbreak(remote_base);
}

/* Leave once nothing is in hand: QUIT the idle sessions, give them a
 * moment, then stop the loop. */
static void begin_exit(void)
{
    struct timeval tick = {0, 100000};

    if (rm.exit_ev != NULL)
        return;
    event_del(rm.accept_ev);
    session_cache_flush();
    rm.exit_deadline = time(NULL) + EXIT_WAIT_MAX;
    rm.exit_ev = event_new(remote_base, -1, EV_PERSIST, exit_check_cb, NULL);
    if (rm.exit_ev == NULL || event_add(rm.exit_ev, &tick) < 0)
        event_base_loopbreak(remote_base);
}

static void maybe_exit(void)
{
    if (rm.draining && rm.nclients == 0)
        begin_exit();
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    long max_idle = var.max_idle;

    if (rm.nclients == 0 && time(NULL) - rm.last_activity >= max_idle)
        begin_exit();
}

static void master_gone(void *arg)
{
    struct client *c, *next;

    rm.draining = 1;
    event_del(rm.accept_ev);
    for (c = rm.clients; c != NULL; c = next) {
        next = c->next;
        if (!c->running)
            client_free(c);
    }
    maybe_exit();
}

/* --- settings -------------------------------------------------------------- */

/* smtp_fallback_relay: destinations as relayhost takes them. */
static void read_fallback_relays(void)
{
    char **items = NULL;
    long n = lookup_split_specs(var.smtp_fallback_relay, &items);

    if (n < 0)
        msg_fatal("smtp_fallback_relay: bad value \"%.100s\"", var.smtp_fallback_relay);
    remote_cfg.fallback = items;
    remote_cfg.nfallback = (size_t)n;
}

static void read_bind_address(const char *name, const char *value, int family,
                              struct dns_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (*value == 0)
        return;
    if (dns_addr_parse(value, out) < 0 || out->family != family)
        msg_fatal("%s: not an IPv%d address: \"%.100s\"", name, family == AF_INET ? 4 : 6,
                  value);
}

/* lmtp_* in place of smtp_* (Postfix's lmtp has its own set). */
static void read_lmtp_settings(void)
{
    remote_cfg.helo_name = var.lmtp_lhlo_name;
    remote_cfg.connect_timeout = var.lmtp_connect_timeout;
    remote_cfg.helo_timeout = var.lmtp_lhlo_timeout;
    remote_cfg.send_xforward = var.lmtp_send_xforward_command;
    remote_cfg.xforward_timeout = var.lmtp_xforward_timeout;
    remote_cfg.mail_timeout = var.lmtp_mail_timeout;
    remote_cfg.rcpt_timeout = var.lmtp_rcpt_timeout;
    remote_cfg.data_init_timeout = var.lmtp_data_init_timeout;
    remote_cfg.data_xfer_timeout = var.lmtp_data_xfer_timeout;
    remote_cfg.data_done_timeout = var.lmtp_data_done_timeout;
    remote_cfg.rset_timeout = var.lmtp_rset_timeout;
    remote_cfg.quit_timeout = var.lmtp_quit_timeout;
    remote_cfg.starttls_timeout = var.lmtp_starttls_timeout;
    remote_cfg.tls_cafile = var.lmtp_tls_CAfile;
    remote_cfg.tls_protocols = var.lmtp_tls_protocols;
    remote_cfg.tls_ciphers = var.lmtp_tls_ciphers;
    remote_cfg.tls_mandatory_protocols = var.lmtp_tls_mandatory_protocols;
    remote_cfg.tls_mandatory_ciphers = var.lmtp_tls_mandatory_ciphers;
    remote_cfg.default_port = port_parse(var.lmtp_tcp_port);
    if (remote_cfg.default_port == 0)
        msg_fatal("lmtp_tcp_port: bad port \"%s\"", var.lmtp_tcp_port);
    remote_cfg.mx_address_limit = var.lmtp_mx_address_limit;
    remote_cfg.mx_session_limit = var.lmtp_mx_session_limit;
    remote_cfg.cache_time_limit = var.lmtp_connection_cache_time_limit;
    remote_cfg.reuse_time_limit = var.lmtp_connection_reuse_time_limit;
    remote_cfg.reuse_count_limit = var.lmtp_connection_reuse_count_limit;
    /* Postfix's 0 means the system's own connect timeout; ours is bounded. */
    if (remote_cfg.connect_timeout <= 0)
        remote_cfg.connect_timeout = CONNECT_TIMEOUT_DEFAULT;
}

static void read_settings(void)
{
    remote_cfg.myhostname = var.myhostname;
    remote_cfg.helo_name = var.smtp_helo_name;
    remote_cfg.connect_timeout = var.smtp_connect_timeout;
    remote_cfg.helo_timeout = var.smtp_helo_timeout;
    remote_cfg.send_xforward = var.smtp_send_xforward_command;
    remote_cfg.xforward_timeout = var.smtp_xforward_timeout;
    remote_cfg.mail_timeout = var.smtp_mail_timeout;
    remote_cfg.rcpt_timeout = var.smtp_rcpt_timeout;
    remote_cfg.data_init_timeout = var.smtp_data_init_timeout;
    remote_cfg.data_xfer_timeout = var.smtp_data_xfer_timeout;
    remote_cfg.data_done_timeout = var.smtp_data_done_timeout;
    remote_cfg.rset_timeout = var.smtp_rset_timeout;
    remote_cfg.quit_timeout = var.smtp_quit_timeout;
    remote_cfg.starttls_timeout = var.smtp_starttls_timeout;
    remote_cfg.tls_cafile = var.smtp_tls_CAfile;
    remote_cfg.tls_capath = var.smtp_tls_CApath;
    remote_cfg.tls_cert_file = var.smtp_tls_cert_file;
    remote_cfg.tls_key_file = var.smtp_tls_key_file;
    remote_cfg.tls_exclude = var.smtp_tls_exclude_ciphers;
    remote_cfg.tls_mandatory_exclude = var.smtp_tls_mandatory_exclude_ciphers;
    remote_cfg.tls_servername = var.smtp_tls_servername;
    remote_cfg.tls_trust_anchor_file = var.smtp_tls_trust_anchor_file;
    remote_cfg.tls_fingerprint_digest = var.smtp_tls_fingerprint_digest;
    remote_cfg.tls_fingerprint_match = var.smtp_tls_fingerprint_cert_match;
    remote_cfg.tls_loglevel = var.smtp_tls_loglevel;
    remote_cfg.tls_protocols = var.smtp_tls_protocols;
    remote_cfg.tls_ciphers = var.smtp_tls_ciphers;
    remote_cfg.tls_mandatory_protocols = var.smtp_tls_mandatory_protocols;
    remote_cfg.tls_mandatory_ciphers = var.smtp_tls_mandatory_ciphers;
    remote_cfg.families = dns_families(var.inet_protocols);
    if (remote_cfg.families == 0)
        msg_fatal("inet_protocols: no usable protocol in \"%s\"", var.inet_protocols);
    remote_cfg.default_port = port_parse(var.smtp_tcp_port);
    if (remote_cfg.default_port == 0)
        msg_fatal("smtp_tcp_port: bad port \"%s\"", var.smtp_tcp_port);
    remote_cfg.mx_address_limit = var.smtp_mx_address_limit;
    remote_cfg.mx_session_limit = var.smtp_mx_session_limit;
    remote_cfg.cache_time_limit = var.smtp_connection_cache_time_limit;
    remote_cfg.reuse_time_limit = var.smtp_connection_reuse_time_limit;
    remote_cfg.reuse_count_limit = var.smtp_connection_reuse_count_limit;
    read_fallback_relays();
    read_bind_address("smtp_bind_address", var.smtp_bind_address, AF_INET, &remote_cfg.bind4);
    read_bind_address("smtp_bind_address6", var.smtp_bind_address6, AF_INET6, &remote_cfg.bind6);
    if (remote_cfg.lmtp)
        read_lmtp_settings();
    if (remote_cfg.helo_name == NULL || *remote_cfg.helo_name == 0)
        remote_cfg.helo_name = remote_cfg.myhostname;
}

/* Run as "lmtp" (master.cf's lmtp maps to remote under that name), remote
 * is the LMTP client, as Postfix's smtp is its lmtp. */
static int called_as_lmtp(const char *argv0)
{
    const char *base = strrchr(argv0, '/');
    return strcmp(base ? base + 1 : argv0, "lmtp") == 0;
}

int main(int argc, char **argv)
{
    char err[256];
    long max_idle;
    struct timeval tick;
    struct event *idle;

    /* Logged as "smtp" or "lmtp", as Postfix's client is, so log scanners
     * find it. */
    remote_cfg.lmtp = argc > 0 && called_as_lmtp(argv[0]);
    service_init(argc, argv, remote_cfg.lmtp ? "lmtp" : "smtp", 0);
    read_settings();
    auth_init();
    tls_policy_init();
    route_init_self();
    if ((remote_base = event_base_new()) == NULL)
        msg_fatal("event_base_new failed");
    remote_dns = dns_resolver_new(remote_base, var.dns_servers, err, sizeof(err));
    if (remote_dns == NULL)
        msg_fatal("%s", err);
    dane_init();
    evutil_make_socket_nonblocking(SERVICE_LISTEN_FD);
    rm.last_activity = time(NULL);
    rm.accept_ev = event_new(remote_base, SERVICE_LISTEN_FD, EV_READ | EV_PERSIST, accept_cb, NULL);
    max_idle = var.max_idle;
    tick = (struct timeval){.tv_sec = max_idle > 0 ? max_idle : 100};
    idle = event_new(remote_base, -1, EV_PERSIST, idle_cb, NULL);
    if (rm.accept_ev == NULL || idle == NULL || event_add(rm.accept_ev, NULL) < 0
        || event_add(idle, &tick) < 0)
        msg_fatal("cannot set up events");
    events_watch_eof(remote_base, SERVICE_ALIVE_FD, master_gone, NULL);
    event_base_dispatch(remote_base);
    return 0;
}
