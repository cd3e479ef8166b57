/* queue_dump.c - postcat's rendering of a queue file (see queue_dump.h).
 *
 * The file is read record by record with its own header decoding, so a
 * damaged file is described (where it breaks, and how) instead of just
 * failing. Content is printed line by line as it streams by: a line's
 * first bytes decide whether it still belongs to the header block (the
 * -h/-b split), and only those bytes are held.
 */
#include "queue_dump.h"

#include "header_line.h"
#include "log.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes of a line's start that decide whether it is a header line; a
 * header name running past them is taken for body text. */
#define LINE_PEEK 1024

enum section { ENVELOPE, CONTENT, EXTRACTED, FILE_END };

struct dump {
    FILE *out;
    const char *name;
    int flags;
    enum section section;
    int started;             /* the envelope marker is out */
    /* content */
    int in_headers;          /* the header block has not ended yet */
    int first_line;
    int line_open;           /* inside a line already decided on */
    int line_shown;          /* ... and printed */
    char peek[LINE_PEEK];    /* the undecided start of the current line */
    size_t npeek;
    off_t peek_offset;
};

/* --- output --- */

static void print_prefix(struct dump *d, off_t offset, int type)
{
    if (d->flags & QUEUE_DUMP_OFFSETS)
        fprintf(d->out, "%9lld ", (long long)offset);
    if (d->flags & QUEUE_DUMP_TYPES)
        fprintf(d->out, "%3d ", type);
}

static void print_marker(struct dump *d, const char *what, off_t offset, int type)
{
    if (!(d->flags & QUEUE_DUMP_ENVELOPE))
        return;
    print_prefix(d, offset, type);
    fprintf(d->out, "*** %s %s ***\n", what, d->name);
}

/* Postfix's name for what a record stands for. */
static const char *record_name(int type)
{
    switch (type) {
    case REC_SIZE: return "message_size";
    case REC_TIME: return "message_arrival_time";
    case REC_SENDER: return "sender";
    case REC_ATTR: return "named_attribute";
    case REC_ORCPT: return "original_recipient";
    case REC_RCPT: return "recipient";
    case REC_DONE: return "done_recipient";
    case REC_CONTENT: return "regular_text";
    default: return "unknown_record_type";
    }
}

/* "sec.usec" as Postfix shows an arrival time; the payload as it is when
 * it is no time. */
static void print_time(struct dump *d, const char *payload, size_t len)
{
    char *end, when[64];
    errno = 0;
    long long sec = strtoll(payload, &end, 10);
    time_t t = (time_t)sec;
    struct tm tm;
    if (end != payload && !errno && (*end == '.' || *end == 0) && (long long)t == sec &&
        localtime_r(&t, &tm) && strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm)) {
        fputs(when, d->out);
        return;
    }
    fwrite(payload, 1, len, d->out);
}

/* The routing attributes, which Postfix keeps in records of their own:
 * its postcat's names for them, and payload moved past "name=". */
static int routing_record(const char **payload, size_t *len, const char **name)
{
    static const char *const attrs[][2] = {{ATTR_CONTENT_FILTER, "content_filter"},
                                           {ATTR_REDIRECT, "redirect_to"}};
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        size_t n = strlen(attrs[i][0]);
        if (*len > n && strncmp(*payload, attrs[i][0], n) == 0 && (*payload)[n] == '=') {
            *payload += n + 1;
            *len -= n + 1;
            *name = attrs[i][1];
            return 1;
        }
    }
    return 0;
}

