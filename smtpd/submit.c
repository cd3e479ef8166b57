/* submit.c - the stream of a message out of smtpd (submit.h).
 *
 * To cleanup: records are written without waiting for cleanup's greeting
 * (the protocol is strictly sequential), and cleanup's three answers
 * (greeting, queue id, final status) are read as they arrive.
 *
 * To postdrop (stand-alone mode): the same records through a pipe, minus
 * what postdrop refuses from a user; the pipe is closed after the end
 * record, and postdrop's exit status is the answer. postdrop names the
 * file only once it is complete, so the queue id is never known here.
 */
#include "submit.h"
#include "postdrop.h"
#include "smtpd.h"

#include "config.h"
#include "events.h"
#include "ipc.h"
#include "log.h"
#include "receive_override.h"
#include "maildrop.h"
#include "record.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUBMIT_LOW_WATER (256 * 1024)

enum phase { PH_GREETING, PH_QUEUE_ID, PH_STREAMING, PH_STATUS, PH_DONE, PH_FAILED };

struct smtpd_submit {
    const struct smtpd_submit_events *ev;
    void *ctx;
    const char *peer;          /* "cleanup" or "postdrop", for warnings */
    pid_t postdrop;            /* running postdrop, 0 when none (or cleanup) */
    int local;                 /* to postdrop */
    struct event *deadline;    /* postdrop's exit after the end record */
    struct bufferevent *bev;
    enum phase phase;
    int finished;              /* REC_END sent */
    char queue_id[64];
    char status_text[512];
    int status;
    char *reply;               /* the milters' SMTP reply, from cleanup */
    char *milter[SMTPD_SUBMIT_FDS_MAX];   /* each passed connection's state */
    size_t nmilter;
    int milters_said;          /* the answer had milter states */
    struct rec_buf rec;
    int *freed;                /* set to 1 by smtpd_submit_close while a callback runs */
};

static void submit_fail(struct smtpd_submit *m, const char *why)
{
    if (m->phase == PH_FAILED || m->phase == PH_DONE)
        return;
    enum phase was = m->phase;
    m->phase = PH_FAILED;
    if (why)
        msg_warn("%s: %s", m->queue_id[0] ? m->queue_id : "NOQUEUE", why);
    if (was == PH_STATUS)
        m->ev->done(m->ctx, 4, "4.3.0 Error: queue file write error");
    else
        m->ev->ready(m->ctx);
}

/* One attribute of the current answer. */
static void answer_attr(struct smtpd_submit *m, char *payload)
{
    char *name, *value;
    if (rec_attr_split(payload, &name, &value) < 0)
        return;
    if (strcmp(name, "queue_id") == 0 && m->phase == PH_QUEUE_ID)
        snprintf(m->queue_id, sizeof(m->queue_id), "%s", value);
    else if (strcmp(name, "status") == 0)
        m->status = atoi(value);
    else if (strcmp(name, "reason") == 0)
        snprintf(m->status_text, sizeof(m->status_text), "%s", value);
    else if (strcmp(name, "reply") == 0 && m->phase == PH_STATUS && !m->reply)
        m->reply = strdup(value);
    else if (strcmp(name, "milter") == 0 && m->phase == PH_STATUS &&
             m->nmilter < SMTPD_SUBMIT_FDS_MAX && (m->milter[m->nmilter] = strdup(value)))
        m->nmilter++;
    if (strcmp(name, "milter") == 0)
        m->milters_said = 1;
}

/* The end of an answer moves the stream to its next phase. */
static void answer_end(struct smtpd_submit *m)
{
    switch (m->phase) {
    case PH_GREETING:
        m->phase = PH_QUEUE_ID;
        break;
    case PH_QUEUE_ID:
        if (!m->queue_id[0]) {
            msg_warn("cleanup: %s", m->status_text[0] ? m->status_text : "no queue id");
            m->phase = PH_FAILED;
        } else {
            m->phase = PH_STREAMING;
        }
        m->ev->ready(m->ctx);
        break;
    case PH_STATUS:
        m->phase = PH_DONE;
        m->ev->done(m->ctx, m->status, m->status_text);
        break;
    default:
        submit_fail(m, "cleanup: unexpected answer");
    }
}

/* The callbacks made from here may end the transaction and free m
 * (smtpd_submit_close): m->freed tells the loop to stop touching it. */
