/* maildir.c - Maildir delivery for the virtual agent (virtual.h).
 *
 * lib/maildir.c puts the file into the Maildir (nothing in new/ until it
 * is complete, new/ fsynced before success); this adds the content and the
 * virtual agent's status wording. Directories missing on the way are
 * created with the rights we run as, which deliver.c made the mailbox
 * owner's.
 */
#include "virtual.h"

#include "config.h"
#include "maildir.h"

#include <errno.h>

static void maildir_failed(struct vstatus *st, enum maildir_step step, int err)
{
    static const char *const what[] = {
        [MAILDIR_STEP_PARENTS] = "create maildir",
        [MAILDIR_STEP_DIRS] = "create maildir",
        [MAILDIR_STEP_CREATE] = "create file in maildir tmp/",
        [MAILDIR_STEP_FSYNC] = "fsync maildir file",
        [MAILDIR_STEP_NAME] = "rename into maildir new/",
        [MAILDIR_STEP_FSYNC_NEW] = "fsync maildir new/",
    };
    if (step == MAILDIR_STEP_PATH)
        vstatus_set(st, "4.3.0", "maildir path too long");
    else
        vstatus_io_error(st, what[step], err);
}

/* Copy the message into f->fd; st is set on failure. */
static int fill(struct maildir_file *f, const struct vmessage *m, const struct vtrace *t,
                struct vstatus *st)
{
    long long limit = var.virtual_mailbox_limit;
    int r = copy_message(f->fd, m, t, 0, limit);
    if (r == COPY_EREAD)
        vstatus_set(st, "4.3.0", "error reading queue file");
    else if (r == COPY_ETOOBIG)
        vstatus_set(st, "5.2.2", "cannot deliver to maildir: message is larger than "
                    "virtual_mailbox_limit (%lld bytes)", limit);
    else if (r < 0)
        vstatus_io_error(st, "write to maildir", errno);
    return r < 0 ? -1 : 0;
}

void maildir_deliver(const char *dir, const struct vmessage *m, const struct vtrace *t,
                     struct vstatus *st)
{
    struct maildir_file f;
    enum maildir_step step;
    if (maildir_file_create(&f, dir, &step) < 0) {
        maildir_failed(st, step, errno);
        return;
    }
    if (fill(&f, m, t, st) < 0) {
        maildir_file_discard(&f);
        return;
    }
    if (maildir_file_publish(&f, &step) < 0) {
        maildir_failed(st, step, errno);
        return;
    }
    vstatus_set(st, "2.0.0", "delivered to maildir");
}
