/* lookup_sql.h - the SQL table engine that mysql:, pgsql: and sqlite:
 * share (lookup_sql.c): the query file, the domain restriction, the query
 * template and its quoting, result formatting and expansion_limit, and
 * failover between "hosts" with reconnection after a failure. A back end
 * supplies only connecting, quoting and running one query. Internal to
 * the lookup module.
 */
#ifndef POSTERN_LOOKUP_SQL_H
#define POSTERN_LOOKUP_SQL_H

#include "lookup_db.h"

struct sql_backend {
    const char *name;              /* "mysql", for messages */
    const char *default_port;
    /* The file names one database file (dbpath) instead of hosts. */
    int local_file;
    /* Connect to h (local_file: h->path is dbpath). A connection, or NULL
     * with err set. cf is the whole query file for back-end options. */
    void *(*connect)(const struct db_cf *cf, const struct db_host *h, char *err, size_t errlen);
    void (*disconnect)(void *conn);
    /* Quote [s, s+n) for a string literal of this SQL dialect. */
    void (*quote)(void *conn, const char *s, size_t n, struct strbuf *out);
    /* Run sql and pass every non-NULL value of every row to
     * db_result_add(r, ...). 0, 1 when the statement returned no result
     * set, or -1 with err set (the connection is then dropped and the
     * next host tried). */
    int (*query)(void *conn, const char *sql, struct db_result *r, char *err, size_t errlen);
};

int sql_table_open(const struct sql_backend *be, const char *spec, const char *name,
                   void **state, char *err, size_t errlen);
int sql_table_get(void *state, const char *key, char **value);
void sql_table_close(void *state);

#endif
