/* mail_copy.c - the copy of one message with its trace headers, and the
 * Delivered-To: loop check (mail_copy.h).
 *
 * The filter looks at line starts only: the rest of a line goes out as one
 * span, and with no quoting, dots or CR LF asked for a whole chunk does.
 * A line start is held back only while it still reads "From " (at most
 * five bytes), so quoting works across chunk borders.
 */
#include "mail_copy.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "header_line.h"
#include "log.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

#define COPY_BUF 65536
#define FROM_ "From "
#define HEADER_LINE_MAX (2 * ADDRESS_MAX + 64)

/* --- the filter ---------------------------------------------------------- */

void mail_copy_filter_init(struct mail_copy_filter *f, int flags, long long limit,
                           mail_copy_sink sink, void *ctx)
{
    memset(f, 0, sizeof(*f));
    f->flags = flags;
    f->limit = limit;
    f->at_bol = 1;
    f->sink = sink;
    f->ctx = ctx;
}

static void emit(struct mail_copy_filter *f, const char *data, size_t n)
{
    if (f->result != 0 || n == 0)
        return;
    if (f->limit > 0 && f->written + (long long)n > f->limit) {
        f->result = MAIL_COPY_ETOOBIG;
        return;
    }
    f->written += (long long)n;
    if (f->sink(f->ctx, data, n) < 0)
        f->result = MAIL_COPY_EWRITE;
}

static void emit_newline(struct mail_copy_filter *f)
{
    if (f->flags & MAIL_COPY_CRLF)
        emit(f, "\r\n", 2);
    else
        emit(f, "\n", 1);
}

/* n bytes of a line, then its line end when it has one. */
static void emit_line_part(struct mail_copy_filter *f, const char *p, size_t n, int newline)
{
    if (newline && !(f->flags & MAIL_COPY_CRLF)) {
        emit(f, p, n + 1);
        return;
    }
    emit(f, p, n);
    if (newline)
        emit_newline(f);
}

int mail_copy_filter_line(struct mail_copy_filter *f, const char *text)
{
    emit(f, text, strlen(text));
    emit_newline(f);
    return f->result;
}

/* The held line start goes out, quoted when it is exactly "From ". */
static void release_held(struct mail_copy_filter *f)
{
    int newline = f->held_len > 0 && f->held[f->held_len - 1] == '\n';

    if (f->held_len == MAIL_COPY_FROM_LEN && memcmp(f->held, FROM_, MAIL_COPY_FROM_LEN) == 0)
        emit(f, ">", 1);
    emit_line_part(f, f->held, f->held_len - (size_t)newline, newline);
    f->held_len = 0;
}

/* One byte of a line start under ">From " quoting. */
static void hold_byte(struct mail_copy_filter *f, char c)
{
    f->at_bol = 0;
    f->held[f->held_len++] = c;
    if (c == '\n' || f->held_len == MAIL_COPY_FROM_LEN || c != FROM_[f->held_len - 1]) {
        release_held(f);
        f->at_bol = c == '\n';
    }
}

int mail_copy_filter_put(struct mail_copy_filter *f, const char *p, size_t n)
{
    if (!(f->flags & (MAIL_COPY_QUOTE_FROM | MAIL_COPY_DOT | MAIL_COPY_CRLF))) {
        if (n > 0) {
            emit(f, p, n);
            f->at_bol = p[n - 1] == '\n';
        }
        return f->result;
    }
    while (n > 0 && f->result == 0) {
        if (f->at_bol && (f->flags & MAIL_COPY_DOT) && *p == '.')
            emit(f, ".", 1);   /* the line's own dot follows */
        if ((f->flags & MAIL_COPY_QUOTE_FROM) && (f->at_bol || f->held_len > 0)) {
            hold_byte(f, *p++);
            n--;
            continue;
        }
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl != NULL ? (size_t)(nl - p) : n;
        emit_line_part(f, p, seg, nl != NULL);
        f->at_bol = nl != NULL;
        seg += nl != NULL;
        p += seg;
        n -= seg;
    }
    return f->result;
}

