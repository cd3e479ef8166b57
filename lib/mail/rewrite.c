/* rewrite.c - address rewriting in Postfix's order (rewrite.h): canonical
 * form, canonical maps, masquerading, virtual alias expansion, relocated.
 *
 * Lookup tables come from main.cf parameters (or from type:table items of
 * list parameters) through one small cache, so every daemon that rewrites
 * opens each table once and notices when a reload changed the parameter.
 */
#include "rewrite.h"
#include "strbuf.h"
#include "strlist.h"

#include "addrlist.h"
#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "match.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAPS_CACHE_MAX 64        /* distinct parameters / list tables kept open */
#define LIST_ITEM_MAX 1024       /* longest item of a list parameter */
#define CANONICAL_NESTING_MAX 10 /* chained 1:1 lookups for one address */
#define EXPANSION_SEEN_FACTOR 10 /* distinct addresses looked up, per allowed result */

/* --- open tables, keyed by parameter name or table spec --- */

struct maps_slot {
    char *key;      /* parameter name, or the table spec of a list item */
    char *value;    /* the value the tables were opened from */
    struct lookup_list *maps;
};
static struct maps_slot maps_cache[MAPS_CACHE_MAX];
static size_t maps_victim;   /* round-robin slot to reuse when all are taken */

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        msg_fatal("out of memory");
    return p;
}

static void slot_clear(struct maps_slot *s)
{
    lookup_list_close(s->maps);
    free(s->key);
    free(s->value);
    memset(s, 0, sizeof(*s));
}

/* The slot for key: its own (cleared when the value changed), a free one,
 * or the next victim. */
static struct maps_slot *slot_for(const char *key, const char *value, int *current)
{
    struct maps_slot *free_slot = NULL;
    *current = 0;
    for (size_t i = 0; i < MAPS_CACHE_MAX; i++) {
        struct maps_slot *s = &maps_cache[i];
        if (!s->key) {
            if (!free_slot)
                free_slot = s;
        } else if (strcmp(s->key, key) == 0) {
            if (strcmp(s->value, value) == 0) {
                *current = 1;
                return s;
            }
            slot_clear(s);
            return s;
        }
    }
    if (free_slot)
        return free_slot;
    struct maps_slot *s = &maps_cache[maps_victim];
    maps_victim = (maps_victim + 1) % MAPS_CACHE_MAX;
    slot_clear(s);
    return s;
}

static struct lookup_list *cached_maps(const char *key, const char *value, int *failed)
{
    char err[512];
    int current;
    *failed = 0;
    if (!value || !*value)
        return NULL;
    struct maps_slot *s = slot_for(key, value, &current);
    if (current)
        return s->maps;
    struct lookup_list *l = lookup_list_open(value, err, sizeof(err));
    if (!l) {
        msg_warn("%s: %s", key, err);
        *failed = 1;
        return NULL;
    }
    s->key = xstrdup(key);
    s->value = xstrdup(value);
    s->maps = l;
    return l;
}

struct lookup_list *rewrite_param_maps(enum param_id param, int *failed)
{
    return cached_maps(config_name(param), config_value(param), failed);
}

/* --- list parameters --- */

