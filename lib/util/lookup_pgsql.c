/* lookup_pgsql.c - the pgsql: table type (pgsql_table(5)): pgsql:/path
 * names a query file (hosts, user, password, dbname, query, ...; what
 * every SQL table shares is lookup_sql.c's). This file is libpq's part:
 * connecting and querying through libpq's non-blocking interface, so both
 * wait at most lookup_timeout even when the server stops answering, and
 * quoting. One of the table types of lookup.c (lookup_type.h).
 *
 * hosts: "postgresql://..." URIs as libpq reads them, "unix:/dir" (or the
 * socket file "/dir/.s.PGSQL.PORT"), "inet:host:port", "host:port", "host".
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_sql.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "dynlib.h"

/* libpq is loaded on the first pgsql: table (dynlib.h). */
#define PQ_FUNCS(X) X(PQclear) X(PQconnectPoll) X(PQconnectStartParams) X(PQconsumeInput) \
    X(PQerrorMessage) X(PQescapeStringConn) X(PQfinish) X(PQflush) X(PQgetResult)        \
    X(PQgetisnull) X(PQgetlength) X(PQgetvalue) X(PQisBusy) X(PQnfields) X(PQntuples)    \
    X(PQresultStatus) X(PQsendQuery) X(PQsetnonblocking) X(PQsocket) X(PQstatus)
PQ_FUNCS(DYNLIB_DECLARE)
#define PQclear (*dl_PQclear)
#define PQconnectPoll (*dl_PQconnectPoll)
#define PQconnectStartParams (*dl_PQconnectStartParams)
#define PQconsumeInput (*dl_PQconsumeInput)
#define PQerrorMessage (*dl_PQerrorMessage)
#define PQescapeStringConn (*dl_PQescapeStringConn)
#define PQfinish (*dl_PQfinish)
#define PQflush (*dl_PQflush)
#define PQgetResult (*dl_PQgetResult)
#define PQgetisnull (*dl_PQgetisnull)
#define PQgetlength (*dl_PQgetlength)
#define PQgetvalue (*dl_PQgetvalue)
#define PQisBusy (*dl_PQisBusy)
#define PQnfields (*dl_PQnfields)
#define PQntuples (*dl_PQntuples)
#define PQresultStatus (*dl_PQresultStatus)
#define PQsendQuery (*dl_PQsendQuery)
#define PQsetnonblocking (*dl_PQsetnonblocking)
#define PQsocket (*dl_PQsocket)
#define PQstatus (*dl_PQstatus)

/* Wait for the connection's socket until the deadline: 0, or -1. */
static int pg_wait(PGconn *pg, short events, long long deadline)
{
    int fd = PQsocket(pg);
    return fd < 0 ? -1 : lookup_wait_ready(fd, events, deadline);
}

/* libpq's error text without its trailing newline. */
static void pg_error(PGconn *pg, const char *fallback, char *err, size_t errlen)
{
    const char *m = pg ? PQerrorMessage(pg) : "";
    size_t n = strlen(m);

    if (n == 0) {
        lookup_set_err(err, errlen, "%s", fallback);
        return;
    }
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    lookup_set_err(err, errlen, "%.*s", (int)n, m);
}

/* host and port for libpq from a db_host; *dir_copy is freed by the caller. */
static void pg_endpoint(const struct db_host *h, char **host, char **port)
{
    const char *base;

    *host = NULL;
    *port = NULL;
    if (h->path == NULL) {
        *host = lookup_xstrdup(h->host);
        *port = lookup_xstrdup(h->port);
        return;
    }
    base = strrchr(h->path, '/');
    if (base != NULL && strncmp(base + 1, ".s.PGSQL.", 9) == 0) {
        *host = lookup_xstrndup(h->path, base == h->path ? 1 : (size_t)(base - h->path));
        *port = lookup_xstrdup(base + 10);
    } else {
        *host = lookup_xstrdup(h->path);
    }
}

