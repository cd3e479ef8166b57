/* showq_stream.h - mail_queue_list_protocol: the queue listing as
 * Postfix 3's showq sends it on public/showq, in Postfix's NUL-terminated
 * attribute lists (nulattr.h). Postern's showq sends it and postqueue
 * reads it, so Postfix's own clients (mailq, prometheus-postfix-exporter,
 * which read the stream and send nothing) list a Postern queue, and
 * Postern's postqueue lists a Postfix one.
 *
 * The server speaks first and reads nothing; the client sends nothing:
 *   {protocol=mail_queue_list_protocol}           the greeting
 *   {queue_name, queue_id, time, size, forced_expire, sender,
 *    (recipient, reason)...}                       one list per message
 *   {}                                             the end of the listing
 * Values are text: time is the arrival in seconds since the epoch, size
 * the message size in bytes, forced_expire 0 or 1; addresses are in the
 * shown form of queue_list.h; reason is "" for a recipient that has none.
 * A connection that closes before the empty list means the listing is
 * incomplete.
 */
#ifndef POSTERN_SHOWQ_STREAM_H
#define POSTERN_SHOWQ_STREAM_H

#include <stddef.h>

#include "nulattr.h"
#include "queue_list.h"

struct stream;

#define SHOWQ_PROTOCOL "mail_queue_list_protocol"
#define SHOWQ_VALUE_MAX 65536     /* bytes in one value the reader accepts */
#define SHOWQ_ENTRY_MAX (64 << 20) /* bytes of one message's list */

/* --- server side (unflushed until showq_stream_end) --- */
int showq_stream_greet(struct stream *s);
int showq_stream_send(struct stream *s, const struct queue_list_entry *e);
/* The empty list, then a flush. */
int showq_stream_end(struct stream *s);

/* --- client side --- */
/* Read the greeting: 0 when it names mail_queue_list_protocol, -1 when
 * none came (EOF, timeout, malformed), -2 for another protocol. */
int showq_stream_check_greeting(struct stream *s);

/* Reads entries; owns what the last one points to. Zero-initialise, free
 * with showq_reader_free. */
struct showq_reader {
    struct queue_list_entry entry;
    struct nulattr_item item;
    char *strings;              /* every value of the entry, NUL-separated */
    size_t len, cap;
    struct queue_list_rcpt *rcpt;
    size_t rcpt_cap;
    size_t *rcpt_off;           /* offsets into strings: address, reason pairs */
    const char *error;          /* why the last read failed */
};
/* 1: r->entry holds the next message (valid until the next call); 0: the
 * listing is complete; -1: it is not (r->error says why: EOF, timeout,
 * malformed or over-long input, out of memory). */
int showq_stream_read(struct stream *s, struct showq_reader *r);
void showq_reader_free(struct showq_reader *r);

#endif
