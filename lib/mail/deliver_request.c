/* deliver_request.c - reading, checking and answering a deliver_protocol
 * request (deliver_request.h), for every delivery agent.
 *
 * The request keeps the attribute list it was read as and points into it,
 * so nothing is copied; the recipients are one array in request order,
 * which is also the order of the reply.
 */
#include "deliver_request.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "events.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#define ENVELOPE_RCPT_MAX 1000000   /* recipients we accept in one queue file */
#define OFFSET_DIGITS_MAX 18        /* keeps the offset inside long long */
#define NOTIFY_DIGITS_MAX 4
#define NOTIFY_BITS (DSN_NOTIFY_NEVER | DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE \
                     | DSN_NOTIFY_DELAY)

/* --- parsing ------------------------------------------------------------ */

/* "OFFSET ADDRESS": decimal offset above 0, one space, then the address
 * (which may itself hold spaces). Returns 0 or -1. */
static int parse_rcpt_value(const char *value, struct deliver_rcpt *r)
{
    const char *p = value;
    long long offset = 0;
    int digits = 0;

    for (; *p >= '0' && *p <= '9'; p++) {
        if (++digits > OFFSET_DIGITS_MAX)
            return -1;
        offset = offset * 10 + (*p - '0');
    }
    if (digits == 0 || offset <= 0 || *p != ' ')
        return -1;
    r->offset = offset;
    r->address = p + 1;
    return 0;
}

/* A rcpt_dsn_notify value: decimal, only known bits. -1 otherwise. */
static int parse_notify(const char *value)
{
    int mask = 0, digits = 0;

    for (; *value >= '0' && *value <= '9'; value++) {
        if (++digits > NOTIFY_DIGITS_MAX)
            return -1;
        mask = mask * 10 + (*value - '0');
    }
    if (digits == 0 || *value != 0 || (mask & ~NOTIFY_BITS) != 0)
        return -1;
    return mask;
}

static size_t count_named(const struct attr_list *list, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < list->count; i++)
        n += strcmp(list->names[i], name) == 0;
    return n;
}

/* What describes the next recipient comes before its rcpt attribute. */
struct rcpt_prefix {
    const char *orig, *dsn_orcpt, *notify, *queue_address;
};

/* Add one recipient; -1 when its value is malformed. */
static int add_rcpt(struct deliver_request *req, const char *value, struct rcpt_prefix *pre)
{
    struct deliver_rcpt *r = &req->rcpt[req->nrcpt];

    if (parse_rcpt_value(value, r) < 0) {
        msg_warn("malformed rcpt attribute in request: \"%.100s\"", value);
        return -1;
    }
    r->orig = pre->orig;
    r->dsn_orcpt = pre->dsn_orcpt;
    r->queue_address = pre->queue_address;
    r->dsn_notify = pre->notify != NULL ? parse_notify(pre->notify) : 0;
    memset(pre, 0, sizeof(*pre));
    req->nrcpt++;
    return 0;
}

/* The recipients in order, each with the attributes before it. */
static int parse_recipients(struct deliver_request *req)
{
    const struct attr_list *list = &req->attrs;
    struct rcpt_prefix pre = {0};
    size_t n = count_named(list, "rcpt");

    if (n == 0)
        return 0;
    if ((req->rcpt = calloc(n, sizeof(*req->rcpt))) == NULL)
        msg_fatal("out of memory for %zu recipients", n);
    for (size_t i = 0; i < list->count; i++) {
        const char *name = list->names[i], *value = list->values[i];
        if (strcmp(name, "orig_rcpt") == 0)
            pre.orig = value;
        else if (strcmp(name, "rcpt_dsn_orcpt") == 0)
            pre.dsn_orcpt = value;
        else if (strcmp(name, "rcpt_dsn_notify") == 0)
            pre.notify = value;
        else if (strcmp(name, "queue_rcpt") == 0)
            pre.queue_address = value;
        else if (strcmp(name, "rcpt") == 0 && add_rcpt(req, value, &pre) < 0)
            return -1;
    }
    return 0;
}

static int queue_name_deliverable(const char *name)
{
    return name != NULL && (strcmp(name, QUEUE_ACTIVE) == 0 || strcmp(name, QUEUE_INCOMING) == 0
                            || strcmp(name, QUEUE_DEFERRED) == 0);
}

static int dsn_ret_valid(const char *ret)
{
    return ret == NULL || *ret == 0 || strcasecmp(ret, "FULL") == 0 || strcasecmp(ret, "HDRS") == 0;
}

static int too_long(const char *address)
{
    return address != NULL && strlen(address) >= ADDRESS_MAX;
}

/* A time attribute: 0 absent, 1 read into tv, -1 malformed. */
static int time_attr(const struct deliver_request *req, const char *name, struct timeval *tv)
{
    const char *value = attr_get(&req->attrs, name);

    if (value == NULL)
        return 0;
    return delivery_parse_time(value, tv) < 0 ? -1 : 1;
}

