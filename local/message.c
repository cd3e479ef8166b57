/* message.c - the bytes local writes for one delivery: an optional mbox
 * "From " line, the trace headers (Return-Path, X-Original-To,
 * Delivered-To), then the queue file's content records, optionally with
 * mbox ">From " quoting and a closing empty line. Every destination (Maildir,
 * mbox, file, command) goes through local_copy_message, so the formats
 * differ only in the flags. Also the Delivered-To: loop check, which reads
 * the same content.
 */
#include "local.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "queue_file.h"
#include "record.h"

#define COPY_BUF 65536
#define FROM_ "From "
#define FROM_LEN 5

struct copier {
    local_write_fn fn;
    void *ctx;
    long long limit;          /* 0 = none */
    long long written;
    int quote;                /* LOCAL_COPY_QUOTE_FROM */
    int at_bol;               /* the next content byte starts a line */
    char head[FROM_LEN];      /* start of a line, held until it is not "From " */
    size_t head_len;
    char last;                /* last content byte written, 0 before any */
    int result;               /* first failure (LOCAL_COPY_E*), 0 if none */
    size_t len;
    char buf[COPY_BUF];
};

int local_write_fd(void *ctx, const char *buf, size_t len)
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

static void copier_flush(struct copier *c)
{
    if (c->result == 0 && c->len > 0 && c->fn(c->ctx, c->buf, c->len) < 0)
        c->result = LOCAL_COPY_EWRITE;
    c->len = 0;
}

static void emit(struct copier *c, const char *data, size_t n)
{
    if (c->result != 0)
        return;
    if (c->limit > 0 && c->written + (long long)n > c->limit) {
        c->result = LOCAL_COPY_ETOOBIG;
        return;
    }
    c->written += (long long)n;
    while (n > 0) {
        size_t room = sizeof(c->buf) - c->len;
        size_t take = n < room ? n : room;
        memcpy(c->buf + c->len, data, take);
        c->len += take;
        data += take;
        n -= take;
        if (c->len == sizeof(c->buf))
            copier_flush(c);
        if (c->result != 0)
            return;
    }
}

/* The held start of a line goes out, quoted when it is exactly "From ". */
static void release_head(struct copier *c)
{
    if (c->head_len == FROM_LEN && memcmp(c->head, FROM_, FROM_LEN) == 0)
        emit(c, ">", 1);
    emit(c, c->head, c->head_len);
    c->head_len = 0;
}

/* Content bytes; a line start is held back only while it still looks like
 * "From " (at most five bytes), so quoting works across chunk borders. */
static void emit_content(struct copier *c, const char *p, size_t n)
{
    while (n > 0 && c->result == 0) {
        if (c->quote && (c->at_bol || c->head_len > 0)) {
            char ch = *p++;
            n--;
            c->at_bol = 0;
            c->last = ch;
            c->head[c->head_len++] = ch;
            if (ch == '\n' || c->head_len == FROM_LEN || ch != FROM_[c->head_len - 1]) {
                release_head(c);
                c->at_bol = ch == '\n';
            }
            continue;
        }
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl != NULL ? (size_t)(nl - p) + 1 : n;
        emit(c, p, seg);
        c->last = p[seg - 1];
        c->at_bol = nl != NULL;
        p += seg;
        n -= seg;
    }
}

/* External form of an address for a header line; control characters
 * become '?' so that no address can add a header line of its own. */
