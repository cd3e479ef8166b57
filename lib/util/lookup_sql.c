/* lookup_sql.c - the engine of the SQL table types (lookup_sql.h): one
 * lookup is domain check, template expansion with the back end's quoting,
 * the query on the current connection, and on a failure the next host.
 *
 * A server that is down or fails a query is a temporary failure with a
 * warning; nothing is cached, so the first lookup after the server is back
 * reconnects and works. Hosts that failed are tried after the others for
 * retry_interval seconds (default 60).
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_sql.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sql_table {
    const struct sql_backend *be;
    char *spec;
    struct db_cf *cf;
    char *query;                   /* the template */
    const char *result_format;
    long expansion_limit, retry_interval;
    int require_result_set;
    struct db_domains *domains;
    struct db_host *hosts;
    int nhosts;
    int current;                   /* host of conn, or -1 */
    void *conn;
};

static void sql_disconnect(struct sql_table *t)
{
    if (t->conn != NULL)
        t->be->disconnect(t->conn);
    t->conn = NULL;
    t->current = -1;
}

void sql_table_close(void *state)
{
    struct sql_table *t = state;

    sql_disconnect(t);
    db_domains_close(t->domains);
    db_hosts_free(t->hosts, t->nhosts);
    db_cf_free(t->cf);
    free(t->query);
    free(t->spec);
    free(t);
}

static int sql_read_options(struct sql_table *t, char *why, size_t whylen)
{
    const char *q = db_cf_str(t->cf, "query", NULL);

    t->query = q != NULL ? lookup_xstrdup(q) : db_legacy_query(t->cf, why, whylen);
    if (t->query == NULL || db_template_check(t->query, why, whylen) < 0)
        return -1;
    t->result_format = db_cf_str(t->cf, "result_format", "%s");
    if (db_template_check(t->result_format, why, whylen) < 0)
        return -1;
    if ((t->expansion_limit = db_cf_long(t->cf, "expansion_limit", 0, 0, 1000000, why,
                                         whylen)) < 0
        || (t->retry_interval = db_cf_long(t->cf, "retry_interval", 60, 0, 86400, why,
                                           whylen)) < 0
        || (t->require_result_set = db_cf_bool(t->cf, "require_result_set", 1, why,
                                               whylen)) < 0)
        return -1;
    t->domains = db_domains_open(db_cf_str(t->cf, "domain", NULL), why, whylen);
    if (t->domains == NULL && db_cf_str(t->cf, "domain", NULL) != NULL && why[0] != 0)
        return -1;
    if (t->be->local_file) {
        const char *path = db_cf_str(t->cf, "dbpath", NULL);
        if (path == NULL) {
            lookup_set_err(why, whylen, "need \"dbpath\"");
            return -1;
        }
        t->hosts = lookup_xmalloc(sizeof(*t->hosts));
        memset(t->hosts, 0, sizeof(*t->hosts));
        t->hosts->text = lookup_xstrdup(path);
        t->hosts->path = lookup_xstrdup(path);
        t->nhosts = 1;
        return 0;
    }
    t->nhosts = db_hosts_parse(db_cf_str(t->cf, "hosts", "localhost"), t->be->default_port,
                               &t->hosts, why, whylen);
    return t->nhosts < 0 ? -1 : 0;
}

/* The file is read at open: a table that cannot work is refused at once,
 * as a main.cf syntax error is. */
int sql_table_open(const struct sql_backend *be, const char *spec, const char *name,
                   void **state, char *err, size_t errlen)
{
    struct sql_table *t = lookup_xmalloc(sizeof(*t));
    char why[512] = "";

    memset(t, 0, sizeof(*t));
    t->be = be;
    t->current = -1;
    t->spec = lookup_xstrdup(spec);
    if (name[0] != '/' && name[0] != '.') {
        lookup_set_err(err, errlen, "table %s: need the path of a %s query file", spec,
                       be->name);
        sql_table_close(t);
        return -1;
    }
    if ((t->cf = db_cf_read(name, why, sizeof(why))) == NULL || sql_read_options(t, why,
                                                                                 sizeof(why)) < 0) {
        lookup_set_err(err, errlen, "table %s: %s", spec, why);
        if (t->nhosts < 0)
            t->nhosts = 0;
        sql_table_close(t);
        return -1;
    }
    *state = t;
    return 0;
}

