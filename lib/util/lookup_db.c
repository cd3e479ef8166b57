/* lookup_db.c - the configuration file and '%' templates that the
 * database table types share (lookup_db.h): reading Postfix's query
 * files, expanding query templates with the back end's quoting, formatting
 * and joining results, the "domain" restriction and the legacy query
 * parameters.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_db.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DB_CF_MAX (1 << 20)

struct db_cf {
    size_t count;
    char **names, **values;
};

/* --- the configuration file --- */

static char *read_cf_file(const char *path, char *err, size_t errlen)
{
    size_t len;
    return lookup_read_small_file(path, DB_CF_MAX, &len, err, errlen);
}

static void cf_set(struct db_cf *cf, char *name, char *value)
{
    for (size_t i = 0; i < cf->count; i++) {
        if (strcmp(cf->names[i], name) == 0) {   /* the last one wins */
            free(cf->values[i]);
            free(name);
            cf->values[i] = value;
            return;
        }
    }
    cf->names = realloc(cf->names, (cf->count + 1) * sizeof(char *));
    cf->values = realloc(cf->values, (cf->count + 1) * sizeof(char *));
    if (cf->names == NULL || cf->values == NULL)
        msg_fatal("out of memory");
    cf->names[cf->count] = name;
    cf->values[cf->count++] = value;
}

/* One logical line "name = value". -1 with err set. */
static int cf_line(struct db_cf *cf, const char *path, long lineno, const char *line, char *err,
                   size_t errlen)
{
    const char *eq = strchr(line, '=');
    char *name;

    if (eq == NULL) {
        lookup_set_err(err, errlen, "%s, line %ld: missing '=' after attribute name", path,
                       lineno);
        return -1;
    }
    name = lookup_trimmed_copy(line, eq);
    if (*name == 0 || name[strcspn(name, " \t")] != 0) {
        lookup_set_err(err, errlen, "%s, line %ld: bad attribute name", path, lineno);
        free(name);
        return -1;
    }
    cf_set(cf, name, lookup_trimmed_copy(eq + 1, eq + 1 + strlen(eq + 1)));
    return 0;
}

struct db_cf *db_cf_read(const char *path, char *err, size_t errlen)
{
    char *text = read_cf_file(path, err, errlen), *p, *logical = NULL;
    struct db_cf *cf;
    long lineno = 0, start = 0;
    int rc = 0;

    if (text == NULL)
        return NULL;
    cf = lookup_xmalloc(sizeof(*cf));
    memset(cf, 0, sizeof(*cf));
    for (p = text; rc == 0 && *p != 0;) {
        char *nl = strchr(p, '\n'), *next = nl ? nl + 1 : p + strlen(p);
        const char *first = lookup_skip_space(p);
        if (nl)
            *nl = 0;
        lineno++;
        if (*first == 0 || *first == '#') {
            p = next;
            continue;
        }
        if (isspace((unsigned char)*p) && logical != NULL) {
            size_t a = strlen(logical), b = strlen(p);
            logical = realloc(logical, a + b + 2);
            if (logical == NULL)
                msg_fatal("out of memory");
            logical[a] = ' ';
            memcpy(logical + a + 1, first, b - (size_t)(first - p) + 1);
        } else {
            if (logical != NULL)
                rc = cf_line(cf, path, start, logical, err, errlen);
            free(logical);
            logical = lookup_xstrdup(first);
            start = lineno;
        }
        p = next;
    }
    if (rc == 0 && logical != NULL)
        rc = cf_line(cf, path, start, logical, err, errlen);
    free(logical);
    free(text);
    if (rc < 0) {
        db_cf_free(cf);
        return NULL;
    }
    return cf;
}

void db_cf_free(struct db_cf *cf)
{
    if (cf == NULL)
        return;
    for (size_t i = 0; i < cf->count; i++) {
        free(cf->names[i]);
        free(cf->values[i]);
    }
    free(cf->names);
    free(cf->values);
    free(cf);
}

const char *db_cf_str(const struct db_cf *cf, const char *name, const char *def)
{
    for (size_t i = 0; i < cf->count; i++)
        if (strcmp(cf->names[i], name) == 0)
            return cf->values[i];
    return def;
}

