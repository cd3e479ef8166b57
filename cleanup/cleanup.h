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
 *   milter.c   the milters' content events (smtpd_milters, whose
 *              connections smtpd passes with the stream) and whole
 *              sessions for local submissions (non_smtpd_milters)
 *   milter_edit.c  the message as milters see and change it, and the
 *              copy of the spool into the queue file with their changes
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
#include "milter.h"

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
    char hold_reason[256];      /* a milter's quarantine reason */
    struct rcpt_list bcc;       /* BCC action recipients */
    char filter[HC_TEXT_MAX];   /* content_filter from the client or a FILTER action, "" none */
    char redirect[HC_TEXT_MAX]; /* a REDIRECT action's address (the last one), "" none */
    unsigned receive_flags;     /* the client's receive_override_options (receive_override.h) */
    /* milters (milter.c): NULL when none see this message; then st->out
     * is a spool until the end (milter_edit.c) */
    struct cleanup_milters *milters;
    long long header_len;       /* content bytes of the header block */
    off_t content_end;          /* spool offset after the last content record */
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
/* A recipient a milter added: rewritten and expanded like the client's,
 * with its DSN ORCPT (or NULL) and NOTIFY mask (0: not given). */
void cleanup_rcpt_add(struct cleanup_state *st, const char *addr, const char *dsn_orcpt,
                      int notify);

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

/* milter.c */
/* The milter connections that came with the client's first request. */
void cleanup_milter_receive(struct cleanup_state *st, const int *fds, size_t n);
/* 1 when payload is one of smtpd's milter attributes (milter=,
 * milter_macro=, milter_hold=, milter_discard=), taken and not stored. */
int cleanup_milter_attr(struct cleanup_state *st, const char *payload);
/* At the end of the envelope: whether milters see this message; when
 * they do, what cleanup writes goes to a spool until cleanup_milter_finish. */
void cleanup_milter_start(struct cleanup_state *st);
/* The message is complete in the spool: the milters' events, then the
 * spool into the queue file with their changes (or their verdict). */
void cleanup_milter_finish(struct cleanup_state *st);
/* The milters' part of the answer to the client (reply=, milter=). */
void cleanup_milter_answer(struct cleanup_state *st);
void cleanup_milter_free(struct cleanup_state *st);
/* A quarantine: hold/, with the reason logged and kept. */
void cleanup_milter_hold(struct cleanup_state *st, const char *reason);
/* Whether the milter now talking wants header values as they are. */
int cleanup_milter_leadspc(const struct cleanup_state *st);

/* milter_edit.c */
struct cleanup_model;
struct cleanup_model *cleanup_model_new(struct cleanup_state *st);
void cleanup_model_free(struct cleanup_model *md);
extern const struct milter_edits cleanup_model_edits;   /* ctx: the model */
/* Headers the milters see (our own Received: is not shown): the i-th
 * one's name into name, and its value (folded lines, no final newline). */
size_t cleanup_model_headers(const struct cleanup_model *md);
int cleanup_model_header(const struct cleanup_model *md, size_t i, char *name, size_t nlen,
                         const char **value, size_t *vlen);
/* The body (the spool's, or the last one a milter sent), LF line ends. */
struct cleanup_body;
struct cleanup_body *cleanup_body_open(struct cleanup_model *md);
int cleanup_body_next(struct cleanup_body *b, const char **data, size_t *len);
void cleanup_body_close(struct cleanup_body *b);
/* A milter's answer is complete (its replaced body counts) or failed. */
void cleanup_model_commit_body(struct cleanup_model *md);
void cleanup_model_drop_body(struct cleanup_model *md);
/* Recipients the milters deleted. */
size_t cleanup_model_deletions(const struct cleanup_model *md);
/* The spool into the queue stream with the changes (st->out becomes it). */
void cleanup_model_write(struct cleanup_model *md, struct stream *queue);

/* local.c */
/* "Full Name <addr>" as a From: value: the name quoted when it is not
 * plain words; just the address when there is no name. addr is internal
 * form. */
void cleanup_local_from_value(const char *full_name, const char *addr, char *out, size_t outlen);

#endif
