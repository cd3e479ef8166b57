/* queue_list.c - the queue listing: walking the queue for showq and
 * postqueue, and printing it for postqueue (see queue_list.h).
 *
 * A walk reads each queue directory once, then each message's envelope
 * and defer log; files that vanish meanwhile (delivered, moved) are simply
 * not shown, since the queue keeps moving under a reader that holds no
 * lock. Printing writes with stdio to the caller's FILE.
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

static char *shown_address_dup(const char *internal)
{
    char addr[2 * ADDRESS_MAX];
    shown_address(addr, sizeof(addr), internal);
    return strdup(addr);
}

/* An entry being built from a queue file: it owns the shown addresses;
 * reasons stay owned by the defer log. */
struct built_entry {
    struct queue_list_entry e;
    char *sender;
    struct queue_list_rcpt *rcpt;
};

static void built_entry_free(struct built_entry *b)
{
    for (size_t i = 0; i < b->e.nrcpt; i++)
        free((char *)b->rcpt[i].address);
    free(b->rcpt);
    free(b->sender);
}

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

static int add_recipient(struct built_entry *b, const char *internal, const char *reason)
{
    char *addr = shown_address_dup(internal);
    if (!addr)
        return -1;
    b->rcpt[b->e.nrcpt++] = (struct queue_list_rcpt){addr, reason ? reason : ""};
    return 0;
}

/* The recipients still to be delivered: first those with a deferral
 * reason, in defer log order, then the others in queue file order (as
 * Postfix shows them). */
static int collect_recipients(struct built_entry *b, const struct queue_envelope *env,
                              const struct dsn_log *defer)
{
    char *taken = calloc(env->nrcpt ? env->nrcpt : 1, 1);
    b->rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*b->rcpt));
    if (!taken || !b->rcpt) {
        free(taken);
        return -1;
    }
    b->e.rcpt = b->rcpt;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < defer->count; i++) {
        const struct dsn_entry *d = &defer->entry[i];
        long k = d->offset >= 0 ? rcpt_at_offset(env, d->offset)
                                : rcpt_by_address(env, d->rcpt, taken);
        if (k < 0 || taken[k] || env->rcpt[k].done)
            continue;
        taken[k] = 1;
        rc = add_recipient(b, env->rcpt[k].address, d->reason);
    }
    for (size_t k = 0; rc == 0 && k < env->nrcpt; k++)
        if (!taken[k] && !env->rcpt[k].done)
            rc = add_recipient(b, env->rcpt[k].address, NULL);
    free(taken);
    return rc;
}

/* --- walking the queue --- */

/* A maildrop file that cannot be parsed is still listed, by its owner
 * (Postfix's wording). */
static int report_unreadable_maildrop(const struct queue_msg_ref *r, const struct stat *st,
                                      queue_list_fn fn, void *ctx)
{
    char sender[64];
    snprintf(sender, sizeof(sender), "(maildrop queue, sender UID %u)", (unsigned)st->st_uid);
    struct queue_list_entry e = {.queue = QUEUE_MAILDROP, .id = r->id, .arrival = st->st_mtime,
                                 .size = st->st_size, .sender = sender};
    return fn(&e, ctx);
}

/* Open a message file for listing; -1 when it is gone meanwhile
 * (delivered, moved), is no regular file, or is one cleanup is still
 * writing (not a message yet). */
static int open_message(const char *queue, const struct queue_msg_ref *r, struct stat *st)
{
    int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) ||
        (strcmp(queue, QUEUE_INCOMING) == 0 && (st->st_mode & 0777) != QUEUE_MODE_COMPLETE)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Report one message; 0, -1 (ENOMEM) or fn's nonzero result. */
static int walk_message(const char *queue, const struct queue_msg_ref *r, queue_list_fn fn,
                        void *ctx)
{
    struct stat st;
    int fd = open_message(queue, r, &st);
    if (fd < 0)
        return 0;
    struct queue_envelope env;
    int ok = queue_envelope_read(fd, &env, QUEUE_LIST_MAX_RCPT) == 0 && env.sender;
    close(fd);
    if (!ok) {
        queue_envelope_free(&env);
        return strcmp(queue, QUEUE_MAILDROP) == 0 ? report_unreadable_maildrop(r, &st, fn, ctx)
                                                  : 0;
    }
    struct dsn_log defer;
    if (dsn_log_read(QUEUE_DEFER_LOG, r->id, &defer) < 0)
        memset(&defer, 0, sizeof(defer));
    struct built_entry b = {.e = {.queue = queue, .id = r->id, .arrival = env.arrival.tv_sec,
                                  .size = env.content_size > 0 ? env.content_size : st.st_size}};
    b.sender = shown_address_dup(env.sender);
    b.e.sender = b.sender;
    int rc;
    if (!b.sender || collect_recipients(&b, &env, &defer) < 0) {
        errno = ENOMEM;
        rc = -1;
    } else {
        rc = fn(&b.e, ctx);
    }
    int saved = errno;
    built_entry_free(&b);
    dsn_log_free(&defer);
    queue_envelope_free(&env);
    errno = saved;
    return rc;
}