static void print_envelope_record(struct dump *d, int type, const char *payload, size_t len,
                                  off_t offset)
{
    const char *name;
    if (!(d->flags & QUEUE_DUMP_ENVELOPE))
        return;
    print_prefix(d, offset, type);
    if (type == REC_DSN_ORCPT) {
        fputs("named_attribute: dsn_orig_rcpt=", d->out);
    } else if (type == REC_DSN_NOTIFY) {
        fputs("named_attribute: notify_flags=", d->out);
    } else if (type == REC_ATTR && routing_record(&payload, &len, &name)) {
        fprintf(d->out, "%s: ", name);   /* Postfix's postcat names its own records so */
    } else {
        fprintf(d->out, "%s: ", record_name(type));
        if (type == REC_TIME) {
            print_time(d, payload, len);
            fputc('\n', d->out);
            return;
        }
    }
    fwrite(payload, 1, len, d->out);
    fputc('\n', d->out);
}

/* --- content, line by line --- */

/* The held start of a line is complete enough to decide: is it still a
 * header line (a header, or a continuation of one), and is it printed? */
static void decide_line(struct dump *d)
{
    size_t n = d->npeek;
    int ends = n > 0 && d->peek[n - 1] == '\n';
    if (d->in_headers) {
        int continued = !d->first_line && n > 0 && (d->peek[0] == ' ' || d->peek[0] == '\t');
        if (!continued && header_name_len(d->peek, ends ? n - 1 : n) == 0)
            d->in_headers = 0;
    }
    d->first_line = 0;
    d->line_shown = (d->flags & (d->in_headers ? QUEUE_DUMP_HEADERS : QUEUE_DUMP_BODY)) != 0;
    if (d->line_shown) {
        print_prefix(d, d->peek_offset, REC_CONTENT);
        if (d->flags & QUEUE_DUMP_NAMES)
            fputs("regular_text: ", d->out);
        fwrite(d->peek, 1, n, d->out);
    }
    d->line_open = !ends;
    d->npeek = 0;
}

/* Content bytes data[0..len), the first at file offset offset. */
static void content_bytes(struct dump *d, const char *data, size_t len, off_t offset)
{
    while (len > 0) {
        const char *lf = memchr(data, '\n', len);
        size_t take = lf ? (size_t)(lf - data) + 1 : len;
        if (d->line_open) {
            if (d->line_shown)
                fwrite(data, 1, take, d->out);
            d->line_open = !lf;
        } else {
            if (d->npeek == 0)
                d->peek_offset = offset;
            if (take > LINE_PEEK - d->npeek)
                take = LINE_PEEK - d->npeek;
            memcpy(d->peek + d->npeek, data, take);
            d->npeek += take;
            if (d->peek[d->npeek - 1] == '\n' || d->npeek == LINE_PEEK)
                decide_line(d);
        }
        data += take;
        len -= take;
        offset += (off_t)take;
    }
}

/* The content ended: a last line without its line end still gets one. */
static void content_end(struct dump *d)
{
    if (d->npeek > 0)
        decide_line(d);
    if (d->line_open && d->line_shown)
        fputc('\n', d->out);
    d->line_open = 0;
}

/* --- records --- */

/* A record header: 1 (type, length and the header's size set), 0 at the
 * end of the file before any byte, -1 (why set) when it is cut short or
 * malformed, -2 on a read error. */
static int read_header(struct stream *in, int *type, size_t *len, size_t *size,
                       const char **why)
{
    unsigned char hdr[REC_MAX_HEADER];
    size_t have = 0;
    for (;;) {
        ssize_t n = stream_read(in, hdr + have, 1);
        if (n < 0)
            return -2;
        if (n == 0) {
            *why = have == 0 ? NULL : "unexpected EOF in a record header";
            return have == 0 ? 0 : -1;
        }
        have++;
        int h = rec_header_decode(hdr, have, type, len);
        if (h > 0) {
            *size = have;
            return 1;
        }
        if (h < 0 || have == REC_MAX_HEADER) {
            *why = "malformed record length";
            return -1;
        }
    }
}

/* Up to len payload bytes into b: how many there were (fewer at the end
 * of the file), or -1 on a read error. */
