/* postdrop - the set-gid helper through which local users submit mail
 * (docs/DESIGN.md, "Processes and privileges"); sendmail runs it.
 *
 *   postdrop [-c config_dir] [-r] [-v]
 *
 * Reads one message as maildrop records (maildrop.h, without the T
 * record) on standard input, checks every record, and writes it to
 * queue_directory/maildrop/: first as tmp.PID.N (mode 0600); once the end
 * record is in, mode 0444, fsync, rename to the final name (a queue id of
 * the arrival time and the inode), then a wake-up byte to public/pickup.
 * Anything short of that (bad input, a signal, an I/O error) removes the
 * file and exits with a sysexits(3) status that sendmail passes on. The
 * mail system need not be running: the file waits in maildrop/.
 *
 * Privilege: set-gid postdrop only lets the process create files in
 * maildrop/ (mode 1730) and write to public/pickup. The uid in the file is
 * the real uid, the file belongs to the caller, and attributes a user must
 * not set (uid, origin, client...) are dropped. When the set-gid bit is in
 * effect for anyone but root, a configuration directory other than the
 * default is used only if it and every directory above it belong to root
 * and are not writable by others (sticky directories like /tmp excepted),
 * so a user cannot aim postdrop at a main.cf of their own.
 */
#include "config.h"
#include "fsync_dir.h"
#include "ipc.h"
#include "log.h"
#include "maildrop.h"
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#define TMP_ATTEMPTS 100

/* The file being written: removed by die() and by the signal handler. */
static char tmp_path[PATH_MAX];
static volatile sig_atomic_t tmp_live;

static void remove_tmp(void)
{
    if (tmp_live) {
        tmp_live = 0;
        unlink(tmp_path);
    }
}

static void on_signal(int sig)
{
    if (tmp_live)
        unlink(tmp_path);
    _exit(EX_TEMPFAIL);
}

static noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static noreturn void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    msg_vlog("fatal", fmt, ap);
    va_end(ap);
    remove_tmp();
    exit(status);
}

static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            exit(EX_OSERR);
}

/* Whether path and every directory above it belong to root and cannot be
 * changed by anyone else (group/other write only with the sticky bit). */
static int chain_trusted(const char *path)
{
    char p[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof(p))
        return 0;
    memcpy(p, path, len + 1);
    for (;;) {
        struct stat st;
        if (stat(p, &st) < 0 || st.st_uid != 0)
            return 0;
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX)))
            return 0;
        char *slash = strrchr(p, '/');
        if (!slash || p[1] == 0)
            return 1;
        if (slash == p)
            slash[1] = 0;
        else
            *slash = 0;
    }
}

/* The configuration directory to read: as found, unless set-gid
 * privilege must be protected from it (see the top of this file). The
 * resolved path is returned so nothing can be swapped in after the check.
 * Static storage. */
static const char *choose_config_dir(const char *given)
{
    static char real[PATH_MAX];
    const char *dir = config_find_dir(given);
    if (getegid() == getgid() || getuid() == 0 || strcmp(dir, DEF_CONFIG_DIR) == 0)
        return dir;
    char maincf[PATH_MAX + 16];
    if (!realpath(dir, real))
        die(EX_USAGE, "config directory %s: %s", dir, strerror(errno));
    snprintf(maincf, sizeof(maincf), "%s/main.cf", real);
    if (!chain_trusted(maincf))
        die(EX_NOPERM, "config directory %s is not trusted: it and the directories above it "
                       "must belong to root and be writable by nobody else", dir);
    return real;
}

/* Log to maillog_file only when the caller may write it; a user's
 * postdrop falls back to syslog rather than complain on stderr. */
static void open_log(void)
{
    log_set_syslog_name(var.syslog_name);
    const char *path = var.maillog_file;
    if (path && *path && access(path, W_OK) == 0)
        log_set_file(path);
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Create maildrop/tmp.PID.N exclusively; the caller owns the fd. */
static int create_tmp(void)
{
    for (int attempt = 0; attempt < TMP_ATTEMPTS; attempt++) {
        char name[64], path[PATH_MAX];
        snprintf(name, sizeof(name), MAILDROP_TMP_PREFIX "%ld.%d", (long)getpid(), attempt);
        if (queue_path(path, sizeof(path), QUEUE_MAILDROP, name) < 0)
            die(EX_CONFIG, "queue_directory is too long");
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            memcpy(tmp_path, path, sizeof(tmp_path));
            tmp_live = 1;
            return fd;
        }
        if (errno != EEXIST)
            die(EX_UNAVAILABLE, "create file %s: %s", path, strerror(errno));
    }
    die(EX_UNAVAILABLE, "cannot create a unique file in %s", QUEUE_MAILDROP);
}

