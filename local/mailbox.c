/* mailbox.c - the per-recipient entry point of the local agent, a user's
 * mailbox, and what a "user" is in instance mode.
 *
 * Every recipient goes through resolve.c (aliases, .forward, :include:,
 * commands, files) in both modes; what differs is here:
 *
 *   the user       system mode: the passwd entry of the local part (without
 *                  its extension); instance mode: any local part that can
 *                  be a file name, unless main.cf sets local_recipient_maps
 *                  and that does not know it; its rights are the instance
 *                  user's and its home is mail_spool_directory/NAME, the
 *                  directory that holds its Maildir (so ~/.forward is
 *                  mail_spool_directory/NAME/.forward): an instance keeps
 *                  everything in its own directory, and runs nothing from a
 *                  real user's home with rights that are not that user's.
 *   the mailbox    in this order: mailbox_transport (another agent
 *                  delivers it, deliver_pass.h), mailbox_command; then in
 *                  instance mode the Maildir mail_spool_directory/NAME/;
 *                  in system mode home_mailbox (a Maildir when it ends in
 *                  '/'), else mail_spool_directory/NAME (a Maildir made for
 *                  the user when the spool ends in '/', else an mbox).
 *
 * A local part becomes a path component in instance mode, so it is checked
 * first: it can never name anything outside the spool directory.
 */
#include "local.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "deliver_pass.h"
#include "local_recipient.h"
#include "lookup.h"
#include "service.h"

int local_deliver_recipient(const struct deliver_message *m, struct deliver_rcpt *r)
{
    return local_resolve(m, r, &r->status);
}

/* Whether a local part is safe as a single path component. */
static int usable_as_path(const char *local)
{
    const unsigned char *p;

    if (local[0] == 0 || local[0] == '.' || strlen(local) > NAME_MAX)
        return 0;
    for (p = (const unsigned char *)local; *p != 0; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* mail_spool_directory without a trailing '/'; -1 with st set when empty. */
static int spool_directory(char *out, size_t len, struct delivery_status *st)
{
    const char *spool = var.mail_spool_directory;
    size_t n = spool != NULL ? strlen(spool) : 0;

    while (n > 1 && spool[n - 1] == '/')
        n--;
    if (n == 0) {
        delivery_status_set(st, "4.3.0", "mail system configuration error: "
                                         "mail_spool_directory is empty");
        return -1;
    }
    snprintf(out, len, "%.*s", (int)n, spool);
    return 0;
}

int local_instance_user(const char *address, const char *name, struct local_user *u,
                        struct delivery_status *st)
{
    char spool[PATH_MAX];
    int known;

    if (!usable_as_path(name)) {
        delivery_status_set(st, "5.1.1", "unknown user: \"%s\"", name);
        return 0;
    }
    if ((known = local_recipient_check(address)) == LOOKUP_TEMPFAIL) {
        delivery_status_set(st, "4.3.0", "cannot look up user %s", name);
        return -1;
    }
    if (known == LOOKUP_NOTFOUND) {
        delivery_status_set(st, "5.1.1", "unknown user: \"%s\"", name);
        return 0;
    }
    if (spool_directory(spool, sizeof(spool), st) < 0)
        return -1;
    local_instance_privs(u);
    snprintf(u->name, sizeof(u->name), "%s", name);
    if (snprintf(u->home, sizeof(u->home), "%s/%s", spool, name) >= (int)sizeof(u->home)) {
        delivery_status_set(st, "4.3.0", "mailbox path too long for \"%s\"", name);
        return -1;
    }
    return 1;
}

/* mail_spool_directory ending in '/': a Maildir per user, which root makes
 * and gives to the user (users cannot create entries in the spool). */
static int spool_maildir(const char *spool, const struct local_user *u, char *dir, size_t len,
                         struct delivery_status *st)
{
    struct stat sb;

    if (snprintf(dir, len, "%s%s/", spool, u->name) >= (int)len) {
        delivery_status_set(st, "4.3.0", "mailbox path too long");
        return -1;
    }
    if (lstat(dir, &sb) == 0)
        return 0;
    dir[strlen(dir) - 1] = 0;
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || chown(dir, u->uid, u->gid) < 0) {
        delivery_status_errno(st, errno, "cannot create maildir: %s", dir);
        return -1;
    }
    /* Not synced here: it is empty, so the Maildir delivery that follows
     * makes tmp/, new/ and cur/ and syncs them all (maildir.c). */
    strcat(dir, "/");
    return 0;
}

static void maildir_as(const char *dir, const struct local_user *u,
                       const struct deliver_message *m, const struct mail_copy_trace *t,
                       struct delivery_status *st)
{
    privs_enter(u);
    maildir_deliver(dir, m, t, var.mailbox_size_limit, PARAM_mailbox_size_limit, st);
    privs_leave();
}

/* System mode without mailbox_transport or mailbox_command. */
static void system_mailbox(const struct local_user *u, const struct deliver_message *m,
                           const struct mail_copy_trace *t, struct delivery_status *st)
{
    const char *home_mailbox = var.home_mailbox, *spool = var.mail_spool_directory;
    char path[PATH_MAX];

    if (*home_mailbox != 0) {
        if (snprintf(path, sizeof(path), "%s/%s", u->home, home_mailbox) >= (int)sizeof(path))
            delivery_status_set(st, "4.3.0", "mailbox path too long for %s", u->name);
        else if (path[strlen(path) - 1] == '/')
            maildir_as(path, u, m, t, st);
        else
            mbox_deliver(path, u, 0, m, t, "delivered to mailbox", st);
    } else if (*spool != 0 && spool[strlen(spool) - 1] == '/') {
        if (spool_maildir(spool, u, path, sizeof(path), st) == 0)
            maildir_as(path, u, m, t, st);
    } else if (snprintf(path, sizeof(path), "%s/%s", spool, u->name) >= (int)sizeof(path)) {
        delivery_status_set(st, "4.3.0", "mailbox path too long for %s", u->name);
    } else {
        mbox_deliver(path, u, privs_can_switch(), m, t, "delivered to mailbox", st);
    }
}

int local_mailbox_deliver(const struct deliver_message *m, const struct deliver_rcpt *r,
                          const struct local_user *u, const char *address,
                          const struct mail_copy_trace *t, struct delivery_status *st)
{
    const char *command = config_raw(PARAM_mailbox_command);
    char dir[PATH_MAX];

    if (*var.mailbox_transport != 0)
        return deliver_pass(var.mailbox_transport, m, r, address, t->orig_rcpt, st) == 0;
    if (*command != 0) {
        struct local_command_env env = {.recipient = address, .orig_rcpt = t->orig_rcpt};
        command_deliver(command, u, m, t, &env, st);
    } else if (!service_instance_mode()) {
        system_mailbox(u, m, t, st);
    } else if (snprintf(dir, sizeof(dir), "%s/", u->home) >= (int)sizeof(dir)) {
        delivery_status_set(st, "4.3.0", "mailbox path too long for \"%s\"", u->name);
    } else {
        maildir_deliver(dir, m, t, var.mailbox_size_limit, PARAM_mailbox_size_limit, st);
    }
    return 0;
}
