/* record.c - record framing: type byte, LEB128 length, payload (record.h). */
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_LEN_LIMIT ((size_t)1 << 40)   /* no sane record is larger */

size_t rec_header_encode(unsigned char out[REC_MAX_HEADER], int type, size_t len)
{
    size_t n = 0;
    out[n++] = (unsigned char)type;
    uint64_t v = len;
    do {
        unsigned char byte = v & 0x7f;
        v >>= 7;
        out[n++] = byte | (v ? 0x80 : 0);
    } while (v && n < REC_MAX_HEADER);
    return n;
}

int rec_header_decode(const unsigned char *buf, size_t avail, int *type, size_t *len)
{
    if (avail < 2)
        return 0;
    uint64_t v = 0;
    for (size_t i = 1; i < REC_MAX_HEADER; i++) {
        if (i >= avail)
            return 0;
        unsigned shift = 7 * (unsigned)(i - 1);
        if (shift > 42)
            return -1;
        v |= (uint64_t)(buf[i] & 0x7f) << shift;
        if (!(buf[i] & 0x80)) {
            /* Only the shortest encoding (rec_header_encode's) is valid:
             * in-place updates such as queue_file_mark_warned locate a
             * payload by the encoder's header length. */
            if (i > 1 && buf[i] == 0)
                return -1;
            if (v > REC_LEN_LIMIT)
                return -1;
            *type = buf[0];
            *len = (size_t)v;
            return (int)i + 1;
        }
    }
    return -1;
}

void rec_buf_free(struct rec_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int rec_buf_reserve(struct rec_buf *b, size_t need)
{
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int rec_buf_set(struct rec_buf *b, const void *data, size_t len)
{
    if (rec_buf_reserve(b, len) < 0)
        return -1;
    if (len)
        memcpy(b->data, data, len);
    b->data[len] = 0;
    b->len = len;
    return 0;
}

int rec_put(struct stream *s, int type, const void *data, size_t len)
{
    unsigned char hdr[REC_MAX_HEADER];
    size_t n = rec_header_encode(hdr, type, len);
    if (stream_write(s, hdr, n) < 0)
        return -1;
    return len ? stream_write(s, data, len) : 0;
}

int rec_put_str(struct stream *s, int type, const char *str)
{
    return rec_put(s, type, str, strlen(str));
}

int rec_putf(struct stream *s, int type, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return rec_put(s, type, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = rec_put(s, type, big, (size_t)n);
    free(big);
    return rc;
}

int rec_get(struct stream *s, struct rec_buf *b, size_t max, off_t *offset)
{
    unsigned char hdr[REC_MAX_HEADER];
    if (offset)
        *offset = stream_tell(s);
    int c = stream_getc(s);
    if (c < 0)
        return stream_timed_out(s) ? REC_ERROR : REC_EOF;
    hdr[0] = (unsigned char)c;
    size_t have = 1;
    int type = 0;
    size_t len = 0;
    int hlen;
    while ((hlen = rec_header_decode(hdr, have, &type, &len)) == 0) {
        if (have >= REC_MAX_HEADER || (c = stream_getc(s)) < 0)
            return REC_ERROR;
        hdr[have++] = (unsigned char)c;
    }
    if (hlen < 0)
        return REC_ERROR;
    if (len > max)
        return REC_TOOBIG;
    if (rec_buf_reserve(b, len) < 0)
        return REC_ERROR;
    if (len && stream_read_exact(s, b->data, len) < 0)
        return REC_ERROR;
    b->data[len] = 0;
    b->len = len;
    return type;
}

int rec_attr_split(char *payload, char **name, char **value)
{
    char *eq = strchr(payload, '=');
    if (!eq)
        return -1;
    *eq = 0;
    *name = payload;
    *value = eq + 1;
    return 0;
}
