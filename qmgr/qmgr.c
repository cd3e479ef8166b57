/* qmgr - the queue manager.
 *
 * Wakes on its fifo (public/qmgr) and on a timer, takes complete files from
 * incoming/ (and due ones from deferred/) into active/ up to
 * qmgr_message_active_limit, resolves each recipient (resolve.c), hands
 * them to the scheduler (sched.c), and acts on every result: done is marked
 * in place; a permanent failure is logged with the bounce service and then
 * marked done; a temporary one is logged in defer/ID. When no recipient is
 * left in flight the message is removed (after the bounce service has
 * queued any report), or moved to deferred/ with its next attempt time as
 * mtime, or, past its lifetime, returned to the sender. At start it takes
 * back whatever a previous qmgr left in active/, except files a delivery
 * agent of that qmgr still holds (its shared flock, deliver_request.h):
 * those are taken once the agent lets go, so that a delivery in progress
 * when qmgr died is not started a second time. A lock file keeps a second
 * qmgr (e.g. during a reload) from scheduling the same files.
 */
#include "qmgr.h"

#include "config.h"
#include "delivery.h"
#include "events.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "service.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RCPT_PER_MESSAGE 100000

static struct {
    struct event_base *base;
    struct event *work_ev;    /* deferred scan, run outside other callbacks */
    struct event *fifo_ev;
    struct qmsg *active;      /* doubly linked list of messages in active/ */
    long nactive;
    long active_limit;
    int draining;             /* master went away: finish and exit */
    int want_incoming, want_deferred, force_deferred;
    DIR *deferred_scan;       /* deferred/ being scanned, one subdirectory a pass */
    int deferred_scan_force;  /* that scan takes every file, due or not */
    char (*held)[QUEUE_ID_SIZE]; /* active/ files an agent held at start */
    size_t nheld;
    struct event *held_ev;    /* retries them */
    char (*defer)[QUEUE_ID_SIZE]; /* deferred in this loop pass, still in active/ */
    size_t ndefer, defer_size;
    struct event *defer_ev;   /* moves them to deferred/ (defer_flush) */
} q;

static void request_scan(int incoming, int deferred, int force)
{
    q.want_incoming |= incoming;
    q.want_deferred |= deferred;
    q.force_deferred |= force;
    event_active(q.work_ev, EV_TIMEOUT, 0);
}

/* --- message lifecycle --- */

static void qmsg_free(struct qmsg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        q.active = m->next;
    if (m->next)
        m->next->prev = m->prev;
    q.nactive--;
    if (m->fd >= 0)
        close(m->fd);
    for (size_t i = 0; i < m->env.nrcpt; i++)
        free(m->reason[i]);
    free(m->reason);
    free(m->state);
    free(m->queue_addr);
    queue_envelope_free(&m->env);
    free(m);
    request_scan(1, 0, 0);   /* room in active/ */
    if (q.draining && sched_busy() == 0)
        event_base_loopbreak(q.base);
}

static int qmsg_open(struct qmsg *m)
{
    char path[PATH_MAX];
    if (m->fd >= 0)
        return 0;
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, m->env.id) < 0)
        return -1;
    m->fd = open(path, O_RDWR | O_CLOEXEC);
    if (m->fd < 0 && errno == ENOENT)
        m->gone = 1;   /* deleted by postsuper while in delivery */
    else if (m->fd < 0)
        msg_warn("%s: open %s: %s", m->env.id, path, strerror(errno));
    return m->fd < 0 ? -1 : 0;
}

static void unlink_log(const char *log, const char *id)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), log, id) == 0)
        unlink(path);
}

static int has_log(const char *log, const char *id)
{
    char path[PATH_MAX];
    return queue_path(path, sizeof(path), log, id) == 0 && access(path, F_OK) == 0;
}

/* Next attempt: now + the message's age, clamped to the back-off limits. */
static time_t next_attempt(const struct qmsg *m)
{
    time_t now = time(NULL);
    long age = (long)(now - m->env.arrival.tv_sec);
    long lo = var.minimal_backoff_time, hi = var.maximal_backoff_time;
    long delay = age < lo ? lo : age > hi ? hi : age;
    return now + delay;
}

/* A deferred message: its retry time set (on the file, in active/ still),
 * and its move to deferred/ left to the end of the loop pass, where the
 * moves of every message deferred in that pass share the fsyncs of their
 * hash directories (defer_flush). Until then it is in active/, where a
 * new qmgr would take it in. */
