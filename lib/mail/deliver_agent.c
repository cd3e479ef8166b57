/* deliver_agent.c - the blocking deliver_protocol server loop
 * (deliver_agent.h).
 *
 * A request that cannot be answered, or a reply that cannot be sent, ends
 * the connection: qmgr then defers whatever it had asked for. Each
 * recipient is logged right after its own delivery, so the log's delays
 * say how long that one took.
 */
#include "deliver_agent.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "queue_file.h"
#include "service.h"
#include "stream.h"

/* What the agent does: per recipient, or per request. */
struct agent {
    const char *relay;
    deliver_agent_fn each;
    deliver_agent_batch_fn batch;
};

static int undecided(const struct deliver_request *req)
{
    for (size_t i = 0; i < req->nrcpt; i++)
        if (req->rcpt[i].status.dsn[0] == 0)
            return 1;
    return 0;
}

/* The whole request at once, then every recipient logged. */
static void deliver_batch(struct deliver_request *req, const struct deliver_message *m,
                          const struct agent *a)
{
    if (undecided(req))
        a->batch(m, req);
    /* An agent that left one undecided must not make it look sent. */
    deliver_request_set_pending(req, "4.3.0", "delivery agent left the recipient undecided");
    for (size_t i = 0; i < req->nrcpt; i++)
        deliver_request_log(req, &req->rcpt[i], a->relay);
}

/* Each recipient in order: delivered when still undecided (the queue file
 * check may have decided it), then logged unless the agent did. */
static void deliver_each(struct deliver_request *req, const struct deliver_message *m,
                         const struct agent *a)
{
    if (a->batch != NULL) {
        deliver_batch(req, m, a);
        return;
    }
    for (size_t i = 0; i < req->nrcpt; i++) {
        struct deliver_rcpt *r = &req->rcpt[i];
        int logged = 0;
        if (r->status.dsn[0] == 0)
            logged = a->each(m, r);
        if (!logged)
            deliver_request_log(req, r, a->relay);
    }
}

/* Open the queue file and deliver every recipient. Returns -1 (statuses
 * set, nothing logged) when the file is unusable. */
static int deliver_from_queue_file(struct deliver_request *req, const struct agent *a)
{
    struct queue_envelope env;
    struct stream *queue;
    int fd;

    if ((fd = deliver_request_open(req, &env)) < 0)
        return -1;
    if ((queue = stream_open(fd, 0)) == NULL)
        msg_fatal("out of memory for a queue file stream");
    struct deliver_message m = {
        .queue_id = req->queue_id,
        .sender = req->sender,
        .queue = queue,
        .content_offset = env.content_offset,
        .times = &req->times,
        .req = req,
        .env = &env,
    };
    deliver_each(req, &m, a);
    deliver_request_mark_sent(req);   /* while the file is held */
    stream_close(queue);
    queue_envelope_free(&env);
    return 0;
}

/* Every recipient of a request ends with a status, logged. */
static void handle(struct deliver_request *req, const struct agent *a)
{
    if (req->bad == NULL && deliver_from_queue_file(req, a) == 0)
        return;
    deliver_request_set_pending(req, "4.3.0", "bad request");
    for (size_t i = 0; i < req->nrcpt; i++)
        deliver_request_log(req, &req->rcpt[i], a->relay);
}

static void serve(int fd, const struct agent *a)
{
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);

    if (s == NULL) {
        msg_warn("out of memory for a connection stream");
        close(fd);
        return;
    }
    if (ipc_greet(s, DELIVER_PROTOCOL) < 0) {
        msg_warn("cannot send greeting: %s", strerror(errno));
        stream_abandon(s);
        return;
    }
    for (;;) {
        struct deliver_request req;
        if (deliver_request_read(s, &req) < 0) {
            deliver_request_free(&req);
            break;   /* EOF, timeout or garbage: the client is gone */
        }
        handle(&req, a);
        int ok = deliver_request_reply(s, &req) == 0;
        deliver_request_free(&req);
        if (!ok) {
            msg_warn("cannot send reply to delivery request: %s", strerror(errno));
            break;
        }
        if (service_master_gone())
            break;
    }
    stream_abandon(s);
}

void deliver_agent_serve(int fd, const char *relay, deliver_agent_fn deliver)
{
    struct agent a = {.relay = relay, .each = deliver};
    serve(fd, &a);
}

void deliver_agent_serve_batch(int fd, const char *relay, deliver_agent_batch_fn deliver)
{
    struct agent a = {.relay = relay, .batch = deliver};
    serve(fd, &a);
}