static const char *check_recipients(const struct deliver_request *req)
{
    for (size_t i = 0; i < req->nrcpt; i++) {
        const struct deliver_rcpt *r = &req->rcpt[i];
        if (too_long(r->address) || too_long(r->orig) || too_long(r->queue_address))
            return "recipient too long";
        if (r->dsn_notify < 0)
            return "bad rcpt_dsn_notify";
    }
    return NULL;
}

/* The request-wide checks (deliver_request.h); the first failure. */
static const char *check_request(struct deliver_request *req)
{
    int arrival = time_attr(req, "arrival", &req->times.arrival);
    int active = time_attr(req, "active_time", &req->times.active);

    req->have_arrival = arrival > 0;
    req->have_active = active > 0;
    if (!queue_name_deliverable(req->queue_name))
        return "bad or missing queue_name";
    if (req->queue_id == NULL || !queue_id_valid(req->queue_id))
        return "bad or missing queue_id";
    if (req->sender == NULL)
        return "missing sender";
    if (too_long(req->sender))
        return "sender too long";
    if (arrival < 0)
        return "bad arrival time";
    if (active < 0)
        return "bad active_time";
    if (!dsn_ret_valid(req->dsn_ret))
        return "bad dsn_ret";
    return check_recipients(req);
}

/* Times not in the request: for now when it came (the queue file may
 * give a better arrival later, deliver_request_open). */
static void default_times(struct deliver_request *req, const struct timeval *received)
{
    req->times.agent_start = *received;
    req->times.conn_done = *received;
    if (!req->have_arrival)
        req->times.arrival = *received;
    if (!req->have_active)
        req->times.active = req->times.arrival;
}

int deliver_request_parse(struct deliver_request *req, struct attr_list *attrs,
                          const struct timeval *received)
{
    memset(req, 0, sizeof(*req));
    req->client_fd = -1;
    req->attrs = *attrs;
    memset(attrs, 0, sizeof(*attrs));
    req->queue_name = attr_get(&req->attrs, "queue_name");
    req->queue_id = attr_get(&req->attrs, "queue_id");
    req->sender = attr_get(&req->attrs, "sender");
    req->nexthop = attr_get(&req->attrs, "nexthop");
    req->dsn_envid = attr_get(&req->attrs, ATTR_DSN_ENVID);
    req->dsn_ret = attr_get(&req->attrs, ATTR_DSN_RET);
    if (parse_recipients(req) < 0)
        return -1;
    req->bad = check_request(req);
    default_times(req, received);
    if (req->bad != NULL)
        msg_warn("%s: bad delivery request: %s", deliver_request_id(req), req->bad);
    return 0;
}

int deliver_request_read(struct stream *s, struct deliver_request *req)
{
    struct attr_list list;
    struct timeval received;

    memset(req, 0, sizeof(*req));
    if (attr_list_read(s, &list) < 0)
        return -1;
    gettimeofday(&received, NULL);
    int rc = deliver_request_parse(req, &list, &received);
    req->client_fd = stream_fd(s);
    return rc;
}

void deliver_request_free(struct deliver_request *req)
{
    free(req->rcpt);
    attr_list_free(&req->attrs);
    memset(req, 0, sizeof(*req));
}

const char *deliver_request_id(const struct deliver_request *req)
{
    return req->queue_id != NULL && queue_id_valid(req->queue_id) ? req->queue_id : "?";
}

void deliver_request_set_pending(struct deliver_request *req, const char *dsn, const char *text)
{
    for (size_t i = 0; i < req->nrcpt; i++)
        if (req->rcpt[i].status.dsn[0] == 0)
            delivery_status_set(&req->rcpt[i].status, dsn, "%s", text);
}

/* --- the queue file ------------------------------------------------------ */

/* Whether the queue file holds r, not yet done, at r's offset: a stale or
 * forged offset must never get anything delivered. A recipient another
 * agent handed on (deliver_pass.h) names the address at the offset. */
static int rcpt_in_envelope(const struct queue_envelope *env, const struct deliver_rcpt *r)
{
    const char *address = r->queue_address != NULL ? r->queue_address : r->address;

    for (size_t i = 0; i < env->nrcpt; i++)
        if ((long long)env->rcpt[i].offset == r->offset)
            return !env->rcpt[i].done && strcmp(env->rcpt[i].address, address) == 0;
    return 0;
}

static void check_against(struct deliver_request *req, const struct queue_envelope *env)
{
    for (size_t i = 0; i < req->nrcpt; i++) {
        struct deliver_rcpt *r = &req->rcpt[i];
        if (r->status.dsn[0] != 0 || rcpt_in_envelope(env, r))
            continue;
        msg_warn("%s: recipient <%s> at offset %lld is not in the queue file", req->queue_id,
                 r->address, r->offset);
        delivery_status_set(&r->status, "4.3.0", "bad request: unknown recipient offset");
    }
}

