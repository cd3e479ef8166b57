/* maildrop.h - the maildrop file: what postdrop writes and pickup reads.
 *
 * Local submission (docs/DESIGN.md, "Processes and privileges"): sendmail
 * streams a message to postdrop (set-gid postdrop) as records; postdrop
 * checks them and writes queue_directory/maildrop/tmp.PID.N, fsyncs it and
 * renames it to its final name, a queue id made from the arrival time and
 * the file's inode (so names never collide), then wakes pickup through
 * public/pickup. pickup checks each file again, streams it to cleanup and
 * removes it only once cleanup has acked.
 *
 * Record framing as queue files (record.h), in this order:
 *   T  arrival "sec.usec"       postdrop's clock; sendmail does not send it
 *   S  sender as given, possibly a bare login name; "" is <>
 *   A  name=value...            uid (postdrop writes the real uid), and what
 *                               maildrop_attr_ok allows from a user
 *   (N? R)...                   recipients as given, possibly bare local
 *                               parts; N is the DSN NOTIFY mask of the next R
 *   M  C...                     content, LF line ends
 *   E
 * The file's owner is the submitting user; pickup believes the owner, not
 * the uid attribute. The maildrop directory (mode 1730, group postdrop)
 * lets users create files through postdrop but not list, read or remove
 * anyone's.
 */
#ifndef POSTERN_MAILDROP_H
#define POSTERN_MAILDROP_H

#include "record.h"

#include <stddef.h>

/* Envelope attributes of local submissions (cleanup consumes them; they do
 * not reach the queue file). */

#define MAILDROP_TMP_PREFIX "tmp."   /* files postdrop is still writing */
#define MAILDROP_RCPT_MAX 100000     /* recipients in one file */
#define MAILDROP_FULL_NAME_MAX 256
#define MAILDROP_ENVID_MAX 100       /* RFC 3461 */

/* Checks a record sequence against the layout above, one record at a
 * time, in bounded memory. */
struct maildrop_check {
    int state;
    long long size_limit;     /* content bytes allowed; 0 means no limit */
    long long content_size;
    size_t nrcpt;
    int notify_pending;       /* an N waits for its R */
    const char *error;        /* why the last record was refused */
};

/* with_time: the sequence starts with T (a file) or has none (postdrop's
 * input from sendmail). */
void maildrop_check_init(struct maildrop_check *c, int with_time, long long size_limit);
/* Returns 0 when the record fits, 1 for the end record (the sequence is
 * complete), -1 when it is refused (c->error says why). Records larger
 * than REC_CHUNK_SIZE must be refused by the reader (rec_get's max). */
int maildrop_check_record(struct maildrop_check *c, int type, const char *data, size_t len);

/* 1 when name is an attribute a user may set (full_name, extract,
 * dsn_notify, dsn_envid, dsn_ret) and value is well-formed for it. */
int maildrop_attr_ok(const char *name, const char *value);

/* 1 when text is a DSN NOTIFY mask as written in N records: 1..15, and
 * NEVER only alone. */
int maildrop_notify_ok(const char *text);

#endif
