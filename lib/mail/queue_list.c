/* queue_list.c - the queue listing shared by showq and postqueue (see
 * queue_list.h for the formats).
 *
 * A listing reads each queue directory once, then each message's envelope
 * and defer log; files that vanish meanwhile (delivered, moved) are simply
 * not shown, since the queue keeps moving under a reader that holds no
 * lock. Everything is written with stdio to the caller's FILE, so one
 * formatter serves a terminal (postqueue) and a socket (showq wraps its
 * stream in a FILE).
 */
#include "queue_list.h"

#include "address.h"
#include "config.h"
#include "dsn.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAIL_DAEMON "MAILER-DAEMON"
#define REASON_COLUMN 76   /* a reason's ')' ends in column 78 */

static const char *const listed_queues[] = {QUEUE_MAILDROP, QUEUE_ACTIVE, QUEUE_INCOMING,
                                            QUEUE_DEFERRED, QUEUE_HOLD};
#define NQUEUES (sizeof(listed_queues) / sizeof(listed_queues[0]))

/* --- finding messages --- */

void queue_msg_list_free(struct queue_msg_list *l)
{
    free(l->ref);
    memset(l, 0, sizeof(*l));
}

static int msg_list_add(struct queue_msg_list *l, const char *dir, const char *name)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct queue_msg_ref *r = realloc(l->ref, cap * sizeof(*r));
        if (!r)
            return -1;
        l->ref = r;
        l->cap = cap;
    }
    struct queue_msg_ref *r = &l->ref[l->count];
    if (snprintf(r->path, sizeof(r->path), "%s/%s", dir, name) >= (int)sizeof(r->path))
        return 0;
    size_t n = strnlen(name, sizeof(r->id) - 1);   /* a valid id always fits */
    memcpy(r->id, name, n);
    r->id[n] = 0;
    l->count++;
    return 0;
}

/* One entry of a queue directory: a queue file (its name is a queue id:
 * cleanup's temporary files and anything else are not messages), or in a
 * hashed directory (deferred/X/ID) one of its one-letter subdirectories. */
static int scan_dir(const char *dir, struct queue_msg_list *l, int hashed);

static int scan_entry(const char *dir, const char *name, struct queue_msg_list *l, int hashed)
{
    if (!hashed)
        return queue_id_valid(name) ? msg_list_add(l, dir, name) : 0;
    char sub[PATH_MAX];
    if (name[0] == '.' || strlen(name) != 1 ||
        snprintf(sub, sizeof(sub), "%s/%s", dir, name) >= (int)sizeof(sub))
        return 0;
    return scan_dir(sub, l, 0);
}

static int scan_dir(const char *dir, struct queue_msg_list *l, int hashed)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno != ENOENT)
            msg_warn("open directory %s: %s", dir, strerror(errno));
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL)
        rc = scan_entry(dir, de->d_name, l, hashed);
    closedir(d);
    return rc;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct queue_msg_ref *)a)->id, ((const struct queue_msg_ref *)b)->id);
}

int queue_msg_list_scan(const char *queue, struct queue_msg_list *l)
{
    char dir[PATH_MAX];
    memset(l, 0, sizeof(*l));
    if (queue_dir_path(dir, sizeof(dir), queue) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int rc = scan_dir(dir, l, strcmp(queue, QUEUE_DEFERRED) == 0);
    if (rc < 0) {
        errno = ENOMEM;
        return -1;
    }
    if (l->count > 1)
        qsort(l->ref, l->count, sizeof(*l->ref), by_id);
    return 0;
}

int queue_list_readable(void)
{
    char dir[PATH_MAX];
    for (size_t q = 0; q < NQUEUES; q++) {
        if (queue_dir_path(dir, sizeof(dir), listed_queues[q]) < 0) {
            errno = ENAMETOOLONG;
            return -1;
        }
        DIR *d = opendir(dir);
        if (d)
            closedir(d);
        else if (errno != ENOENT)
            return -1;
    }
    return 0;
}

int queue_list_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0)
        return QUEUE_LIST_TEXT;
    if (strcmp(name, "json") == 0)
        return QUEUE_LIST_JSON;
    return -1;
}