static void header_address(char *out, size_t len, const char *internal)
{
    char *p;

    if (address_quote(internal, out, len) < 0)
        snprintf(out, len, "%s", internal);
    for (p = out; *p != 0; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* "From sender Www Mmm dd hh:mm:ss yyyy" (asctime format, local time) as
 * mbox readers expect; the null sender is MAILER-DAEMON. Spaces inside a
 * quoted local part would confuse them, so they become '_'. */
static void emit_from_line(struct copier *c, const char *sender)
{
    char who[2 * ADDRESS_MAX + 8], date[64], line[sizeof(who) + sizeof(date) + 16];
    time_t now = time(NULL);
    struct tm tm;
    char *p;
    int n;

    if (*sender == 0)
        snprintf(who, sizeof(who), "MAILER-DAEMON");
    else
        header_address(who, sizeof(who), sender);
    for (p = who; *p != 0; p++)
        if (*p == ' ' || *p == '\t')
            *p = '_';
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
    n = snprintf(line, sizeof(line), "From %s %s\n", who, date);
    if (n > 0 && (size_t)n < sizeof(line))
        emit(c, line, (size_t)n);
}

static void emit_trace_headers(struct copier *c, const struct local_trace *t, int flags)
{
    char addr[2 * ADDRESS_MAX + 8];
    char line[2 * ADDRESS_MAX + 64];

    if (!(flags & LOCAL_COPY_DELIVERED_ONLY)) {
        header_address(addr, sizeof(addr), t->sender);
        snprintf(line, sizeof(line), "Return-Path: <%s>\n", addr);
        emit(c, line, strlen(line));
    }
    if (t->orig_rcpt != NULL && !(flags & LOCAL_COPY_DELIVERED_ONLY)) {
        header_address(addr, sizeof(addr), t->orig_rcpt);
        snprintf(line, sizeof(line), "X-Original-To: %s\n", addr);
        emit(c, line, strlen(line));
    }
    header_address(addr, sizeof(addr), t->delivered_to);
    snprintf(line, sizeof(line), "Delivered-To: %s\n", addr);
    emit(c, line, strlen(line));
}

int local_copy_message(const struct local_message *m, const struct local_trace *t, int flags,
                       long long limit, local_write_fn fn, void *ctx)
{
    /* malloc, not calloc: clearing the 64 KiB buffer was most of local's
     * user time (bench/README.md); every field but buf is set here. */
    struct copier *c = malloc(sizeof(*c));
    struct rec_buf chunk = {0};
    int r = 0, result;

    if (c == NULL) {
        errno = ENOMEM;
        return LOCAL_COPY_EWRITE;
    }
    c->written = 0;
    c->head_len = 0;
    c->last = 0;
    c->result = 0;
    c->len = 0;
    c->fn = fn;
    c->ctx = ctx;
    c->limit = limit;
    c->quote = (flags & LOCAL_COPY_QUOTE_FROM) != 0;
    c->at_bol = 1;
    if (flags & LOCAL_COPY_FROM_LINE)
        emit_from_line(c, t->sender);
    emit_trace_headers(c, t, flags);
    if (queue_content_begin(m->queue, m->content_offset) < 0) {
        c->result = c->result ? c->result : LOCAL_COPY_EREAD;
    } else {
        while (c->result == 0 && (r = queue_content_next(m->queue, &chunk)) == 1)
            emit_content(c, chunk.data, chunk.len);
        if (c->result == 0 && r < 0)
            c->result = LOCAL_COPY_EREAD;
    }
    if (c->head_len > 0)
        release_head(c);
    if (flags & LOCAL_COPY_BLANK_END) {
        if (c->last != 0 && c->last != '\n')
            emit(c, "\n", 1);
        emit(c, "\n", 1);
    }
    copier_flush(c);
    result = c->result;
    int saved = errno;
    rec_buf_free(&chunk);
    free(c);
    errno = saved;
    return result;
}

/* --- Delivered-To: loop detection --- */

/* The header block (up to the first empty line, at most max bytes) into a
 * malloc'd buffer. NULL when the queue file cannot be read. */
static char *read_header_block(const struct local_message *m, size_t max, size_t *len)
{
    struct rec_buf chunk = {0};
    char *buf = malloc(max + 1);
    size_t n = 0;
    int r = 0;

    if (buf == NULL || queue_content_begin(m->queue, m->content_offset) < 0) {
        free(buf);
        return NULL;
    }
    while (n < max && (r = queue_content_next(m->queue, &chunk)) == 1) {
        size_t take = chunk.len < max - n ? chunk.len : max - n;
        memcpy(buf + n, chunk.data, take);
        n += take;
        buf[n] = 0;
        if (strstr(buf, "\n\n") != NULL || (n > 0 && buf[0] == '\n'))
            break;
    }
    rec_buf_free(&chunk);
    if (r < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Whether one header line (unfolded, without its newline) is a
 * Delivered-To: for address. */
static int is_delivered_to(const char *line, size_t len, const char *address)
{
    static const char name[] = "delivered-to:";
    size_t nlen = sizeof(name) - 1, alen = strlen(address);
    const char *v, *end = line + len;

    if (len < nlen || strncasecmp(line, name, nlen) != 0)
        return 0;
    for (v = line + nlen; v < end && isspace((unsigned char)*v); v++)
        ;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    return (size_t)(end - v) == alen && strncasecmp(v, address, alen) == 0;
}

int local_delivered_to_seen(const struct local_message *m, const char *address)
{
    long long max = var.header_size_limit;
    size_t len, i, start = 0;
    char *block;
    int seen = 0;

    if (max <= 0 || max > (1 << 24))
        max = 1 << 24;
    if ((block = read_header_block(m, (size_t)max, &len)) == NULL)
        return -1;
    /* Header lines end at a newline not followed by folding white space. */
    for (i = 0; i <= len && !seen; i++) {
        if (i < len && !(block[i] == '\n' && (i + 1 >= len || (block[i + 1] != ' '
                                                                 && block[i + 1] != '\t'))))
            continue;
        if (i == start)
            break;   /* the empty line: end of headers */
        seen = is_delivered_to(block + start, i - start, address);
        start = i + 1;
    }
    free(block);
    return seen;
}