static void defer_message(struct qmsg *m)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, m->env.id) < 0)
        return;
    time_t when = next_attempt(m);
    struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};
    if (utimensat(AT_FDCWD, path, ts, 0) < 0) {
        if (errno != ENOENT)
            msg_warn("%s: set retry time: %s", m->env.id, strerror(errno));
        return;
    }
    if (q.ndefer == q.defer_size) {
        size_t size = q.defer_size ? 2 * q.defer_size : 64;
        char (*more)[QUEUE_ID_SIZE] = realloc(q.defer, size * sizeof(*q.defer));
        if (more == NULL)
            msg_fatal("out of memory");
        q.defer = more;
        q.defer_size = size;
    }
    snprintf(q.defer[q.ndefer++], QUEUE_ID_SIZE, "%s", m->env.id);
    event_active(q.defer_ev, EV_TIMEOUT, 0);
}

static void defer_flush(void)
{
    const char *names[64];
    int err[64];
    for (size_t done = 0; done < q.ndefer;) {
        size_t n = q.ndefer - done < 64 ? q.ndefer - done : 64;
        for (size_t i = 0; i < n; i++)
            names[i] = q.defer[done + i];
        queue_files_move(names, n, QUEUE_ACTIVE, QUEUE_DEFERRED, err);
        for (size_t i = 0; i < n; i++)
            if (err[i] && err[i] != ENOENT)
                msg_warn("%s: move to deferred: %s", names[i], strerror(err[i]));
        done += n;
    }
    q.ndefer = 0;
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    defer_flush();
}

static void remove_message(struct qmsg *m)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, m->env.id) == 0 && unlink(path) < 0 &&
        errno != ENOENT) {
        msg_warn("%s: remove %s: %s", m->env.id, path, strerror(errno));
        return;
    }
    unlink_log(QUEUE_DEFER_LOG, m->env.id);
    msg_info("%s: removed", m->env.id);
}

static void flushed(void *ctx, int ok)
{
    struct qmsg *m = ctx;
    if (ok)
        remove_message(m);
    else
        defer_message(m);   /* the report is sent on a later attempt */
    qmsg_free(m);
}

static int wants_notify(const struct queue_rcpt *r, int bit);
static void finish_deferred(struct qmsg *m);

/* The reports of a pass that left recipients deferred are queued (or,
 * when !ok, wait in their logs for a later pass): on with the deferral. */
static void reported(void *ctx, int ok)
{
    struct qmsg *m = ctx;
    m->finishing = 0;
    finish_deferred(m);
}

/* A delay warning is due once per message, after delay_warning_time, when
 * some deferred recipient did not turn DELAY notices off. */
static int warning_due(const struct qmsg *m)
{
    long after = var.delay_warning_time;
    if (after <= 0 || m->env.warn_time || !m->env.warn_capable ||
        time(NULL) - m->env.arrival.tv_sec < after)
        return 0;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->state[i] == RCPT_DEFERRED && wants_notify(&m->env.rcpt[i], DSN_NOTIFY_DELAY))
            return 1;
    return 0;
}

static void warned(void *ctx, int ok)
{
    struct qmsg *m = ctx;
    if (ok && qmsg_open(m) == 0 && queue_file_mark_warned(m->fd, &m->env, time(NULL)) < 0)
        msg_warn("%s: cannot record the delay warning: %s", m->env.id, strerror(errno));
    defer_message(m);
    qmsg_free(m);
}

/* A pass left recipients deferred: the delay warning when due, then the
 * move to deferred/. */
static void finish_deferred(struct qmsg *m)
{
    if (warning_due(m)) {
        m->finishing = 1;
        bounce_warn(m, warned, m);
    } else {
        defer_message(m);
        qmsg_free(m);
    }
}

static int rcpt_expired(const struct qmsg *m)
{
    long life = m->env.sender && *m->env.sender ? var.maximal_queue_lifetime
                                                  : var.bounce_queue_lifetime;
    return time(NULL) - m->env.arrival.tv_sec >= life;
}

static void bounced(void *ctx, int ok);
static void *rcpt_op_new(struct qmsg *m, size_t i);

