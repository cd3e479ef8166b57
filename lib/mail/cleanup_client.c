/* cleanup_client.c - blocking cleanup_protocol client (cleanup_client.h). */
#include "cleanup_client.h"

#include "config.h"
#include "ipc.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cleanup_client {
    struct stream *s;
    char queue_id[QUEUE_ID_SIZE];
    int error;                /* errno of the first failed write */
    size_t len;               /* content bytes waiting in chunk */
    char chunk[REC_CHUNK_SIZE];
};

static const char *closed_why(const struct stream *s)
{
    return stream_timed_out(s) ? "timeout" : "connection closed";
}

/* The queue id answer, or cleanup's reason for refusing. */
static int read_queue_id(struct cleanup_client *c, char *why, size_t whylen)
{
    struct attr_list a;
    if (attr_list_read(c->s, &a) < 0) {
        snprintf(why, whylen, "no queue id from cleanup: %s", closed_why(c->s));
        return -1;
    }
    const char *id = attr_get(&a, "queue_id"), *reason = attr_get(&a, "reason");
    int rc = id && queue_id_valid(id) ? 0 : -1;
    if (rc == 0)
        snprintf(c->queue_id, sizeof(c->queue_id), "%s", id);
    else
        snprintf(why, whylen, "cleanup: %s", reason && *reason ? reason : "no queue id");
    attr_list_free(&a);
    return rc;
}

struct cleanup_client *cleanup_client_open(char *why, size_t whylen)
{
    return cleanup_client_open_flags(0, why, whylen);
}

struct cleanup_client *cleanup_client_open_flags(unsigned flags, char *why, size_t whylen)
{
    char text[16];
    snprintf(text, sizeof(text), "%u", flags);
    int fd = ipc_connect(IPC_PRIVATE, "cleanup");
    if (fd < 0) {
        snprintf(why, whylen, "connect to %s/cleanup: %s", IPC_PRIVATE, strerror(errno));
        return NULL;
    }
    struct cleanup_client *c = calloc(1, sizeof(*c));
    if (c)
        c->s = stream_open(fd, (int)var.ipc_timeout);
    if (!c || !c->s) {
        snprintf(why, whylen, "out of memory");
        close(fd);
        free(c);
        return NULL;
    }
    if (ipc_expect_greeting(c->s, "cleanup_protocol") < 0 ||
        attr_send(c->s, "flags", text, (const char *)NULL) < 0) {
        snprintf(why, whylen, "cleanup did not answer: %s", closed_why(c->s));
        cleanup_client_abort(c);
        return NULL;
    }
    if (read_queue_id(c, why, whylen) < 0) {
        cleanup_client_abort(c);
        return NULL;
    }
    return c;
}

const char *cleanup_client_queue_id(const struct cleanup_client *c)
{
    return c->queue_id;
}

static int note_error(struct cleanup_client *c)
{
    if (!c->error)
        c->error = errno ? errno : EIO;
    return -1;
}

static int flush_chunk(struct cleanup_client *c)
{
    if (c->len == 0 || c->error)
        return c->error ? -1 : 0;
    int rc = rec_put(c->s, REC_CONTENT, c->chunk, c->len);
    c->len = 0;
    return rc < 0 ? note_error(c) : 0;
}

int cleanup_client_record(struct cleanup_client *c, int type, const void *data, size_t len)
{
    if (flush_chunk(c) < 0)
        return -1;
    return rec_put(c->s, type, data, len) < 0 ? note_error(c) : 0;
}

int cleanup_client_attr(struct cleanup_client *c, const char *name, const char *value)
{
    if (flush_chunk(c) < 0)
        return -1;
    return attr_put(c->s, name, value) < 0 ? note_error(c) : 0;
}

static int flush_full_chunk(void *ctx)
{
    return flush_chunk(ctx);
}

int cleanup_client_write(struct cleanup_client *c, const void *data, size_t len)
{
    if (c->error)
        return -1;
    return stream_copy(c->chunk, sizeof(c->chunk), &c->len, data, len, flush_full_chunk, c);
}

int cleanup_client_finish(struct cleanup_client *c, char *why, size_t whylen)
{
    int rc = 4;
    struct attr_list a = {0};
    if (flush_chunk(c) < 0 || rec_put(c->s, REC_END, "", 0) < 0 || stream_flush(c->s) < 0) {
        snprintf(why, whylen, "write to cleanup: %s", strerror(c->error ? c->error : errno));
    } else if (attr_list_read(c->s, &a) < 0) {
        snprintf(why, whylen, "no status from cleanup: %s", closed_why(c->s));
    } else {
        const char *status = attr_get(&a, "status"), *reason = attr_get(&a, "reason");
        rc = !status ? 4 : strcmp(status, "0") == 0 ? 0 : status[0] == '5' ? 5 : 4;
        snprintf(why, whylen, "%s", rc == 0 ? "" : reason && *reason ? reason : "cleanup failed");
        attr_list_free(&a);
    }
    stream_close(c->s);
    free(c);
    return rc;
}

void cleanup_client_abort(struct cleanup_client *c)
{
    stream_abandon(c->s);
    free(c);
}
