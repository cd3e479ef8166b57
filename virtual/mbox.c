/* mbox.c - mbox delivery for the virtual agent (virtual.h).
 *
 * The file is opened (created 0600 if missing, with any directory missing
 * on the way) with the mailbox owner's rights, refused unless it is a
 * plain file with one link. A new file's directory entry is fsynced before
 * anything is written, so the reply "delivered" never outlives the name. Locking (virtual_mailbox_lock, by default
 * fcntl and a dot-lock PATH.lock, which needs a writable directory) and
 * the all-or-nothing append (virtual_mailbox_limit) are lib/mail/mbox.h.
 */
#include "virtual.h"

#include "config.h"
#include "fsync_dir.h"
#include "maildir.h"
#include "mbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define MBOX_MODE 0600

/* Open path for appending, creating it (mode 0600) when missing; *created
 * says which. O_EXCL tells the two apart even when another delivery
 * creates the file at the same time. */
static int open_or_create(const char *path, int *created)
{
    for (int tries = 0; tries < 2; tries++) {
        int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
        *created = 0;
        if (fd >= 0 || errno != ENOENT)
            return fd;
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  MBOX_MODE);
        *created = fd >= 0;
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* The mailbox, created if missing: a plain file with one link, or -1 with
 * st set. */
static int open_mailbox(const char *path, struct delivery_status *st)
{
    struct stat sb;
    int fd, created;

    if (maildir_make_parents(path) < 0) {
        delivery_status_errno(st, errno, "create mailbox directory");
        return -1;
    }
    if ((fd = open_or_create(path, &created)) < 0) {
        delivery_status_errno(st, errno, "open mailbox");
        return -1;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        delivery_status_set(st, "4.3.0", "mailbox %s is not a regular file with one link", path);
        close(fd);
        return -1;
    }
    if (created && fsync_parent(path) < 0) {
        delivery_status_errno(st, errno, "fsync mailbox directory");
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