static void read_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_submit *m = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    int freed = 0;
    m->freed = &freed;
    while (m->phase != PH_FAILED && m->phase != PH_DONE) {
        int type = evrec_get(in, &m->rec, IPC_VALUE_MAX);
        if (type == 0)
            break;
        if (type == REC_ATTR) {
            answer_attr(m, m->rec.data);
            continue;
        }
        if (type == REC_END)
            answer_end(m);
        else
            submit_fail(m, "cleanup: malformed answer");
        if (freed)
            return;
        if (type != REC_END)
            break;
    }
    m->freed = NULL;
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_submit *m = arg;
    m->ev->drained(m->ctx);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_submit *m = arg;
    char why[64];
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    snprintf(why, sizeof(why), "%s %s", what & BEV_EVENT_TIMEOUT ? "timeout talking to"
                                                                   : "lost connection to",
             m->peer);
    submit_fail(m, why);
}

/* --- to cleanup --- */

/* The flags of the first request: this service's receive_override_options
 * (receive_override.h), which cleanup applies. */
static const char *cleanup_flags(void)
{
    static char flags[16];
    snprintf(flags, sizeof(flags), "%u", receive_override_mask());
    return flags;
}

/* The first request, {flags, milters=N}, in one sendmsg with the N
 * milter connections: cleanup reads it with the descriptors, and the rest
 * of the stream (the bufferevent's) follows it. A fresh socket has room
 * for it, so this does not wait. */
static int send_request_with_fds(int fd, const int *fds, size_t nfds)
{
    struct evbuffer *req = evbuffer_new();
    char count[16];
    snprintf(count, sizeof(count), "%zu", nfds);
    if (!req || evrec_put_attr(req, "flags", cleanup_flags()) < 0 || evrec_put_attr(req, "milters", count) < 0 ||
        evrec_put(req, REC_END, "", 0) < 0) {
        if (req)
            evbuffer_free(req);
        return -1;
    }
    size_t len = evbuffer_get_length(req);
    union {
        char buf[CMSG_SPACE(sizeof(int) * SMTPD_SUBMIT_FDS_MAX)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = evbuffer_pullup(req, -1), .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    evbuffer_free(req);
    return n == (ssize_t)len ? 0 : -1;
}

static struct smtpd_submit *open_cleanup(struct smtpd_submit *m, const int *fds, size_t nfds)
{
    m->peer = "cleanup";
    int fd = ipc_connect(IPC_PRIVATE, "cleanup");
    if (fd < 0) {
        msg_warn("connect to private/cleanup: %s", strerror(errno));
        m->phase = PH_FAILED;
        return m;
    }
    if (nfds && send_request_with_fds(fd, fds, nfds) < 0) {
        msg_warn("pass milter connections to cleanup: %s", strerror(errno));
        close(fd);
        m->phase = PH_FAILED;
        return m;
    }
    evutil_make_socket_nonblocking(fd);
    m->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!m->bev) {
        close(fd);
        m->phase = PH_FAILED;
        return m;
    }
    struct timeval tmo = {.tv_sec = var.ipc_timeout};
    bufferevent_setcb(m->bev, read_cb, write_cb, event_cb, m);
    bufferevent_set_timeouts(m->bev, &tmo, &tmo);
    bufferevent_setwatermark(m->bev, EV_WRITE, SUBMIT_LOW_WATER, 0);
    bufferevent_enable(m->bev, EV_READ | EV_WRITE);
    if (!nfds) {
        struct evbuffer *out = bufferevent_get_output(m->bev);
        evrec_put_attr(out, "flags", cleanup_flags());
        evrec_put(out, REC_END, "", 0);
    }
    return m;
}

/* --- to postdrop --- */

static void postdrop_exited(void *ctx, int status)
{
    struct smtpd_submit *m = ctx;
    m->postdrop = 0;
    if (status != 0) {
        char why[64];
        snprintf(why, sizeof(why), "postdrop exit status %d", status);
        submit_fail(m, why);
    } else if (m->phase == PH_STATUS) {
        m->phase = PH_DONE;
        m->ev->done(m->ctx, 0, "");
    } else {
        submit_fail(m, "postdrop ended early");
    }
}

static void postdrop_timeout(evutil_socket_t fd, short what, void *arg)
{
    submit_fail(arg, "timeout waiting for postdrop");
}

/* Once the end record is out, the closed pipe tells postdrop to commit. */
static void postdrop_write_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_submit *m = arg;
    if (!m->finished) {
        m->ev->drained(m->ctx);
        return;
    }
    bufferevent_free(m->bev);
    m->bev = NULL;
}

