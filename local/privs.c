/* privs.c - whose rights a local delivery runs with.
 *
 * In system mode local runs as root (docs/DESIGN.md) only so that it can become
 * the recipient: every file it creates or writes on a user's behalf is
 * opened with the effective uid/gid (and only group) of that user, so that
 * a symlink or a permission a user controls can never make root write
 * somewhere the user could not. We switch the effective ids only: the real
 * and saved uid stay root, so the user cannot signal or trace the process
 * (an id change also makes the kernel mark it non-dumpable), and we switch
 * back after each file operation. Commands get a child process that drops
 * root for good (command.c).
 *
 * In instance mode nothing switches, even when the instance runs as root:
 * every delivery, file and command has the instance user's rights
 * (local_instance_privs), whoever an alias table or a file belongs to.
 */
#include "local.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "service.h"

#define SAVED_GROUPS_MAX 256

static int saved_valid;
static gid_t saved_egid;
static gid_t saved_groups[SAVED_GROUPS_MAX];
static int saved_ngroups;
static int switched;

int privs_can_switch(void)
{
    return geteuid() == 0 && getuid() == 0 && !service_instance_mode();
}

void local_instance_privs(struct local_user *u)
{
    /* The instance user's name, looked up once per process rather than
     * reading the passwd file for every recipient. */
    static char name[sizeof(u->name)];

    if (name[0] == 0) {
        struct passwd *pw = getpwuid(getuid());
        snprintf(name, sizeof(name), "%s", pw != NULL ? pw->pw_name : "instance");
    }
    memset(u, 0, sizeof(*u));
    u->uid = getuid();
    u->gid = getgid();
    snprintf(u->name, sizeof(u->name), "%s", name);
    snprintf(u->home, sizeof(u->home), "/");
    snprintf(u->shell, sizeof(u->shell), "/bin/sh");
}

static void remember_root_ids(void)
{
    if (saved_valid)
        return;
    saved_egid = getegid();
    saved_ngroups = getgroups(SAVED_GROUPS_MAX, saved_groups);
    if (saved_ngroups < 0)
        msg_fatal("getgroups: %s", strerror(errno));
    saved_valid = 1;
}

void privs_enter(const struct local_user *u)
{
    if (!privs_can_switch() || u->uid == 0)
        return;
    if (switched)
        msg_panic("privs_enter: already running as uid %lu", (unsigned long)geteuid());
    remember_root_ids();
    /* Groups first: only root may change them. Postfix, too, gives the
     * recipient's primary group only, not the secondary ones. */
    if (setgroups(1, &u->gid) < 0 || setegid(u->gid) < 0 || seteuid(u->uid) < 0)
        msg_fatal("cannot switch to uid %lu gid %lu: %s", (unsigned long)u->uid,
                  (unsigned long)u->gid, strerror(errno));
    switched = 1;
}

void privs_leave(void)
{
    int saved = errno;

    if (!switched)
        return;
    if (seteuid(0) < 0 || setegid(saved_egid) < 0
        || setgroups((size_t)saved_ngroups, saved_groups) < 0)
        msg_fatal("cannot switch back to root: %s", strerror(errno));
    switched = 0;
    errno = saved;
}

static void copy_field(char *out, size_t len, const char *in)
{
    snprintf(out, len, "%s", in != NULL ? in : "");
}

/* Fill u from a passwd entry. -1 when a field does not fit. */
static int fill_user(struct local_user *u, const struct passwd *pw)
{
    if (strlen(pw->pw_name) >= sizeof(u->name) || strlen(pw->pw_dir) >= sizeof(u->home)
        || strlen(pw->pw_shell) >= sizeof(u->shell))
        return -1;
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    copy_field(u->name, sizeof(u->name), pw->pw_name);
    copy_field(u->home, sizeof(u->home), pw->pw_dir);
    copy_field(u->shell, sizeof(u->shell), pw->pw_shell);
    return 0;
}

/* getpwnam/getpwuid set errno 0 (or one of these) for "no such user";
 * anything else is the name service failing. */
static int lookup_failed(void)
{
    return errno != 0 && errno != ENOENT && errno != ESRCH && errno != EBADF && errno != EPERM;
}

int local_user_by_name(const char *name, struct local_user *u)
{
    struct passwd *pw;

    errno = 0;
    if ((pw = getpwnam(name)) == NULL)
        return lookup_failed() ? -1 : 0;
    return fill_user(u, pw) < 0 ? -1 : 1;
}

int local_user_by_uid(uid_t uid, struct local_user *u)
{
    struct passwd *pw;

    errno = 0;
    if ((pw = getpwuid(uid)) == NULL)
        return lookup_failed() ? -1 : 0;
    return fill_user(u, pw) < 0 ? -1 : 1;
}

int local_default_privs(struct local_user *u, struct delivery_status *st)
{
    const char *name = var.default_privs;
    int r;

    if (service_instance_mode()) {
        local_instance_privs(u);
        return 0;
    }
    r = local_user_by_name(name, u);

    if (r <= 0 || u->uid == 0) {
        msg_warn("default_privs: %s", r < 0 ? "user lookup failed"
                                            : r == 0 ? "no such user" : "must not be root");
        delivery_status_set(st, "4.3.0", "mail system configuration error: bad default_privs");
        return -1;
    }
    return 0;
}

int local_owner_privs(uid_t uid, gid_t gid, struct local_user *u, struct delivery_status *st)
{
    int r;

    if (uid == 0 || service_instance_mode())
        return local_default_privs(u, st);
    if ((r = local_user_by_uid(uid, u)) < 0) {
        delivery_status_set(st, "4.3.0", "cannot look up uid %lu", (unsigned long)uid);
        return -1;
    }
    if (r == 0) {
        /* A file owned by a uid without a passwd entry: its rights, with
         * no home or shell of its own. */
        memset(u, 0, sizeof(*u));
        u->uid = uid;
        u->gid = gid;
        snprintf(u->name, sizeof(u->name), "#%lu", (unsigned long)uid);
        snprintf(u->home, sizeof(u->home), "/");
        snprintf(u->shell, sizeof(u->shell), "/bin/sh");
    }
    return 0;
}
