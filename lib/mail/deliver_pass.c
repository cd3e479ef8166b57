/* deliver_pass.c - hand one recipient to another delivery agent and take
 * its status over (deliver_pass.h). Blocking, with ipc_timeout on every
 * read: it runs in a blocking agent (local), one recipient at a time.
 */
#include "deliver_pass.h"

#include "address.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRANSPORT_MAX 64

/* "lmtp:unix:private/dovecot-lmtp" -> "lmtp" and its nexthop ("" none). */
static int split_spec(const char *spec, char *transport, const char **nexthop)
{
    size_t n = strcspn(spec, ":");
    if (n == 0 || n >= TRANSPORT_MAX || memchr(spec, '/', n) != NULL)
        return -1;
    memcpy(transport, spec, n);
    transport[n] = 0;
    *nexthop = spec[n] == ':' ? spec + n + 1 : "";
    return 0;
}

static int put_time(struct stream *s, const char *name, const struct timeval *tv)
{
    char buf[40];
    delivery_format_time(buf, sizeof(buf), tv);
    return attr_put(s, name, buf);
}

static int send_request(struct stream *s, const struct deliver_request *req,
                        const struct deliver_rcpt *r, const char *address, const char *nexthop)
{
    char line[40 + ADDRESS_MAX], notify[16];
    int rc = 0;
    rc |= attr_put(s, "queue_name", req->queue_name);
    rc |= attr_put(s, "queue_id", req->queue_id);
    rc |= attr_put(s, "sender", req->sender);
    rc |= put_time(s, "arrival", &req->times.arrival);
    rc |= put_time(s, "active_time", &req->times.active);
    rc |= attr_put(s, "nexthop", nexthop);
    if (req->dsn_envid)
        rc |= attr_put(s, "dsn_envid", req->dsn_envid);
    if (req->dsn_ret)
        rc |= attr_put(s, "dsn_ret", req->dsn_ret);
    rc |= attr_put(s, DELIVER_ATTR_DELEGATED, "1");
    rc |= attr_put(s, "orig_rcpt", r->orig ? r->orig : r->address);
    if (r->dsn_orcpt)
        rc |= attr_put(s, "rcpt_dsn_orcpt", r->dsn_orcpt);
    if (r->dsn_notify) {
        snprintf(notify, sizeof(notify), "%d", r->dsn_notify);
        rc |= attr_put(s, "rcpt_dsn_notify", notify);
    }
    snprintf(line, sizeof(line), "%lld %s", r->offset, address);
    rc |= attr_put(s, "rcpt", line);
    return rc | attr_end(s);
}

/* The agent's "OFFSET D.S.N text" for r into st; -1 when it is not one. */
static int take_status(const char *value, const struct deliver_rcpt *r,
                       struct delivery_status *st)
{
    char *end, dsn[16];
    long long off = value ? strtoll(value, &end, 10) : -1;
    if (!value || off != r->offset || *end != ' ')
        return -1;
    const char *p = end + 1;
    size_t n = strcspn(p, " ");
    if (n == 0 || n >= sizeof(dsn))
        return -1;
    memcpy(dsn, p, n);
    dsn[n] = 0;
    if (!delivery_dsn_valid(dsn))
        return -1;
    delivery_status_set(st, dsn, "%s", p[n] == ' ' ? p + n + 1 : "");
    return 0;
}

int deliver_pass(const char *transport_spec, const struct deliver_request *req,
                 const struct deliver_rcpt *r, const char *address, struct delivery_status *st)
{
    char transport[TRANSPORT_MAX];
    const char *nexthop;
    if (split_spec(transport_spec, transport, &nexthop) < 0) {
        delivery_status_set(st, "4.3.5", "mail system configuration error: bad transport \"%s\"",
                            transport_spec);
        return 0;
    }
    if (!*nexthop)
        nexthop = address_domain(address) ? address_domain(address) : var.myhostname;
    int fd = ipc_connect(IPC_PRIVATE, transport);
    if (fd < 0) {
        delivery_status_set(st, "4.3.0", "mail transport unavailable: connect to %s: %s",
                            transport, strerror(errno));
        return 0;
    }
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);
    struct attr_list reply = {0};
    int ok = 0;
    if (!s) {
        close(fd);
    } else if (ipc_expect_greeting(s, DELIVER_PROTOCOL) == 0 &&
               send_request(s, req, r, address, nexthop) == 0 &&
               attr_list_read(s, &reply) == 0 &&
               take_status(attr_get(&reply, "rcpt_status"), r, st) == 0) {
        ok = 1;
    }
    if (!ok) {
        msg_warn("%s: delivery via %s failed: no valid answer", req->queue_id, transport);
        delivery_status_set(st, "4.3.0", "mail transport unavailable: no valid answer from %s",
                            transport);
    }
    attr_list_free(&reply);
    if (s)
        stream_close(s);
    return ok;
}
