/* data.c - decoding DATA content (data.h): the input is taken a line at a
 * time, or in pieces of DATA_PIECE_MAX bytes when a line is longer, so a
 * client's line never has to fit in memory at once.
 */
#include "data.h"

#include <event2/buffer.h>
#include <string.h>

#define DATA_PIECE_MAX 65536   /* longest run of content without LF handled at once */

void smtpd_data_start(struct smtpd_data *d, enum smtpd_bare_newline bare_newline,
                      long long size_limit)
{
    memset(d, 0, sizeof(*d));
    d->bare_newline = bare_newline;
    d->size_limit = size_limit;
    d->at_line_start = 1;
    d->prev_crlf = 1;
}

static void add_content(struct smtpd_data *d, struct evbuffer *out, const char *p, size_t len)
{
    if (!d->too_big && !d->has_nul)
        evbuffer_add(out, p, len);
}

/* A content run without its line end; bare CRs inside it become line
 * ends under SMTPD_BARE_NORMALIZE. */
static void add_body(struct smtpd_data *d, struct evbuffer *out, const char *p, size_t len)
{
    if (d->bare_newline != SMTPD_BARE_NORMALIZE) {
        add_content(d, out, p, len);
        return;
    }
    const char *cr;
    while ((cr = memchr(p, '\r', len)) != NULL) {
        add_content(d, out, p, (size_t)(cr - p));
        add_content(d, out, "\n", 1);
        len -= (size_t)(cr - p) + 1;
        p = cr + 1;
    }
    add_content(d, out, p, len);
}

/* One line (complete: ends in LF) or a piece of an over-long one. */
static enum smtpd_data_status piece(struct smtpd_data *d, struct evbuffer *out, const char *p,
                                    size_t len, int complete)
{
    int crlf = complete && len >= 2 && p[len - 2] == '\r';
    size_t body = complete ? len - (crlf ? 2 : 1) : len;
    if (d->at_line_start && d->prev_crlf && crlf && body == 1 && p[0] == '.')
        return SMTPD_DATA_END;
    if (d->bare_newline == SMTPD_BARE_REJECT) {
        if (complete && !crlf)
            return SMTPD_DATA_BARE_LF;
        if (memchr(p, '\r', body))
            return SMTPD_DATA_BARE_CR;
    }
    if (memchr(p, 0, body))
        d->has_nul = 1;
    if (d->at_line_start && body > 0 && p[0] == '.') {
        p++;
        body--;
    }
    d->size += (long long)body + complete;
    d->log_size += (long long)body + 2 * complete;
    if (d->size_limit > 0 && d->size > d->size_limit)
        d->too_big = 1;
    add_body(d, out, p, body);
    if (complete)
        add_content(d, out, "\n", 1);
    d->at_line_start = complete;
    if (complete)
        d->prev_crlf = crlf;
    return SMTPD_DATA_MORE;
}

enum smtpd_data_status smtpd_data_decode(struct smtpd_data *d, struct evbuffer *in,
                                         struct evbuffer *out, size_t out_full,
                                         long long *taken)
{
    for (;;) {
        if (evbuffer_get_length(out) >= out_full)
            return SMTPD_DATA_FULL;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return SMTPD_DATA_MORE;
        struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, NULL);
        size_t take;
        int complete = nl.pos >= 0 && (size_t)nl.pos < DATA_PIECE_MAX;
        if (complete)
            take = (size_t)nl.pos + 1;
        else if (avail >= DATA_PIECE_MAX)
            take = DATA_PIECE_MAX;
        else
            return SMTPD_DATA_MORE;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
        /* Never split CR from the LF that may follow it. */
        if (!complete && p[take - 1] == '\r')
            take--;
        enum smtpd_data_status st = piece(d, out, p, take, complete);
        evbuffer_drain(in, take);
        *taken += (long long)take;
        if (st != SMTPD_DATA_MORE)
            return st;
    }
}