const char *queue_list_format_name(int format)
{
    return format == QUEUE_LIST_JSON ? "json" : "text";
}

/* --- one message as shown --- */

struct shown_rcpt {
    const char *address;   /* internal form */
    const char *orig;      /* original recipient or NULL */
    const char *reason;    /* deferral reason or NULL */
};

struct shown_msg {
    const char *queue;
    const char *id;
    long long arrival;
    long long size;
    const char *sender;    /* internal form; NULL for an unreadable maildrop file */
    unsigned uid;          /* maildrop: the owner */
    size_t nrcpt;
    struct shown_rcpt *rcpt;
};

/* Index of the recipient record at offset (offsets ascend in the file). */
static long rcpt_at_offset(const struct queue_envelope *env, long long offset)
{
    size_t lo = 0, hi = env->nrcpt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        long long o = (long long)env->rcpt[mid].offset;
        if (o == offset)
            return (long)mid;
        if (o < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static long rcpt_by_address(const struct queue_envelope *env, const char *addr,
                            const char *taken)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        if (!taken[i] && !env->rcpt[i].done && strcmp(env->rcpt[i].address, addr) == 0)
            return (long)i;
    return -1;
}

/* The recipients still to be delivered: first those with a deferral
 * reason, in defer log order, then the others in queue file order (as
 * Postfix shows them). Allocates m->rcpt (the caller frees it); the
 * strings stay owned by env and defer. */
static int collect_recipients(struct shown_msg *m, const struct queue_envelope *env,
                              const struct dsn_log *defer)
{
    char *taken = calloc(env->nrcpt ? env->nrcpt : 1, 1);
    m->rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*m->rcpt));
    if (!taken || !m->rcpt) {
        free(taken);
        return -1;
    }
    m->nrcpt = 0;
    for (size_t i = 0; i < defer->count; i++) {
        const struct dsn_entry *e = &defer->entry[i];
        long k = e->offset >= 0 ? rcpt_at_offset(env, e->offset)
                                : rcpt_by_address(env, e->rcpt, taken);
        if (k < 0 || taken[k] || env->rcpt[k].done)
            continue;
        taken[k] = 1;
        m->rcpt[m->nrcpt++] = (struct shown_rcpt){env->rcpt[k].address, env->rcpt[k].orig,
                                                  e->reason};
    }
    for (size_t k = 0; k < env->nrcpt; k++)
        if (!taken[k] && !env->rcpt[k].done)
            m->rcpt[m->nrcpt++] = (struct shown_rcpt){env->rcpt[k].address, env->rcpt[k].orig,
                                                      NULL};
    free(taken);
    return 0;
}

/* --- output: shared --- */

/* Address as shown: external form, MAILER-DAEMON for <>, control
 * characters as '?'. */
