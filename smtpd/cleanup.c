/* cleanup.c - smtpd's stream to the cleanup service (cleanup_protocol).
 *
 * Opened at the first accepted recipient so the queue id is known early;
 * records are written without waiting for cleanup's greeting (the protocol
 * is strictly sequential), and cleanup's three answers (greeting, queue id,
 * final status) are read as they arrive.
 */
#include "smtpd.h"

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

#define CLEANUP_LOW_WATER (256 * 1024)

enum cl_phase { CL_GREETING, CL_QUEUE_ID, CL_STREAMING, CL_STATUS, CL_DONE, CL_FAILED };

struct cleanup_stream {
    struct session *session;
    struct bufferevent *bev;
    enum cl_phase phase;
    int finished;              /* REC_END sent */
    char queue_id[64];
    char status_text[512];
    int status;
    struct rec_buf rec;
    int *freed;                /* set to 1 by cleanup_close while a callback runs */
};

static void cleanup_fail(struct cleanup_stream *c, const char *why)
{
    if (c->phase == CL_FAILED || c->phase == CL_DONE)
        return;
    enum cl_phase was = c->phase;
    c->phase = CL_FAILED;
    if (why)
        msg_warn("%s: %s", c->queue_id[0] ? c->queue_id : "NOQUEUE", why);
    if (was == CL_STATUS)
        session_cleanup_done(c->session, 4, "4.3.0 Error: queue file write error");
    else
        session_cleanup_ready(c->session);
}

/* One attribute of the current answer. */
static void cleanup_attr_in(struct cleanup_stream *c, char *payload)
{
    char *name, *value;
    if (rec_attr_split(payload, &name, &value) < 0)
        return;
    if (strcmp(name, "queue_id") == 0 && c->phase == CL_QUEUE_ID)
        snprintf(c->queue_id, sizeof(c->queue_id), "%s", value);
    else if (strcmp(name, "status") == 0)
        c->status = atoi(value);
    else if (strcmp(name, "reason") == 0)
        snprintf(c->status_text, sizeof(c->status_text), "%s", value);
}

/* The end of an answer moves the stream to its next phase. */
static void cleanup_answer_end(struct cleanup_stream *c)
{
    switch (c->phase) {
    case CL_GREETING:
        c->phase = CL_QUEUE_ID;
        break;
    case CL_QUEUE_ID:
        if (!c->queue_id[0]) {
            msg_warn("cleanup: %s", c->status_text[0] ? c->status_text : "no queue id");
            c->phase = CL_FAILED;
        } else {
            c->phase = CL_STREAMING;
        }
        session_cleanup_ready(c->session);
        break;
    case CL_STATUS:
        c->phase = CL_DONE;
        session_cleanup_done(c->session, c->status, c->status_text);
        break;
    default:
        cleanup_fail(c, "cleanup: unexpected answer");
    }
}

/* The session callbacks made from here may end the transaction and free
 * c (cleanup_close): c->freed tells the loop to stop touching it. */
static void cleanup_read_cb(struct bufferevent *bev, void *arg)
{
    struct cleanup_stream *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    int freed = 0;
    c->freed = &freed;
    while (c->phase != CL_FAILED && c->phase != CL_DONE) {
        int type = evrec_get(in, &c->rec, IPC_VALUE_MAX);
        if (type == 0)
            break;
        if (type == REC_ATTR) {
            cleanup_attr_in(c, c->rec.data);
            continue;
        }
        if (type == REC_END)
            cleanup_answer_end(c);
        else
            cleanup_fail(c, "cleanup: malformed answer");
        if (freed)
            return;
        if (type != REC_END)
            break;
    }
    c->freed = NULL;
}

static void cleanup_write_cb(struct bufferevent *bev, void *arg)
{
    struct cleanup_stream *c = arg;
    session_cleanup_drained(c->session);
}

static void cleanup_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct cleanup_stream *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        cleanup_fail(c, what & BEV_EVENT_TIMEOUT ? "timeout talking to cleanup"
                                                 : "lost connection to cleanup");
}

struct cleanup_stream *cleanup_open(struct session *s)
{
    struct cleanup_stream *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->session = s;
    int fd = ipc_connect(IPC_PRIVATE, "cleanup");
    if (fd < 0) {
        msg_warn("connect to private/cleanup: %s", strerror(errno));
        c->phase = CL_FAILED;
        return c;
    }
    evutil_make_socket_nonblocking(fd);
    c->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        c->phase = CL_FAILED;
        return c;
    }
    struct timeval tmo = {.tv_sec = var.ipc_timeout};
    bufferevent_setcb(c->bev, cleanup_read_cb, cleanup_write_cb, cleanup_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tmo, &tmo);
    bufferevent_setwatermark(c->bev, EV_WRITE, CLEANUP_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evrec_put_attr(out, "flags", "0");
    evrec_put(out, REC_END, "", 0);
    return c;
}

void cleanup_close(struct cleanup_stream *c)
{
    if (!c)
        return;
    if (c->freed)
        *c->freed = 1;
    if (c->bev)
        bufferevent_free(c->bev);
    rec_buf_free(&c->rec);
    free(c);
}

const char *cleanup_queue_id(const struct cleanup_stream *c)
{
    return c->queue_id[0] ? c->queue_id : NULL;
}

int cleanup_failed(const struct cleanup_stream *c)
{
    return c->phase == CL_FAILED;
}

int cleanup_record(struct cleanup_stream *c, int type, const char *data, size_t len)
{
    if (c->phase == CL_FAILED || c->finished)
        return -1;
    return evrec_put(bufferevent_get_output(c->bev), type, data, len);
}

int cleanup_attr(struct cleanup_stream *c, const char *name, const char *value)
{
    if (c->phase == CL_FAILED || c->finished)
        return -1;
    return evrec_put_attr(bufferevent_get_output(c->bev), name, value);
}

int cleanup_content(struct cleanup_stream *c, struct evbuffer *buf, size_t len)
{
    if (c->phase == CL_FAILED || c->finished) {
        evbuffer_drain(buf, len);
        return -1;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (len > 0) {
        size_t n = len < REC_CHUNK_SIZE ? len : REC_CHUNK_SIZE;
        unsigned char hdr[REC_MAX_HEADER];
        size_t h = rec_header_encode(hdr, REC_CONTENT, n);
        if (evbuffer_add(out, hdr, h) < 0 || evbuffer_remove_buffer(buf, out, n) != (int)n)
            return -1;
        len -= n;
    }
    return 0;
}

int cleanup_finish(struct cleanup_stream *c)
{
    if (c->phase == CL_FAILED || c->finished)
        return -1;
    if (evrec_put(bufferevent_get_output(c->bev), REC_END, "", 0) < 0)
        return -1;
    c->finished = 1;
    c->phase = CL_STATUS;
    /* Any answer already buffered is handled by the read callback. */
    return 0;
}

size_t cleanup_backlog(const struct cleanup_stream *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}
