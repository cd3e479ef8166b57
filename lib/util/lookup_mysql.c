/* lookup_mysql.c - the mysql: table type (mysql_table(5)): mysql:/path
 * names a query file (hosts, user, password, dbname, query, ...; see
 * lookup_db.h and lookup_sql.c for what every SQL table shares). This file
 * is the MariaDB client library's part: connecting with time-outs,
 * quoting, running a query and reading its rows. One of the table types
 * of lookup.c (lookup_type.h).
 *
 * Connect, read and write time-outs are lookup_timeout; the [client]
 * option group of my.cnf is read unless option_group is empty, as Postfix
 * 3.2 and later do (option_file names another file).
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_sql.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "dynlib.h"

/* libmariadb is loaded on the first mysql: table (dynlib.h). */
#define MYSQL_FUNCS(X) X(mysql_close) X(mysql_errno) X(mysql_error) X(mysql_fetch_lengths) \
    X(mysql_fetch_row) X(mysql_field_count) X(mysql_free_result) X(mysql_init) \
    X(mysql_server_init) X(mysql_next_result) X(mysql_num_fields) X(mysql_options) \
    X(mysql_real_connect) X(mysql_real_escape_string) X(mysql_real_query) X(mysql_ssl_set) \
    X(mysql_store_result)
MYSQL_FUNCS(DYNLIB_DECLARE)
#define mysql_close (*dl_mysql_close)
#define mysql_errno (*dl_mysql_errno)
#define mysql_error (*dl_mysql_error)
#define mysql_fetch_lengths (*dl_mysql_fetch_lengths)
#define mysql_fetch_row (*dl_mysql_fetch_row)
#define mysql_field_count (*dl_mysql_field_count)
#define mysql_free_result (*dl_mysql_free_result)
#define mysql_init (*dl_mysql_init)
#define mysql_server_init (*dl_mysql_server_init)
#define mysql_next_result (*dl_mysql_next_result)
#define mysql_num_fields (*dl_mysql_num_fields)
#define mysql_options (*dl_mysql_options)
#define mysql_real_connect (*dl_mysql_real_connect)
#define mysql_real_escape_string (*dl_mysql_real_escape_string)
#define mysql_real_query (*dl_mysql_real_query)
#define mysql_ssl_set (*dl_mysql_ssl_set)
#define mysql_store_result (*dl_mysql_store_result)

static void mysql_set_options(MYSQL *m, const struct db_cf *cf)
{
    unsigned int secs = (unsigned int)lookup_timeout();
    const char *file = db_cf_str(cf, "option_file", NULL);
    const char *group = db_cf_str(cf, "option_group", "client");

    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &secs);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &secs);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &secs);
    if (file != NULL && *file != 0)
        mysql_options(m, MYSQL_READ_DEFAULT_FILE, file);
    if (*group != 0)
        mysql_options(m, MYSQL_READ_DEFAULT_GROUP, group);
    if (db_cf_str(cf, "tls_CAfile", NULL) != NULL || db_cf_str(cf, "tls_cert_file", NULL) != NULL)
        mysql_ssl_set(m, db_cf_str(cf, "tls_key_file", NULL), db_cf_str(cf, "tls_cert_file", NULL),
                      db_cf_str(cf, "tls_CAfile", NULL), db_cf_str(cf, "tls_CApath", NULL),
                      db_cf_str(cf, "tls_ciphers", NULL));
}

/* The client library's global set-up, once per process before any thread
 * makes a connection (smtpd runs lookups on worker threads). */
static void mysql_global_init(void)
{
    mysql_library_init(0, NULL, NULL);
}

static void *mysql_connect(const struct db_cf *cf, const struct db_host *h, char *err,
                           size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    MYSQL *m;

    pthread_once(&once, mysql_global_init);
    m = mysql_init(NULL);
    unsigned port = h->port ? (unsigned)strtoul(h->port, NULL, 10) : 0;

    if (m == NULL) {
        lookup_set_err(err, errlen, "out of memory");
        return NULL;
    }
    mysql_set_options(m, cf);
    if (mysql_real_connect(m, h->path ? "localhost" : h->host, db_cf_str(cf, "user", NULL),
                           db_cf_str(cf, "password", NULL), db_cf_str(cf, "dbname", NULL), port,
                           h->path, CLIENT_MULTI_RESULTS) == NULL) {
        lookup_set_err(err, errlen, "%s", mysql_error(m));
        mysql_close(m);
        return NULL;
    }
    return m;
}

static void mysql_disconnect(void *conn)
{
    mysql_close(conn);
}

static void mysql_quote(void *conn, const char *s, size_t n, struct strbuf *out)
{
    char *q = lookup_xmalloc(n * 2 + 1);
    unsigned long len = mysql_real_escape_string(conn, q, s, (unsigned long)n);

    strbuf_add(out, q, len);
    free(q);
}

/* Drain further result sets (a stored procedure's status); -1 on error. */
static int mysql_drain(MYSQL *m)
{
    int rc;

    while ((rc = mysql_next_result(m)) == 0) {
        MYSQL_RES *more = mysql_store_result(m);
        if (more != NULL)
            mysql_free_result(more);
    }
    return rc > 0 ? -1 : 0;
}

static int mysql_query_rows(void *conn, const char *sql, struct db_result *r, char *err,
                            size_t errlen)
{
    MYSQL *m = conn;
    MYSQL_RES *res;
    MYSQL_ROW row;

    if (mysql_real_query(m, sql, (unsigned long)strlen(sql)) != 0)
        goto fail;
    if ((res = mysql_store_result(m)) == NULL) {
        /* A connection lost while the result came in leaves no field
         * count behind, only the error: never "no result set", which
         * require_result_set = no would turn into "not found". */
        if (mysql_field_count(m) != 0 || mysql_errno(m) != 0)
            goto fail;
        return mysql_drain(m) < 0 ? (lookup_set_err(err, errlen, "%s", mysql_error(m)), -1) : 1;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        unsigned long *len = mysql_fetch_lengths(res);
        for (unsigned i = 0; i < mysql_num_fields(res); i++)
            if (row[i] != NULL)
                db_result_add(r, row[i], len[i]);
    }
    mysql_free_result(res);
    if (mysql_drain(m) < 0)
        goto fail;
    return 0;
fail:
    lookup_set_err(err, errlen, "%s", mysql_error(m));
    return -1;
}

static const struct sql_backend mysql_backend = {
    .name = "mysql",
    .default_port = "3306",
    .connect = mysql_connect,
    .disconnect = mysql_disconnect,
    .quote = mysql_quote,
    .query = mysql_query_rows,
};

static int mysql_load(char *err, size_t errlen)
{
    static void *libmariadb;
    static const struct dynlib_sym syms[] = {MYSQL_FUNCS(DYNLIB_ENTRY)};

    return dynlib_load(&libmariadb, SONAME_MARIADB, syms, sizeof(syms) / sizeof(syms[0]), err, errlen);
}

static int mysql_table_open(const char *spec, const char *name, void **state, char *err,
                         size_t errlen)
{
    if (mysql_load(err, errlen) < 0)
        return -1;
    return sql_table_open(&mysql_backend, spec, name, state, err, errlen);
}

const struct lookup_type lookup_type_mysql = {
    .open = mysql_table_open,
    .get = sql_table_get,
    .close = sql_table_close,
    .may_block = 1,
    .load = mysql_load,
};