static void shown_address(char *out, size_t len, const char *internal)
{
    if (!*internal) {
        snprintf(out, len, "%s", MAIL_DAEMON);
        return;
    }
    if (address_quote(internal, out, len) < 0)
        snprintf(out, len, "%s", internal);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static void printable_text(char *out, size_t len, const char *in)
{
    snprintf(out, len, "%s", in);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* --- output: text --- */

struct formats {
    const char *string;   /* headings and recipient lines */
    const char *sender;   /* the message line */
};
static const struct formats short_formats = {"%-11s %7s %-20s %s\n", "%-11s %7lld %20.20s %s\n"};
static const struct formats long_formats = {"%-17s %8s %-19s %s\n", "%-17s %8lld %19.19s %s\n"};

struct listing {
    FILE *out;
    int format;
    const struct formats *fmt;
    int long_ids;
    unsigned long count;
    unsigned long long total;
    int out_errno;         /* of the first failed write to out, 0 while none */
};

static void print_heading(const struct listing *L)
{
    if (L->long_ids)
        fprintf(L->out, L->fmt->string, "----Queue ID-----", "--Size--", "---Arrival Time----",
                "--Sender/Recipient------");
    else
        fprintf(L->out, L->fmt->string, "-Queue ID-", "--Size--", "----Arrival Time----",
                "-Sender/Recipient-------");
}

static void print_text(const struct listing *L, const struct shown_msg *m)
{
    char id_status[QUEUE_ID_SIZE + 2], when[64], addr[2 * ADDRESS_MAX], reason[IPC_VALUE_MAX];
    time_t t = (time_t)m->arrival;
    struct tm tm;
    snprintf(id_status, sizeof(id_status), "%s%s", m->id,
             strcmp(m->queue, QUEUE_ACTIVE) == 0 ? "*" : strcmp(m->queue, QUEUE_HOLD) == 0 ? "!" : "");
    if (!localtime_r(&t, &tm) || !asctime_r(&tm, when))
        snprintf(when, sizeof(when), "??");
    if (m->sender)
        shown_address(addr, sizeof(addr), m->sender);
    else
        snprintf(addr, sizeof(addr), "(maildrop queue, sender UID %u)", m->uid);
    fprintf(L->out, L->fmt->sender, id_status, m->size, when, addr);
    const char *saved = "";
    for (size_t i = 0; i < m->nrcpt; i++) {
        const char *why = m->rcpt[i].reason ? m->rcpt[i].reason : "";
        if (strcmp(saved, why) != 0) {
            saved = why;
            printable_text(reason, sizeof(reason), *why ? why : "reason unavailable");
            int pad = REASON_COLUMN - (int)strlen(reason);
            fprintf(L->out, "%*s(%s)\n", pad > 0 ? pad : 0, "", reason);
        }
        shown_address(addr, sizeof(addr), m->rcpt[i].address);
        fprintf(L->out, L->fmt->string, "", "", "", addr);
    }
}

/* --- output: JSON --- */

/* Length of the UTF-8 sequence at p, or 0 when it is not one. */
static size_t utf8_sequence_length(const unsigned char *p)
{
    size_t n = *p >= 0xf0 && *p <= 0xf4 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 && *p < 0xe0 ? 2 : 0;
    if (n == 0 || *p >= 0xf5)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* One JSON string: escapes as Postfix's showq does, and '?' for bytes
 * that are not UTF-8, so every line parses. */
static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); continue;
        case '\\': fputs("\\\\", out); continue;
        case '\b': fputs("\\b", out); continue;
        case '\f': fputs("\\f", out); continue;
        case '\n': fputs("\\n", out); continue;
        case '\r': fputs("\\r", out); continue;
        case '\t': fputs("\\t", out); continue;
        }
        if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\u%04X", *p);
        } else if (*p < 0x80) {
            fputc(*p, out);
        } else {
            size_t n = utf8_sequence_length(p);
            if (n == 0) {
                fputc('?', out);
            } else {
                fwrite(p, 1, n, out);
                p += n - 1;
            }
        }
    }
    fputc('"', out);
}

static void print_json(FILE *out, const struct shown_msg *m)
{
    char addr[2 * ADDRESS_MAX];
    fputs("{\"queue_name\": ", out);
    json_string(out, m->queue);
    fputs(", \"queue_id\": ", out);
    json_string(out, m->id);
    fprintf(out, ", \"arrival_time\": %lld, \"message_size\": %lld, \"forced_expire\": false, "
            "\"sender\": ", m->arrival, m->size);
    if (m->sender)
        shown_address(addr, sizeof(addr), m->sender);
    else
        addr[0] = 0;
    json_string(out, addr);
    fputs(", \"recipients\": [", out);
    for (size_t i = 0; i < m->nrcpt; i++) {
        fputs(i ? ", {\"address\": " : "{\"address\": ", out);
        shown_address(addr, sizeof(addr), m->rcpt[i].address);
        json_string(out, addr);
        if (m->rcpt[i].orig && strcmp(m->rcpt[i].orig, m->rcpt[i].address) != 0) {
            fputs(", \"orig_address\": ", out);
            shown_address(addr, sizeof(addr), m->rcpt[i].orig);
            json_string(out, addr);
        }
        if (m->rcpt[i].reason && *m->rcpt[i].reason) {
            fputs(", \"delay_reason\": ", out);
            json_string(out, m->rcpt[i].reason);
        }
        fputc('}', out);
    }
    fputs("]}\n", out);
}

/* --- listing --- */

