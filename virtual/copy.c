/* copy.c - the bytes the virtual agent writes for one delivery (virtual.h):
 * for mbox a "From sender date" line first, then Return-Path:,
 * X-Original-To: and Delivered-To: (as virtual(8) prepends them), then
 * the queue file's content records; mbox also quotes content lines that
 * start with "From " as ">From " and ends the message with an empty line.
 * Writes go out in large pieces; a size limit is checked as bytes go.
 */
#include "virtual.h"

#include "address.h"
#include "config.h"
#include "queue_file.h"
#include "record.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define COPY_BUF 65536
#define FROM_ "From "
#define FROM_LEN 5

struct writer {
    int fd;
    long long limit, written;
    int result;            /* first failure (COPY_E*), 0 if none */
    int quote;             /* mbox ">From " quoting */
    int at_bol;
    char held[FROM_LEN];   /* start of a line, held until it is not "From " */
    size_t held_len;
    char last;             /* last byte written */
    size_t len;
    char buf[COPY_BUF];
};

static void flush(struct writer *w)
{
    const char *p = w->buf;
    size_t n = w->len;
    w->len = 0;
    while (w->result == 0 && n > 0) {
        ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            w->result = COPY_EWRITE;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static void put(struct writer *w, const char *data, size_t n)
{
    if (w->result)
        return;
    if (w->limit > 0 && w->written + (long long)n > w->limit) {
        w->result = COPY_ETOOBIG;
        return;
    }
    w->written += (long long)n;
    if (n)
        w->last = data[n - 1];
    while (n > 0 && !w->result) {
        size_t take = sizeof(w->buf) - w->len < n ? sizeof(w->buf) - w->len : n;
        memcpy(w->buf + w->len, data, take);
        w->len += take;
        data += take;
        n -= take;
        if (w->len == sizeof(w->buf))
            flush(w);
    }
}

static void release_held(struct writer *w)
{
    if (w->held_len == FROM_LEN && memcmp(w->held, FROM_, FROM_LEN) == 0)
        put(w, ">", 1);
    put(w, w->held, w->held_len);
    w->held_len = 0;
}

/* Content bytes; with quoting, the start of a line is held back while it
 * could still be "From " (five bytes at most), across chunk borders. */
static void put_content(struct writer *w, const char *p, size_t n)
{
    while (n > 0 && !w->result) {
        if (w->quote && (w->at_bol || w->held_len)) {
            char c = *p++;
            n--;
            w->at_bol = 0;
            w->held[w->held_len++] = c;
            if (c == '\n' || w->held_len == FROM_LEN || c != FROM_[w->held_len - 1]) {
                release_held(w);
                w->at_bol = c == '\n';
            }
            continue;
        }
        const char *nl = w->quote ? memchr(p, '\n', n) : NULL;
        size_t seg = nl ? (size_t)(nl - p) + 1 : n;
        put(w, p, seg);
        w->at_bol = nl != NULL;
        p += seg;
        n -= seg;
    }
}

/* External form for a header; control characters become '?' so that no
 * address can start a header line of its own. */
static void header_address(char *out, size_t len, const char *internal)
{
    if (address_quote(internal, out, len) < 0)
        snprintf(out, len, "%s", internal);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static void put_trace(struct writer *w, const struct vtrace *t, int flags)
{
    char addr[2 * ADDRESS_MAX + 8], line[2 * ADDRESS_MAX + 80];
    int n;
    if (flags & COPY_FROM_LINE) {
        char date[64];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
        if (*t->sender)
            header_address(addr, sizeof(addr), t->sender);
        else
            snprintf(addr, sizeof(addr), "MAILER-DAEMON");
        for (char *p = addr; *p; p++)
            if (*p == ' ' || *p == '\t')
                *p = '_';
        n = snprintf(line, sizeof(line), "From %s %s\n", addr, date);
        put(w, line, (size_t)n);
    }
    header_address(addr, sizeof(addr), t->sender);
    n = snprintf(line, sizeof(line), "Return-Path: <%s>\n", addr);
    put(w, line, (size_t)n);
    header_address(addr, sizeof(addr), t->orig_rcpt);
    n = snprintf(line, sizeof(line), "X-Original-To: %s\n", addr);
    put(w, line, (size_t)n);
    header_address(addr, sizeof(addr), t->rcpt);
    n = snprintf(line, sizeof(line), "Delivered-To: %s\n", addr);
    put(w, line, (size_t)n);
}

int copy_message(int fd, const struct vmessage *m, const struct vtrace *t, int flags,
                 long long limit)
{
    struct writer *w = calloc(1, sizeof(*w));
    struct rec_buf chunk = {0};
    int r = 0;
    if (!w) {
        errno = ENOMEM;
        return COPY_EWRITE;
    }
    w->fd = fd;
    w->limit = limit;
    w->quote = (flags & COPY_FROM_LINE) != 0;
    w->at_bol = 1;
    put_trace(w, t, flags);
    if (queue_content_begin(m->queue, m->content_offset) < 0)
        w->result = w->result ? w->result : COPY_EREAD;
    while (!w->result && (r = queue_content_next(m->queue, &chunk)) == 1)
        put_content(w, chunk.data, chunk.len);
    if (!w->result && r < 0)
        w->result = COPY_EREAD;
    if (w->held_len)
        release_held(w);
    if (flags & COPY_FROM_LINE) {
        if (w->last != '\n')
            put(w, "\n", 1);
        put(w, "\n", 1);
    }
    if (!w->result)
        flush(w);
    int result = w->result, saved = errno;
    rec_buf_free(&chunk);
    free(w);
    errno = saved;
    return result;
}

/* Whether a logical header (unfolded spans allowed) is Delivered-To: rcpt. */
static int delivered_to(const char *h, size_t len, const char *rcpt)
{
    static const char name[] = "delivered-to:";
    size_t nlen = sizeof(name) - 1, alen = strlen(rcpt);
    if (len < nlen || strncasecmp(h, name, nlen) != 0)
        return 0;
    const char *v = h + nlen, *end = h + len;
    while (v < end && isspace((unsigned char)*v))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    return (size_t)(end - v) == alen && strncasecmp(v, rcpt, alen) == 0;
}

int copy_delivered_to_seen(const struct vmessage *m, const char *rcpt)
{
    long long max = var.header_size_limit;
    struct rec_buf chunk = {0};
    size_t len = 0;
    int r = 0, seen = 0;
    if (max <= 0 || max > (1 << 24))
        max = 1 << 24;
    char *buf = malloc((size_t)max + 1);
    if (!buf || queue_content_begin(m->queue, m->content_offset) < 0) {
        free(buf);
        return -1;
    }
    while (len < (size_t)max && (r = queue_content_next(m->queue, &chunk)) == 1) {
        size_t take = chunk.len < (size_t)max - len ? chunk.len : (size_t)max - len;
        memcpy(buf + len, chunk.data, take);
        len += take;
        buf[len] = 0;
        if (buf[0] == '\n' || strstr(buf, "\n\n"))
            break;
    }
    rec_buf_free(&chunk);
    if (r < 0) {
        free(buf);
        return -1;
    }
    /* Logical headers end at a newline that no white space follows. */
    for (size_t i = 0, start = 0; i <= len && !seen; i++) {
        if (i < len && !(buf[i] == '\n' && (i + 1 >= len || (buf[i + 1] != ' ' &&
                                                              buf[i + 1] != '\t'))))
            continue;
        if (i == start)
            break;   /* the empty line */
        seen = delivered_to(buf + start, i - start, rcpt);
        start = i + 1;
    }
    free(buf);
    return seen;
}
