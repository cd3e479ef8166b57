/* lookup.c - Postfix-style lookup tables ("type:name"), see lookup.h: the
 * dispatcher. It parses "type:name", picks the table type from the table
 * below and hands the name to it, and implements what is common to every
 * type: lists of tables as main.cf writes them and Postfix's address
 * lookup order. Each type lives in its own lookup_NAME.c behind the
 * interface of lookup_type.h; adding one is a new file plus one line in
 * the table of types.
 */
#include "lookup.h"
#include "lookup_type.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct lookup_table {
    const struct lookup_type *type;
    void *state;                 /* the type's own */
    char *spec;                  /* "type:name" as opened (after proxy:) */
};

/* Per thread: worker threads that run deferred lookups never see it. */
static _Thread_local lookup_defer_fn defer_hook;

struct lookup_list {
    size_t count;
    struct lookup_table **tables;
};

/* The table types by the word before the colon. A non-NULL only_name
 * limits a type to that one name (unix: has no other table). */
static const struct {
    const char *word;
    const char *only_name;
    const struct lookup_type *type;
} lookup_types[] = {
    {"cdb", NULL, &lookup_type_cdb},
    /* Postfix's hash: and btree: are read as cdb: (postmap builds .cdb),
     * so existing configurations work unchanged. */
    {"hash", NULL, &lookup_type_cdb},
    {"btree", NULL, &lookup_type_cdb},
    /* lmdb: too: postmap builds the same cdb file for it. */
    {"lmdb", NULL, &lookup_type_cdb},
    {"texthash", NULL, &lookup_type_texthash},
    {"static", NULL, &lookup_type_static},
    {"inline", NULL, &lookup_type_inline},
    {"regexp", NULL, &lookup_type_regexp},
    {"pcre", NULL, &lookup_type_pcre},
    {"cidr", NULL, &lookup_type_cidr},
    {"tcp", NULL, &lookup_type_tcp},
    {"socketmap", NULL, &lookup_type_socketmap},
    {"mysql", NULL, &lookup_type_mysql},
    {"pgsql", NULL, &lookup_type_pgsql},
    {"sqlite", NULL, &lookup_type_sqlite},
    {"ldap", NULL, &lookup_type_ldap},
    {"unix", "passwd.byname", &lookup_type_passwd},
};

/* The type spec names ("cdb:/etc/x" with tlen 3, name "/etc/x"), or NULL. */
static const struct lookup_type *type_of(const char *spec, size_t tlen, const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(lookup_types) / sizeof(lookup_types[0]); i++) {
        if (tlen == strlen(lookup_types[i].word)
            && strncasecmp(spec, lookup_types[i].word, tlen) == 0
            && (lookup_types[i].only_name == NULL
                || strcmp(name, lookup_types[i].only_name) == 0))
            return lookup_types[i].type;
    }
    return NULL;
}

int lookup_type_supported(const char *type)
{
    if (strcasecmp(type, "proxy") == 0)
        return 1;
    for (size_t i = 0; i < sizeof(lookup_types) / sizeof(lookup_types[0]); i++)
        if (strcasecmp(type, lookup_types[i].word) == 0)
            return 1;
    return 0;
}

const char *lookup_type_name(size_t i)
{
    size_t n = sizeof(lookup_types) / sizeof(lookup_types[0]);

    if (i < n)
        return lookup_types[i].word;
    return i == n ? "proxy" : NULL;
}

void lookup_load_clients(void)
{
    char err[256];

    for (size_t i = 0; i < sizeof(lookup_types) / sizeof(lookup_types[0]); i++)
        if (lookup_types[i].type->load != NULL)
            (void)lookup_types[i].type->load(err, sizeof(err));   /* open says why, later */
}

struct lookup_table *lookup_open(const char *spec, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':');
    const struct lookup_type *type;
    struct lookup_table *t;
    size_t tlen;
    const char *name;
    void *state;

    if (colon == NULL || colon == spec || colon[1] == 0) {
        lookup_set_err(err, errlen, "table \"%s\": need type:name", spec);
        return NULL;
    }
    tlen = (size_t)(colon - spec);
    name = colon + 1;
    /* Postfix's proxymap is a way to reach the same table; we always open
     * tables directly, so "proxy:unix:passwd.byname" just works. */
    if (tlen == 5 && strncasecmp(spec, "proxy", 5) == 0)
        return lookup_open(name, err, errlen);
    if ((type = type_of(spec, tlen, name)) == NULL) {
        lookup_set_err(err, errlen, "unsupported dictionary type: %.*s", (int)tlen, spec);
        return NULL;
    }
    if (type->open(spec, name, &state, err, errlen) < 0)
        return NULL;
    t = lookup_xmalloc(sizeof(*t));
    t->type = type;
    t->state = state;
    t->spec = lookup_xstrdup(spec);
    return t;
}

