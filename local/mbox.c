/* mbox.c - UNIX mbox delivery: the mail spool file, a home_mailbox file, or
 * a /file destination from an alias or .forward.
 *
 * Locking follows mailbox_delivery_lock, by default all of fcntl, flock and
 * a dot-lock (PATH.lock, created O_EXCL), so that mutt, mailx, procmail
 * and Python's mailbox module, whichever lock they take, never see a
 * half-written message. Locks are only ever tried, never waited on
 * blindly: we retry deliver_lock_attempts times deliver_lock_delay apart,
 * then defer. A dot-lock older than stale_lock_time is removed.
 *
 * The append is all or nothing: the old size is noted under the lock, and
 * on any error (including mailbox_size_limit) the file is truncated back
 * to it. Success is reported only after fsync.
 *
 * The spool directory is usually writable only by root (or group mail), so
 * a spool mailbox is opened and dot-locked as root, with O_NOFOLLOW and a
 * check that the file is a plain file owned by the user with one link;
 * a new one is created for the user with mode 0600. Everything else is
 * opened with the user's rights (privs.c).
 */
#include "local.h"
#include "strlist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define LOCK_FCNTL 1
#define LOCK_FLOCK 2
#define LOCK_DOTLOCK 4
#define MBOX_MODE 0600

/* The dot-lock we hold, for mbox_cleanup after a fatal error. */
static char current_lock[PATH_MAX];

void mbox_cleanup(void)
{
    if (current_lock[0] != 0) {
        unlink(current_lock);
        current_lock[0] = 0;
    }
}

static int lock_methods(void)
{
    const char *value = var.mailbox_delivery_lock;
    char buf[256], *items[8];
    size_t n, i;
    int methods = 0;

    if (value == NULL || strlen(value) >= sizeof(buf))
        return LOCK_FCNTL | LOCK_FLOCK | LOCK_DOTLOCK;
    n = strlist_split(value, buf, items, 8);
    for (i = 0; i < n; i++) {
        if (strcmp(items[i], "fcntl") == 0)
            methods |= LOCK_FCNTL;
        else if (strcmp(items[i], "flock") == 0)
            methods |= LOCK_FLOCK;
        else if (strcmp(items[i], "dotlock") == 0)
            methods |= LOCK_DOTLOCK;
        else
            msg_warn("mailbox_delivery_lock: unknown method \"%s\" ignored", items[i]);
    }
    return methods;
}

/* 0 taken, 1 busy, -1 error (errno). */
static int dotlock_try(const char *path)
{
    char lock[PATH_MAX];
    struct stat st;
    int fd, tries;

    if (snprintf(lock, sizeof(lock), "%s.lock", path) >= (int)sizeof(lock)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (tries = 0; tries < 2; tries++) {
        fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            snprintf(current_lock, sizeof(current_lock), "%s", lock);
            return 0;
        }
        /* A directory the user may not write (a /file destination in
         * /var/log, say) cannot hold a dot-lock; the kernel locks still
         * exclude other writers. */
        if (errno == EACCES || errno == EROFS || errno == EPERM)
            return 0;
        if (errno != EEXIST)
            return -1;
        /* A lock left behind by a crashed writer would block us forever. */
        if (lstat(lock, &st) < 0 || time(NULL) - st.st_mtime < var.stale_lock_time)
            return 1;
        msg_warn("removing stale lock file %s", lock);
        if (unlink(lock) < 0 && errno != ENOENT)
            return -1;
    }
    return 1;
}

static void unlock_all(int fd, int held)
{
    if (held & LOCK_FLOCK)
        flock(fd, LOCK_UN);
    if (held & LOCK_FCNTL) {
        struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
        fcntl(fd, F_SETLK, &fl);
    }
    if (held & LOCK_DOTLOCK)
        mbox_cleanup();
}

static int busy(int err)
{
    return err == EAGAIN || err == EACCES || err == EWOULDBLOCK;
}

/* Take every lock in methods or none. 0 taken, 1 busy, -1 error. */
static int lock_try(int fd, const char *path, int methods)
{
    int held = 0, r;

    if (methods & LOCK_DOTLOCK) {
        if ((r = dotlock_try(path)) != 0)
            return r;
        held |= LOCK_DOTLOCK;
    }
    if (methods & LOCK_FCNTL) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) < 0) {
            int saved = errno;
            unlock_all(fd, held);
            errno = saved;
            return busy(saved) ? 1 : -1;
        }
        held |= LOCK_FCNTL;
    }
    if ((methods & LOCK_FLOCK) && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int saved = errno;
        unlock_all(fd, held);
        errno = saved;
        return busy(saved) ? 1 : -1;
    }
    return 0;
}

/* Lock with retries. 0, or -1 with st set. */
static int lock_mailbox(int fd, const char *path, int methods, const char *target,
                        struct local_status *st)
{
    long attempts = var.deliver_lock_attempts;
    long delay = var.deliver_lock_delay;
    long i;
    int r;

    if (attempts < 1)
        attempts = 1;
    for (i = 0;; i++) {
        if ((r = lock_try(fd, path, methods)) == 0)
            return 0;
        if (r < 0) {
            local_status_target_error(st, target, "lock", errno);
            return -1;
        }
        if (i + 1 >= attempts)
            break;
        sleep((unsigned)(delay > 0 ? delay : 1));
    }
    local_status_set(st, "4.2.0", "%s: unable to lock for exclusive access: %s", target,
                     strerror(EAGAIN));
    return -1;
}

