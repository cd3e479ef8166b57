/* events.c - libevent glue: record framing on evbuffers and the master
 * watch of event-driven daemons (events.h).
 */
#include "events.h"
#include "log.h"
#include "record.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct event_base *events_base_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        msg_fatal("event_config_new failed");
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!base)
        msg_fatal("event_base_new failed");
    return base;
}

int evrec_put(struct evbuffer *out, int type, const void *data, size_t len)
{
    unsigned char hdr[REC_MAX_HEADER];
    size_t n = rec_header_encode(hdr, type, len);
    if (evbuffer_add(out, hdr, n) < 0)
        return -1;
    return len ? evbuffer_add(out, data, len) : 0;
}

int evrec_put_attr(struct evbuffer *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    unsigned char hdr[REC_MAX_HEADER];
    size_t n = rec_header_encode(hdr, REC_ATTR, nl + 1 + vl);
    if (evbuffer_add(out, hdr, n) < 0 || evbuffer_add(out, name, nl) < 0 ||
        evbuffer_add(out, "=", 1) < 0 || evbuffer_add(out, value, vl) < 0)
        return -1;
    return 0;
}

int evrec_get(struct evbuffer *in, struct rec_buf *b, size_t max)
{
    unsigned char hdr[REC_MAX_HEADER];
    size_t avail = evbuffer_get_length(in);
    ev_ssize_t got = evbuffer_copyout(in, hdr, avail < sizeof(hdr) ? avail : sizeof(hdr));
    if (got <= 0)
        return 0;
    int type;
    size_t len;
    int h = rec_header_decode(hdr, (size_t)got, &type, &len);
    if (h < 0)
        return REC_ERROR;
    if (h == 0)
        return 0;
    if (len > max)
        return REC_TOOBIG;
    if (avail < (size_t)h + len)
        return 0;
    if (rec_buf_reserve(b, len) < 0)
        return REC_ERROR;
    evbuffer_drain(in, (size_t)h);
    if (len && evbuffer_remove(in, b->data, len) != (ev_ssize_t)len)
        return REC_ERROR;
    b->data[len] = 0;
    b->len = len;
    return type;
}

struct master_watch {
    void (*on_gone)(void *);
    void *ctx;
    struct event *ev;
};

static void master_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct master_watch *w = arg;
    char c;
    /* Nothing is ever written on this pipe: readable means EOF. */
    if (read(fd, &c, 1) > 0)
        return;
    event_free(w->ev);
    w->on_gone(w->ctx);
    free(w);
}

void events_watch_eof(struct event_base *base, int fd, void (*on_gone)(void *), void *ctx)
{
    struct master_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return;
    w->on_gone = on_gone;
    w->ctx = ctx;
    w->ev = event_new(base, fd, EV_READ | EV_PERSIST, master_watch_cb, w);
    if (!w->ev || event_add(w->ev, NULL) < 0) {
        free(w);
        return;
    }
}
