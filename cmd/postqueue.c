/* postqueue - the queue command for users: list the queue in Postfix's
 * mailq format (-p) or as JSON lines (-j), flush it (-f), or schedule the
 * deferred mail of one message (-i ID) or one site (-s SITE) now.
 *
 * Listing reads the queue files directly (lib/queue_file.h's reader) and
 * the deferral reasons from defer/ID (lib/dsn.h); queues are shown in
 * Postfix's order (maildrop, active, incoming, deferred, hold), each sorted
 * by queue id, i.e. by arrival. The -p layout is Postfix's byte for byte:
 *   -Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
 *   ID[*!]      SIZE ARRIVAL(asctime, 20 chars) SENDER
 *                                    (REASON, right-aligned to column 78)
 *                                            RECIPIENT
 * with a blank line between messages and "-- N Kbytes in M Requests." or
 * "Mail queue is empty" at the end; enable_long_queue_ids = yes selects
 * Postfix's wider long-id columns, which fit Postern's ids better.
 * Flushing talks to qmgr through its fifo (ipc_trigger); -i and -s move the
 * chosen deferred files to incoming/, which qmgr takes in at once.
 */
#include "address.h"
#include "config.h"
#include "dsn.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define MAX_RCPT_PER_MESSAGE 100000
#define MAIL_DAEMON "MAILER-DAEMON"
#define REASON_COLUMN 76   /* a reason's ')' ends in column 78 */

static noreturn void fatal_status(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static noreturn void fatal_status(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    msg_vlog("fatal", fmt, ap);
    va_end(ap);
    exit(status);
}

/* --- finding messages --- */

struct msg_ref {
    char id[QUEUE_ID_SIZE];
    char path[PATH_MAX];
};

struct msg_list {
    size_t count, cap;
    struct msg_ref *ref;
};

static void msg_list_add(struct msg_list *l, const char *dir, const char *name)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct msg_ref *r = realloc(l->ref, cap * sizeof(*r));
        if (!r)
            fatal_status(EX_OSERR, "out of memory");
        l->ref = r;
        l->cap = cap;
    }
    struct msg_ref *r = &l->ref[l->count];
    if (snprintf(r->path, sizeof(r->path), "%s/%s", dir, name) >= (int)sizeof(r->path))
        return;
    size_t n = strnlen(name, sizeof(r->id) - 1);   /* a valid id always fits */
    memcpy(r->id, name, n);
    r->id[n] = 0;
    l->count++;
}

/* Queue files of one directory: names that are queue ids (cleanup's
 * temporary files and anything else are not messages). */
static void scan_flat(const char *dir, struct msg_list *l)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno != ENOENT)
            msg_warn("open directory %s: %s", dir, strerror(errno));
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (queue_id_valid(de->d_name))
            msg_list_add(l, dir, de->d_name);
    closedir(d);
}

/* deferred/ is hashed one level: deferred/X/ID. */
static void scan_hashed(const char *dir, struct msg_list *l)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        if (de->d_name[0] == '.' || strlen(de->d_name) != 1 ||
            snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) >= (int)sizeof(sub))
            continue;
        scan_flat(sub, l);
    }
    closedir(d);
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct msg_ref *)a)->id, ((const struct msg_ref *)b)->id);
}

/* The messages of one queue, sorted by id. Caller frees l->ref. */
static void list_queue(const char *queue, struct msg_list *l)
{
    char dir[PATH_MAX];
    memset(l, 0, sizeof(*l));
    if (queue_dir_path(dir, sizeof(dir), queue) < 0)
        fatal_status(EX_CONFIG, "queue_directory is too long");
    if (strcmp(queue, QUEUE_DEFERRED) == 0)
        scan_hashed(dir, l);
    else
        scan_flat(dir, l);
    if (l->count > 1)
        qsort(l->ref, l->count, sizeof(*l->ref), by_id);
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
 * Postfix shows them). Fills m->rcpt; the strings stay owned by env and
 * defer. */
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

/* --- output: -p --- */

