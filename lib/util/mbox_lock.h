/* mbox_lock.h - locking an mbox file against its readers and other
 * writers, for the delivery agents that append to one (local, virtual).
 *
 * Three methods, as in Postfix's mailbox_delivery_lock and
 * virtual_mailbox_lock, taken in this order and all or none:
 *   dotlock  PATH.lock created with O_EXCL (mutt, mailx, procmail); one
 *            older than the stale time is a crashed writer's and is removed
 *   fcntl    a POSIX write lock on the whole file (Python's mailbox, lockf)
 *   flock    a BSD lock
 * Locks are only ever tried: a busy one is tried again after a delay, a
 * given number of times, and then the caller defers the mail.
 *
 * Generic: the parameters' values come in as arguments.
 */
#ifndef POSTERN_MBOX_LOCK_H
#define POSTERN_MBOX_LOCK_H

#include <stddef.h>

#define MBOX_LOCK_FCNTL 1
#define MBOX_LOCK_FLOCK 2
#define MBOX_LOCK_DOTLOCK 4

/* The methods a list value names ("fcntl, flock, dotlock": commas or
 * white space, any case, any order; empty means none). 0 with *methods
 * set, or -1 with "PARAM: unknown mailbox lock method \"NAME\"" (or a
 * value too long) in why. */
int mbox_lock_parse(const char *param, const char *value, int *methods, char *why,
                    size_t whylen);

struct mbox_lock_policy {
    int methods;              /* MBOX_LOCK_* */
    long attempts;            /* tries at most (at least one is made) */
    long delay;               /* seconds between tries (0: at once) */
    long stale_time;          /* seconds after which a dot-lock is stale */
    int dotlock_may_fail;     /* a directory that cannot hold PATH.lock is
                               * no error: the kernel locks still exclude
                               * other writers (a /file in /var/log) */
};

/* Lock fd, the open file path, by every method of p. 0 held, 1 still busy
 * after every attempt, -1 error (errno). */
int mbox_lock(int fd, const char *path, const struct mbox_lock_policy *p);
/* Release what mbox_lock took (methods as in its policy). */
void mbox_unlock(int fd, int methods);
/* For a fatal-error hook: remove the dot-lock held, if any. */
void mbox_lock_cleanup(void);

#endif