/* Past its lifetime a deferred recipient is returned with its last reason. */
static void expire_deferred(struct qmsg *m)
{
    msg_info("%s: from=<%s>, status=expired, returned to sender", m->env.id, m->env.sender);
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        if (m->state[i] != RCPT_DEFERRED)
            continue;
        m->state[i] = RCPT_BOUNCING;
        m->unfinished++;
        bounce_append(QUEUE_BOUNCE_LOG, m, i, "none",
                      m->reason[i] ? m->reason[i] : "4.4.7 message expired", bounced,
                      rcpt_op_new(m, i));
    }
}

void qmgr_check_finished(struct qmsg *m)
{
    if (m->unfinished > 0 || m->pending_ops > 0 || m->finishing)
        return;
    int deferred = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        deferred |= m->state[i] == RCPT_DEFERRED;
    if (m->gone) {
        qmsg_free(m);
        return;
    }
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
    if (deferred && rcpt_expired(m)) {
        expire_deferred(m);
        qmgr_check_finished(m);
        return;
    }
    /* Reports go out at the end of every pass, as Postfix's do: a sender
     * hears of a bounced recipient now, not once the deferred ones are
     * done (compared in test_bounce.py). */
    int reports = has_log(QUEUE_BOUNCE_LOG, m->env.id) || has_log(QUEUE_SUCCESS_LOG, m->env.id);
    m->finishing = reports;
    if (reports)
        bounce_flush(m, deferred ? reported : flushed, m);
    else if (deferred)
        finish_deferred(m);
    else {
        remove_message(m);
        qmsg_free(m);
    }
}

static int mark_done(struct qmsg *m, size_t i)
{
    if (qmsg_open(m) < 0)
        return m->gone ? 0 : -1;
    if (queue_file_mark_done(m->fd, m->env.rcpt[i].offset) < 0) {
        msg_warn("%s: mark recipient done: %s", m->env.id, strerror(errno));
        return -1;
    }
    return 0;
}

/* What a bounce request's callback needs; messages are never freed while
 * they have requests outstanding (pending_ops). */
struct rcpt_op {
    struct qmsg *m;
    size_t i;
};

static void *rcpt_op_new(struct qmsg *m, size_t i)
{
    struct rcpt_op *op = malloc(sizeof(*op));
    if (!op)
        msg_fatal("out of memory");
    op->m = m;
    op->i = i;
    m->pending_ops++;
    return op;
}

static struct qmsg *rcpt_op_take(void *ctx, size_t *i)
{
    struct rcpt_op *op = ctx;
    struct qmsg *m = op->m;
    *i = op->i;
    free(op);
    m->pending_ops--;
    return m;
}

static void bounced(void *ctx, int ok)
{
    size_t i;
    struct qmsg *m = rcpt_op_take(ctx, &i);
    m->unfinished--;
    if (ok && mark_done(m, i) == 0)
        m->state[i] = RCPT_DONE;
    else
        m->state[i] = RCPT_DEFERRED;
    qmgr_check_finished(m);
}

static void op_done(void *ctx, int ok)
{
    size_t i;
    struct qmsg *m = rcpt_op_take(ctx, &i);
    qmgr_check_finished(m);
}

static int wants_notify(const struct queue_rcpt *r, int bit)
{
    if (r->dsn_notify & DSN_NOTIFY_NEVER)
        return 0;
    if (!r->dsn_notify)
        return bit != DSN_NOTIFY_SUCCESS;
    return (r->dsn_notify & bit) != 0;
}

void qmgr_rcpt_result(struct qmsg *m, size_t i, const char *relay, const char *status)
{
    if (i >= m->env.nrcpt || (m->state[i] != RCPT_PENDING && m->state[i] != RCPT_INFLIGHT))
        return;
    free(m->reason[i]);
    m->reason[i] = strdup(status);
    const struct queue_rcpt *r = &m->env.rcpt[i];
    if (status[0] == '5' && wants_notify(r, DSN_NOTIFY_FAILURE)) {
        m->state[i] = RCPT_BOUNCING;   /* done once the bounce log has it */
        bounce_append(QUEUE_BOUNCE_LOG, m, i, relay, status, bounced, rcpt_op_new(m, i));
        return;
    }
    m->unfinished--;
    if (status[0] == '2' || status[0] == '5') {
        m->state[i] = mark_done(m, i) == 0 ? RCPT_DONE : RCPT_DEFERRED;
        if (status[0] == '2' && wants_notify(r, DSN_NOTIFY_SUCCESS)) {
            bounce_append(QUEUE_SUCCESS_LOG, m, i, relay, status, op_done, rcpt_op_new(m, i));
        }
        return;
    }
    m->state[i] = RCPT_DEFERRED;
    bounce_append(QUEUE_DEFER_LOG, m, i, relay, status, op_done, rcpt_op_new(m, i));
}

