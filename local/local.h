/* local.h - the parts of the local delivery agent that its files share:
 *
 *   local.c    speaks deliver_protocol with qmgr and drives one request
 *   mailbox.c  per-recipient entry point; instance mode (every local part
 *              is a Maildir under mail_spool_directory)
 *   resolve.c  system mode: aliases, .forward, :include:, loops, and the
 *              choice of mailbox, file, command or forwarding per target
 *   message.c  the bytes that go out: From_ line, trace headers, content
 *   maildir.c  Maildir writer
 *   mbox.c     mbox writer: locking, all-or-nothing append
 *   command.c  |command and mailbox_command
 *   forward.c  re-submission of mail for non-local addresses via cleanup
 *   privs.c    whose uid/gid a delivery runs as
 */
#ifndef POSTERN_LOCAL_H
#define POSTERN_LOCAL_H

#include <limits.h>
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
/* The same for any destination: "TARGET: WHAT: strerror(err)". */
void local_status_target_error(struct local_status *st, const char *target, const char *what,
                               int err);

/* The message being delivered: read-only, shared by its recipients. */
struct local_message {
    const char *queue_id;
    const char *sender;       /* internal form, "" for <> */
    struct stream *queue;     /* the open queue file (content is read again per recipient) */
    off_t content_offset;
    const struct delivery_times *times;   /* for the log lines of each target */
};

/* Who a copy is for, as the trace headers say it. */
struct local_trace {
    const char *sender;        /* Return-Path (and the From_ line): internal form */
    const char *orig_rcpt;     /* X-Original-To, or NULL for none (instance mode) */
    const char *delivered_to;  /* Delivered-To */
};

/* Deliver m to one recipient (internal form; orig is the original
 * recipient or NULL); always fills st. Returns 1 when the outcome was
 * already logged per delivery target (system mode logs each alias or
 * .forward target itself), 0 when the caller must log st. */
int local_deliver_recipient(const struct local_message *m, const char *rcpt, const char *orig,
                            struct local_status *st);

/* Instance mode: the Maildir of rcpt (mailbox.c), with a trailing '/'.
 * Returns 0, or -1 with st filled (5.1.1 for a local part that cannot be
 * a mailbox, 4.3.0 for a configuration problem). */
int local_mailbox_path(const char *rcpt, char *path, size_t len, struct local_status *st);

/* System mode (resolve.c). */
int local_deliver_system(const struct local_message *m, const char *rcpt, const char *orig,
                         struct local_status *st);

/* --- message.c --- */
#define LOCAL_COPY_FROM_LINE 1   /* start with "From sender date" (mbox, command, file) */
#define LOCAL_COPY_QUOTE_FROM 2  /* ">From " for content lines starting "From " (mbox) */
#define LOCAL_COPY_BLANK_END 4   /* end with an empty line (mbox) */
#define LOCAL_COPY_DELIVERED_ONLY 8  /* of the trace headers, Delivered-To only (forwarding) */

#define LOCAL_COPY_EWRITE (-1)   /* the sink failed; errno set */
#define LOCAL_COPY_EREAD (-2)    /* the queue file could not be read */
#define LOCAL_COPY_ETOOBIG (-3)  /* more than the size limit */

/* Where the bytes go: returns 0, or -1 with errno. */
typedef int (*local_write_fn)(void *ctx, const char *buf, size_t len);

/* Write the trace headers and the content of m through fn, in large
 * pieces. limit (0 = none) bounds the bytes written. Returns 0 or one of
 * the LOCAL_COPY_E* codes. */
int local_copy_message(const struct local_message *m, const struct local_trace *t, int flags,
                       long long limit, local_write_fn fn, void *ctx);
/* write(2) until done: a local_write_fn for a file descriptor (ctx: int *). */
int local_write_fd(void *ctx, const char *buf, size_t len);
/* The message's Delivered-To: headers include address (ignoring case).
 * Returns 1, 0, or -1 when the queue file cannot be read. */
int local_delivered_to_seen(const struct local_message *m, const char *address);

/* --- maildir.c --- */
/* Write m into the Maildir dir (ending in '/'), creating it and missing
 * parents as needed. Only after the file is in new/ and both it and new/
 * are fsynced does st get 2.0.0; on any failure nothing is left in new/
 * or tmp/. limit is mailbox_size_limit for the file (0 = none). */
void maildir_deliver(const char *dir, const struct local_message *m,
                     const struct local_trace *t, long long limit, struct local_status *st);

/* --- privs.c --- */
struct local_user {
    uid_t uid;
    gid_t gid;
    char name[256];
    char home[PATH_MAX];
    char shell[PATH_MAX];
};
int privs_can_switch(void);
/* Become u (effective ids) until privs_leave; no-op when we are not root
 * or u is root. Fatal when the switch fails. */
void privs_enter(const struct local_user *u);
void privs_leave(void);
/* 1 found, 0 no such user, -1 lookup failure. */
int local_user_by_name(const char *name, struct local_user *u);
int local_user_by_uid(uid_t uid, struct local_user *u);
/* default_privs (never root). -1 with st set (4.3.0) on a bad setting. */
int local_default_privs(struct local_user *u, struct local_status *st);
/* The rights of a file's owner: default_privs for root. -1 with st set. */
int local_owner_privs(uid_t uid, gid_t gid, struct local_user *u, struct local_status *st);

/* --- mbox.c --- */
/* Append m to the mbox file path with the rights of u, locked as
 * mailbox_delivery_lock says; as_root opens and locks as root instead (the
 * spool directory, which users cannot write), creating the file for u.
 * All or nothing: on any error the file is cut back to its old size.
 * st: 2.0.0 "delivered to mailbox" (or what), 5.2.2 when
 * mailbox_size_limit would be exceeded, 4.x.x otherwise. */
void mbox_deliver(const char *path, const struct local_user *u, int as_root,
                  const struct local_message *m, const struct local_trace *t,
                  const char *what, struct local_status *st);
/* For the fatal-error hook: remove a dot-lock we hold, if any. */
void mbox_cleanup(void);

/* --- command.c --- */
/* The environment of a command, already filtered (values with shell
 * special characters replaced by '_'). */
struct local_command_env {
    const char *recipient;    /* RECIPIENT: the address being delivered */
    const char *orig_rcpt;    /* ORIGINAL_RECIPIENT */
};
/* Run "/bin/sh -c command" as u (default_privs for root) with the message
 * on stdin and the fixed environment; st from its exit status. */
void command_deliver(const char *command, const struct local_user *u,
                     const struct local_message *m, const struct local_trace *t,
                     const struct local_command_env *env, struct local_status *st);

/* --- forward.c --- */
/* Submit a new message for address (not local) through cleanup: sender
 * t->sender, the content of m with "Delivered-To: t->delivered_to" on
 * top. st: 2.0.0 "forwarded as QUEUEID", or 4.3.0. */
void forward_deliver(const char *address, const struct local_message *m,
                     const struct local_trace *t, struct local_status *st);

#endif
