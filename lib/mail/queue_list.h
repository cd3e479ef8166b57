/* queue_list.h - the queue listing: postqueue -p (Postfix's mailq text)
 * and postqueue -j (JSON lines), one implementation used by the showq
 * daemon for its answer and by postqueue when it reads the queue itself.
 *
 * Messages come from the queue files (queue_file.h's reader) and their
 * deferral reasons from defer/ID (dsn.h). Queues are shown in Postfix's
 * order (maildrop, active, incoming, deferred, hold), each sorted by queue
 * id, i.e. by arrival. The text layout is Postfix's byte for byte:
 *   -Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
 *   ID[*!]      SIZE ARRIVAL(asctime, 20 chars) SENDER
 *                                    (REASON, right-aligned to column 78)
 *                                            RECIPIENT
 * with a blank line between messages and "-- N Kbytes in M Requests." or
 * "Mail queue is empty" at the end; enable_long_queue_ids = yes selects
 * Postfix's wider long-id columns. Arrival times are local time of the
 * process that formats them (as with Postfix's showq). JSON lines carry
 * Postfix's members: queue_name, queue_id, arrival_time, message_size,
 * forced_expire, sender, recipients [{address, orig_address?,
 * delay_reason?}].
 */
#ifndef POSTERN_QUEUE_LIST_H
#define POSTERN_QUEUE_LIST_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "queue_id.h"

#define QUEUE_LIST_TEXT 0
#define QUEUE_LIST_JSON 1

#define QUEUE_LIST_MAX_RCPT 100000   /* recipients read from one queue file */

/* One message file found in a queue directory. */
struct queue_msg_ref {
    char id[QUEUE_ID_SIZE];
    char path[PATH_MAX];
};

struct queue_msg_list {
    size_t count, cap;
    struct queue_msg_ref *ref;
};

/* The message files of one queue (deferred/ is walked through its hash
 * level), sorted by id; names that are not queue ids (temporary files,
 * junk) are left out. l is reset first and owns its memory afterwards
 * (queue_msg_list_free), even on error. Returns 0, or -1 with errno
 * (ENOMEM, ENAMETOOLONG for queue_directory). A missing directory is an
 * empty queue; one that cannot be opened is logged and skipped. */
int queue_msg_list_scan(const char *queue, struct queue_msg_list *l);
void queue_msg_list_free(struct queue_msg_list *l);

/* "text" or "json" to QUEUE_LIST_TEXT or QUEUE_LIST_JSON; -1 otherwise. */
int queue_list_format_parse(const char *name);
const char *queue_list_format_name(int format);

/* Whether this process may read the queue: 0 when every queue directory
 * that exists can be opened, else -1 with errno (EACCES: a set-gid
 * postqueue in system mode, which must ask showq). */
int queue_list_readable(void);

/* Write the whole listing in format to out, and flush it. Returns 0, or
 * -1 with errno when out failed (the listing stops at the next message: a
 * reader that went away, EPIPE) or memory ran out. */
int queue_list_write(FILE *out, int format);

#endif
