/* queue_dump.h - a queue file (or maildrop file) as postcat prints it, in
 * the shape of Postfix's postcat for Postfix's own queue files:
 *
 *   *** ENVELOPE RECORDS NAME ***
 *   message_size:             314             301               2               0
 *   message_arrival_time: Mon Dec  7 11:19:06 2026
 *   sender: s@example.org
 *   named_attribute: client_address=127.0.0.1
 *   named_attribute: dsn_orig_rcpt=rfc822;orig@example.net     (a P record)
 *   named_attribute: notify_flags=10                           (an N record)
 *   original_recipient: alice@example.org                      (an O record)
 *   recipient: x@relay.example          done_recipient: ...    (R, D)
 *   *** MESSAGE CONTENTS NAME ***
 *   the content, one line at a time
 *   *** HEADER EXTRACTED NAME ***
 *   recipients cleanup took from the headers (sendmail -t)
 *   *** MESSAGE FILE END NAME ***
 *
 * Record names are Postfix's for the record each Postern record stands
 * for; message_size: shows Postern's Z payload as it is (content size,
 * content offset, recipients, delay warning time); named_attribute: shows
 * Postern's own attribute names (client_address, helo_name and
 * sasl_username are Postfix's too; protocol, dsn_envid, dsn_ret and origin
 * are Postern's); a type nobody knows is unknown_record_type:. Values are
 * printed as stored.
 *
 * Any file is read without trouble: records are read one at a time, each
 * at most QUEUE_DUMP_RECORD_MAX bytes, and what cannot be read (not a
 * queue file, a record cut short, a malformed length, no end record) is
 * warned about with the file's name after what could be printed.
 */
#ifndef POSTERN_QUEUE_DUMP_H
#define POSTERN_QUEUE_DUMP_H

#include <stdio.h>

struct stream;

#define QUEUE_DUMP_ENVELOPE 0x01   /* -e: envelope records and section markers */
#define QUEUE_DUMP_HEADERS 0x02    /* -h: the message header block */
#define QUEUE_DUMP_BODY 0x04       /* -b: from the first line that is no header on */
#define QUEUE_DUMP_OFFSETS 0x08    /* -o: the file offset of each record or content line */
#define QUEUE_DUMP_TYPES 0x10      /* -d: the decimal record type */
#define QUEUE_DUMP_NAMES 0x20      /* -v: content lines named as records (regular_text:) */

#define QUEUE_DUMP_RECORD_MAX (1 << 20)   /* Postern writes at most 64 KiB */

/* Print the file read from in (from its current position) to out; name
 * labels the section markers and warnings. Returns 0 when the file was
 * read to its end record, 1 when it is not a queue file, cut short or
 * malformed (warned), -1 when reading failed (warned, errno). Write
 * errors are left in out's error flag. */
int queue_dump(FILE *out, struct stream *in, const char *name, int flags);

#endif
