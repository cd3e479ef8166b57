/* bounce.c - qmgr's client of the bounce service (bounce_protocol, ipc.h).
 *
 * One persistent connection; requests are answered in order, so pending
 * requests wait in a FIFO with their callbacks. If the service cannot be
 * reached or the connection breaks, every waiting request fails (the
 * recipient is then deferred, never silently dropped) and the next request
 * reconnects.
 */
#include "qmgr.h"

#include "config.h"
#include "events.h"
#include "ipc.h"
#include "log.h"
#include "record.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bounce_req {
    bounce_done_fn done;
    void *ctx;
    struct bounce_req *next;
};

static struct {
    struct event_base *base;
    struct bufferevent *bev;
    int greeted;
    int status;               /* of the answer being read */
    struct bounce_req *head, *tail;
    struct rec_buf rec;
} bc;

void bounce_client_init(struct event_base *base)
{
    bc.base = base;
}

static void req_complete(int ok)
{
    struct bounce_req *r = bc.head;
    if (!r)
        return;
    bc.head = r->next;
    if (!bc.head)
        bc.tail = NULL;
    if (r->done)
        r->done(r->ctx, ok);
    free(r);
}

static void bounce_disconnect(const char *why)
{
    if (why)
        msg_warn("private/bounce: %s", why);
    if (bc.bev)
        bufferevent_free(bc.bev);
    bc.bev = NULL;
    bc.greeted = 0;
    while (bc.head)
        req_complete(0);
}

static void bounce_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        int type = evrec_get(in, &bc.rec, IPC_VALUE_MAX);
        if (type == 0)
            return;
        if (type == REC_ATTR) {
            char *name, *value;
            if (rec_attr_split(bc.rec.data, &name, &value) == 0 && strcmp(name, "status") == 0)
                bc.status = atoi(value);
        } else if (type == REC_END) {
            if (!bc.greeted)
                bc.greeted = 1;
            else
                req_complete(bc.status == 0);
            bc.status = -1;
        } else {
            bounce_disconnect("malformed answer");
            return;
        }
    }
}

static void bounce_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bounce_disconnect(bc.head ? "lost connection" : NULL);
    else if ((what & BEV_EVENT_TIMEOUT) && bc.head)
        bounce_disconnect("timeout");
}

static int bounce_connect(void)
{
    if (bc.bev)
        return 0;
    int fd = ipc_connect(IPC_PRIVATE, "bounce");
    if (fd < 0) {
        msg_warn("connect to private/bounce: %s", strerror(errno));
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    bc.bev = bufferevent_socket_new(bc.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bc.bev) {
        close(fd);
        return -1;
    }
    struct timeval tmo = {.tv_sec = var.ipc_timeout};
    bufferevent_setcb(bc.bev, bounce_read_cb, NULL, bounce_event_cb, NULL);
    bufferevent_set_timeouts(bc.bev, &tmo, NULL);
    bufferevent_enable(bc.bev, EV_READ | EV_WRITE);
    bc.status = -1;
    return 0;
}

struct late_failure {
    bounce_done_fn done;
    void *ctx;
};

static void late_failure_cb(evutil_socket_t fd, short what, void *arg)
{
    struct late_failure *f = arg;
    f->done(f->ctx, 0);
    free(f);
}

/* Callers may be deep in their own bookkeeping: a failure is reported from
 * the event loop, never from inside the call. */
static void fail_later(bounce_done_fn done, void *ctx)
{
    struct late_failure *f = malloc(sizeof(*f));
    struct timeval now = {0, 0};
    if (!f)
        msg_fatal("out of memory");
    f->done = done;
    f->ctx = ctx;
    if (event_base_once(bc.base, -1, EV_TIMEOUT, late_failure_cb, f, &now) < 0)
        msg_fatal("event_base_once failed");
}

/* Queue the callback; on a failed connect it runs later with ok=0. */
static struct evbuffer *request_begin(bounce_done_fn done, void *ctx)
{
    if (bounce_connect() < 0) {
        if (done)
            fail_later(done, ctx);
        return NULL;
    }
    struct bounce_req *r = calloc(1, sizeof(*r));
    if (!r)
        msg_fatal("out of memory");
    r->done = done;
    r->ctx = ctx;
    if (bc.tail)
        bc.tail->next = r;
    else
        bc.head = r;
    bc.tail = r;
    return bufferevent_get_output(bc.bev);
}

void bounce_append(const char *log, struct qmsg *m, size_t i, const char *relay,
                   const char *dsn_and_text, bounce_done_fn done, void *ctx)
{
    struct evbuffer *out = request_begin(done, ctx);
    if (!out)
        return;
    const struct queue_rcpt *r = &m->env.rcpt[i];
    char dsn[16] = "4.0.0", num[32];
    const char *text = strchr(dsn_and_text, ' ');
    size_t dlen = text ? (size_t)(text - dsn_and_text) : strlen(dsn_and_text);
    if (dlen > 0 && dlen < sizeof(dsn)) {
        memcpy(dsn, dsn_and_text, dlen);
        dsn[dlen] = 0;
    }
    evrec_put_attr(out, "request", "append");
    evrec_put_attr(out, "queue_id", m->env.id);
    evrec_put_attr(out, "log", log);
    evrec_put_attr(out, "rcpt", r->address);
    if (r->orig)
        evrec_put_attr(out, "orig_rcpt", r->orig);
    if (r->dsn_orcpt)
        evrec_put_attr(out, "dsn_orcpt", r->dsn_orcpt);
    snprintf(num, sizeof(num), "%d", r->dsn_notify);
    evrec_put_attr(out, "dsn_notify", num);
    snprintf(num, sizeof(num), "%lld", (long long)r->offset);
    evrec_put_attr(out, "offset", num);
    evrec_put_attr(out, "dsn", dsn);
    evrec_put_attr(out, "reason", text ? text + 1 : "");
    evrec_put_attr(out, "relay", relay && *relay ? relay : "none");
    evrec_put(out, REC_END, "", 0);
}

static void simple_request(const char *request, struct qmsg *m, bounce_done_fn done, void *ctx)
{
    struct evbuffer *out = request_begin(done, ctx);
    if (!out)
        return;
    evrec_put_attr(out, "request", request);
    evrec_put_attr(out, "queue_id", m->env.id);
    evrec_put_attr(out, "queue_name", QUEUE_ACTIVE);
    evrec_put(out, REC_END, "", 0);
}

void bounce_flush(struct qmsg *m, bounce_done_fn done, void *ctx)
{
    simple_request("flush", m, done, ctx);
}

void bounce_warn(struct qmsg *m, bounce_done_fn done, void *ctx)
{
    simple_request("warn", m, done, ctx);
}
