/* header_checks.h - built-in content inspection (Postfix's header_checks(5)),
 * as cleanup applies it to each new message before it is queued.
 *
 * Tables (regexp: normally; any lookup.h type works) map one input to an
 * action:
 *   header_checks         logical headers of the message's own header block
 *   mime_header_checks    MIME headers (Content-*, MIME-Version) anywhere,
 *                         and every header of a MIME part
 *                         (default $header_checks)
 *   nested_header_checks  the other headers of an attached message/rfc822
 *                         (default $header_checks)
 *   body_checks           body lines, MIME boundaries included, each at most
 *                         line_length_limit bytes, only the first
 *                         body_checks_size_limit bytes of each MIME segment
 * A logical header is matched as one string, folding newlines included and
 * the final one excluded; a body line without its newline. Empty lines
 * never match.
 *
 * Actions: REJECT [text], DISCARD [text], HOLD [text], WARN [text],
 * INFO [text], PASS [text], IGNORE, STRIP [text], REPLACE text,
 * PREPEND text, BCC address, DUNNO (and OK, its old name), FILTER
 * transport:destination (the message goes to that content filter after
 * it is queued; the last one wins), REDIRECT user@domain (the message
 * goes to that address instead of its recipients after it is queued; as
 * in Postfix's code, it ends inspection like PASS).
 *
 * The body walker (hc_body_*) splits content into lines, follows the MIME
 * structure (multipart boundaries, attached messages) to pick the table for
 * each line, applies the actions that edit the content (IGNORE, STRIP,
 * REPLACE, PREPEND) and reports every match to its caller, which logs it
 * and handles the message-wide ones (REJECT, DISCARD, HOLD, BCC, ...).
 */
#ifndef POSTERN_HEADER_CHECKS_H
#define POSTERN_HEADER_CHECKS_H

#include <stddef.h>

enum hc_action {
    HC_DUNNO,     /* no match, DUNNO, OK, or an unusable action */
    HC_REJECT,
    HC_DISCARD,
    HC_HOLD,
    HC_WARN,
    HC_INFO,
    HC_PASS,
    HC_IGNORE,
    HC_STRIP,
    HC_REPLACE,
    HC_PREPEND,
    HC_BCC,
    HC_FILTER,    /* transport:destination for the message after it is queued */
    HC_REDIRECT,  /* user@domain: the message goes there instead of its recipients */
};

#define HC_TEXT_MAX 1024

struct hc_result {
    enum hc_action action;
    char text[HC_TEXT_MAX];   /* the action's argument, "" when none */
};

/* Where an input comes from; with the header name it picks the table. */
enum hc_class { HC_PRIMARY_HEADER, HC_PART_HEADER, HC_NESTED_HEADER, HC_BODY };

/* A table result "ACTION text" (action names ignore case) into r. An
 * unknown, unsupported or incomplete action is warned about and is
 * HC_DUNNO. */
void hc_parse_action(const char *value, struct hc_result *r);

/* 1 when any header table (header/mime/nested) is configured; 1 when
 * body_checks is, or when a header table needs the body's MIME parts. */
int hc_headers_enabled(void);
int hc_body_enabled(void);

/* Check text[0..len) of class cls. LOOKUP_FOUND with r filled (possibly
 * HC_DUNNO), LOOKUP_NOTFOUND, or LOOKUP_TEMPFAIL (logged). */
int hc_check(enum hc_class cls, const char *text, size_t len, struct hc_result *r);

/* 1 for Content-* and MIME-Version (name[0..len) without the colon). */
int hc_is_mime_header(const char *name, size_t len);

/* "reject", "warning", ... as the log line names the action; NULL for the
 * actions Postfix does not log (IGNORE, PREPEND, DUNNO). */
const char *hc_log_word(enum hc_action a);

/* The reply for REJECT text: text when it starts with an enhanced status
 * code (4.x.x or 5.x.x), else "5.7.1 text" ("Message content rejected"
 * when there is no text). *status is 4 or 5, from the code. */
void hc_reject_reason(const char *text, char *out, size_t outlen, int *status);

/* What a log line says about the message (NULL fields are left out). */
struct hc_log_info {
    const char *queue_id;
    const char *client;    /* "host[addr]", or "local" */
    const char *sender;
    const char *rcpt;      /* the first recipient */
    const char *proto;
    const char *helo;
};
/* "ID: WORD: WHAT CONTENT from CLIENT; from=<S> to=<R> proto=P helo=<H>: TEXT"
 * into out: WHAT is "header" or "body", CONTENT is the matched input cut at
 * 200 bytes with control characters shown as spaces, ": TEXT" only when
 * text is not empty. */
void hc_format_log(char *out, size_t outlen, const struct hc_log_info *info, const char *word,
                   const char *what, const char *content, size_t len, const char *text);

/* Content-Type header text[0..len) ("Content-Type: multipart/mixed;
 * boundary=x", folding allowed): HC_MIME_MULTIPART with the boundary
 * copied into boundary (a multipart type without one is HC_MIME_OTHER),
 * HC_MIME_MESSAGE for message/rfc822, else HC_MIME_OTHER. */
enum hc_mime_kind { HC_MIME_OTHER, HC_MIME_MULTIPART, HC_MIME_MESSAGE };
enum hc_mime_kind hc_content_type(const char *text, size_t len, char *boundary, size_t blen);

/* --- the body walker --- */

struct hc_body_hooks {
    void *ctx;
    /* bytes for the queue file, in order */
    void (*out)(void *ctx, const char *data, size_t len);
    /* a match on text[0..len) ("header" or "body"): log it and do what the
     * action means for the whole message. Returning nonzero turns
     * inspection off for the rest of the message (REJECT, DISCARD, PASS,
     * or a table failure that already decided the outcome). */
    int (*matched)(void *ctx, const char *what, const char *text, size_t len,
                   const struct hc_result *r);
    /* a table could not be read; returns nonzero like matched */
    int (*tempfail)(void *ctx);
};

struct hc_body;
/* A walker for the body of a message whose own header block said kind and
 * boundary (hc_content_type). The caller owns the result (hc_body_free). */
struct hc_body *hc_body_new(const struct hc_body_hooks *hooks, enum hc_mime_kind kind,
                            const char *boundary);
void hc_body_feed(struct hc_body *b, const char *data, size_t len);
/* Flush whatever is held (a last line without newline, part headers). */
void hc_body_finish(struct hc_body *b);
void hc_body_free(struct hc_body *b);

#endif
