/* forward.c - mail for an address that is not local, found in an alias or
 * a .forward file, is re-submitted as a new message through cleanup
 * (cleanup_protocol, ipc.h), so that cleanup stays the only writer of
 * queue files and the new recipient gets its own queue entry and status.
 *
 * The copy gets "Delivered-To: RECIPIENT" on top, as Postfix's does, so
 * that mail coming back to us through the outside world is recognised as
 * a loop (resolve.c).
 */
#include "local.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

/* local_write_fn: each piece of content is one content record. */
static int put_content(void *ctx, const char *buf, size_t len)
{
    while (len > 0) {
        size_t n = len < REC_CHUNK_SIZE ? len : REC_CHUNK_SIZE;
        if (rec_put(ctx, REC_CONTENT, buf, n) < 0)
            return -1;
        buf += n;
        len -= n;
    }
    return 0;
}

/* The greeting, our flags and cleanup's queue id. -1 with st set. */
static int open_submission(struct stream *s, char *queue_id, size_t len,
                           struct local_status *st)
{
    struct attr_list a = {0};
    const char *id;

    if (ipc_expect_greeting(s, "cleanup_protocol") < 0
        || attr_send(s, "flags", "0", (const char *)NULL) < 0 || attr_list_read(s, &a) < 0) {
        local_status_set(st, "4.3.0", "cannot forward: no answer from cleanup");
        return -1;
    }
    if ((id = attr_get(&a, "queue_id")) == NULL || !queue_id_valid(id)) {
        const char *reason = attr_get(&a, "reason");
        local_status_set(st, "4.3.0", "cannot forward: %s", reason ? reason : "no queue id");
        attr_list_free(&a);
        return -1;
    }
    snprintf(queue_id, len, "%s", id);
    attr_list_free(&a);
    return 0;
}

/* cleanup's verdict on the finished message. */
static void read_verdict(struct stream *s, const char *queue_id, struct local_status *st)
{
    struct attr_list a = {0};
    const char *status, *reason;
    char dsn[16];

    if (attr_list_read(s, &a) < 0) {
        local_status_set(st, "4.3.0", "cannot forward: no status from cleanup");
        return;
    }
    status = attr_get(&a, "status");
    reason = attr_get(&a, "reason");
    if (status != NULL && strcmp(status, "0") == 0) {
        local_status_set(st, "2.0.0", "forwarded as %s", queue_id);
    } else if (reason != NULL && sscanf(reason, "%15s", dsn) == 1 && delivery_dsn_valid(dsn)) {
        local_status_set(st, dsn, "cannot forward: %s", reason + strlen(dsn)
                         + (reason[strlen(dsn)] == ' '));
    } else {
        local_status_set(st, "4.3.0", "cannot forward: %s", reason ? reason : "cleanup failed");
    }
    attr_list_free(&a);
}

void forward_deliver(const char *address, const struct local_message *m,
                     const struct local_trace *t, struct local_status *st)
{
    char queue_id[QUEUE_ID_SIZE];
    struct stream *s;
    int fd, r;

    if ((fd = ipc_connect(IPC_PRIVATE, "cleanup")) < 0) {
        local_status_set(st, "4.3.0", "cannot forward: connect to %s/cleanup: %s", IPC_PRIVATE,
                         strerror(errno));
        return;
    }
    if ((s = stream_open(fd, (int)config_time("ipc_timeout"))) == NULL)
        msg_fatal("out of memory for a cleanup stream");
    if (open_submission(s, queue_id, sizeof(queue_id), st) < 0) {
        stream_abandon(s);
        return;
    }
    if (rec_put_str(s, REC_SENDER, t->sender) < 0
        || (t->orig_rcpt != NULL && rec_put_str(s, REC_ORCPT, t->orig_rcpt) < 0)
        || rec_put_str(s, REC_RCPT, address) < 0 || rec_put(s, REC_CONTENT_START, "", 0) < 0) {
        local_status_set(st, "4.3.0", "cannot forward: write to cleanup: %s", strerror(errno));
        stream_abandon(s);
        return;
    }
    r = local_copy_message(m, t, LOCAL_COPY_DELIVERED_ONLY, 0, put_content, s);
    if (r == LOCAL_COPY_EREAD) {
        local_status_set(st, "4.3.0", "error reading queue file");
        stream_abandon(s);   /* cleanup discards an unfinished message */
        return;
    }
    if (r < 0 || rec_put(s, REC_END, "", 0) < 0 || stream_flush(s) < 0) {
        local_status_set(st, "4.3.0", "cannot forward: write to cleanup: %s", strerror(errno));
        stream_abandon(s);
        return;
    }
    read_verdict(s, queue_id, st);
    stream_close(s);
}
