/* mbox.c - mbox delivery for the virtual agent (virtual.h).
 *
 * The file is opened (created 0600 if missing) with the mailbox owner's
 * rights, refused unless it is a plain file with one link, and locked as
 * virtual_mailbox_lock says (fcntl, flock, dotlock; by default fcntl and
 * a dot-lock PATH.lock, which needs a writable directory). Locks are
 * tried deliver_lock_attempts times, deliver_lock_delay apart, then the
 * delivery waits (4.2.0); a dot-lock older than stale_lock_time is taken
 * over. The append is all or nothing: on any error, virtual_mailbox_limit
 * included, the file is cut back to its old size. Reported only after
 * fsync.
 */
#include "virtual.h"

#include "maildir.h"

#include "config.h"
#include "log.h"
#include "rewrite.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_FCNTL 1
#define LOCK_FLOCK 2
#define LOCK_DOT 4
#define MBOX_MODE 0600

static char dot_lock[PATH_MAX];   /* held, for mbox_cleanup */

void mbox_cleanup(void)
{
    if (dot_lock[0]) {
        unlink(dot_lock);
        dot_lock[0] = 0;
    }
}

static int lock_method(const char *item, void *ctx)
{
    int *methods = ctx;
    if (strcasecmp(item, "fcntl") == 0)
        *methods |= LOCK_FCNTL;
    else if (strcasecmp(item, "flock") == 0)
        *methods |= LOCK_FLOCK;
    else if (strcasecmp(item, "dotlock") == 0)
        *methods |= LOCK_DOT;
    else
        msg_warn("virtual_mailbox_lock: unknown method \"%s\" ignored", item);
    return 0;
}

/* Try the dot-lock once: 0 taken, 1 busy, -1 error. */
static int dot_lock_try(const char *path)
{
    struct stat st;
    int n = snprintf(dot_lock, sizeof(dot_lock), "%s.lock", path);
    if (n < 0 || (size_t)n >= sizeof(dot_lock)) {
        dot_lock[0] = 0;
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(dot_lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    int saved = errno;
    if (saved == EEXIST && stat(dot_lock, &st) == 0 &&
        time(NULL) - st.st_mtime > var.stale_lock_time) {
        msg_warn("removing stale lock file %s", dot_lock);
        unlink(dot_lock);
    }
    dot_lock[0] = 0;
    errno = saved;
    return saved == EEXIST ? 1 : -1;
}

static void unlock_all(int fd, int held)
{
    if (held & LOCK_FCNTL) {
        struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
        fcntl(fd, F_SETLK, &fl);
    }
    if (held & LOCK_FLOCK)
        flock(fd, LOCK_UN);
    if (held & LOCK_DOT)
        mbox_cleanup();
}

/* One attempt at every method: the held set, or -1 busy / -2 error. */
static int lock_once(int fd, const char *path, int methods)
{
    int held = 0, rc;
    if (methods & LOCK_DOT) {
        if ((rc = dot_lock_try(path)) != 0)
            return rc > 0 ? -1 : -2;
        held |= LOCK_DOT;
    }
    if (methods & LOCK_FCNTL) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) < 0) {
            int busy = errno == EACCES || errno == EAGAIN;
            unlock_all(fd, held);
            return busy ? -1 : -2;
        }
        held |= LOCK_FCNTL;
    }
    if (methods & LOCK_FLOCK) {
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int busy = errno == EWOULDBLOCK;
            unlock_all(fd, held);
            return busy ? -1 : -2;
        }
        held |= LOCK_FLOCK;
    }
    return held;
}

static int lock_mailbox(int fd, const char *path, int methods, struct vstatus *st)
{
    long attempts = var.deliver_lock_attempts;
    for (long i = 0; i < (attempts > 0 ? attempts : 1); i++) {
        int held = lock_once(fd, path, methods);
        if (held >= 0)
            return held;
        if (held == -2) {
            vstatus_io_error(st, "lock mailbox", errno);
            return -1;
        }
        if (i + 1 < attempts)
            sleep((unsigned)var.deliver_lock_delay);
    }
    vstatus_set(st, "4.2.0", "cannot lock mailbox %s: it stays busy", path);
    return -1;
}

/* Append under the lock; cut back on any error. */
static void append(int fd, const struct vmessage *m, const struct vtrace *t, struct vstatus *st)
{
    long long limit = var.virtual_mailbox_limit;
    off_t old = lseek(fd, 0, SEEK_END);
    if (old < 0) {
        vstatus_io_error(st, "seek mailbox", errno);
        return;
    }
    if (limit > 0 && old >= limit) {
        vstatus_set(st, "5.2.2", "cannot deliver to mailbox: mailbox is full "
                    "(virtual_mailbox_limit %lld bytes)", limit);
        return;
    }
    int r = copy_message(fd, m, t, COPY_FROM_LINE, limit > 0 ? limit - old : 0);
    int saved = errno;
    if (r == 0 && fsync(fd) == 0) {
        vstatus_set(st, "2.0.0", "delivered to mailbox");
        return;
    }
    saved = r == 0 ? errno : saved;
    if (ftruncate(fd, old) < 0 || fsync(fd) < 0)
        msg_warn("%s: cannot cut mailbox back to %lld bytes: %s", m->queue_id, (long long)old,
                 strerror(errno));
    if (r == COPY_EREAD)
        vstatus_set(st, "4.3.0", "error reading queue file");
    else if (r == COPY_ETOOBIG)
        vstatus_set(st, "5.2.2", "cannot deliver to mailbox: message would exceed "
                    "virtual_mailbox_limit (%lld bytes)", limit);
    else
        vstatus_io_error(st, "write to mailbox", saved);
}

void mbox_deliver(const char *path, const struct vmessage *m, const struct vtrace *t,
                  struct vstatus *st)
{
    struct stat sb;
    int methods = 0;
    rewrite_list_walk(var.virtual_mailbox_lock, lock_method, &methods);
    if (maildir_make_parents(path) < 0) {
        vstatus_io_error(st, "create mailbox directory", errno);
        return;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, MBOX_MODE);
    if (fd < 0) {
        vstatus_io_error(st, "open mailbox", errno);
        return;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        vstatus_set(st, "4.3.0", "mailbox %s is not a regular file with one link", path);
        close(fd);
        return;
    }
    int held = lock_mailbox(fd, path, methods, st);
    if (held >= 0) {
        append(fd, m, t, st);
        unlock_all(fd, held);
    }
    close(fd);
}
