/* dsn.c - per-message recipient status logs (see dsn.h).
 *
 * An entry is encoded into one memory buffer and appended with a single
 * write(2) on an O_APPEND descriptor, so concurrent bounce processes and a
 * crash can at worst leave a torn last entry, which the reader drops.
 */
#include "dsn.h"
#include "config.h"
#include "fsync_dir.h"
#include "ipc.h"
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const dsn_logs[] = {QUEUE_BOUNCE_LOG, QUEUE_DEFER_LOG, QUEUE_SUCCESS_LOG};
#define NLOGS (sizeof(dsn_logs) / sizeof(dsn_logs[0]))

int dsn_log_name_valid(const char *log)
{
    for (size_t i = 0; i < NLOGS; i++)
        if (strcmp(log, dsn_logs[i]) == 0)
            return 1;
    return 0;
}

int dsn_log_path(char *buf, size_t len, const char *log, const char *queue_id)
{
    if (!dsn_log_name_valid(log) || !queue_id_valid(queue_id))
        return -1;
    int n = snprintf(buf, len, "%s/%s/%s", var.queue_directory, log, queue_id);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int dsn_notify_wants(int notify, int what)
{
    if (notify & DSN_NOTIFY_NEVER)
        return 0;
    if (notify == 0)
        return what == DSN_NOTIFY_FAILURE || what == DSN_NOTIFY_DELAY;
    return (notify & what) != 0;
}

int dsn_notify_parse(const char *value)
{
    char buf[64];
    int mask = 0;
    if (strlen(value) >= sizeof(buf))
        return 0;
    snprintf(buf, sizeof(buf), "%s", value);
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int bit = strcasecmp(w, "NEVER") == 0     ? DSN_NOTIFY_NEVER
                  : strcasecmp(w, "SUCCESS") == 0 ? DSN_NOTIFY_SUCCESS
                  : strcasecmp(w, "FAILURE") == 0 ? DSN_NOTIFY_FAILURE
                  : strcasecmp(w, "DELAY") == 0   ? DSN_NOTIFY_DELAY
                                                  : 0;
        if (!bit || (mask & bit))
            return 0;
        mask |= bit;
    }
    /* NEVER stands alone (RFC 3461 section 4.1). */
    if ((mask & DSN_NOTIFY_NEVER) && mask != DSN_NOTIFY_NEVER)
        return 0;
    return mask;
}

/* --- appending --- */

/* Append one REC_ATTR record to a byte buffer. The value is cut to what a
 * reader accepts (IPC_VALUE_MAX), so one long reason cannot make the whole
 * entry unreadable. */
static int buf_add_attr(struct rec_buf *b, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (nl + 1 >= IPC_VALUE_MAX)
        return -1;
    if (nl + 1 + vl > IPC_VALUE_MAX)
        vl = IPC_VALUE_MAX - nl - 1;
    unsigned char hdr[REC_MAX_HEADER];
    size_t h = rec_header_encode(hdr, REC_ATTR, nl + 1 + vl);
    if (rec_buf_reserve(b, b->len + h + nl + 1 + vl) < 0)
        return -1;
    memcpy(b->data + b->len, hdr, h);
    memcpy(b->data + b->len + h, name, nl);
    b->data[b->len + h + nl] = '=';
    memcpy(b->data + b->len + h + nl + 1, value, vl);
    b->len += h + nl + 1 + vl;
    return 0;
}

static int buf_add_end(struct rec_buf *b)
{
    unsigned char hdr[REC_MAX_HEADER];
    size_t h = rec_header_encode(hdr, REC_END, 0);
    if (rec_buf_reserve(b, b->len + h) < 0)
        return -1;
    memcpy(b->data + b->len, hdr, h);
    b->len += h;
    return 0;
}

static int encode_entry(struct rec_buf *b, const struct dsn_entry *e)
{
    char notify[16], offset[32], when[32];
    snprintf(notify, sizeof(notify), "%d", e->dsn_notify);
    snprintf(offset, sizeof(offset), "%lld", e->offset);
    snprintf(when, sizeof(when), "%lld", (long long)(e->when ? e->when : time(NULL)));
    int rc = buf_add_attr(b, "rcpt", e->rcpt ? e->rcpt : "");
    if (rc == 0 && e->orig_rcpt)
        rc = buf_add_attr(b, "orig_rcpt", e->orig_rcpt);
    if (rc == 0 && e->dsn_orcpt)
        rc = buf_add_attr(b, "dsn_orcpt", e->dsn_orcpt);
    if (rc == 0 && e->dsn_notify)
        rc = buf_add_attr(b, "dsn_notify", notify);
    if (rc == 0)
        rc = buf_add_attr(b, "offset", offset);
    if (rc == 0)
        rc = buf_add_attr(b, "dsn", e->dsn ? e->dsn : "");
    if (rc == 0)
        rc = buf_add_attr(b, "reason", e->reason ? e->reason : "");
    if (rc == 0 && e->relay)
        rc = buf_add_attr(b, "relay", e->relay);
    if (rc == 0)
        rc = buf_add_attr(b, "time", when);
    return rc == 0 ? buf_add_end(b) : -1;
}