/* --- resolving --- */

static int starts_with_dsn(const char *text)
{
    char first[16];
    size_t n = strcspn(text, " ");
    if (n == 0 || n >= sizeof(first))
        return 0;
    memcpy(first, text, n);
    first[n] = 0;
    return delivery_dsn_valid(first);
}

void qmgr_rcpt_fail(struct qmsg *m, size_t i, const char *status)
{
    char dsn[16] = "4.3.0";
    const char *text = strchr(status, ' ');
    size_t dlen = text ? (size_t)(text - status) : 0;
    if (dlen > 0 && dlen < sizeof(dsn) && starts_with_dsn(status)) {
        memcpy(dsn, status, dlen);
        dsn[dlen] = 0;
    }
    struct delivery_result res = {
        .queue_id = m->env.id,
        .recipient = m->env.rcpt[i].address,
        .orig_recipient = m->env.rcpt[i].orig,
        .relay = "none",
        .dsn = dsn,
        .text = text ? text + 1 : status,
    };
    res.times.arrival = m->env.arrival;
    res.times.active = m->active;
    gettimeofday(&res.times.done, NULL);
    res.times.agent_start = res.times.conn_done = res.times.done;
    delivery_log(&res);
    qmgr_rcpt_result(m, i, "none", status);
}

/* error:text bounces, retry:text defers, discard:text drops the recipient
 * as delivered (Postfix's error(8) and discard(8), done here without a
 * process); text may start with its own DSN. */
static void route_error(struct qmsg *m, size_t i, const struct route *r)
{
    char status[600];
    if (strcmp(r->transport, "discard") == 0) {
        snprintf(status, sizeof(status), "2.0.0 %s", r->error);
        qmgr_rcpt_fail(m, i, status);
        return;
    }
    int retry = strcmp(r->transport, "retry") == 0;
    if (starts_with_dsn(r->error))
        snprintf(status, sizeof(status), "%s", r->error);
    else
        snprintf(status, sizeof(status), "%s %s", retry ? "4.3.0" : "5.0.0", r->error);
    if ((status[0] == '5') == retry)
        status[0] = retry ? '4' : '5';
    qmgr_rcpt_fail(m, i, status);
}

/* The message's content filter (content_filter, a FILTER action: the
 * queue file's content_filter attribute) overrides the resolver, as in
 * Postfix: transport "scan" and nexthop "[127.0.0.1]:10025" from
 * "scan:[127.0.0.1]:10025"; without a nexthop, default_filter_nexthop,
 * else the recipient's domain, else myhostname. 0 when none applies. */
static int filter_route(const struct qmsg *m, const char *rcpt, struct route *r)
{
    const char *filter = queue_envelope_attr(&m->env, ATTR_CONTENT_FILTER);
    const char *colon = filter ? strchr(filter, ':') : NULL;
    if (!colon || colon == filter || (size_t)(colon - filter) >= sizeof(r->transport))
        return 0;
    memset(r, 0, sizeof(*r));
    memcpy(r->transport, filter, (size_t)(colon - filter));
    const char *nexthop = colon + 1, *at;
    if (!*nexthop)
        nexthop = var.default_filter_nexthop;
    if (!*nexthop)
        nexthop = (at = strrchr(rcpt, '@')) && at[1] ? at + 1 : var.myhostname;
    snprintf(r->nexthop, sizeof(r->nexthop), "%s", nexthop);
    return 1;
}

/* Postfix's qmgr order of recipients: by domain (any case), then by
 * address; an address without a domain last. */
static int rcpt_order(const char *a, const char *b)
{
    const char *da = strrchr(a, '@'), *db = strrchr(b, '@');
    int c;
    if (!da != !db)
        return da ? -1 : 1;
    if (da && (c = strcasecmp(da, db)) != 0)
        return c;
    return strcmp(a, b);
}

/* A REDIRECT action (the queue file's redirect attribute) overrides
 * everything, the content filter included, as in Postfix's qmgr: the
 * first recipient still to be delivered in Postfix's order (rcpt_order,
 * so the log's orig_to is the one Postfix names) goes to that address
 * instead, logged with its own address as the original recipient and
 * named to the agent by its queue file address (queue_rcpt, which the
 * agent checks); the others, BCC recipients included, are dropped without
 * a word. A deferred redirect is tried again the same way. */
