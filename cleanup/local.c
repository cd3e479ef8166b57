/* local.c - helpers of cleanup (cleanup.h): the From: value with a full
 * name for local submissions, and small containers. Header names are
 * lib/util/header_line.h's.
 */
#include "cleanup.h"

#include "address.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cleanup_dynbuf_add(struct dynbuf *b, const void *data, size_t len)
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

int cleanup_rcpt_list_add(struct rcpt_list *l, const char *addr, const char *orig)
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

int cleanup_rcpt_list_has(const struct rcpt_list *l, const char *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->addr[i], addr) == 0)
            return 1;
    return 0;
}

void cleanup_rcpt_list_free(struct rcpt_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->addr[i]);
        free(l->orig[i]);
    }
    free(l->addr);
    free(l->orig);
    memset(l, 0, sizeof(*l));
}

/* FNV-1a; recipients are short. */
static size_t str_hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int str_set_grow(struct str_set *set)
{
    size_t cap = set->cap ? set->cap * 2 : 64;
    char **slot = calloc(cap, sizeof(*slot));
    if (!slot)
        return -1;
    for (size_t i = 0; i < set->cap; i++) {
        if (!set->slot[i])
            continue;
        size_t j = str_hash(set->slot[i]) & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = set->slot[i];
    }
    free(set->slot);
    set->slot = slot;
    set->cap = cap;
    return 0;
}

int cleanup_str_set_add(struct str_set *set, const char *s)
{
    if ((set->n + 1) * 2 > set->cap && str_set_grow(set) < 0)
        return -1;
    size_t j = str_hash(s) & (set->cap - 1);
    for (; set->slot[j]; j = (j + 1) & (set->cap - 1))
        if (strcmp(set->slot[j], s) == 0)
            return 0;
    if (!(set->slot[j] = strdup(s)))
        return -1;
    set->n++;
    return 1;
}

void cleanup_str_set_free(struct str_set *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slot[i]);
    free(set->slot);
    memset(set, 0, sizeof(*set));
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

void cleanup_local_from_value(const char *full_name, const char *addr, char *out, size_t outlen)
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