/* Open the log for appending, creating its directory (success/ is not
 * among the directories queue_dirs_create makes). *created tells whether
 * the file is new, so its directory entry must be made durable too. */
static int open_for_append(const char *path, const char *log, int *created)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    *created = 0;
    if (fd >= 0 || errno != ENOENT)
        return fd;
    char dir[PATH_MAX];
    if (queue_dir_path(dir, sizeof(dir), log) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (mkdir(dir, 0700) < 0 ? errno != EEXIST : fsync_new_dir(dir) < 0)
        return -1;
    *created = 1;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int dsn_log_append(const char *log, const char *queue_id, const struct dsn_entry *e)
{
    char path[PATH_MAX];
    if (dsn_log_path(path, sizeof(path), log, queue_id) < 0) {
        errno = EINVAL;
        return -1;
    }
    struct rec_buf b = {0};
    if (encode_entry(&b, e) < 0) {
        rec_buf_free(&b);
        errno = ENOMEM;
        return -1;
    }
    int created;
    int fd = open_for_append(path, log, &created);
    int rc = fd < 0 ? -1 : write_all(fd, b.data, b.len);
    int durable = strcmp(log, QUEUE_DEFER_LOG) != 0;
    if (rc == 0 && durable)
        rc = fsync(fd);
    if (rc == 0 && durable && created)
        rc = fsync_parent(path);
    int saved = errno;
    if (fd >= 0 && close(fd) < 0 && rc == 0) {
        saved = errno;
        rc = -1;
    }
    rec_buf_free(&b);
    errno = saved;
    return rc;
}

/* --- reading --- */

static void entry_free(struct dsn_entry *e)
{
    free(e->rcpt);
    free(e->orig_rcpt);
    free(e->dsn_orcpt);
    free(e->dsn);
    free(e->reason);
    free(e->relay);
    memset(e, 0, sizeof(*e));
}

void dsn_log_free(struct dsn_log *l)
{
    for (size_t i = 0; i < l->count; i++)
        entry_free(&l->entry[i]);
    free(l->entry);
    free(l->by_offset);
    memset(l, 0, sizeof(*l));
}

static int dup_opt(char **dst, const char *value)
{
    if (!value)
        return 0;
    *dst = strdup(value);
    return *dst ? 0 : -1;
}

/* An attribute list -> an entry that owns copies of the strings. */
static int entry_from_attrs(struct dsn_entry *e, const struct attr_list *a)
{
    memset(e, 0, sizeof(*e));
    const char *notify = attr_get(a, "dsn_notify"), *offset = attr_get(a, "offset");
    const char *when = attr_get(a, "time");
    e->dsn_notify = notify ? atoi(notify) & 15 : 0;
    e->offset = offset && *offset ? strtoll(offset, NULL, 10) : -1;
    e->when = when ? (time_t)strtoll(when, NULL, 10) : 0;
    if (dup_opt(&e->rcpt, attr_get(a, "rcpt") ? attr_get(a, "rcpt") : "") < 0 ||
        dup_opt(&e->orig_rcpt, attr_get(a, "orig_rcpt")) < 0 ||
        dup_opt(&e->dsn_orcpt, attr_get(a, "dsn_orcpt")) < 0 ||
        dup_opt(&e->dsn, attr_get(a, "dsn") ? attr_get(a, "dsn") : "") < 0 ||
        dup_opt(&e->reason, attr_get(a, "reason") ? attr_get(a, "reason") : "") < 0 ||
        dup_opt(&e->relay, attr_get(a, "relay")) < 0) {
        entry_free(e);
        return -1;
    }
    return 0;
}

static int read_entries(struct stream *s, struct dsn_log *out)
{
    size_t cap = 0;
    struct attr_list a;
    /* attr_list_read fails at EOF and on a torn last entry alike: both end
     * the log. */
    while (out->count < DSN_LOG_MAX_ENTRIES && attr_list_read(s, &a) == 0) {
        if (out->count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct dsn_entry *n = realloc(out->entry, ncap * sizeof(*n));
            if (!n) {
                attr_list_free(&a);
                return -1;
            }
            out->entry = n;
            cap = ncap;
        }
        int rc = entry_from_attrs(&out->entry[out->count], &a);
        attr_list_free(&a);
        if (rc < 0)
            return -1;
        out->count++;
    }
    return 0;
}

/* qsort context: entries are compared through their indices. */
static const struct dsn_entry *sort_entries;

static int by_offset_then_position(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    long long oi = sort_entries[i].offset, oj = sort_entries[j].offset;
    if (oi != oj)
        return oi < oj ? -1 : 1;
    return i < j ? -1 : i > j;
}

static size_t *sorted_indices(const struct dsn_log *l)
{
    size_t *idx = malloc((l->count ? l->count : 1) * sizeof(*idx));
    if (!idx)
        return NULL;
    for (size_t i = 0; i < l->count; i++)
        idx[i] = i;
    sort_entries = l->entry;
    qsort(idx, l->count, sizeof(*idx), by_offset_then_position);
    return idx;
}

/* Keep one entry per known offset: the latest status at the position of the
 * first entry. Entries without an offset are all kept. */
static int merge_repeats(struct dsn_log *l)
{
    size_t *idx = sorted_indices(l);
    char *gone = calloc(l->count ? l->count : 1, 1);
    if (!idx || !gone) {
        free(idx);
        free(gone);
        return -1;
    }
    for (size_t g = 0; g < l->count;) {
        size_t end = g + 1;
        while (end < l->count && l->entry[idx[end]].offset == l->entry[idx[g]].offset &&
               l->entry[idx[g]].offset >= 0)
            end++;
        if (end - g > 1) {
            size_t first = idx[g], last = idx[end - 1];
            for (size_t k = g; k < end - 1; k++)
                entry_free(&l->entry[idx[k]]);
            l->entry[first] = l->entry[last];
            memset(&l->entry[last], 0, sizeof(l->entry[last]));
            for (size_t k = g + 1; k < end; k++)
                gone[idx[k]] = 1;
        }
        g = end;
    }
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++)
        if (!gone[i])
            l->entry[n++] = l->entry[i];
    l->count = n;
    free(idx);
    free(gone);
    l->by_offset = sorted_indices(l);
    return l->by_offset ? 0 : -1;
}