long db_cf_long(const struct db_cf *cf, const char *name, long def, long min, long max,
                char *err, size_t errlen)
{
    const char *v = db_cf_str(cf, name, NULL);
    char *end;
    long n;

    if (v == NULL)
        return def;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != 0 || n < min || n > max) {
        lookup_set_err(err, errlen, "bad %s value \"%s\": need a number from %ld to %ld", name, v,
                       min, max);
        return -1;
    }
    return n;
}

int db_cf_bool(const struct db_cf *cf, const char *name, int def, char *err, size_t errlen)
{
    const char *v = db_cf_str(cf, name, NULL);

    if (v == NULL)
        return def;
    if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
        return 1;
    if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
        return 0;
    lookup_set_err(err, errlen, "bad %s value \"%s\": need yes or no", name, v);
    return -1;
}

/* --- templates --- */

int db_template_check(const char *template, char *err, size_t errlen)
{
    for (const char *p = template; (p = strchr(p, '%')) != NULL; p += 2) {
        if (p[1] == 0 || strchr("%sudSUD123456789", p[1]) == NULL) {
            lookup_set_err(err, errlen, "invalid %% expansion \"%%%.1s\" in \"%s\"", p + 1,
                           template);
            return -1;
        }
    }
    return 0;
}

/* The parts of an address: local part and domain as spans of text. */
struct addr_parts {
    const char *text, *local, *domain;
    size_t text_len, local_len, domain_len;
    int has_at;
};

static void addr_split(const char *text, size_t len, struct addr_parts *a)
{
    const char *at = memrchr(text, '@', len);

    a->text = text;
    a->text_len = len;
    a->has_at = at != NULL;
    a->local = text;
    a->local_len = at ? (size_t)(at - text) : len;
    a->domain = at ? at + 1 : NULL;
    a->domain_len = at ? len - (size_t)(at - text) - 1 : 0;
}

/* Label n (1 = rightmost) of the domain; 0 when there are too few. */
static int domain_label(const struct addr_parts *a, int n, const char **s, size_t *len)
{
    const char *end = a->domain + a->domain_len;

    for (int i = 1; i <= n; i++) {
        const char *dot = end;
        while (dot > a->domain && dot[-1] != '.')
            dot--;
        if (end == dot)
            return 0;
        if (i == n) {
            *s = dot;
            *len = (size_t)(end - dot);
            return 1;
        }
        if (dot == a->domain)
            return 0;
        end = dot - 1;
    }
    return 0;
}

static void emit(struct strbuf *out, db_quote_fn quote, void *ctx, const char *s, size_t n)
{
    if (quote != NULL)
        quote(ctx, s, n, out);
    else
        strbuf_add(out, s, n);
}

/* Expand one letter about address a. 1, or 0 when a lacks that part. */
static int expand_part(char c, const struct addr_parts *a, db_quote_fn quote, void *ctx,
                       struct strbuf *out)
{
    const char *s;
    size_t n;

    switch (tolower((unsigned char)c)) {
    case 's':
        emit(out, quote, ctx, a->text, a->text_len);
        return 1;
    case 'u':
        if (!a->has_at) {
            emit(out, quote, ctx, a->text, a->text_len);
            return 1;
        }
        if (a->local_len == 0)
            return 0;
        emit(out, quote, ctx, a->local, a->local_len);
        return 1;
    case 'd':
        if (!a->has_at || a->domain_len == 0)
            return 0;
        emit(out, quote, ctx, a->domain, a->domain_len);
        return 1;
    default:
        if (!a->has_at || !domain_label(a, c - '0', &s, &n))
            return 0;
        emit(out, quote, ctx, s, n);
        return 1;
    }
}

/* value NULL: a query template (every letter is about the key). */
static int expand(const char *template, const struct addr_parts *key,
                  const struct addr_parts *value, db_quote_fn quote, void *ctx,
                  struct strbuf *out)
{
    const char *p = template;

    for (;;) {
        const char *pc = strchr(p, '%');
        if (pc == NULL) {
            strbuf_add(out, p, strlen(p));
            return 1;
        }
        strbuf_add(out, p, (size_t)(pc - p));
        if (pc[1] == 0)
            return 1;
        if (pc[1] == '%') {
            strbuf_add(out, "%", 1);
        } else if (value != NULL && strchr("sud", pc[1]) != NULL) {
            if (pc[1] == 's' && value->text_len == 0)
                return 0;
            if (!expand_part(pc[1], value, NULL, NULL, out))
                return 0;
        } else if (!expand_part(pc[1], key, quote, ctx, out)) {
            return 0;
        }
        p = pc + 2;
    }
}

