/* mbox.c - lock, append, unlock and the status of an mbox delivery
 * (mbox.h). The wording is the local agent's, which log scanners and the
 * tests know ("unable to lock for exclusive access").
 */
#include "mbox.h"

#include <errno.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mbox_lock.h"

/* The locking the agent's parameters ask for; -1 with st set (and the
 * wrong method logged) when the list is wrong. */
static int lock_policy(const struct mbox_target *d, struct mbox_lock_policy *p,
                       struct delivery_status *st)
{
    char why[256];

    if (mbox_lock_parse(config_name(d->lock_param), config_value(d->lock_param), &p->methods,
                        why, sizeof(why)) < 0) {
        msg_warn("%s", why);
        delivery_status_set(st, "4.3.0", "mail system configuration error");
        return -1;
    }
    p->attempts = var.deliver_lock_attempts;
    p->delay = var.deliver_lock_delay;
    p->stale_time = var.stale_lock_time;
    p->dotlock_may_fail = d->dotlock_may_fail;
    return 0;
}

/* Lock as p says. 0, or -1 with st set. */
static int lock_file(int fd, const struct mbox_target *d, const struct mbox_lock_policy *p,
                     struct delivery_status *st)
{
    int r = mbox_lock(fd, d->path, p);

    if (r < 0)
        delivery_status_errno(st, errno, "%s: lock", d->target);
    else if (r > 0)
        delivery_status_set(st, "4.2.0", "%s: unable to lock for exclusive access: %s",
                            d->target, strerror(EAGAIN));
    return r == 0 ? 0 : -1;
}

static void append(int fd, const struct mbox_target *d, const struct deliver_message *m,
                   const struct mail_copy_trace *t, struct delivery_status *st)
{
    int r = mail_copy_append(fd, d->path, m, t, MAIL_COPY_MBOX, d->limit);
    const char *limit_name = config_name(d->limit_param);

    if (r == 0)
        delivery_status_set(st, "2.0.0", "%s", d->what);
    else if (r == MAIL_COPY_EFULL)
        delivery_status_set(st, "5.2.2", "%s: mailbox is full (%s %lld bytes)", d->target,
                            limit_name, d->limit);
    else if (r == MAIL_COPY_ETOOBIG)
        delivery_status_set(st, "5.2.2", "%s: message would exceed %s (%lld bytes)", d->target,
                            limit_name, d->limit);
    else if (r == MAIL_COPY_EREAD)
        delivery_status_set(st, "4.3.0", "error reading queue file");
    else
        delivery_status_errno(st, errno, "%s: write", d->target);
}

void mbox_deliver_fd(int fd, const struct mbox_target *d, const struct deliver_message *m,
                     const struct mail_copy_trace *t, struct delivery_status *st)
{
    struct mbox_lock_policy p;

    if (lock_policy(d, &p, st) < 0 || lock_file(fd, d, &p, st) < 0)
        return;
    append(fd, d, m, t, st);
    mbox_unlock(fd, p.methods);
}
