/* queue_list.h - the queue listing: what each message in the queue looks
 * like to mailq (queue_list_walk), and the two ways postqueue prints it,
 * -p (Postfix's mailq text) and -j (JSON lines).
 *
 * As in Postfix 3, the listing travels as data and is formatted by the
 * client: showq walks the queue and sends each entry over
 * mail_queue_list_protocol (showq_stream.h); postqueue formats what it
 * receives, or walks the queue itself when showq cannot be reached. Both
 * paths print the same bytes, arrival times in postqueue's time zone.
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
 * Postfix's wider long-id columns. JSON lines carry Postfix 3.7's members
 * in its order: queue_name, queue_id, arrival_time, message_size,
 * forced_expire, sender, recipients [{address, delay_reason?}].
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

/* One message as mailq shows it. Addresses are in the shown form
 * (external, quoted as needed, control characters as '?', MAILER-DAEMON
 * for <>); a recipient's reason is its latest deferral reason as written,
 * "" when it has none. Pending recipients only: those with a reason first,
 * in defer log order, then the others in queue file order. */
struct queue_list_rcpt {
    const char *address;
    const char *reason;
};
struct queue_list_entry {
    const char *queue;      /* "maildrop", "active", ... */
    const char *id;
    long long arrival;      /* seconds since the epoch */
    long long size;         /* content bytes (file size for maildrop files) */
    int forced_expire;      /* Postfix's postsuper -e; always 0 in Postern */
    const char *sender;
    size_t nrcpt;
    const struct queue_list_rcpt *rcpt;
};

/* Called for each message; a nonzero return stops the walk and is
 * returned by queue_list_walk (set errno for the caller). The entry lives
 * only during the call. */
typedef int (*queue_list_fn)(const struct queue_list_entry *e, void *ctx);

/* Walk every queue in order. Returns 0, fn's nonzero result, or -1 with
 * errno (ENOMEM, ENAMETOOLONG for queue_directory). */
int queue_list_walk(queue_list_fn fn, void *ctx);

/* Whether this process may read the queue: 0 when every queue directory
 * that exists can be opened, else -1 with errno (EACCES: a set-gid
 * postqueue in system mode, which must ask showq). */
int queue_list_readable(void);

/* "text" or "json" to QUEUE_LIST_TEXT or QUEUE_LIST_JSON; -1 otherwise. */
int queue_list_format_parse(const char *name);
const char *queue_list_format_name(int format);

/* Printing a listing: init, one queue_list_print per entry, then
 * queue_list_print_end (the text summary, and a flush). Both return 0, or
 * -1 with errno of the first failed write to out (a reader that went
 * away: EPIPE); printing stops mattering after that. */
struct queue_list_printer {
    FILE *out;
    int format;
    int long_ids;              /* enable_long_queue_ids, read at init */
    unsigned long count;
    unsigned long long total;  /* bytes, for the text summary */
    int out_errno;             /* of the first failed write, 0 while none */
};
void queue_list_printer_init(struct queue_list_printer *p, FILE *out, int format);
int queue_list_print(struct queue_list_printer *p, const struct queue_list_entry *e);
int queue_list_print_end(struct queue_list_printer *p);

/* Walk the queue and print the whole listing in format to out. Returns 0,
 * or -1 with errno when out failed (the listing stops at the next
 * message) or memory ran out. */
int queue_list_write(FILE *out, int format);

#endif
