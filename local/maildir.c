/* maildir.c - Maildir delivery for the local agent.
 *
 * The Maildir protocol: write the message to tmp/UNIQUE, fsync it, rename
 * it into new/. A reader only ever looks at new/ and cur/, so a message is
 * either wholly there or absent. Unlike most MTAs we also fsync new/ (and
 * every directory we create) before reporting success, so an acknowledged
 * delivery survives a crash.
 *
 * File content: the trace headers, then the queue file's content records
 * byte for byte (message.c). The Maildir and any missing parent
 * directories are created with the rights we run as, which in system mode
 * are already the recipient's (resolve.c).
 */
#include "local.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define MAILDIR_MODE 0700
#define MAILDIR_FILE_MODE 0600
#define UNIQUE_ATTEMPTS 20

/* The tmp/ file being written, for maildir_cleanup after a fatal error. */
static char current_tmp[PATH_MAX];

void maildir_cleanup(void)
{
    if (current_tmp[0] != 0) {
        unlink(current_tmp);
        current_tmp[0] = 0;
    }
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc, saved;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mkdir path unless it is already a directory; a new one is made durable
 * by fsyncing its parent. Returns 0 or -1 with errno. */
static int ensure_dir(const char *path)
{
    char parent[PATH_MAX];
    struct stat st;
    const char *slash;
    size_t len = strlen(path);

    while (len > 1 && path[len - 1] == '/')
        len--;
    if (mkdir(path, MAILDIR_MODE) < 0) {
        if (errno != EEXIST)
            return -1;
        if (stat(path, &st) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        return 0;
    }
    slash = memrchr(path, '/', len);
    if (slash == NULL)
        return fsync_dir(".");
    if (slash == path)
        return fsync_dir("/");
    if ((size_t)(slash - path) >= sizeof(parent)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = 0;
    return fsync_dir(parent);
}

/* dir + sub into out. -1 when it does not fit. */
static int join(char *out, size_t len, const char *dir, const char *sub)
{
    int n = snprintf(out, len, "%s%s", dir, sub);

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Create the missing ancestors of dir (like mkdir -p), top down. */
static int ensure_parents(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir), i;

    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len);
    path[len] = 0;
    for (i = 1; i < len; i++) {
        if (path[i] != '/')
            continue;
        path[i] = 0;
        int rc = ensure_dir(path);
        path[i] = '/';
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* DIR's parents, DIR, DIR/tmp, DIR/new, DIR/cur (dir ends in '/'). */
static int ensure_maildir(const char *dir, struct local_status *st)
{
    static const char *const subs[] = {"", "tmp", "new", "cur"};
    char path[PATH_MAX];
    size_t i;

    if (ensure_parents(dir) < 0) {
        local_status_io_error(st, "create parent directory", errno);
        return -1;
    }
    for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (join(path, sizeof(path), dir, subs[i]) < 0) {
            local_status_set(st, "4.3.0", "maildir path too long");
            return -1;
        }
        if (ensure_dir(path) < 0) {
            local_status_io_error(st, "create maildir", errno);
            return -1;
        }
    }
    return 0;
}

/* Host part of a Maildir name: '/' and ':' would break the name, so they
 * are written as \057 and \072 (the Maildir convention). */
static void maildir_host(char *out, size_t len)
{
    const char *host = config_get("myhostname");
    size_t n = 0;

    if (host == NULL || *host == 0)
        host = "localhost";
    for (; *host != 0 && n + 5 < len; host++) {
        if (*host == '/' || *host == ':' || *host == '\\') {
            n += (size_t)snprintf(out + n, len - n, "\\%03o", (unsigned char)*host);
        } else if ((unsigned char)*host <= 0x20 || (unsigned char)*host >= 0x7f) {
            out[n++] = '_';
        } else {
            out[n++] = *host;
        }
    }
    out[n] = 0;
}

/* Create tmp/UNIQUE ("SECONDS.MmicrosPpid_COUNTER.HOST"); its name goes to
 * name, its path to current_tmp. Returns the fd or -1 with errno. */
static int create_tmp(const char *dir, char *name, size_t namelen)
{
    static unsigned counter;
    char host[256];
    struct timeval now;
    int attempt, fd;

    maildir_host(host, sizeof(host));
    for (attempt = 0; attempt < UNIQUE_ATTEMPTS; attempt++) {
        gettimeofday(&now, NULL);
        int n = snprintf(name, namelen, "%lld.M%ldP%ld_%u.%s", (long long)now.tv_sec,
                         (long)now.tv_usec, (long)getpid(), counter++, host);
        if (n < 0 || (size_t)n >= namelen) {
            errno = ENAMETOOLONG;
            return -1;
        }
        n = snprintf(current_tmp, sizeof(current_tmp), "%stmp/%s", dir, name);
        if (n < 0 || (size_t)n >= sizeof(current_tmp)) {
            current_tmp[0] = 0;
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = open(current_tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  MAILDIR_FILE_MODE);
        if (fd >= 0)
            return fd;
        current_tmp[0] = 0;
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Write, fsync and close the tmp file; st is set on failure. */
static int fill_tmp(int fd, const struct local_message *m, const struct local_trace *t,
                    long long limit, struct local_status *st)
{
    int r = local_copy_message(m, t, 0, limit, local_write_fd, &fd);

    if (r == LOCAL_COPY_EREAD) {
        msg_warn("%s: error reading queue file content", m->queue_id);
        local_status_set(st, "4.3.0", "error reading queue file");
    } else if (r == LOCAL_COPY_ETOOBIG) {
        local_status_set(st, "5.2.2", "cannot deliver to maildir: message is larger than "
                         "mailbox_size_limit (%lld bytes)", limit);
    } else if (r < 0) {
        local_status_io_error(st, "write", errno);
    } else if (fsync(fd) < 0) {
        local_status_io_error(st, "fsync", errno);
    } else {
        if (close(fd) < 0) {
            local_status_io_error(st, "close", errno);
            return -1;
        }
        return 0;
    }
    close(fd);
    return -1;
}

/* rename(2) current_tmp to target; new/ may have been removed under us,
 * so a missing directory is recreated once. */
static int rename_into_new(const char *dir, const char *target, struct local_status *st)
{
    if (rename(current_tmp, target) == 0)
        return 0;
    if (errno == ENOENT) {
        if (ensure_maildir(dir, st) < 0)
            return -1;
        if (rename(current_tmp, target) == 0)
            return 0;
    }
    local_status_io_error(st, "rename into new/", errno);
    return -1;
}

/* rename tmp/NAME to new/NAME and make the entry durable. */
static int publish(const char *dir, const char *name, struct local_status *st)
{
    char newdir[PATH_MAX], target[PATH_MAX];
    int n;

    n = snprintf(newdir, sizeof(newdir), "%snew", dir);
    if (n < 0 || (size_t)n >= sizeof(newdir)) {
        local_status_set(st, "4.3.0", "maildir path too long");
        return -1;
    }
    n = snprintf(target, sizeof(target), "%s/%s", newdir, name);
    if (n < 0 || (size_t)n >= sizeof(target)) {
        local_status_set(st, "4.3.0", "maildir path too long");
        return -1;
    }
    if (rename_into_new(dir, target, st) < 0)
        return -1;
    current_tmp[0] = 0;
    if (fsync_dir(newdir) < 0) {
        int saved = errno;
        /* Not durable, so not delivered: take it back and let qmgr retry
         * rather than leave a copy the retry would duplicate. */
        unlink(target);
        local_status_io_error(st, "fsync new/", saved);
        return -1;
    }
    return 0;
}

void maildir_deliver(const char *dir, const struct local_message *m,
                     const struct local_trace *t, long long limit, struct local_status *st)
{
    char name[NAME_MAX + 1];
    int fd;

    /* The Maildir usually exists: try first, create only when missing. */
    fd = create_tmp(dir, name, sizeof(name));
    if (fd < 0 && errno == ENOENT) {
        if (ensure_maildir(dir, st) < 0)
            return;
        fd = create_tmp(dir, name, sizeof(name));
    }
    if (fd < 0) {
        local_status_io_error(st, "create file in tmp/", errno);
        return;
    }
    if (fill_tmp(fd, m, t, limit, st) < 0 || publish(dir, name, st) < 0) {
        maildir_cleanup();
        return;
    }
    local_status_set(st, "2.0.0", "delivered to maildir");
}