static void apply_redirect(struct qmsg *m)
{
    const char *to = queue_envelope_attr(&m->env, ATTR_REDIRECT);
    size_t first = m->env.nrcpt;
    if (!to || !*to)
        return;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->state[i] == RCPT_PENDING &&
            (first == m->env.nrcpt ||
             rcpt_order(m->env.rcpt[i].address, m->env.rcpt[first].address) < 0))
            first = i;
    if (first == m->env.nrcpt)
        return;
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        if (i != first && m->state[i] == RCPT_PENDING) {
            m->state[i] = RCPT_DONE;
            m->unfinished--;
        }
    }
    struct queue_rcpt *r = &m->env.rcpt[first];
    char *addr = strdup(to);
    if (!addr || (!r->orig && !(r->orig = strdup(r->address))))
        msg_fatal("out of memory");
    m->queue_addr = r->address;
    r->address = addr;
    m->redirected = first + 1;
}

static void schedule_message(struct qmsg *m)
{
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        if (m->env.rcpt[i].done) {
            m->state[i] = RCPT_DONE;
            continue;
        }
        m->state[i] = RCPT_PENDING;
        m->unfinished++;
    }
    apply_redirect(m);
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        struct route r;
        if (m->state[i] != RCPT_PENDING)
            continue;
        if (!m->redirected && filter_route(m, m->env.rcpt[i].address, &r))
            sched_add(m, i, &r);
        else if (resolve_recipient(m->env.sender, m->env.rcpt[i].address, &r) < 0)
            qmgr_rcpt_fail(m, i, "4.3.0 address resolver failure: lookup table unavailable");
        else if (r.error[0])
            route_error(m, i, &r);
        else
            sched_add(m, i, &r);
    }
    qmgr_check_finished(m);
}

/* --- taking files in --- */

static void move_to_corrupt(const char *id, const char *why)
{
    msg_warn("%s: %s; moving to %s/", id, why, QUEUE_CORRUPT);
    if (queue_file_move(id, QUEUE_ACTIVE, QUEUE_CORRUPT) < 0)
        msg_warn("%s: move to corrupt: %s", id, strerror(errno));
}

static struct qmsg *qmsg_new(int fd, const char *id)
{
    struct qmsg *m = calloc(1, sizeof(*m));
    if (!m)
        msg_fatal("out of memory");
    m->fd = fd;
    if (queue_envelope_read(fd, &m->env, MAX_RCPT_PER_MESSAGE) < 0 || !m->env.complete ||
        m->env.nrcpt == 0) {
        queue_envelope_free(&m->env);
        free(m);
        return NULL;
    }
    size_t idlen = strnlen(id, sizeof(m->env.id) - 1);
    memcpy(m->env.id, id, idlen);
    m->env.id[idlen] = 0;
    m->state = calloc(m->env.nrcpt, sizeof(*m->state));
    m->reason = calloc(m->env.nrcpt, sizeof(*m->reason));
    if (!m->state || !m->reason)
        msg_fatal("out of memory");
    return m;
}

/* Whether a delivery agent (of a qmgr that died) holds the file open. */
static int held_by_agent(int fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK;
    flock(fd, LOCK_UN);
    return 0;
}

static void hold_back(const char *id)
{
    size_t len = strnlen(id, QUEUE_ID_SIZE);
    if (len == QUEUE_ID_SIZE)
        return;   /* never: queue_id_valid() names fit */
    char (*more)[QUEUE_ID_SIZE] = realloc(q.held, (q.nheld + 1) * sizeof(*q.held));
    if (more == NULL)
        msg_fatal("out of memory");
    q.held = more;
    memcpy(q.held[q.nheld++], id, len + 1);
}

/* Take in a file that is in active/: 0, or 1 for one a previous qmgr
 * left there (left) that an agent still holds. */