static struct smtpd_submit *open_postdrop(struct smtpd_submit *m)
{
    m->peer = "postdrop";
    m->local = 1;
    int fd = smtpd_postdrop_start(&m->postdrop);
    if (fd < 0) {
        m->phase = PH_FAILED;
        return m;
    }
    smtpd_postdrop_watch(m->postdrop, postdrop_exited, m);
    m->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    m->deadline = evtimer_new(smtpd_base, postdrop_timeout, m);
    if (!m->bev || !m->deadline) {
        if (!m->bev)
            close(fd);
        m->phase = PH_FAILED;
        return m;
    }
    struct timeval tmo = {.tv_sec = var.ipc_timeout};
    bufferevent_setcb(m->bev, NULL, postdrop_write_cb, event_cb, m);
    bufferevent_set_timeouts(m->bev, NULL, &tmo);
    bufferevent_setwatermark(m->bev, EV_WRITE, SUBMIT_LOW_WATER, 0);
    bufferevent_enable(m->bev, EV_WRITE);
    m->phase = PH_STREAMING;
    return m;
}

/* What postdrop takes from a user (maildrop.h): the DSN attributes and
 * NOTIFY. It would drop the client's attributes with a warning each, and
 * refuse the whole message for an ORCPT record. */
static int postdrop_takes(int type, const char *attr, const char *value)
{
    if (type == REC_ATTR)
        return maildrop_attr_ok(attr, value);
    return type != REC_DSN_ORCPT;
}

/* --- either --- */

struct smtpd_submit *smtpd_submit_open(const struct smtpd_submit_events *ev, void *ctx,
                                       const int *fds, size_t nfds)
{
    struct smtpd_submit *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->ev = ev;
    m->ctx = ctx;
    if (nfds > SMTPD_SUBMIT_FDS_MAX)
        nfds = SMTPD_SUBMIT_FDS_MAX;
    return smtpd_cfg.stand_alone ? open_postdrop(m) : open_cleanup(m, fds, nfds);
}

void smtpd_submit_close(struct smtpd_submit *m)
{
    if (!m)
        return;
    if (m->freed)
        *m->freed = 1;
    if (m->postdrop)
        smtpd_postdrop_stop(m->postdrop);
    if (m->bev)
        bufferevent_free(m->bev);
    if (m->deadline)
        event_free(m->deadline);
    rec_buf_free(&m->rec);
    free(m->reply);
    for (size_t i = 0; i < m->nmilter; i++)
        free(m->milter[i]);
    free(m);
}

int smtpd_submit_ready(const struct smtpd_submit *m)
{
    return m->queue_id[0] || m->local || m->phase == PH_FAILED;
}

const char *smtpd_submit_queue_id(const struct smtpd_submit *m)
{
    return m->queue_id[0] ? m->queue_id : NULL;
}

int smtpd_submit_failed(const struct smtpd_submit *m)
{
    return m->phase == PH_FAILED;
}

const char *smtpd_submit_reply(const struct smtpd_submit *m)
{
    return m->reply;
}

const char *const *smtpd_submit_milters(const struct smtpd_submit *m, size_t *n)
{
    *n = m->nmilter;
    return m->milters_said ? (const char *const *)m->milter : NULL;
}

static int writable(const struct smtpd_submit *m)
{
    return m->phase != PH_FAILED && !m->finished;
}

int smtpd_submit_record(struct smtpd_submit *m, int type, const char *data, size_t len)
{
    if (!writable(m))
        return -1;
    if (m->local && !postdrop_takes(type, NULL, NULL))
        return 0;
    return evrec_put(bufferevent_get_output(m->bev), type, data, len);
}

int smtpd_submit_attr(struct smtpd_submit *m, const char *name, const char *value)
{
    if (!writable(m))
        return -1;
    if (m->local && !postdrop_takes(REC_ATTR, name, value))
        return 0;
    return evrec_put_attr(bufferevent_get_output(m->bev), name, value);
}

int smtpd_submit_content(struct smtpd_submit *m, struct evbuffer *buf, size_t len)
{
    if (!writable(m)) {
        evbuffer_drain(buf, len);
        return -1;
    }
    struct evbuffer *out = bufferevent_get_output(m->bev);
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

int smtpd_submit_finish(struct smtpd_submit *m)
{
    if (!writable(m))
        return -1;
    if (evrec_put(bufferevent_get_output(m->bev), REC_END, "", 0) < 0)
        return -1;
    m->finished = 1;
    m->phase = PH_STATUS;
    if (m->local) {
        struct timeval tmo = {.tv_sec = var.ipc_timeout};
        bufferevent_setwatermark(m->bev, EV_WRITE, 0, 0);   /* write_cb once all is out */
        evtimer_add(m->deadline, &tmo);
    }
    /* Any answer already buffered is handled by the read callback. */
    return 0;
}

size_t smtpd_submit_backlog(const struct smtpd_submit *m)
{
    return m->bev ? evbuffer_get_length(bufferevent_get_output(m->bev)) : 0;
}
