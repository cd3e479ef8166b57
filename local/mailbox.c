/* mailbox.c - the per-recipient delivery step of the local agent, and
 * where mail goes in instance mode.
 *
 * Instance mode (DESIGN.md): every recipient is a Maildir at
 * mail_spool_directory/LOCALPART/, written as the instance user; a local
 * part becomes a path component, so it is checked before use: it can never
 * name anything outside the spool directory. System mode (master started
 * by root for another mail_owner) goes to resolve.c: aliases, .forward,
 * real users and their rights.
 */
#include "local.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "address.h"
#include "config.h"
#include "service.h"

void local_status_set(struct local_status *st, const char *dsn, const char *fmt, ...)
{
    char raw[DELIVERY_TEXT_MAX];
    va_list ap;

    snprintf(st->dsn, sizeof(st->dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    delivery_text_clean(st->text, sizeof(st->text), raw);
}

void local_status_io_error(struct local_status *st, const char *what, int err)
{
    int full = err == ENOSPC;

#ifdef EDQUOT
    full = full || err == EDQUOT;
#endif
    if (full)
        local_status_set(st, "4.3.0", "insufficient system storage: %s: %s", what,
                         strerror(err));
    else
        local_status_set(st, "4.2.0", "cannot deliver to maildir: %s: %s", what,
                         strerror(err));
}

void local_status_target_error(struct local_status *st, const char *target, const char *what,
                               int err)
{
    int full = err == ENOSPC;

#ifdef EDQUOT
    full = full || err == EDQUOT;
#endif
    local_status_set(st, full ? "4.3.0" : "4.2.0", "%s: %s: %s", target, what, strerror(err));
}

/* Cut "user+ext" to "user" at the first recipient_delimiter character. A
 * delimiter at the very start is kept, so no local part becomes empty. */
static void strip_extension(char *local)
{
    const char *delims = var.recipient_delimiter;
    size_t cut;

    if (delims == NULL || *delims == 0)
        return;
    cut = strcspn(local, delims);
    if (cut > 0 && local[cut] != 0)
        local[cut] = 0;
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

int local_mailbox_path(const char *rcpt, char *path, size_t len, struct local_status *st)
{
    char local[ADDRESS_MAX], lower[ADDRESS_MAX];
    const char *spool = var.mail_spool_directory;
    int n;

    if (address_localpart(rcpt, local, sizeof(local)) < 0
        || address_lowercase(local, lower, sizeof(lower)) < 0) {
        local_status_set(st, "5.1.1", "unknown user: address too long");
        return -1;
    }
    strip_extension(lower);
    if (!usable_as_path(lower)) {
        local_status_set(st, "5.1.1", "unknown user: \"%s\"", lower);
        return -1;
    }
    if (spool == NULL || *spool == 0) {
        local_status_set(st, "4.3.0", "mail system configuration error: "
                         "mail_spool_directory is empty");
        return -1;
    }
    n = snprintf(path, len, "%s/%s/", spool, lower);
    if (n < 0 || (size_t)n >= len) {
        local_status_set(st, "4.3.0", "mailbox path too long for \"%s\"", lower);
        return -1;
    }
    return 0;
}

int local_deliver_recipient(const struct local_message *m, const char *rcpt, const char *orig,
                            struct local_status *st)
{
    struct local_trace t = {.sender = m->sender, .orig_rcpt = NULL, .delivered_to = rcpt};
    char dir[PATH_MAX];

    if (!service_instance_mode())
        return local_deliver_system(m, rcpt, orig, st);
    if (local_mailbox_path(rcpt, dir, sizeof(dir), st) < 0)
        return 0;
    maildir_deliver(dir, m, &t, var.mailbox_size_limit, st);
    return 0;
}