int rewrite_list_walk(const char *value, int (*fn)(const char *item, void *ctx), void *ctx)
{
    char item[LIST_ITEM_MAX];
    const char *p = value ? value : "";
    int r;
    while ((r = strlist_next(&p, item, sizeof(item))) != 0) {
        if (r < 0)
            continue;
        int rc = fn(item, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

struct list_match {
    const char *name;
    int is_domain;
    int result;
};

static int match_item(const char *item, void *ctx)
{
    struct list_match *m = ctx;
    int negate = item[0] == '!';
    int hit;
    if (negate)
        item++;
    if (strlist_is_table(item)) {
        int failed;
        char *value = NULL;
        struct lookup_list *l = cached_maps(item, item, &failed);
        int rc = l ? lookup_list_get(l, m->name, &value) : LOOKUP_TEMPFAIL;
        free(value);
        if (rc == LOOKUP_TEMPFAIL || rc == LOOKUP_PENDING) {
            m->result = rc;
            return 1;
        }
        hit = rc == LOOKUP_FOUND;
    } else if (m->is_domain) {
        hit = match_domain_list(item, m->name);
    } else {
        hit = strcasecmp(item, m->name) == 0;
    }
    if (!hit)
        return 0;
    m->result = !negate;
    return 1;
}

int rewrite_match_list(const char *value, const char *name, int is_domain)
{
    char key[LIST_ITEM_MAX];
    size_t len = strlen(name);
    /* Domains are compared without a trailing dot, tables included. */
    if (is_domain && len > 0 && name[len - 1] == '.')
        len--;
    if (len >= sizeof(key))
        return 0;
    memcpy(key, name, len);
    key[len] = 0;
    struct list_match m = {.name = key, .is_domain = is_domain, .result = 0};
    rewrite_list_walk(value, match_item, &m);
    return m.result;
}

static int class_bit(const char *item, void *ctx)
{
    static const struct {
        const char *name;
        int bit;
    } names[] = {
        {"envelope_sender", REWRITE_ENV_SENDER},
        {"envelope_recipient", REWRITE_ENV_RCPT},
        {"header_sender", REWRITE_HDR_SENDER},
        {"header_recipient", REWRITE_HDR_RCPT},
    };
    int *bits = ctx;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(item, names[i].name) == 0) {
            *bits |= names[i].bit;
            return 0;
        }
    }
    msg_warn("unknown address class \"%s\" (expected envelope_sender, envelope_recipient, "
             "header_sender or header_recipient)",
             item);
    return 0;
}

int rewrite_parse_classes(const char *value)
{
    int bits = 0;
    rewrite_list_walk(value, class_bit, &bits);
    return bits;
}

static int classes_of(const char *value)
{
    return rewrite_parse_classes(value);
}

/* --- canonical form --- */

int rewrite_domain_is_local(const char *domain)
{
    const char *origin = var.myorigin;
    if (!domain)
        return 1;
    if (origin && *origin && strcasecmp(domain, origin) == 0)
        return 1;
    return match_domain_list(var.mydestination, domain);
}

int rewrite_canonical_form(const char *addr, const char *origin, const char *dot_domain,
                           char *out, size_t outlen)
{
    const char *at = strrchr(addr, '@');
    int n;
    if (!origin)
        origin = var.myorigin;
    if (!dot_domain)
        dot_domain = var.mydomain;
    if (!*addr) {
        n = snprintf(out, outlen, "%s", "");
    } else if (!at) {
        if (var.append_at_myorigin && origin && *origin)
            n = snprintf(out, outlen, "%s@%s", addr, origin);
        else
            n = snprintf(out, outlen, "%s", addr);
    } else {
        const char *domain = at + 1;
        size_t dlen = strlen(domain);
        while (dlen > 1 && domain[dlen - 1] == '.')
            dlen--;   /* "host." is "host" */
        int dot = var.append_dot_mydomain && dot_domain && *dot_domain && dlen > 0 &&
                  domain[0] != '[' && !memchr(domain, '.', dlen);
        n = snprintf(out, outlen, "%.*s@%.*s%s%s", (int)(at - addr), addr, (int)dlen, domain,
                     dot ? "." : "", dot ? dot_domain : "");
    }
    return n < 0 || (size_t)n >= outlen ? REWRITE_TOOLONG : REWRITE_OK;
}

/* --- table lookups with address extensions --- */

static int propagates(const char *table_class)
{
    return rewrite_match_list(var.propagate_unmatched_extensions, table_class, 0) == 1;
}

/* Find addr in l in canonical(5) order. On LOOKUP_FOUND *value is malloc'd
 * and ext receives the extension ("+foo") that the matching key lacked,
 * or "" when a key with the extension matched. */
static int table_find(struct lookup_list *l, const char *addr, char **value, char *ext,
                      size_t extlen)
{
    const char *delim = var.recipient_delimiter;
    const char *domain = address_domain(addr);
    int local = rewrite_domain_is_local(domain);
    ext[0] = 0;
    int rc = lookup_list_address(l, addr, local, delim ? delim : "", value);
    if (rc != LOOKUP_FOUND || !delim || !*delim)
        return rc;
    size_t local_len = domain ? (size_t)(domain - 1 - addr) : strlen(addr);
    size_t cut = strcspn(addr, delim);
    if (cut == 0 || cut >= local_len || local_len - cut >= extlen)
        return rc;
    /* Which key matched: one that still had the extension? */
    char *probe = NULL;
    int with = lookup_list_get(l, addr, &probe);
    free(probe);
    probe = NULL;
    if (with == LOOKUP_NOTFOUND && domain && local) {
        char *bare = strndup(addr, local_len);
        if (!bare)
            msg_fatal("out of memory");
        with = lookup_list_get(l, bare, &probe);
        free(probe);
        free(bare);
    }
    if (with == LOOKUP_TEMPFAIL) {
        free(*value);
        *value = NULL;
        return LOOKUP_TEMPFAIL;
    }
    if (with == LOOKUP_NOTFOUND) {
        memcpy(ext, addr + cut, local_len - cut);
        ext[local_len - cut] = 0;
    }
    return rc;
}

static int collect_address(const struct addrlist_item *item, void *ctx)
{
    struct rewrite_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **a = realloc(l->addr, cap * sizeof(*a));
        if (!a)
            msg_fatal("out of memory");
        l->addr = a;
        l->cap = cap;
    }
    l->addr[l->n++] = xstrdup(item->address);
    return 0;
}

