/* lookup_ldap.c - the ldap: table type (ldap_table(5)): ldap:/path names
 * a query file (server_host, server_port, search_base, query_filter,
 * result_attribute, special_result_attribute, terminal_result_attribute,
 * leaf_result_attribute, scope, bind, bind_dn, bind_pw, version,
 * start_tls, timeout, size_limit, recursion_limit, domain,
 * result_format, expansion_limit). Templates, the domain restriction and
 * result joining are lookup_db.c's; this file is libldap's part. One of
 * the table types of lookup.c (lookup_type.h).
 *
 * The connection is made on the first lookup and kept; a failed search
 * drops it and is tried once more on a new one, so a restarted server is
 * used again without a restart of ours. Every operation waits at most
 * "timeout" seconds (default lookup_timeout); a server that is down, slow
 * or answers with an error is a temporary failure with a warning.
 * DN values of special result attributes are searched recursively (LDAP
 * URLs too) up to recursion_limit. SASL binds are not supported.
 */
#define LDAP_DEPRECATED 0
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_db.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ldap.h>

#include "dynlib.h"

/* libldap is loaded on the first ldap: table (dynlib.h); ber_pvt_opt_on
 * is the datum LDAP_OPT_ON points at. */
#define LDAP_FUNCS(X) X(ber_free) X(ber_pvt_opt_on) X(ldap_err2string) \
    X(ldap_first_attribute) X(ldap_first_entry) X(ldap_free_urldesc) \
    X(ldap_get_values_len) X(ldap_initialize) X(ldap_is_ldap_url) X(ldap_memfree) \
    X(ldap_msgfree) X(ldap_next_attribute) X(ldap_next_entry) X(ldap_sasl_bind_s) \
    X(ldap_search_ext_s) X(ldap_set_option) X(ldap_start_tls_s) X(ldap_unbind_ext_s) \
    X(ldap_url_parse) X(ldap_value_free_len)
LDAP_FUNCS(DYNLIB_DECLARE)
#define ber_free (*dl_ber_free)
#define ber_pvt_opt_on (*dl_ber_pvt_opt_on)
#define ldap_err2string (*dl_ldap_err2string)
#define ldap_first_attribute (*dl_ldap_first_attribute)
#define ldap_first_entry (*dl_ldap_first_entry)
#define ldap_free_urldesc (*dl_ldap_free_urldesc)
#define ldap_get_values_len (*dl_ldap_get_values_len)
#define ldap_initialize (*dl_ldap_initialize)
#define ldap_is_ldap_url (*dl_ldap_is_ldap_url)
#define ldap_memfree (*dl_ldap_memfree)
#define ldap_msgfree (*dl_ldap_msgfree)
#define ldap_next_attribute (*dl_ldap_next_attribute)
#define ldap_next_entry (*dl_ldap_next_entry)
#define ldap_sasl_bind_s (*dl_ldap_sasl_bind_s)
#define ldap_search_ext_s (*dl_ldap_search_ext_s)
#define ldap_set_option (*dl_ldap_set_option)
#define ldap_start_tls_s (*dl_ldap_start_tls_s)
#define ldap_unbind_ext_s (*dl_ldap_unbind_ext_s)
#define ldap_url_parse (*dl_ldap_url_parse)
#define ldap_value_free_len (*dl_ldap_value_free_len)

struct ldap_table {
    char *spec;
    struct db_cf *cf;
    char *uris;                      /* space-separated LDAP URLs */
    const char *search_base, *query_filter, *result_format;
    const char *bind_dn, *bind_pw;
    char **result_attr, **special_attr, **terminal_attr, **leaf_attr;
    char **all_attr;                 /* what every search asks for */
    int scope, bind, version, start_tls, chase_referrals, deref;
    long timeout, size_limit, recursion_limit, expansion_limit;
    struct db_domains *domains;
    LDAP *ld;
};

/* --- attribute lists --- */

static char **attr_list(const char *text)
{
    char **items, **out;
    long n = text ? lookup_split_tokens(text, &items) : 0;

    if (n < 0)
        n = 0;
    out = lookup_xmalloc(((size_t)n + 1) * sizeof(char *));
    for (long i = 0; i < n; i++)
        out[i] = lookup_xstrdup(items[i]);
    out[n] = NULL;
    if (n > 0)
        lookup_free_tokens(items, n);
    return out;
}

static void attr_free(char **list)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        free(list[i]);
    free(list);
}

