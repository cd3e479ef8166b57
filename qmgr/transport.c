/* transport.c - qmgr's connections to delivery agents (deliver_protocol).
 *
 * Each transport has a pool of persistent connections to its service
 * (private/NAME). sched.c asks for an idle one; a new connection is opened
 * one at a time (so a dead agent cannot make qmgr open the whole pool at
 * once) and reports back through sched_conn_ready once greeted. Results
 * come back one attribute per recipient; a broken connection fails the
 * rest of its job with a temporary error.
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

struct agent_conn {
    struct transport *tp;
    struct bufferevent *bev;
    enum conn_state state;
    struct job *job;           /* request in flight */
    size_t nresult;
    struct rec_buf rec;
    int greeting_ok;
    struct agent_conn *next;
};

static struct event_base *agent_base;

void agent_init(struct event_base *base)
{
    agent_base = base;
}

static void conn_unlink(struct agent_conn *dead)
{
    struct transport *t = dead->tp;
    for (struct agent_conn **pp = &t->conns; *pp; pp = &(*pp)->next)
        if (*pp == dead) {
            *pp = dead->next;
            break;
        }
    t->nconn--;
    if (dead->state == CONN_GREETING)
        t->nopening--;
}

/* Whatever the agent never answered is a temporary failure. */
static void conn_free(struct agent_conn *c, const char *why)
{
    struct transport *t = c->tp;
    struct job *j = c->state == CONN_BUSY ? c->job : NULL;
    conn_unlink(c);   /* first, so that nothing below can pick it */
    bufferevent_free(c->bev);
    rec_buf_free(&c->rec);
    free(c);
    if (j)
        sched_job_done(j, why);
    else
        sched_conn_ready(t);
}

static void conn_handle_attr(struct agent_conn *c, char *payload)
{
    char *name, *value;
    if (rec_attr_split(payload, &name, &value) < 0)
        return;
    if (c->state == CONN_GREETING) {
        if (strcmp(name, "protocol") == 0 && strcmp(value, "deliver_protocol") == 0)
            c->greeting_ok = 1;
        return;
    }
    struct job *j = c->job;
    if (c->state != CONN_BUSY || strcmp(name, "rcpt_status") != 0 || c->nresult >= j->nrcpt)
        return;
    char *end;
    long long off = strtoll(value, &end, 10);
    const char *status = *end == ' ' ? end + 1 : "4.3.0 malformed delivery status";
    if (off != (long long)j->msg->env.rcpt[j->rcpt[c->nresult]].offset)
        status = "4.3.0 delivery agent protocol error";
    sched_job_result(j, c->nresult++, status);
}

/* End of an attribute list: the greeting, or a complete reply. Returns -1
 * when the connection must go. */
static int conn_handle_end(struct agent_conn *c)
{
    if (c->state == CONN_GREETING) {
        if (!c->greeting_ok) {
            msg_warn("private/%s: unexpected protocol greeting", c->tp->name);
            return -1;
        }
        c->state = CONN_IDLE;
        c->tp->nopening--;
        sched_conn_ready(c->tp);
        return 0;
    }
    if (c->state != CONN_BUSY)
        return -1;
    struct job *j = c->job;
    c->job = NULL;
    c->state = CONN_IDLE;
    sched_job_done(j, "4.3.0 delivery agent protocol error");
    return 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct agent_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        int type = evrec_get(in, &c->rec, IPC_VALUE_MAX);
        if (type == 0)
            return;
        if (type == REC_ATTR) {
            conn_handle_attr(c, c->rec.data);
            continue;
        }
        if (type != REC_END || conn_handle_end(c) < 0) {
            msg_warn("private/%s: malformed reply from delivery agent", c->tp->name);
            conn_free(c, "4.3.0 delivery agent protocol error");
            return;
        }
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct agent_conn *c = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    if (c->state == CONN_BUSY)
        msg_warn("private/%s: delivery agent %s", c->tp->name,
                 what & BEV_EVENT_TIMEOUT ? "timed out" : "disconnected");
    else if (c->state == CONN_IDLE && (what & BEV_EVENT_TIMEOUT))
        return;   /* idle connections may sit quietly */
    conn_free(c, "4.3.0 unknown mail transport error");
}

/* Returns -1 when the agent's socket cannot be reached at all. */
static int conn_open(struct transport *t)
{
    int fd = ipc_connect(IPC_PRIVATE, t->name);
    if (fd < 0) {
        msg_warn("connect to private/%s: %s", t->name, strerror(errno));
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    struct agent_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->bev = bufferevent_socket_new(agent_base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        free(c);
        close(fd);
        return -1;
    }
    struct timeval tmo = {.tv_sec = var.ipc_timeout};
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tmo, &tmo);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->tp = t;
    c->state = CONN_GREETING;
    c->next = t->conns;
    t->conns = c;
    t->nconn++;
    t->nopening++;
    return 0;
}

struct agent_conn *agent_idle(struct transport *t, int *unavailable)
{
    for (struct agent_conn *c = t->conns; c; c = c->next)
        if (c->state == CONN_IDLE)
            return c;
    if (t->nconn < t->pool_limit && t->nopening == 0 && conn_open(t) < 0)
        *unavailable = t->nconn == 0;
    return NULL;
}

static void put_time(struct evbuffer *out, const char *name, const struct timeval *tv)
{
    char buf[32];
    delivery_format_time(buf, sizeof(buf), tv);
    evrec_put_attr(out, name, buf);
}

static void put_envelope_attr(struct evbuffer *out, const struct qmsg *m, const char *name)
{
    const char *v = queue_envelope_attr(&m->env, name);
    if (v)
        evrec_put_attr(out, name, v);
}

void agent_send(struct agent_conn *c, struct job *j)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const struct qmsg *m = j->msg;
    evrec_put_attr(out, "queue_name", QUEUE_ACTIVE);
    evrec_put_attr(out, "queue_id", m->env.id);
    evrec_put_attr(out, "sender", m->env.sender ? m->env.sender : "");
    put_time(out, "arrival", &m->env.arrival);
    put_time(out, "active_time", &m->active);
    evrec_put_attr(out, "nexthop", j->dest_nexthop);
    put_envelope_attr(out, m, "dsn_envid");
    put_envelope_attr(out, m, "dsn_ret");
    for (size_t k = 0; k < j->nrcpt; k++) {
        const struct queue_rcpt *r = &m->env.rcpt[j->rcpt[k]];
        char line[40 + 1024];
        if (r->orig)
            evrec_put_attr(out, "orig_rcpt", r->orig);
        if (r->dsn_orcpt)
            evrec_put_attr(out, "rcpt_dsn_orcpt", r->dsn_orcpt);
        if (r->dsn_notify) {
            snprintf(line, sizeof(line), "%d", r->dsn_notify);
            evrec_put_attr(out, "rcpt_dsn_notify", line);
        }
        if (m->redirected == j->rcpt[k] + 1)   /* the agent checks this one */
            evrec_put_attr(out, "queue_rcpt", m->queue_addr);
        snprintf(line, sizeof(line), "%lld %s", (long long)r->offset, r->address);
        evrec_put_attr(out, "rcpt", line);
    }
    evrec_put(out, REC_END, "", 0);
    c->job = j;
    c->nresult = 0;
    c->state = CONN_BUSY;
}
