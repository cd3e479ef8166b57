/* queue_file.c - queue directories and queue files (see queue_file.h).
 *
 * The writer names the file after its inode and link(2)s it to that queue
 * id (link refuses to replace, so ids never collide): at commit when the
 * file was made with O_TMPFILE, else at once from a temporary name. The
 * file stays mode 0600 until commit sets 0700 just before the fsync, and
 * readers schedule only 0700 files with an E record.
 */
#include "queue_file.h"
#include "config.h"
#include "fsync_dir.h"
#include "log.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int queue_dir_path(char *buf, size_t len, const char *sub)
{
    int n = snprintf(buf, len, "%s/%s", var.queue_directory, sub);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int queue_name_valid(const char *name)
{
    static const char *const names[] = {QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD,
                                        QUEUE_CORRUPT};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

int queue_path(char *buf, size_t len, const char *queue, const char *id)
{
    int n;
    if (strcmp(queue, QUEUE_DEFERRED) == 0 && id[0])
        n = snprintf(buf, len, "%s/%s/%c/%s", var.queue_directory, queue,
                     id[strlen(id) - 1], id);
    else
        n = snprintf(buf, len, "%s/%s/%s", var.queue_directory, queue, id);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* mkdir path with mode unless it exists (chmod: not the umask's mode).
 * A new directory is not durable yet: the caller syncs it with
 * fsync_new_dir before a queue file goes into it (a queue file fsynced
 * into a directory whose own entry a power cut loses ends in lost+found on
 * ext4 without a journal; tests/powercut). 1 when made, 0 when it
 * existed, -1 with errno. */
static int mkdir_mode(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0)
        return chmod(path, mode) < 0 ? -1 : 1;
    return errno == EEXIST ? 0 : -1;
}

/* System mode (root, mail_owner another user): the queue belongs to
 * mail_owner; maildrop/ and public/ are shared with group setgid_group so
 * postdrop and postqueue can reach them (docs/DESIGN.md, "Queue"). */
static int queue_dir_chown(const char *path, const char *name)
{
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(var.mail_owner);
    if (!pw || pw->pw_uid == 0)
        return 0;
    gid_t gid = pw->pw_gid;
    if (strcmp(name, "maildrop") == 0 || strcmp(name, "public") == 0) {
        struct group *gr = getgrnam(var.setgid_group);
        if (gr)
            gid = gr->gr_gid;
    }
    uid_t uid = name[0] && strcmp(name, "pid") != 0 ? pw->pw_uid : 0;
    if (!name[0])
        gid = 0;
    return chown(path, uid, gid);
}

int queue_dirs_create(void)
{
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {
        {"", 0755},          {"incoming", 0700}, {"active", 0700},  {"deferred", 0700},
        {"hold", 0700},      {"corrupt", 0700},  {"bounce", 0700},  {"defer", 0700},
        {"trace", 0700},     {"success", 0700},     {"private", 0700},  {"public", 0710},  {"pid", 0755},
        {"maildrop", 01730}, {"saved", 0700},
    };
    char path[PATH_MAX];
    int made_any = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (queue_dir_path(path, sizeof(path), dirs[i].name) < 0) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int made = mkdir_mode(path, dirs[i].mode);
        if (made < 0 || queue_dir_chown(path, dirs[i].name) < 0 || chmod(path, dirs[i].mode) < 0)
            return -1;
        made_any |= made;
    }
    /* Once, for the whole tree: entries, owners and modes (a queue
     * directory back as root's after a power cut would stop the daemons
     * until someone fixed it), and the inode counts of the block groups
     * (on ext4 without a journal fsync leaves them; after a cut fsck took
     * the queue directories' inodes for unused ones, and a torn write of
     * active/'s made it abort instead of repairing: tests/powercut). */
    return made_any && queue_dir_path(path, sizeof(path), "") == 0 ? fsync_new_dir(path) : 0;
}

/* One move is link to the new name, fsync of its directory, unlink of
 * the old one. A rename(2) would do it in one step, but on ext4 without a
 * journal nothing orders its two directory updates on the disk: the old
 * directory's block may be written (by writeback, or by another process's
 * fsync of that directory, as cleanup's of incoming/) while the new one's
 * is not, and after a power cut the file is in no queue, only in
 * lost+found (tests/powercut). A crash between link and unlink leaves
 * both names: the next move finds them and finishes this one. Moves of a
 * batch share their directory fsyncs: every link, then one fsync per
 * directory linked into, then every unlink. */

/* The first step: the new name. 0, or -1 with errno; ENOENT also when the
 * file was in to already under both names (an interrupted move: it was
 * taken from there, so to the caller it is no longer where it looked),
 * the old name then removed. */
static int move_link(const char *from, const char *to, const char *to_queue)
{
    if (link(from, to) == 0)
        return 0;
    /* A directory (what fsck may leave under a queue id) cannot be linked:
     * renamed, it is gone from its old place already (the unlink step
     * then finds nothing to do). */
    if (errno == EPERM)
        return rename(from, to);
    if (errno == ENOENT && strcmp(to_queue, QUEUE_DEFERRED) == 0 && access(from, F_OK) == 0) {
        /* The hash subdirectory of deferred/ may not exist yet. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", to);
        /* Synced even when another mover made it just now: until then it
         * is not safe to fill (fsync_new_dir). */
        if (mkdir_mode(dirname(dir), 0700) < 0 || fsync_new_dir(dir) < 0)
            return -1;
        if (link(from, to) == 0)
            return 0;
    }
    if (errno != EEXIST)
        return -1;
    struct stat a, b;
    if (stat(from, &a) < 0 || stat(to, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
        errno = EEXIST;
        return -1;
    }
    unlink(from);
    errno = ENOENT;
    return -1;
}

/* Which directory of to_queue id's new name is in, as a byte: deferred/
 * has one per hash character (queue_path), the others just one. */
static unsigned char move_dir_key(const char *to_queue, const char *id)
{
    return strcmp(to_queue, QUEUE_DEFERRED) == 0 && id[0] ? (unsigned char)id[strlen(id) - 1] : 0;
}

static int move_paths(char *from, char *to, const char *id, const char *from_queue,
                      const char *to_queue)
{
    if (queue_path(from, PATH_MAX, from_queue, id) < 0 ||
        queue_path(to, PATH_MAX, to_queue, id) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* The second step: fsync each directory a link of the batch went into,
 * once. A link whose directory cannot be synced is undone (err set): the
 * file stays where it was, under its old name only. */
static void move_sync_dirs(const char *const *ids, size_t n, const char *to_queue, int *err)
{
    int synced[256];   /* by move_dir_key: 0 not yet, 1 done, else -errno */
    char to[PATH_MAX];
    memset(synced, 0, sizeof(synced));
    for (size_t i = 0; i < n; i++) {
        if (err[i] || queue_path(to, sizeof(to), to_queue, ids[i]) < 0)
            continue;
        int *s = &synced[move_dir_key(to_queue, ids[i])];
        if (*s == 0)
            *s = fsync_parent(to) == 0 ? 1 : -errno;
        if (*s < 0) {
            unlink(to);
            err[i] = -*s;
        }
    }
}

size_t queue_files_move(const char *const *ids, size_t n, const char *from_queue,
                        const char *to_queue, int *err)
{
    char from[PATH_MAX], to[PATH_MAX];
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) {
        err[i] = 0;
        if (move_paths(from, to, ids[i], from_queue, to_queue) < 0 ||
            (strcmp(from, to) == 0 ? access(from, F_OK) : move_link(from, to, to_queue)) < 0)
            err[i] = errno;
    }
    if (strcmp(from_queue, to_queue) != 0)   /* as rename(2): nothing to do */
        move_sync_dirs(ids, n, to_queue, err);
    for (size_t i = 0; i < n; i++) {
        if (err[i] == 0 && strcmp(from_queue, to_queue) != 0 &&
            move_paths(from, to, ids[i], from_queue, to_queue) == 0 && unlink(from) < 0 &&
            errno != ENOENT)
            err[i] = errno;
        moved += err[i] == 0;
    }
    return moved;
}

int queue_file_move(const char *id, const char *from_queue, const char *to_queue)
{
    int err;
    if (queue_files_move(&id, 1, from_queue, to_queue, &err) == 1)
        return 0;
    errno = err;
    return -1;
}

/* --- writer --- */

/* Two ways to create a file. Where the file system supports O_TMPFILE the
 * file has no name until queue_writer_commit links it, complete, under its
 * queue id just before its fsync: one directory operation per message
 * instead of three (create, link, unlink), and a writer that dies before
 * its commit leaves nothing behind. Elsewhere (or without /proc) it is created under a temporary
 * name and linked to its id at once, as the header describes. */
struct queue_writer {
    char id[QUEUE_ID_SIZE];
    char path[PATH_MAX];
    char queue[32];           /* where the file lives, or will */
    struct stream *stream;
    off_t size_offset;
    struct timeval arrival;
    ino_t ino;
    int named;                /* path exists (0: an O_TMPFILE not yet linked) */
};

/* The id and path for the file's inode at arrival time tv. */
static int writer_make_name(struct queue_writer *w, const struct timeval *tv, ino_t ino)
{
    queue_id_make(w->id, tv, ino);
    if (queue_path(w->path, sizeof(w->path), w->queue, w->id) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static void timeval_bump(struct timeval *tv)
{
    if (++tv->tv_usec >= 1000000) {
        tv->tv_usec = 0;
        tv->tv_sec++;
    }
}

/* Link the file (by `from`, a name of it) to its queue id name. A
 * collision needs a foreign file named after our inode at the same
 * microsecond; a new file (retry set) then tries the next microsecond. An
 * O_TMPFILE's id was already given out, so it must not change: no retry. */
static int writer_link(struct queue_writer *w, const char *from, int follow, ino_t ino,
                       int retry)
{
    struct timeval tv = w->arrival;
    for (int attempt = 0; attempt < (retry ? 100 : 1); attempt++) {
        if (writer_make_name(w, &tv, ino) < 0)
            return -1;
        if (linkat(AT_FDCWD, from, AT_FDCWD, w->path, follow ? AT_SYMLINK_FOLLOW : 0) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
        timeval_bump(&tv);
    }
    errno = EEXIST;
    return -1;
}

/* A file without a name in the queue directory; -1 when unsupported. */
static int writer_open_unnamed(struct queue_writer *w)
{
    char dir[PATH_MAX];
    if (queue_dir_path(dir, sizeof(dir), w->queue) < 0)
        return -1;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, QUEUE_MODE_WRITING);
    if (fd < 0)
        return -1;
    static int have_proc = -1;   /* linkat needs /proc/self/fd (not in a chroot) */
    if (have_proc < 0)
        have_proc = access("/proc/self/fd", F_OK) == 0;
    if (!have_proc) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A file under a temporary name, then linked to its id at once. */
static int writer_open_named(struct queue_writer *w)
{
    static unsigned counter;
    char tmp[PATH_MAX], name[64];
    snprintf(name, sizeof(name), "tmp.%ld.%u", (long)getpid(), counter++);
    if (queue_path(tmp, sizeof(tmp), w->queue, name) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, QUEUE_MODE_WRITING);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || writer_link(w, tmp, 0, st.st_ino, 1) < 0) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return -1;
    }
    unlink(tmp);
    w->named = 1;
    return fd;
}

static int writer_open(struct queue_writer *w)
{
    int fd = writer_open_unnamed(w);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && writer_make_name(w, &w->arrival, st.st_ino) == 0) {
            w->ino = st.st_ino;
            return fd;
        }
        close(fd);
        return -1;
    }
    return writer_open_named(w);
}

int queue_spool_open(void)
{
    static unsigned counter;
    char path[PATH_MAX], name[64];
    if (queue_dir_path(path, sizeof(path), QUEUE_INCOMING) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, QUEUE_MODE_WRITING);
    if (fd >= 0)
        return fd;
    snprintf(name, sizeof(name), "tmp.%ld.s%u", (long)getpid(), counter++);
    if (queue_path(path, sizeof(path), QUEUE_INCOMING, name) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, QUEUE_MODE_WRITING);
    if (fd >= 0)
        unlink(path);
    return fd;
}

struct queue_writer *queue_writer_create(const char *queue, const struct timeval *arrival)
{
    struct queue_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    snprintf(w->queue, sizeof(w->queue), "%s", queue);
    w->arrival = *arrival;
    int fd = writer_open(w);
    if (fd < 0) {
        free(w);
        return NULL;
    }
    w->stream = stream_open(fd, 0);
    if (!w->stream) {
        close(fd);
        if (w->named)
            unlink(w->path);
        free(w);
        errno = ENOMEM;
        return NULL;
    }
    char zero[REC_SIZE_WIDTH + 1];
    snprintf(zero, sizeof(zero), "%15d %15d %15d %15d", 0, 0, 0, 0);
    w->size_offset = stream_tell(w->stream);
    if (rec_put(w->stream, REC_SIZE, zero, REC_SIZE_WIDTH) < 0 ||
        rec_putf(w->stream, REC_TIME, "%ld.%06ld", (long)arrival->tv_sec,
                 (long)arrival->tv_usec) < 0) {
        queue_writer_abort(w);
        return NULL;
    }
    return w;
}

const char *queue_writer_id(const struct queue_writer *w)
{
    return w->id;
}

const char *queue_writer_path(const struct queue_writer *w)
{
    return w->path;
}

struct stream *queue_writer_stream(struct queue_writer *w)
{
    return w->stream;
}

int queue_writer_set_queue(struct queue_writer *w, const char *queue)
{
    char to[PATH_MAX];
    if (queue_path(to, sizeof(to), queue, w->id) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (w->named && rename(w->path, to) < 0)
        return -1;
    snprintf(w->queue, sizeof(w->queue), "%s", queue);
    memcpy(w->path, to, sizeof(to));
    return 0;
}

/* Give a complete O_TMPFILE its name. */
static int writer_link_unnamed(struct queue_writer *w)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", stream_fd(w->stream));
    if (writer_link(w, proc, 1, w->ino, 0) < 0)
        return -1;
    w->named = 1;
    return 0;
}

int queue_writer_commit(struct queue_writer *w, long long content_size,
                        long long content_offset, int nrcpt)
{
    char size[REC_SIZE_WIDTH + 1];
    snprintf(size, sizeof(size), "%15lld %15lld %15d %15d", content_size, content_offset, nrcpt, 0);
    int fd = stream_fd(w->stream);
    int rc = -1;
    /* An O_TMPFILE gets its name before the fsync, still mode 0600 (which
     * readers and postsuper take for unfinished), so that one fsync of the
     * file writes its contents, its mode 0700 and the link count of the new
     * name: on ext4 without a journal only the file's own fsync writes the
     * inode, and a name fsynced into its directory before that would point
     * at an inode that fsck takes for deleted (tests/powercut found it). */
    int unnamed = !w->named;
    if (rec_put(w->stream, REC_END, "", 0) == 0 && stream_flush(w->stream) == 0 &&
        pwrite(fd, size, REC_SIZE_WIDTH, w->size_offset + 2) == REC_SIZE_WIDTH &&
        (!unnamed || writer_link_unnamed(w) == 0) &&
        fchmod(fd, QUEUE_MODE_COMPLETE) == 0 && fsync(fd) == 0 &&
        fsync_parent(w->path) == 0)
        rc = 0;
    int saved = errno;
    stream_abandon(w->stream);
    if (rc < 0 && w->named)
        unlink(w->path);
    free(w);
    errno = saved;
    return rc;
}

void queue_writer_abort(struct queue_writer *w)
{
    stream_abandon(w->stream);
    if (w->named)
        unlink(w->path);
    free(w);
}

/* --- reader --- */

#define ENVELOPE_RECORD_MAX 65536

static int envelope_add_attr(struct queue_envelope *env, char *payload)
{
    char *name, *value;
    if (rec_attr_split(payload, &name, &value) < 0)
        return 0;   /* unknown shapes are skipped so formats can grow */
    char **n = realloc(env->attr_names, (env->nattr + 1) * sizeof(*n));
    if (!n)
        return -1;
    env->attr_names = n;
    char **v = realloc(env->attr_values, (env->nattr + 1) * sizeof(*v));
    if (!v)
        return -1;
    env->attr_values = v;
    n[env->nattr] = strdup(name);
    v[env->nattr] = strdup(value);
    if (!n[env->nattr] || !v[env->nattr]) {
        free(n[env->nattr]);
        free(v[env->nattr]);
        return -1;
    }
    env->nattr++;
    return 0;
}

/* Per-recipient fields read before the R record they describe. */
struct pending_rcpt {
    char *orig;
    char *dsn_orcpt;
    int dsn_notify;
};

static void pending_rcpt_free(struct pending_rcpt *p)
{
    free(p->orig);
    free(p->dsn_orcpt);
    memset(p, 0, sizeof(*p));
}

static int envelope_add_rcpt(struct queue_envelope *env, const char *addr,
                             struct pending_rcpt *pend, off_t offset, int done, size_t max_rcpt)
{
    if (env->nrcpt >= max_rcpt)
        return -1;
    struct queue_rcpt *r = realloc(env->rcpt, (env->nrcpt + 1) * sizeof(*r));
    if (!r)
        return -1;
    env->rcpt = r;
    r[env->nrcpt] = (struct queue_rcpt){.offset = offset, .orig = pend->orig, .done = done,
                                        .dsn_orcpt = pend->dsn_orcpt,
                                        .dsn_notify = pend->dsn_notify};
    memset(pend, 0, sizeof(*pend));
    r[env->nrcpt].address = strdup(addr);
    if (!r[env->nrcpt].address)
        return -1;
    env->nrcpt++;
    return 0;
}

static int parse_size_record(struct queue_envelope *env, const char *payload, size_t len,
                             off_t off)
{
    long long size, offset, nrcpt, warn = 0;
    if (sscanf(payload, "%lld %lld %lld %lld", &size, &offset, &nrcpt, &warn) < 3)
        return -1;
    env->content_size = size;
    env->content_offset = (off_t)offset;
    env->warn_time = (time_t)warn;
    env->size_offset = off;
    env->warn_capable = len == REC_SIZE_WIDTH;
    return 0;
}

static int parse_time_record(struct queue_envelope *env, const char *payload)
{
    long sec, usec;
    if (sscanf(payload, "%ld.%ld", &sec, &usec) != 2)
        return -1;
    env->arrival.tv_sec = sec;
    env->arrival.tv_usec = usec;
    return 0;
}

/* One envelope record; 1 at the end record, 0 to go on, -1 on error. */
static int envelope_record(struct stream *s, struct queue_envelope *env, int type,
                           struct rec_buf *b, off_t off, struct pending_rcpt *pend,
                           size_t max_rcpt)
{
    switch (type) {
    case REC_SIZE: return parse_size_record(env, b->data, b->len, off);
    case REC_TIME: return parse_time_record(env, b->data);
    case REC_SENDER:
        free(env->sender);
        env->sender = strdup(b->data);
        return env->sender ? 0 : -1;
    case REC_ATTR: return envelope_add_attr(env, b->data);
    case REC_ORCPT:
        free(pend->orig);
        pend->orig = strdup(b->data);
        return pend->orig ? 0 : -1;
    case REC_DSN_ORCPT:
        free(pend->dsn_orcpt);
        pend->dsn_orcpt = strdup(b->data);
        return pend->dsn_orcpt ? 0 : -1;
    case REC_DSN_NOTIFY:
        pend->dsn_notify = atoi(b->data) & 15;
        return 0;
    case REC_RCPT:
    case REC_DONE: return envelope_add_rcpt(env, b->data, pend, off, type == REC_DONE, max_rcpt);
    case REC_CONTENT_START:
        env->content_offset = stream_tell(s);
        return 0;
    case REC_END: env->complete = 1; return 1;
    default: return 0;
    }
}

int queue_envelope_read(int fd, struct queue_envelope *env, size_t max_rcpt)
{
    memset(env, 0, sizeof(*env));
    int dupfd = dup(fd);
    if (dupfd < 0)
        return -1;
    struct stream *s = stream_open(dupfd, 0);
    if (!s) {
        close(dupfd);
        return -1;
    }
    stream_seek(s, 0);
    struct rec_buf b = {0};
    struct pending_rcpt pend = {0};
    int rc = -1;
    for (;;) {
        off_t off;
        unsigned char hdr[REC_MAX_HEADER];
        /* Content chunks are skipped without reading their payload. */
        int c = stream_peek(s);
        if (c < 0)
            break;
        if (c == REC_CONTENT) {
            size_t have = 1, len = 0;
            int t, h;
            hdr[0] = (unsigned char)stream_getc(s);
            while ((h = rec_header_decode(hdr, have, &t, &len)) == 0 && have < REC_MAX_HEADER &&
                   (c = stream_getc(s)) >= 0)
                hdr[have++] = (unsigned char)c;
            if (h <= 0 || stream_skip(s, len) < 0)
                break;
            continue;
        }
        int type = rec_get(s, &b, ENVELOPE_RECORD_MAX, &off);
        if (type < 0)
            break;
        int r = envelope_record(s, env, type, &b, off, &pend, max_rcpt);
        if (r < 0)
            break;
        if (r == 1) {
            rc = 0;
            break;
        }
    }
    pending_rcpt_free(&pend);
    rec_buf_free(&b);
    stream_abandon(s);
    return rc;
}

void queue_envelope_free(struct queue_envelope *env)
{
    free(env->sender);
    for (size_t i = 0; i < env->nattr; i++) {
        free(env->attr_names[i]);
        free(env->attr_values[i]);
    }
    free(env->attr_names);
    free(env->attr_values);
    for (size_t i = 0; i < env->nrcpt; i++) {
        free(env->rcpt[i].address);
        free(env->rcpt[i].orig);
        free(env->rcpt[i].dsn_orcpt);
    }
    free(env->rcpt);
    memset(env, 0, sizeof(*env));
}

const char *queue_envelope_attr(const struct queue_envelope *env, const char *name)
{
    for (size_t i = 0; i < env->nattr; i++)
        if (strcmp(env->attr_names[i], name) == 0)
            return env->attr_values[i];
    return NULL;
}

int queue_file_mark_warned(int fd, const struct queue_envelope *env, time_t when)
{
    char field[16];
    if (!env->warn_capable) {
        errno = EINVAL;
        return -1;
    }
    snprintf(field, sizeof(field), "%15lld", (long long)when);
    off_t at = env->size_offset + 2 + REC_SIZE_WARN_FIELD;
    return pwrite(fd, field, 15, at) == 15 ? 0 : -1;
}

int queue_file_mark_done(int fd, off_t rcpt_offset)
{
    char type = REC_DONE;
    return pwrite(fd, &type, 1, rcpt_offset) == 1 ? 0 : -1;
}

int queue_content_begin(struct stream *s, off_t content_offset)
{
    return stream_seek(s, content_offset);
}

int queue_content_next(struct stream *s, struct rec_buf *chunk)
{
    int type = rec_get(s, chunk, REC_CHUNK_SIZE, NULL);
    if (type == REC_CONTENT)
        return 1;
    if (type < 0)
        return -1;
    /* Anything after the content (extracted recipients, E) ends it. */
    return 0;
}