static int attr_in(char **list, const char *name)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcasecmp(list[i], name) == 0)
            return 1;
    return 0;
}

static char **attr_union(char **lists[], int nlists)
{
    size_t total = 1, k = 0;
    char **out;

    for (int i = 0; i < nlists; i++)
        for (size_t j = 0; lists[i][j] != NULL; j++)
            total++;
    out = lookup_xmalloc(total * sizeof(char *));
    for (int i = 0; i < nlists; i++)
        for (size_t j = 0; lists[i][j] != NULL; j++) {
            out[k] = NULL;
            if (!attr_in(out, lists[i][j]))
                out[k++] = lookup_xstrdup(lists[i][j]);
        }
    out[k] = NULL;
    return out;
}

/* --- quoting --- */

/* RFC 4515: the characters that mean something in a filter, as \XX. */
static void quote_filter(void *ctx, const char *s, size_t n, struct strbuf *out)
{
    char hex[4];

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '*' || c == '(' || c == ')' || c == '\\' || c == 0) {
            snprintf(hex, sizeof(hex), "\\%02x", c);
            strbuf_add(out, hex, 3);
        } else {
            strbuf_add(out, s + i, 1);
        }
    }
}

/* RFC 4514: the characters that mean something in a DN, escaped. */
static void quote_dn(void *ctx, const char *s, size_t n, struct strbuf *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (strchr(",+\"\\<>;=", c) != NULL || (i == 0 && (c == ' ' || c == '#'))
            || (i == n - 1 && c == ' '))
            strbuf_add(out, "\\", 1);
        strbuf_add(out, s + i, 1);
    }
}

/* --- the file --- */

static int ldap_scope_of(const char *s)
{
    if (strcasecmp(s, "sub") == 0)
        return LDAP_SCOPE_SUBTREE;
    if (strcasecmp(s, "one") == 0)
        return LDAP_SCOPE_ONELEVEL;
    if (strcasecmp(s, "base") == 0)
        return LDAP_SCOPE_BASE;
    return -1;
}

/* server_host items as URLs: "host" and "host:port" get ldap:// and
 * server_port. */
static char *ldap_uris(const char *hosts, long port)
{
    struct strbuf b = {0};
    char **items, num[32];
    long n = lookup_split_tokens(hosts, &items);

    strbuf_add(&b, "", 0);
    for (long i = 0; i < n; i++) {
        if (b.len > 0)
            strbuf_add(&b, " ", 1);
        if (strstr(items[i], "://") != NULL) {
            strbuf_add(&b, items[i], strlen(items[i]));
            continue;
        }
        strbuf_add(&b, "ldap://", 7);
        strbuf_add(&b, items[i], strlen(items[i]));
        if (strchr(items[i], ':') == NULL) {
            snprintf(num, sizeof(num), ":%ld", port);
            strbuf_add(&b, num, strlen(num));
        }
    }
    if (n > 0)
        lookup_free_tokens(items, n);
    return b.s;
}

static int ldap_bind_mode(const char *s)
{
    if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "simple") == 0)
        return 1;
    if (strcasecmp(s, "no") == 0 || strcasecmp(s, "none") == 0)
        return 0;
    return -1;
}

