/* checks.c - what cleanup does when a content check matches (cleanup.h,
 * lib/header_checks.h), and the log line Postfix writes for it:
 *
 *   QUEUEID: reject: header Subject: buy now from unknown[192.0.2.1];
 *       from=<a@b> to=<c@d> proto=ESMTP helo=<x>: 5.7.1 Message content rejected
 *
 * REJECT and DISCARD decide the message's outcome and end inspection
 * (nothing is queued; a rejected message's client hears the reason, a
 * discarded message's client hears "queued"); HOLD sends the message to
 * hold/ when it is committed; BCC adds a recipient; REDIRECT names the one
 * address the message goes to instead (recorded for qmgr; like PASS it
 * ends inspection, as Postfix's code does); WARN, INFO, STRIP and REPLACE
 * are logged; PASS ends inspection. Content checks apply to mail
 * from SMTP clients and local submissions, not to cleanup's internal
 * clients (bounces, forwarding), as in Postfix.
 */
#include "cleanup.h"

#include "log.h"
#include "queue_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LOG_LINE_MAX 2048

static void client_text(const struct cleanup_state *st, char *out, size_t outlen)
{
    if (st->origin == ORIGIN_SMTP)
        snprintf(out, outlen, "%s[%s]", st->client_name[0] ? st->client_name : "unknown",
                 st->client_addr);
    else
        snprintf(out, outlen, "local");
}

static void log_match(const struct cleanup_state *st, const char *word, const char *what,
                      const char *text, size_t len, const char *detail)
{
    char client[sizeof(st->client_name) + sizeof(st->client_addr) + 4], line[LOG_LINE_MAX];
    struct hc_log_info info = {
        .queue_id = queue_writer_id(st->writer),
        .client = client,
        .sender = st->sender ? st->sender : "",
        .rcpt = st->first_rcpt,
        .proto = st->proto,
        .helo = st->helo,
    };
    client_text(st, client, sizeof(client));
    hc_format_log(line, sizeof(line), &info, word, what, text, len, detail);
    msg_info("%s", line);
}

int cleanup_checks_matched(struct cleanup_state *st, const char *what, const char *text, size_t len,
                           const struct hc_result *r)
{
    const char *word = hc_log_word(r->action), *detail = r->text;
    int stop = 0;
    if (st->outcome != OUTCOME_QUEUE)
        return 1;
    switch (r->action) {
    case HC_REJECT:
        hc_reject_reason(r->text, st->reason, sizeof(st->reason), &st->status);
        detail = st->reason;
        st->outcome = OUTCOME_REJECT;
        stop = 1;
        break;
    case HC_DISCARD:
        st->outcome = OUTCOME_DISCARD;
        stop = 1;
        break;
    case HC_PASS:
        stop = 1;
        break;
    case HC_HOLD:
        st->hold = 1;
        break;
    case HC_FILTER:   /* the last one wins, as in Postfix */
        snprintf(st->filter, sizeof(st->filter), "%s", r->text);
        break;
    case HC_REDIRECT:
        snprintf(st->redirect, sizeof(st->redirect), "%s", r->text);
        stop = 1;
        break;
    case HC_BCC:
        if (cleanup_rcpt_list_add(&st->bcc, r->text, r->text) < 0)
            st->write_error = ENOMEM;
        break;
    default:
        break;
    }
    if (word)
        log_match(st, word, what, text, len, detail);
    return stop;
}

int cleanup_checks_tempfail(struct cleanup_state *st)
{
    cleanup_defer(st, "header/body_checks map lookup problem");
    return 1;
}

static void walker_out(void *ctx, const char *data, size_t len)
{
    cleanup_out_content(ctx, data, len);
}

static int walker_matched(void *ctx, const char *what, const char *text, size_t len,
                          const struct hc_result *r)
{
    return cleanup_checks_matched(ctx, what, text, len, r);
}

static int walker_tempfail(void *ctx)
{
    return cleanup_checks_tempfail(ctx);
}

void cleanup_checks_body_start(struct cleanup_state *st)
{
    if (!st->inspect || st->outcome != OUTCOME_QUEUE || !hc_body_enabled())
        return;
    struct hc_body_hooks hooks = {
        .ctx = st,
        .out = walker_out,
        .matched = walker_matched,
        .tempfail = walker_tempfail,
    };
    st->body = hc_body_new(&hooks, st->mime_kind, st->mime_boundary);
}
