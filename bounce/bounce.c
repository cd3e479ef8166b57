/* bounce - per-message recipient status logs and the delivery status
 * notifications built from them (bounce_protocol, ipc.h).
 *
 * qmgr keeps a connection open and asks, one request at a time:
 *   append  record one recipient's status in bounce/, defer/ or success/
 *   flush   send the sender a non-delivery report for what bounce/ holds
 *           (and a success report for success/), then drop those logs
 *   warn    send a delay warning for what defer/ holds
 * A report is queued through cleanup (submit.c) with the null sender; a
 * message from <> that fails goes to the postmaster instead (sent from
 * double_bounce_sender, so a failed postmaster copy ends the chain), and
 * nothing is ever sent to <>. A report is answered status=0 only once
 * cleanup has it safely queued: until then qmgr keeps the original.
 */
#include "bounce.h"

#include "address.h"
#include "config.h"
#include "dsn.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "service.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_RCPT_PER_MESSAGE 100000   /* as qmgr reads queue files */
#define WHY_MAX 512

/* --- append --- */

static int request_append(const struct attr_list *req, char *why, size_t why_len)
{
    const char *id = attr_get(req, "queue_id"), *log = attr_get(req, "log");
    const char *rcpt = attr_get(req, "rcpt"), *offset = attr_get(req, "offset");
    const char *notify = attr_get(req, "dsn_notify");
    if (!id || !queue_id_valid(id) || !log || !dsn_log_name_valid(log) || !rcpt) {
        snprintf(why, why_len, "append: missing or bad queue_id, log or rcpt");
        return -1;
    }
    struct dsn_entry e = {
        .rcpt = (char *)rcpt,
        .orig_rcpt = (char *)attr_get(req, "orig_rcpt"),
        .dsn_orcpt = (char *)attr_get(req, "dsn_orcpt"),
        .dsn_notify = notify ? atoi(notify) & 15 : 0,
        .offset = offset && *offset ? strtoll(offset, NULL, 10) : -1,
        .dsn = (char *)(attr_get(req, "dsn") ? attr_get(req, "dsn") : ""),
        .reason = (char *)(attr_get(req, "reason") ? attr_get(req, "reason") : ""),
        .relay = (char *)attr_get(req, "relay"),
    };
    if (dsn_log_append(log, id, &e) < 0) {
        snprintf(why, why_len, "append to %s/%s: %s", log, id, strerror(errno));
        msg_warn("%s", why);
        return -1;
    }
    return 0;
}

/* --- the original message --- */

struct original {
    char id[QUEUE_ID_SIZE];
    int fd;
    struct queue_envelope env;
};

/* Open and parse the queue file a flush or warn request names. The
 * envelope belongs to m until original_close. */
static int original_open(const struct attr_list *req, struct original *m, char *why,
                         size_t why_len)
{
    const char *id = attr_get(req, "queue_id"), *queue = attr_get(req, "queue_name");
    char path[PATH_MAX];
    memset(m, 0, sizeof(*m));
    m->fd = -1;
    if (!id || !queue_id_valid(id) || !queue || !queue_name_valid(queue) ||
        queue_path(path, sizeof(path), queue, id) < 0) {
        snprintf(why, why_len, "missing or bad queue_id or queue_name");
        return -1;
    }
    snprintf(m->id, sizeof(m->id), "%s", id);
    m->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->fd < 0) {
        snprintf(why, why_len, "open %s/%s: %s", queue, id, strerror(errno));
        return -1;
    }
    if (queue_envelope_read(m->fd, &m->env, MAX_RCPT_PER_MESSAGE) < 0 || !m->env.sender) {
        snprintf(why, why_len, "%s/%s: malformed queue file", queue, id);
        return -1;
    }
    return 0;
}

static void original_close(struct original *m)
{
    if (m->fd >= 0)
        close(m->fd);
    queue_envelope_free(&m->env);
}

/* Whether the recipient at offset is already finished in the queue file.
 * Recipient records are written in file order, so offsets ascend. */
