/* local.c - cleanup's treatment of local submissions (cleanup.h): bare
 * addresses qualified with myorigin, Bcc: removed, recipients taken from
 * the headers for sendmail -t, the From: value with a full name.
 */
#include "cleanup.h"

#include "addrlist.h"
#include "address.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int dynbuf_add(struct dynbuf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

int rcpt_list_add(struct rcpt_list *l, const char *addr, const char *orig)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **a = realloc(l->addr, cap * sizeof(*a));
        if (!a)
            return -1;
        l->addr = a;
        char **o = realloc(l->orig, cap * sizeof(*o));
        if (!o)
            return -1;
        l->orig = o;
        l->cap = cap;
    }
    l->addr[l->n] = strdup(addr);
    l->orig[l->n] = strdup(orig);
    if (!l->addr[l->n] || !l->orig[l->n]) {
        free(l->addr[l->n]);
        free(l->orig[l->n]);
        return -1;
    }
    l->n++;
    return 0;
}

int rcpt_list_has(const struct rcpt_list *l, const char *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->addr[i], addr) == 0)
            return 1;
    return 0;
}

void rcpt_list_free(struct rcpt_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->addr[i]);
        free(l->orig[i]);
    }
    free(l->addr);
    free(l->orig);
    memset(l, 0, sizeof(*l));
}

int local_qualify(const char *addr, char *out, size_t outlen)
{
    const char *origin = config_get("myorigin");
    int n;
    if (!*addr || strchr(addr, '@') || !config_bool("append_at_myorigin") || !origin || !*origin)
        n = snprintf(out, outlen, "%s", addr);
    else
        n = snprintf(out, outlen, "%s@%s", addr, origin);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

size_t header_name_len(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && line[i] > ' ' && line[i] < 0x7f && line[i] != ':')
        i++;
    return i > 0 && i < len && line[i] == ':' ? i : 0;
}

int header_is(const char *line, size_t nlen, const char *name)
{
    return strlen(name) == nlen && strncasecmp(line, name, nlen) == 0;
}

static int header_in(const char *line, size_t nlen, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (header_is(line, nlen, names[i]))
            return 1;
    return 0;
}

/* Headers whose addresses Postfix qualifies in local mail. */
static const char *const address_headers[] = {
    "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Apparently-To",
    "Errors-To", "Return-Receipt-To", "Disposition-Notification-To", "Mail-Followup-To",
    "Resent-From", "Resent-Sender", "Resent-Reply-To", "Resent-To", "Resent-Cc",
    "Resent-Bcc", NULL,
};
static const char *const rcpt_headers[] = {"To", "Cc", "Bcc", NULL};
static const char *const resent_rcpt_headers[] = {"Resent-To", "Resent-Cc", "Resent-Bcc", NULL};
static const char *const blind_headers[] = {"Bcc", "Resent-Bcc", NULL};

/* End of the header that starts at p: its line and continuation lines. */
static const char *header_end(const char *p, const char *end)
{
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return end;
        p = nl + 1;
        if (p >= end || (*p != ' ' && *p != '\t'))
            return p;
    }
}

static int any_header(const char *block, size_t len, const char *const *names)
{
    const char *end = block + len;
    for (const char *p = block; p < end;) {
        const char *next = header_end(p, end);
        size_t nlen = header_name_len(p, (size_t)(next - p));
        if (nlen && header_in(p, nlen, names))
            return 1;
        p = next;
    }
    return 0;
}

struct rewrite {
    const char *value;     /* the header value the spans refer to */
    size_t copied;         /* value bytes already in out */
    struct dynbuf *out;
    int failed;
};

static int qualify_span(const struct addrlist_item *item, void *ctx)
{
    struct rewrite *r = ctx;
    const char *origin = config_get("myorigin");
    if (item->qualified || !origin || !*origin)
        return 0;
    if (dynbuf_add(r->out, r->value + r->copied, item->end - r->copied) < 0 ||
        dynbuf_add(r->out, "@", 1) < 0 || dynbuf_add(r->out, origin, strlen(origin)) < 0)
        r->failed = 1;
    r->copied = item->end;
    return r->failed;
}

/* Copy one header to out with "@myorigin" after each bare address. */
static int rewrite_header(const char *h, size_t hlen, size_t nlen, struct dynbuf *out)
{
    if (!config_bool("append_at_myorigin"))
        return dynbuf_add(out, h, hlen);
    struct rewrite r = {.value = h + nlen + 1, .out = out};
    size_t vlen = hlen - nlen - 1;
    if (dynbuf_add(out, h, nlen + 1) < 0 || addrlist_parse(r.value, vlen, qualify_span, &r) < 0 ||
        r.failed)
        return -1;
    return dynbuf_add(out, r.value + r.copied, vlen - r.copied);
}

static int collect_rcpt(const struct addrlist_item *item, void *ctx)
{
    char addr[ADDRESS_MAX];
    const char *at = strrchr(item->address, '@');
    if (at == item->address || (at && !at[1]))
        return 0;   /* no local part, or no domain after '@': not an address */
    if (local_qualify(item->address, addr, sizeof(addr)) < 0)
        return 0;
    return rcpt_list_add(ctx, addr, item->address) < 0;
}

int local_header_block(const char *block, size_t len, int extract, struct dynbuf *out,
                       struct rcpt_list *found)
{
    const char *const *from = any_header(block, len, resent_rcpt_headers) ? resent_rcpt_headers
                                                                           : rcpt_headers;
    const char *end = block + len;
    for (const char *p = block; p < end;) {
        const char *next = header_end(p, end);
        size_t hlen = (size_t)(next - p);
        size_t nlen = header_name_len(p, hlen);
        if (nlen && extract && header_in(p, nlen, from) &&
            addrlist_parse(p + nlen + 1, hlen - nlen - 1, collect_rcpt, found) < 0)
            return -1;
        int rc = 0;
        if (!nlen)
            rc = dynbuf_add(out, p, hlen);
        else if (header_in(p, nlen, blind_headers))
            rc = 0;   /* the point of a blind copy */
        else if (header_in(p, nlen, address_headers))
            rc = rewrite_header(p, hlen, nlen, out);
        else
            rc = dynbuf_add(out, p, hlen);
        if (rc < 0)
            return -1;
        p = next;
    }
    return 0;
}

/* A display name needs quotes unless it is words of atext. */
static int phrase_needs_quotes(const char *s)
{
    for (; *s; s++)
        if (!(((unsigned char)*s >= 0x80) || strchr(" \t!#$%&'*+-/=?^_`{|}~", *s) ||
              (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 1;
    return 0;
}

void local_from_value(const char *full_name, const char *addr, char *out, size_t outlen)
{
    char ext[ADDRESS_MAX + 2];
    if (address_quote(addr, ext, sizeof(ext)) < 0)
        snprintf(ext, sizeof(ext), "%s", addr);
    if (!full_name || !*full_name) {
        snprintf(out, outlen, "%s", ext);
        return;
    }
    if (!phrase_needs_quotes(full_name)) {
        snprintf(out, outlen, "%s <%s>", full_name, ext);
        return;
    }
    size_t o = 0;
    if (outlen < 4)
        return;
    out[o++] = '"';
    for (const char *p = full_name; *p && o + 3 < outlen; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = 0;
    snprintf(out + o, outlen - o, " <%s>", ext);
}
