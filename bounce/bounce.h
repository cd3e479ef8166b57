/* bounce.h - the bounce daemon's internals shared by its source files.
 *
 * bounce.c   the bounce_protocol server (ipc.h): append, flush, warn
 * report.c   RFC 3464 multipart/report messages built from a status log
 *            and the original queue file
 * submit.c   the cleanup_protocol client that queues a report
 */
#ifndef POSTERN_BOUNCE_H
#define POSTERN_BOUNCE_H

#include <stddef.h>

struct dsn_entry;
struct queue_envelope;

/* --- submit.c --- */

struct submission;
/* Connect to cleanup and start a message from sender ("" = <>) to one
 * recipient (both internal form); the new queue id goes into queue_id
 * (at least QUEUE_ID_SIZE bytes). Caller owns the result and must end it
 * with bounce_submission_finish or bounce_submission_abort. NULL (logged) on failure. */
struct submission *bounce_submission_open(const char *sender, const char *rcpt, char *queue_id,
                                          size_t id_len);
/* Message content, LF line ends; buffered into REC_CONTENT records.
 * Errors are remembered and reported by bounce_submission_finish. */
void bounce_submission_write(struct submission *sub, const char *data, size_t len);
void bounce_submission_puts(struct submission *sub, const char *text);
void bounce_submission_printf(struct submission *sub, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* End the message and wait until cleanup has it safely queued. Frees sub.
 * Returns 0, or -1 with a reason in why. */
int bounce_submission_finish(struct submission *sub, char *why, size_t why_len);
/* Break off: cleanup discards the partial message. Frees sub. */
void bounce_submission_abort(struct submission *sub);

/* --- report.c --- */

enum report_kind {
    REPORT_FAILED,      /* non-delivery: Action: failed */
    REPORT_DELAYED,     /* delay warning: Action: delayed */
    REPORT_DELIVERED,   /* NOTIFY=SUCCESS: Action: delivered */
};

struct report {
    enum report_kind kind;
    int postmaster_copy;                  /* a failed <> message (double bounce) */
    const char *queue_id;                 /* of the original message */
    const struct queue_envelope *env;     /* the original's envelope */
    int queue_fd;                         /* the original queue file, for content */
    const struct dsn_entry *const *rcpt;  /* the recipients reported on */
    size_t nrcpt;
    const char *sender;                   /* envelope sender of the report */
    const char *to;                       /* its one recipient */
};

/* Build the report and queue it through cleanup; new_id receives the
 * report's queue id. Returns 0, or -1 with a reason in why. */
int bounce_report_send(const struct report *r, char *new_id, size_t id_len, char *why,
                       size_t why_len);

#endif
