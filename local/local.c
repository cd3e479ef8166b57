/* local.c - the local delivery agent: serves deliver_protocol (ipc.h) on
 * private/local for qmgr, one connection at a time.
 *
 * Each request names one queue file and some of its recipients; we open the
 * file, deliver to each recipient in turn (mailbox.c; in system mode
 * resolve.c, which logs each alias or .forward destination itself), log
 * every result in Postfix's format (delivery.h) and reply with one
 * rcpt_status per recipient, in request order. In system mode we run as
 * root only to take on each recipient's rights (privs.c). The request is
 * checked against the queue file before anything is written: a bad request
 * is answered with 4.3.0 for every recipient (or, when it cannot even be
 * read, by closing the connection), never by a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "delivery.h"
#include "ipc.h"
#include "local.h"
#include "maildir.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "service.h"
#include "stream.h"

#define LOCAL_PROTOCOL "deliver_protocol"
#define ENVELOPE_RCPT_MAX 1000000   /* recipients we accept in one queue file */
#define OFFSET_DIGITS_MAX 18        /* keeps the offset inside long long */

struct local_rcpt {
    long long offset;          /* of the R record in the queue file */
    const char *address;       /* internal form, points into the attr_list */
    const char *orig;          /* original recipient or NULL, likewise */
    struct local_status status;
};

/* One request. Strings point into the attr_list it was read from. */
struct local_request {
    const char *queue_name;
    const char *queue_id;
    const char *sender;
    const char *nexthop;
    struct timeval arrival;
    struct timeval active;
    int have_arrival, have_active;
    const char *bad;           /* why the request is unusable, or NULL */
    size_t nrcpt;
    struct local_rcpt *rcpt;   /* malloc'd, owned by the request */
};

/* "OFFSET ADDRESS": decimal offset, one space, the rest is the address
 * (which may itself contain spaces). Returns 0 or -1. */
static int parse_rcpt_value(const char *value, struct local_rcpt *r)
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

static int parse_time_attr(const struct attr_list *list, const char *name,
                           struct timeval *tv, int *have)
{
    const char *value = attr_get(list, name);

    *have = 0;
    if (value == NULL)
        return 0;
    if (delivery_parse_time(value, tv) < 0)
        return -1;
    *have = 1;
    return 0;
}

/* Collect the recipients in order, each with the orig_rcpt before it. A
 * malformed rcpt makes the whole request unanswerable: -1. */
static int parse_recipients(const struct attr_list *list, struct local_request *req)
{
    const char *orig = NULL;
    size_t i, n = 0;

    for (i = 0; i < list->count; i++)
        if (strcmp(list->names[i], "rcpt") == 0)
            n++;
    if (n == 0)
        return 0;
    req->rcpt = calloc(n, sizeof(*req->rcpt));
    if (req->rcpt == NULL)
        msg_fatal("out of memory for %zu recipients", n);
    for (i = 0; i < list->count; i++) {
        if (strcmp(list->names[i], "orig_rcpt") == 0) {
            orig = list->values[i];
        } else if (strcmp(list->names[i], "rcpt") == 0) {
            struct local_rcpt *r = &req->rcpt[req->nrcpt];
            if (parse_rcpt_value(list->values[i], r) < 0) {
                msg_warn("malformed rcpt attribute in request: \"%.100s\"", list->values[i]);
                return -1;
            }
            r->orig = orig;
            orig = NULL;
            req->nrcpt++;
        }
    }
    return 0;
}

static int valid_queue_name(const char *name)
{
    return name != NULL && (strcmp(name, QUEUE_ACTIVE) == 0 || strcmp(name, QUEUE_INCOMING) == 0
                            || strcmp(name, QUEUE_DEFERRED) == 0);
}

