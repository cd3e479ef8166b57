/* cleanup.h - what cleanup's source files share.
 *
 *   cleanup.c  the cleanup_protocol server: envelope, content, commit (the
 *              fsync before the ack, a held message into hold/)
 *   output.c   records into the queue file, and the deferred outcome:
 *              apart from cleanup.c so the files below link without
 *              cleanup's main() (the fuzz target for headers.c does)
 *   rcpt.c     envelope recipients: canonical form, canonical maps,
 *              masquerading, virtual alias expansion (lib/rewrite.h), the
 *              original recipient (O), duplicates
 *   headers.c  the message's own header block, one logical header at a
 *              time: header_checks, the local treatment, header address
 *              rewriting
 *   checks.c   what a content-check match does to the message (REJECT,
 *              DISCARD, HOLD, ...) and its Postfix log line
 *   local.c    helpers for local submissions and small containers
 *
 * A local submission (origin=local, from pickup) is treated as Postfix
 * treats sendmail mail: bare local parts get "@$myorigin"
 * (append_at_myorigin), Bcc: and Resent-Bcc: are removed, with extract=1
 * (sendmail -t) the recipients come from the To:/Cc:/Bcc: headers (the
 * Resent- ones when there are any), and an added From: carries the
 * sender's full name.
 */
#ifndef POSTERN_CLEANUP_H
#define POSTERN_CLEANUP_H

#include <stddef.h>
#include <sys/types.h>

#include "header_checks.h"

#define MSGID_MAX 1024
#define CLEANUP_REASON_MAX 512

/* A growable byte buffer; free p when done. */
struct dynbuf {
    char *p;
    size_t len, cap;
};
int cleanup_dynbuf_add(struct dynbuf *b, const void *data, size_t len);

/* Recipients in internal form, each with the address it was written as
 * (before qualification). Owns its strings. */
struct rcpt_list {
    char **addr, **orig;
    size_t n, cap;
};
int cleanup_rcpt_list_add(struct rcpt_list *l, const char *addr, const char *orig);
int cleanup_rcpt_list_has(const struct rcpt_list *l, const char *addr);
void cleanup_rcpt_list_free(struct rcpt_list *l);

/* A set of strings (the recipients already written). */
struct str_set {
    char **slot;
    size_t n, cap;
};
/* 1 when s was added, 0 when it was there already, -1 out of memory. */
int cleanup_str_set_add(struct str_set *set, const char *s);
void cleanup_str_set_free(struct str_set *set);

enum cleanup_origin { ORIGIN_OTHER, ORIGIN_SMTP, ORIGIN_LOCAL, ORIGIN_BOUNCE };

/* What becomes of the message at the end. */
enum cleanup_outcome {
    OUTCOME_QUEUE,     /* commit (to hold/ when hold is set) */
    OUTCOME_REJECT,    /* status and reason go back to the client */
    OUTCOME_DISCARD,   /* "queued" for the client, then thrown away */
    OUTCOME_DEFER,     /* a table failed: status 4, try again later */
};

