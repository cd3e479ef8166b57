/* anvil.c - smtpd's anvil client (anvil.h). One connection per process
 * to private/anvil, requests answered in order; a request cancelled
 * stays in the queue (its answer still comes) but calls nobody. anvil
 * that does not answer within ANVIL_TIMEOUT fails every pending request
 * with ok 0, and is not asked again for ANVIL_RETRY seconds: limits are
 * not enforced meanwhile, and no session waits on a broken service.
 */
#include "anvil.h"
#include "session.h"
#include "smtpd.h"

#include "attr_lines.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ANVIL_TIMEOUT 10
#define ANVIL_RETRY 60
#define ANSWER_MAX 512

struct smtpd_anvil_req {
    struct smtpd_anvil_req *next;
    smtpd_anvil_fn fn;           /* NULL: cancelled, or tell */
    void *ctx;
};

static struct {
    struct bufferevent *bev;
    struct smtpd_anvil_req *head, **tail;
    time_t down_until;
} av = {.tail = &av.head};

static void fail_all(const char *why);

static long number_attr(const char *data, size_t len, const char *name)
{
    char v[32];
    int found;
    attr_lines_scan(data, len, ANSWER_MAX, name, v, sizeof(v), &found);
    return found ? strtol(v, NULL, 10) : 0;
}

static struct smtpd_anvil_req *pop(void)
{
    struct smtpd_anvil_req *r = av.head;
    if (r && !(av.head = r->next))
        av.tail = &av.head;
    return r;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t look = len > ANSWER_MAX ? ANSWER_MAX : len;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        char status[8];
        int found;
        long used = attr_lines_scan(data, look, ANSWER_MAX, "status", status, sizeof(status),
                                    &found);
        if (used == ATTR_LINES_INCOMPLETE && len < ANSWER_MAX)
            return;
        if (used <= 0 || !av.head) {
            fail_all("malformed answer");
            return;
        }
        long count = number_attr(data, (size_t)used, "count");
        long rate = number_attr(data, (size_t)used, "rate");
        int ok = found && strcmp(status, "0") == 0;
        evbuffer_drain(in, (size_t)used);
        struct smtpd_anvil_req *r = pop();
        if (r->fn)
            r->fn(r->ctx, ok, count, rate);
        free(r);
        if (!av.head)
            bufferevent_set_timeouts(av.bev, NULL, NULL);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    fail_all(what & BEV_EVENT_TIMEOUT ? "timeout" : "lost connection");
}

/* Every pending request answered "not asked"; the connection dropped. */
static void fail_all(const char *why)
{
    msg_warn("problem talking to service private/anvil: %s", why);
    if (av.bev)
        bufferevent_free(av.bev);
    av.bev = NULL;
    av.down_until = time(NULL) + ANVIL_RETRY;
    struct smtpd_anvil_req *r;
    while ((r = pop())) {
        if (r->fn)
            r->fn(r->ctx, 0, 0, 0);
        free(r);
    }
}

static int rate_limited(void)
{
    return smtpd_cfg.connection_rate_limit > 0 || smtpd_cfg.message_rate_limit > 0 ||
           smtpd_cfg.recipient_rate_limit > 0 || smtpd_cfg.newtls_rate_limit > 0 ||
           smtpd_cfg.auth_rate_limit > 0;
}

static int connect_anvil(void)
{
    if (av.bev)
        return 0;
    if (time(NULL) < av.down_until)
        return -1;
    int fd = ipc_connect(IPC_PRIVATE, "anvil");
    if (fd < 0) {
        /* Without an anvil service, and with no rate limit asked for,
         * each smtpd counts its own connections (session.c): quietly. */
        if (errno != ENOENT || rate_limited())
            msg_warn("connect to private/anvil: %s; client rate limits not enforced",
                     strerror(errno));
        av.down_until = time(NULL) + ANVIL_RETRY;
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    if (!(av.bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        close(fd);
        return -1;
    }
    bufferevent_setcb(av.bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(av.bev, EV_READ | EV_WRITE);
    return 0;
}

/* Requests that could not be sent are answered from the loop. */
static void answer_unsent(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_anvil_req *r = arg;
    if (r->fn)
        r->fn(r->ctx, 0, 0, 0);
    free(r);
}

static struct smtpd_anvil_req *send_request(const char *request, const char *addr,
                                            smtpd_anvil_fn fn, void *ctx)
{
    struct smtpd_anvil_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->fn = fn;
    r->ctx = ctx;
    if (connect_anvil() < 0) {
        if (event_base_once(smtpd_base, -1, EV_TIMEOUT, answer_unsent, r, NULL) < 0) {
            free(r);
            return NULL;
        }
        return r;   /* cancellable until the loop runs it */
    }
    evbuffer_add_printf(bufferevent_get_output(av.bev), "request=%s\nident=%s:%s\n\n", request,
                        service_name(), addr);
    struct timeval tv = {ANVIL_TIMEOUT, 0};
    bufferevent_set_timeouts(av.bev, &tv, NULL);
    *av.tail = r;
    av.tail = &r->next;
    return r;
}

struct smtpd_anvil_req *smtpd_anvil_ask(const char *request, const char *addr,
                                        smtpd_anvil_fn fn, void *ctx)
{
    return send_request(request, addr, fn, ctx);
}

void smtpd_anvil_cancel(struct smtpd_anvil_req *req)
{
    if (req)
        req->fn = NULL;
}

void smtpd_anvil_tell(const char *request, const char *addr)
{
    send_request(request, addr, NULL, NULL);
}
