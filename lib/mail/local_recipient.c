/* local_recipient.c - "is this a known local recipient?" (local_recipient.h).
 *
 * smtpd asks at RCPT time. The tables of local_recipient_maps are opened
 * once and kept (lookup.c reopens a table file that changed), and opened
 * again only when the parameter's value changes (after a reload). The
 * address is looked up in Postfix's order (lookup_list_address with the
 * domain local and recipient_delimiter), so "user+ext@host" is known when
 * "user" is in the passwd database or in alias_maps.
 */
#include "local_recipient.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "service.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct lookup_list *maps;
static char *maps_value;      /* the local_recipient_maps text maps came from */

/* Instance mode: every local part is a mailbox unless main.cf sets
 * local_recipient_maps (docs/DESIGN.md). A daemon knows from service_init;
 * anything else compares mail_owner with its own uid. */
static int instance_mode(void)
{
    const char *owner;
    struct passwd *pw;

    if (service_name()[0] != 0)
        return service_instance_mode();
    owner = var.mail_owner;
    pw = owner != NULL ? getpwnam(owner) : NULL;
    return pw != NULL && pw->pw_uid == getuid();
}

/* The open tables for value, reopened when value changed. NULL (logged)
 * when value does not parse. */
static struct lookup_list *current_maps(const char *value)
{
    char err[1024];

    if (maps != NULL && strcmp(maps_value, value) == 0)
        return maps;
    lookup_list_close(maps);
    free(maps_value);
    maps = NULL;
    maps_value = NULL;
    if ((maps = lookup_list_open(value, err, sizeof(err))) == NULL) {
        msg_warn("local_recipient_maps: %s", err);
        return NULL;
    }
    if ((maps_value = strdup(value)) == NULL)
        msg_fatal("out of memory");
    return maps;
}

int local_recipient_check(const char *addr)
{
    const char *value = var.local_recipient_maps;
    struct lookup_list *l;
    char *found = NULL;
    int r;

    /* An instance has no accounts: its default (passwd, aliases) would
     * know nobody, so only a local_recipient_maps of its own applies. */
    if ((instance_mode() && !config_is_set(PARAM_local_recipient_maps)) || value == NULL
        || *value == 0)
        return LOOKUP_FOUND;
    if ((l = current_maps(value)) == NULL)
        return LOOKUP_TEMPFAIL;
    r = lookup_list_address(l, addr, 1, var.recipient_delimiter, &found);
    free(found);
    return r;
}
