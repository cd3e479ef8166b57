/* submit.c - bounce's reports go in through cleanup like any other
 * message (lib/cleanup_client.h), with ATTR_ORIGIN "bounce", so cleanup
 * stays the only writer of queue files. This file adds the formatting
 * helpers report.c writes with.
 */
#include "bounce.h"

#include "cleanup_client.h"
#include "log.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct submission {
    struct cleanup_client *cleanup;
};

struct submission *bounce_submission_open(const char *sender, const char *rcpt, char *queue_id,
                                          size_t id_len)
{
    char why[512];
    struct submission *sub = calloc(1, sizeof(*sub));
    if (!sub) {
        msg_warn("submission: out of memory");
        return NULL;
    }
    sub->cleanup = cleanup_client_open(why, sizeof(why));
    if (!sub->cleanup) {
        msg_warn("cannot queue a report: %s", why);
        free(sub);
        return NULL;
    }
    struct cleanup_client *c = sub->cleanup;
    if (cleanup_client_record(c, REC_SENDER, sender, strlen(sender)) < 0 ||
        cleanup_client_attr(c, ATTR_ORIGIN, "bounce") < 0 ||
        cleanup_client_record(c, REC_RCPT, rcpt, strlen(rcpt)) < 0 ||
        cleanup_client_record(c, REC_CONTENT_START, "", 0) < 0) {
        bounce_submission_abort(sub);
        return NULL;
    }
    snprintf(queue_id, id_len, "%s", cleanup_client_queue_id(c));
    return sub;
}

void bounce_submission_write(struct submission *sub, const char *data, size_t len)
{
    cleanup_client_write(sub->cleanup, data, len);
}

void bounce_submission_puts(struct submission *sub, const char *text)
{
    bounce_submission_write(sub, text, strlen(text));
}

void bounce_submission_printf(struct submission *sub, const char *fmt, ...)
{
    char small[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        bounce_submission_write(sub, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        msg_warn("submission: out of memory");
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    bounce_submission_write(sub, big, (size_t)n);
    free(big);
}

int bounce_submission_finish(struct submission *sub, char *why, size_t why_len)
{
    int status = cleanup_client_finish(sub->cleanup, why, why_len);
    free(sub);
    return status == 0 ? 0 : -1;
}

void bounce_submission_abort(struct submission *sub)
{
    cleanup_client_abort(sub->cleanup);
    free(sub);
}
