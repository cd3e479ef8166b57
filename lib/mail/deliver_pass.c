/* deliver_pass.c - a recipient handed to another delivery agent
 * (deliver_pass.h): the client side of deliver_protocol, blocking, for one
 * request of one recipient.
 */
#include "deliver_pass.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "record.h"
#include "stream.h"

#define TRANSPORT_NAME_MAX 64

static int put_time(struct stream *s, const char *name, const struct timeval *tv)
{
    char buf[32];

    delivery_format_time(buf, sizeof(buf), tv);
    return attr_put(s, name, buf);
}

static int put_optional(struct stream *s, const char *name, const char *value)
{
    return value == NULL ? 0 : attr_put(s, name, value);
}

/* The request qmgr would have sent for this one recipient. */
static int send_request(struct stream *s, const struct deliver_message *m,
                        const struct deliver_rcpt *r, const char *address, const char *orig,
                        const char *nexthop)
{
    const struct deliver_request *req = m->req;
    char value[40 + 2 * 1024], notify[16];

    snprintf(value, sizeof(value), "%lld %s", r->offset, address);
    snprintf(notify, sizeof(notify), "%d", r->dsn_notify);
    if (attr_put(s, "queue_name", req->queue_name) < 0
        || attr_put(s, "queue_id", req->queue_id) < 0 || attr_put(s, "sender", m->sender) < 0
        || put_time(s, "arrival", &req->times.arrival) < 0
        || put_time(s, "active_time", &req->times.active) < 0
        || attr_put(s, "nexthop", nexthop) < 0 || put_optional(s, ATTR_DSN_ENVID, req->dsn_envid) < 0
        || put_optional(s, ATTR_DSN_RET, req->dsn_ret) < 0 || put_optional(s, "orig_rcpt", orig) < 0
        || put_optional(s, "rcpt_dsn_orcpt", r->dsn_orcpt) < 0
        || (r->dsn_notify != 0 && attr_put(s, "rcpt_dsn_notify", notify) < 0)
        || attr_put(s, "queue_rcpt", r->address) < 0 || attr_put(s, "rcpt", value) < 0)
        return -1;
    return attr_end(s);
}

/* The one rcpt_status of the reply, for our offset, into st. */
static int read_reply(struct stream *s, const struct deliver_rcpt *r, struct delivery_status *st)
{
    struct attr_list reply;
    const char *v, *p;
    char dsn[16];
    char *end;

    if (attr_list_read(s, &reply) < 0)
        return -1;
    v = attr_get(&reply, "rcpt_status");
    int ok = v != NULL && strtoll(v, &end, 10) == r->offset && *end == ' '
             && sscanf(end + 1, "%15s", dsn) == 1 && delivery_dsn_valid(dsn);
    if (ok) {
        p = end + 1 + strlen(dsn);
        delivery_status_set(st, dsn, "%s", *p == ' ' ? p + 1 : p);
    }
    attr_list_free(&reply);
    return ok ? 0 : -1;
}

/* "name:nexthop" -> name into buf, nexthop or the request's. */
static const char *split_transport(const char *spec, char *name, size_t len,
                                   const struct deliver_message *m)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon != NULL ? (size_t)(colon - spec) : strlen(spec);

    snprintf(name, len, "%.*s", (int)(n < len ? n : len - 1), spec);
    if (colon != NULL && colon[1] != 0)
        return colon + 1;
    return m->req->nexthop != NULL ? m->req->nexthop : "";
}

int deliver_pass(const char *transport, const struct deliver_message *m,
                 const struct deliver_rcpt *r, const char *address, const char *orig,
                 struct delivery_status *st)
{
    char name[TRANSPORT_NAME_MAX];
    const char *nexthop = split_transport(transport, name, sizeof(name), m);
    struct stream *s;
    int fd, rc = 0;

    if (m->req == NULL || name[0] == 0 || strchr(name, '/') != NULL) {
        delivery_status_set(st, "4.3.5", "mail system configuration error");
        msg_warn("%s: bad transport \"%s\" to hand %s to", m->queue_id, transport, address);
        return -1;
    }
    if ((fd = ipc_connect(IPC_PRIVATE, name)) < 0) {
        msg_warn("%s: connect to private/%s: %s", m->queue_id, name, strerror(errno));
        delivery_status_set(st, "4.3.0", "mail transport unavailable");
        return -1;
    }
    if ((s = stream_open(fd, (int)var.ipc_timeout)) == NULL)
        msg_fatal("out of memory for a connection stream");
    if (ipc_expect_greeting(s, "deliver_protocol") < 0
        || send_request(s, m, r, address, orig, nexthop) < 0 || read_reply(s, r, st) < 0) {
        msg_warn("%s: private/%s: delivery agent did not answer", m->queue_id, name);
        delivery_status_set(st, "4.3.0", "mail transport unavailable");
        rc = -1;
    }
    stream_close(s);
    return rc;
}