int db_expand_query(const char *template, const char *key, db_quote_fn quote, void *ctx,
                    struct strbuf *out)
{
    struct addr_parts k;

    addr_split(key, strlen(key), &k);
    strbuf_add(out, "", 0);
    return expand(template, &k, NULL, quote, ctx, out);
}

int db_key_fits_result(const char *format, const char *key)
{
    struct addr_parts k, v;
    struct strbuf scratch = {0};
    int ok;

    addr_split(key, strlen(key), &k);
    addr_split("x@x", 3, &v);
    ok = expand(format, &k, &v, NULL, NULL, &scratch);
    strbuf_free(&scratch);
    return ok;
}

void db_result_add(struct db_result *r, const char *value, size_t len)
{
    struct strbuf one = {0};
    struct addr_parts k, v;

    if (len == 0 || r->overflow)
        return;
    addr_split(r->key, strlen(r->key), &k);
    addr_split(value, strnlen(value, len), &v);
    strbuf_add(&one, "", 0);
    if (expand(r->format, &k, &v, NULL, NULL, &one)) {
        if (r->count > 0)
            strbuf_add(&r->out, ",", 1);
        strbuf_add(&r->out, one.s, one.len);
        r->count++;
        if ((r->limit > 0 && r->count > r->limit) || r->out.len > DB_RESULT_MAX)
            r->overflow = 1;
    }
    strbuf_free(&one);
}

/* --- the domain restriction --- */

struct db_domains {
    long n;
    char **names;                  /* lower case; NULL where a table is */
    struct lookup_table **tables;
};

/* A file named in the list: its words are domain names. */
static void domains_from_file(struct db_domains *d, const char *path, char *err, size_t errlen,
                              int *rc)
{
    char *text = read_cf_file(path, err, errlen), **words;
    long n;

    if (text == NULL) {
        *rc = -1;
        return;
    }
    for (char *h = text; (h = strchr(h, '#')) != NULL;)
        while (*h != 0 && *h != '\n')
            *h++ = ' ';
    n = lookup_split_tokens(text, &words);
    free(text);
    for (long i = 0; i < n; i++) {
        d->names = realloc(d->names, (size_t)(d->n + 1) * sizeof(char *));
        d->tables = realloc(d->tables, (size_t)(d->n + 1) * sizeof(void *));
        if (d->names == NULL || d->tables == NULL)
            msg_fatal("out of memory");
        d->names[d->n] = lookup_fold_key(words[i]);
        d->tables[d->n++] = NULL;
    }
    lookup_free_tokens(words, n > 0 ? n : 0);
}

struct db_domains *db_domains_open(const char *list, char *err, size_t errlen)
{
    struct db_domains *d;
    char **items;
    long n;
    int rc = 0;

    if (list == NULL || (n = lookup_split_tokens(list, &items)) <= 0)
        return NULL;
    d = lookup_xmalloc(sizeof(*d));
    memset(d, 0, sizeof(*d));
    for (long i = 0; i < n && rc == 0; i++) {
        if (items[i][0] == '/') {
            domains_from_file(d, items[i], err, errlen, &rc);
            continue;
        }
        d->names = realloc(d->names, (size_t)(d->n + 1) * sizeof(char *));
        d->tables = realloc(d->tables, (size_t)(d->n + 1) * sizeof(void *));
        if (d->names == NULL || d->tables == NULL)
            msg_fatal("out of memory");
        d->names[d->n] = NULL;
        d->tables[d->n] = NULL;
        if (strchr(items[i], ':') != NULL) {
            if ((d->tables[d->n] = lookup_open(items[i], err, errlen)) == NULL)
                rc = -1;
        } else {
            d->names[d->n] = lookup_fold_key(items[i]);
        }
        d->n++;
    }
    lookup_free_tokens(items, n);
    if (rc < 0) {
        db_domains_close(d);
        return NULL;
    }
    return d;
}

