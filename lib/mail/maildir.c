/* maildir.c - putting one message file into a Maildir (maildir.h).
 *
 * The Maildir protocol: write tmp/UNIQUE, fsync it, rename it into new/,
 * fsync new/. Unique names are "SECONDS.MmicrosPpid_COUNTER.HOST".
 * (A nameless O_TMPFILE in new/, linked once complete, avoids the rename
 * across directories; it measured no faster in bench/, so it is not here.)
 */
#include "maildir.h"

#include "config.h"
#include "fsync_dir.h"
#include "log.h"
#include "mail_copy.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAILDIR_DIR_MODE 0700
#define MAILDIR_FILE_MODE 0600
#define UNIQUE_ATTEMPTS 20

static struct maildir_file *current;   /* being written, for maildir_fatal_cleanup */

/* mkdir path[0..len) unless it is a directory already. 1 when made (not
 * yet durable: the caller syncs, fsync_new_dir), 0 when it was there. */
static int ensure_dir(const char *path, size_t len)
{
    char dir[PATH_MAX];
    struct stat st;
    if (len == 0 || len >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, len);
    dir[len] = 0;
    if (mkdir(dir, MAILDIR_DIR_MODE) == 0)
        return 1;
    if (errno != EEXIST || stat(dir, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* The directories above path's last name: how many were made, or -1. */
static int make_parents(const char *path)
{
    size_t len = strlen(path);
    int made = 0;
    for (size_t i = 1; i < len; i++) {
        if (path[i] != '/' || path[i - 1] == '/')
            continue;
        int rc = ensure_dir(path, i);
        if (rc < 0)
            return -1;
        made += rc;
    }
    return made;
}

int maildir_make_parents(const char *path)
{
    char parent[PATH_MAX];
    int made = make_parents(path);
    if (made <= 0)
        return made;
    if (snprintf(parent, sizeof(parent), "%s", path) >= (int)sizeof(parent)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return fsync_new_dir(dirname(parent));
}

/* The Maildir's parents, the Maildir, tmp/, new/ and cur/, synced before
 * anything is put in them even when another agent made them meanwhile
 * (this runs only after the Maildir was found missing). */
static int make_maildir(const char *dir, enum maildir_step *failed)
{
    static const char *const subs[] = {"", "tmp", "new", "cur"};
    if (make_parents(dir) < 0) {
        *failed = MAILDIR_STEP_PARENTS;
        return -1;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s%s", dir, subs[i]);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            *failed = MAILDIR_STEP_PATH;
            errno = ENAMETOOLONG;
            return -1;
        }
        if (ensure_dir(path, (size_t)n) < 0) {
            *failed = MAILDIR_STEP_DIRS;
            return -1;
        }
    }
    if (fsync_new_dir(dir) < 0) {
        *failed = MAILDIR_STEP_DIRS;
        return -1;
    }
    return 0;
}

/* Host part of a unique name: '/' and ':' would break the name, so they
 * are written as \057 and \072 (the Maildir convention). */
static void unique_host(char *out, size_t len, const char *host)
{
    size_t n = 0;
    if (host == NULL || *host == 0)
        host = "localhost";
    for (; *host != 0 && n + 5 < len; host++) {
        unsigned char c = (unsigned char)*host;
        if (c == '/' || c == ':' || c == '\\')
            n += (size_t)snprintf(out + n, len - n, "\\%03o", c);
        else
            out[n++] = c <= 0x20 || c >= 0x7f ? '_' : (char)c;
    }
    out[n] = 0;
}

/* A fresh unique name, as dir + sub + name into path. -1 when too long. */
static int unique_path(char *path, size_t len, const char *dir, const char *sub,
                       const char *hostname)
{
    static unsigned counter;
    char host[256];
    struct timeval now;
    unique_host(host, sizeof(host), hostname);
    gettimeofday(&now, NULL);
    int n = snprintf(path, len, "%s%s%lld.M%ldP%ld_%u.%s", dir, sub, (long long)now.tv_sec,
                     (long)now.tv_usec, (long)getpid(), counter++, host);
    if (n < 0 || (size_t)n >= len || strlen(strrchr(path, '/') + 1) > NAME_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* tmp/UNIQUE, to be renamed into new/. */
static int create_tmp(struct maildir_file *f, const char *host)
{
    for (int attempt = 0; attempt < UNIQUE_ATTEMPTS; attempt++) {
        if (unique_path(f->tmp, sizeof(f->tmp), f->dir, "tmp/", host) < 0)
            break;
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     MAILDIR_FILE_MODE);
        if (f->fd >= 0 || errno != EEXIST)
            break;
    }
    if (f->fd < 0)
        f->tmp[0] = 0;
    return f->fd;
}

int maildir_file_create(struct maildir_file *f, const char *dir, const char *host,
                        enum maildir_step *failed)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    if (snprintf(f->dir, sizeof(f->dir), "%s", dir) >= (int)sizeof(f->dir)) {
        *failed = MAILDIR_STEP_PATH;
        errno = ENAMETOOLONG;
        return -1;
    }
    /* The Maildir usually exists: try first, create only when missing. */
    int rc = create_tmp(f, host);
    if (rc < 0 && errno == ENOENT) {
        if (make_maildir(dir, failed) < 0)
            return -1;
        rc = create_tmp(f, host);
    }
    if (rc < 0) {
        *failed = errno == ENAMETOOLONG ? MAILDIR_STEP_PATH : MAILDIR_STEP_CREATE;
        return -1;
    }
    current = f;
    return 0;
}

/* rename tmp/NAME to new/NAME; new/ may have been removed under us, so a
 * missing directory is recreated once. */
static int name_in_new(struct maildir_file *f, char *target, size_t len)
{
    const char *name = strrchr(f->tmp, '/') + 1;
    int n = snprintf(target, len, "%snew/%s", f->dir, name);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (rename(f->tmp, target) == 0)
        return 0;
    enum maildir_step ignored;
    if (errno != ENOENT || make_maildir(f->dir, &ignored) < 0)
        return -1;
    return rename(f->tmp, target);
}

static void finish(struct maildir_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp[0])
        unlink(f->tmp);
    f->tmp[0] = 0;
    if (current == f)
        current = NULL;
}

int maildir_file_publish(struct maildir_file *f, enum maildir_step *failed)
{
    char target[PATH_MAX], newdir[PATH_MAX];
    if (fsync(f->fd) < 0) {
        *failed = MAILDIR_STEP_FSYNC;
        goto fail;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc < 0) {
        *failed = MAILDIR_STEP_FSYNC;
        goto fail;
    }
    if (name_in_new(f, target, sizeof(target)) < 0) {
        *failed = errno == ENAMETOOLONG ? MAILDIR_STEP_PATH : MAILDIR_STEP_NAME;
        goto fail;
    }
    f->tmp[0] = 0;
    if (snprintf(newdir, sizeof(newdir), "%snew", f->dir) >= (int)sizeof(newdir) ||
        fsync_dir(newdir) < 0) {
        int saved = errno;
        /* Not durable, so not delivered: take it back and let qmgr retry
         * rather than leave a copy the retry would duplicate. */
        unlink(target);
        errno = saved;
        *failed = MAILDIR_STEP_FSYNC_NEW;
        goto fail;
    }
    finish(f);
    return 0;
fail:;
    int saved = errno;
    finish(f);
    errno = saved;
    return -1;
}

void maildir_file_discard(struct maildir_file *f)
{
    int saved = errno;
    finish(f);
    errno = saved;
}

void maildir_fatal_cleanup(void)
{
    if (current && current->tmp[0])
        unlink(current->tmp);
}

/* --- a whole message --- */

static void step_failed(struct delivery_status *st, enum maildir_step step, int err)
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
        delivery_status_set(st, "4.3.0", "maildir path too long");
    else
        delivery_status_errno(st, err, "cannot deliver to maildir: %s", what[step]);
}

/* Copy the message into f->fd; st is set on failure. */
static int fill(struct maildir_file *f, const struct deliver_message *m,
                const struct mail_copy_trace *t, long long limit, enum param_id limit_param,
                struct delivery_status *st)
{
    int r = mail_copy(m, t, MAIL_COPY_TRACE, limit, mail_copy_write_fd, &f->fd);

    if (r == MAIL_COPY_EREAD) {
        msg_warn("%s: error reading queue file content", m->queue_id);
        delivery_status_set(st, "4.3.0", "error reading queue file");
    } else if (r == MAIL_COPY_ETOOBIG) {
        delivery_status_set(st, "5.2.2", "cannot deliver to maildir: message is larger than "
                            "%s (%lld bytes)", config_name(limit_param), limit);
    } else if (r < 0) {
        delivery_status_errno(st, errno, "cannot deliver to maildir: write");
    }
    return r < 0 ? -1 : 0;
}

void maildir_deliver(const char *dir, const struct deliver_message *m,
                     const struct mail_copy_trace *t, long long limit,
                     enum param_id limit_param, struct delivery_status *st)
{
    struct maildir_file f;
    enum maildir_step step;

    if (maildir_file_create(&f, dir, var.myhostname, &step) < 0) {
        step_failed(st, step, errno);
        return;
    }
    if (fill(&f, m, t, limit, limit_param, st) < 0) {
        maildir_file_discard(&f);
        return;
    }
    if (maildir_file_publish(&f, &step) < 0) {
        step_failed(st, step, errno);
        return;
    }
    delivery_status_set(st, "2.0.0", "delivered to maildir");
}
