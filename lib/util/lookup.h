/* lookup.h - lookup tables, Postfix's "type:name" syntax.
 *
 * Types: cdb:/path (tinycdb file /path.cdb built by postmap/postalias from
 * /path), hash: and btree: (read as cdb: so existing Postfix configs work),
 * static:value, inline:{ key=value, key2=value2 }, regexp:/path (POSIX
 * extended, "/pattern/flags result" lines, first match wins).
 * Keys are matched case-insensitively (lower-cased before lookup), as in
 * Postfix. A missing or unreadable table is not a silent miss: lookups
 * return LOOKUP_TEMPFAIL and log why.
 */
#ifndef POSTERN_LOOKUP_H
#define POSTERN_LOOKUP_H

#include <stddef.h>

#define LOOKUP_FOUND 1
#define LOOKUP_NOTFOUND 0
#define LOOKUP_TEMPFAIL (-1)
/* Only while a defer hook is set (below): the answer will come later. */
#define LOOKUP_PENDING (-2)

struct lookup_table;

/* Open one table. Returns NULL with a reason in err on a syntax error in
 * spec; a table file that is missing opens fine and fails at lookup time
 * (so a daemon started before postmap ran recovers once the file exists).
 * Caller owns the result (lookup_close). */
/* 1 when type (the word before ':' of a spec, "cdb", "regexp", "proxy"...)
 * is a table type Postern has; for reports of what a configuration lacks. */
int lookup_type_supported(const char *type);
/* The i-th word lookup_type_supported accepts (proxy included), or NULL
 * past the last: what "postconf -m" lists. */
const char *lookup_type_name(size_t i);
/* Load every database client library now (they are loaded when a table of
 * their type is first opened, dynlib.h): for a daemon about to chroot,
 * after which the library files are out of reach. One that cannot be
 * loaded is left for the table's open to report. */
void lookup_load_clients(void);

/* How long a table server (tcp:, socketmap:, SQL, LDAP) may take to
 * connect or to answer one request, in seconds (default 10); past it the
 * lookup is a temporary failure. Set from main.cf by the mail layer. */
void lookup_set_timeout(int seconds);
int lookup_timeout(void);

struct lookup_table *lookup_open(const char *spec, char *err, size_t errlen);
void lookup_close(struct lookup_table *t);
/* Look key up. On LOOKUP_FOUND *value is a malloc'd string the caller frees. */
int lookup_get(struct lookup_table *t, const char *key, char **value);

/* Split a list of table specs as main.cf writes it ("cdb:/a, inline:{ a=b,
 * c=d }"): on commas and white space outside braces. Returns the count
 * with *specs a malloc'd array of malloc'd strings (lookup_free_specs),
 * or -1 on unbalanced braces. For callers that keep something of their
 * own per table (local's alias tables and their owners). */
long lookup_split_specs(const char *maps, char ***specs);
void lookup_free_specs(char **specs, long n);
/* Lookups in tables that may wait on a server (tcp:, socketmap:, mysql:,
 * pgsql:, ldap:) go to hook instead, in this thread only, while one is
 * set (NULL: none): an event-driven caller answers them from its own
 * results, or starts the lookup elsewhere and returns LOOKUP_PENDING,
 * which lookup_get and the list functions then return as they are. */
typedef int (*lookup_defer_fn)(struct lookup_table *t, const char *key, char **value);
void lookup_set_defer(lookup_defer_fn hook);
/* Whether t may wait on a server; its spec ("mysql:/etc/x.cf"). */
int lookup_may_block(const struct lookup_table *t);
const char *lookup_table_spec(const struct lookup_table *t);
/* lookup_get without the hook: what a worker thread runs. */
int lookup_get_now(struct lookup_table *t, const char *key, char **value);

/* A list of tables as main.cf writes them ("cdb:/a, static:x"): first table
 * with an answer wins; a temporary failure in any table consulted before an
 * answer is a temporary failure. Tables are reopened when their file changes. */
struct lookup_list;
struct lookup_list *lookup_list_open(const char *maps, char *err, size_t errlen);
void lookup_list_close(struct lookup_list *l);
int lookup_list_get(struct lookup_list *l, const char *key, char **value);
/* Postfix's address lookup order: "user+ext@domain", "user@domain",
 * "user+ext", "user" (the last two only when domain_is_local), "@domain".
 * delimiter is recipient_delimiter ("" for none). */
int lookup_list_address(struct lookup_list *l, const char *address, int domain_is_local,
                        const char *delimiter, char **value);

#endif