struct formats {
    const char *string;   /* headings and recipient lines */
    const char *sender;   /* the message line */
};
static const struct formats short_formats = {"%-11s %7s %-20s %s\n", "%-11s %7lld %20.20s %s\n"};
static const struct formats long_formats = {"%-17s %8s %-19s %s\n", "%-17s %8lld %19.19s %s\n"};

struct listing {
    int json;
    const struct formats *fmt;
    int long_ids;
    unsigned long count;
    unsigned long long total;
};

static void print_heading(const struct listing *L)
{
    if (L->long_ids)
        printf(L->fmt->string, "----Queue ID-----", "--Size--", "---Arrival Time----",
               "--Sender/Recipient------");
    else
        printf(L->fmt->string, "-Queue ID-", "--Size--", "----Arrival Time----",
               "-Sender/Recipient-------");
}

static void print_mailq(const struct listing *L, const struct shown_msg *m)
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
    printf(L->fmt->sender, id_status, m->size, when, addr);
    const char *saved = "";
    for (size_t i = 0; i < m->nrcpt; i++) {
        const char *why = m->rcpt[i].reason ? m->rcpt[i].reason : "";
        if (strcmp(saved, why) != 0) {
            saved = why;
            printable_text(reason, sizeof(reason), *why ? why : "reason unavailable");
            int pad = REASON_COLUMN - (int)strlen(reason);
            printf("%*s(%s)\n", pad > 0 ? pad : 0, "", reason);
        }
        shown_address(addr, sizeof(addr), m->rcpt[i].address);
        printf(L->fmt->string, "", "", "", addr);
    }
}

/* --- output: -j --- */

/* One JSON string: escapes as Postfix's showq does, and '?' for bytes
 * that are not UTF-8, so every line parses. */
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

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); continue;
        case '\\': fputs("\\\\", stdout); continue;
        case '\b': fputs("\\b", stdout); continue;
        case '\f': fputs("\\f", stdout); continue;
        case '\n': fputs("\\n", stdout); continue;
        case '\r': fputs("\\r", stdout); continue;
        case '\t': fputs("\\t", stdout); continue;
        }
        if (*p < 0x20 || *p == 0x7f) {
            printf("\\u%04X", *p);
        } else if (*p < 0x80) {
            putchar(*p);
        } else {
            size_t n = utf8_sequence_length(p);
            if (n == 0) {
                putchar('?');
            } else {
                fwrite(p, 1, n, stdout);
                p += n - 1;
            }
        }
    }
    putchar('"');
}

static void print_json(const struct shown_msg *m)
{
    char addr[2 * ADDRESS_MAX];
    fputs("{\"queue_name\": ", stdout);
    json_string(m->queue);
    fputs(", \"queue_id\": ", stdout);
    json_string(m->id);
    printf(", \"arrival_time\": %lld, \"message_size\": %lld, \"forced_expire\": false, "
           "\"sender\": ", m->arrival, m->size);
    if (m->sender)
        shown_address(addr, sizeof(addr), m->sender);
    else
        snprintf(addr, sizeof(addr), "%s", "");
    json_string(addr);
    fputs(", \"recipients\": [", stdout);
    for (size_t i = 0; i < m->nrcpt; i++) {
        fputs(i ? ", {\"address\": " : "{\"address\": ", stdout);
        shown_address(addr, sizeof(addr), m->rcpt[i].address);
        json_string(addr);
        if (m->rcpt[i].orig && strcmp(m->rcpt[i].orig, m->rcpt[i].address) != 0) {
            fputs(", \"orig_address\": ", stdout);
            shown_address(addr, sizeof(addr), m->rcpt[i].orig);
            json_string(addr);
        }
        if (m->rcpt[i].reason && *m->rcpt[i].reason) {
            fputs(", \"delay_reason\": ", stdout);
            json_string(m->rcpt[i].reason);
        }
        putchar('}');
    }
    fputs("]}\n", stdout);
}

/* --- listing --- */

