/* xforward.c - what XFORWARD tells a content filter's reinjection server
 * (remote.h): the client the queue file names, as smtpd or pickup wrote
 * it, and the message's own queue id (the server logs it as
 * orig_queue_id). Local submissions are SOURCE=LOCAL, SMTP mail REMOTE.
 */
#include "remote.h"

#include "queue_file.h"
#include "record.h"

#include <stdio.h>
#include <string.h>

static void set(struct xforward *xf, enum xforward_attr a, const char *value)
{
    if (!value || !*value)
        return;
    snprintf(xf->value[a], sizeof(xf->value[a]), "%s", value);
    xf->given |= 1u << a;
}

void xforward_from_envelope(struct xforward *xf, const struct queue_envelope *env,
                            const char *queue_id)
{
    memset(xf, 0, sizeof(*xf));
    const char *origin = queue_envelope_attr(env, ATTR_ORIGIN);
    int smtp = origin && strcmp(origin, "smtp") == 0;
    set(xf, XF_NAME, queue_envelope_attr(env, ATTR_CLIENT_NAME));
    set(xf, XF_ADDR, queue_envelope_attr(env, ATTR_CLIENT_ADDR));
    set(xf, XF_PORT, queue_envelope_attr(env, ATTR_CLIENT_PORT));
    set(xf, XF_PROTO, queue_envelope_attr(env, ATTR_PROTOCOL));
    set(xf, XF_HELO, queue_envelope_attr(env, ATTR_HELO));
    set(xf, XF_IDENT, queue_id);
    set(xf, XF_SOURCE, smtp ? "REMOTE" : "LOCAL");
}