static void *pg_connect(const struct db_cf *cf, const struct db_host *h, char *err,
                        size_t errlen)
{
    const char *keys[8], *vals[8];
    char *host, *port, timeout[16];
    int k = 0, uri = strncmp(h->text, "postgresql://", 13) == 0
                     || strncmp(h->text, "postgres://", 11) == 0;
    long long deadline = lookup_deadline();
    PGconn *pg;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    snprintf(timeout, sizeof(timeout), "%d", lookup_timeout());
    pg_endpoint(h, &host, &port);
    if (uri) {
        keys[k] = "dbname", vals[k++] = h->text;
    } else {
        keys[k] = "host", vals[k++] = host;
        if (port != NULL)
            keys[k] = "port", vals[k++] = port;
        if (db_cf_str(cf, "dbname", NULL) != NULL)
            keys[k] = "dbname", vals[k++] = db_cf_str(cf, "dbname", NULL);
    }
    /* A URI says who connects, as with Postfix: user and password only
     * go with the other forms. */
    if (!uri && db_cf_str(cf, "user", NULL) != NULL)
        keys[k] = "user", vals[k++] = db_cf_str(cf, "user", NULL);
    if (!uri && db_cf_str(cf, "password", NULL) != NULL)
        keys[k] = "password", vals[k++] = db_cf_str(cf, "password", NULL);
    keys[k] = "connect_timeout", vals[k++] = timeout;
    keys[k] = NULL, vals[k] = NULL;
    pg = PQconnectStartParams(keys, vals, uri);
    free(host);
    free(port);
    while (pg != NULL && PQstatus(pg) != CONNECTION_BAD && st != PGRES_POLLING_OK
           && st != PGRES_POLLING_FAILED) {
        if (pg_wait(pg, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline) < 0) {
            lookup_set_err(err, errlen, "timeout");
            PQfinish(pg);
            return NULL;
        }
        st = PQconnectPoll(pg);
    }
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        pg_error(pg, "out of memory", err, errlen);
        PQfinish(pg);
        return NULL;
    }
    PQsetnonblocking(pg, 1);
    return pg;
}

static void pg_disconnect(void *conn)
{
    PQfinish(conn);
}

static void pg_quote(void *conn, const char *s, size_t n, struct strbuf *out)
{
    char *q = lookup_xmalloc(n * 2 + 1);
    int error = 0;
    size_t len = PQescapeStringConn(conn, q, s, n, &error);

    /* An invalid multibyte sequence: quote nothing rather than something
     * half-escaped; the query then finds nothing. */
    strbuf_add(out, q, error ? 0 : len);
    free(q);
}

/* Every non-NULL value of res into r. */
static void pg_rows(PGresult *res, struct db_result *r)
{
    for (int row = 0; row < PQntuples(res); row++)
        for (int col = 0; col < PQnfields(res); col++)
            if (!PQgetisnull(res, row, col))
                db_result_add(r, PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
}

/* Send sql and collect every result, each wait bounded by the deadline. */
static int pg_query_rows(void *conn, const char *sql, struct db_result *r, char *err,
                         size_t errlen)
{
    PGconn *pg = conn;
    long long deadline = lookup_deadline();
    PGresult *res;
    int rc = 1, flushed;

    if (!PQsendQuery(pg, sql)) {
        pg_error(pg, "cannot send query", err, errlen);
        return -1;
    }
    while ((flushed = PQflush(pg)) == 1)
        if (pg_wait(pg, POLLOUT, deadline) < 0)
            goto timeout;
    if (flushed < 0) {
        pg_error(pg, "cannot send query", err, errlen);
        return -1;
    }
    for (;;) {
        while (PQisBusy(pg)) {
            if (pg_wait(pg, POLLIN, deadline) < 0)
                goto timeout;
            if (!PQconsumeInput(pg)) {
                pg_error(pg, "connection lost", err, errlen);
                return -1;
            }
        }
        if ((res = PQgetResult(pg)) == NULL)
            break;
        switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK:
            pg_rows(res, r);
            rc = 0;
            break;
        case PGRES_COMMAND_OK:
            break;
        default:
            pg_error(pg, "query failed", err, errlen);
            rc = -1;
        }
        PQclear(res);
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        pg_error(pg, "connection lost", err, errlen);
        return -1;
    }
    return rc;
timeout:
    lookup_set_err(err, errlen, "timeout");
    return -1;
}

static const struct sql_backend pgsql_backend = {
    .name = "pgsql",
    .default_port = "5432",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .quote = pg_quote,
    .query = pg_query_rows,
};

static int pgsql_load(char *err, size_t errlen)
{
    static void *libpq;
    static const struct dynlib_sym syms[] = {PQ_FUNCS(DYNLIB_ENTRY)};

    return dynlib_load(&libpq, SONAME_PQ, syms, sizeof(syms) / sizeof(syms[0]), err, errlen);
}

static int pgsql_table_open(const char *spec, const char *name, void **state, char *err,
                         size_t errlen)
{
    if (pgsql_load(err, errlen) < 0)
        return -1;
    return sql_table_open(&pgsql_backend, spec, name, state, err, errlen);
}

const struct lookup_type lookup_type_pgsql = {
    .open = pgsql_table_open,
    .get = sql_table_get,
    .close = sql_table_close,
    .may_block = 1,
    .load = pgsql_load,
};
