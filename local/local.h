/* local.h - the parts of the local delivery agent that its files share.
 * What every agent does alike (the request, the reply, the log line, the
 * trace headers and copy, Maildir writing, mbox locking) is in lib/mail
 * (deliver_agent.h and what it names); here is only where local's bytes go:
 *
 *   local.c    main: the deliver_agent loop and the fatal-error cleanup
 *   mailbox.c  per-recipient entry point; a user's mailbox
 *              (mailbox_transport, mailbox_command, Maildir or mbox); what
 *              a user is in instance mode
 *   resolve.c  aliases, .forward, :include:, loops, and the choice of
 *              mailbox, file, command or forwarding per target
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

/* Deliver m to r (deliver_agent_fn) through resolve.c, which logs each
 * alias or .forward destination itself (then 1 is returned). */
int local_deliver_recipient(const struct deliver_message *m, struct deliver_rcpt *r);

/* resolve.c: r's address with its aliases, .forward and so on; st gets
 * the recipient's status for qmgr. Returns 1 when the outcome was logged
 * per target. */
int local_resolve(const struct deliver_message *m, const struct deliver_rcpt *r,
                         struct delivery_status *st);

/* --- privs.c --- */
struct local_user {
    uid_t uid;
    gid_t gid;
    char name[256];
    char home[PATH_MAX];
    char shell[PATH_MAX];
};
/* Whether we can take on users' rights: root, and not an instance. */
int privs_can_switch(void);
/* The instance user (instance mode: every right is ours); home "/". */
void local_instance_privs(struct local_user *u);
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

/* --- mailbox.c --- */
/* Instance mode: the user NAME (a local part without its extension) of
 * address. 1 with u filled (our rights, home mail_spool_directory/NAME), 0
 * for an unknown user (st 5.1.1: not a possible file name, or not in a
 * local_recipient_maps main.cf sets), -1 with st set (4.3.0). */
int local_instance_user(const char *address, const char *name, struct local_user *u,
                        struct delivery_status *st);
/* The mailbox delivery of u for address (r: the request's recipient it
 * came from). Returns 1 when another agent delivered and logged it
 * (mailbox_transport), else 0 (the caller logs); st is the outcome. */
int local_mailbox_deliver(const struct deliver_message *m, const struct deliver_rcpt *r,
                          const struct local_user *u, const char *address,
                          const struct mail_copy_trace *t, struct delivery_status *st);

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
