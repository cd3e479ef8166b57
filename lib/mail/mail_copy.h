/* mail_copy.h - the bytes a delivery agent writes for one message, for
 * every agent: an mbox "From " line, the trace headers Postfix's agents
 * prepend (Return-Path:, X-Original-To:, Delivered-To:), then the queue
 * file's content with the line ends and quoting the destination needs;
 * and the Delivered-To: loop check, which reads the same headers back.
 *
 * Which agent uses what:
 *   Maildir (local, virtual)   MAIL_COPY_TRACE
 *   mbox and /file             MAIL_COPY_MBOX (From_ line, ">From " quoting,
 *                              complete last line, then an empty line)
 *   |command (local)           MAIL_COPY_FROM_LINE | MAIL_COPY_TRACE
 *   forwarding (local)         MAIL_COPY_DELIVERED_TO
 *   SMTP DATA (remote)         a filter with MAIL_COPY_CRLF | MAIL_COPY_DOT
 *                              | MAIL_COPY_NEWLINE_END, fed chunk by chunk
 * Content is LF-terminated in the queue file; without MAIL_COPY_CRLF it
 * goes out byte for byte but for the quoting asked for.
 *
 * mail_copy writes through a sink in pieces of up to 64 KiB; the filter
 * underneath it (mail_copy_filter_*) is for agents that feed content
 * themselves (remote's event loop) and buffers nothing but the few bytes of
 * a line start that may still turn out to be "From ".
 */
#ifndef POSTERN_MAIL_COPY_H
#define POSTERN_MAIL_COPY_H

#include <stddef.h>

#include "deliver_request.h"

#define MAIL_COPY_FROM_LINE 0x001     /* "From sender date" first */
#define MAIL_COPY_RETURN_PATH 0x002   /* Return-Path: <sender> */
#define MAIL_COPY_ORIG_TO 0x004       /* X-Original-To:, when the trace has one */
#define MAIL_COPY_DELIVERED_TO 0x008  /* Delivered-To: */
#define MAIL_COPY_QUOTE_FROM 0x010    /* ">From " for content lines starting "From " */
#define MAIL_COPY_DOT 0x020           /* a dot starting a line is doubled (SMTP) */
#define MAIL_COPY_CRLF 0x040          /* CR LF line ends */
#define MAIL_COPY_NEWLINE_END 0x080   /* the last line ends with a line end */
#define MAIL_COPY_BLANK_END 0x100     /* then an empty line (implies NEWLINE_END) */

#define MAIL_COPY_TRACE (MAIL_COPY_RETURN_PATH | MAIL_COPY_ORIG_TO | MAIL_COPY_DELIVERED_TO)
#define MAIL_COPY_MBOX (MAIL_COPY_FROM_LINE | MAIL_COPY_TRACE | MAIL_COPY_QUOTE_FROM \
                        | MAIL_COPY_BLANK_END)

#define MAIL_COPY_EWRITE (-1)   /* the sink failed; errno set */
#define MAIL_COPY_EREAD (-2)    /* the queue file could not be read */
#define MAIL_COPY_ETOOBIG (-3)  /* more than the limit */
#define MAIL_COPY_EFULL (-4)    /* mail_copy_append: the file is at its limit already */

/* Who a copy is for, as its trace headers say (internal forms). */
struct mail_copy_trace {
    const char *sender;        /* Return-Path and the From_ line; "" for <> */
    const char *orig_rcpt;     /* X-Original-To, or NULL for none */
    const char *delivered_to;  /* Delivered-To */
};

/* Where bytes go: 0, or -1 with errno. */
typedef int (*mail_copy_sink)(void *ctx, const char *buf, size_t len);
/* write(2) until done: the sink for a file descriptor (ctx: int *). */
int mail_copy_write_fd(void *ctx, const char *buf, size_t len);

/* Copy the trace headers flags ask for and the content of m through sink.
 * limit (0 = none) bounds the bytes written. 0 or a MAIL_COPY_E* code. */
int mail_copy(const struct deliver_message *m, const struct mail_copy_trace *t, int flags,
              long long limit, mail_copy_sink sink, void *ctx);

/* mail_copy to the end of the regular file fd (path for the log), all or
 * nothing: the copy may make the file at most limit bytes (0 = none), it
 * is fsynced before 0 is returned, and on any failure the file is cut
 * back to its old size (errno is the failure's). */
int mail_copy_append(int fd, const char *path, const struct deliver_message *m,
                     const struct mail_copy_trace *t, int flags, long long limit);

/* Whether the message's header block has a Delivered-To: address header
 * (case ignored): 1, 0, or -1 when the queue file cannot be read. Reads at
 * most header_size_limit bytes. */
int mail_copy_delivered_to_seen(const struct deliver_message *m, const char *address);

/* --- the filter under mail_copy, for content fed piece by piece --- */

#define MAIL_COPY_FROM_LEN 5   /* "From " */

struct mail_copy_filter {
    int flags;
    long long limit, written;  /* limit 0 = none */
    int result;                /* first failure (MAIL_COPY_E*), 0 if none */
    int at_bol;                /* the next content byte starts a line */
    char held[MAIL_COPY_FROM_LEN];   /* a line start that may be "From " */
    size_t held_len;
    mail_copy_sink sink;
    void *ctx;
};

void mail_copy_filter_init(struct mail_copy_filter *f, int flags, long long limit,
                           mail_copy_sink sink, void *ctx);
/* A header line of our own (no line end in text), never quoted; only
 * before the content. */
int mail_copy_filter_line(struct mail_copy_filter *f, const char *text);
/* Content bytes, any split. Returns f->result. */
int mail_copy_filter_put(struct mail_copy_filter *f, const char *p, size_t len);
/* After the last content byte: what was held, the line end and the empty
 * line flags ask for. Returns f->result. */
int mail_copy_filter_end(struct mail_copy_filter *f);

#endif