int deliver_request_open(struct deliver_request *req, struct queue_envelope *env)
{
    char path[PATH_MAX];
    int fd;

    memset(env, 0, sizeof(*env));
    if (queue_path(path, sizeof(path), req->queue_name, req->queue_id) < 0) {
        deliver_request_set_pending(req, "4.3.0", "queue file path too long");
        return -1;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        msg_warn("%s: open %s: %s", req->queue_id, path, strerror(errno));
        deliver_request_set_pending(req, "4.3.0", "cannot open queue file");
        return -1;
    }
    /* Held while the agent has the file open: a qmgr started after this
     * one's qmgr died leaves the file alone until then (qmgr.c). Only a
     * qmgr testing for it at this instant can refuse it; that costs no
     * more than running without it. */
    (void)flock(fd, LOCK_SH | LOCK_NB);
    /* A request whose sender died before the lock was taken may have been
     * seen unlocked by its successor, which then delivers it itself: not
     * a second time here. Checked after the lock, so that a sender alive
     * now dies only after the lock, where its successor finds it. */
    if (req->client_fd >= 0 && ipc_peer_closed(req->client_fd)) {
        msg_info("%s: the delivery request was withdrawn (its sender went away)",
                 deliver_request_id(req));
        deliver_request_set_pending(req, "4.3.0", "delivery request withdrawn");
        close(fd);
        return -1;
    }
    if (queue_envelope_read(fd, env, ENVELOPE_RCPT_MAX) < 0 || !env->complete) {
        msg_warn("%s: malformed or incomplete queue file %s", req->queue_id, path);
        deliver_request_set_pending(req, "4.3.0", "malformed queue file");
        queue_envelope_free(env);
        close(fd);
        return -1;
    }
    if (!req->have_arrival)
        req->times.arrival = env->arrival;
    if (!req->have_active)
        req->times.active = req->times.arrival;
    check_against(req, env);
    return fd;
}

/* Only a plain success: a recipient that asked for a success notice
 * (NOTIFY=SUCCESS) is qmgr's to mark, after it has written the notice; one
 * another agent handed on (queue_rcpt, deliver_pass.h) is that agent's,
 * since one queue file recipient may be handed on several times (an alias
 * of many users through mailbox_transport). */
static int sent_without_notice(const struct deliver_rcpt *r)
{
    return r->status.dsn[0] == '2' && !(r->dsn_notify & DSN_NOTIFY_SUCCESS)
           && r->queue_address == NULL;
}

void deliver_request_mark_sent(const struct deliver_request *req)
{
    char path[PATH_MAX];
    size_t i;
    int fd;

    for (i = 0; i < req->nrcpt && !sent_without_notice(&req->rcpt[i]); i++)
        ;
    if (i == req->nrcpt || req->bad != NULL
        || queue_path(path, sizeof(path), req->queue_name, req->queue_id) < 0)
        return;
    if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        msg_warn("%s: open %s to mark recipients done: %s", req->queue_id, path,
                 strerror(errno));
        return;
    }
    for (; i < req->nrcpt; i++)
        if (sent_without_notice(&req->rcpt[i])
            && queue_file_mark_done(fd, req->rcpt[i].offset) < 0)
            msg_warn("%s: mark recipient done: %s", req->queue_id, strerror(errno));
    close(fd);
}

/* --- log and reply -------------------------------------------------------- */

void deliver_request_log(const struct deliver_request *req, const struct deliver_rcpt *r,
                         const char *relay)
{
    struct delivery_result res = {
        .queue_id = deliver_request_id(req),
        .recipient = r->address,
        .orig_recipient = r->orig,
        .relay = relay != NULL && *relay != 0 ? relay : "none",
        .dsn = r->status.dsn,
        .text = r->status.text,
        .times = req->times,
    };

    gettimeofday(&res.times.done, NULL);
    delivery_log(&res);
}

/* One reply writer for both kinds of output. */
typedef int (*put_attr_fn)(void *out, const char *name, const char *value);

static int reply_statuses(const struct deliver_request *req, put_attr_fn put, void *out)
{
    char value[DELIVERY_STATUS_MAX];

    for (size_t i = 0; i < req->nrcpt; i++) {
        const struct deliver_rcpt *r = &req->rcpt[i];
        delivery_status_format(value, sizeof(value), r->offset, r->status.dsn, r->status.text);
        if (put(out, "rcpt_status", value) < 0)
            return -1;
    }
    return 0;
}

static int put_stream(void *out, const char *name, const char *value)
{
    return attr_put(out, name, value);
}

static int put_evbuffer(void *out, const char *name, const char *value)
{
    return evrec_put_attr(out, name, value);
}

int deliver_request_reply(struct stream *s, const struct deliver_request *req)
{
    if (reply_statuses(req, put_stream, s) < 0)
        return -1;
    return attr_end(s);
}

int deliver_request_reply_ev(struct evbuffer *out, const struct deliver_request *req)
{
    if (reply_statuses(req, put_evbuffer, out) < 0)
        return -1;
    return evrec_put(out, REC_END, "", 0);
}
