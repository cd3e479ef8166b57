/* mbox.h - delivery into an open mbox file, for the agents that write one
 * (local: the spool mailbox, home_mailbox, /file destinations; virtual:
 * hosted mbox mailboxes). Each agent opens the file its own way (as root
 * or as the user, created or not, which checks); from there it is the
 * same: lock it as the agent's lock parameter says (mbox_lock.h, with
 * deliver_lock_attempts, deliver_lock_delay, stale_lock_time), append the
 * copy all or nothing (mail_copy_append, MAIL_COPY_MBOX), unlock, and put
 * the outcome into the recipient's status.
 */
#ifndef POSTERN_MBOX_H
#define POSTERN_MBOX_H

#include "deliver_request.h"
#include "delivery.h"
#include "mail_copy.h"
#include "params.h"

struct mbox_target {
    const char *path;
    const char *target;          /* start of failure texts: "cannot update mailbox P" */
    const char *what;            /* the success text: "delivered to mailbox" */
    enum param_id lock_param;    /* mailbox_delivery_lock, virtual_mailbox_lock */
    int dotlock_may_fail;        /* mbox_lock_policy.dotlock_may_fail */
    long long limit;             /* the file's size limit, 0 = none */
    enum param_id limit_param;   /* the parameter it comes from, for the text */
};

/* Lock fd (the regular file d->path), append, unlock. st: 2.0.0 d->what;
 * 4.2.0 "TARGET: unable to lock for exclusive access" when the locks stay
 * busy; 5.2.2 when the file is at its limit or the copy would pass it;
 * 4.3.0 for a wrong lock method list (logged), a full disk or an
 * unreadable queue file; else 4.2.0 with the error. */
void mbox_deliver_fd(int fd, const struct mbox_target *d, const struct deliver_message *m,
                     const struct mail_copy_trace *t, struct delivery_status *st);

#endif
