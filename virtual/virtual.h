/* virtual.h - the parts of the virtual delivery agent (Postfix's virtual(8))
 * that its files share:
 *
 *   virtual.c  speaks deliver_protocol with qmgr and drives one request
 *   deliver.c  one recipient: virtual_mailbox_maps, virtual_uid_maps,
 *              virtual_gid_maps, virtual_minimum_uid, the mail-loop check,
 *              and the switch to the mailbox owner's rights
 *   copy.c     the bytes written: optional mbox From_ line, Return-Path,
 *              X-Original-To, Delivered-To, then the queue file's content
 *   maildir.c  Maildir writer (path ends in '/')
 *   mbox.c     mbox writer (any other path): locked, all or nothing
 *
 * Hosted mailboxes have no system account: the tables give each address a
 * path under virtual_mailbox_base and the uid/gid that owns it.
 */
#ifndef POSTERN_VIRTUAL_H
#define POSTERN_VIRTUAL_H

#include <stddef.h>
#include <sys/types.h>

#include "delivery.h"

struct stream;

/* The outcome of one recipient: a D.S.N code and the text for the reply
 * and the log ("delivered to maildir"). */
struct vstatus {
    char dsn[12];
    char text[DELIVERY_TEXT_MAX];
};
void vstatus_set(struct vstatus *st, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 4.3.0 for a full disk or quota, else 4.2.0: "WHAT: strerror(err)". */
void vstatus_io_error(struct vstatus *st, const char *what, int err);

/* The message being delivered, shared by its recipients. */
struct vmessage {
    const char *queue_id;
    const char *sender;          /* internal form, "" for <> */
    struct stream *queue;        /* the open queue file */
    off_t content_offset;
};

/* deliver.c: deliver m to rcpt (orig: the original recipient or NULL). */
void virtual_deliver(const struct vmessage *m, const char *rcpt, const char *orig,
                     struct vstatus *st);
/* For the fatal-error hook: back to root, temporary files removed. */
void virtual_cleanup(void);

/* copy.c */
#define COPY_FROM_LINE 1    /* mbox: "From sender date" first, ">From " quoting, blank line last */

#define COPY_EWRITE (-1)    /* the file could not be written; errno set */
#define COPY_EREAD (-2)     /* the queue file could not be read */
#define COPY_ETOOBIG (-3)   /* more than the limit */

/* Who a copy is for, as its trace headers say. */
struct vtrace {
    const char *sender;
    const char *orig_rcpt;
    const char *rcpt;
};
/* Write the trace headers and the content of m to fd. limit (0 = none)
 * bounds the bytes written. Returns 0 or a COPY_E* code. */
int copy_message(int fd, const struct vmessage *m, const struct vtrace *t, int flags,
                 long long limit);
/* 1 when the message already has "Delivered-To: rcpt" (a mail loop), 0
 * when not, -1 when the queue file cannot be read. */
int copy_delivered_to_seen(const struct vmessage *m, const char *rcpt);

/* maildir.c: write m into the Maildir dir (ending in '/'), creating it and
 * missing parents. 2.0.0 only once the file is in new/ and new/ is
 * fsynced. */
void maildir_deliver(const char *dir, const struct vmessage *m, const struct vtrace *t,
                     struct vstatus *st);

/* mbox.c: append m to the mbox file path, locked as virtual_mailbox_lock
 * says; on any error the file is cut back to its old size. */
void mbox_deliver(const char *path, const struct vmessage *m, const struct vtrace *t,
                  struct vstatus *st);
void mbox_cleanup(void);

#endif