static void sql_quote(void *ctx, const char *s, size_t n, struct strbuf *out)
{
    struct sql_table *t = ctx;

    t->be->quote(t->conn, s, n, out);
}

/* Connect to host i when not already on it. 0, or -1 (logged). */
static int sql_use_host(struct sql_table *t, int i)
{
    char err[512] = "";

    if (t->conn != NULL && t->current == i)
        return 0;
    sql_disconnect(t);
    if ((t->conn = t->be->connect(t->cf, &t->hosts[i], err, sizeof(err))) == NULL) {
        msg_warn("connect to %s server %s: %s", t->be->name, t->hosts[i].text, err);
        t->hosts[i].retry_after = time(NULL) + t->retry_interval;
        return -1;
    }
    t->current = i;
    t->hosts[i].retry_after = 0;
    return 0;
}

/* The query on host i: a LOOKUP_ code, or -2 to try the next host. */
static int sql_query_on(struct sql_table *t, int i, const char *key, char **value)
{
    struct strbuf sql = {0};
    struct db_result r = {.format = t->result_format, .key = key, .limit = t->expansion_limit};
    char err[512] = "";
    int rc;

    int reused = t->conn != NULL && t->current == i;

    if (sql_use_host(t, i) < 0)
        return -2;
    if (!db_expand_query(t->query, key, sql_quote, t, &sql)) {
        strbuf_free(&sql);
        return LOOKUP_NOTFOUND;
    }
    rc = t->be->query(t->conn, sql.s, &r, err, sizeof(err));
    if (rc < 0 && reused) {
        /* A kept connection may have been closed by the server (idle
         * time-out, restart): one new connection before giving up. */
        msg_warn("%s query failed on %s: %s; reconnecting", t->be->name, t->hosts[i].text, err);
        sql_disconnect(t);
        strbuf_free(&r.out);
        memset(&r.out, 0, sizeof(r.out));
        r.count = 0;
        r.overflow = 0;
        if (sql_use_host(t, i) < 0) {
            strbuf_free(&sql);
            return -2;
        }
        rc = t->be->query(t->conn, sql.s, &r, err, sizeof(err));
    }
    strbuf_free(&sql);
    if (rc < 0) {
        msg_warn("%s query failed on %s: %s", t->be->name, t->hosts[i].text, err);
        sql_disconnect(t);
        t->hosts[i].retry_after = time(NULL) + t->retry_interval;
        strbuf_free(&r.out);
        return -2;
    }
    if (rc == 1 && t->require_result_set) {
        msg_warn("table %s: query returned no result set; set require_result_set = no to "
                 "accept that", t->spec);
        return LOOKUP_TEMPFAIL;
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

/* The lookup of a folded key. */
static int sql_lookup(struct sql_table *t, const char *key, char **value)
{
    int order[t->nhosts + 1], n, allow;

    if ((allow = db_domains_allow(t->domains, key)) <= 0)
        return allow < 0 ? LOOKUP_TEMPFAIL : LOOKUP_NOTFOUND;
    if (!db_key_fits_result(t->result_format, key))
        return LOOKUP_NOTFOUND;
    n = db_hosts_order(t->hosts, t->nhosts, t->current, order);
    for (int k = 0; k < n; k++) {
        int r = sql_query_on(t, order[k], key, value);
        if (r != -2)
            return r;
    }
    msg_warn("table %s: lookup of \"%.100s\" failed: no server answered", t->spec, key);
    return LOOKUP_TEMPFAIL;
}

/* Keys are folded to lower case, as Postfix folds them for SQL tables. */
int sql_table_get(void *state, const char *key, char **value)
{
    char *folded = lookup_fold_key(key);
    int r;

    if (folded == NULL)
        return LOOKUP_NOTFOUND;
    r = sql_lookup(state, folded, value);
    free(folded);
    return r;
}
