/* forward.c - mail for an address that is not local, found in an alias or
 * a .forward file, is re-submitted as a new message through cleanup
 * (lib/cleanup_client.h), so that cleanup stays the only writer of
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

#include "cleanup_client.h"
#include "delivery.h"
#include "queue_id.h"
#include "record.h"

/* mail_copy_sink: content goes to cleanup in chunks. */
static int put_content(void *ctx, const char *buf, size_t len)
{
    return cleanup_client_write(ctx, buf, len);
}

/* cleanup's verdict on the finished message, as this recipient's status. */
static void set_verdict(int status, const char *why, const char *queue_id,
                        struct delivery_status *st)
{
    char dsn[16];
    if (status == 0)
        delivery_status_set(st, "2.0.0", "forwarded as %s", queue_id);
    else if (status == 5 && sscanf(why, "%15s", dsn) == 1 && delivery_dsn_valid(dsn))
        delivery_status_set(st, dsn, "cannot forward: %s",
                            why + strlen(dsn) + (why[strlen(dsn)] == ' '));
    else
        delivery_status_set(st, "4.3.0", "cannot forward: %s", why);
}

void forward_deliver(const char *address, const struct deliver_message *m,
                     const struct mail_copy_trace *t, struct delivery_status *st)
{
    char queue_id[QUEUE_ID_SIZE], why[512];
    struct cleanup_client *c = cleanup_client_open(why, sizeof(why));
    if (!c) {
        delivery_status_set(st, "4.3.0", "cannot forward: %s", why);
        return;
    }
    snprintf(queue_id, sizeof(queue_id), "%s", cleanup_client_queue_id(c));
    if (cleanup_client_record(c, REC_SENDER, t->sender, strlen(t->sender)) < 0
        || (t->orig_rcpt != NULL
            && cleanup_client_record(c, REC_ORCPT, t->orig_rcpt, strlen(t->orig_rcpt)) < 0)
        || cleanup_client_record(c, REC_RCPT, address, strlen(address)) < 0
        || cleanup_client_record(c, REC_CONTENT_START, "", 0) < 0) {
        delivery_status_set(st, "4.3.0", "cannot forward: write to cleanup: %s", strerror(errno));
        cleanup_client_abort(c);
        return;
    }
    int r = mail_copy(m, t, MAIL_COPY_DELIVERED_TO, 0, put_content, c);
    if (r == MAIL_COPY_EREAD) {
        delivery_status_set(st, "4.3.0", "error reading queue file");
        cleanup_client_abort(c);   /* cleanup discards an unfinished message */
        return;
    }
    if (r < 0) {
        delivery_status_set(st, "4.3.0", "cannot forward: write to cleanup: %s", strerror(errno));
        cleanup_client_abort(c);
        return;
    }
    int status = cleanup_client_finish(c, why, sizeof(why));
    set_verdict(status, why, queue_id, st);
}