void rewrite_list_free(struct rewrite_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->addr[i]);
    free(l->addr);
    memset(l, 0, sizeof(*l));
}

static int list_has(const struct rewrite_list *l, const char *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->addr[i], addr) == 0)
            return 1;
    return 0;
}

static void list_add(struct rewrite_list *l, const char *addr)
{
    struct addrlist_item item;
    snprintf(item.address, sizeof(item.address), "%s", addr);
    collect_address(&item, l);
}

/* A table result made into a full address for the input address: "@other"
 * keeps the input's local part, an unmatched extension is inserted before
 * the '@' (unless the result has one of its own), then canonical form. */
static int result_address(const char *input, const char *result, const char *ext, char *out,
                          size_t outlen)
{
    char tmp[ADDRESS_MAX];
    int n;
    if (result[0] == '@') {
        const char *at = strrchr(input, '@');
        size_t llen = at ? (size_t)(at - input) : strlen(input);
        n = snprintf(tmp, sizeof(tmp), "%.*s%s", (int)llen, input, result);
    } else {
        const char *at = strrchr(result, '@');
        size_t llen = at ? (size_t)(at - result) : strlen(result);
        const char *delim = var.recipient_delimiter;
        int has_ext = delim && *delim && strcspn(result, delim) < llen;
        if (!*ext || has_ext)
            n = snprintf(tmp, sizeof(tmp), "%s", result);
        else
            n = snprintf(tmp, sizeof(tmp), "%.*s%s%s", (int)llen, result, ext, at ? at : "");
    }
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return REWRITE_TOOLONG;
    return rewrite_canonical_form(tmp, NULL, NULL, out, outlen);
}

/* --- 1:1 mapping (canonical) --- */

/* Map addr (in place, ADDRESS_MAX bytes) through the tables of param,
 * following the chain until an address maps to itself or to nothing. */
static int map_one(enum param_id param, char *addr)
{
    int failed;
    struct lookup_list *l = rewrite_param_maps(param, &failed);
    if (!l)
        return failed ? REWRITE_TEMPFAIL : REWRITE_OK;
    int prop = propagates("canonical");
    for (int i = 0; i < CANONICAL_NESTING_MAX; i++) {
        char *value = NULL, ext[ADDRESS_MAX], next[ADDRESS_MAX];
        struct rewrite_list results = {0};
        int rc = table_find(l, addr, &value, ext, sizeof(ext));
        if (rc == LOOKUP_NOTFOUND)
            return REWRITE_OK;
        if (rc == LOOKUP_TEMPFAIL) {
            msg_warn("%s map lookup problem for %s", config_name(param), addr);
            return REWRITE_TEMPFAIL;
        }
        addrlist_parse(value, strlen(value), collect_address, &results);
        free(value);
        if (results.n == 0) {
            rewrite_list_free(&results);
            return REWRITE_OK;   /* an empty result changes nothing */
        }
        if (results.n > 1)
            msg_warn("multi-valued %s entry for %s", config_name(param), addr);
        rc = result_address(addr, results.addr[0], prop ? ext : "", next, sizeof(next));
        rewrite_list_free(&results);
        if (rc != REWRITE_OK)
            return rc;
        if (strcasecmp(next, addr) == 0)
            return REWRITE_OK;
        memcpy(addr, next, strlen(next) + 1);
    }
    msg_warn("unreasonable %s map nesting for %s", config_name(param), addr);
    return REWRITE_LIMIT;
}

