/* mailbox.c - the per-recipient delivery step of the local agent, and
 * where mail goes in instance mode.
 *
 * Instance mode (DESIGN.md): every recipient is a Maildir at
 * mail_spool_directory/LOCALPART/, written as the instance user (or, with
 * mailbox_transport, handed to that transport's agent); a local
 * part becomes a path component, so it is checked before use: it can never
 * name anything outside the spool directory. System mode (master started
 * by root for another mail_owner) goes to resolve.c: aliases, .forward,
 * real users and their rights.
 */
#include "local.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "address.h"
#include "config.h"
#include "deliver_pass.h"
#include "service.h"

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

int local_mailbox_path(const char *rcpt, char *path, size_t len, struct delivery_status *st)
{
    char local[ADDRESS_MAX], lower[ADDRESS_MAX];
    const char *spool = var.mail_spool_directory;
    int n;

    if (address_localpart(rcpt, local, sizeof(local)) < 0
        || address_lowercase(local, lower, sizeof(lower)) < 0) {
        delivery_status_set(st, "5.1.1", "unknown user: address too long");
        return -1;
    }
    strip_extension(lower);
    if (!usable_as_path(lower)) {
        delivery_status_set(st, "5.1.1", "unknown user: \"%s\"", lower);
        return -1;
    }
    if (spool == NULL || *spool == 0) {
        delivery_status_set(st, "4.3.0", "mail system configuration error: "
                         "mail_spool_directory is empty");
        return -1;
    }
    n = snprintf(path, len, "%s/%s/", spool, lower);
    if (n < 0 || (size_t)n >= len) {
        delivery_status_set(st, "4.3.0", "mailbox path too long for \"%s\"", lower);
        return -1;
    }
    return 0;
}

int local_deliver_recipient(const struct deliver_message *m, struct deliver_rcpt *r)
{
    struct mail_copy_trace t = {.sender = m->sender, .orig_rcpt = NULL,
                                .delivered_to = r->address};
    char dir[PATH_MAX];

    if (!service_instance_mode())
        return local_deliver_system(m, r);
    /* mailbox_transport: another agent (lmtp to Dovecot) has the mailbox;
     * it logs the delivery. */
    if (*var.mailbox_transport)
        return deliver_pass(var.mailbox_transport, m->req, r, r->address, &r->status);
    if (local_mailbox_path(r->address, dir, sizeof(dir), &r->status) < 0)
        return 0;
    maildir_deliver(dir, m, &t, var.mailbox_size_limit, PARAM_mailbox_size_limit, &r->status);
    return 0;
}