static int recipient_done(const struct queue_envelope *env, long long offset)
{
    size_t lo = 0, hi = env->nrcpt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        long long o = (long long)env->rcpt[mid].offset;
        if (o == offset)
            return env->rcpt[mid].done;
        if (o < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* --- reports --- */

/* A parameter that names an address, with @myorigin added when it has no
 * domain (cleanup does not qualify addresses for us). */
static void qualified_address(char *out, size_t len, const char *value)
{
    if (strchr(value, '@'))
        snprintf(out, len, "%s", value);
    else
        snprintf(out, len, "%s@%s", value, var.myorigin);
}

static const char *kind_word(enum report_kind kind)
{
    switch (kind) {
    case REPORT_DELAYED: return "delay";
    case REPORT_DELIVERED: return "delivery status";
    default: return "non-delivery";
    }
}

static int notify_bit(enum report_kind kind)
{
    switch (kind) {
    case REPORT_DELAYED: return DSN_NOTIFY_DELAY;
    case REPORT_DELIVERED: return DSN_NOTIFY_SUCCESS;
    default: return DSN_NOTIFY_FAILURE;
    }
}

/* The entries a report covers: the recipients' NOTIFY decides, except for
 * a postmaster copy, which covers everything; a delay warning leaves out
 * recipients finished since they were deferred. */
static size_t select_recipients(const struct original *m, const struct dsn_log *l,
                                enum report_kind kind, int postmaster_copy,
                                const struct dsn_entry **out)
{
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++) {
        const struct dsn_entry *e = &l->entry[i];
        if (!postmaster_copy && !dsn_notify_wants(e->dsn_notify, notify_bit(kind)))
            continue;
        if (kind == REPORT_DELAYED && e->offset >= 0 && recipient_done(&m->env, e->offset))
            continue;
        out[n++] = e;
    }
    return n;
}

/* Send one report about entries of log l; 0 also when nothing is owed. */
static int send_report(struct original *m, enum report_kind kind, const struct dsn_log *l,
                       char *why, size_t why_len)
{
    char double_bounce[ADDRESS_MAX], postmaster[ADDRESS_MAX];
    qualified_address(double_bounce, sizeof(double_bounce), var.double_bounce_sender);
    qualified_address(postmaster, sizeof(postmaster), var.twobounce_notice_recipient);
    const char *sender = m->env.sender;
    if (strcasecmp(sender, double_bounce) == 0) {
        if (kind == REPORT_FAILED)
            msg_info("%s: discarding undeliverable postmaster notification", m->id);
        return 0;
    }
    int postmaster_copy = sender[0] == 0;
    if (postmaster_copy && kind != REPORT_FAILED)
        return 0;   /* nothing but failures is ever reported about <> mail */
    const struct dsn_entry **rcpt = malloc((l->count ? l->count : 1) * sizeof(*rcpt));
    if (!rcpt) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    size_t n = select_recipients(m, l, kind, postmaster_copy, rcpt);
    int rc = 0;
    if (n > 0) {
        struct report r = {.kind = kind, .postmaster_copy = postmaster_copy, .queue_id = m->id,
                           .env = &m->env, .queue_fd = m->fd, .rcpt = rcpt, .nrcpt = n,
                           .sender = postmaster_copy ? double_bounce : "",
                           .to = postmaster_copy ? postmaster : sender};
        char new_id[QUEUE_ID_SIZE];
        rc = bounce_report_send(&r, new_id, sizeof(new_id), why, why_len);
        if (rc == 0)
            msg_info("%s: %s %s notification: %s", m->id, postmaster_copy ? "postmaster" : "sender",
                     kind_word(kind), new_id);
        else
            msg_warn("%s: %s notification failed: %s", m->id, kind_word(kind), why);
    }
    free(rcpt);
    return rc;
}

/* Report on one log and drop it once the report is queued. */
static int report_and_remove(struct original *m, const char *log, enum report_kind kind,
                             char *why, size_t why_len)
{
    struct dsn_log l;
    if (dsn_log_read(log, m->id, &l) < 0) {
        snprintf(why, why_len, "read %s/%s: %s", log, m->id, strerror(errno));
        return -1;
    }
    int rc = l.count ? send_report(m, kind, &l, why, why_len) : 0;
    if (rc == 0 && l.count && dsn_log_remove(log, m->id) < 0) {
        snprintf(why, why_len, "remove %s/%s: %s", log, m->id, strerror(errno));
        rc = -1;
    }
    dsn_log_free(&l);
    return rc;
}

static int request_flush(const struct attr_list *req, char *why, size_t why_len)
{
    struct original m;
    int rc = original_open(req, &m, why, why_len);
    if (rc == 0)
        rc = report_and_remove(&m, QUEUE_BOUNCE_LOG, REPORT_FAILED, why, why_len);
    if (rc == 0)
        rc = report_and_remove(&m, QUEUE_SUCCESS_LOG, REPORT_DELIVERED, why, why_len);
    original_close(&m);
    return rc;
}

static int request_warn(const struct attr_list *req, char *why, size_t why_len)
{
    struct original m;
    struct dsn_log l = {0};
    int rc = original_open(req, &m, why, why_len);
    if (rc == 0 && (rc = dsn_log_read(QUEUE_DEFER_LOG, m.id, &l)) < 0)
        snprintf(why, why_len, "read %s/%s: %s", QUEUE_DEFER_LOG, m.id, strerror(errno));
    if (rc == 0 && l.count)
        rc = send_report(&m, REPORT_DELAYED, &l, why, why_len);
    dsn_log_free(&l);
    original_close(&m);
    return rc;
}

/* --- the protocol --- */

static int dispatch(const struct attr_list *req, char *why, size_t why_len)
{
    const char *request = attr_get(req, "request");
    if (request && strcmp(request, "append") == 0)
        return request_append(req, why, why_len);
    if (request && strcmp(request, "flush") == 0)
        return request_flush(req, why, why_len);
    if (request && strcmp(request, "warn") == 0)
        return request_warn(req, why, why_len);
    snprintf(why, why_len, "unknown request: %s", request ? request : "(none)");
    return -1;
}

/* One client (qmgr keeps its connection): requests until it hangs up. */
static void serve(int fd)
{
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);
    if (!s) {
        close(fd);
        return;
    }
    if (ipc_greet(s, "bounce_protocol") < 0) {
        stream_abandon(s);
        return;
    }
    struct attr_list req;
    while (attr_list_read(s, &req) == 0) {
        char why[WHY_MAX] = "";
        int rc = dispatch(&req, why, sizeof(why));
        attr_list_free(&req);
        int sent = rc == 0 ? attr_send(s, "status", "0", (const char *)NULL)
                           : attr_send(s, "status", "1", "reason", why, (const char *)NULL);
        if (sent < 0 || service_master_gone())
            break;
    }
    stream_close(s);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "bounce", 0);
    service_run_single(serve);
}