/* Remember why writing failed, right after the writes (errno set before
 * them to 0): later file operations overwrite errno, and stdio keeps only
 * the error flag. */
static void note_output_error(struct listing *L)
{
    if (ferror(L->out) && !L->out_errno)
        L->out_errno = errno ? errno : EIO;
}

static void emit(struct listing *L, const struct shown_msg *m)
{
    errno = 0;
    if (L->format == QUEUE_LIST_JSON) {
        print_json(L->out, m);
    } else {
        if (L->count == 0)
            print_heading(L);
        else
            fputc('\n', L->out);
        print_text(L, m);
    }
    note_output_error(L);
    L->count++;
    L->total += m->size > 0 ? (unsigned long long)m->size : 0;
}

/* A maildrop file that cannot be parsed is still listed, as Postfix
 * does, by its owner. */
static void emit_unreadable_maildrop(struct listing *L, const struct queue_msg_ref *r,
                                     const struct stat *st)
{
    struct shown_msg m = {.queue = QUEUE_MAILDROP, .id = r->id, .arrival = st->st_mtime,
                          .size = st->st_size, .uid = (unsigned)st->st_uid};
    emit(L, &m);
}

/* Show one message; 0, or -1 when memory ran out. */
static int show_message(struct listing *L, const char *queue, const struct queue_msg_ref *r)
{
    int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return 0;   /* gone meanwhile (delivered, moved), or not a message */
    }
    /* A file cleanup is still writing is not a message yet. */
    if (strcmp(queue, QUEUE_INCOMING) == 0 && (st.st_mode & 0777) != QUEUE_MODE_COMPLETE) {
        close(fd);
        return 0;
    }
    struct queue_envelope env;
    int ok = queue_envelope_read(fd, &env, QUEUE_LIST_MAX_RCPT) == 0 && env.sender;
    close(fd);
    if (!ok) {
        if (strcmp(queue, QUEUE_MAILDROP) == 0)
            emit_unreadable_maildrop(L, r, &st);
        queue_envelope_free(&env);
        return 0;
    }
    struct dsn_log defer;
    if (dsn_log_read(QUEUE_DEFER_LOG, r->id, &defer) < 0)
        memset(&defer, 0, sizeof(defer));
    struct shown_msg m = {.queue = queue, .id = r->id, .arrival = env.arrival.tv_sec,
                          .size = env.content_size > 0 ? env.content_size : st.st_size,
                          .sender = env.sender};
    int rc = collect_recipients(&m, &env, &defer);
    if (rc == 0)
        emit(L, &m);
    free(m.rcpt);
    dsn_log_free(&defer);
    queue_envelope_free(&env);
    return rc;
}

/* The messages of one queue; 0, or -1 with errno. */
static int show_queue(struct listing *L, const char *queue)
{
    struct queue_msg_list l;
    int rc = queue_msg_list_scan(queue, &l);
    for (size_t i = 0; rc == 0 && i < l.count; i++) {
        if (show_message(L, queue, &l.ref[i]) < 0) {
            errno = ENOMEM;
            rc = -1;
        } else if (L->out_errno) {
            errno = L->out_errno;
            rc = -1;
        }
    }
    queue_msg_list_free(&l);
    return rc;
}

static void print_summary(struct listing *L)
{
    errno = 0;
    if (L->count == 0)
        fputs("Mail queue is empty\n", L->out);
    else
        fprintf(L->out, "\n-- %llu Kbytes in %lu Request%s.\n", L->total / 1024, L->count,
                L->count == 1 ? "" : "s");
    note_output_error(L);
}

int queue_list_write(FILE *out, int format)
{
    struct listing L = {.out = out, .format = format};
    L.long_ids = var.enable_long_queue_ids;
    L.fmt = L.long_ids ? &long_formats : &short_formats;
    for (size_t q = 0; q < NQUEUES; q++)
        if (show_queue(&L, listed_queues[q]) < 0)
            return -1;
    if (format == QUEUE_LIST_TEXT)
        print_summary(&L);
    if (L.out_errno) {
        errno = L.out_errno;
        return -1;
    }
    return fflush(out) == 0 ? 0 : -1;
}
