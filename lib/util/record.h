/* record.h - the one record framing: type (1 byte), length (unsigned LEB128),
 * payload. Queue files, the cleanup protocol and every other IPC use it.
 *
 * The pure encode/decode functions here know nothing of I/O; rec_put and
 * rec_get add stream I/O, and events.h adds libevent buffers.
 */
#ifndef POSTERN_RECORD_H
#define POSTERN_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct stream;

/* Record types. Queue files use all but REC_ATTR-only protocols. */
enum rec_type {
    REC_SIZE = 'Z',          /* fixed width "content_size content_offset nrcpt
                                warn_time"; rewritten in place (REC_SIZE_WIDTH) */
    REC_TIME = 'T',          /* arrival "sec.usec" */
    REC_SENDER = 'S',        /* envelope sender, internal form, "" = <> */
    REC_ATTR = 'A',          /* "name=value" */
    REC_ORCPT = 'O',         /* original recipient of the next REC_RCPT (before
                                rewriting: aliases, canonical, virtual) */
    REC_DSN_ORCPT = 'P',     /* DSN ORCPT of the next REC_RCPT, "type;address" decoded */
    REC_DSN_NOTIFY = 'N',    /* DSN NOTIFY of the next REC_RCPT: decimal mask of DSN_NOTIFY_* */
    REC_RCPT = 'R',          /* recipient still to be delivered */
    REC_DONE = 'D',          /* recipient finished: REC_RCPT rewritten in place */
    REC_CONTENT_START = 'M', /* message content follows */
    REC_CONTENT = 'C',       /* a chunk of content, LF line ends */
    REC_END = 'E',           /* end of the file or of an attribute list */
};

/* DSN NOTIFY bits (RFC 3461); 0 means "not given" (= FAILURE,DELAY). */
#define DSN_NOTIFY_NEVER 1
#define DSN_NOTIFY_SUCCESS 2
#define DSN_NOTIFY_FAILURE 4
#define DSN_NOTIFY_DELAY 8

/* Envelope REC_ATTR names used across programs. */
#define ATTR_DSN_ENVID "dsn_envid"        /* ENVID, xtext-decoded */
#define ATTR_DSN_RET "dsn_ret"            /* FULL or HDRS */
#define ATTR_CLIENT_NAME "client_name"
#define ATTR_CLIENT_ADDR "client_address"
#define ATTR_CLIENT_PORT "client_port"     /* the client's TCP port (XFORWARD PORT) */
#define ATTR_REVERSE_CLIENT_NAME "reverse_client_name"
#define ATTR_HELO "helo_name"
#define ATTR_PROTOCOL "protocol"
#define ATTR_SASL_USER "sasl_username"
#define ATTR_SASL_METHOD "sasl_method"
#define ATTR_ORIGIN "origin"              /* "smtp", "local" (pickup), "bounce" */
#define ATTR_UID "uid"                    /* submitting user's uid (pickup) */
#define ATTR_FULL_NAME "full_name"        /* sender full name for an added From: (-F) */
#define ATTR_EXTRACT "extract"            /* "1": recipients from To/Cc/Bcc (-t) */
#define ATTR_DSN_NOTIFY "dsn_notify"      /* NOTIFY mask for recipients cleanup extracts */
#define ATTR_CONTENT_FILTER "content_filter" /* after-queue filter "transport:nexthop" */
#define ATTR_REDIRECT "redirect"          /* REDIRECT action: the one address the message
                                             goes to instead of its recipients (qmgr) */
#define ATTR_BCC "bcc"                    /* BCC action (smtpd to cleanup, not stored) */
#define ATTR_SMTPUTF8 "smtputf8"          /* "1": the client asked for SMTPUTF8 (RFC 6531) */

#define REC_MAX_HEADER 11      /* type byte + up to 10 LEB128 bytes */
#define REC_CHUNK_SIZE 65536   /* largest REC_CONTENT payload writers emit */
#define REC_SIZE_WIDTH 63      /* payload width of REC_SIZE: four "%15lld" fields */
#define REC_SIZE_WARN_FIELD 48 /* offset of warn_time inside the payload */

/* Encode a record header into out; returns its length. */
size_t rec_header_encode(unsigned char out[REC_MAX_HEADER], int type, size_t len);
/* Decode a header from buf[0..avail). Returns the header length, 0 when more
 * bytes are needed, -1 when malformed (length over 2^40 or a bad LEB128). */
int rec_header_decode(const unsigned char *buf, size_t avail, int *type, size_t *len);

/* A growable payload buffer; data is always NUL-terminated. Free with
 * rec_buf_free. Growth never exceeds the max passed to rec_get. */
struct rec_buf {
    char *data;
    size_t len;
    size_t cap;
};
void rec_buf_free(struct rec_buf *b);
/* Ensure room for need payload bytes plus the NUL. -1 on ENOMEM. */
int rec_buf_reserve(struct rec_buf *b, size_t need);
/* Make b hold exactly the bytes given (NUL-terminated). Returns -1 on ENOMEM. */
int rec_buf_set(struct rec_buf *b, const void *data, size_t len);

int rec_put(struct stream *s, int type, const void *data, size_t len);
int rec_put_str(struct stream *s, int type, const char *str);
int rec_putf(struct stream *s, int type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define REC_EOF (-1)     /* clean EOF before any header byte */
#define REC_ERROR (-2)   /* I/O error, timeout, truncated or malformed record */
#define REC_TOOBIG (-3)  /* payload larger than max */
/* Read one record into b. Returns its type or one of the negatives above.
 * *offset (if not NULL) receives the stream offset of the type byte. */
int rec_get(struct stream *s, struct rec_buf *b, size_t max, off_t *offset);

/* Split "name=value" in place (b->data is modified). Returns -1 if no '='. */
int rec_attr_split(char *payload, char **name, char **value);

#endif
