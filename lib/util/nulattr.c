/* nulattr.c - Postfix's NUL-terminated attribute lists (see nulattr.h). */
#include "nulattr.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nulattr_item_free(struct nulattr_item *it)
{
    free(it->value);
    it->value = NULL;
    it->len = it->cap = 0;
    it->name[0] = 0;
}

/* Room for one more value byte and the final NUL. */
static int value_grow(struct nulattr_item *it)
{
    if (it->len + 2 <= it->cap)
        return 0;
    size_t cap = it->cap ? it->cap * 2 : 128;
    char *p = realloc(it->value, cap);
    if (!p)
        return -1;
    it->value = p;
    it->cap = cap;
    return 0;
}

/* The name up to its NUL: its length, or -1 (EOF, error, too long). */
static int read_name(struct stream *s, struct nulattr_item *it)
{
    for (size_t n = 0;; n++) {
        int c = stream_getc(s);
        if (c < 0 || (c != 0 && n == NULATTR_NAME_MAX))
            return -1;
        it->name[n] = (char)c;
        if (c == 0)
            return (int)n;
    }
}

static int read_value(struct stream *s, struct nulattr_item *it, size_t value_max)
{
    it->len = 0;
    for (;;) {
        int c = stream_getc(s);
        if (c < 0 || (c != 0 && it->len == value_max) || value_grow(it) < 0)
            return -1;
        if (c == 0)
            break;
        it->value[it->len++] = (char)c;
    }
    it->value[it->len] = 0;
    return 0;
}

int nulattr_get(struct stream *s, struct nulattr_item *it, size_t value_max)
{
    int n = read_name(s, it);
    if (n < 0)
        return -1;
    if (n == 0)
        return NULATTR_END;
    return read_value(s, it, value_max) < 0 ? -1 : NULATTR_ATTR;
}

int nulattr_put(struct stream *s, const char *name, const char *value)
{
    return stream_write(s, name, strlen(name) + 1) < 0 ||
                   stream_write(s, value, strlen(value) + 1) < 0
               ? -1
               : 0;
}

int nulattr_put_num(struct stream *s, const char *name, long long value)
{
    char num[32];
    snprintf(num, sizeof(num), "%lld", value);
    return nulattr_put(s, name, num);
}

int nulattr_end(struct stream *s)
{
    return stream_write(s, "", 1);
}