/* The request-wide checks; the first failure is remembered in req->bad. */
static void check_request(const struct attr_list *list, struct local_request *req)
{
    size_t i;

    if (!valid_queue_name(req->queue_name))
        req->bad = "bad or missing queue_name";
    else if (req->queue_id == NULL || !queue_id_valid(req->queue_id))
        req->bad = "bad or missing queue_id";
    else if (req->sender == NULL)
        req->bad = "missing sender";
    else if (strlen(req->sender) >= ADDRESS_MAX)
        req->bad = "sender too long";
    else if (parse_time_attr(list, "arrival", &req->arrival, &req->have_arrival) < 0)
        req->bad = "bad arrival time";
    else if (parse_time_attr(list, "active_time", &req->active, &req->have_active) < 0)
        req->bad = "bad active_time";
    for (i = 0; req->bad == NULL && i < req->nrcpt; i++) {
        if (strlen(req->rcpt[i].address) >= ADDRESS_MAX
            || (req->rcpt[i].orig != NULL && strlen(req->rcpt[i].orig) >= ADDRESS_MAX))
            req->bad = "recipient too long";
    }
}

/* Fill req from list. Returns -1 when the request cannot be answered. */
static int parse_request(const struct attr_list *list, struct local_request *req)
{
    memset(req, 0, sizeof(*req));
    req->queue_name = attr_get(list, "queue_name");
    req->queue_id = attr_get(list, "queue_id");
    req->sender = attr_get(list, "sender");
    req->nexthop = attr_get(list, "nexthop");
    if (parse_recipients(list, req) < 0)
        return -1;
    check_request(list, req);
    if (req->bad != NULL)
        msg_warn("%s: bad delivery request: %s",
                 req->queue_id != NULL && queue_id_valid(req->queue_id) ? req->queue_id : "?",
                 req->bad);
    return 0;
}

static void request_free(struct local_request *req)
{
    free(req->rcpt);
    req->rcpt = NULL;
    req->nrcpt = 0;
}

static void set_all_status(struct local_request *req, const char *dsn, const char *text)
{
    size_t i;

    for (i = 0; i < req->nrcpt; i++)
        local_status_set(&req->rcpt[i].status, dsn, "%s", text);
}

/* Whether the request's recipient is the queue file's recipient at that
 * offset: a stale or forged offset must not get a mailbox written. */
static int rcpt_in_envelope(const struct queue_envelope *env, const struct local_rcpt *r)
{
    size_t i;

    for (i = 0; i < env->nrcpt; i++)
        if ((long long)env->rcpt[i].offset == r->offset)
            return strcmp(env->rcpt[i].address, r->address) == 0;
    return 0;
}

static void log_result(const struct local_request *req, const struct local_rcpt *r,
                       const struct delivery_times *times)
{
    struct delivery_result res = {
        .queue_id = req->queue_id != NULL && queue_id_valid(req->queue_id) ? req->queue_id : "?",
        .recipient = r->address,
        .orig_recipient = r->orig,
        .relay = "local",
        .dsn = r->status.dsn,
        .text = r->status.text,
        .times = *times,
    };

    gettimeofday(&res.times.done, NULL);
    delivery_log(&res);
}

/* Open the queue file and read its envelope. Returns the fd, or -1 with
 * every status set. */
static int open_queue_file(struct local_request *req, struct queue_envelope *env)
{
    char path[PATH_MAX];
    int fd;

    if (queue_path(path, sizeof(path), req->queue_name, req->queue_id) < 0) {
        set_all_status(req, "4.3.0", "queue file path too long");
        return -1;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        msg_warn("%s: open %s: %s", req->queue_id, path, strerror(errno));
        set_all_status(req, "4.3.0", "cannot open queue file");
        return -1;
    }
    if (queue_envelope_read(fd, env, ENVELOPE_RCPT_MAX) < 0 || !env->complete) {
        msg_warn("%s: malformed or incomplete queue file %s", req->queue_id, path);
        set_all_status(req, "4.3.0", "malformed queue file");
        close(fd);
        return -1;
    }
    return fd;
}

static void deliver_each(struct local_request *req, const struct queue_envelope *env,
                         struct stream *queue, const struct delivery_times *times)
{
    struct local_message msg = {
        .queue_id = req->queue_id,
        .sender = req->sender,
        .queue = queue,
        .content_offset = env->content_offset,
        .times = times,
    };
    size_t i;

