/* pickup - takes locally submitted mail out of maildrop/ and hands it to
 * cleanup (docs/DESIGN.md, "Processes and privileges").
 *
 * A long-running fifo service (master.cf: pickup fifo n - n 60 1 pickup):
 * it scans maildrop/ at start and whenever a byte arrives on public/pickup
 * (postdrop's wake-up, master's every 60 s). Each file (lib/maildrop.h) is
 * first read through and checked; one that does not parse is logged and
 * moved to queue_directory/corrupt/, never dropped. A good one is streamed
 * to cleanup (cleanup_protocol, lib/ipc.h) as a local submission:
 * origin=local, uid = the file's owner (not what the file says), a
 * Received: header first, then the file's envelope and content. The file
 * is removed only after cleanup answered status=0; a temporary failure
 * leaves it for the next scan, a permanent refusal moves it aside like a
 * malformed file.
 *
 * Log lines as Postfix: "QUEUEID: uid=1000 from=<user>".
 */
#include "address.h"
#include "mail_date.h"
#include "cleanup_client.h"
#include "config.h"
#include "log.h"
#include "maildrop.h"
#include "queue_file.h"
#include "queue_id.h"
#include "receive_override.h"
#include "record.h"
#include "service.h"
#include "stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCAN_BATCH 1000              /* files taken per directory read */
#define STALE_TMP_SECS (24 * 3600)   /* older temporary files: postdrop died */

enum outcome { DONE, RETRY_LATER, MOVE_ASIDE };

struct dropfile {
    const char *name;
    char path[PATH_MAX];
    int fd;
    long uid;                        /* the owner: who submitted it */
    char sender[ADDRESS_MAX];
    char why[256];                   /* MOVE_ASIDE: the reason */
};

static void move_aside(const struct dropfile *f)
{
    char to[PATH_MAX];
    if (queue_path(to, sizeof(to), QUEUE_CORRUPT, f->name) == 0 && rename(f->path, to) == 0)
        msg_warn("%s/%s: %s; moved to %s/%s", QUEUE_MAILDROP, f->name, f->why, QUEUE_CORRUPT,
                 f->name);
    else
        msg_warn("%s/%s: %s; cannot move it to %s/: %s", QUEUE_MAILDROP, f->name, f->why,
                 QUEUE_CORRUPT, strerror(errno));
}

/* A stream of its own over the file, from the start. Caller closes it. */
static struct stream *file_stream(const struct dropfile *f)
{
    int fd = dup(f->fd);
    if (fd < 0)
        return NULL;
    struct stream *s = stream_open(fd, 0);
    if (!s || stream_seek(s, 0) < 0) {
        if (s)
            stream_abandon(s);
        else
            close(fd);
        return NULL;
    }
    return s;
}

static const char *read_error(int type)
{
    switch (type) {
    case REC_EOF: return "no end record";
    case REC_TOOBIG: return "record too large";
    default: return "malformed record";
    }
}

/* Read the whole file through the maildrop checks; 0 when it is good
 * (f->sender then holds the sender), -1 with f->why when it is not. */
static int check_file(struct dropfile *f)
{
    struct stream *s = file_stream(f);
    struct maildrop_check chk;
    struct rec_buf b = {0};
    int rc = -1;
    if (!s) {
        snprintf(f->why, sizeof(f->why), "cannot read: %s", strerror(errno));
        return -1;
    }
    maildrop_check_init(&chk, 1, var.message_size_limit);
    for (;;) {
        int type = rec_get(s, &b, REC_CHUNK_SIZE, NULL);
        if (type < 0) {
            snprintf(f->why, sizeof(f->why), "%s", read_error(type));
            break;
        }
        int r = maildrop_check_record(&chk, type, b.data, b.len);
        if (r < 0) {
            snprintf(f->why, sizeof(f->why), "%s", chk.error);
            break;
        }
        if (type == REC_SENDER)
            snprintf(f->sender, sizeof(f->sender), "%s", b.data);
        if (r == 1) {
            if (stream_getc(s) >= 0)
                snprintf(f->why, sizeof(f->why), "data after the end record");
            else
                rc = 0;
            break;
        }
    }
    rec_buf_free(&b);
    stream_abandon(s);
    return rc;
}

