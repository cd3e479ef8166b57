/* remote - the SMTP client delivery agent: serves deliver_protocol (ipc.h)
 * on private/smtp and private/relay for qmgr.
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
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "service.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS_MAX 1000          /* qmgr connections one process serves */
#define ENVELOPE_RCPT_MAX 1000000 /* recipients we accept in one queue file */
#define OFFSET_DIGITS_MAX 18
#define EXIT_WAIT_MAX 5           /* seconds to let QUITs go out at exit */
#define CLIENT_INPUT_MAX (8 * IPC_VALUE_MAX)  /* request bytes buffered at most */

struct remote_config remote_cfg;
struct event_base *remote_base;
struct dns_resolver *remote_dns;

struct client;

struct job {
    struct client *client;
    /* the request; strings owned */
    char *queue_name, *queue_id, *sender, *nexthop, *dsn_envid, *dsn_ret;
    char *arrival, *active;
    struct rcpt *rcpts;
    size_t nrcpt, caprcpt, nattr;
    char *next_orig, *next_orcpt;  /* describe the next rcpt */
    int next_notify;
    const char *bad;
    /* the delivery */
    struct delivery_times times;
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

/* --- jobs: request parsing ----------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    if (d == NULL)
        msg_fatal("out of memory");
    return d;
}

static void replace(char **slot, const char *value)
{
    free(*slot);
    *slot = xstrdup(value);
}

static struct job *job_new(struct client *c)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        msg_fatal("out of memory for a job");
    j->client = c;
    j->msg.fd = -1;
    j->msg.eightbit = -1;
    return j;
}

static void job_free(struct job *j)
{
    if (j->route != NULL)
        route_cancel(j->route);
    if (j->msg.fd >= 0)
        close(j->msg.fd);
    for (size_t i = 0; i < j->nrcpt; i++) {
        free(j->rcpts[i].address);
        free(j->rcpts[i].orig);
        free(j->rcpts[i].dsn_orcpt);
    }
    free(j->rcpts);
    free(j->queue_name);
    free(j->queue_id);
    free(j->sender);
    free(j->nexthop);
    free(j->dsn_envid);
    free(j->dsn_ret);
    free(j->arrival);
    free(j->active);
    free(j->next_orig);
    free(j->next_orcpt);
    free(j->targets);
    free(j);
}

/* "OFFSET ADDRESS". Returns 0, or -1 when malformed. */
static int add_rcpt(struct job *j, const char *value)
{
    long long offset = 0;
    int digits = 0;
    const char *p;
    struct rcpt *r;

    for (p = value; *p >= '0' && *p <= '9'; p++) {
        if (++digits > OFFSET_DIGITS_MAX)
            return -1;
        offset = offset * 10 + (*p - '0');
    }
    if (digits == 0 || offset <= 0 || *p != ' ' || strlen(p + 1) >= ADDRESS_MAX)
        return -1;
    if (j->nrcpt == j->caprcpt) {
        size_t cap = j->caprcpt ? j->caprcpt * 2 : 8;
        struct rcpt *n = realloc(j->rcpts, cap * sizeof(*n));
        if (n == NULL)
            msg_fatal("out of memory for %zu recipients", cap);
        j->rcpts = n;
        j->caprcpt = cap;
    }
    r = &j->rcpts[j->nrcpt++];
    memset(r, 0, sizeof(*r));
    r->offset = offset;
    r->address = xstrdup(p + 1);
    r->orig = j->next_orig;
    r->dsn_orcpt = j->next_orcpt;
    r->dsn_notify = j->next_notify;
    j->next_orig = j->next_orcpt = NULL;
    j->next_notify = 0;
    return 0;
}

/* One "name=value" of a request. Returns -1 when the request is beyond
 * repair (the connection is then dropped). */
static int job_add_attr(struct job *j, char *payload)
{
    char *name, *value;

    if (++j->nattr > IPC_ATTR_MAX)
        return -1;
    if (rec_attr_split(payload, &name, &value) < 0)
        return 0;
    if (strcmp(name, "rcpt") == 0) {
        if (add_rcpt(j, value) < 0) {
            msg_warn("malformed rcpt attribute in request: \"%.100s\"", value);
            return -1;
        }
    } else if (strcmp(name, "orig_rcpt") == 0) {
        replace(&j->next_orig, value);
    } else if (strcmp(name, "rcpt_dsn_orcpt") == 0) {
        replace(&j->next_orcpt, value);
    } else if (strcmp(name, "rcpt_dsn_notify") == 0) {
        j->next_notify = atoi(value) & (DSN_NOTIFY_NEVER | DSN_NOTIFY_SUCCESS
                                        | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
    } else if (strcmp(name, "queue_name") == 0) {
        replace(&j->queue_name, value);
    } else if (strcmp(name, "queue_id") == 0) {
        replace(&j->queue_id, value);
    } else if (strcmp(name, "sender") == 0) {
        replace(&j->sender, value);
    } else if (strcmp(name, "nexthop") == 0) {
        replace(&j->nexthop, value);
    } else if (strcmp(name, ATTR_DSN_ENVID) == 0) {
        replace(&j->dsn_envid, value);
    } else if (strcmp(name, ATTR_DSN_RET) == 0) {
        replace(&j->dsn_ret, value);
    } else if (strcmp(name, "arrival") == 0) {
        replace(&j->arrival, value);
    } else if (strcmp(name, "active_time") == 0) {
        replace(&j->active, value);
    }
    return 0;
}

static int valid_queue_name(const char *name)
{
    return name != NULL && (strcmp(name, QUEUE_ACTIVE) == 0 || strcmp(name, QUEUE_INCOMING) == 0
                            || strcmp(name, QUEUE_DEFERRED) == 0);
}

static int valid_dsn_ret(const char *ret)
{
    return ret == NULL || *ret == 0 || strcasecmp(ret, "FULL") == 0 || strcasecmp(ret, "HDRS") == 0;
}

/* The request-wide checks; the first failure is remembered in j->bad. */
static void job_check(struct job *j, const struct timeval *received)
{
    j->times.agent_start = *received;
    j->times.conn_done = *received;
    if (!valid_queue_name(j->queue_name))
        j->bad = "bad or missing queue_name";
    else if (j->queue_id == NULL || !queue_id_valid(j->queue_id))
        j->bad = "bad or missing queue_id";
    else if (j->sender == NULL || strlen(j->sender) >= ADDRESS_MAX)
        j->bad = "bad or missing sender";
    else if (j->arrival != NULL && delivery_parse_time(j->arrival, &j->times.arrival) < 0)
        j->bad = "bad arrival time";
    else if (j->active != NULL && delivery_parse_time(j->active, &j->times.active) < 0)
        j->bad = "bad active_time";
    else if (!valid_dsn_ret(j->dsn_ret))
        j->bad = "bad dsn_ret";
    if (j->arrival == NULL || j->bad != NULL)
        j->times.arrival = *received;
    if (j->active == NULL || j->bad != NULL)
        j->times.active = j->times.arrival;
    if (j->bad != NULL)
        msg_warn("%s: bad delivery request: %s",
                 j->queue_id != NULL && queue_id_valid(j->queue_id) ? j->queue_id : "?", j->bad);
}

static const char *job_queue_id(const struct job *j)
{
    return j->queue_id != NULL && queue_id_valid(j->queue_id) ? j->queue_id : "?";
}

static void set_undecided(struct job *j, const char *dsn, const char *relay, const char *text)
{
    for (size_t i = 0; i < j->nrcpt; i++)
        rcpt_set(&j->rcpts[i], dsn, relay, "%s", text);
}

/* --- jobs: finishing ----------------------------------------------------- */

static void job_log(const struct job *j)
{
    struct delivery_result res = {.queue_id = job_queue_id(j), .times = j->times};

    gettimeofday(&res.times.done, NULL);
    for (size_t i = 0; i < j->nrcpt; i++) {
        const struct rcpt *r = &j->rcpts[i];
        res.recipient = r->address;
        res.orig_recipient = r->orig;
        res.relay = r->relay[0] ? r->relay : "none";
        res.dsn = r->dsn;
        res.text = r->text;
        delivery_log(&res);
    }
}

static void job_reply(struct client *c, const struct job *j)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char value[DELIVERY_STATUS_MAX];

    for (size_t i = 0; i < j->nrcpt; i++) {
        const struct rcpt *r = &j->rcpts[i];
        delivery_status_format(value, sizeof(value), r->offset, r->dsn, r->text);
        evrec_put_attr(out, "rcpt_status", value);
    }
    evrec_put(out, REC_END, "", 0);
}

static void maybe_exit(void);

/* Every recipient has a status: log, reply, and read the next request. */
static void job_finish(struct job *j)
{
    struct client *c = j->client;

    set_undecided(j, "4.3.0", "", "mail delivery failed: internal error");
    if (j->times.conn_done.tv_sec == j->times.agent_start.tv_sec
        && j->times.conn_done.tv_usec == j->times.agent_start.tv_usec)
        gettimeofday(&j->times.conn_done, NULL);
    job_log(j);
    if (!c->closing)
        job_reply(c, j);
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
        gettimeofday(&j->times.conn_done, NULL);
        j->plain_retry = 0;
        transact_start(s, j->nh.key, &j->msg, j->rcpts, j->nrcpt, on_transact, j);
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

static int targets_left(const struct job *j)
{
    if (j->next_target >= j->ntargets)
        return 0;
    return remote_cfg.mx_session_limit <= 0 || j->sessions < remote_cfg.mx_session_limit;
}

static void job_try_next_target(struct job *j)
{
    const struct target *t;
    const char *tls_host;

    if (!targets_left(j)) {
        set_undecided(j, j->last.dsn, j->last_relay, j->last.text);
        job_finish(j);
        return;
    }
    /* Failures before the last are logged here; the last one goes into
     * every recipient's status line. */
    if (j->next_target > 0 && j->last.text[0] && !j->plain_retry)
        msg_info("%s", j->last.text);
    t = &j->targets[j->next_target];
    tls_host = remote_cfg.tls_level == TLS_LEVEL_SECURE ? j->nh.name : t->host;
    session_open(t, tls_host, j->plain_retry, on_open, j);
}

static void on_route(void *ctx, const struct route_result *res)
{
    struct job *j = ctx;

    j->route = NULL;
    if (res->ntargets == 0) {
        set_undecided(j, res->dsn, "", res->text);
        job_finish(j);
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
    struct session *s = j->no_cache ? NULL : session_cache_take(j->nh.key);

    if (s != NULL) {
        gettimeofday(&j->times.conn_done, NULL);
        transact_start(s, j->nh.key, &j->msg, j->rcpts, j->nrcpt, on_transact, j);
        return;
    }
    if (j->targets != NULL) {
        j->next_target = 0;
        j->sessions = 0;
        job_try_next_target(j);
        return;
    }
    j->route = route_start(&j->nh, on_route, j);
}

/* Whether the request's recipient is the queue file's recipient at that
 * offset: a stale or forged offset must not be delivered. */
static int rcpt_in_envelope(const struct queue_envelope *env, const struct rcpt *r)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        if ((long long)env->rcpt[i].offset == r->offset)
            return !env->rcpt[i].done && strcmp(env->rcpt[i].address, r->address) == 0;
    return 0;
}

/* Open the queue file and check every recipient against it. Returns 0, or
 * -1 with every status set. */
static int job_open_queue_file(struct job *j)
{
    char path[PATH_MAX];
    struct queue_envelope env;
    int fd;

    memset(&env, 0, sizeof(env));
    if (queue_path(path, sizeof(path), j->queue_name, j->queue_id) < 0
        || (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        msg_warn("%s: open %s: %s", j->queue_id, path, strerror(errno));
        set_undecided(j, "4.3.0", "", "cannot open queue file");
        return -1;
    }
    if (queue_envelope_read(fd, &env, ENVELOPE_RCPT_MAX) < 0 || !env.complete) {
        msg_warn("%s: malformed or incomplete queue file %s", j->queue_id, path);
        set_undecided(j, "4.3.0", "", "malformed queue file");
        queue_envelope_free(&env);
        close(fd);
        return -1;
    }
    if (j->arrival == NULL)
        j->times.arrival = env.arrival;
    for (size_t i = 0; i < j->nrcpt; i++)
        if (!rcpt_in_envelope(&env, &j->rcpts[i])) {
            msg_warn("%s: recipient <%s> at offset %lld is not in the queue file", j->queue_id,
                     j->rcpts[i].address, j->rcpts[i].offset);
            rcpt_set(&j->rcpts[i], "4.3.0", "", "bad request: unknown recipient offset");
        }
    j->msg.fd = fd;
    j->msg.queue_id = j->queue_id;
    j->msg.sender = j->sender;
    j->msg.dsn_envid = j->dsn_envid;
    j->msg.dsn_ret = j->dsn_ret;
    j->msg.content_size = env.content_size;
    j->msg.content_offset = (long long)env.content_offset;
    queue_envelope_free(&env);
    return 0;
}

/* The nexthop, or the first recipient's domain when qmgr sent none. */
static int job_nexthop(struct job *j)
{
    const char *text = j->nexthop;

    if ((text == NULL || *text == 0) && j->nrcpt > 0)
        text = address_domain(j->rcpts[0].address);
    if (text == NULL || nexthop_parse(text, remote_cfg.default_port, &j->nh) < 0) {
        msg_warn("%s: bad nexthop \"%.100s\"", j->queue_id, text != NULL ? text : "");
        set_undecided(j, "4.3.5", "", "mail system configuration error: bad nexthop");
        return -1;
    }
    return 0;
}

/* The job proper, from the event loop: never inside the client's read
 * callback, so that nothing a job does can free the client under it. */
static void job_begin(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    size_t undecided = 0;

    if (j->bad != NULL) {
        set_undecided(j, "4.3.0", "", "bad request");
        job_finish(j);
        return;
    }
    if (job_open_queue_file(j) < 0 || job_nexthop(j) < 0) {
        job_finish(j);
        return;
    }
    for (size_t i = 0; i < j->nrcpt; i++)
        undecided += j->rcpts[i].dsn[0] == 0;
    if (undecided == 0) {
        job_finish(j);
        return;
    }
    job_start_delivery(j);
}

static void job_run(struct client *c, struct job *j)
{
    struct timeval received, now = {0, 0};

    gettimeofday(&received, NULL);
    c->running = 1;
    /* No idle timeout while we work; qmgr waits for the reply. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    job_check(j, &received);
    if (event_base_once(remote_base, -1, EV_TIMEOUT, job_begin, j, &now) < 0)
        msg_fatal("cannot schedule a delivery");
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
        job_run(c, c->job);
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
    evrec_put_attr(bufferevent_get_output(c->bev), "protocol", REMOTE_PROTOCOL);
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

static enum tls_level parse_tls_level(const char *value)
{
    if (*value == 0 || strcasecmp(value, "none") == 0)
        return TLS_LEVEL_NONE;
    if (strcasecmp(value, "may") == 0)
        return TLS_LEVEL_MAY;
    if (strcasecmp(value, "encrypt") == 0)
        return TLS_LEVEL_ENCRYPT;
    if (strcasecmp(value, "verify") == 0)
        return TLS_LEVEL_VERIFY;
    if (strcasecmp(value, "secure") == 0)
        return TLS_LEVEL_SECURE;
    if (strcasecmp(value, "dane") == 0) {
        /* Without a validating resolver DANE falls back to "may", as in
         * Postfix. */
        msg_warn("smtp_tls_security_level = dane: no DNSSEC, using \"may\"");
        return TLS_LEVEL_MAY;
    }
    msg_fatal("unsupported smtp_tls_security_level \"%s\"", value);
}

static void read_settings(void)
{
    remote_cfg.myhostname = var.myhostname;
    remote_cfg.helo_name = var.smtp_helo_name;
    if (remote_cfg.helo_name == NULL || *remote_cfg.helo_name == 0)
        remote_cfg.helo_name = remote_cfg.myhostname;
    remote_cfg.connect_timeout = var.smtp_connect_timeout;
    remote_cfg.helo_timeout = var.smtp_helo_timeout;
    remote_cfg.mail_timeout = var.smtp_mail_timeout;
    remote_cfg.rcpt_timeout = var.smtp_rcpt_timeout;
    remote_cfg.data_init_timeout = var.smtp_data_init_timeout;
    remote_cfg.data_xfer_timeout = var.smtp_data_xfer_timeout;
    remote_cfg.data_done_timeout = var.smtp_data_done_timeout;
    remote_cfg.rset_timeout = var.smtp_rset_timeout;
    remote_cfg.quit_timeout = var.smtp_quit_timeout;
    remote_cfg.starttls_timeout = var.smtp_starttls_timeout;
    remote_cfg.tls_level = parse_tls_level(var.smtp_tls_security_level);
    remote_cfg.tls_cafile = var.smtp_tls_CAfile;
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
}

int main(int argc, char **argv)
{
    char err[256];
    long max_idle;
    struct timeval tick;
    struct event *idle;

    /* Logged as "smtp", as Postfix's client is, so log scanners find it. */
    service_init(argc, argv, "smtp", 0);
    read_settings();
    route_init_self();
    if ((remote_base = event_base_new()) == NULL)
        msg_fatal("event_base_new failed");
    remote_dns = dns_resolver_new(remote_base, var.dns_servers, err, sizeof(err));
    if (remote_dns == NULL)
        msg_fatal("%s", err);
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