void lookup_close(struct lookup_table *t)
{
    if (t == NULL)
        return;
    t->type->close(t->state);
    free(t->spec);
    free(t);
}

void lookup_set_defer(lookup_defer_fn hook)
{
    defer_hook = hook;
}

int lookup_may_block(const struct lookup_table *t)
{
    return t->type->may_block;
}

const char *lookup_table_spec(const struct lookup_table *t)
{
    return t->spec;
}

int lookup_get_now(struct lookup_table *t, const char *key, char **value)
{
    *value = NULL;
    return t->type->get(t->state, key, value);
}

int lookup_get(struct lookup_table *t, const char *key, char **value)
{
    *value = NULL;
    if (defer_hook != NULL && t->type->may_block)
        return defer_hook(t, key, value);
    return t->type->get(t->state, key, value);
}

struct lookup_list *lookup_list_open(const char *maps, char *err, size_t errlen)
{
    struct lookup_list *l = lookup_xmalloc(sizeof(*l));
    char **specs;
    long n, i;

    memset(l, 0, sizeof(*l));
    if ((n = lookup_split_tokens(maps, &specs)) < 0) {
        lookup_set_err(err, errlen, "unbalanced braces in table list \"%s\"", maps);
        free(l);
        return NULL;
    }
    l->tables = lookup_xmalloc((size_t)n * sizeof(*l->tables));
    for (i = 0; i < n; i++) {
        if ((l->tables[i] = lookup_open(specs[i], err, errlen)) == NULL) {
            lookup_free_tokens(specs, n);
            lookup_list_close(l);
            return NULL;
        }
        l->count++;
    }
    lookup_free_tokens(specs, n);
    return l;
}

void lookup_list_close(struct lookup_list *l)
{
    size_t i;

    if (l == NULL)
        return;
    for (i = 0; i < l->count; i++)
        lookup_close(l->tables[i]);
    free(l->tables);
    free(l);
}

/* Ask each table in turn; pattern tables only when full_key allows
 * (Postfix queries regexp tables with the complete address only). */
static int list_get(struct lookup_list *l, const char *key, int full_key, char **value)
{
    size_t i;

    *value = NULL;
    for (i = 0; i < l->count; i++) {
        int r;
        if (l->tables[i]->type->full_key_only && !full_key)
            continue;
        r = lookup_get(l->tables[i], key, value);
        if (r != LOOKUP_NOTFOUND)
            return r;
    }
    return LOOKUP_NOTFOUND;
}

int lookup_list_get(struct lookup_list *l, const char *key, char **value)
{
    return list_get(l, key, 1, value);
}

/* Where the extension starts in local (the first delimiter character), or
 * 0 when there is none; a delimiter at the very start does not count. */
static size_t extension_at(const char *local, size_t len, const char *delimiter)
{
    size_t cut;

    if (delimiter == NULL || *delimiter == 0)
        return 0;
    cut = strcspn(local, delimiter);
    return cut > 0 && cut < len ? cut : 0;
}

int lookup_list_address(struct lookup_list *l, const char *address, int domain_is_local,
                        const char *delimiter, char **value)
{
    const char *at = strrchr(address, '@');
    size_t local_len = at ? (size_t)(at - address) : strlen(address);
    const char *domain = at ? at + 1 : NULL;
    size_t cut, klen = strlen(address) + 2;
    char *local = lookup_xstrndup(address, local_len);
    char *key = lookup_xmalloc(klen);
    int r = LOOKUP_NOTFOUND, step;

    cut = extension_at(local, local_len, delimiter);
    *value = NULL;
    /* user+ext@domain, user@domain, user+ext, user, @domain */
    for (step = 0; step < 5 && r == LOOKUP_NOTFOUND; step++) {
        int full = step == 0;
        switch (step) {
        case 0:
            if (domain == NULL)
                continue;
            snprintf(key, klen, "%s", address);
            break;
        case 1:
            if (domain == NULL || cut == 0)
                continue;
            snprintf(key, klen, "%.*s@%s", (int)cut, local, domain);
            break;
        case 2:
            if (domain != NULL && !domain_is_local)
                continue;
            snprintf(key, klen, "%s", local);
            full = domain == NULL;
            break;
        case 3:
            if ((domain != NULL && !domain_is_local) || cut == 0)
                continue;
            snprintf(key, klen, "%.*s", (int)cut, local);
            break;
        case 4:
            if (domain == NULL)
                continue;
            snprintf(key, klen, "@%s", domain);
            break;
        }
        r = list_get(l, key, full, value);
    }
    free(key);
    free(local);
    return r;
}

long lookup_split_specs(const char *maps, char ***specs)
{
    return lookup_split_tokens(maps, specs);
}

void lookup_free_specs(char **specs, long n)
{
    lookup_free_tokens(specs, n);
}
