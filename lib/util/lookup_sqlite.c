/* lookup_sqlite.c - the sqlite: table type (sqlite_table(5)):
 * sqlite:/path names a query file whose dbpath is the database (query,
 * result_format, domain, expansion_limit as for every SQL table, see
 * lookup_sql.c). This file is libsqlite3's part: the database opened read
 * only, quoting, and reading rows. One of the table types of lookup.c
 * (lookup_type.h).
 *
 * A busy database is waited for at most lookup_timeout; a missing or
 * unreadable one is a temporary failure, retried on the next lookup.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_sql.h"

#include <string.h>

#include <sqlite3.h>

#include "dynlib.h"

/* libsqlite3 is loaded on the first sqlite: table (dynlib.h). */
#define SQLITE_FUNCS(X) X(sqlite3_busy_timeout) X(sqlite3_close) X(sqlite3_column_bytes) \
    X(sqlite3_column_count) X(sqlite3_column_text) X(sqlite3_errmsg) X(sqlite3_finalize) \
    X(sqlite3_open_v2) X(sqlite3_prepare_v2) X(sqlite3_step)
SQLITE_FUNCS(DYNLIB_DECLARE)
#define sqlite3_busy_timeout (*dl_sqlite3_busy_timeout)
#define sqlite3_close (*dl_sqlite3_close)
#define sqlite3_column_bytes (*dl_sqlite3_column_bytes)
#define sqlite3_column_count (*dl_sqlite3_column_count)
#define sqlite3_column_text (*dl_sqlite3_column_text)
#define sqlite3_errmsg (*dl_sqlite3_errmsg)
#define sqlite3_finalize (*dl_sqlite3_finalize)
#define sqlite3_open_v2 (*dl_sqlite3_open_v2)
#define sqlite3_prepare_v2 (*dl_sqlite3_prepare_v2)
#define sqlite3_step (*dl_sqlite3_step)

static void *sqlite_connect(const struct db_cf *cf, const struct db_host *h, char *err,
                            size_t errlen)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(h->path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        lookup_set_err(err, errlen, "%s", db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, lookup_timeout() * 1000);
    return db;
}

static void sqlite_disconnect(void *conn)
{
    sqlite3_close(conn);
}

/* A string literal's content: every ' doubled. */
static void sqlite_quote(void *conn, const char *s, size_t n, struct strbuf *out)
{
    for (size_t i = 0; i < n; i++) {
        strbuf_add(out, s + i, 1);
        if (s[i] == '\'')
            strbuf_add(out, "'", 1);
    }
}

static int sqlite_query_rows(void *conn, const char *sql, struct db_result *r, char *err,
                             size_t errlen)
{
    sqlite3 *db = conn;
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        lookup_set_err(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *v = sqlite3_column_text(st, i);
            if (v != NULL)
                db_result_add(r, (const char *)v, (size_t)sqlite3_column_bytes(st, i));
        }
    }
    if (rc != SQLITE_DONE) {
        lookup_set_err(err, errlen, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

static const struct sql_backend sqlite_backend = {
    .name = "sqlite",
    .local_file = 1,
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .quote = sqlite_quote,
    .query = sqlite_query_rows,
};

static int sqlite_load(char *err, size_t errlen)
{
    static void *libsqlite;
    static const struct dynlib_sym syms[] = {SQLITE_FUNCS(DYNLIB_ENTRY)};

    return dynlib_load(&libsqlite, SONAME_SQLITE, syms, sizeof(syms) / sizeof(syms[0]), err, errlen);
}

static int sqlite_table_open(const char *spec, const char *name, void **state, char *err,
                         size_t errlen)
{
    if (sqlite_load(err, errlen) < 0)
        return -1;
    return sql_table_open(&sqlite_backend, spec, name, state, err, errlen);
}

const struct lookup_type lookup_type_sqlite = {
    .open = sqlite_table_open,
    .get = sql_table_get,
    .close = sql_table_close,
    .load = sqlite_load,
};