struct cleanup_state {
    struct stream *client;
    struct queue_writer *writer;
    struct stream *out;
    int write_error;        /* errno of the first failed write, 0 if none */
    int nrcpt;
    char *sender;
    long long content_size;
    off_t content_offset;
    int in_headers;         /* still collecting the header block */
    int separator_due;      /* header block written; the body has not begun */
    char *hdr;              /* header block buffer */
    size_t hdr_len, hdr_cap;
    char message_id[MSGID_MAX];
    /* envelope held until the first non-envelope record */
    int envelope_open;
    struct dynbuf held_attrs;   /* REC_ATTR payloads, each NUL-terminated */
    size_t n_held;
    /* where the message comes from, for rewriting and log lines */
    enum cleanup_origin origin;
    char client_name[256], client_addr[64], helo[256], proto[32];
    int sasl_authenticated;
    char *first_rcpt;           /* the first recipient after rewriting */
    /* local submissions */
    int local;
    int extract;
    int extract_notify;     /* DSN NOTIFY mask for extracted recipients */
    char *full_name;
    struct rcpt_list rcpts;     /* envelope recipients, when extracting */
    struct rcpt_list extracted;
    /* O, P and N records describe the next R: held until it comes */
    char *next_orcpt, *next_dsn_orcpt, *next_dsn_notify;
    struct str_set written;     /* recipients written, for duplicates */
    /* header rewriting (headers.c) */
    int hdr_rewrite;            /* rewrite header addresses at all */
    const char *hdr_domain;     /* remote_header_rewrite_domain, or NULL */
    int hdr_class;              /* of the header being rewritten */
    /* content inspection and its outcome */
    int inspect;                /* header/body checks apply to this message */
    struct hc_body *body;       /* the body walker, when body inspection is on */
    enum hc_mime_kind mime_kind;
    char mime_boundary[256];
    enum cleanup_outcome outcome;
    int status;                 /* OUTCOME_REJECT: 4 or 5 */
    char reason[CLEANUP_REASON_MAX];
    int hold;
    struct rcpt_list bcc;       /* BCC action recipients */
};

/* output.c: content bytes into the queue file (nothing once the message
 * will not be queued). */
void cleanup_out_content(struct cleanup_state *st, const char *data, size_t len);
void cleanup_out_record(struct cleanup_state *st, int type, const void *data, size_t len);
/* The message cannot be accepted now: status 4 with reason, logged. */
void cleanup_defer(struct cleanup_state *st, const char *why);

/* rcpt.c */
/* Hold a REC_ORCPT, REC_DSN_ORCPT or REC_DSN_NOTIFY for the next R. */
void cleanup_rcpt_hold_meta(struct cleanup_state *st, int type, const char *data);
/* An envelope recipient from the client, with the records held for it. */
void cleanup_rcpt_envelope(struct cleanup_state *st, const char *addr);
/* Recipients taken from the headers (sendmail -t) and from BCC actions,
 * after the content. */
void cleanup_rcpt_write_extracted(struct cleanup_state *st);
void cleanup_rcpt_write_bcc(struct cleanup_state *st);
/* The envelope sender, rewritten for the queue file. */
void cleanup_rcpt_rewrite_sender(struct cleanup_state *st);

/* headers.c */
/* Offset where the header block ends in buf[0..len) (the empty line or the
 * first line that is neither a header nor a continuation), or -1 when the
 * buffer ends inside the header block. With at_end, buf is all there is:
 * a last line without newline counts as a line, and the result is never
 * -1. */
long cleanup_headers_block_end(const char *buf, size_t len, int at_end);
/* Decide header rewriting for this message (origin, client). */
void cleanup_headers_init(struct cleanup_state *st);
/* The header block block[0..len), inspected and rewritten into out (its
 * last header ends in a newline, even when the block's did not); -1 when
 * out of memory. */
int cleanup_headers_process(struct cleanup_state *st, const char *block, size_t len,
                            struct dynbuf *out);

/* checks.c */
/* A content check matched text[0..len) ("header" or "body"): log it and
 * record its effect on the message. Nonzero: stop inspecting. */
int cleanup_checks_matched(struct cleanup_state *st, const char *what, const char *text, size_t len,
                           const struct hc_result *r);
/* A check table failed: defer the message. Nonzero, like cleanup_checks_matched. */
int cleanup_checks_tempfail(struct cleanup_state *st);
/* Start the body walker when body inspection applies. */
void cleanup_checks_body_start(struct cleanup_state *st);

/* local.c */
/* "Full Name <addr>" as a From: value: the name quoted when it is not
 * plain words; just the address when there is no name. addr is internal
 * form. */
void cleanup_local_from_value(const char *full_name, const char *addr, char *out, size_t outlen);

#endif