/* Our trace header, the first line of the content. */
static int put_received(struct cleanup_client *c, const struct dropfile *f, const char *qid)
{
    char date[64], line[512];
    mail_date(date, sizeof(date), time(NULL));
    int n = snprintf(line, sizeof(line), "Received: by %s (%s, from userid %ld)\n\tid %s; %s\n",
                     var.myhostname, var.mail_name, f->uid, qid, date);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -1;
    return cleanup_client_write(c, line, (size_t)n);
}

/* One record of the file, as cleanup gets it. The file's own uid and any
 * attribute a user may not set are left out: pickup vouches for those. */
static int forward_record(struct cleanup_client *c, const struct dropfile *f, const char *qid,
                          int type, struct rec_buf *b)
{
    char uid[32];
    char *name, *value;
    switch (type) {
    case REC_TIME:
        return 0;   /* cleanup stamps its own arrival time */
    case REC_SENDER:
        snprintf(uid, sizeof(uid), "%ld", f->uid);
        if (cleanup_client_record(c, type, b->data, b->len) < 0 ||
            cleanup_client_attr(c, ATTR_ORIGIN, "local") < 0)
            return -1;
        return cleanup_client_attr(c, ATTR_UID, uid);
    case REC_ATTR:
        if (rec_attr_split(b->data, &name, &value) < 0 || !maildrop_attr_ok(name, value))
            return 0;
        return cleanup_client_attr(c, name, value);
    case REC_CONTENT_START:
        /* pickup's content_filter (main.cf or -o), as Postfix's pickup */
        if (*var.content_filter &&
            cleanup_client_attr(c, ATTR_CONTENT_FILTER, var.content_filter) < 0)
            return -1;
        if (cleanup_client_record(c, type, "", 0) < 0)
            return -1;
        return put_received(c, f, qid);
    case REC_CONTENT:
        return cleanup_client_write(c, b->data, b->len);
    default:
        return cleanup_client_record(c, type, b->data, b->len);
    }
}

/* Stream the (already checked) file to cleanup, up to its end record. */
static int forward_file(struct cleanup_client *c, const struct dropfile *f, const char *qid)
{
    struct stream *s = file_stream(f);
    struct rec_buf b = {0};
    int rc = -1;
    if (!s)
        return -1;
    for (;;) {
        int type = rec_get(s, &b, REC_CHUNK_SIZE, NULL);
        if (type == REC_END) {
            rc = 0;
            break;
        }
        if (type < 0 || forward_record(c, f, qid, type, &b) < 0)
            break;
    }
    rec_buf_free(&b);
    stream_abandon(s);
    return rc;
}

/* Give the file to cleanup; a rejection (5) moves it aside. */
static enum outcome submit(struct dropfile *f)
{
    char why[512], qid[QUEUE_ID_SIZE];
    struct cleanup_client *c = cleanup_client_open_flags(receive_override_mask(), why,
                                                         sizeof(why));
    if (!c) {
        msg_warn("%s", why);
        return RETRY_LATER;
    }
    snprintf(qid, sizeof(qid), "%s", cleanup_client_queue_id(c));
    msg_info("%s: uid=%ld from=<%s>", qid, f->uid, f->sender);
    if (forward_file(c, f, qid) < 0) {
        msg_warn("%s: lost connection to cleanup or cannot read %s/%s", qid, QUEUE_MAILDROP,
                 f->name);
        cleanup_client_abort(c);   /* closing early makes cleanup drop its file */
        return RETRY_LATER;
    }
    int status = cleanup_client_finish(c, why, sizeof(why));
    if (status == 0)
        return DONE;
    if (status == 5) {
        snprintf(f->why, sizeof(f->why), "rejected by cleanup: %.200s", why);
        return MOVE_ASIDE;
    }
    msg_warn("%s: cleanup: %s", qid, why);
    return RETRY_LATER;
}

enum open_result { OPENED, VANISHED, UNFIT, UNREADABLE };

/* Open a maildrop file without following links or blocking on a fifo;
 * anything but a plain file with one link is unfit (f->why says why). */