    for (i = 0; i < req->nrcpt; i++) {
        struct local_rcpt *r = &req->rcpt[i];
        int logged = 0;
        if (!rcpt_in_envelope(env, r)) {
            msg_warn("%s: recipient <%s> at offset %lld is not in the queue file",
                     req->queue_id, r->address, r->offset);
            local_status_set(&r->status, "4.3.0", "bad request: unknown recipient offset");
        } else {
            logged = local_deliver_recipient(&msg, r->address, r->orig, &r->status);
        }
        /* d runs from the request, as one delivery of all its recipients. */
        if (!logged)
            log_result(req, r, times);
    }
}

/* Open the queue file and deliver to every recipient, logging each.
 * Returns -1 (statuses set, nothing logged) when the file is unusable. */
static int deliver_from_queue_file(struct local_request *req, struct delivery_times *times)
{
    struct queue_envelope env;
    struct stream *queue;
    int fd;

    memset(&env, 0, sizeof(env));
    if ((fd = open_queue_file(req, &env)) < 0) {
        queue_envelope_free(&env);
        return -1;
    }
    if (!req->have_arrival)
        times->arrival = env.arrival;
    if (!req->have_active)
        times->active = times->arrival;
    if ((queue = stream_open(fd, 0)) == NULL)
        msg_fatal("out of memory for a queue file stream");
    deliver_each(req, &env, queue, times);
    stream_close(queue);
    queue_envelope_free(&env);
    return 0;
}

/* Deliver every recipient of a request; each ends with a status, logged. */
static void deliver_request(struct local_request *req, const struct timeval *received)
{
    struct delivery_times times = {.agent_start = *received, .conn_done = *received};
    size_t i;

    times.arrival = req->have_arrival ? req->arrival : *received;
    times.active = req->have_active ? req->active : times.arrival;
    if (req->bad == NULL && deliver_from_queue_file(req, &times) == 0)
        return;
    if (req->bad != NULL)
        set_all_status(req, "4.3.0", "bad request");
    for (i = 0; i < req->nrcpt; i++)
        log_result(req, &req->rcpt[i], &times);
}

/* One rcpt_status per recipient, in request order, then the end record. */
static int send_reply(struct stream *s, const struct local_request *req)
{
    char value[DELIVERY_STATUS_MAX];
    size_t i;

    for (i = 0; i < req->nrcpt; i++) {
        const struct local_rcpt *r = &req->rcpt[i];
        delivery_status_format(value, sizeof(value), r->offset, r->status.dsn, r->status.text);
        if (attr_put(s, "rcpt_status", value) < 0)
            return -1;
    }
    return attr_end(s);
}

/* Serve one qmgr connection until it closes: read a request, deliver,
 * reply, repeat. Owns fd. */
static void serve(int fd)
{
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);
    struct attr_list list = {0};

    if (s == NULL) {
        msg_warn("out of memory for a connection stream");
        close(fd);
        return;
    }
    if (ipc_greet(s, LOCAL_PROTOCOL) < 0) {
        msg_warn("cannot send greeting: %s", strerror(errno));
        stream_abandon(s);
        return;
    }
    for (;;) {
        struct local_request req;
        struct timeval received;
        int ok;

        if (attr_list_read(s, &list) < 0)
            break;   /* EOF, timeout or garbage: the client is gone */
        gettimeofday(&received, NULL);
        if (parse_request(&list, &req) < 0) {
            request_free(&req);
            break;
        }
        deliver_request(&req, &received);
        ok = send_reply(s, &req) == 0;
        request_free(&req);
        attr_list_free(&list);
        if (!ok) {
            msg_warn("cannot send reply to delivery request: %s", strerror(errno));
            break;
        }
        if (service_master_gone())
            break;
    }
    attr_list_free(&list);
    stream_abandon(s);
}

/* A fatal error must leave no half-written Maildir file and no dot-lock. */
static void cleanup_on_fatal(void)
{
    privs_leave();
    maildir_fatal_cleanup();
    mbox_cleanup();
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "local", SERVICE_FLAG_ROOT);
    log_set_fatal_hook(cleanup_on_fatal);
    service_run_single(serve);
}