static int take_in(const char *id, int left)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, id) < 0)
        return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == EISDIR || errno == ELOOP)   /* no queue file: what fsck left */
            move_to_corrupt(id, "not a regular file");
        else if (errno != ENOENT)
            msg_warn("%s: open: %s", id, strerror(errno));
        return 0;
    }
    if (left && held_by_agent(fd)) {
        close(fd);
        return 1;
    }
    struct qmsg *m = qmsg_new(fd, id);
    if (!m) {
        close(fd);
        move_to_corrupt(id, "malformed or incomplete queue file");
        return 0;
    }
    gettimeofday(&m->active, NULL);
    m->next = q.active;
    if (q.active)
        q.active->prev = m;
    q.active = m;
    q.nactive++;
    msg_info("%s: from=<%s>, size=%lld, nrcpt=%zu (queue active)", id, m->env.sender,
             m->env.content_size, m->env.nrcpt);
    schedule_message(m);
    return 0;
}

/* Files taken in per fsync of active/: a move is link, directory fsync,
 * unlink (queue_file.h), and a pass of incoming/ or of a deferred/ hash
 * directory moves its files together, so that a burst costs qmgr's event
 * loop one fsync rather than one per message. */
#define TAKE_IN_BATCH 256

/* Move n files of queue from into active/ (none to move when from is
 * active/ itself) and take them in. */
static void take_in_batch(const char *from, char (*ids)[QUEUE_ID_SIZE], size_t n)
{
    const char *names[TAKE_IN_BATCH];
    int err[TAKE_IN_BATCH] = {0};
    int left = strcmp(from, QUEUE_ACTIVE) == 0;
    for (size_t i = 0; i < n; i++)
        names[i] = ids[i];
    if (!left)
        queue_files_move(names, n, from, QUEUE_ACTIVE, err);
    for (size_t i = 0; i < n; i++) {
        if (err[i]) {
            if (err[i] != ENOENT)
                msg_warn("%s: move %s to active: %s", ids[i], from, strerror(err[i]));
        } else if (take_in(ids[i], left)) {
            hold_back(ids[i]);
        }
    }
}