static int ldap_read_options(struct ldap_table *t, char *why, size_t whylen)
{
    const struct db_cf *cf = t->cf;
    long port;
    char **lists[4];

    if ((port = db_cf_long(cf, "server_port", 389, 1, 65535, why, whylen)) < 0)
        return -1;
    t->uris = ldap_uris(db_cf_str(cf, "server_host", "localhost"), port);
    t->search_base = db_cf_str(cf, "search_base", "");
    t->query_filter = db_cf_str(cf, "query_filter", "mailacceptinggeneralid=%s");
    t->result_format = db_cf_str(cf, "result_format", db_cf_str(cf, "result_filter", "%s"));
    if (db_template_check(t->search_base, why, whylen) < 0
        || db_template_check(t->query_filter, why, whylen) < 0
        || db_template_check(t->result_format, why, whylen) < 0)
        return -1;
    t->result_attr = attr_list(db_cf_str(cf, "result_attribute", "maildrop"));
    t->special_attr = attr_list(db_cf_str(cf, "special_result_attribute", ""));
    t->terminal_attr = attr_list(db_cf_str(cf, "terminal_result_attribute", ""));
    t->leaf_attr = attr_list(db_cf_str(cf, "leaf_result_attribute", ""));
    lists[0] = t->result_attr, lists[1] = t->special_attr, lists[2] = t->terminal_attr;
    lists[3] = t->leaf_attr;
    t->all_attr = attr_union(lists, 4);
    if ((t->scope = ldap_scope_of(db_cf_str(cf, "scope", "sub"))) < 0) {
        lookup_set_err(why, whylen, "bad scope \"%s\": need sub, one or base",
                       db_cf_str(cf, "scope", ""));
        return -1;
    }
    if ((t->bind = ldap_bind_mode(db_cf_str(cf, "bind", "yes"))) < 0) {
        lookup_set_err(why, whylen, "bind = %s is not supported (yes, simple, no, none)",
                       db_cf_str(cf, "bind", ""));
        return -1;
    }
    t->bind_dn = db_cf_str(cf, "bind_dn", "");
    t->bind_pw = db_cf_str(cf, "bind_pw", "");
    if ((t->version = (int)db_cf_long(cf, "version", 3, 2, 3, why, whylen)) < 0
        || (t->start_tls = db_cf_bool(cf, "start_tls", 0, why, whylen)) < 0
        || (t->chase_referrals = db_cf_bool(cf, "chase_referrals", 0, why, whylen)) < 0
        || (t->deref = (int)db_cf_long(cf, "dereference", 0, 0, 3, why, whylen)) < 0
        || (t->timeout = db_cf_long(cf, "timeout", lookup_timeout(), 1, 3600, why, whylen)) < 0
        || (t->expansion_limit = db_cf_long(cf, "expansion_limit", 0, 0, 1000000, why,
                                            whylen)) < 0
        || (t->size_limit = db_cf_long(cf, "size_limit", t->expansion_limit, 0, 1000000, why,
                                       whylen)) < 0
        || (t->recursion_limit = db_cf_long(cf, "recursion_limit", 1000, 1, 1000000, why,
                                            whylen)) < 0)
        return -1;
    t->domains = db_domains_open(db_cf_str(cf, "domain", NULL), why, whylen);
    if (t->domains == NULL && db_cf_str(cf, "domain", NULL) != NULL && why[0] != 0)
        return -1;
    return 0;
}

/* --- the connection --- */

static void ldap_table_disconnect(struct ldap_table *t)
{
    if (t->ld != NULL)
        ldap_unbind_ext_s(t->ld, NULL, NULL);
    t->ld = NULL;
}

static int ldap_fail(struct ldap_table *t, const char *what, int rc)
{
    msg_warn("table %s: %s: %s", t->spec, what, ldap_err2string(rc));
    ldap_table_disconnect(t);
    return -1;
}

/* Connect, set time-outs, TLS, bind. 0, or -1 (logged). */
static int ldap_table_connect(struct ldap_table *t)
{
    struct timeval tv = {.tv_sec = t->timeout};
    int rc, ref = t->chase_referrals ? 1 : 0;

    if ((rc = ldap_initialize(&t->ld, t->uris)) != LDAP_SUCCESS)
        return ldap_fail(t, "ldap_initialize", rc);
    ldap_set_option(t->ld, LDAP_OPT_PROTOCOL_VERSION, &t->version);
    ldap_set_option(t->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(t->ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(t->ld, LDAP_OPT_REFERRALS, ref ? LDAP_OPT_ON : LDAP_OPT_OFF);
    ldap_set_option(t->ld, LDAP_OPT_DEREF, &t->deref);
    if (t->start_tls && (rc = ldap_start_tls_s(t->ld, NULL, NULL)) != LDAP_SUCCESS)
        return ldap_fail(t, "start_tls", rc);
    if (t->bind) {
        struct berval cred = {.bv_len = strlen(t->bind_pw), .bv_val = (char *)t->bind_pw};
        rc = ldap_sasl_bind_s(t->ld, t->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS)
            return ldap_fail(t, "bind", rc);
    }
    return 0;
}

/* --- searching --- */

struct ldap_walk {
    const char *key;
    struct db_result *result;
    long depth;
};

static int ldap_search_expand(struct ldap_table *t, struct ldap_walk *w, const char *base,
                              int scope, const char *filter);

static void add_values(struct ldap_table *t, LDAPMessage *e, const char *attr,
                       struct db_result *r)
{
    struct berval **vals = ldap_get_values_len(t->ld, e, attr);

    for (int i = 0; vals != NULL && vals[i] != NULL; i++)
        db_result_add(r, vals[i]->bv_val, vals[i]->bv_len);
    ldap_value_free_len(vals);
}

static int has_attr(struct ldap_table *t, LDAPMessage *e, char **list)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        struct berval **vals = ldap_get_values_len(t->ld, e, list[i]);
        int any = vals != NULL && vals[0] != NULL;
        ldap_value_free_len(vals);
        if (any)
            return 1;
    }
    return 0;
}

