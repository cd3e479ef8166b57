/* queue_file.h - queue directories and queue files.
 *
 * File layout (record.h framing):
 *   Z size (fixed width, rewritten at commit)   T arrival   S sender
 *   A attributes...   (O? P? N? R)... recipients   M   C content chunks...
 *   (O? P? N? R)... recipients extracted from headers   E
 * O, P and N describe the R that follows them.
 * A file is complete when it has its E record and mode 0700 (cleanup sets
 * the execute bit last, before the fsync); nothing else is ever scheduled.
 * Recipients are marked done by rewriting the R type byte to D in place.
 */
#ifndef POSTERN_QUEUE_FILE_H
#define POSTERN_QUEUE_FILE_H

#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>
#include "queue_id.h"

struct stream;
struct rec_buf;

#define QUEUE_INCOMING "incoming"
#define QUEUE_ACTIVE "active"
#define QUEUE_DEFERRED "deferred"
#define QUEUE_HOLD "hold"
#define QUEUE_CORRUPT "corrupt"
#define QUEUE_MAILDROP "maildrop"
#define QUEUE_BOUNCE_LOG "bounce"     /* per-message logs kept by bounce */
#define QUEUE_DEFER_LOG "defer"
#define QUEUE_SUCCESS_LOG "success"

#define QUEUE_MODE_WRITING 0600
#define QUEUE_MODE_COMPLETE 0700

/* Whether name is a queue that holds queue files: incoming, active,
 * deferred, hold or corrupt (not maildrop, whose files are postdrop's). */
int queue_name_valid(const char *name);
/* queue_directory/queue/id (deferred/ is hashed one level: deferred/X/id,
 * X the id's last character). -1 when it does not fit. */
int queue_path(char *buf, size_t len, const char *queue, const char *id);
/* queue_directory/sub, e.g. "private/cleanup". */
int queue_dir_path(char *buf, size_t len, const char *sub);
/* Create the queue tree under queue_directory if absent (instance mode
 * ownership: the caller's user). Returns -1 with errno on failure. */
int queue_dirs_create(void);
/* Move a message between queues (creating a deferred hash dir as needed):
 * link, fsync of the new directory, unlink, so that a power cut leaves it
 * in one queue or both, never in none. -1 with errno ENOENT also when the
 * file was already in to_queue under both names (a move a crash
 * interrupted): the old name is removed then. */
int queue_file_move(const char *id, const char *from_queue, const char *to_queue);
/* n moves as queue_file_move, the fsyncs shared: every link, then one
 * fsync per directory linked into, then every unlink (qmgr takes files in
 * a batch at a time). err[i]: 0 for a file moved, else its errno. Returns
 * how many were moved. */
size_t queue_files_move(const char *const *ids, size_t n, const char *from_queue,
                        const char *to_queue, int *err);

/* --- writing (cleanup) --- */
struct queue_writer;
/* Create a new file in queue (incoming) with a fresh id, mode 0600, and
 * write the Z and T records. The file may have no name until the commit
 * (O_TMPFILE, queue_file.c): do not open it by queue_writer_path before.
 * Caller owns the result (queue_writer_commit or queue_writer_abort
 * frees it). NULL with errno on failure. */
struct queue_writer *queue_writer_create(const char *queue, const struct timeval *arrival);
const char *queue_writer_id(const struct queue_writer *w);
const char *queue_writer_path(const struct queue_writer *w);
struct stream *queue_writer_stream(struct queue_writer *w);
/* Commit into queue instead (hold/): renames the file if it has a name. */
int queue_writer_set_queue(struct queue_writer *w, const char *queue);
/* Write E, rewrite Z, flush, fchmod 0700, fsync file and directory.
 * Frees w. Returns 0, or -1 with errno (the file is then removed). */
int queue_writer_commit(struct queue_writer *w, long long content_size,
                        long long content_offset, int nrcpt);
/* Remove the file (if it has a name) and free w. */
void queue_writer_abort(struct queue_writer *w);

/* A file without a name in incoming/ for data cleanup holds while it
 * works on a message (the message before milters change it, a replaced
 * body): O_TMPFILE, or a tmp.PID.N name removed at once. It counts
 * against the queue file system, like the message. -1 with errno. */
int queue_spool_open(void);

/* --- reading (qmgr, local, bounce, postqueue) --- */
struct queue_rcpt {
    off_t offset;        /* of the R/D type byte, for queue_file_mark_done */
    char *address;       /* internal form */
    char *orig;          /* original recipient, or NULL */
    char *dsn_orcpt;     /* DSN ORCPT "type;addr", or NULL */
    int dsn_notify;      /* DSN_NOTIFY_* mask, 0 = not given */
    int done;            /* read as D */
};
struct queue_envelope {
    char id[QUEUE_ID_SIZE];
    struct timeval arrival;
    char *sender;
    long long content_size;
    off_t content_offset;    /* offset of the first C record */
    size_t nattr;
    char **attr_names, **attr_values;
    size_t nrcpt;            /* all recipients, done ones included */
    struct queue_rcpt *rcpt;
    int complete;            /* E record seen */
    time_t warn_time;        /* delay warning sent at (0: not yet) */
    off_t size_offset;       /* of the Z record, for in-place updates */
    int warn_capable;        /* Z has the warn_time field */
};
/* Parse the envelope of an open queue file (content is skipped, not read).
 * Returns 0, or -1 when the file is malformed or too large (max_rcpt caps
 * recipients). env is filled even on error and must be freed. */
int queue_envelope_read(int fd, struct queue_envelope *env, size_t max_rcpt);
void queue_envelope_free(struct queue_envelope *env);
const char *queue_envelope_attr(const struct queue_envelope *env, const char *name);

/* Record in place that the delay warning was sent (only for files with the
 * four-field Z record). */
int queue_file_mark_warned(int fd, const struct queue_envelope *env, time_t when);

/* Mark a recipient finished in place (pwrite of one byte). */
int queue_file_mark_done(int fd, off_t rcpt_offset);

/* Iterate content chunks: position s at content_offset, then call
 * queue_content_next until it returns 0 (end of content) or -1 (error);
 * 1 means chunk holds the next piece (at most REC_CHUNK_SIZE bytes). */
int queue_content_begin(struct stream *s, off_t content_offset);
int queue_content_next(struct stream *s, struct rec_buf *chunk);

#endif