static void emit(struct listing *L, const struct shown_msg *m)
{
    if (L->json) {
        print_json(m);
    } else {
        if (L->count == 0)
            print_heading(L);
        else
            putchar('\n');
        print_mailq(L, m);
    }
    L->count++;
    L->total += m->size > 0 ? (unsigned long long)m->size : 0;
}

/* A maildrop file postqueue cannot parse is still listed, as Postfix
 * does, by its owner. */
static void emit_unreadable_maildrop(struct listing *L, const struct msg_ref *r,
                                     const struct stat *st)
{
    struct shown_msg m = {.queue = QUEUE_MAILDROP, .id = r->id, .arrival = st->st_mtime,
                          .size = st->st_size, .uid = (unsigned)st->st_uid};
    emit(L, &m);
}

static void show_message(struct listing *L, const char *queue, const struct msg_ref *r)
{
    int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return;   /* gone meanwhile (delivered, moved), or not a message */
    }
    /* A file cleanup is still writing is not a message yet. */
    if (strcmp(queue, QUEUE_INCOMING) == 0 && (st.st_mode & 0777) != QUEUE_MODE_COMPLETE) {
        close(fd);
        return;
    }
    struct queue_envelope env;
    int ok = queue_envelope_read(fd, &env, MAX_RCPT_PER_MESSAGE) == 0 && env.sender;
    close(fd);
    if (!ok) {
        if (strcmp(queue, QUEUE_MAILDROP) == 0)
            emit_unreadable_maildrop(L, r, &st);
        queue_envelope_free(&env);
        return;
    }
    struct dsn_log defer;
    if (dsn_log_read(QUEUE_DEFER_LOG, r->id, &defer) < 0)
        memset(&defer, 0, sizeof(defer));
    struct shown_msg m = {.queue = queue, .id = r->id, .arrival = env.arrival.tv_sec,
                          .size = env.content_size > 0 ? env.content_size : st.st_size,
                          .sender = env.sender};
    if (collect_recipients(&m, &env, &defer) < 0)
        fatal_status(EX_OSERR, "out of memory");
    emit(L, &m);
    free(m.rcpt);
    dsn_log_free(&defer);
    queue_envelope_free(&env);
}

static int show_queue(int json)
{
    static const char *const queues[] = {QUEUE_MAILDROP, QUEUE_ACTIVE, QUEUE_INCOMING,
                                         QUEUE_DEFERRED, QUEUE_HOLD};
    struct listing L = {.json = json};
    L.long_ids = config_bool("enable_long_queue_ids");
    L.fmt = L.long_ids ? &long_formats : &short_formats;
    for (size_t q = 0; q < sizeof(queues) / sizeof(queues[0]); q++) {
        struct msg_list l;
        list_queue(queues[q], &l);
        for (size_t i = 0; i < l.count; i++)
            show_message(&L, queues[q], &l.ref[i]);
        free(l.ref);
        if (fflush(stdout) != 0 && errno == EPIPE)
            return 0;
    }
    if (!json) {
        if (L.count == 0)
            printf("Mail queue is empty\n");
        else
            printf("\n-- %llu Kbytes in %lu Request%s.\n", L.total / 1024, L.count,
                   L.count == 1 ? "" : "s");
    }
    if (fflush(stdout) != 0 && errno != EPIPE)
        fatal_status(EX_IOERR, "output write error: %s", strerror(errno));
    return 0;
}

/* --- flushing --- */

static int flush_queue(void)
{
    if (ipc_trigger(IPC_PUBLIC, "qmgr", 'F') < 0)
        fatal_status(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down");
    return 0;
}

/* Make one deferred message due now: into incoming/, which qmgr takes in
 * on its next wake-up. -1 with errno when the move failed. */
static int reschedule(const char *id)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), QUEUE_DEFERRED, id) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (utimensat(AT_FDCWD, path, NULL, 0) < 0)
        return -1;
    return queue_file_move(id, QUEUE_DEFERRED, QUEUE_INCOMING);
}

