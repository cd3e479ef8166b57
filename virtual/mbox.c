/* mbox.c - mbox delivery for the virtual agent (virtual.h).
 *
 * The file is opened (created 0600 if missing, with any directory missing
 * on the way) with the mailbox owner's rights, refused unless it is a
 * plain file with one link. Locking (virtual_mailbox_lock, by default
 * fcntl and a dot-lock PATH.lock, which needs a writable directory) and
 * the all-or-nothing append (virtual_mailbox_limit) are lib/mail/mbox.h.
 */
#include "virtual.h"

#include "config.h"
#include "maildir.h"
#include "mbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define MBOX_MODE 0600

/* The mailbox, created if missing: a plain file with one link, or -1 with
 * st set. */
static int open_mailbox(const char *path, struct delivery_status *st)
{
    struct stat sb;
    int fd;

    if (maildir_make_parents(path) < 0) {
        delivery_status_errno(st, errno, "create mailbox directory");
        return -1;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, MBOX_MODE);
    if (fd < 0) {
        delivery_status_errno(st, errno, "open mailbox");
        return -1;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        delivery_status_set(st, "4.3.0", "mailbox %s is not a regular file with one link", path);
        close(fd);
        return -1;
    }
    return fd;
}

void mbox_deliver(const char *path, const struct deliver_message *m,
                  const struct mail_copy_trace *t, struct delivery_status *st)
{
    char target[PATH_MAX + 32];
    struct mbox_target d = {
        .path = path, .target = target, .what = "delivered to mailbox",
        .lock_param = PARAM_virtual_mailbox_lock,
        .dotlock_may_fail = 0,   /* the owner's own directory holds PATH.lock */
        .limit = var.virtual_mailbox_limit, .limit_param = PARAM_virtual_mailbox_limit,
    };
    int fd;

    snprintf(target, sizeof(target), "cannot deliver to mailbox %s", path);
    if ((fd = open_mailbox(path, st)) < 0)
        return;
    mbox_deliver_fd(fd, &d, m, t, st);
    close(fd);
}