/* --- masquerading --- */

struct masq {
    const char *domain;
    const char *result;   /* the masquerade domain chosen, or NULL */
};

static int masq_item(const char *item, void *ctx)
{
    struct masq *m = ctx;
    int negate = item[0] == '!';
    if (negate)
        item++;
    size_t dl = strlen(m->domain), il = strlen(item);
    if (il == 0)
        return 0;
    if (strcasecmp(m->domain, item) == 0)
        return 1;   /* already that domain: nothing to strip */
    if (dl <= il + 1)
        return 0;
    const char *tail = m->domain + dl - il;
    if (tail[-1] == '.' && strcasecmp(tail, item) == 0) {
        if (!negate)
            m->result = tail;
        return 1;
    }
    return 0;
}

int rewrite_masquerade(int cls, const char *addr, char *out, size_t outlen)
{
    const char *domains = var.masquerade_domains;
    const char *at = strrchr(addr, '@');
    char local[ADDRESS_MAX], result[ADDRESS_MAX];
    if (strlen(addr) >= outlen)
        return REWRITE_TOOLONG;
    memmove(out, addr, strlen(addr) + 1);   /* out may be addr */
    if (!(classes_of(var.masquerade_classes) & cls) || !domains || !*domains || !at ||
        (size_t)(at - addr) >= sizeof(local))
        return REWRITE_OK;
    memcpy(local, addr, (size_t)(at - addr));
    local[at - addr] = 0;
    int except = rewrite_match_list(var.masquerade_exceptions, local, 0);
    if (except == LOOKUP_TEMPFAIL)
        return REWRITE_TEMPFAIL;
    if (except == 1)
        return REWRITE_OK;
    struct masq m = {.domain = at + 1};
    rewrite_list_walk(domains, masq_item, &m);
    if (!m.result)
        return REWRITE_OK;
    int n = snprintf(result, sizeof(result), "%s@%s", local, m.result);
    if (n < 0 || (size_t)n >= outlen)
        return REWRITE_TOOLONG;
    memcpy(out, result, (size_t)n + 1);
    return REWRITE_OK;
}

/* Whether any of steps 2 and 3 is configured: most sites use none, and
 * every recipient of every message asks. */
static int anything_to_do(void)
{
    return *var.canonical_maps || *var.sender_canonical_maps ||
           *var.recipient_canonical_maps || *var.masquerade_domains;
}

int rewrite_address(int cls, const char *addr, char *out, size_t outlen)
{
    char cur[ADDRESS_MAX];
    int sender = (cls & (REWRITE_ENV_SENDER | REWRITE_HDR_SENDER)) != 0;
    int rc = REWRITE_OK;
    size_t len = strlen(addr);
    if (len >= outlen)
        return REWRITE_TOOLONG;   /* out untouched: it cannot hold addr */
    if (len >= sizeof(cur)) {
        memmove(out, addr, len + 1);
        return REWRITE_TOOLONG;
    }
    memcpy(cur, addr, len + 1);
    if (*cur && anything_to_do()) {
        if (classes_of(sender ? var.sender_canonical_classes : var.recipient_canonical_classes) & cls)
            rc = map_one(sender ? PARAM_sender_canonical_maps : PARAM_recipient_canonical_maps, cur);
        if (rc == REWRITE_OK && (classes_of(var.canonical_classes) & cls))
            rc = map_one(PARAM_canonical_maps, cur);
        if (rc == REWRITE_OK)
            rc = rewrite_masquerade(cls, cur, cur, sizeof(cur));
    }
    if (rc != REWRITE_OK || strlen(cur) >= outlen) {
        memmove(out, addr, strlen(addr) + 1);
        return rc != REWRITE_OK ? rc : REWRITE_TOOLONG;
    }
    memcpy(out, cur, strlen(cur) + 1);
    return REWRITE_OK;
}

/* --- virtual alias expansion (1:n) --- */

struct expansion {
    struct lookup_list *maps;
    struct rewrite_list *out;
    struct rewrite_list seen;   /* addresses already looked up */
    const char *top;            /* the address being expanded, for messages */
    long size_limit, depth_limit;
    int prop;
    char *why;
    size_t whylen;
};

