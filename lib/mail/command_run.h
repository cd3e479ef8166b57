/* command_run.h - running an external command with a message on its
 * standard input, for the delivery agents that do (local: |command and
 * mailbox_command; pipe: argv=), and the status Postfix gives the result.
 *
 * The child gets a new session, default signal handling, no descriptors
 * but stdin (the message), stdout and stderr (one pipe back to us), the
 * environment it is given, and the rights of the given user for good:
 * when we run as root it sets the groups, gid and uid and checks that root
 * cannot come back; a command never runs as root unless keep_ids says we
 * stay who we are (instance mode). The parent feeds stdin and keeps the
 * first COMMAND_OUTPUT_MAX bytes of output in one poll loop, so a command
 * that writes before it reads cannot deadlock us, and kills the whole
 * process group at the time limit.
 *
 * The status (command_failed), as Postfix's local(8) and pipe(8) word it:
 *   exit 0                      not a failure: the caller says "delivered"
 *   output starting "4.x.y " or "5.x.y "   that code, the rest as text
 *   exit per <sysexits.h>       its code and text, e.g. 75 4.3.0 "temporary
 *                               failure", 67 5.1.1 "user unknown", then
 *                               ". Command output: OUTPUT" when there is any
 *   any other exit              5.3.0 Command died with status N: "CMD"
 *   a signal                    4.3.0 Command died with signal N: "CMD"
 *   the time limit              5.3.0 Command time limit exceeded: "CMD"
 * The child's own set-up failures (chdir, chroot, set user) exit 75 with a
 * 4.3.0 line of output, so they defer.
 */
#ifndef POSTERN_COMMAND_RUN_H
#define POSTERN_COMMAND_RUN_H

#include <stddef.h>
#include <sys/types.h>

#include "delivery.h"
#include "mail_copy.h"

#define COMMAND_OUTPUT_MAX 1000

struct command_spec {
    const char *path;          /* what is executed */
    char *const *argv;         /* what it is told (argv[0] included) */
    char *const *envp;
    uid_t uid;                 /* the rights it runs with, when we are root */
    gid_t gid;
    int keep_ids;              /* run as we are (instance mode): no switch */
    const char *chroot;        /* NULL, or the root directory to enter first */
    const char *directory;     /* working directory */
    int directory_fallback;    /* "/" when directory fails (else: defer) */
    long time_limit;           /* seconds */
};

/* Write the message into the command: call mail_copy (or anything) with
 * sink and sink_ctx; return 0 or a MAIL_COPY_E* code. */
typedef int (*command_feed_fn)(void *ctx, mail_copy_sink sink, void *sink_ctx);

struct command_result {
    int status;                /* wait(2) status */
    int timed_out;
    int feed;                  /* what the feed returned */
    int feed_errno;            /* errno of a failed feed */
    char output[COMMAND_OUTPUT_MAX + 1];   /* stdout and stderr, NUL-ended */
    size_t output_len;
};

/* Run c with what feed writes on its stdin. 0 when it ran (r filled), -1
 * with st set (4.3.0) when it could not be started. */
int command_run(const struct command_spec *c, command_feed_fn feed, void *feed_ctx,
                struct command_result *r, struct delivery_status *st);

/* 0 when the command succeeded (exit 0, the whole message written), else
 * 1 with st set as above; shown is the command as texts quote it. */
int command_failed(const struct command_result *r, const char *shown,
                   struct delivery_status *st);

#endif
