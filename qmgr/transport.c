/* transport.c - qmgr's connections to a delivery agent (deliver_protocol).
 *
 * A small pool of persistent connections: a message waits on a FIFO list
 * until a connection is idle (or a new one may be opened, up to the limit),
 * then all its pending recipients go out in one request. Results come back
 * one attribute per recipient; a broken connection defers whatever it held.
 */
#include "qmgr.h"

#include "config.h"
#include "delivery.h"
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

enum conn_state { CONN_GREETING, CONN_IDLE, CONN_BUSY };

struct conn {
    struct bufferevent *bev;
    enum conn_state state;
    struct qmsg *msg;          /* request in flight */
    size_t *rcpts;             /* indices sent, in order */
    size_t nsent, nresult;
    struct rec_buf rec;
    int greeting_ok;
    struct conn *next;
};

static struct {
    struct event_base *base;
    char service[64];
    int limit;
    struct conn *conns;
    int nconn;
    struct qmsg *wait_head, *wait_tail;
} tp;

static void dispatch(void);

void transport_init(struct event_base *base, const char *service, int limit)
{
    tp.base = base;
    snprintf(tp.service, sizeof(tp.service), "%s", service);
    tp.limit = limit > 0 ? limit : 1;
}

size_t transport_busy(void)
{
    size_t n = 0;
    for (struct conn *c = tp.conns; c; c = c->next)
        n += c->state == CONN_BUSY;
    return n + (tp.wait_head != NULL);
}

static void conn_unlink(struct conn *dead)
{
    for (struct conn **pp = &tp.conns; *pp; pp = &(*pp)->next)
        if (*pp == dead) {
            *pp = dead->next;
            break;
        }
    tp.nconn--;
}

/* Results the agent never sent are temporary failures. */
static void conn_fail_pending(struct conn *c, const char *why)
{
    if (c->state != CONN_BUSY || !c->msg)
        return;
    struct qmsg *m = c->msg;
    for (size_t i = c->nresult; i < c->nsent; i++)
        qmgr_rcpt_result(m, c->rcpts[i], why);
    c->msg = NULL;
    c->state = CONN_IDLE;
    qmgr_request_done(m);
}

static void conn_free(struct conn *c, const char *why)
{
    conn_unlink(c);   /* first, so that no dispatch below can pick it */
    conn_fail_pending(c, why);
    bufferevent_free(c->bev);
    rec_buf_free(&c->rec);
    free(c->rcpts);
    free(c);
}

static void conn_handle_attr(struct conn *c, char *payload)
{
    char *name, *value;
    if (rec_attr_split(payload, &name, &value) < 0)
        return;
    if (c->state == CONN_GREETING) {
        if (strcmp(name, "protocol") == 0 && strcmp(value, "deliver_protocol") == 0)
            c->greeting_ok = 1;
        return;
    }
    if (c->state != CONN_BUSY || strcmp(name, "rcpt_status") != 0 || c->nresult >= c->nsent)
        return;
    char *end;
    long long off = strtoll(value, &end, 10);
    size_t idx = c->rcpts[c->nresult];
    const char *status = *end == ' ' ? end + 1 : "4.3.0 malformed delivery status";
    if (off != (long long)c->msg->env.rcpt[idx].offset)
        status = "4.3.0 delivery agent protocol error";
    c->nresult++;
    qmgr_rcpt_result(c->msg, idx, status);
}

/* End of an attribute list: the greeting, or a complete reply. */
static int conn_handle_end(struct conn *c)
{
    if (c->state == CONN_GREETING) {
        if (!c->greeting_ok) {
            msg_warn("private/%s: unexpected protocol greeting", tp.service);
            return -1;
        }
        c->state = CONN_IDLE;
        return 0;
    }
    if (c->state != CONN_BUSY)
        return -1;
    struct qmsg *m = c->msg;
    for (size_t i = c->nresult; i < c->nsent; i++)
        qmgr_rcpt_result(m, c->rcpts[i], "4.3.0 delivery agent protocol error");
    c->msg = NULL;
    c->state = CONN_IDLE;
    qmgr_request_done(m);
    return 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        int type = evrec_get(in, &c->rec, IPC_VALUE_MAX);
        if (type == 0)
            break;
        if (type < 0 || (type != REC_ATTR && type != REC_END)) {
            msg_warn("private/%s: malformed reply from delivery agent", tp.service);
            conn_free(c, "4.3.0 delivery agent protocol error");
            dispatch();
            return;
        }
        if (type == REC_ATTR)
            conn_handle_attr(c, c->rec.data);
        else if (conn_handle_end(c) < 0) {
            conn_free(c, "4.3.0 delivery agent protocol error");
            dispatch();
            return;
        }
    }
    dispatch();
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (c->state == CONN_BUSY)
            msg_warn("private/%s: delivery agent %s", tp.service,
                     what & BEV_EVENT_TIMEOUT ? "timed out" : "disconnected");
        conn_free(c, "4.3.0 unknown mail transport error");
        dispatch();
    }
}