static int emit(struct expansion *x, const char *addr)
{
    if (list_has(x->out, addr))
        return REWRITE_OK;
    if ((long)x->out->n >= x->size_limit) {
        snprintf(x->why, x->whylen, "unreasonable virtual_alias_maps map expansion size for %s",
                 x->top);
        return REWRITE_LIMIT;
    }
    list_add(x->out, addr);
    return REWRITE_OK;
}

static int expand(struct expansion *x, const char *addr, long depth);

/* The results of one lookup: addresses that map to themselves are final,
 * the others are expanded further. */
static int expand_results(struct expansion *x, const char *addr, const struct rewrite_list *r,
                          const char *ext, long depth)
{
    char *next = malloc(ADDRESS_MAX);
    int rc = REWRITE_OK;
    if (!next)
        msg_fatal("out of memory");
    for (size_t i = 0; i < r->n && rc == REWRITE_OK; i++) {
        rc = result_address(addr, r->addr[i], x->prop ? ext : "", next, ADDRESS_MAX);
        if (rc == REWRITE_TOOLONG) {
            snprintf(x->why, x->whylen, "virtual_alias_maps result too long for %s", x->top);
        } else if (strcasecmp(next, addr) == 0) {
            rc = emit(x, next);
        } else {
            rc = expand(x, next, depth + 1);
        }
    }
    free(next);
    return rc;
}

static int expand(struct expansion *x, const char *addr, long depth)
{
    if (depth > x->depth_limit) {
        snprintf(x->why, x->whylen, "unreasonable virtual_alias_maps map nesting for %s", x->top);
        return REWRITE_LIMIT;
    }
    /* An address met before is not expanded again: that ends loops. */
    if (list_has(&x->seen, addr))
        return emit(x, addr);
    if ((long)x->seen.n >= x->size_limit * EXPANSION_SEEN_FACTOR) {
        snprintf(x->why, x->whylen, "unreasonable virtual_alias_maps map expansion size for %s",
                 x->top);
        return REWRITE_LIMIT;
    }
    list_add(&x->seen, addr);
    char *value = NULL, *ext = malloc(ADDRESS_MAX);
    if (!ext)
        msg_fatal("out of memory");
    int rc = table_find(x->maps, addr, &value, ext, ADDRESS_MAX);
    if (rc == LOOKUP_NOTFOUND) {
        rc = emit(x, addr);
    } else if (rc == LOOKUP_TEMPFAIL) {
        snprintf(x->why, x->whylen, "virtual_alias_maps map lookup problem for %s", addr);
        rc = REWRITE_TEMPFAIL;
    } else {
        struct rewrite_list results = {0};
        addrlist_parse(value, strlen(value), collect_address, &results);
        rc = results.n == 0 ? emit(x, addr) : expand_results(x, addr, &results, ext, depth);
        rewrite_list_free(&results);
    }
    free(value);
    free(ext);
    return rc;
}

int rewrite_virtual_alias(const char *addr, struct rewrite_list *out, char *why, size_t whylen)
{
    int failed;
    struct lookup_list *l = rewrite_param_maps(PARAM_virtual_alias_maps, &failed);
    why[0] = 0;
    if (!l) {
        if (failed) {
            snprintf(why, whylen, "virtual_alias_maps: bad table list");
            return REWRITE_TEMPFAIL;
        }
        list_add(out, addr);
        return REWRITE_OK;
    }
    struct expansion x = {
        .maps = l,
        .out = out,
        .top = addr,
        .size_limit = var.virtual_alias_expansion_limit,
        .depth_limit = var.virtual_alias_recursion_limit,
        .prop = propagates("virtual"),
        .why = why,
        .whylen = whylen,
    };
    if (x.size_limit < 1)
        x.size_limit = 1;
    int rc = expand(&x, addr, 0);
    rewrite_list_free(&x.seen);
    return rc;
}

/* --- smtp_generic_maps --- */

