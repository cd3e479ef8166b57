/* mbox.c - UNIX mbox delivery: the mail spool file, a home_mailbox file, or
 * a /file destination from an alias or .forward: which file, opened how.
 *
 * Locking and the append are lib/mail/mbox.h: mailbox_delivery_lock (by
 * default all of fcntl, flock and a dot-lock), so that mutt, mailx,
 * procmail and Python's mailbox module, whichever lock they take, never see
 * a half-written message; all or nothing, cut back on any error (including
 * mailbox_size_limit), reported only after fsync.
 *
 * The spool directory is usually writable only by root (or group mail), so
 * a spool mailbox is opened and dot-locked as root, with O_NOFOLLOW and a
 * check that the file is a plain file owned by the user with one link;
 * a new one is created for the user with mode 0600. Everything else is
 * opened with the user's rights (privs.c).
 */
#include "local.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fsync_dir.h"
#include "log.h"
#include "mbox.h"

#define MBOX_MODE 0600

/* Open the spool mailbox as root: never through a symlink, never a file
 * that is not the user's alone; a missing one is created for the user. */
static int open_spool_mailbox(const char *path, const struct local_user *u, int *created,
                              const char *target, struct delivery_status *st)
{
    struct stat sb;
    int fd, tries;

    *created = 0;
    for (tries = 0; tries < 2; tries++) {
        fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT)
            break;
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  MBOX_MODE);
        if (fd >= 0) {
            if (fchown(fd, u->uid, u->gid) < 0) {
                delivery_status_errno(st, errno, "%s: chown", target);
                unlink(path);
                close(fd);
                return -1;
            }
            *created = 1;
            break;
        }
        if (errno != EEXIST)
            break;
    }
    if (fd < 0) {
        delivery_status_errno(st, errno, "%s: open", target);
        return -1;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1 || sb.st_uid != u->uid) {
        msg_warn("mailbox %s is not a regular file owned by %s with one link", path, u->name);
        delivery_status_set(st, "4.2.0", "%s: mailbox is not a regular file owned by the user",
                         target);
        close(fd);
        return -1;
    }
    return fd;
}

/* Open path with the rights we run as now (the user's). */
static int open_user_file(const char *path, int *created, const char *target,
                          struct delivery_status *st)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);

    *created = 0;
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, MBOX_MODE);
        *created = fd >= 0;
    }
    if (fd < 0) {
        delivery_status_errno(st, errno, "%s: open", target);
        return -1;
    }
    return fd;
}

/* Anything but a regular file (/dev/null, a tty) is written as it is:
 * there is nothing to lock or to truncate. */
static void write_special(int fd, const struct deliver_message *m,
                          const struct mail_copy_trace *t, const char *target, const char *what,
                          struct delivery_status *st)
{
    int flags = fcntl(fd, F_GETFL);
    int r;

    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    r = mail_copy(m, t, MAIL_COPY_MBOX, 0, mail_copy_write_fd, &fd);
    if (r == 0)
        delivery_status_set(st, "2.0.0", "%s", what);
    else if (r == MAIL_COPY_EREAD)
        delivery_status_set(st, "4.3.0", "error reading queue file");
    else
        delivery_status_errno(st, errno, "%s: write", target);
}

static void deliver_open(int fd, const struct mbox_target *d, int created,
                         const struct deliver_message *m, const struct mail_copy_trace *t,
                         struct delivery_status *st)
{
    const char *path = d->path, *target = d->target;
    struct stat sb;

    if (fstat(fd, &sb) < 0) {
        delivery_status_errno(st, errno, "%s: fstat", target);
        return;
    }
    if (!S_ISREG(sb.st_mode)) {
        write_special(fd, m, t, target, d->what, st);
        return;
    }
    if (created && fsync_parent(path) < 0) {
        delivery_status_errno(st, errno, "%s: fsync directory", target);
        return;
    }
    mbox_deliver_fd(fd, d, m, t, st);
}

void mbox_deliver(const char *path, const struct local_user *u, int as_root,
                  const struct deliver_message *m, const struct mail_copy_trace *t,
                  const char *what, struct delivery_status *st)
{
    char target[PATH_MAX + 64];
    struct mbox_target d = {
        .path = path, .target = target, .what = what,
        .lock_param = PARAM_mailbox_delivery_lock,
        /* A /file in a directory the user may not write cannot have PATH.lock. */
        .dotlock_may_fail = 1,
        .limit = var.mailbox_size_limit, .limit_param = PARAM_mailbox_size_limit,
    };
    int fd, created;

    snprintf(target, sizeof(target), "cannot update mailbox %s for user %s", path, u->name);
    if (!as_root)
        privs_enter(u);
    fd = as_root ? open_spool_mailbox(path, u, &created, target, st)
                 : open_user_file(path, &created, target, st);
    if (fd >= 0) {
        deliver_open(fd, &d, created, m, t, st);
        close(fd);
    }
    if (!as_root)
        privs_leave();
}
