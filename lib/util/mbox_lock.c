/* mbox_lock.c - dot-lock, fcntl and flock locking of an mbox file
 * (mbox_lock.h).
 *
 * One dot-lock is held at a time by a process (agents deliver one message
 * at a time), remembered so that a fatal error can remove it: a dot-lock
 * left behind would keep every writer out until it goes stale.
 */
#include "mbox_lock.h"

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

#include "log.h"
#include "strlist.h"

#define LIST_MAX 256
#define ITEMS_MAX 16

static char held_dotlock[PATH_MAX];

static const struct {
    const char *name;
    int method;
} method_names[] = {
    {"fcntl", MBOX_LOCK_FCNTL},
    {"flock", MBOX_LOCK_FLOCK},
    {"dotlock", MBOX_LOCK_DOTLOCK},
};

static int method_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
        if (strcasecmp(name, method_names[i].name) == 0)
            return method_names[i].method;
    return 0;
}

int mbox_lock_parse(const char *param, const char *value, int *methods, char *why,
                    size_t whylen)
{
    char buf[LIST_MAX], *items[ITEMS_MAX];
    size_t n;

    *methods = 0;
    if (value == NULL)
        value = "";
    if (strlen(value) >= sizeof(buf)) {
        snprintf(why, whylen, "%s: value too long", param);
        return -1;
    }
    n = strlist_split(value, buf, items, ITEMS_MAX);
    for (size_t i = 0; i < n; i++) {
        int m = method_by_name(items[i]);
        if (m == 0) {
            snprintf(why, whylen, "%s: unknown mailbox lock method \"%s\"", param, items[i]);
            return -1;
        }
        *methods |= m;
    }
    return 0;
}

void mbox_lock_cleanup(void)
{
    if (held_dotlock[0] != 0) {
        unlink(held_dotlock);
        held_dotlock[0] = 0;
    }
}

/* Try PATH.lock once: 0 taken (or impossible and allowed to be), 1 busy,
 * -1 error (errno). A stale one is removed and the lock tried again. */
static int dotlock_try(const char *path, const struct mbox_lock_policy *p)
{
    char lock[PATH_MAX];
    struct stat st;

    if (snprintf(lock, sizeof(lock), "%s.lock", path) >= (int)sizeof(lock)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (int tries = 0; tries < 2; tries++) {
        int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            snprintf(held_dotlock, sizeof(held_dotlock), "%s", lock);
            return 0;
        }
        if (p->dotlock_may_fail && (errno == EACCES || errno == EROFS || errno == EPERM))
            return 0;
        if (errno != EEXIST)
            return -1;
        if (lstat(lock, &st) < 0 || time(NULL) - st.st_mtime < p->stale_time)
            return 1;
        msg_warn("removing stale lock file %s", lock);
        if (unlink(lock) < 0 && errno != ENOENT)
            return -1;
    }
    return 1;
}

static int busy(int err)
{
    return err == EAGAIN || err == EACCES || err == EWOULDBLOCK;
}

/* 0 taken, 1 busy, -1 error, with errno kept past the release of what
 * was taken before. */
static int failed(int fd, int held)
{
    int saved = errno;

    mbox_unlock(fd, held);
    errno = saved;
    return busy(saved) ? 1 : -1;
}

/* Every method of p, or none. 0 taken, 1 busy, -1 error. */
static int lock_once(int fd, const char *path, const struct mbox_lock_policy *p)
{
    int held = 0, r;

    if (p->methods & MBOX_LOCK_DOTLOCK) {
        if ((r = dotlock_try(path, p)) != 0)
            return r;
        held |= MBOX_LOCK_DOTLOCK;
    }
    if (p->methods & MBOX_LOCK_FCNTL) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) < 0)
            return failed(fd, held);
        held |= MBOX_LOCK_FCNTL;
    }
    if ((p->methods & MBOX_LOCK_FLOCK) && flock(fd, LOCK_EX | LOCK_NB) < 0)
        return failed(fd, held);
    return 0;
}

int mbox_lock(int fd, const char *path, const struct mbox_lock_policy *p)
{
    long attempts = p->attempts > 0 ? p->attempts : 1;

    for (long i = 0;; i++) {
        int r = lock_once(fd, path, p);
        if (r <= 0 || i + 1 >= attempts)
            return r;
        if (p->delay > 0)
            sleep((unsigned)p->delay);
    }
}

void mbox_unlock(int fd, int methods)
{
    if (methods & MBOX_LOCK_FLOCK)
        flock(fd, LOCK_UN);
    if (methods & MBOX_LOCK_FCNTL) {
        struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
        fcntl(fd, F_SETLK, &fl);
    }
    if (methods & MBOX_LOCK_DOTLOCK)
        mbox_lock_cleanup();
}
