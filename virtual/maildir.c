/* maildir.c - Maildir delivery for the virtual agent (virtual.h).
 *
 * The Maildir protocol: write tmp/UNIQUE, fsync it, rename it into new/,
 * fsync new/ - only then is the delivery reported. Directories missing on
 * the way (the domain directory, the Maildir and its tmp/ new/ cur/) are
 * created with the rights we run as, which deliver.c made the mailbox
 * owner's, and each new one is made durable by fsyncing its parent.
 */
#include "virtual.h"

#include "config.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define DIR_MODE 0700
#define FILE_MODE 0600
#define UNIQUE_ATTEMPTS 20

static char tmp_path[PATH_MAX];   /* being written, for maildir_cleanup */

void maildir_cleanup(void)
{
    if (tmp_path[0]) {
        unlink(tmp_path);
        tmp_path[0] = 0;
    }
}

int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd), saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mkdir path[0..len) unless it is a directory already. */
static int ensure_dir(const char *path, size_t len)
{
    char dir[PATH_MAX], parent[PATH_MAX];
    struct stat st;
    if (len == 0 || len >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, len);
    dir[len] = 0;
    if (mkdir(dir, DIR_MODE) < 0) {
        if (errno != EEXIST || stat(dir, &st) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        return 0;
    }
    const char *slash = memrchr(dir, '/', len);
    snprintf(parent, sizeof(parent), "%.*s", slash && slash != dir ? (int)(slash - dir) : 1,
             slash ? dir : ".");
    return fsync_dir(parent);
}

int make_parents(const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 1; i < len; i++)
        if (path[i] == '/' && path[i - 1] != '/' && ensure_dir(path, i) < 0)
            return -1;
    return 0;
}

static int make_maildir(const char *dir)
{
    static const char *const subs[] = {"tmp", "new", "cur"};
    char path[PATH_MAX];
    if (make_parents(dir) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        int n = snprintf(path, sizeof(path), "%s%s", dir, subs[i]);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (ensure_dir(path, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

/* Create tmp/UNIQUE; its name goes to name. Returns the fd or -1. */
static int create_tmp(const char *dir, char *name, size_t namelen)
{
    static unsigned counter;
    char host[256];
    const char *h = config_get("myhostname");
    size_t o = 0;
    for (; h && *h && o + 5 < sizeof(host); h++) {
        if (*h == '/' || *h == ':')
            o += (size_t)snprintf(host + o, sizeof(host) - o, "\\%03o", (unsigned char)*h);
        else
            host[o++] = (unsigned char)*h <= ' ' || (unsigned char)*h >= 0x7f ? '_' : *h;
    }
    host[o] = 0;
    for (int attempt = 0; attempt < UNIQUE_ATTEMPTS; attempt++) {
        struct timeval now;
        gettimeofday(&now, NULL);
        int n = snprintf(name, namelen, "%lld.M%ldP%ld_%u.%s", (long long)now.tv_sec,
                         (long)now.tv_usec, (long)getpid(), counter++, host);
        int m = snprintf(tmp_path, sizeof(tmp_path), "%stmp/%s", dir, name);
        if (n < 0 || (size_t)n >= namelen || m < 0 || (size_t)m >= sizeof(tmp_path)) {
            tmp_path[0] = 0;
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, FILE_MODE);
        if (fd >= 0)
            return fd;
        tmp_path[0] = 0;
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Fill, fsync and close the tmp file. */
static int fill(int fd, const struct vmessage *m, const struct vtrace *t, struct vstatus *st)
{
    long long limit = config_size("virtual_mailbox_limit");
    int r = copy_message(fd, m, t, 0, limit);
    if (r == COPY_EREAD)
        vstatus_set(st, "4.3.0", "error reading queue file");
    else if (r == COPY_ETOOBIG)
        vstatus_set(st, "5.2.2", "cannot deliver to maildir: message is larger than "
                    "virtual_mailbox_limit (%lld bytes)", limit);
    else if (r < 0)
        vstatus_io_error(st, "write to maildir", errno);
    else if (fsync(fd) < 0)
        vstatus_io_error(st, "fsync maildir file", errno);
    else if (close(fd) < 0) {
        vstatus_io_error(st, "close maildir file", errno);
        return -1;
    } else
        return 0;
    close(fd);
    return -1;
}

void maildir_deliver(const char *dir, const struct vmessage *m, const struct vtrace *t,
                     struct vstatus *st)
{
    char name[NAME_MAX + 1], newdir[PATH_MAX], target[PATH_MAX];
    int fd = create_tmp(dir, name, sizeof(name));
    if (fd < 0 && errno == ENOENT) {
        if (make_maildir(dir) < 0) {
            vstatus_io_error(st, "create maildir", errno);
            return;
        }
        fd = create_tmp(dir, name, sizeof(name));
    }
    if (fd < 0) {
        vstatus_io_error(st, "create file in maildir tmp/", errno);
        return;
    }
    if (fill(fd, m, t, st) < 0) {
        maildir_cleanup();
        return;
    }
    int n1 = snprintf(newdir, sizeof(newdir), "%snew", dir);
    int n2 = snprintf(target, sizeof(target), "%snew/%s", dir, name);
    if (n1 < 0 || (size_t)n1 >= sizeof(newdir) || n2 < 0 || (size_t)n2 >= sizeof(target)) {
        vstatus_set(st, "4.3.0", "maildir path too long");
        maildir_cleanup();
        return;
    }
    if (rename(tmp_path, target) < 0) {
        vstatus_io_error(st, "rename into maildir new/", errno);
        maildir_cleanup();
        return;
    }
    tmp_path[0] = 0;
    if (fsync_dir(newdir) < 0) {
        int saved = errno;
        unlink(target);   /* not durable, so not delivered: qmgr retries */
        vstatus_io_error(st, "fsync maildir new/", saved);
        return;
    }
    vstatus_set(st, "2.0.0", "delivered to maildir");
}
