/* lookup_texthash.c - the texthash: table type: texthash:/path reads the
 * text file postmap would build a hash: table from (table_file.c's syntax,
 * keys folded, the first of two duplicates wins) straight into memory, so
 * no postmap run is needed. One of the table types of lookup.c
 * (lookup_type.h).
 *
 * The file is read lazily and re-checked on every lookup, as cdb: files
 * are: an edited file is read again (Postfix reads it once per process).
 * A missing or unreadable file is a logged temporary failure.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "log.h"
#include "table_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct texthash_entry {
    char *key, *value;
    size_t order;                /* position in the file: first one wins */
};

struct texthash_table {
    char *spec, *path;
    struct texthash_entry *entries;
    size_t count, cap;
    int ready;
    struct lookup_file_id id;
};

static void texthash_release(struct texthash_table *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->entries[i].key);
        free(t->entries[i].value);
    }
    free(t->entries);
    t->entries = NULL;
    t->count = t->cap = 0;
    t->ready = 0;
}

static int texthash_add(const char *key, const char *value, void *ctx)
{
    struct texthash_table *t = ctx;

    if (t->count == t->cap) {
        struct texthash_entry *grown;
        t->cap = t->cap ? t->cap * 2 : 64;
        if ((grown = realloc(t->entries, t->cap * sizeof(*grown))) == NULL)
            msg_fatal("out of memory");
        t->entries = grown;
    }
    t->entries[t->count].key = lookup_xstrdup(key);
    t->entries[t->count].value = lookup_xstrdup(value);
    t->entries[t->count].order = t->count;
    t->count++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct texthash_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c != 0 ? c : (x->order > y->order) - (x->order < y->order);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(((const struct texthash_entry *)a)->key, ((const struct texthash_entry *)b)->key);
}

/* Sort by key (file order among equal keys) and keep the first of each. */
static void texthash_index(struct texthash_table *t)
{
    size_t kept = 0;

    qsort(t->entries, t->count, sizeof(*t->entries), entry_cmp);
    for (size_t i = 0; i < t->count; i++) {
        if (kept > 0 && strcmp(t->entries[kept - 1].key, t->entries[i].key) == 0) {
            msg_warn("%s: duplicate entry: \"%s\"", t->path, t->entries[i].key);
            free(t->entries[i].key);
            free(t->entries[i].value);
            continue;
        }
        t->entries[kept++] = t->entries[i];
    }
    t->count = kept;
}

/* Read the file when it is new or changed. 0, or -1 (logged). */
static int texthash_ready(struct texthash_table *t)
{
    struct lookup_file_id now;
    char err[1024];

    if (lookup_file_id_get(t->path, &now) < 0) {
        msg_warn("table %s: open %s: %s", t->spec, t->path, strerror(errno));
        texthash_release(t);
        return -1;
    }
    if (t->ready && lookup_file_id_same(&now, &t->id))
        return 0;
    texthash_release(t);
    if (table_file_read(t->path, TABLE_SYNTAX_MAP, texthash_add, t, err, sizeof(err)) < 0) {
        msg_warn("table %s: %s", t->spec, err);
        texthash_release(t);
        return -1;
    }
    texthash_index(t);
    t->id = now;
    t->ready = 1;
    return 0;
}

static int texthash_get(void *state, const char *key, char **value)
{
    struct texthash_table *t = state;
    struct texthash_entry probe = {.order = 0}, *hit;
    char *folded;

    if (texthash_ready(t) < 0)
        return LOOKUP_TEMPFAIL;
    if ((folded = lookup_fold_key(key)) == NULL)
        return LOOKUP_NOTFOUND;
    probe.key = folded;
    /* Keys are unique once indexed: compare by key alone. */
    hit = bsearch(&probe, t->entries, t->count, sizeof(*t->entries), key_cmp);
    free(folded);
    if (hit == NULL)
        return LOOKUP_NOTFOUND;
    *value = lookup_xstrdup(hit->value);
    return LOOKUP_FOUND;
}

static void texthash_close(void *state)
{
    struct texthash_table *t = state;

    texthash_release(t);
    free(t->spec);
    free(t->path);
    free(t);
}

static int texthash_open(const char *spec, const char *name, void **state, char *err,
                         size_t errlen)
{
    struct texthash_table *t = lookup_xmalloc(sizeof(*t));

    memset(t, 0, sizeof(*t));
    t->spec = lookup_xstrdup(spec);
    t->path = lookup_xstrdup(name);
    *state = t;
    return 0;
}

const struct lookup_type lookup_type_texthash = {
    .open = texthash_open,
    .get = texthash_get,
    .close = texthash_close,
};
