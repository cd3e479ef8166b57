/* anvil.c - Postfix's anvil(8): connection counts and rates per client,
 * shared by every smtpd process of a service, so that the
 * smtpd_client_*_limit parameters hold across processes.
 *
 * One process (master.cf: anvil unix - - n - 1 anvil), one event loop,
 * many clients. A request is attribute lines ended by an empty line
 * (lib/util/attr_lines.h): request=connect|disconnect|message|recipient|
 * newtls|newtls_stat|auth and ident=SERVICE:ADDRESS; the answer is
 * status=0, count=N (concurrent connections) and rate=N (events of the
 * request's kind in the current anvil_rate_time_unit; newtls_stat reads
 * the new TLS session rate without counting). A client that goes away
 * takes its connections with it: an smtpd that crashed leaves no phantom
 * counts. As Postfix's anvil, it logs the peaks of each kind every
 * anvil_status_update_time and at exit ("statistics: max connection rate
 * 3/60s for (smtp:192.0.2.1) at Dec  7 14:03:12").
 */
#include "attr_lines.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IDENT_MAX 256
#define LINE_MAX_ANVIL 512
#define REQUEST_MAX 2048
#define IDENTS_MAX 100000   /* beyond this, new clients are not counted */

enum rate_kind { RATE_CONNECT, RATE_MESSAGE, RATE_RECIPIENT, RATE_NEWTLS, RATE_AUTH, RATE_KINDS };

/* The request that counts each kind, and its name in the statistics. */
static const char *const rate_request[RATE_KINDS] = {"connect", "message", "recipient", "newtls",
                                                     "auth"};
static const char *const rate_name[RATE_KINDS] = {"connection", "message", "recipient",
                                                  "newtls", "auth"};

/* A peak since the last statistics lines: its value, whose, when. */
struct peak {
    long value;
    time_t when;
    char ident[IDENT_MAX];
};

struct ident {
    struct ident *next;
    long count;
    long rate[RATE_KINDS];
    time_t window;           /* when the current rate window began */
    char name[IDENT_MAX];
};

/* One connection this client counted, to undo when it goes away. */
struct held {
    struct held *next;
    struct ident *ident;
};

struct client {
    struct bufferevent *bev;
    struct held *held;
};

static struct event_base *base;
static struct ident *idents;
static long nidents;
static struct peak rate_peak[RATE_KINDS], count_peak, cache_peak;

static void peak_update(struct peak *p, long value, const char *ident)
{
    if (value <= p->value)
        return;
    p->value = value;
    p->when = time(NULL);
    snprintf(p->ident, sizeof(p->ident), "%s", ident);
}

/* "Dec  7 14:03:12": the month, day and time of ctime(3), as Postfix. */
static const char *peak_time(const struct peak *p, char *buf, size_t len)
{
    char full[32];
    snprintf(buf, len, "%.15s", ctime_r(&p->when, full) ? full + 4 : "");
    return buf;
}

/* The peaks since the last report, then reset (Postfix's order). */
static void log_statistics(void)
{
    char when[16];
    for (int k = 0; k < RATE_KINDS; k++) {
        struct peak *p = &rate_peak[k];
        if (p->value > 0)
            msg_info("statistics: max %s rate %ld/%lds for (%s) at %s", rate_name[k], p->value,
                     var.anvil_rate_time_unit, p->ident, peak_time(p, when, sizeof(when)));
        if (k == RATE_CONNECT && count_peak.value > 0)
            msg_info("statistics: max connection count %ld for (%s) at %s", count_peak.value,
                     count_peak.ident, peak_time(&count_peak, when, sizeof(when)));
        p->value = 0;
    }
    count_peak.value = 0;
    if (cache_peak.value > 0)
        msg_info("statistics: max cache size %ld at %s", cache_peak.value,
                 peak_time(&cache_peak, when, sizeof(when)));
    cache_peak.value = 0;
}

static void statistics_due(evutil_socket_t fd, short what, void *arg)
{
    log_statistics();
}

static struct ident *ident_get(const char *name)
{
    for (struct ident *i = idents; i; i = i->next)
        if (strcmp(i->name, name) == 0)
            return i;
    if (nidents >= IDENTS_MAX)
        return NULL;
    struct ident *i = calloc(1, sizeof(*i));
    if (!i)
        return NULL;
    snprintf(i->name, sizeof(i->name), "%s", name);
    i->window = time(NULL);
    i->next = idents;
    idents = i;
    nidents++;
    peak_update(&cache_peak, nidents, "");
    return i;
}

