/* virtual.c - the virtual delivery agent (Postfix's virtual(8)): serves
 * deliver_protocol (ipc.h) for qmgr, one connection at a time, on the
 * master.cf service that virtual_transport names (normally "virtual").
 *
 * Each request names one queue file and some of its recipients. The file
 * is opened and its envelope read first: a recipient whose offset and
 * address do not match the file gets 4.3.0 and nothing is written for it.
 * Each recipient is delivered (deliver.c), logged in Postfix's format with
 * relay=virtual, and answered with one rcpt_status, in request order.
 */
#include "virtual.h"

#include "address.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "service.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define DELIVER_PROTOCOL "deliver_protocol"
#define ENVELOPE_RCPT_MAX 1000000
#define OFFSET_DIGITS_MAX 18

void vstatus_set(struct vstatus *st, const char *dsn, const char *fmt, ...)
{
    va_list ap;
    snprintf(st->dsn, sizeof(st->dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(st->text, sizeof(st->text), fmt, ap);
    va_end(ap);
}

void vstatus_io_error(struct vstatus *st, const char *what, int err)
{
    vstatus_set(st, err == ENOSPC || err == EDQUOT ? "4.3.0" : "4.2.0", "%s: %s", what,
                strerror(err));
}

struct vrcpt {
    long long offset;
    const char *address;     /* points into the attr_list */
    const char *orig;
    struct vstatus status;
};

struct vrequest {
    const char *queue_name, *queue_id, *sender;
    struct delivery_times times;
    const char *bad;          /* why the request is unusable, or NULL */
    size_t nrcpt;
    struct vrcpt *rcpt;
};

/* "OFFSET ADDRESS". */
static int parse_rcpt(const char *value, struct vrcpt *r)
{
    const char *p = value;
    long long offset = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (++digits > OFFSET_DIGITS_MAX)
            return -1;
        offset = offset * 10 + (*p - '0');
    }
    if (digits == 0 || offset <= 0 || *p != ' ' || strlen(p + 1) >= ADDRESS_MAX)
        return -1;
    r->offset = offset;
    r->address = p + 1;
    return 0;
}

static int parse_recipients(const struct attr_list *list, struct vrequest *req)
{
    const char *orig = NULL;
    size_t n = 0;
    for (size_t i = 0; i < list->count; i++)
        n += strcmp(list->names[i], "rcpt") == 0;
    if (n == 0)
        return 0;
    if (!(req->rcpt = calloc(n, sizeof(*req->rcpt))))
        msg_fatal("out of memory for %zu recipients", n);
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->names[i], "orig_rcpt") == 0) {
            orig = list->values[i];
        } else if (strcmp(list->names[i], "rcpt") == 0) {
            struct vrcpt *r = &req->rcpt[req->nrcpt];
            if (parse_rcpt(list->values[i], r) < 0) {
                msg_warn("malformed rcpt attribute in request: \"%.100s\"", list->values[i]);
                return -1;
            }
            r->orig = orig && strlen(orig) < ADDRESS_MAX ? orig : NULL;
            orig = NULL;
            req->nrcpt++;
        }
    }
    return 0;
}

static int time_attr(const struct attr_list *list, const char *name, struct timeval *tv)
{
    const char *v = attr_get(list, name);
    return v ? delivery_parse_time(v, tv) : 1;
}

/* Fill req from list; -1 when the request cannot be answered at all. */
static int parse_request(const struct attr_list *list, struct vrequest *req,
                         const struct timeval *received)
{
    const char *q;
    memset(req, 0, sizeof(*req));
    req->queue_name = attr_get(list, "queue_name");
    req->queue_id = attr_get(list, "queue_id");
    req->sender = attr_get(list, "sender");
    req->times.agent_start = req->times.conn_done = *received;
    if (parse_recipients(list, req) < 0)
        return -1;
    q = req->queue_name;
    if (!q || (strcmp(q, QUEUE_ACTIVE) && strcmp(q, QUEUE_INCOMING) && strcmp(q, QUEUE_DEFERRED)))
        req->bad = "bad or missing queue_name";
    else if (!req->queue_id || !queue_id_valid(req->queue_id))
        req->bad = "bad or missing queue_id";
    else if (!req->sender || strlen(req->sender) >= ADDRESS_MAX)
        req->bad = "bad or missing sender";
    int a = time_attr(list, "arrival", &req->times.arrival);
    int b = time_attr(list, "active_time", &req->times.active);
    if (a < 0 || b < 0)
        req->bad = req->bad ? req->bad : "bad time attribute";
    if (a != 0)
        req->times.arrival = *received;
    if (b != 0)
        req->times.active = req->times.arrival;
    if (req->bad)
        msg_warn("%s: bad delivery request: %s",
                 req->queue_id && queue_id_valid(req->queue_id) ? req->queue_id : "?", req->bad);
    return 0;
}

