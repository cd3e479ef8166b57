/* maildir.c - Maildir delivery for the local agent.
 *
 * lib/maildir.c puts the file into the Maildir (nothing in new/ until it
 * is complete, new/ fsynced before success); this adds the content (the
 * trace headers, then the queue file's content records byte for byte,
 * message.c) and the local agent's status wording. The Maildir and any
 * missing parent directories are created with the rights we run as, which
 * in system mode are already the recipient's (resolve.c).
 */
#include "local.h"

#include <errno.h>

#include "log.h"
#include "maildir.h"

static void maildir_failed(struct local_status *st, enum maildir_step step, int err)
{
    static const char *const what[] = {
        [MAILDIR_STEP_PARENTS] = "create parent directory",
        [MAILDIR_STEP_DIRS] = "create maildir",
        [MAILDIR_STEP_CREATE] = "create file in tmp/",
        [MAILDIR_STEP_FSYNC] = "fsync",
        [MAILDIR_STEP_NAME] = "rename into new/",
        [MAILDIR_STEP_FSYNC_NEW] = "fsync new/",
    };
    if (step == MAILDIR_STEP_PATH)
        local_status_set(st, "4.3.0", "maildir path too long");
    else
        local_status_io_error(st, what[step], err);
}

/* Copy the message into f->fd; st is set on failure. */
static int fill(struct maildir_file *f, const struct local_message *m,
                const struct local_trace *t, long long limit, struct local_status *st)
{
    int r = local_copy_message(m, t, 0, limit, local_write_fd, &f->fd);

    if (r == LOCAL_COPY_EREAD) {
        msg_warn("%s: error reading queue file content", m->queue_id);
        local_status_set(st, "4.3.0", "error reading queue file");
    } else if (r == LOCAL_COPY_ETOOBIG) {
        local_status_set(st, "5.2.2", "cannot deliver to maildir: message is larger than "
                         "mailbox_size_limit (%lld bytes)", limit);
    } else if (r < 0) {
        local_status_io_error(st, "write", errno);
    }
    return r < 0 ? -1 : 0;
}

void maildir_deliver(const char *dir, const struct local_message *m,
                     const struct local_trace *t, long long limit, struct local_status *st)
{
    struct maildir_file f;
    enum maildir_step step;

    if (maildir_file_create(&f, dir, &step) < 0) {
        maildir_failed(st, step, errno);
        return;
    }
    if (fill(&f, m, t, limit, st) < 0) {
        maildir_file_discard(&f);
        return;
    }
    if (maildir_file_publish(&f, &step) < 0) {
        maildir_failed(st, step, errno);
        return;
    }
    local_status_set(st, "2.0.0", "delivered to maildir");
}