/* A new rate window once anvil_rate_time_unit has passed. */
static void roll_window(struct ident *i, time_t now)
{
    if (now - i->window >= var.anvil_rate_time_unit) {
        memset(i->rate, 0, sizeof(i->rate));
        i->window = now;
    }
}

/* Forget idents with no connections whose window is over. */
static void sweep(evutil_socket_t fd, short what, void *arg)
{
    time_t now = time(NULL);
    for (struct ident **pp = &idents; *pp;) {
        struct ident *i = *pp;
        if (i->count <= 0 && now - i->window >= var.anvil_rate_time_unit) {
            *pp = i->next;
            free(i);
            nidents--;
        } else {
            pp = &i->next;
        }
    }
}

static void release(struct client *c, struct ident *i)
{
    for (struct held **pp = &c->held; *pp; pp = &(*pp)->next) {
        if ((*pp)->ident == i) {
            struct held *h = *pp;
            *pp = h->next;
            free(h);
            i->count--;
            return;
        }
    }
}

static void client_free(struct client *c)
{
    while (c->held)
        release(c, c->held->ident);
    bufferevent_free(c->bev);
    free(c);
}

static void hold(struct client *c, struct ident *i)
{
    struct held *h = calloc(1, sizeof(*h));
    if (h) {
        h->ident = i;
        h->next = c->held;
        c->held = h;
        i->count++;
        peak_update(&count_peak, i->count, i->name);
    }
}

/* Apply one request; the answer's count and rate. */
static void apply(struct client *c, const char *request, struct ident *i, long *rate)
{
    roll_window(i, time(NULL));
    *rate = 0;
    if (strcmp(request, "disconnect") == 0) {
        release(c, i);
        return;
    }
    if (strcmp(request, "newtls_stat") == 0) {
        *rate = i->rate[RATE_NEWTLS];
        return;
    }
    for (int k = 0; k < RATE_KINDS; k++) {
        if (strcmp(request, rate_request[k]) != 0)
            continue;
        if (k == RATE_CONNECT)
            hold(c, i);
        *rate = ++i->rate[k];
        peak_update(&rate_peak[k], *rate, i->name);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t look = len > REQUEST_MAX ? REQUEST_MAX : len;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        char request[32], name[IDENT_MAX];
        int has_request, has_ident;
        long used = attr_lines_scan(data, look, LINE_MAX_ANVIL, "request", request,
                                    sizeof(request), &has_request);
        if (used == ATTR_LINES_INCOMPLETE && len < REQUEST_MAX)
            return;
        if (used <= 0) {
            msg_warn("malformed request from a client; disconnecting it");
            client_free(c);
            return;
        }
        attr_lines_scan(data, look, LINE_MAX_ANVIL, "ident", name, sizeof(name), &has_ident);
        evbuffer_drain(in, (size_t)used);
        struct ident *i = has_request && has_ident ? ident_get(name) : NULL;
        long rate = 0;
        if (i)
            apply(c, request, i, &rate);
        evbuffer_add_printf(bufferevent_get_output(bev), "status=%d\ncount=%ld\nrate=%ld\n\n",
                            i ? 0 : 1, i ? i->count : 0, rate);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    client_free(arg);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct client *c = calloc(1, sizeof(*c));
    if (!c || !(c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        free(c);
        close(fd);
        return;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void master_gone(void *arg)
{
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "anvil", 0);
    base = events_base_new();
    evutil_make_socket_nonblocking(SERVICE_LISTEN_FD);
    struct event *acc = event_new(base, SERVICE_LISTEN_FD, EV_READ | EV_PERSIST, accept_cb, NULL);
    struct event *sw = event_new(base, -1, EV_PERSIST, sweep, NULL);
    struct event *st = event_new(base, -1, EV_PERSIST, statistics_due, NULL);
    struct timeval tv = {var.anvil_rate_time_unit > 0 ? var.anvil_rate_time_unit : 60, 0};
    struct timeval stv = {var.anvil_status_update_time, 0};
    if (!acc || !sw || !st || event_add(acc, NULL) < 0 || event_add(sw, &tv) < 0 ||
        event_add(st, &stv) < 0)
        msg_fatal("cannot set up the event loop");
    events_watch_eof(base, SERVICE_ALIVE_FD, master_gone, NULL);
    service_report(1);
    event_base_dispatch(base);
    log_statistics();
    return 0;
}