static void set_all(struct vrequest *req, const char *dsn, const char *text)
{
    for (size_t i = 0; i < req->nrcpt; i++)
        vstatus_set(&req->rcpt[i].status, dsn, "%s", text);
}

static void log_result(const struct vrequest *req, const struct vrcpt *r)
{
    struct delivery_result res = {
        .queue_id = req->queue_id && queue_id_valid(req->queue_id) ? req->queue_id : "?",
        .recipient = r->address,
        .orig_recipient = r->orig,
        .relay = "virtual",
        .dsn = r->status.dsn,
        .text = r->status.text,
        .times = req->times,
    };
    gettimeofday(&res.times.done, NULL);
    delivery_log(&res);
}

static int in_envelope(const struct queue_envelope *env, const struct vrcpt *r)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        if ((long long)env->rcpt[i].offset == r->offset)
            return strcmp(env->rcpt[i].address, r->address) == 0;
    return 0;
}

/* Open the queue file and deliver to each recipient; statuses are set
 * for all of them either way. */
static void deliver_from_file(struct vrequest *req)
{
    char path[PATH_MAX];
    struct queue_envelope env;
    int fd;
    memset(&env, 0, sizeof(env));
    if (queue_path(path, sizeof(path), req->queue_name, req->queue_id) < 0) {
        set_all(req, "4.3.0", "queue file path too long");
        return;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        msg_warn("%s: open %s: %s", req->queue_id, path, strerror(errno));
        set_all(req, "4.3.0", "cannot open queue file");
        return;
    }
    if (queue_envelope_read(fd, &env, ENVELOPE_RCPT_MAX) < 0 || !env.complete) {
        msg_warn("%s: malformed or incomplete queue file %s", req->queue_id, path);
        set_all(req, "4.3.0", "malformed queue file");
        queue_envelope_free(&env);
        close(fd);
        return;
    }
    struct stream *queue = stream_open(fd, 0);
    if (!queue)
        msg_fatal("out of memory for a queue file stream");
    struct vmessage m = {.queue_id = req->queue_id, .sender = req->sender, .queue = queue,
                         .content_offset = env.content_offset};
    for (size_t i = 0; i < req->nrcpt; i++) {
        struct vrcpt *r = &req->rcpt[i];
        if (!in_envelope(&env, r)) {
            msg_warn("%s: recipient <%s> at offset %lld is not in the queue file",
                     req->queue_id, r->address, r->offset);
            vstatus_set(&r->status, "4.3.0", "bad request: unknown recipient offset");
        } else {
            virtual_deliver(&m, r->address, r->orig, &r->status);
        }
    }
    stream_close(queue);
    queue_envelope_free(&env);
}

static int send_reply(struct stream *s, const struct vrequest *req)
{
    char value[DELIVERY_STATUS_MAX];
    for (size_t i = 0; i < req->nrcpt; i++) {
        const struct vrcpt *r = &req->rcpt[i];
        delivery_status_format(value, sizeof(value), r->offset, r->status.dsn, r->status.text);
        if (attr_put(s, "rcpt_status", value) < 0)
            return -1;
    }
    return attr_end(s);
}

/* One qmgr connection: request, delivery, reply, until it closes. */
static void serve(int fd)
{
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);
    struct attr_list list = {0};
    if (!s) {
        close(fd);
        return;
    }
    if (ipc_greet(s, DELIVER_PROTOCOL) < 0) {
        stream_abandon(s);
        return;
    }
    while (attr_list_read(s, &list) == 0) {
        struct vrequest req;
        struct timeval received;
        gettimeofday(&received, NULL);
        if (parse_request(&list, &req, &received) < 0) {
            free(req.rcpt);
            break;
        }
        if (req.bad)
            set_all(&req, "4.3.0", "bad request");
        else
            deliver_from_file(&req);
        for (size_t i = 0; i < req.nrcpt; i++)
            log_result(&req, &req.rcpt[i]);
        int ok = send_reply(s, &req) == 0;
        free(req.rcpt);
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

int main(int argc, char **argv)
{
    service_init(argc, argv, "virtual", SERVICE_FLAG_ROOT);
    log_set_fatal_hook(virtual_cleanup);
    service_run_single(serve);
}