int rewrite_generic(const char *addr, char *out, size_t outlen)
{
    int failed;
    struct lookup_list *l = rewrite_param_maps(PARAM_smtp_generic_maps, &failed);
    char *value = NULL, ext[ADDRESS_MAX], result[ADDRESS_MAX];
    struct rewrite_list results = {0};
    if (strlen(addr) >= outlen)
        return REWRITE_TOOLONG;
    memmove(out, addr, strlen(addr) + 1);
    if (!l)
        return failed ? REWRITE_TEMPFAIL : REWRITE_OK;
    if (!*addr)
        return REWRITE_OK;
    int rc = table_find(l, addr, &value, ext, sizeof(ext));
    if (rc != LOOKUP_FOUND)
        return rc == LOOKUP_TEMPFAIL ? REWRITE_TEMPFAIL : REWRITE_OK;
    addrlist_parse(value, strlen(value), collect_address, &results);
    free(value);
    if (results.n > 0 && result_address(addr, results.addr[0], propagates("generic") ? ext : "",
                                        result, sizeof(result)) == REWRITE_OK &&
        strlen(result) < outlen)
        memcpy(out, result, strlen(result) + 1);
    rewrite_list_free(&results);
    return REWRITE_OK;
}

/* --- header addresses --- */

static const char *const sender_headers[] = {
    "From", "Sender", "Errors-To", "Resent-From", "Resent-Sender", "Return-Receipt-To",
    "Disposition-Notification-To", NULL,
};
static const char *const recipient_headers[] = {
    "To", "Cc", "Bcc", "Apparently-To", "Reply-To", "Mail-Followup-To", "Resent-To",
    "Resent-Cc", "Resent-Bcc", "Resent-Reply-To", NULL,
};

static int name_in(const char *name, size_t nlen, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (strlen(names[i]) == nlen && strncasecmp(name, names[i], nlen) == 0)
            return 1;
    return 0;
}

int rewrite_header_class(const char *name, size_t nlen)
{
    if (name_in(name, nlen, sender_headers))
        return REWRITE_HDR_SENDER;
    if (name_in(name, nlen, recipient_headers))
        return REWRITE_HDR_RCPT;
    return 0;
}

struct header_edit {
    rewrite_header_fn fn;
    void *ctx;
    const char *value;     /* the header value the spans refer to */
    size_t copied;         /* value bytes already in out */
    struct strbuf out;
    int changed, error;
};

static void edit_add(struct header_edit *e, const char *data, size_t len)
{
    strbuf_add(&e->out, data, len);
}

static int edit_span(const struct addrlist_item *item, void *ctx)
{
    struct header_edit *e = ctx;
    char addr[ADDRESS_MAX], ext[ADDRESS_MAX + 2];
    int rc = e->fn(e->ctx, item->address, addr, sizeof(addr));
    if (rc < 0) {
        e->error = rc;
        return 1;
    }
    if (rc == 0 || strcmp(addr, item->address) == 0 || address_quote(addr, ext, sizeof(ext)) < 0)
        return 0;
    edit_add(e, e->value + e->copied, item->start - e->copied);
    edit_add(e, ext, strlen(ext));
    e->copied = item->end;
    e->changed = 1;
    return 0;
}

int rewrite_header_addresses(const char *h, size_t hlen, size_t nlen, rewrite_header_fn fn,
                             void *ctx, char **out, size_t *outlen)
{
    struct header_edit e = {.fn = fn, .ctx = ctx, .value = h + nlen + 1};
    size_t vlen = hlen - nlen - 1;
    *out = NULL;
    *outlen = 0;
    edit_add(&e, h, nlen + 1);
    if (addrlist_parse(e.value, vlen, edit_span, &e) < 0)
        msg_fatal("out of memory");
    if (e.error || !e.changed) {
        strbuf_free(&e.out);
        return e.error ? e.error : 0;
    }
    edit_add(&e, e.value + e.copied, vlen - e.copied);
    *out = e.out.s;
    *outlen = e.out.len;
    return 1;
}

/* --- relocated --- */

int rewrite_relocated(const char *addr, char **newloc)
{
    int failed;
    struct lookup_list *l = rewrite_param_maps(PARAM_relocated_maps, &failed);
    const char *delim = var.recipient_delimiter;
    *newloc = NULL;
    if (!l)
        return failed ? LOOKUP_TEMPFAIL : LOOKUP_NOTFOUND;
    return lookup_list_address(l, addr, rewrite_domain_is_local(address_domain(addr)),
                               delim ? delim : "", newloc);
}