void db_domains_close(struct db_domains *d)
{
    if (d == NULL)
        return;
    for (long i = 0; i < d->n; i++) {
        free(d->names[i]);
        lookup_close(d->tables[i]);
    }
    free(d->names);
    free(d->tables);
    free(d);
}

int db_domains_allow(struct db_domains *d, const char *key)
{
    const char *at = strrchr(key, '@');
    char *domain, *value;
    int hit = 0;

    if (d == NULL)
        return 1;
    if (at == NULL || at == key || at[1] == 0 || (domain = lookup_fold_key(at + 1)) == NULL)
        return 0;
    for (long i = 0; i < d->n && hit == 0; i++) {
        if (d->names[i] != NULL) {
            hit = strcmp(d->names[i], domain) == 0;
        } else {
            int r = lookup_get(d->tables[i], domain, &value);
            free(value);
            hit = r == LOOKUP_FOUND ? 1 : r == LOOKUP_TEMPFAIL ? -1 : 0;
        }
    }
    free(domain);
    return hit;
}

char *db_legacy_query(const struct db_cf *cf, char *err, size_t errlen)
{
    const char *select = db_cf_str(cf, "select_field", NULL);
    const char *table = db_cf_str(cf, "table", NULL);
    const char *where = db_cf_str(cf, "where_field", NULL);
    const char *extra = db_cf_str(cf, "additional_conditions", "");
    size_t len;
    char *q;

    if (select == NULL || table == NULL || where == NULL) {
        lookup_set_err(err, errlen, "need \"query\", or \"select_field\", \"table\" and "
                       "\"where_field\"");
        return NULL;
    }
    len = strlen(select) + strlen(table) + strlen(where) + strlen(extra) + 40;
    q = lookup_xmalloc(len);
    snprintf(q, len, "SELECT %s FROM %s WHERE %s = '%%s' %s", select, table, where, extra);
    return q;
}

/* --- hosts and failover --- */

int db_hosts_parse(const char *list, const char *default_port, struct db_host **hosts,
                   char *err, size_t errlen)
{
    char **items;
    long n;

    if ((n = lookup_split_tokens(list, &items)) <= 0) {
        lookup_set_err(err, errlen, "no hosts");
        return -1;
    }
    *hosts = lookup_xmalloc((size_t)n * sizeof(**hosts));
    memset(*hosts, 0, (size_t)n * sizeof(**hosts));
    for (long i = 0; i < n; i++) {
        struct db_host *h = &(*hosts)[i];
        const char *t = items[i];
        h->text = lookup_xstrdup(t);
        if (strncmp(t, "unix:", 5) == 0) {
            h->path = lookup_xstrdup(t + 5);
            continue;
        }
        if (strncmp(t, "inet:", 5) == 0)
            t += 5;
        if (strchr(t, ':') == NULL || (t[0] == '[' && strstr(t, "]:") == NULL)) {
            h->host = t[0] == '[' ? lookup_xstrndup(t + 1, strcspn(t + 1, "]"))
                                  : lookup_xstrdup(t);
            h->port = lookup_xstrdup(default_port);
        } else if (lookup_split_host_port(t, &h->host, &h->port) < 0) {
            lookup_set_err(err, errlen, "bad host \"%s\"", items[i]);
            db_hosts_free(*hosts, (int)i + 1);
            lookup_free_tokens(items, n);
            return -1;
        }
    }
    lookup_free_tokens(items, n);
    return (int)n;
}

void db_hosts_free(struct db_host *hosts, int n)
{
    for (int i = 0; i < n; i++) {
        free(hosts[i].text);
        free(hosts[i].path);
        free(hosts[i].host);
        free(hosts[i].port);
    }
    free(hosts);
}

/* UNIX sockets before TCP, as Postfix does; hosts that failed less than
 * retry seconds ago go last, but are still tried: with every server down a
 * lookup asks each once, so a server that is back answers at once. */
int db_hosts_order(const struct db_host *hosts, int n, int current, int *order)
{
    time_t now = time(NULL);
    int k = 0;

    if (current >= 0)
        order[k++] = current;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < n; i++) {
            int resting = hosts[i].retry_after > now;
            int is_unix = hosts[i].path != NULL;
            int want = pass == 0 ? (!resting && is_unix) : pass == 1 ? (!resting && !is_unix)
                                                                    : resting;
            if (want && i != current)
                order[k++] = i;
        }
    }
    return k;
}
