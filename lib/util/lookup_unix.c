/* lookup_unix.c - the unix:passwd.byname table type: the system's user
 * database through getpwnam, answering with the passwd(5) line. One of
 * the table types of lookup.c (lookup_type.h); lookup.c accepts no other
 * unix: name.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "log.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No state: getpwnam reads the user database afresh every time. */
static int passwd_table_open(const char *spec, const char *name, void **state, char *err,
                             size_t errlen)
{
    *state = NULL;
    return 0;
}

static int passwd_table_get(void *state, const char *key, char **value)
{
    char *folded = lookup_fold_key(key);
    struct passwd *pw;
    size_t len;

    if (folded == NULL || *folded == 0) {
        free(folded);
        return LOOKUP_NOTFOUND;
    }
    errno = 0;
    pw = getpwnam(folded);
    free(folded);
    if (pw == NULL) {
        /* getpwnam reports "no such user" with errno 0 or one of these;
         * anything else is the name service failing. */
        if (errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF || errno == EPERM)
            return LOOKUP_NOTFOUND;
        msg_warn("table unix:passwd.byname: getpwnam: %s", strerror(errno));
        return LOOKUP_TEMPFAIL;
    }
    len = strlen(pw->pw_name) + strlen(pw->pw_passwd) + strlen(pw->pw_gecos)
          + strlen(pw->pw_dir) + strlen(pw->pw_shell) + 64;
    *value = lookup_xmalloc(len);
    snprintf(*value, len, "%s:%s:%lu:%lu:%s:%s:%s", pw->pw_name, pw->pw_passwd,
             (unsigned long)pw->pw_uid, (unsigned long)pw->pw_gid, pw->pw_gecos, pw->pw_dir,
             pw->pw_shell);
    return LOOKUP_FOUND;
}

static void passwd_table_close(void *state)
{
}

const struct lookup_type lookup_type_passwd = {
    .open = passwd_table_open,
    .get = passwd_table_get,
    .close = passwd_table_close,
};