static enum open_result open_file(struct dropfile *f)
{
    struct stat st;
    f->fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        snprintf(f->why, sizeof(f->why), "cannot open: %s", strerror(e));
        return e == ENOENT ? VANISHED : e == ELOOP ? UNFIT : UNREADABLE;
    }
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        snprintf(f->why, sizeof(f->why), "not a plain file with one link");
        return UNFIT;
    }
    f->uid = (long)st.st_uid;
    return OPENED;
}

/* Take one maildrop file. -1 when the scan should stop (cleanup is not
 * available), else 0. */
static int take_file(const char *name)
{
    struct dropfile f = {.name = name, .fd = -1};
    enum outcome o = DONE;
    if (queue_path(f.path, sizeof(f.path), QUEUE_MAILDROP, name) < 0)
        return 0;
    switch (open_file(&f)) {
    case OPENED:
        o = check_file(&f) < 0 ? MOVE_ASIDE : submit(&f);
        if (o == DONE && unlink(f.path) < 0 && errno != ENOENT)
            msg_warn("remove %s: %s", f.path, strerror(errno));
        break;
    case VANISHED:
        break;
    case UNFIT:
        o = MOVE_ASIDE;
        break;
    case UNREADABLE:
        msg_warn("%s/%s: %s", QUEUE_MAILDROP, name, f.why);
        break;
    }
    if (o == MOVE_ASIDE)
        move_aside(&f);
    if (f.fd >= 0)
        close(f.fd);
    return o == RETRY_LATER ? -1 : 0;
}

/* Temporary files are postdrop's work in progress; one left for a day
 * belonged to a postdrop that died without removing it. */
static void expire_tmp(const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if (queue_path(path, sizeof(path), QUEUE_MAILDROP, name) < 0 || lstat(path, &st) < 0)
        return;
    if (time(NULL) - st.st_mtime < STALE_TMP_SECS)
        return;
    if (unlink(path) == 0)
        msg_warn("%s/%s: removed an incomplete file that postdrop left behind", QUEUE_MAILDROP,
                 name);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read up to SCAN_BATCH names of complete files, oldest first (queue
 * ids sort by arrival). Others are expired or moved aside on the way. */
static size_t read_names(char **names)
{
    char dir[PATH_MAX];
    size_t n = 0;
    if (queue_dir_path(dir, sizeof(dir), QUEUE_MAILDROP) < 0)
        return 0;
    DIR *d = opendir(dir);
    if (!d) {
        msg_warn("open %s: %s", dir, strerror(errno));
        return 0;
    }
    struct dirent *de;
    while (n < SCAN_BATCH && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strncmp(de->d_name, MAILDROP_TMP_PREFIX, strlen(MAILDROP_TMP_PREFIX)) == 0) {
            expire_tmp(de->d_name);
            continue;
        }
        if (!queue_id_valid(de->d_name)) {
            struct dropfile f = {.name = de->d_name};
            if (queue_path(f.path, sizeof(f.path), QUEUE_MAILDROP, de->d_name) == 0) {
                snprintf(f.why, sizeof(f.why), "unexpected file name");
                move_aside(&f);
            }
            continue;
        }
        if ((names[n] = strdup(de->d_name)) != NULL)
            n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), name_cmp);
    return n;
}

/* Take everything in maildrop/, batch by batch, until it is empty, cleanup
 * fails, or master goes away. */
static void scan(void)
{
    static char *names[SCAN_BATCH];
    service_report(0);
    for (;;) {
        size_t n = read_names(names), i;
        int stop = 0;
        for (i = 0; i < n && !stop; i++)
            stop = take_file(names[i]) < 0 || service_master_gone();
        for (size_t j = 0; j < n; j++)
            free(names[j]);
        if (stop || n < SCAN_BATCH)
            break;
    }
    service_report(1);
}

/* Empty the fifo: one scan answers every wake-up that came meanwhile. */
static void drain_fifo(void)
{
    char buf[256];
    while (read(SERVICE_LISTEN_FD, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
        ;
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "pickup", 0);
    for (;;) {
        scan();
        if (service_master_gone())
            return 0;
        struct pollfd p[2] = {{.fd = SERVICE_LISTEN_FD, .events = POLLIN},
                              {.fd = SERVICE_ALIVE_FD, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            msg_fatal("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            return 0;
        drain_fifo();
    }
}