int mail_copy_filter_end(struct mail_copy_filter *f)
{
    if (f->held_len > 0) {
        release_held(f);
        f->at_bol = 0;   /* a held '\n' would have been released already */
    }
    if ((f->flags & (MAIL_COPY_NEWLINE_END | MAIL_COPY_BLANK_END)) && !f->at_bol) {
        emit_newline(f);
        f->at_bol = 1;
    }
    if (f->flags & MAIL_COPY_BLANK_END)
        emit_newline(f);
    return f->result;
}

/* --- trace headers ------------------------------------------------------- */

/* "From sender Www Mmm dd hh:mm:ss yyyy" (asctime format, local time) as
 * mbox readers expect; the null sender is MAILER-DAEMON. Spaces inside a
 * quoted local part would confuse them, so they become '_'. */
static void put_from_line(struct mail_copy_filter *f, const char *sender)
{
    char who[2 * ADDRESS_MAX + 8], date[64], line[sizeof(who) + sizeof(date) + 16];
    time_t now = time(NULL);
    struct tm tm;

    if (*sender == 0)
        snprintf(who, sizeof(who), "MAILER-DAEMON");
    else
        address_quote_shown(sender, who, sizeof(who));
    for (char *p = who; *p != 0; p++)
        if (*p == ' ' || *p == '\t')
            *p = '_';
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
    snprintf(line, sizeof(line), "From %s %s", who, date);
    mail_copy_filter_line(f, line);
}

/* "NAME: <address>" or "NAME: address"; control characters in the
 * address are shown as '?', so no address can add a header of its own. */
static void put_header(struct mail_copy_filter *f, const char *name, const char *address,
                       int angle)
{
    char shown[2 * ADDRESS_MAX + 8], line[HEADER_LINE_MAX];

    address_quote_shown(address, shown, sizeof(shown));
    snprintf(line, sizeof(line), angle ? "%s: <%s>" : "%s: %s", name, shown);
    mail_copy_filter_line(f, line);
}

static void put_trace(struct mail_copy_filter *f, const struct mail_copy_trace *t, int flags)
{
    if (flags & MAIL_COPY_FROM_LINE)
        put_from_line(f, t->sender);
    if (flags & MAIL_COPY_RETURN_PATH)
        put_header(f, "Return-Path", t->sender, 1);
    if ((flags & MAIL_COPY_ORIG_TO) && t->orig_rcpt != NULL)
        put_header(f, "X-Original-To", t->orig_rcpt, 0);
    if (flags & MAIL_COPY_DELIVERED_TO)
        put_header(f, "Delivered-To", t->delivered_to, 0);
}

/* --- the whole copy ------------------------------------------------------ */

/* Output gathered into large writes. */
struct copy_buffer {
    mail_copy_sink sink;
    void *ctx;
    size_t len;
    char buf[COPY_BUF];
};

static int buffer_flush(void *ctx)
{
    struct copy_buffer *b = ctx;

    return b->sink(b->ctx, b->buf, b->len);
}

static int buffer_put(void *ctx, const char *p, size_t n)
{
    struct copy_buffer *b = ctx;

    return stream_copy(b->buf, sizeof(b->buf), &b->len, p, n, buffer_flush, b);
}

static void put_content(struct mail_copy_filter *f, const struct deliver_message *m)
{
    struct rec_buf chunk = {0};
    int r = 0;

    if (queue_content_begin(m->queue, m->content_offset) < 0) {
        f->result = MAIL_COPY_EREAD;
        return;
    }
    while (f->result == 0 && (r = queue_content_next(m->queue, &chunk)) == 1)
        mail_copy_filter_put(f, chunk.data, chunk.len);
    if (f->result == 0 && r < 0)
        f->result = MAIL_COPY_EREAD;
    rec_buf_free(&chunk);
}

int mail_copy(const struct deliver_message *m, const struct mail_copy_trace *t, int flags,
              long long limit, mail_copy_sink sink, void *ctx)
{
    /* malloc, not calloc: clearing the 64 KiB buffer was most of local's
     * user time (bench/README.md). */
    struct copy_buffer *b = malloc(sizeof(*b));
    struct mail_copy_filter f;
    int saved;

    if (b == NULL) {
        errno = ENOMEM;
        return MAIL_COPY_EWRITE;
    }
    b->sink = sink;
    b->ctx = ctx;
    b->len = 0;
    mail_copy_filter_init(&f, flags, limit, buffer_put, b);
    put_trace(&f, t, flags);
    if (f.result == 0)
        put_content(&f, m);
    mail_copy_filter_end(&f);
    if (f.result == 0 && b->len > 0 && sink(ctx, b->buf, b->len) < 0)
        f.result = MAIL_COPY_EWRITE;
    saved = errno;
    free(b);
    errno = saved;
    return f.result;
}

