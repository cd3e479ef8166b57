/* dsn.h - per-message recipient status logs and the DSN rules that bounce
 * and postqueue share.
 *
 * bounce keeps, for every queued message that needs one, up to three logs:
 *   queue_directory/bounce/ID    recipients that failed (a report is owed)
 *   queue_directory/defer/ID     recipients that were deferred, with the
 *                                reason postqueue -p shows and delay
 *                                warnings report
 *   queue_directory/success/ID   recipients delivered with NOTIFY=SUCCESS
 * Each log is a sequence of entries; an entry is one attribute list in the
 * record framing (record.h: REC_ATTR "name=value" records, then REC_END),
 * appended with one write(2) so readers never see half an entry, except
 * after a crash, where a torn last entry is ignored. The attribute names
 * are the bounce_protocol's (ipc.h): rcpt, orig_rcpt, dsn_orcpt,
 * dsn_notify, offset, dsn, reason, relay, plus time (seconds, appended).
 *
 * A recipient is identified by the offset of its record in the queue file.
 * A recipient logged more than once (one entry per delivery attempt) is
 * read back once, with its latest status, at the position of its first
 * entry.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stddef.h>
#include <time.h>

#include "queue_file.h"   /* QUEUE_BOUNCE_LOG, QUEUE_DEFER_LOG, QUEUE_SUCCESS_LOG */

#define DSN_LOG_MAX_ENTRIES (1 << 20)   /* entries read from one log, at most */

/* One recipient status. The strings belong to the entry when it comes from
 * dsn_log_read (freed by dsn_log_free); for dsn_log_append they are the
 * caller's. Optional strings are NULL when absent. */
struct dsn_entry {
    char *rcpt;          /* internal form */
    char *orig_rcpt;     /* original recipient before rewriting, optional */
    char *dsn_orcpt;     /* DSN ORCPT "type;address", optional */
    int dsn_notify;      /* DSN_NOTIFY_* mask (record.h), 0 = not given */
    long long offset;    /* of the recipient record; -1 = unknown */
    char *dsn;           /* "D.S.N" */
    char *reason;        /* human-readable text */
    char *relay;         /* "local", "host[addr]:port", "none", optional */
    time_t when;         /* when the entry was appended */
};

struct dsn_log {
    size_t count;
    struct dsn_entry *entry;   /* in order of each recipient's first entry */
    size_t *by_offset;         /* private: entry indices sorted by offset */
};

/* 1 for "bounce", "defer" and "success". */
int dsn_log_name_valid(const char *log);
/* queue_directory/LOG/QUEUE_ID. -1 when it does not fit or either name is
 * not valid (the queue id becomes a file name). */
int dsn_log_path(char *buf, size_t len, const char *log, const char *queue_id);

/* Append one entry (e->when is set to now when 0). The bounce and success
 * logs are fsynced, with their directory when the file is new, because a
 * report is owed for what they hold; the defer log is advisory and is not.
 * The log directory is created when missing. Returns 0, or -1 with errno. */
int dsn_log_append(const char *log, const char *queue_id, const struct dsn_entry *e);

/* Read a log into out (reset first; free with dsn_log_free), one entry per
 * recipient as described above. A missing log reads as empty. Returns 0,
 * or -1 with errno when it cannot be opened or read. */
int dsn_log_read(const char *log, const char *queue_id, struct dsn_log *out);
void dsn_log_free(struct dsn_log *l);
/* The entry for the recipient at offset, or NULL (binary search). */
const struct dsn_entry *dsn_log_find(const struct dsn_log *l, long long offset);

/* Remove one log (a missing one is fine). Returns 0, or -1 with errno. */
int dsn_log_remove(const char *log, const char *queue_id);
/* Remove all three logs of a message, e.g. when it is deleted. Returns the
 * number that could not be removed for a reason other than absence. */
int dsn_log_remove_all(const char *queue_id);
/* Rename all three logs of a message that got a new queue id. Returns the
 * number that failed for a reason other than absence. */
int dsn_log_rename_all(const char *old_id, const char *new_id);

/* Whether a recipient's NOTIFY mask asks for a report of kind what
 * (DSN_NOTIFY_FAILURE, _DELAY or _SUCCESS). No NOTIFY means FAILURE and
 * DELAY (RFC 3461, 4.1); NEVER means nothing. */
int dsn_notify_wants(int notify, int what);

/* A NOTIFY= value (RFC 3461: NEVER alone, or SUCCESS, FAILURE, DELAY each
 * at most once, case-insensitive) as a DSN_NOTIFY_* mask; 0 when malformed. */
int dsn_notify_parse(const char *value);

#endif
