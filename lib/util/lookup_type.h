/* lookup_type.h - what a lookup table type provides to the dispatcher in
 * lookup.c, and the helpers the types share (lookup_support.c). Internal to
 * the lookup module: callers use lookup.h only.
 *
 * A new table type is one file lookup_NAME.c defining a struct lookup_type,
 * declared here, plus one line in lookup.c's table of types.
 */
#ifndef POSTERN_LOOKUP_TYPE_H
#define POSTERN_LOOKUP_TYPE_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#define LOOKUP_KEY_MAX 4096        /* longer keys are never found */

/* One table type. Its state is whatever the type keeps per open table. */
struct lookup_type {
    /* Open "spec" (the whole "type:name", for messages), where name is the
     * part after the colon. 0 with *state set, or -1 with err set and
     * nothing left allocated. */
    int (*open)(const char *spec, const char *name, void **state, char *err, size_t errlen);
    /* LOOKUP_FOUND with *value malloc'd, LOOKUP_NOTFOUND or LOOKUP_TEMPFAIL. */
    int (*get)(void *state, const char *key, char **value);
    void (*close)(void *state);
    /* A pattern table: in Postfix's address lookup order it is asked with
     * the complete address only, never the partial keys. */
    int full_key_only;
    /* A lookup may wait on a server: callers with an event loop can run
     * it elsewhere (lookup_set_defer). */
    int may_block;
    /* Load the type's client library now (dynlib.h), or NULL for a type
     * without one: a daemon about to chroot does it while the library
     * files are still reachable (lookup_load_clients). 0 or -1 with err. */
    int (*load)(char *err, size_t errlen);
};

extern const struct lookup_type lookup_type_cdb;      /* lookup_cdb.c */
extern const struct lookup_type lookup_type_static;   /* lookup_static.c */
extern const struct lookup_type lookup_type_inline;   /* lookup_inline.c */
extern const struct lookup_type lookup_type_regexp;   /* lookup_regexp.c */
extern const struct lookup_type lookup_type_passwd;   /* lookup_unix.c */
extern const struct lookup_type lookup_type_pcre;     /* lookup_pcre.c */
extern const struct lookup_type lookup_type_cidr;     /* lookup_cidr.c */
extern const struct lookup_type lookup_type_texthash; /* lookup_texthash.c */
extern const struct lookup_type lookup_type_tcp;      /* lookup_tcp.c */
extern const struct lookup_type lookup_type_socketmap; /* lookup_socketmap.c */
extern const struct lookup_type lookup_type_mysql;    /* lookup_mysql.c */
extern const struct lookup_type lookup_type_pgsql;    /* lookup_pgsql.c */
extern const struct lookup_type lookup_type_sqlite;   /* lookup_sqlite.c */
extern const struct lookup_type lookup_type_ldap;     /* lookup_ldap.c */

/* --- talking to table servers (lookup_net.c) --- */

/* Deadlines are milliseconds on the monotonic clock; lookup_deadline() is
 * now plus lookup_timeout() (lookup.h). Each returns a descriptor, or -1
 * with err set (the connect failed or the deadline passed). */
long long lookup_now_ms(void);
long long lookup_deadline(void);
/* Wait until fd is ready for events or the deadline passes: 0, or -1
 * with errno (ETIMEDOUT at the deadline). */
int lookup_wait_ready(int fd, short events, long long deadline);
int lookup_connect_unix(const char *path, long long deadline, char *err, size_t errlen);
int lookup_connect_inet(const char *host, const char *port, long long deadline, char *err,
                        size_t errlen);
/* 0, or -1 with errno (ETIMEDOUT at the deadline). */
int lookup_write_all(int fd, const void *buf, size_t len, long long deadline);
/* Bytes read, 0 at EOF, -1 with errno (ETIMEDOUT at the deadline). */
ssize_t lookup_read_some(int fd, void *buf, size_t len, long long deadline);
/* 0 when an idle connection was closed by the server (or has unasked-for
 * bytes waiting): open a new one rather than send on it. */
int lookup_conn_alive(int fd);
/* "host:port", "[v6]:port" -> host and port (malloc'd); -1 when malformed. */
int lookup_split_host_port(const char *text, char **host, char **port);

/* --- helpers (lookup_support.c) --- */

void lookup_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Allocation failure is fatal (msg_fatal), so these never return NULL. */
void *lookup_xmalloc(size_t n);
/* A regular file of at most max bytes, whole and NUL-terminated (malloc'd),
 * or NULL with the reason in err (open, not a regular file, too large). */
char *lookup_read_small_file(const char *path, size_t max, size_t *len, char *err,
                             size_t errlen);
char *lookup_xstrndup(const char *s, size_t n);
char *lookup_xstrdup(const char *s);

/* Lower-cased copy of key (caller frees), or NULL when it is longer than
 * LOOKUP_KEY_MAX and so can never be found. */
char *lookup_fold_key(const char *key);
const char *lookup_skip_space(const char *p);
/* Copy of [start, end) without surrounding white space. Caller frees. */
char *lookup_trimmed_copy(const char *start, const char *end);

/* Split text on commas and white space outside braces ("a, {b c}, d" is
 * three tokens). Returns the count, or -1 on unbalanced braces; *out is a
 * malloc'd array of malloc'd strings, freed with lookup_free_tokens. */
long lookup_split_tokens(const char *text, char ***out);
void lookup_free_tokens(char **items, long n);
/* "{ text }" -> "text" (trimmed, caller frees); NULL if not braced. */
char *lookup_unbrace(const char *s);

/* Identity of an opened file: a change in any of these means "reopen". */
struct lookup_file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/* 0, or -1 with errno set (stat failed). */
int lookup_file_id_get(const char *path, struct lookup_file_id *id);
void lookup_file_id_of(const struct stat *st, struct lookup_file_id *id);
int lookup_file_id_same(const struct lookup_file_id *a, const struct lookup_file_id *b);
int lookup_timespec_after(const struct timespec *a, const struct timespec *b);

#endif