/* Follow the DNs or URLs of a special attribute. -1 on a failed search. */
static int follow_special(struct ldap_table *t, struct ldap_walk *w, LDAPMessage *e,
                          const char *attr)
{
    struct berval **vals = ldap_get_values_len(t->ld, e, attr);
    int rc = 0;

    for (int i = 0; rc == 0 && vals != NULL && vals[i] != NULL; i++) {
        char *v = lookup_xstrndup(vals[i]->bv_val, vals[i]->bv_len);
        LDAPURLDesc *url = NULL;
        if (ldap_is_ldap_url(v) && ldap_url_parse(v, &url) == LDAP_URL_SUCCESS) {
            rc = ldap_search_expand(t, w, url->lud_dn ? url->lud_dn : "",
                                    url->lud_scope >= 0 ? url->lud_scope : LDAP_SCOPE_BASE,
                                    url->lud_filter ? url->lud_filter : "(objectClass=*)");
            ldap_free_urldesc(url);
        } else {
            rc = ldap_search_expand(t, w, v, LDAP_SCOPE_BASE, "(objectClass=*)");
        }
        free(v);
    }
    ldap_value_free_len(vals);
    return rc;
}

/* The values one entry contributes, attribute by attribute in the order
 * the server sent them (Postfix's order): only terminal attributes when
 * the entry has one; else result attributes, leaf attributes unless the
 * entry has special ones, and the entries special attributes point to. */
static int expand_entry(struct ldap_table *t, struct ldap_walk *w, LDAPMessage *e)
{
    int terminal = t->terminal_attr[0] != NULL && has_attr(t, e, t->terminal_attr);
    int specials = !terminal && t->special_attr[0] != NULL && has_attr(t, e, t->special_attr);
    BerElement *ber = NULL;
    int rc = 0;

    for (char *a = ldap_first_attribute(t->ld, e, &ber); a != NULL;
         a = rc == 0 ? ldap_next_attribute(t->ld, e, ber) : NULL) {
        if (terminal) {
            if (attr_in(t->terminal_attr, a))
                add_values(t, e, a, w->result);
        } else if (attr_in(t->result_attr, a) || (!specials && attr_in(t->leaf_attr, a))) {
            add_values(t, e, a, w->result);
        } else if (attr_in(t->special_attr, a)) {
            rc = follow_special(t, w, e, a);
        }
        ldap_memfree(a);
    }
    ber_free(ber, 0);
    return rc;
}

/* One search and the expansion of its entries. 0, 1 for "no such base"
 * (nothing found), -1 (logged). */
static int ldap_search_expand(struct ldap_table *t, struct ldap_walk *w, const char *base,
                              int scope, const char *filter)
{
    struct timeval tv = {.tv_sec = t->timeout};
    LDAPMessage *res = NULL, *e;
    int rc;

    if (++w->depth > t->recursion_limit) {
        msg_warn("table %s: lookup of \"%.100s\": recursion_limit %ld exceeded", t->spec,
                 w->key, t->recursion_limit);
        return -1;
    }
    rc = ldap_search_ext_s(t->ld, base, scope, filter, t->all_attr, 0, NULL, NULL, &tv,
                           (int)t->size_limit, &res);
    if (rc == LDAP_NO_SUCH_OBJECT) {
        ldap_msgfree(res);
        w->depth--;
        return 1;
    }
    if (rc != LDAP_SUCCESS) {
        ldap_msgfree(res);
        msg_warn("table %s: search of \"%.100s\" under \"%.100s\": %s", t->spec, filter, base,
                 ldap_err2string(rc));
        return -1;
    }
    for (e = ldap_first_entry(t->ld, res); e != NULL && rc == 0; e = ldap_next_entry(t->ld, e))
        rc = expand_entry(t, w, e);
    ldap_msgfree(res);
    w->depth--;
    return rc < 0 ? -1 : 0;
}

/* The search for key on the current connection: a LOOKUP_ code, or -2
 * when the connection failed (retry on a new one). */