/* After rescheduling: wake qmgr; when we could not move a file (system
 * mode: the queue belongs to mail_owner), ask it to flush everything. */
static int wake_qmgr(int moved, int denied)
{
    if (denied) {
        msg_warn("cannot move deferred mail (permission denied); flushing the whole queue");
        return flush_queue();
    }
    if (moved && ipc_trigger(IPC_PUBLIC, "qmgr", 'W') < 0)
        fatal_status(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down");
    return 0;
}

static int flush_message(const char *id)
{
    if (!queue_id_valid(id))
        fatal_status(EX_USAGE, "invalid queue id: %s", id);
    if (reschedule(id) == 0)
        return wake_qmgr(1, 0);
    if (errno == EACCES || errno == EPERM)
        return wake_qmgr(0, 1);
    if (errno != ENOENT)
        fatal_status(EX_IOERR, "%s: cannot reschedule: %s", id, strerror(errno));
    return 0;   /* not deferred (delivered, active or on hold): nothing to do */
}

/* Whether a pending recipient of env is at site ("example.com", or a
 * domain literal "[192.0.2.1]"). */
static int message_for_site(const struct queue_envelope *env, const char *site)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        const char *domain = address_domain(env->rcpt[i].address);
        if (!env->rcpt[i].done && domain && strcasecmp(domain, site) == 0)
            return 1;
    }
    return 0;
}

static int flush_site(const char *site)
{
    if (!*site || strchr(site, '/'))
        fatal_status(EX_USAGE, "bad site name: %s", site);
    struct msg_list l;
    list_queue(QUEUE_DEFERRED, &l);
    int moved = 0, denied = 0;
    for (size_t i = 0; i < l.count; i++) {
        int fd = open(l.ref[i].path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            denied |= errno == EACCES;
            continue;
        }
        struct queue_envelope env;
        int match = queue_envelope_read(fd, &env, MAX_RCPT_PER_MESSAGE) == 0 &&
                    message_for_site(&env, site);
        close(fd);
        queue_envelope_free(&env);
        if (!match)
            continue;
        if (reschedule(l.ref[i].id) == 0)
            moved++;
        else
            denied |= errno == EACCES || errno == EPERM;
    }
    free(l.ref);
    return wake_qmgr(moved, denied);
}

/* --- main --- */

static noreturn void usage(void)
{
    fatal_status(EX_USAGE, "usage: postqueue [-v] [-c config_dir] -f | -i queue_id | -j | -p | -s site");
}

/* A set-gid postqueue must not read a configuration (and so a queue
 * directory) that the invoking user picked. */
static const char *trusted_config_dir(const char *cmdline_dir)
{
    const char *dir = config_find_dir(cmdline_dir);
    int privileged = getegid() != getgid() || geteuid() != getuid();
    if (privileged && getuid() != 0 && strcmp(dir, DEF_CONFIG_DIR) != 0)
        fatal_status(EX_USAGE, "-c and MAIL_CONFIG are for the super-user only");
    return dir;
}

static void open_log(void)
{
    log_set_syslog_name(config_get("syslog_name"));
    const char *file = config_get("maillog_file");
    if (file && *file && access(file, W_OK) == 0)
        log_set_file(file);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *arg = NULL;
    int action = 0, opt;
    log_init("postqueue", LOG_TO_STDERR);
    while ((opt = getopt(argc, argv, "c:fi:jps:v")) != -1) {
        switch (opt) {
        case 'c': dir = optarg; break;
        case 'v': break;
        case 'i':
        case 's': arg = optarg; /* FALLTHROUGH */
        case 'f':
        case 'j':
        case 'p':
            if (action && action != opt)
                usage();
            action = opt;
            break;
        default: usage();
        }
    }
    if (!action || optind != argc)
        usage();
    config_load(trusted_config_dir(dir), NULL, 0);
    open_log();
    switch (action) {
    case 'p': return show_queue(0);
    case 'j': return show_queue(1);
    case 'f': return flush_queue();
    case 'i': return flush_message(arg);
    default: return flush_site(arg);
    }
}
