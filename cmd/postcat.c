/* postcat - show a queue file in human-readable form, as Postfix's postcat
 * does: postcat [-c config_dir] [-bdehoqrv] [files...].
 *
 * Each file (standard input, named "stdin", when there is none) is printed
 * by lib/mail/queue_dump.c: -e the envelope records with the section
 * markers, -h the message headers, -b the body, all three when none is
 * given; -o adds each record's (each content line's) file offset, -d its
 * decimal record type, -v names content lines as records (regular_text:).
 * -q takes the arguments for queue ids and finds each in maildrop/,
 * incoming/, active/, deferred/, hold/ or corrupt/ of queue_directory,
 * named as Postfix names it (deferred/X/ID). -r (file order) is what
 * Postern always does: its queue files have no pointer records.
 *
 * A file that is not a queue file, is cut short or malformed is printed as
 * far as it goes and warned about; postcat goes on with the next file and
 * exits 1 at the end. A queue id found nowhere is warned about too.
 */
#include "config.h"
#include "log.h"
#include "queue_dump.h"
#include "queue_file.h"
#include "queue_id.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where -q looks, in Postfix's order, and corrupt/, where Postern puts the
 * files that most need a look. */
static const char *const searched_queues[] = {QUEUE_MAILDROP, QUEUE_INCOMING, QUEUE_ACTIVE,
                                              QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT};
#define NSEARCHED (sizeof(searched_queues) / sizeof(searched_queues[0]))

static noreturn void usage(void)
{
    msg_fatal("usage: postcat [-bdehoqrv] [-c config_dir] [files...]");
}

/* Print one open file; 0, or 1 when it had a problem (warned). */
static int show_fd(int fd, const char *name, int flags)
{
    struct stream *s = stream_open(fd, 0);
    if (!s) {
        close(fd);
        msg_warn("%s: out of memory", name);
        return 1;
    }
    int rc = queue_dump(stdout, s, name, flags);
    stream_abandon(s);   /* closes fd; nothing was written to it */
    return rc != 0;
}

static int show_file(const char *path, int flags)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        msg_warn("open %s: %s", path, strerror(errno));
        return 1;
    }
    return show_fd(fd, path, flags);
}

/* The queue file of id, named QUEUE/[X/]ID as Postfix names it. */
static int show_queue_id(const char *id, int flags)
{
    if (!queue_id_valid(id)) {
        msg_warn("invalid queue id: %s", id);
        return 1;
    }
    int first_errno = ENOENT;
    for (size_t q = 0; q < NSEARCHED; q++) {
        char path[PATH_MAX];
        if (queue_path(path, sizeof(path), searched_queues[q], id) < 0)
            msg_fatal("queue_directory is too long");
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            size_t base = strlen(var.queue_directory) + 1;
            return show_fd(fd, strlen(path) > base ? path + base : path, flags);
        }
        if (errno != ENOENT && first_errno == ENOENT)
            first_errno = errno;
    }
    msg_warn("open queue file %s: %s", id, strerror(first_errno));
    return 1;
}

static void open_log(void)
{
    log_set_syslog_name(var.syslog_name);
    const char *file = var.maillog_file;
    if (file && *file && access(file, W_OK) == 0)
        log_set_file(file);
}

/* Flags from the options; -beh when none of the three is given. */
static int option_flag(int opt)
{
    switch (opt) {
    case 'b': return QUEUE_DUMP_BODY;
    case 'd': return QUEUE_DUMP_TYPES;
    case 'e': return QUEUE_DUMP_ENVELOPE;
    case 'h': return QUEUE_DUMP_HEADERS;
    case 'o': return QUEUE_DUMP_OFFSETS;
    case 'v': return QUEUE_DUMP_NAMES;
    default: return 0;
    }
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int flags = 0, by_id = 0, opt;
    log_init("postcat", LOG_TO_STDERR);
    while ((opt = getopt(argc, argv, "bc:dehoqrv")) != -1) {
        if (opt == 'c')
            dir = optarg;
        else if (opt == 'q')
            by_id = 1;
        else if (opt == '?')
            usage();
        flags |= option_flag(opt);
    }
    if (!(flags & (QUEUE_DUMP_BODY | QUEUE_DUMP_ENVELOPE | QUEUE_DUMP_HEADERS)))
        flags |= QUEUE_DUMP_BODY | QUEUE_DUMP_ENVELOPE | QUEUE_DUMP_HEADERS;
    config_load(config_find_dir(dir), NULL, 0);
    open_log();
    if (by_id && optind == argc)
        msg_fatal("-q requires one or more queue ids");
    int problems = 0;
    if (optind == argc) {
        int fd = dup(0);   /* the stream owns and closes what it reads */
        if (fd < 0)
            msg_fatal("standard input: %s", strerror(errno));
        problems = show_fd(fd, "stdin", flags);
    }
    for (int i = optind; i < argc; i++)
        problems |= by_id ? show_queue_id(argv[i], flags) : show_file(argv[i], flags);
    if (fflush(stdout) != 0 || ferror(stdout))
        msg_fatal("write error: %s", strerror(errno));
    return problems ? 1 : 0;
}
