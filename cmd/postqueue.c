/* postqueue - the queue command for users: list the queue in Postfix's
 * mailq format (-p) or as JSON lines (-j), flush it (-f), or schedule the
 * deferred mail of one message (-i ID) or one site (-s SITE) now.
 *
 * Listing asks the showq service first (public/showq, Postfix 3's
 * mail_queue_list_protocol, showq_stream.h): in system mode the queue is
 * mail_owner's alone and this set-gid program cannot read it. When showq
 * cannot be reached (the mail system is down, or an instance without it)
 * and the queue is readable (root, mail_owner, instance mode), postqueue
 * walks the queue itself. Either way postqueue formats the entries with
 * lib/mail/queue_list.c, in its own time zone, so the bytes are the same;
 * the formats are described in queue_list.h.
 * Flushing talks to qmgr through its fifo (ipc_trigger); -i and -s move the
 * chosen deferred files to incoming/, which qmgr takes in at once.
 */
#include "address.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "queue_list.h"
#include "showq_stream.h"
#include "stream.h"

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

/* --- listing --- */

/* Output to stdout failed: a reader that went away (EPIPE) ends the
 * listing quietly, anything else is an error. */
static int output_failed(void)
{
    if (errno == EPIPE)
        return 0;
    fatal_status(EX_IOERR, "output write error: %s", strerror(errno));
}

/* Print the entries showq sends, up to the end of the listing. */
static int print_showq_answer(struct stream *s, int format)
{
    struct queue_list_printer p;
    struct showq_reader r = {0};
    int n;
    queue_list_printer_init(&p, stdout, format);
    while ((n = showq_stream_read(s, &r)) == 1) {
        if (queue_list_print(&p, &r.entry) < 0) {
            showq_reader_free(&r);
            return output_failed();
        }
    }
    const char *why = r.error;   /* a string constant: outlives the reader */
    showq_reader_free(&r);
    if (n < 0)
        fatal_status(EX_SOFTWARE, "incomplete queue listing from the showq service: %s", why);
    return queue_list_print_end(&p) < 0 ? output_failed() : 0;
}

/* The listing from the showq service (mail_queue_list_protocol, which
 * Postfix's showq speaks too). -1 (nothing printed) when it cannot be
 * reached or does not greet as showq. */
static int list_via_showq(int format)
{
    int fd = ipc_connect(IPC_PUBLIC, "showq");
    if (fd < 0)
        return -1;
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);
    if (!s) {
        close(fd);
        return -1;
    }
    /* Quietly: without showq the queue may still be read directly. */
    if (showq_stream_check_greeting(s) < 0) {
        stream_abandon(s);
        return -1;
    }
    int rc = print_showq_answer(s, format);
    stream_abandon(s);   /* nothing to send: showq reads nothing */
    return rc;
}

/* The listing read from the queue by this process. */
static int list_directly(int format)
{
    if (queue_list_readable() < 0) {
        if (errno == EACCES || errno == EPERM)
            fatal_status(EX_UNAVAILABLE, "Queue report unavailable - mail system is down");
        fatal_status(EX_UNAVAILABLE, "Queue report unavailable: %s", strerror(errno));
    }
    if (queue_list_write(stdout, format) == 0)
        return 0;
    if (errno == ENOMEM)
        fatal_status(EX_OSERR, "out of memory");
    if (errno == ENAMETOOLONG)
        fatal_status(EX_CONFIG, "queue_directory is too long");
    return output_failed();
}

static int show_queue(int format)
{
    if (list_via_showq(format) == 0)
        return 0;
    return list_directly(format);
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
    /* An ordinary user (system mode) cannot look into deferred/. */
    if (queue_list_readable() < 0)
        return wake_qmgr(0, errno == EACCES || errno == EPERM);
    struct queue_msg_list l;
    if (queue_msg_list_scan(QUEUE_DEFERRED, &l) < 0)
        fatal_status(errno == ENOMEM ? EX_OSERR : EX_CONFIG, "cannot list deferred/: %s",
                     strerror(errno));
    int moved = 0, denied = 0;
    for (size_t i = 0; i < l.count; i++) {
        int fd = open(l.ref[i].path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            denied |= errno == EACCES;
            continue;
        }
        struct queue_envelope env;
        int match = queue_envelope_read(fd, &env, QUEUE_LIST_MAX_RCPT) == 0 &&
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
    queue_msg_list_free(&l);
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
    log_set_syslog_name(var.syslog_name);
    const char *file = var.maillog_file;
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
    case 'p': return show_queue(QUEUE_LIST_TEXT);
    case 'j': return show_queue(QUEUE_LIST_JSON);
    case 'f': return flush_queue();
    case 'i': return flush_message(arg);
    default: return flush_site(arg);
    }
}
