/* lookup_inline.c - the inline: table type, a table written in main.cf
 * itself: inline:{ key=value, { key2 = value with spaces } }. One of the
 * table types of lookup.c (lookup_type.h).
 */
#include "lookup.h"
#include "lookup_type.h"

#include <stdlib.h>
#include <string.h>

struct inline_table {
    size_t nitems;
    char **keys, **values;       /* keys folded to lower case */
};

static void inline_table_close(void *state)
{
    struct inline_table *t = state;
    size_t i;

    for (i = 0; i < t->nitems; i++) {
        free(t->keys[i]);
        free(t->values[i]);
    }
    free(t->keys);
    free(t->values);
    free(t);
}

/* One inline item: "key=value" or "{ key = value with spaces }". */
static int inline_item(struct inline_table *t, const char *item)
{
    char *inner = lookup_unbrace(item);
    const char *text = inner ? inner : item;
    const char *eq = strchr(text, '=');
    char *key;

    if (eq == NULL) {
        free(inner);
        return -1;
    }
    key = lookup_trimmed_copy(text, eq);
    if (*key == 0) {
        free(key);
        free(inner);
        return -1;
    }
    t->keys[t->nitems] = lookup_fold_key(key);
    free(key);
    if (t->keys[t->nitems] == NULL) {
        free(inner);
        return -1;
    }
    t->values[t->nitems] = lookup_trimmed_copy(eq + 1, eq + 1 + strlen(eq + 1));
    t->nitems++;
    free(inner);
    return 0;
}

static int inline_table_open(const char *spec, const char *name, void **state, char *err,
                             size_t errlen)
{
    char *inner = lookup_unbrace(name);
    struct inline_table *t;
    char **items;
    long n, i;

    if (inner == NULL || (n = lookup_split_tokens(inner, &items)) < 0) {
        free(inner);
        lookup_set_err(err, errlen, "bad syntax: \"%s\"; need \"inline:{name=value...}\"", spec);
        return -1;
    }
    free(inner);
    t = lookup_xmalloc(sizeof(*t));
    t->nitems = 0;
    t->keys = lookup_xmalloc((size_t)n * sizeof(char *));
    t->values = lookup_xmalloc((size_t)n * sizeof(char *));
    for (i = 0; i < n; i++) {
        if (inline_item(t, items[i]) < 0) {
            lookup_set_err(err, errlen, "bad syntax: \"%s\"; need \"inline:{name=value...}\"",
                           spec);
            lookup_free_tokens(items, n);
            inline_table_close(t);
            return -1;
        }
    }
    lookup_free_tokens(items, n);
    *state = t;
    return 0;
}

static int inline_table_get(void *state, const char *key, char **value)
{
    struct inline_table *t = state;
    char *folded = lookup_fold_key(key);
    size_t i;

    if (folded == NULL)
        return LOOKUP_NOTFOUND;
    /* First entry wins, as with a text file built by postmap. */
    for (i = 0; i < t->nitems; i++) {
        if (strcmp(t->keys[i], folded) == 0) {
            free(folded);
            *value = lookup_xstrdup(t->values[i]);
            return LOOKUP_FOUND;
        }
    }
    free(folded);
    return LOOKUP_NOTFOUND;
}

const struct lookup_type lookup_type_inline = {
    .open = inline_table_open,
    .get = inline_table_get,
    .close = inline_table_close,
};
