/* lookup_db.h - what the database table types (mysql:, pgsql:, sqlite:,
 * ldap:) share: their configuration file and Postfix's '%' templates.
 * Internal to the lookup module.
 *
 * The file is Postfix's: "name = value" lines, '#' comments, a line that
 * starts with white space continues the one before; no $name expansion.
 * Templates (query, query_filter, search_base, result_format):
 * %% a '%'; %s the key; %u its local part (the whole key when it has no
 * '@'; an empty one suppresses the query); %d its domain (none suppresses
 * the query); %1..%9 the domain's labels from the right (too few suppress
 * it); %S %U %D as %s %u %d. In result_format the lower-case letters stand
 * for the result value (an empty value, an empty local part or a value
 * without domain is skipped) and %S %U %D %1..%9 for the key.
 */
#ifndef POSTERN_LOOKUP_DB_H
#define POSTERN_LOOKUP_DB_H

#include "strbuf.h"

#include <stddef.h>
#include <time.h>

#define DB_RESULT_MAX (1 << 20)    /* bytes of one lookup's joined result */

struct db_cf;

/* Read path (at most 1 MB). NULL with err set. */
struct db_cf *db_cf_read(const char *path, char *err, size_t errlen);
void db_cf_free(struct db_cf *cf);
/* The value of name, or def when the file does not set it. */
const char *db_cf_str(const struct db_cf *cf, const char *name, const char *def);
/* A number; -1 with err set when it is not one in [min, max]. */
long db_cf_long(const struct db_cf *cf, const char *name, long def, long min, long max,
                char *err, size_t errlen);
/* yes/no (also true/false, 1/0); -1 with err set otherwise. */
int db_cf_bool(const struct db_cf *cf, const char *name, int def, char *err, size_t errlen);

/* A growing string. */

/* How a back end quotes a piece of the key for its query language:
 * appends the quoted form of [s, s+n) to out. */
typedef void (*db_quote_fn)(void *ctx, const char *s, size_t n, struct strbuf *out);

/* 0 when template uses only the expansions above (result: 1 for
 * result_format, which has no quoting), -1 with err set. */
int db_template_check(const char *template, char *err, size_t errlen);
/* Expand a query template for key into out (quote may be NULL: as is).
 * 1, or 0 when the key lacks a part the template needs (no query: not
 * found). */
int db_expand_query(const char *template, const char *key, db_quote_fn quote, void *ctx,
                    struct strbuf *out);
/* Whether key has every part result_format asks of the key. */
int db_key_fits_result(const char *format, const char *key);

/* A lookup's joined answer: each value of each row/entry formatted with
 * result_format and joined with ','; counted against expansion_limit. */
struct db_result {
    const char *format, *key;
    long limit;                    /* 0: none */
    long count;
    int overflow;                  /* the limit or DB_RESULT_MAX was passed */
    struct strbuf out;
};
void db_result_add(struct db_result *r, const char *value, size_t len);

/* The "domain" restriction: NULL when the file sets none. */
struct db_domains;
struct db_domains *db_domains_open(const char *list, char *err, size_t errlen);
void db_domains_close(struct db_domains *d);
/* 1 when key may be looked up: no restriction, or user@domain with a
 * non-empty user and a listed domain. -1 when a domain table failed. */
int db_domains_allow(struct db_domains *d, const char *key);

/* Postfix's legacy select_field/table/where_field/additional_conditions
 * when query is not set; NULL with err set when neither is. */
char *db_legacy_query(const struct db_cf *cf, char *err, size_t errlen);

/* One entry of "hosts": "unix:/path", "inet:host:port", "host:port" or
 * "host". */
struct db_host {
    char *text;                    /* as written, for messages */
    char *path;                    /* unix: */
    char *host, *port;             /* otherwise */
    time_t retry_after;            /* failed: tried after the others until then */
};
/* The count, or -1 with err set; free with db_hosts_free. */
int db_hosts_parse(const char *list, const char *default_port, struct db_host **hosts,
                   char *err, size_t errlen);
void db_hosts_free(struct db_host *hosts, int n);
/* The order to try hosts in: current first (when >= 0), UNIX sockets
 * before TCP, hosts that recently failed last. Fills order (n entries),
 * returns n. */
int db_hosts_order(const struct db_host *hosts, int n, int current, int *order);

#endif