int queue_list_walk(queue_list_fn fn, void *ctx)
{
    for (size_t q = 0; q < NQUEUES; q++) {
        struct queue_msg_list l;
        int rc = queue_msg_list_scan(listed_queues[q], &l);
        for (size_t i = 0; rc == 0 && i < l.count; i++)
            rc = walk_message(listed_queues[q], &l.ref[i], fn, ctx);
        queue_msg_list_free(&l);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- output: text --- */

struct formats {
    const char *string;   /* headings and recipient lines */
    const char *sender;   /* the message line */
};
static const struct formats short_formats = {"%-11s %7s %-20s %s\n", "%-11s %7lld %20.20s %s\n"};
static const struct formats long_formats = {"%-17s %8s %-19s %s\n", "%-17s %8lld %19.19s %s\n"};

static const struct formats *formats_of(const struct queue_list_printer *p)
{
    return p->long_ids ? &long_formats : &short_formats;
}

static void print_heading(const struct queue_list_printer *p)
{
    if (p->long_ids)
        fprintf(p->out, long_formats.string, "----Queue ID-----", "--Size--",
                "---Arrival Time----", "--Sender/Recipient------");
    else
        fprintf(p->out, short_formats.string, "-Queue ID-", "--Size--", "----Arrival Time----",
                "-Sender/Recipient-------");
}

static void printable_text(char *out, size_t len, const char *in)
{
    snprintf(out, len, "%s", in);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static void print_text(const struct queue_list_printer *p, const struct queue_list_entry *e)
{
    char id_status[QUEUE_ID_SIZE + 2], when[64], reason[IPC_VALUE_MAX];
    time_t t = (time_t)e->arrival;
    struct tm tm;
    snprintf(id_status, sizeof(id_status), "%s%s", e->id,
             strcmp(e->queue, QUEUE_ACTIVE) == 0 ? "*" : strcmp(e->queue, QUEUE_HOLD) == 0 ? "!" : "");
    if (!localtime_r(&t, &tm) || !asctime_r(&tm, when))
        snprintf(when, sizeof(when), "??");
    fprintf(p->out, formats_of(p)->sender, id_status, e->size, when, e->sender);
    const char *saved = "";
    for (size_t i = 0; i < e->nrcpt; i++) {
        const char *why = e->rcpt[i].reason;
        if (strcmp(saved, why) != 0) {
            saved = why;
            printable_text(reason, sizeof(reason), *why ? why : "reason unavailable");
            int pad = REASON_COLUMN - (int)strlen(reason);
            fprintf(p->out, "%*s(%s)\n", pad > 0 ? pad : 0, "", reason);
        }
        fprintf(p->out, formats_of(p)->string, "", "", "", e->rcpt[i].address);
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

/* One JSON string: escapes as Postfix's postqueue does, and '?' for bytes
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

static void print_json(FILE *out, const struct queue_list_entry *e)
{
    fputs("{\"queue_name\": ", out);
    json_string(out, e->queue);
    fputs(", \"queue_id\": ", out);
    json_string(out, e->id);
    fprintf(out, ", \"arrival_time\": %lld, \"message_size\": %lld, \"forced_expire\": %s, "
            "\"sender\": ", e->arrival, e->size, e->forced_expire ? "true" : "false");
    json_string(out, e->sender);
    fputs(", \"recipients\": [", out);
    for (size_t i = 0; i < e->nrcpt; i++) {
        fputs(i ? ", {\"address\": " : "{\"address\": ", out);
        json_string(out, e->rcpt[i].address);
        if (*e->rcpt[i].reason) {
            fputs(", \"delay_reason\": ", out);
            json_string(out, e->rcpt[i].reason);
        }
        fputc('}', out);
    }
    fputs("]}\n", out);
}

/* --- printing a listing --- */

void queue_list_printer_init(struct queue_list_printer *p, FILE *out, int format)
{
    *p = (struct queue_list_printer){.out = out, .format = format,
                                     .long_ids = var.enable_long_queue_ids};
}

/* Remember why writing failed, right after the writes (errno set before
 * them to 0): later file operations overwrite errno, and stdio keeps only
 * the error flag. */
static int note_output_error(struct queue_list_printer *p)
{
    if (ferror(p->out) && !p->out_errno)
        p->out_errno = errno ? errno : EIO;
    if (!p->out_errno)
        return 0;
    errno = p->out_errno;
    return -1;
}

int queue_list_print(struct queue_list_printer *p, const struct queue_list_entry *e)
{
    errno = 0;
    if (p->format == QUEUE_LIST_JSON) {
        print_json(p->out, e);
    } else {
        if (p->count == 0)
            print_heading(p);
        else
            fputc('\n', p->out);
        print_text(p, e);
    }
    p->count++;
    p->total += e->size > 0 ? (unsigned long long)e->size : 0;
    return note_output_error(p);
}

int queue_list_print_end(struct queue_list_printer *p)
{
    errno = 0;
    if (p->format == QUEUE_LIST_TEXT && p->count == 0)
        fputs("Mail queue is empty\n", p->out);
    else if (p->format == QUEUE_LIST_TEXT)
        fprintf(p->out, "\n-- %llu Kbytes in %lu Request%s.\n", p->total / 1024, p->count,
                p->count == 1 ? "" : "s");
    if (note_output_error(p) < 0)
        return -1;
    return fflush(p->out) == 0 ? 0 : note_output_error(p);
}

static int print_walked(const struct queue_list_entry *e, void *ctx)
{
    return queue_list_print(ctx, e);
}

int queue_list_write(FILE *out, int format)
{
    struct queue_list_printer p;
    queue_list_printer_init(&p, out, format);
    if (queue_list_walk(print_walked, &p) != 0)
        return -1;
    return queue_list_print_end(&p);
}
