/* report.c - delivery status notifications as RFC 3464 messages:
 * multipart/report; report-type=delivery-status with three parts,
 *   1. text/plain for people: what happened, one line per recipient;
 *   2. message/delivery-status for programs: per-message fields
 *      (Reporting-MTA, X-Postern-Queue-ID, Arrival-Date...) and one block
 *      per recipient (Final-Recipient, Original-Recipient, Action, Status,
 *      Remote-MTA, Diagnostic-Code);
 *   3. the original: message/rfc822 for a non-delivery report unless the
 *      sender asked RET=HDRS or the message exceeds bounce_size_limit,
 *      else text/rfc822-headers (always for delay and success reports).
 * The wording of part 1 is Postern's own; subjects and the From: line
 * follow Postfix so that filters that recognise bounces keep working.
 */
#include "bounce.h"
#include "mail_date.h"

#include "address.h"
#include "config.h"
#include "delivery.h"
#include "dsn.h"
#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define FIELD_MAX 2048          /* one sanitized header value */
#define MAIL_DAEMON "MAILER-DAEMON"

/* --- small formatting helpers --- */

/* A value that goes into a header field: control characters would break
 * the message structure (or forge fields), so they become spaces. */
static void field_safe(char *out, size_t len, const char *in)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < len; p++)
        out[o++] = *p < 0x20 || *p == 0x7f ? ' ' : (char)*p;
    out[o] = 0;
}

/* Internal form -> external (quoted) form, safe for a header field. */
static void external_address(char *out, size_t len, const char *internal)
{
    char quoted[2 * ADDRESS_MAX];
    if (address_quote(internal, quoted, sizeof(quoted)) < 0)
        snprintf(quoted, sizeof(quoted), "%.*s", ADDRESS_MAX, internal);
    field_safe(out, len, quoted);
}

