/* local.h - the parts of the local delivery agent that its files share:
 * local.c speaks deliver_protocol with qmgr and drives one request,
 * mailbox.c chooses a recipient's mailbox, maildir.c writes into it.
 */
#ifndef POSTERN_LOCAL_H
#define POSTERN_LOCAL_H

#include <sys/types.h>

#include "delivery.h"

struct stream;

/* The outcome of one recipient: a D.S.N code and the text for the reply
 * and the log ("delivered to maildir", "unknown user: \"x\""). */
struct local_status {
    char dsn[12];
    char text[DELIVERY_TEXT_MAX];
};

void local_status_set(struct local_status *st, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 4.3.0 for a full disk or quota, else 4.2.0, with what and strerror(err). */
void local_status_io_error(struct local_status *st, const char *what, int err);

/* The message being delivered: read-only, shared by its recipients. */
struct local_message {
    const char *queue_id;
    const char *sender;       /* internal form, "" for <> */
    struct stream *queue;     /* the open queue file (content is read again per recipient) */
    off_t content_offset;
};

/* Deliver m to one recipient (internal form); always fills st. */
void local_deliver_recipient(const struct local_message *m, const char *rcpt,
                             struct local_status *st);

/* The mailbox of rcpt (mailbox.c): the Maildir directory path, with a
 * trailing '/'. Returns 0, or -1 with st filled (5.1.1 for a local part that
 * cannot be a mailbox, 4.3.0 for a configuration problem). */
int local_mailbox_path(const char *rcpt, char *path, size_t len, struct local_status *st);

/* Write m into the Maildir dir (maildir.c), creating it as needed. Only
 * after the file is in new/ and both it and new/ are fsynced does st get
 * 2.0.0; on any failure nothing is left in new/ or tmp/. */
void maildir_deliver(const char *dir, const struct local_message *m, const char *rcpt,
                     struct local_status *st);
/* For the fatal-error hook: remove a tmp/ file being written, if any. */
void maildir_cleanup(void);

#endif