static void put_or_die(struct stream *out, int type, const void *data, size_t len)
{
    if (rec_put(out, type, data, len) < 0)
        die(EX_TEMPFAIL, "write %s: %s", tmp_path, strerror(errno));
}

/* An attribute from the caller: kept when a user may set it. */
static void copy_attr(struct stream *out, struct rec_buf *b)
{
    char *name, *value;
    if (rec_attr_split(b->data, &name, &value) == 0 && maildrop_attr_ok(name, value)) {
        char *eq = name + strlen(name);
        *eq = '=';   /* undo the split: the record goes out whole */
        put_or_die(out, REC_ATTR, b->data, b->len);
        return;
    }
    msg_warn("uid=%ld: ignoring attribute %.100s", (long)getuid(), b->data);
}

/* Copy records from in to out, checking each; returns at the end record. */
static void copy_records(struct stream *in, struct stream *out)
{
    struct maildrop_check chk;
    struct rec_buf b = {0};
    long uid = (long)getuid();
    maildrop_check_init(&chk, 0, var.message_size_limit);
    for (;;) {
        int type = rec_get(in, &b, REC_CHUNK_SIZE, NULL);
        if (type == REC_EOF)
            die(EX_DATAERR, "uid=%ld: premature end of input", uid);
        if (type < 0)
            die(EX_DATAERR, "uid=%ld: malformed input", uid);
        int r = maildrop_check_record(&chk, type, b.data, b.len);
        if (r < 0)
            die(EX_DATAERR, "uid=%ld: %s", uid, chk.error);
        if (type == REC_ATTR) {
            copy_attr(out, &b);
            continue;
        }
        put_or_die(out, type, b.data, b.len);
        if (type == REC_SENDER && rec_putf(out, REC_ATTR, "%s=%ld", ATTR_UID, uid) < 0)
            die(EX_TEMPFAIL, "write %s: %s", tmp_path, strerror(errno));
        if (r == 1)
            break;
    }
    rec_buf_free(&b);
}

/* Make the file durable and give it its final name. The directory may be
 * unreadable to us (mode 1730 in system mode), so it cannot always be
 * opened for fsync; then the file is fsynced again after the rename,
 * which on journaling file systems commits the rename with it. */
static void commit_file(struct stream *out, const struct timeval *arrival)
{
    int fd = stream_fd(out);
    struct stat st;
    char final[PATH_MAX], id[QUEUE_ID_SIZE];
    if (stream_flush(out) < 0 || fchmod(fd, 0444) < 0 || fsync(fd) < 0 || fstat(fd, &st) < 0)
        die(EX_TEMPFAIL, "write %s: %s", tmp_path, strerror(errno));
    queue_id_make(id, arrival, st.st_ino);
    if (queue_path(final, sizeof(final), QUEUE_MAILDROP, id) < 0)
        die(EX_CONFIG, "queue_directory is too long");
    if (rename(tmp_path, final) < 0)
        die(EX_TEMPFAIL, "rename %s to %s: %s", tmp_path, final, strerror(errno));
    tmp_live = 0;
    if (fsync_parent(final) < 0 && (errno != EACCES || fsync(fd) < 0)) {
        int e = errno;
        unlink(final);
        die(EX_TEMPFAIL, "fsync %s: %s", final, strerror(e));
    }
    if (stream_close(out) < 0)
        msg_warn("close %s: %s", final, strerror(errno));
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int opt;
    umask(077);
    ensure_std_fds();
    log_init("postdrop", LOG_TO_STDERR);
    while ((opt = getopt(argc, argv, "c:rv")) != -1) {
        switch (opt) {
        case 'c': dir = optarg; break;
        case 'r': break;   /* the record protocol is the only one */
        case 'v': break;
        default: die(EX_USAGE, "usage: postdrop [-c config_dir] [-r] [-v]");
        }
    }
    char err[512];
    if (config_try_load(choose_config_dir(dir), NULL, 0, err, sizeof(err)) < 0)
        die(EX_CONFIG, "%s", err);
    open_log();
    catch_signals();
    struct timeval arrival;
    gettimeofday(&arrival, NULL);
    struct stream *in = stream_open(0, 0);   /* sendmail paces itself: no timeout */
    int fd = create_tmp();
    struct stream *out = stream_open(fd, 0);
    if (!in || !out)
        die(EX_OSERR, "out of memory");
    if (rec_putf(out, REC_TIME, "%ld.%06ld", (long)arrival.tv_sec, (long)arrival.tv_usec) < 0)
        die(EX_TEMPFAIL, "write %s: %s", tmp_path, strerror(errno));
    copy_records(in, out);
    commit_file(out, &arrival);
    stream_abandon(in);
    /* Nobody listens while the mail system is down; pickup scans at start. */
    ipc_trigger(IPC_PUBLIC, "pickup", 'W');
    return 0;
}
