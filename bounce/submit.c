/* submit.c - bounce's client of the cleanup service: a report is queued
 * like any other message (cleanup_protocol, ipc.h), with ATTR_ORIGIN
 * "bounce", so cleanup stays the only writer of queue files.
 *
 * Blocking I/O on a lib/stream.h stream with the ipc_timeout; content is
 * gathered into REC_CHUNK_SIZE records rather than one record per line.
 */
#include "bounce.h"

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct submission {
    struct stream *cleanup;
    char queue_id[QUEUE_ID_SIZE];
    int error;                /* a write failed; the message is void */
    size_t len;               /* bytes waiting in chunk */
    char chunk[REC_CHUNK_SIZE];
};

/* The queue id answer, or status and reason when cleanup refuses. */
static int read_queue_id(struct submission *sub)
{
    struct attr_list a;
    if (attr_list_read(sub->cleanup, &a) < 0) {
        msg_warn("cleanup: no queue id: %s",
                 stream_timed_out(sub->cleanup) ? "timeout" : "connection closed");
        return -1;
    }
    const char *id = attr_get(&a, "queue_id");
    int rc = id && queue_id_valid(id) ? 0 : -1;
    if (rc == 0)
        snprintf(sub->queue_id, sizeof(sub->queue_id), "%s", id);
    else
        msg_warn("cleanup refused a report: %s",
                 attr_get(&a, "reason") ? attr_get(&a, "reason") : "no queue id");
    attr_list_free(&a);
    return rc;
}

static int write_envelope(struct submission *sub, const char *sender, const char *rcpt)
{
    struct stream *s = sub->cleanup;
    if (rec_put_str(s, REC_SENDER, sender) < 0 ||
        rec_putf(s, REC_ATTR, "%s=%s", ATTR_ORIGIN, "bounce") < 0 ||
        rec_put_str(s, REC_RCPT, rcpt) < 0 || rec_put(s, REC_CONTENT_START, "", 0) < 0)
        return -1;
    return 0;
}

struct submission *submission_open(const char *sender, const char *rcpt, char *queue_id,
                                   size_t id_len)
{
    int fd = ipc_connect(IPC_PRIVATE, "cleanup");
    if (fd < 0) {
        msg_warn("connect to %s/cleanup: %s", IPC_PRIVATE, strerror(errno));
        return NULL;
    }
    struct submission *sub = calloc(1, sizeof(*sub));
    if (sub)
        sub->cleanup = stream_open(fd, (int)config_time("ipc_timeout"));
    if (!sub || !sub->cleanup) {
        msg_warn("submission: out of memory");
        close(fd);
        free(sub);
        return NULL;
    }
    if (ipc_expect_greeting(sub->cleanup, "cleanup_protocol") < 0 ||
        attr_send(sub->cleanup, "flags", "0", (const char *)NULL) < 0 ||
        read_queue_id(sub) < 0 || write_envelope(sub, sender, rcpt) < 0) {
        submission_abort(sub);
        return NULL;
    }
    snprintf(queue_id, id_len, "%s", sub->queue_id);
    return sub;
}

static void flush_chunk(struct submission *sub)
{
    if (sub->len > 0 && !sub->error &&
        rec_put(sub->cleanup, REC_CONTENT, sub->chunk, sub->len) < 0)
        sub->error = errno ? errno : EIO;
    sub->len = 0;
}

void submission_write(struct submission *sub, const char *data, size_t len)
{
    while (len > 0 && !sub->error) {
        size_t room = sizeof(sub->chunk) - sub->len;
        size_t n = len < room ? len : room;
        memcpy(sub->chunk + sub->len, data, n);
        sub->len += n;
        data += n;
        len -= n;
        if (sub->len == sizeof(sub->chunk))
            flush_chunk(sub);
    }
}

void submission_puts(struct submission *sub, const char *text)
{
    submission_write(sub, text, strlen(text));
}

void submission_printf(struct submission *sub, const char *fmt, ...)
{
    char small[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        sub->error = EINVAL;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        submission_write(sub, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        sub->error = ENOMEM;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    submission_write(sub, big, (size_t)n);
    free(big);
}

int submission_finish(struct submission *sub, char *why, size_t why_len)
{
    flush_chunk(sub);
    int rc = -1;
    struct attr_list a = {0};
    if (sub->error) {
        snprintf(why, why_len, "write to cleanup: %s", strerror(sub->error));
    } else if (rec_put(sub->cleanup, REC_END, "", 0) < 0 || stream_flush(sub->cleanup) < 0) {
        snprintf(why, why_len, "write to cleanup: %s", strerror(errno));
    } else if (attr_list_read(sub->cleanup, &a) < 0) {
        snprintf(why, why_len, "no status from cleanup: %s",
                 stream_timed_out(sub->cleanup) ? "timeout" : "connection closed");
    } else {
        const char *status = attr_get(&a, "status"), *reason = attr_get(&a, "reason");
        rc = status && strcmp(status, "0") == 0 ? 0 : -1;
        if (rc < 0)
            snprintf(why, why_len, "cleanup: %s", reason && *reason ? reason : "failed");
        attr_list_free(&a);
    }
    stream_close(sub->cleanup);
    free(sub);
    return rc;
}

void submission_abort(struct submission *sub)
{
    stream_abandon(sub->cleanup);
    free(sub);
}