static int ldap_lookup_once(struct ldap_table *t, const char *key, const char *base,
                            const char *filter, char **value)
{
    struct db_result r = {.format = t->result_format, .key = key, .limit = t->expansion_limit};
    struct ldap_walk w = {.key = key, .result = &r};
    int rc;

    if (t->ld == NULL && ldap_table_connect(t) < 0)
        return LOOKUP_TEMPFAIL;
    rc = ldap_search_expand(t, &w, base, t->scope, filter);
    if (rc < 0) {
        strbuf_free(&r.out);
        ldap_table_disconnect(t);
        return -2;
    }
    if (r.overflow) {
        msg_warn("table %s: lookup of \"%.100s\": result exceeds expansion_limit %ld", t->spec,
                 key, t->expansion_limit);
        strbuf_free(&r.out);
        return LOOKUP_TEMPFAIL;
    }
    if (r.count == 0) {
        strbuf_free(&r.out);
        return LOOKUP_NOTFOUND;
    }
    *value = r.out.s;
    return LOOKUP_FOUND;
}

static int ldap_lookup(struct ldap_table *t, const char *key, char **value);

/* Keys are folded to lower case, as Postfix folds them for LDAP tables. */
static int ldap_table_get(void *state, const char *key, char **value)
{
    char *folded = lookup_fold_key(key);
    int r;

    if (folded == NULL)
        return LOOKUP_NOTFOUND;
    r = ldap_lookup(state, folded, value);
    free(folded);
    return r;
}

static int ldap_lookup(struct ldap_table *t, const char *key, char **value)
{
    struct strbuf base = {0}, filter = {0};
    int allow, r = LOOKUP_NOTFOUND, reused = t->ld != NULL;

    if (strlen(key) > LOOKUP_KEY_MAX)
        return LOOKUP_NOTFOUND;
    if ((allow = db_domains_allow(t->domains, key)) <= 0)
        return allow < 0 ? LOOKUP_TEMPFAIL : LOOKUP_NOTFOUND;
    if (db_key_fits_result(t->result_format, key)
        && db_expand_query(t->search_base, key, quote_dn, NULL, &base)
        && db_expand_query(t->query_filter, key, quote_filter, NULL, &filter)) {
        r = ldap_lookup_once(t, key, base.s, filter.s, value);
        if (r == -2 && reused)
            r = ldap_lookup_once(t, key, base.s, filter.s, value);
        if (r == -2)
            r = LOOKUP_TEMPFAIL;
    }
    strbuf_free(&base);
    strbuf_free(&filter);
    return r;
}

static void ldap_table_close(void *state)
{
    struct ldap_table *t = state;

    ldap_table_disconnect(t);
    attr_free(t->result_attr);
    attr_free(t->special_attr);
    attr_free(t->terminal_attr);
    attr_free(t->leaf_attr);
    attr_free(t->all_attr);
    db_domains_close(t->domains);
    db_cf_free(t->cf);
    free(t->uris);
    free(t->spec);
    free(t);
}

static int ldap_load(char *err, size_t errlen)
{
    static void *libldap;
    static const struct dynlib_sym syms[] = {LDAP_FUNCS(DYNLIB_ENTRY)};

    return dynlib_load(&libldap, SONAME_LDAP, syms, sizeof(syms) / sizeof(syms[0]), err, errlen);
}

static int ldap_table_open(const char *spec, const char *name, void **state, char *err,
                         size_t errlen)
{
    if (ldap_load(err, errlen) < 0)
        return -1;
    struct ldap_table *t = lookup_xmalloc(sizeof(*t));
    char why[512] = "";

    memset(t, 0, sizeof(*t));
    t->spec = lookup_xstrdup(spec);
    if (name[0] != '/' && name[0] != '.') {
        lookup_set_err(err, errlen, "table %s: need the path of an ldap query file", spec);
        ldap_table_close(t);
        return -1;
    }
    if ((t->cf = db_cf_read(name, why, sizeof(why))) == NULL
        || ldap_read_options(t, why, sizeof(why)) < 0) {
        lookup_set_err(err, errlen, "table %s: %s", spec, why);
        ldap_table_close(t);
        return -1;
    }
    *state = t;
    return 0;
}

const struct lookup_type lookup_type_ldap = {
    .open = ldap_table_open,
    .get = ldap_table_get,
    .close = ldap_table_close,
    .may_block = 1,
    .load = ldap_load,
};