/* A complete file from cleanup has the execute bit (queue_file.h). */
static int incoming_ready(const char *dir, const char *name)
{
    struct stat st;
    char path[PATH_MAX];
    if (!queue_id_valid(name) ||
        snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           (st.st_mode & 0777) == QUEUE_MODE_COMPLETE;
}

/* Take in ready files of one directory, a batch at a time; 1 when
 * stopped at the active limit. */
static int scan_dir(const char *queue, const char *sub, int (*ready)(const char *, const char *))
{
    char dir[PATH_MAX];
    char ids[TAKE_IN_BATCH][QUEUE_ID_SIZE];
    int full = 0, more = 1;
    if (snprintf(dir, sizeof(dir), "%s/%s%s%s", var.queue_directory, queue,
                 sub ? "/" : "", sub ? sub : "") >= (int)sizeof(dir))
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    while (more) {
        size_t n = 0;
        while (n < TAKE_IN_BATCH && (long)n < q.active_limit - q.nactive) {
            struct dirent *de = readdir(d);
            if (de == NULL) {
                more = 0;
                break;
            }
            if (ready(dir, de->d_name) && strlen(de->d_name) < QUEUE_ID_SIZE)
                strcpy(ids[n++], de->d_name);
        }
        take_in_batch(queue, ids, n);
        if (more && q.nactive >= q.active_limit) {
            full = 1;
            break;
        }
    }
    closedir(d);
    return full;
}

/* A deferred file is due when its mtime (next attempt) has passed. */
static int deferred_due(const char *dir, const char *name)
{
    struct stat st;
    char path[PATH_MAX];
    if (!queue_id_valid(name) ||
        snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return 0;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return q.deferred_scan_force || st.st_mtime <= time(NULL);
}

/* deferred/ is scanned one hash subdirectory per pass of the event loop,
 * so that new mail (a fifo wake-up between passes) is taken in and
 * dispatched after one slice, not after the whole tree: at 100,000
 * deferred messages the whole scan takes about 0.3 s (bench/README.md,
 * scenario q). */
static void deferred_scan_begin(int force)
{
    char dir[PATH_MAX];
    if (q.deferred_scan || queue_dir_path(dir, sizeof(dir), QUEUE_DEFERRED) < 0)
        return;
    q.deferred_scan = opendir(dir);
    q.deferred_scan_force = force;
}

static void deferred_scan_end(void)
{
    closedir(q.deferred_scan);
    q.deferred_scan = NULL;
}

/* One subdirectory; 1 while more remain. */
static int deferred_scan_slice(void)
{
    struct dirent *de;
    while ((de = readdir(q.deferred_scan)) != NULL) {
        if (de->d_name[0] == '.' || strlen(de->d_name) != 1)
            continue;
        if (scan_dir(QUEUE_DEFERRED, de->d_name, deferred_due))
            break;   /* the active queue is full: the rest waits for a later scan */
        return 1;
    }
    deferred_scan_end();
    return 0;
}

static int any_file(const char *dir, const char *name)
{
    return queue_id_valid(name);
}

/* --- events --- */

/* Files held at start are retried until their agents have finished. */
static void held_cb(evutil_socket_t fd, short what, void *arg)
{
    size_t kept = 0;
    for (size_t i = 0; i < q.nheld; i++)
        if (q.draining || q.nactive >= q.active_limit || take_in(q.held[i], 1))
            memmove(q.held[kept++], q.held[i], sizeof(q.held[i]));
    q.nheld = kept;
    if (kept > 0 && !q.draining) {
        struct timeval again = {0, 200000};
        event_add(q.held_ev, &again);
    }
    sched_kick();
}

static void work_cb(evutil_socket_t fd, short what, void *arg)
{
    if (q.draining)
        return;
    /* Deferrals first: a file taken in under the same name (a postsuper -r
     * in between) must never be moved under its delivery. */
    defer_flush();
    /* New mail first: incoming/ in every pass, deferred/ a slice at a
     * time; the next slice runs after the loop's next I/O poll, once the
     * requests to the delivery agents have been written. */
    if (q.want_incoming) {
        q.want_incoming = 0;
        scan_dir(QUEUE_INCOMING, NULL, incoming_ready);
    }
    if (q.want_deferred && !q.deferred_scan) {
        q.want_deferred = 0;
        deferred_scan_begin(q.force_deferred);
        q.force_deferred = 0;
    }
    if (q.deferred_scan && deferred_scan_slice()) {
        sched_kick();
        struct timeval next_pass = {0, 0};
        event_add(q.work_ev, &next_pass);
        return;
    }
    sched_kick();
}

static void fifo_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    int flush = 0;
    for (ssize_t i = 0; i < n; i++)
        flush |= buf[i] == 'F';
    if (flush)
        sched_revive_all();
    request_scan(1, flush, flush);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    request_scan(1, 1, 0);
}

static void master_gone(void *arg)
{
    q.draining = 1;
    event_del(q.fifo_ev);
    if (sched_busy() == 0)
        event_base_loopbreak(q.base);
}

/* Only one qmgr may schedule at a time; a successor waits here. */
static void lock_queue_manager(void)
{
    char path[PATH_MAX];
    /* private/ belongs to mail_owner (pid/ to root) and is inside a chroot. */
    if (queue_dir_path(path, sizeof(path), "private/qmgr.lock") < 0)
        msg_fatal("queue_directory too long");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        msg_fatal("open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR)
            msg_fatal("lock %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "qmgr", 0);
    lock_queue_manager();
    q.base = events_base_new();
    q.active_limit = var.qmgr_message_active_limit;
    resolve_init();
    sched_init(q.base);
    bounce_client_init(q.base);
    q.work_ev = event_new(q.base, -1, 0, work_cb, NULL);
    q.defer_ev = event_new(q.base, -1, 0, defer_cb, NULL);
    q.fifo_ev = event_new(q.base, SERVICE_LISTEN_FD, EV_READ | EV_PERSIST, fifo_cb, NULL);
    long delay = var.queue_run_delay;
    struct timeval tv = {.tv_sec = delay > 0 ? delay : 1};
    struct event *timer = event_new(q.base, -1, EV_PERSIST, timer_cb, NULL);
    if (!q.work_ev || !q.defer_ev || !q.fifo_ev || !timer || event_add(q.fifo_ev, NULL) < 0 ||
        event_add(timer, &tv) < 0)
        msg_fatal("cannot set up events");
    events_watch_eof(q.base, SERVICE_ALIVE_FD, master_gone, NULL);
    scan_dir(QUEUE_ACTIVE, NULL, any_file);   /* what a previous qmgr left */
    if ((q.held_ev = event_new(q.base, -1, 0, held_cb, NULL)) == NULL)
        msg_fatal("cannot set up events");
    if (q.nheld > 0)
        event_active(q.held_ev, EV_TIMEOUT, 0);
    request_scan(1, 1, 0);
    event_base_dispatch(q.base);
    defer_flush();   /* what the last pass deferred, before exit */
    return 0;
}