int mail_copy_write_fd(void *ctx, const char *buf, size_t len)
{
    int fd = *(int *)ctx;

    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int mail_copy_append(int fd, const char *path, const struct deliver_message *m,
                     const struct mail_copy_trace *t, int flags, long long limit)
{
    struct stat sb;
    off_t old;
    int r, saved;

    if (fstat(fd, &sb) < 0)
        return MAIL_COPY_EWRITE;
    old = sb.st_size;
    if (limit > 0 && (long long)old >= limit)
        return MAIL_COPY_EFULL;
    r = mail_copy(m, t, flags, limit > 0 ? limit - (long long)old : 0, mail_copy_write_fd, &fd);
    if (r == 0 && fsync(fd) < 0)
        r = MAIL_COPY_EWRITE;
    if (r == 0)
        return 0;
    saved = errno;
    if (ftruncate(fd, old) < 0 || fsync(fd) < 0)
        msg_warn("%s: cannot cut %s back to %lld bytes: %s", m->queue_id, path,
                 (long long)old, strerror(errno));
    errno = saved;
    return r;
}

/* --- Delivered-To: loop detection ---------------------------------------- */

/* The header block (up to the first empty line, at most max bytes) into a
 * malloc'd, NUL-terminated buffer. NULL when the queue file cannot be read. */
static char *read_header_block(const struct deliver_message *m, size_t max, size_t *len)
{
    struct rec_buf chunk = {0};
    char *buf = malloc(max + 1);
    size_t n = 0;
    int r = 0;

    if (buf == NULL || queue_content_begin(m->queue, m->content_offset) < 0) {
        free(buf);
        return NULL;
    }
    buf[0] = 0;
    while (n < max && (r = queue_content_next(m->queue, &chunk)) == 1) {
        size_t take = chunk.len < max - n ? chunk.len : max - n;
        memcpy(buf + n, chunk.data, take);
        n += take;
        buf[n] = 0;
        if (buf[0] == '\n' || strstr(buf, "\n\n") != NULL)
            break;
    }
    rec_buf_free(&chunk);
    if (r < 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Whether one logical header (folded lines included, without its final
 * newline) is "Delivered-To: address": the name as every header parser
 * reads it (header_line.h, so "Delivered-To : x" counts), the value with
 * its surrounding white space, case ignored. */
static int is_delivered_to(const char *line, size_t len, const char *address)
{
    size_t colon = header_name_len(line, len), alen = strlen(address);
    const char *v, *end = line + len;

    if (colon == 0 || !header_is(line, colon, "Delivered-To"))
        return 0;
    for (v = line + colon + 1; v < end && isspace((unsigned char)*v); v++)
        ;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    return (size_t)(end - v) == alen && strncasecmp(v, address, alen) == 0;
}

/* A logical header ends at a newline that no white space follows. */
static int header_ends_at(const char *block, size_t len, size_t i)
{
    return i == len || (block[i] == '\n' && (i + 1 >= len || (block[i + 1] != ' '
                                                                && block[i + 1] != '\t')));
}

int mail_copy_delivered_to_seen(const struct deliver_message *m, const char *address)
{
    long long max = var.header_size_limit;
    size_t len, start = 0;
    char *block;
    int seen = 0;

    if (max <= 0 || max > (1 << 24))
        max = 1 << 24;
    if ((block = read_header_block(m, (size_t)max, &len)) == NULL)
        return -1;
    for (size_t i = 0; i <= len && !seen; i++) {
        if (!header_ends_at(block, len, i))
            continue;
        if (i == start)
            break;   /* the empty line: end of headers */
        seen = is_delivered_to(block + start, i - start, address);
        start = i + 1;
    }
    free(block);
    return seen;
}