static int has_8bit(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

/* RFC 6533: an address with UTF-8 in it is of type utf-8, not rfc822. */
static const char *address_type(const char *addr)
{
    return has_8bit(addr) ? "utf-8" : "rfc822";
}

/* --- the original message --- */

typedef void (*original_fn)(void *ctx, const char *data, size_t len);

/* Length of data up to the end of the header block (the empty line), or
 * len when the block goes on; *at_bol carries "at a line start" across
 * chunks, *done says the block ended. */
static size_t header_block_part(const char *data, size_t len, int *at_bol, int *done)
{
    for (size_t i = 0; i < len; i++) {
        if (*at_bol && data[i] == '\n') {
            *done = 1;
            return i;
        }
        *at_bol = data[i] == '\n';
    }
    return len;
}

/* Feed the original's content (or its header block, bounded by
 * header_size_limit) to fn. Returns 0, or -1 when the file cannot be read. */
static int walk_original(const struct report *r, int headers_only, original_fn fn, void *ctx)
{
    int fd = dup(r->queue_fd);
    struct stream *s = fd >= 0 ? stream_open(fd, 0) : NULL;
    if (!s) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    long long limit = var.header_size_limit, sent = 0;
    struct rec_buf chunk = {0};
    int rc = queue_content_begin(s, r->env->content_offset), more = 0;
    int at_bol = 1, done = 0;
    while (rc == 0 && !done && (more = queue_content_next(s, &chunk)) == 1) {
        size_t n = chunk.len;
        if (headers_only) {
            n = header_block_part(chunk.data, chunk.len, &at_bol, &done);
            if (sent + (long long)n > limit) {
                n = (size_t)(limit - sent);
                done = 1;
            }
        }
        fn(ctx, chunk.data, n);
        sent += (long long)n;
    }
    rec_buf_free(&chunk);
    stream_abandon(s);
    return rc < 0 || more < 0 ? -1 : 0;
}

static void scan_8bit(void *ctx, const char *data, size_t len)
{
    int *found = ctx;
    for (size_t i = 0; i < len && !*found; i++)
        *found = (unsigned char)data[i] >= 0x80;
}

struct copy_state {
    struct submission *sub;
    char last;       /* last byte copied, to end the part on a line end */
};

static void copy_to_submission(void *ctx, const char *data, size_t len)
{
    struct copy_state *c = ctx;
    bounce_submission_write(c->sub, data, len);
    if (len)
        c->last = data[len - 1];
}

/* The whole original goes back only for a failure, unless RET=HDRS or it
 * is larger than bounce_size_limit (then its headers go back instead). */
static int return_full_message(const struct report *r)
{
    const char *ret = queue_envelope_attr(r->env, ATTR_DSN_RET);
    if (r->kind != REPORT_FAILED || (ret && strcasecmp(ret, "HDRS") == 0))
        return 0;
    return r->env->content_size <= var.bounce_size_limit;
}

/* --- the parts --- */

struct layout {
    char boundary[QUEUE_ID_SIZE + 300];
    char host[256];
    int full;          /* original as message/rfc822 */
    int eight_bit;     /* some part carries 8-bit text */
};

static const char *subject_of(const struct report *r)
{
    if (r->postmaster_copy)
        return "Postmaster Copy: Undelivered Mail";
    switch (r->kind) {
    case REPORT_DELAYED: return "Delayed Mail (still being retried)";
    case REPORT_DELIVERED: return "Successful Mail Delivery Report";
    default: return "Undelivered Mail Returned to Sender";
    }
}

static void write_top_headers(struct submission *sub, const struct report *r,
                              const struct layout *lo, const char *new_id)
{
    char to[FIELD_MAX], date[64], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
    mail_date(date, sizeof(date), now);
    external_address(to, sizeof(to), r->to);
    bounce_submission_printf(sub, "From: %s@%s (Mail Delivery System)\n", MAIL_DAEMON, lo->host);
    bounce_submission_printf(sub, "Subject: %s\n", subject_of(r));
    bounce_submission_printf(sub, "To: %s\n", to);
    bounce_submission_printf(sub, "Date: %s\n", date);
    bounce_submission_printf(sub, "Message-ID: <%s.%s@%s>\n", stamp, new_id, lo->host);
    bounce_submission_puts(sub, "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
    bounce_submission_printf(sub,
                             "Content-Type: multipart/report; report-type=delivery-status;\n"
                             "\tboundary=\"%s\"\n",
                             lo->boundary);
    bounce_submission_printf(sub, "Content-Transfer-Encoding: %s\n\n",
                             lo->eight_bit ? "8bit" : "7bit");
    bounce_submission_puts(sub, "This is a MIME-encapsulated message.\n\n");
}

static void write_intro(struct submission *sub, const struct report *r, const struct layout *lo)
{
    bounce_submission_printf(sub, "This report comes from the mail system at %s (%s).\n\n",
                             lo->host, var.mail_name);
    if (r->postmaster_copy) {
        bounce_submission_puts(
            sub, "A message with the null sender (a delivery status notification) could\n"
                 "not be delivered. Such a message is never returned to its sender, so\n"
                 "it comes to the postmaster instead. It is attached below.\n\n");
        return;
    }
    switch (r->kind) {
    case REPORT_DELAYED: {
        char until[64];
        mail_date(until, sizeof(until),
                    r->env->arrival.tv_sec + var.maximal_queue_lifetime);
        bounce_submission_printf(
            sub,
            "This is a warning only: you do not need to send your message again.\n\n"
            "Your message has not been delivered yet to the recipients listed\n"
            "below. The mail system will keep trying until %s.\n"
            "The headers of your message are attached.\n\n",
            until);
        break;
    }
    case REPORT_DELIVERED:
        bounce_submission_puts(sub,
                               "Your message was delivered to the recipients listed below, as the\n"
                               "delivery status notification request that came with it asked.\n"
                               "The headers of your message are attached.\n\n");
        break;
    default:
        bounce_submission_printf(
            sub,
            "Your message could not be delivered to the recipients listed below,\n"
            "and the mail system has given up on them. %s\n\n"
            "If you need help, write to the postmaster of this site and include\n"
            "this report.\n\n",
            lo->full ? "Your message is attached." : "The headers of your message are attached.");
    }
}

static void write_notification(struct submission *sub, const struct report *r,
                               const struct layout *lo)
{
    bounce_submission_printf(sub,
                             "--%s\nContent-Description: Notification\n"
                             "Content-Type: text/plain; charset=%s\n\n",
                             lo->boundary, lo->eight_bit ? "utf-8" : "us-ascii");
    write_intro(sub, r, lo);
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_entry *e = r->rcpt[i];
        char addr[FIELD_MAX], orig[FIELD_MAX], reason[FIELD_MAX];
        external_address(addr, sizeof(addr), e->rcpt);
        field_safe(reason, sizeof(reason), e->reason ? e->reason : "");
        if (e->orig_rcpt && strcasecmp(e->orig_rcpt, e->rcpt) != 0) {
            external_address(orig, sizeof(orig), e->orig_rcpt);
            bounce_submission_printf(sub, "<%s> (expanded from <%s>): %s\n\n", addr, orig, reason);
        } else {
            bounce_submission_printf(sub, "<%s>: %s\n\n", addr, reason);
        }
    }
}

/* "smtp; 550 5.1.1 ..." when the reason quotes a remote server's reply
 * ("host x[1.2.3.4] said: 550 ..."), else Postern's own diagnostic type. */
static void diagnostic_code(char *out, size_t len, const char *reason)
{
    const char *said = strstr(reason, " said: ");
    if (said && said[7] && strchr("245", said[7]) && isdigit((unsigned char)said[8]) &&
        isdigit((unsigned char)said[9])) {
        const char *reply = said + 7;
        const char *tail = strstr(reply, " (in reply to ");
        int n = tail ? (int)(tail - reply) : (int)strlen(reply);
        snprintf(out, len, "smtp; %.*s", n, reply);
    } else {
        snprintf(out, len, "X-Postern; %s", reason);
    }
}

/* Remote-MTA from a relay "host[addr]:port"; nothing for local or none. */
static int remote_mta(char *out, size_t len, const char *relay)
{
    if (!relay || !*relay || strcmp(relay, "local") == 0 || strcmp(relay, "none") == 0)
        return 0;
    size_t n = strcspn(relay, "[:");
    if (n == 0)
        return 0;
    snprintf(out, len, "%.*s", (int)n, relay);
    return 1;
}

static const char *action_of(const struct report *r)
{
    switch (r->kind) {
    case REPORT_DELAYED: return "delayed";
    case REPORT_DELIVERED: return "delivered";
    default: return "failed";
    }
}

/* The Status: must be a valid code of the report's class. */
static const char *status_of(const struct report *r, const struct dsn_entry *e)
{
    if (e->dsn && delivery_dsn_valid(e->dsn)) {
        char c = e->dsn[0];
        if ((r->kind == REPORT_DELIVERED) == (c == '2') && (r->kind != REPORT_DELAYED || c == '4'))
            return e->dsn;
    }
    return r->kind == REPORT_DELIVERED ? "2.0.0" : r->kind == REPORT_DELAYED ? "4.0.0" : "5.0.0";
}

static void write_message_fields(struct submission *sub, const struct report *r,
                                  const struct layout *lo)
{
    char buf[FIELD_MAX], date[64];
    const char *envid = queue_envelope_attr(r->env, ATTR_DSN_ENVID);
    if (envid && *envid) {
        field_safe(buf, sizeof(buf), envid);
        bounce_submission_printf(sub, "Original-Envelope-Id: %s\n", buf);
    }
    bounce_submission_printf(sub, "Reporting-MTA: dns; %s\n", lo->host);
    bounce_submission_printf(sub, "X-Postern-Queue-ID: %s\n", r->queue_id);
    external_address(buf, sizeof(buf), r->env->sender[0] ? r->env->sender : "");
    bounce_submission_printf(sub, "X-Postern-Sender: %s; %s\n", address_type(r->env->sender), buf);
    mail_date(date, sizeof(date), r->env->arrival.tv_sec);
    bounce_submission_printf(sub, "Arrival-Date: %s\n", date);
}

static void write_recipient_fields(struct submission *sub, const struct report *r,
                                   const struct dsn_entry *e)
{
    char buf[FIELD_MAX], diag[FIELD_MAX + 16], reason[FIELD_MAX];
    external_address(buf, sizeof(buf), e->rcpt);
    bounce_submission_printf(sub, "\nFinal-Recipient: %s; %s\n", address_type(e->rcpt), buf);
    if (e->dsn_orcpt && strchr(e->dsn_orcpt, ';')) {
        field_safe(buf, sizeof(buf), e->dsn_orcpt);
        bounce_submission_printf(sub, "Original-Recipient: %s\n", buf);
    } else if (e->orig_rcpt && *e->orig_rcpt) {
        external_address(buf, sizeof(buf), e->orig_rcpt);
        bounce_submission_printf(sub, "Original-Recipient: %s;%s\n", address_type(e->orig_rcpt),
                                 buf);
    }
    bounce_submission_printf(sub, "Action: %s\nStatus: %s\n", action_of(r), status_of(r, e));
    if (remote_mta(buf, sizeof(buf), e->relay)) {
        field_safe(diag, sizeof(diag), buf);
        bounce_submission_printf(sub, "Remote-MTA: dns; %s\n", diag);
    }
    field_safe(reason, sizeof(reason), e->reason ? e->reason : "");
    diagnostic_code(diag, sizeof(diag), reason);
    bounce_submission_printf(sub, "Diagnostic-Code: %s\n", diag);
    if (r->kind == REPORT_DELAYED) {
        mail_date(buf, sizeof(buf),
                    r->env->arrival.tv_sec + var.maximal_queue_lifetime);
        bounce_submission_printf(sub, "Will-Retry-Until: %s\n", buf);
    }
}

static void write_delivery_status(struct submission *sub, const struct report *r,
                                  const struct layout *lo)
{
    bounce_submission_printf(sub,
                             "--%s\nContent-Description: Delivery report\n"
                             "Content-Type: message/delivery-status\n\n",
                             lo->boundary);
    write_message_fields(sub, r, lo);
    for (size_t i = 0; i < r->nrcpt; i++)
        write_recipient_fields(sub, r, r->rcpt[i]);
    bounce_submission_puts(sub, "\n");
}

static const char *original_description(const struct report *r, int full)
{
    if (r->kind == REPORT_DELIVERED)
        return "Message Headers";
    if (r->kind == REPORT_DELAYED)
        return "Delayed Message Headers";
    return full ? "Undelivered Message" : "Undelivered Message Headers";
}

static int write_original(struct submission *sub, const struct report *r, const struct layout *lo)
{
    bounce_submission_printf(sub,
                             "--%s\nContent-Description: %s\nContent-Type: %s\n"
                             "Content-Transfer-Encoding: %s\n\n",
                             lo->boundary, original_description(r, lo->full),
                             lo->full ? "message/rfc822" : "text/rfc822-headers",
                             lo->eight_bit ? "8bit" : "7bit");
    struct copy_state c = {.sub = sub, .last = '\n'};
    if (walk_original(r, !lo->full, copy_to_submission, &c) < 0)
        return -1;
    if (c.last != '\n')
        bounce_submission_puts(sub, "\n");
    bounce_submission_printf(sub, "\n--%s--\n", lo->boundary);
    return 0;
}

/* Decide what goes back and how it must be labelled, before the headers
 * that announce it are written. */
static int plan_layout(const struct report *r, struct layout *lo, const char *new_id)
{
    snprintf(lo->host, sizeof(lo->host), "%s", var.myhostname);
    snprintf(lo->boundary, sizeof(lo->boundary), "%s.%lld/%s", new_id, (long long)time(NULL),
             lo->host);
    lo->full = return_full_message(r);
    lo->eight_bit = has_8bit(r->env->sender) || has_8bit(r->to);
    for (size_t i = 0; i < r->nrcpt && !lo->eight_bit; i++)
        lo->eight_bit = has_8bit(r->rcpt[i]->rcpt) || has_8bit(r->rcpt[i]->orig_rcpt) ||
                        has_8bit(r->rcpt[i]->reason);
    if (!lo->eight_bit && walk_original(r, !lo->full, scan_8bit, &lo->eight_bit) < 0)
        return -1;
    return 0;
}

int bounce_report_send(const struct report *r, char *new_id, size_t id_len, char *why,
                       size_t why_len)
{
    struct layout lo;
    char id[QUEUE_ID_SIZE];
    struct submission *sub = bounce_submission_open(r->sender, r->to, id, sizeof(id));
    if (!sub) {
        snprintf(why, why_len, "cannot queue the report through cleanup");
        return -1;
    }
    if (plan_layout(r, &lo, id) < 0) {
        bounce_submission_abort(sub);
        snprintf(why, why_len, "cannot read the original queue file");
        return -1;
    }
    write_top_headers(sub, r, &lo, id);
    write_notification(sub, r, &lo);
    write_delivery_status(sub, r, &lo);
    if (write_original(sub, r, &lo) < 0) {
        bounce_submission_abort(sub);
        snprintf(why, why_len, "cannot read the original queue file");
        return -1;
    }
    snprintf(new_id, id_len, "%s", id);
    return bounce_submission_finish(sub, why, why_len);
}