int dsn_log_read(const char *log, const char *queue_id, struct dsn_log *out)
{
    memset(out, 0, sizeof(*out));
    char path[PATH_MAX];
    if (dsn_log_path(path, sizeof(path), log, queue_id) < 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? merge_repeats(out) : -1;
    struct stream *s = stream_open(fd, 0);
    if (!s) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    int rc = read_entries(s, out);
    stream_abandon(s);
    if (rc == 0)
        rc = merge_repeats(out);
    if (rc < 0) {
        dsn_log_free(out);
        errno = ENOMEM;
    }
    return rc;
}

const struct dsn_entry *dsn_log_find(const struct dsn_log *l, long long offset)
{
    size_t lo = 0, hi = l->by_offset ? l->count : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct dsn_entry *e = &l->entry[l->by_offset[mid]];
        if (e->offset == offset)
            return offset >= 0 ? e : NULL;
        if (e->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* --- removing and renaming --- */

int dsn_log_remove(const char *log, const char *queue_id)
{
    char path[PATH_MAX];
    if (dsn_log_path(path, sizeof(path), log, queue_id) < 0) {
        errno = EINVAL;
        return -1;
    }
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

int dsn_log_remove_all(const char *queue_id)
{
    int failed = 0;
    for (size_t i = 0; i < NLOGS; i++)
        failed += dsn_log_remove(dsn_logs[i], queue_id) < 0;
    return failed;
}

int dsn_log_rename_all(const char *old_id, const char *new_id)
{
    int failed = 0;
    for (size_t i = 0; i < NLOGS; i++) {
        char from[PATH_MAX], to[PATH_MAX];
        if (dsn_log_path(from, sizeof(from), dsn_logs[i], old_id) < 0 ||
            dsn_log_path(to, sizeof(to), dsn_logs[i], new_id) < 0) {
            failed++;
            continue;
        }
        if (rename(from, to) < 0 && errno != ENOENT)
            failed++;
    }
    return failed;
}
