/* local.h - the parts of the local delivery agent that its files share.
 * What every agent does alike (the request, the reply, the log line, the
 * trace headers and copy, Maildir writing, mbox locking) is in lib/mail
 * (deliver_agent.h and what it names); here is only where local's bytes go:
 *
 *   local.c    main: the deliver_agent loop and the fatal-error cleanup
 *   mailbox.c  per-recipient entry point; instance mode (every local part
 *              is a Maildir under mail_spool_directory)
 *   resolve.c  system mode: aliases, .forward, :include:, loops, and the
 *              choice of mailbox, file, command or forwarding per target
 *   mbox.c     mbox files: the spool mailbox opened as root, other files
 *              as the user, special files; locked, all-or-nothing append
 *   command.c  |command and mailbox_command
 *   forward.c  re-submission of mail for non-local addresses via cleanup
 *   privs.c    whose uid/gid a delivery runs as
 */
#ifndef POSTERN_LOCAL_H
#define POSTERN_LOCAL_H

#include <limits.h>
#include <sys/types.h>

#include "deliver_request.h"
#include "delivery.h"
#include "mail_copy.h"
#include "maildir.h"

/* Deliver m to r (deliver_agent_fn): instance mode here, system mode in
 * resolve.c, which logs each alias or .forward destination itself (then 1
 * is returned). */
int local_deliver_recipient(const struct deliver_message *m, struct deliver_rcpt *r);

/* Instance mode: the Maildir of rcpt (mailbox.c), with a trailing '/'.
 * Returns 0, or -1 with st filled (5.1.1 for a local part that cannot be
 * a mailbox, 4.3.0 for a configuration problem). */
int local_mailbox_path(const char *rcpt, char *path, size_t len, struct delivery_status *st);

/* System mode (resolve.c): r's address (internal form) and original
 * recipient, its status set. Returns 1 when the outcome was logged per
 * target (or by the mailbox_transport's agent). */
int local_deliver_system(const struct deliver_message *m, struct deliver_rcpt *r);

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
int local_default_privs(struct local_user *u, struct delivery_status *st);
/* The rights of a file's owner: default_privs for root. -1 with st set. */
int local_owner_privs(uid_t uid, gid_t gid, struct local_user *u, struct delivery_status *st);

/* --- mbox.c --- */
/* Append m to the mbox file path with the rights of u, locked as
 * mailbox_delivery_lock says; as_root opens and locks as root instead (the
 * spool directory, which users cannot write), creating the file for u.
 * All or nothing: on any error the file is cut back to its old size.
 * st: 2.0.0 "delivered to mailbox" (or what), 5.2.2 when
 * mailbox_size_limit would be exceeded, 4.x.x otherwise. */
void mbox_deliver(const char *path, const struct local_user *u, int as_root,
                  const struct deliver_message *m, const struct mail_copy_trace *t,
                  const char *what, struct delivery_status *st);

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
                     const struct deliver_message *m, const struct mail_copy_trace *t,
                     const struct local_command_env *env, struct delivery_status *st);

/* --- forward.c --- */
/* Submit a new message for address (not local) through cleanup: sender
 * t->sender, the content of m with "Delivered-To: t->delivered_to" on
 * top. st: 2.0.0 "forwarded as QUEUEID", or 4.3.0. */
void forward_deliver(const char *address, const struct deliver_message *m,
                     const struct mail_copy_trace *t, struct delivery_status *st);

#endif
