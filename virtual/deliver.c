/* deliver.c - one hosted recipient (virtual.h), as virtual(8) does it.
 *
 *   1. virtual_mailbox_maps gives the mailbox, relative to
 *      virtual_mailbox_base: "hosted.example/user/" (a trailing '/' means
 *      Maildir) or "hosted.example/user" (an mbox file). No entry: 5.1.1.
 *   2. virtual_uid_maps and virtual_gid_maps give its owner as numbers
 *      (static:5000 for every mailbox). A missing entry or a uid below
 *      virtual_minimum_uid is a configuration error: the mail waits (4.3.0).
 *   3. A message that already carries "Delivered-To: <recipient>" is in a
 *      loop and bounces (5.4.6).
 *   4. Running as root, the mailbox (and any directory missing on the way
 *      to it) is written with the owner's uid and gid, so the base must be
 *      writable by them; otherwise (an instance run by a user) as we are.
 */
#include "virtual.h"

#include "config.h"
#include "log.h"
#include "lookup.h"
#include "maildir.h"
#include "mbox_lock.h"
#include "virtual_mailbox.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAVED_GROUPS_MAX 256

static int switched;
static gid_t saved_egid;
static gid_t saved_groups[SAVED_GROUPS_MAX];
static int saved_ngroups;

/* Take on the mailbox owner's rights (effective ids) until restore(). */
static void become(uid_t uid, gid_t gid)
{
    if (geteuid() != 0 || getuid() != 0 || uid == 0)
        return;
    saved_egid = getegid();
    if ((saved_ngroups = getgroups(SAVED_GROUPS_MAX, saved_groups)) < 0)
        msg_fatal("getgroups: %s", strerror(errno));
    if (setgroups(1, &gid) < 0 || setegid(gid) < 0 || seteuid(uid) < 0)
        msg_fatal("cannot switch to uid %lu gid %lu: %s", (unsigned long)uid,
                  (unsigned long)gid, strerror(errno));
    switched = 1;
}

static void restore(void)
{
    int saved = errno;
    if (!switched)
        return;
    if (seteuid(0) < 0 || setegid(saved_egid) < 0 ||
        setgroups((size_t)saved_ngroups, saved_groups) < 0)
        msg_fatal("cannot switch back to root: %s", strerror(errno));
    switched = 0;
    errno = saved;
}

void virtual_cleanup(void)
{
    maildir_fatal_cleanup();
    mbox_lock_cleanup();
    restore();
}

/* A number from virtual_uid_maps or virtual_gid_maps. */
static int lookup_id(enum param_id param, const char *rcpt, long *id, struct delivery_status *st)
{
    char *value = NULL, *end;
    int rc = virtual_map_lookup(param, rcpt, &value);
    if (rc == LOOKUP_TEMPFAIL) {
        delivery_status_set(st, "4.3.0", "%s lookup failure", config_name(param));
        return -1;
    }
    if (rc == LOOKUP_NOTFOUND) {
        msg_warn("recipient %s: not found in %s", rcpt, config_name(param));
        delivery_status_set(st, "4.3.0", "mail system configuration error");
        return -1;
    }
    errno = 0;
    *id = strtol(value, &end, 10);
    int bad = errno || end == value || *end || *id < 0;
    if (bad)
        msg_warn("recipient %s: bad %s value \"%.50s\"", rcpt, config_name(param), value);
    free(value);
    if (bad) {
        delivery_status_set(st, "4.3.0", "mail system configuration error");
        return -1;
    }
    return 0;
}

/* The mailbox of rcpt and its owner. -1 with st set when there is none. */
static int find_mailbox(const char *rcpt, char *path, size_t len, long *uid, long *gid,
                        struct delivery_status *st)
{
    char *value = NULL, why[256];
    int rc = virtual_mailbox_lookup(rcpt, &value);
    if (rc == LOOKUP_TEMPFAIL) {
        delivery_status_set(st, "4.3.0", "virtual_mailbox_maps lookup failure");
        return -1;
    }
    if (rc == LOOKUP_NOTFOUND) {
        delivery_status_set(st, "5.1.1", "unknown user: \"%s\"", rcpt);
        return -1;
    }
    rc = virtual_mailbox_path(value, path, len, why, sizeof(why));
    free(value);
    if (rc < 0 || path[0] != '/') {
        msg_warn("recipient %s: %s", rcpt, rc < 0 ? why : "virtual_mailbox_base is not set");
        delivery_status_set(st, "4.3.0", "mail system configuration error");
        return -1;
    }
    if (lookup_id(PARAM_virtual_uid_maps, rcpt, uid, st) < 0 ||
        lookup_id(PARAM_virtual_gid_maps, rcpt, gid, st) < 0)
        return -1;
    if (*uid < var.virtual_minimum_uid) {
        msg_warn("recipient %s: uid %ld is below virtual_minimum_uid %ld", rcpt, *uid,
                 var.virtual_minimum_uid);
        delivery_status_set(st, "4.3.0", "mail system configuration error");
        return -1;
    }
    return 0;
}

int virtual_deliver(const struct deliver_message *m, struct deliver_rcpt *r)
{
    const char *rcpt = r->address;
    struct delivery_status *st = &r->status;
    char path[PATH_MAX];
    long uid, gid;

    if (find_mailbox(rcpt, path, sizeof(path), &uid, &gid, st) < 0)
        return 0;
    int loop = mail_copy_delivered_to_seen(m, rcpt);
    if (loop != 0) {
        if (loop > 0)
            delivery_status_set(st, "5.4.6", "mail forwarding loop for %s", rcpt);
        else
            delivery_status_set(st, "4.3.0", "error reading queue file");
        return 0;
    }
    struct mail_copy_trace t = {.sender = m->sender, .orig_rcpt = r->orig ? r->orig : rcpt,
                                .delivered_to = rcpt};
    become((uid_t)uid, (gid_t)gid);
    if (path[strlen(path) - 1] == '/')
        maildir_deliver(path, m, &t, var.virtual_mailbox_limit, PARAM_virtual_mailbox_limit, st);
    else
        mbox_deliver(path, m, &t, st);
    restore();
    return 0;
}
