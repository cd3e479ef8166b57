/* generic.c - smtp_generic_maps (Postfix's generic(5)) in the SMTP client:
 * addresses that are valid only here ("user@host.localdomain") become
 * ones the world can answer, in the envelope (MAIL FROM, RCPT TO) and in
 * the sender and recipient headers of the message as it goes out. The
 * queue file is not changed: only what this delivery sends.
 *
 * The header block is held (up to header_size_limit; a longer one goes out
 * unchanged) until it ends, rewritten one logical header at a time
 * (lib/rewrite.h), then the body passes straight through.
 */
#include "remote.h"

#include "address.h"
#include "config.h"
#include "header_line.h"
#include "log.h"
#include "rewrite.h"

#include <stdlib.h>
#include <string.h>

struct generic_headers {
    char *buf;
    size_t len, cap, max;
    int done;               /* the header block went out: pass the rest */
};

int generic_enabled(void)
{
    /* smtp_generic_maps is the SMTP client's; lmtp_generic_maps is not
     * implemented. */
    const char *v = var.smtp_generic_maps;
    return !remote_cfg.lmtp && v && *v;
}

int generic_address(const char *addr, char *out, size_t outlen)
{
    int rc = rewrite_generic(addr, out, outlen);
    if (rc == REWRITE_TEMPFAIL)
        msg_warn("smtp_generic_maps lookup problem for %s", addr);
    return rc == REWRITE_TEMPFAIL ? -1 : 0;
}

struct generic_headers *generic_headers_new(void)
{
    struct generic_headers *g = calloc(1, sizeof(*g));
    long long max = var.header_size_limit;
    if (!g)
        msg_fatal("out of memory");
    g->max = max > 0 ? (size_t)max : 102400;
    return g;
}

void generic_headers_free(struct generic_headers *g)
{
    if (g) {
        free(g->buf);
        free(g);
    }
}

static int header_one(void *ctx, const char *addr, char *out, size_t outlen)
{
    (void)ctx;
    if (generic_address(addr, out, outlen) < 0)
        return 0;   /* a header left as it was beats a message not sent */
    return strcmp(addr, out) != 0;
}

/* The held header block, rewritten, to out. */
static void flush_block(struct generic_headers *g, generic_out_fn out, void *ctx)
{
    const char *p = g->buf, *end = g->buf + g->len;
    while (p < end) {
        const char *q = header_end(p, end);
        size_t hlen = (size_t)(q - p), nlen = header_name_len(p, hlen);
        char *edited = NULL;
        size_t elen = 0;
        int cls = nlen ? rewrite_header_class(p, header_name_trim(p, nlen)) : 0;
        if (cls && rewrite_header_addresses(p, hlen, nlen, header_one, NULL, &edited, &elen) == 1)
            out(ctx, edited, elen);
        else
            out(ctx, p, hlen);
        free(edited);
        p = q;
    }
    g->len = 0;
    g->done = 1;
}

/* Where the header block ends in the held bytes: the empty line or the
 * first line that is neither a header nor a continuation; -1 when more is
 * needed. */
static long block_end(const struct generic_headers *g)
{
    const char *buf = g->buf, *end = buf + g->len;
    for (const char *p = buf; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -1;
        int continuation = (*p == ' ' || *p == '\t') && p != buf;
        if (*p == '\n' || (!continuation && header_name_len(p, (size_t)(nl - p + 1)) == 0))
            return p - buf;
        p = nl + 1;
    }
    return -1;
}

void generic_headers_feed(struct generic_headers *g, const char *p, size_t len,
                          generic_out_fn out, void *ctx)
{
    if (g->done) {
        out(ctx, p, len);
        return;
    }
    if (g->len + len > g->cap) {
        size_t cap = g->cap ? g->cap : 8192;
        while (cap < g->len + len)
            cap *= 2;
        char *b = realloc(g->buf, cap);
        if (!b)
            msg_fatal("out of memory");
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, p, len);
    g->len += len;
    long end = block_end(g);
    if (end < 0 && g->len <= g->max)
        return;
    if (end < 0) {
        out(ctx, g->buf, g->len);   /* too long to be a header block */
        g->len = 0;
        g->done = 1;
        return;
    }
    size_t rest = g->len - (size_t)end;
    char *tail = malloc(rest ? rest : 1);
    if (!tail)
        msg_fatal("out of memory");
    memcpy(tail, g->buf + end, rest);
    g->len = (size_t)end;
    flush_block(g, out, ctx);
    out(ctx, tail, rest);
    free(tail);
}

void generic_headers_finish(struct generic_headers *g, generic_out_fn out, void *ctx)
{
    if (!g->done)
        flush_block(g, out, ctx);
}