/* Open the spool mailbox as root: never through a symlink, never a file
 * that is not the user's alone; a missing one is created for the user. */
static int open_spool_mailbox(const char *path, const struct local_user *u, int *created,
                              const char *target, struct local_status *st)
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
                local_status_target_error(st, target, "chown", errno);
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
        local_status_target_error(st, target, "open", errno);
        return -1;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1 || sb.st_uid != u->uid) {
        msg_warn("mailbox %s is not a regular file owned by %s with one link", path, u->name);
        local_status_set(st, "4.2.0", "%s: mailbox is not a regular file owned by the user",
                         target);
        close(fd);
        return -1;
    }
    return fd;
}

/* Open path with the rights we run as now (the user's). */
static int open_user_file(const char *path, int *created, const char *target,
                          struct local_status *st)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);

    *created = 0;
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, MBOX_MODE);
        *created = fd >= 0;
    }
    if (fd < 0) {
        local_status_target_error(st, target, "open", errno);
        return -1;
    }
    return fd;
}

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd, rc;

    if (slash == NULL)
        return 0;
    snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Append under the lock; on failure cut the file back. */
static void append_locked(int fd, const struct local_message *m, const struct local_trace *t,
                          const char *target, const char *what, struct local_status *st)
{
    long long limit = var.mailbox_size_limit, room = 0;
    struct stat sb;
    off_t old;
    int r;

    if (fstat(fd, &sb) < 0) {
        local_status_target_error(st, target, "fstat", errno);
        return;
    }
    old = sb.st_size;
    if (limit > 0 && (room = limit - (long long)old) <= 0) {
        local_status_set(st, "5.2.2", "%s: mailbox is full (mailbox_size_limit %lld bytes)",
                         target, limit);
        return;
    }
    r = local_copy_message(m, t, LOCAL_COPY_FROM_LINE | LOCAL_COPY_QUOTE_FROM
                           | LOCAL_COPY_BLANK_END, room, local_write_fd, &fd);
    if (r == 0 && fsync(fd) < 0)
        r = LOCAL_COPY_EWRITE;
    if (r == 0) {
        local_status_set(st, "2.0.0", "%s", what);
        return;
    }
    int saved = errno;
    if (ftruncate(fd, old) < 0 || fsync(fd) < 0)
        msg_warn("%s: cannot truncate back to %lld bytes: %s", target, (long long)old,
                 strerror(errno));
    if (r == LOCAL_COPY_ETOOBIG)
        local_status_set(st, "5.2.2", "%s: message would exceed mailbox_size_limit "
                         "(%lld bytes)", target, limit);
    else if (r == LOCAL_COPY_EREAD)
        local_status_set(st, "4.3.0", "error reading queue file");
    else
        local_status_target_error(st, target, "write", saved);
}

/* Anything but a regular file (/dev/null, a tty) is written as it is:
 * there is nothing to lock or to truncate. */
static void write_special(int fd, const struct local_message *m, const struct local_trace *t,
                          const char *target, const char *what, struct local_status *st)
{
    int flags = fcntl(fd, F_GETFL);
    int r;

    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    r = local_copy_message(m, t, LOCAL_COPY_FROM_LINE | LOCAL_COPY_QUOTE_FROM
                           | LOCAL_COPY_BLANK_END, 0, local_write_fd, &fd);
    if (r == 0)
        local_status_set(st, "2.0.0", "%s", what);
    else if (r == LOCAL_COPY_EREAD)
        local_status_set(st, "4.3.0", "error reading queue file");
    else
        local_status_target_error(st, target, "write", errno);
}

static void deliver_open(int fd, const char *path, int created, int methods,
                         const struct local_message *m, const struct local_trace *t,
                         const char *target, const char *what, struct local_status *st)
{
    struct stat sb;

    if (fstat(fd, &sb) < 0) {
        local_status_target_error(st, target, "fstat", errno);
        return;
    }
    if (!S_ISREG(sb.st_mode)) {
        write_special(fd, m, t, target, what, st);
        return;
    }
    if (created && fsync_parent(path) < 0) {
        local_status_target_error(st, target, "fsync directory", errno);
        return;
    }
    if (lock_mailbox(fd, path, methods, target, st) < 0)
        return;
    append_locked(fd, m, t, target, what, st);
    unlock_all(fd, methods);
}

void mbox_deliver(const char *path, const struct local_user *u, int as_root,
                  const struct local_message *m, const struct local_trace *t,
                  const char *what, struct local_status *st)
{
    char target[PATH_MAX + 64];
    int methods = lock_methods();
    int fd, created;

    snprintf(target, sizeof(target), "cannot update mailbox %s for user %s", path, u->name);
    if (!as_root)
        privs_enter(u);
    fd = as_root ? open_spool_mailbox(path, u, &created, target, st)
                 : open_user_file(path, &created, target, st);
    if (fd >= 0) {
        deliver_open(fd, path, created, methods, m, t, target, what, st);
        close(fd);
    }
    if (!as_root)
        privs_leave();
}