static struct conn *conn_open(void)
{
    int fd = ipc_connect(IPC_PRIVATE, tp.service);
    if (fd < 0) {
        msg_warn("connect to private/%s: %s", tp.service, strerror(errno));
        return NULL;
    }
    evutil_make_socket_nonblocking(fd);
    struct conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->bev = bufferevent_socket_new(tp.base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        free(c);
        close(fd);
        return NULL;
    }
    struct timeval tmo = {.tv_sec = config_time("ipc_timeout")};
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tmo, &tmo);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_GREETING;
    c->next = tp.conns;
    tp.conns = c;
    tp.nconn++;
    return c;
}

static void put_time(struct evbuffer *out, const char *name, const struct timeval *tv)
{
    char buf[32];
    delivery_format_time(buf, sizeof(buf), tv);
    evrec_put_attr(out, name, buf);
}

/* Send all pending recipients of m; returns how many went out. */
static size_t conn_send_request(struct conn *c, struct qmsg *m)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = 0;
    size_t *idx = realloc(c->rcpts, (m->env.nrcpt ? m->env.nrcpt : 1) * sizeof(*idx));
    if (!idx)
        return 0;
    c->rcpts = idx;
    evrec_put_attr(out, "queue_name", QUEUE_ACTIVE);
    evrec_put_attr(out, "queue_id", m->env.id);
    evrec_put_attr(out, "sender", m->env.sender ? m->env.sender : "");
    put_time(out, "arrival", &m->env.arrival);
    put_time(out, "active_time", &m->active);
    evrec_put_attr(out, "nexthop", "");
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        if (m->state[i] != RCPT_PENDING)
            continue;
        char line[32 + 1024];
        const struct queue_rcpt *r = &m->env.rcpt[i];
        if (r->orig)
            evrec_put_attr(out, "orig_rcpt", r->orig);
        snprintf(line, sizeof(line), "%lld %s", (long long)r->offset, r->address);
        evrec_put_attr(out, "rcpt", line);
        m->state[i] = RCPT_INFLIGHT;
        m->inflight++;
        idx[n++] = i;
    }
    evrec_put(out, REC_END, "", 0);
    c->nsent = n;
    c->nresult = 0;
    c->msg = m;
    c->state = CONN_BUSY;
    return n;
}

static struct conn *find_idle(void)
{
    for (struct conn *c = tp.conns; c; c = c->next)
        if (c->state == CONN_IDLE)
            return c;
    return NULL;
}

static int any_greeting(void)
{
    for (struct conn *c = tp.conns; c; c = c->next)
        if (c->state == CONN_GREETING)
            return 1;
    return 0;
}

static void dispatch(void)
{
    while (tp.wait_head) {
        struct conn *c = find_idle();
        if (!c) {
            /* One connection set-up at a time keeps a dead agent from
             * making qmgr open the whole pool at once. */
            if (tp.nconn < tp.limit && !any_greeting())
                conn_open();
            return;
        }
        struct qmsg *m = tp.wait_head;
        tp.wait_head = m->next_wait;
        if (!tp.wait_head)
            tp.wait_tail = NULL;
        m->next_wait = NULL;
        m->waiting = 0;
        if (conn_send_request(c, m) == 0) {
            c->msg = NULL;
            c->state = CONN_IDLE;
            qmgr_request_done(m);
        }
    }
}

void transport_submit(struct qmsg *m)
{
    if (m->waiting)
        return;
    m->waiting = 1;
    m->next_wait = NULL;
    if (tp.wait_tail)
        tp.wait_tail->next_wait = m;
    else
        tp.wait_head = m;
    tp.wait_tail = m;
    dispatch();
}

void transport_forget(struct qmsg *m)
{
    if (!m->waiting)
        return;
    struct qmsg **pp = &tp.wait_head;
    tp.wait_tail = NULL;
    for (struct qmsg *p = tp.wait_head; p;) {
        if (p == m) {
            *pp = p->next_wait;
            p = *pp;
            continue;
        }
        tp.wait_tail = p;
        pp = &p->next_wait;
        p = p->next_wait;
    }
    m->waiting = 0;
}
