/* virtual.h - the parts of the virtual delivery agent (Postfix's virtual(8))
 * that its files share. The request, the reply, the log line, the trace
 * headers and copy, Maildir writing and mbox locking are lib/mail's
 * delivery core (deliver_agent.h and what it names); here is only where
 * virtual's bytes go:
 *
 *   virtual.c  main: the deliver_agent loop and the fatal-error cleanup
 *   deliver.c  one recipient: virtual_mailbox_maps, virtual_uid_maps,
 *              virtual_gid_maps, virtual_minimum_uid, the mail-loop check,
 *              the switch to the mailbox owner's rights, Maildir or mbox
 *   mbox.c     mbox files (any path not ending in '/'): opened as the
 *              owner, locked, all or nothing
 *
 * Hosted mailboxes have no system account: the tables give each address a
 * path under virtual_mailbox_base and the uid/gid that owns it.
 */
#ifndef POSTERN_VIRTUAL_H
#define POSTERN_VIRTUAL_H

#include "deliver_request.h"
#include "delivery.h"
#include "mail_copy.h"

/* deliver.c: deliver m to r (a deliver_agent_fn; always 0: the loop logs). */
int virtual_deliver(const struct deliver_message *m, struct deliver_rcpt *r);
/* For the fatal-error hook: back to root, temporary files and locks removed. */
void virtual_cleanup(void);

/* mbox.c: append m to the mbox file path, locked as virtual_mailbox_lock
 * says; on any error the file is cut back to its old size. */
void mbox_deliver(const char *path, const struct deliver_message *m,
                  const struct mail_copy_trace *t, struct delivery_status *st);

#endif