static ssize_t read_payload(struct stream *in, struct rec_buf *b, size_t len)
{
    if (rec_buf_reserve(b, len) < 0)
        return -1;
    size_t got = 0;
    while (got < len) {
        ssize_t n = stream_read(in, b->data + got, len - got);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    b->data[got] = 0;
    b->len = got;
    return (ssize_t)got;
}

/* A file starts as cleanup writes one (Z) or as postdrop does (T). */
static int valid_first_record(int type)
{
    return type == REC_SIZE || type == REC_TIME;
}

/* One record in the current section. */
static void dump_record(struct dump *d, int type, const struct rec_buf *b, off_t offset,
                        off_t payload_offset)
{
    if (!d->started && (d->flags & QUEUE_DUMP_ENVELOPE))
        fprintf(d->out, "*** ENVELOPE RECORDS %s ***\n", d->name);
    d->started = 1;
    if (d->section == CONTENT && type == REC_CONTENT) {
        content_bytes(d, b->data, b->len, payload_offset);
        return;
    }
    if (d->section == CONTENT) {
        content_end(d);
        print_marker(d, "HEADER EXTRACTED", offset, type);
        d->section = EXTRACTED;
    }
    if (type == REC_CONTENT_START) {
        print_marker(d, "MESSAGE CONTENTS", offset, type);
        d->section = CONTENT;
        d->in_headers = d->first_line = 1;
    } else if (type == REC_END) {
        print_marker(d, "MESSAGE FILE END", offset, type);
        d->section = FILE_END;
    } else {
        print_envelope_record(d, type, b->data, b->len, offset);
    }
}

static int problem(struct dump *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Warn about the file (after what was printed so far); returns 1. */
static int problem(struct dump *d, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (d->section == CONTENT)
        content_end(d);
    fflush(d->out);
    msg_warn("%s: %s", d->name, text);
    return 1;
}

static int read_failed(struct dump *d)
{
    int saved = errno;
    problem(d, "read error: %s", strerror(errno));
    errno = saved;
    return -1;
}

/* After the end record (which ends at offset at) nothing may follow. */
static int check_after_end(struct dump *d, struct stream *in, off_t at)
{
    if (stream_peek(in) < 0)
        return 0;
    return problem(d, "data after the end record, at offset %lld", (long long)at);
}

/* Read the record at *offset and print it; 0 to go on, else what
 * queue_dump returns (warned). */
static int next_record(struct dump *d, struct stream *in, struct rec_buf *b, off_t *offset,
                       int first)
{
    int type;
    size_t len, hlen = 0;
    const char *why = NULL;
    int h = read_header(in, &type, &len, &hlen, &why);
    if (h == -2)
        return read_failed(d);
    if ((h <= 0 && first) || (h == 1 && first && !valid_first_record(type)))
        return problem(d, "input is not a valid queue file");
    if (h == 0)
        return problem(d, "unexpected EOF: the file has no end record");
    if (h < 0)
        return problem(d, "%s at offset %lld", why, (long long)*offset);
    if (len > QUEUE_DUMP_RECORD_MAX)
        return problem(d, "record type %d length %zu at offset %lld is too long", type, len,
                       (long long)*offset);
    ssize_t got = read_payload(in, b, len);
    if (got < 0)
        return errno == ENOMEM ? problem(d, "out of memory") : read_failed(d);
    if ((size_t)got < len)
        return problem(d, "unexpected EOF in data, record type %d length %zu", type, len);
    dump_record(d, type, b, *offset, *offset + (off_t)hlen);
    *offset += (off_t)(hlen + len);
    return 0;
}

int queue_dump(FILE *out, struct stream *in, const char *name, int flags)
{
    struct dump d = {.out = out, .name = name, .flags = flags};
    struct rec_buf b = {0};
    off_t offset = 0;   /* counted here: a pipe's stream cannot tell it */
    int rc = 0;
    for (int first = 1; rc == 0 && d.section != FILE_END; first = 0)
        rc = next_record(&d, in, &b, &offset, first);
    if (rc == 0)
        rc = check_after_end(&d, in, offset);
    rec_buf_free(&b);
    return rc;
}
