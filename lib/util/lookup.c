/* lookup.c - Postfix-style lookup tables ("type:name"), see lookup.h.
 *
 * File-backed tables (cdb:, hash:, btree:, regexp:/file) are opened lazily
 * and re-checked on every lookup: when the file's inode, size or mtime
 * changes the table is reopened, so a table rebuilt by postmap/postalias
 * (write a temporary file, rename it over the old one) is picked up by a
 * running daemon without a restart, and a reader never sees half a table.
 * A missing file, a .cdb older than its source text, or a regexp file with
 * a syntax error is a logged temporary failure, never a silent miss.
 */
#include "lookup.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cdb.h>

#define LOOKUP_KEY_MAX 4096        /* longer keys are never found */
#define REGEXP_FILE_MAX (4 << 20)  /* bytes of regexp source we accept */
#define REGEXP_GROUPS 10           /* $0..$9 */
#define REGEXP_NEST_MAX 100        /* if..endif depth */
#define RESULT_MAX 65536           /* a substituted regexp result */

enum lookup_type { LT_CDB, LT_STATIC, LT_INLINE, LT_REGEXP, LT_PASSWD };

/* One line of a regexp table: a match rule, an "if", or an "endif". */
enum rule_kind { RULE_MATCH, RULE_IF, RULE_ENDIF };
struct regexp_rule {
    enum rule_kind kind;
    int negate;
    regex_t re;
    char *result;          /* RULE_MATCH only */
    size_t skip_to;        /* RULE_IF: index of its endif */
};

/* Identity of an opened file: a change in any of these means "reopen". */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct lookup_table {
    enum lookup_type type;
    char *spec;                  /* as given, for log messages */
    char *path;                  /* cdb: the .cdb file; regexp: the source */
    char *source;                /* cdb: the text it was built from */
    /* cdb */
    int fd;
    struct cdb cdb;
    int cdb_ready;
    struct file_id id;
    /* static */
    char *value;
    /* inline */
    size_t nitems;
    char **keys, **values;
    /* regexp */
    struct regexp_rule *rules;
    size_t nrules;
    int rules_ready;
};

struct lookup_list {
    size_t count;
    struct lookup_table **tables;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        msg_fatal("out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

/* Lower-cased copy of key, or NULL when it is too long to be a key. */
static char *fold_key(const char *key)
{
    size_t len = strlen(key), i;
    char *out;

    if (len > LOOKUP_KEY_MAX)
        return NULL;
    out = xmalloc(len + 1);
    for (i = 0; i <= len; i++)
        out[i] = (char)tolower((unsigned char)key[i]);
    return out;
}

static const char *skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Copy [start, end) without surrounding white space. Caller frees. */
static char *trimmed_copy(const char *start, const char *end)
{
    start = skip_space(start);
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    return xstrndup(start, (size_t)(end - start));
}

/* --- brace-aware splitting ("inline:{ a=b, { c = d e } }") --- */

/* The end of the token starting at p: the first comma or white space
 * outside braces, or the end of the string. -1 for unbalanced braces. */
static const char *token_end(const char *p)
{
    int depth = 0;

    for (; *p != 0; p++) {
        if (*p == '{') {
            depth++;
        } else if (*p == '}') {
            if (--depth < 0)
                return NULL;
        } else if (depth == 0 && (*p == ',' || isspace((unsigned char)*p))) {
            break;
        }
    }
    return depth == 0 ? p : NULL;
}

/* Split text into tokens as above. Returns the count, or -1 on unbalanced
 * braces. *out is a malloc'd array of malloc'd strings (caller frees). */
static long split_tokens(const char *text, char ***out)
{
    char **items = NULL;
    size_t n = 0, cap = 0;
    const char *p = text;

    for (;;) {
        const char *end;
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (*p == 0)
            break;
        if ((end = token_end(p)) == NULL) {
            while (n > 0)
                free(items[--n]);
            free(items);
            return -1;
        }
        if (n == cap) {
            char **grown;
            cap = cap ? cap * 2 : 8;
            if ((grown = realloc(items, cap * sizeof(*items))) == NULL)
                msg_fatal("out of memory");
            items = grown;
        }
        items[n++] = xstrndup(p, (size_t)(end - p));
        p = end;
    }
    *out = items;
    return (long)n;
}

static void free_tokens(char **items, long n)
{
    while (n > 0)
        free(items[--n]);
    free(items);
}

long lookup_split_specs(const char *maps, char ***specs)
{
    return split_tokens(maps, specs);
}

void lookup_free_specs(char **specs, long n)
{
    free_tokens(specs, n);
}

/* "{ text }" -> "text" (trimmed, caller frees); NULL if not braced. */
static char *unbrace(const char *s)
{
    size_t len = strlen(s);

    if (len < 2 || s[0] != '{' || s[len - 1] != '}')
        return NULL;
    return trimmed_copy(s + 1, s + len - 1);
}

/* --- file identity --- */

static int file_id_get(const char *path, struct file_id *id)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return -1;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime = st.st_mtim;
    return 0;
}

static int file_id_same(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size
           && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static int timespec_after(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/* --- cdb --- */

static void cdb_table_close(struct lookup_table *t)
{
    if (t->cdb_ready) {
        cdb_free(&t->cdb);
        close(t->fd);
        t->cdb_ready = 0;
    }
}

/* A .cdb older than the text it was built from means someone edited the
 * source and forgot postmap: answering from the old data would be a silent
 * wrong answer, so it is a temporary failure until the table is rebuilt. */
static int cdb_is_stale(const struct lookup_table *t, const struct file_id *db)
{
    struct file_id src;

    if (file_id_get(t->source, &src) < 0)
        return 0;
    if (!timespec_after(&src.mtime, &db->mtime))
        return 0;
    msg_warn("table %s: database %s is older than source file %s; run postmap or postalias",
             t->spec, t->path, t->source);
    return 1;
}

/* Make sure the open cdb is the current file. 0, or -1 (logged). */
static int cdb_table_ready(struct lookup_table *t)
{
    struct file_id now;
    struct stat st;
    int fd;

    if (file_id_get(t->path, &now) < 0) {
        msg_warn("table %s: open database %s: %s", t->spec, t->path, strerror(errno));
        cdb_table_close(t);
        return -1;
    }
    if (cdb_is_stale(t, &now))
        return -1;
    if (t->cdb_ready && file_id_same(&now, &t->id))
        return 0;
    cdb_table_close(t);
    if ((fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0) {
        msg_warn("table %s: open database %s: %s", t->spec, t->path, strerror(errno));
        return -1;
    }
    /* The identity of what we actually opened, which may be newer than
     * what stat saw a moment ago. */
    if (fstat(fd, &st) < 0 || cdb_init(&t->cdb, fd) < 0) {
        msg_warn("table %s: %s is not a valid cdb file", t->spec, t->path);
        close(fd);
        return -1;
    }
    t->fd = fd;
    t->id.dev = st.st_dev;
    t->id.ino = st.st_ino;
    t->id.size = st.st_size;
    t->id.mtime = st.st_mtim;
    t->cdb_ready = 1;
    return 0;
}

static int cdb_table_get(struct lookup_table *t, const char *key, char **value)
{
    char *folded;
    int r;

    if (cdb_table_ready(t) < 0)
        return LOOKUP_TEMPFAIL;
    if ((folded = fold_key(key)) == NULL || *folded == 0) {
        free(folded);
        return LOOKUP_NOTFOUND;
    }
    r = cdb_find(&t->cdb, folded, (unsigned)strlen(folded));
    free(folded);
    if (r < 0) {
        msg_warn("table %s: %s is corrupt", t->spec, t->path);
        return LOOKUP_TEMPFAIL;
    }
    if (r == 0)
        return LOOKUP_NOTFOUND;
    *value = xstrndup(cdb_getdata(&t->cdb), cdb_datalen(&t->cdb));
    return LOOKUP_FOUND;
}

static int cdb_table_init(struct lookup_table *t, const char *name, char *err, size_t errlen)
{
    size_t len = strlen(name);

    if (len + 4 >= PATH_MAX) {
        set_err(err, errlen, "table %s: path name too long", t->spec);
        return -1;
    }
    t->source = xstrdup(name);
    t->path = xmalloc(len + 5);
    snprintf(t->path, len + 5, "%s.cdb", name);
    t->fd = -1;
    return 0;
}

/* --- static and inline --- */

static int static_table_init(struct lookup_table *t, const char *name, char *err, size_t errlen)
{
    if (name[0] == '{') {
        if ((t->value = unbrace(name)) == NULL) {
            set_err(err, errlen, "bad static:name syntax: missing '}' in \"%s\"", name);
            return -1;
        }
    } else {
        t->value = xstrdup(name);
    }
    return 0;
}

/* One inline item: "key=value" or "{ key = value with spaces }". */
static int inline_item(struct lookup_table *t, const char *item)
{
    char *inner = unbrace(item);
    const char *text = inner ? inner : item;
    const char *eq = strchr(text, '=');
    char *key;

    if (eq == NULL) {
        free(inner);
        return -1;
    }
    key = trimmed_copy(text, eq);
    if (*key == 0) {
        free(key);
        free(inner);
        return -1;
    }
    t->keys[t->nitems] = fold_key(key);
    free(key);
    if (t->keys[t->nitems] == NULL) {
        free(inner);
        return -1;
    }
    t->values[t->nitems] = trimmed_copy(eq + 1, eq + 1 + strlen(eq + 1));
    t->nitems++;
    free(inner);
    return 0;
}

static int inline_table_init(struct lookup_table *t, const char *name, char *err, size_t errlen)
{
    char *inner = unbrace(name);
    char **items;
    long n, i;

    if (inner == NULL || (n = split_tokens(inner, &items)) < 0) {
        free(inner);
        set_err(err, errlen, "bad syntax: \"%s\"; need \"inline:{name=value...}\"", t->spec);
        return -1;
    }
    free(inner);
    t->keys = xmalloc((size_t)n * sizeof(char *));
    t->values = xmalloc((size_t)n * sizeof(char *));
    for (i = 0; i < n; i++) {
        if (inline_item(t, items[i]) < 0) {
            set_err(err, errlen, "bad syntax: \"%s\"; need \"inline:{name=value...}\"", t->spec);
            free_tokens(items, n);
            return -1;
        }
    }
    free_tokens(items, n);
    return 0;
}

static int inline_table_get(struct lookup_table *t, const char *key, char **value)
{
    char *folded = fold_key(key);
    size_t i;

    if (folded == NULL)
        return LOOKUP_NOTFOUND;
    /* First entry wins, as with a text file built by postmap. */
    for (i = 0; i < t->nitems; i++) {
        if (strcmp(t->keys[i], folded) == 0) {
            free(folded);
            *value = xstrdup(t->values[i]);
            return LOOKUP_FOUND;
        }
    }
    free(folded);
    return LOOKUP_NOTFOUND;
}

/* --- unix:passwd.byname --- */

static int passwd_table_get(const char *key, char **value)
{
    char *folded = fold_key(key);
    struct passwd *pw;
    size_t len;

    if (folded == NULL || *folded == 0) {
        free(folded);
        return LOOKUP_NOTFOUND;
    }
    errno = 0;
    pw = getpwnam(folded);
    free(folded);
    if (pw == NULL) {
        /* getpwnam reports "no such user" with errno 0 or one of these;
         * anything else is the name service failing. */
        if (errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF || errno == EPERM)
            return LOOKUP_NOTFOUND;
        msg_warn("table unix:passwd.byname: getpwnam: %s", strerror(errno));
        return LOOKUP_TEMPFAIL;
    }
    len = strlen(pw->pw_name) + strlen(pw->pw_passwd) + strlen(pw->pw_gecos)
          + strlen(pw->pw_dir) + strlen(pw->pw_shell) + 64;
    *value = xmalloc(len);
    snprintf(*value, len, "%s:%s:%lu:%lu:%s:%s:%s", pw->pw_name, pw->pw_passwd,
             (unsigned long)pw->pw_uid, (unsigned long)pw->pw_gid, pw->pw_gecos, pw->pw_dir,
             pw->pw_shell);
    return LOOKUP_FOUND;
}

/* --- regexp --- */

static void regexp_rules_free(struct lookup_table *t)
{
    size_t i;

    for (i = 0; i < t->nrules; i++) {
        if (t->rules[i].kind != RULE_ENDIF)
            regfree(&t->rules[i].re);
        free(t->rules[i].result);
    }
    free(t->rules);
    t->rules = NULL;
    t->nrules = 0;
    t->rules_ready = 0;
}

/* Parse "/pattern/flags" at *pp into rule (regcomp'd); *pp moves past it. */
static int regexp_parse_pattern(const char **pp, struct regexp_rule *rule, char *err,
                                size_t errlen)
{
    const char *p = *pp, *start;
    char delim = *p, *pattern;
    int cflags = REG_EXTENDED | REG_ICASE, rc;

    if (delim == 0 || isalnum((unsigned char)delim) || isspace((unsigned char)delim)) {
        set_err(err, errlen, "pattern must start with a delimiter such as '/'");
        return -1;
    }
    start = ++p;
    while (*p != 0 && *p != delim) {
        if (*p == '\\' && p[1] != 0)
            p++;
        p++;
    }
    if (*p != delim) {
        set_err(err, errlen, "missing closing delimiter '%c'", delim);
        return -1;
    }
    pattern = xstrndup(start, (size_t)(p - start));
    for (p++; *p != 0 && !isspace((unsigned char)*p); p++) {
        if (*p == 'i')
            cflags ^= REG_ICASE;
        else if (*p == 'x')
            cflags ^= REG_EXTENDED;
        else if (*p == 'm')
            cflags ^= REG_NEWLINE;
        else {
            set_err(err, errlen, "unknown regexp flag '%c'", *p);
            free(pattern);
            return -1;
        }
    }
    if ((rc = regcomp(&rule->re, pattern, cflags)) != 0) {
        char why[256];
        regerror(rc, &rule->re, why, sizeof(why));
        set_err(err, errlen, "bad regular expression \"%s\": %s", pattern, why);
        regfree(&rule->re);
        free(pattern);
        return -1;
    }
    free(pattern);
    *pp = p;
    return 0;
}

/* Parse one logical line into rule. Returns 0, or -1 with err set. */
static int regexp_parse_line(const char *line, struct regexp_rule *rule, char *err,
                             size_t errlen)
{
    const char *p = line;

    memset(rule, 0, sizeof(*rule));
    if (strncasecmp(p, "endif", 5) == 0 && (p[5] == 0 || isspace((unsigned char)p[5]))) {
        rule->kind = RULE_ENDIF;
        return 0;
    }
    rule->kind = RULE_MATCH;
    if (strncasecmp(p, "if", 2) == 0 && (isspace((unsigned char)p[2]) || p[2] == '!'
                                          || p[2] == '/')) {
        rule->kind = RULE_IF;
        p = skip_space(p + 2);
    }
    if (*p == '!') {
        rule->negate = 1;
        p = skip_space(p + 1);
    }
    if (regexp_parse_pattern(&p, rule, err, errlen) < 0)
        return -1;
    p = skip_space(p);
    if (rule->kind == RULE_IF) {
        if (*p != 0) {
            regfree(&rule->re);
            set_err(err, errlen, "text after \"if\" pattern");
            return -1;
        }
        return 0;
    }
    if (*p == 0) {
        regfree(&rule->re);
        set_err(err, errlen, "missing result after pattern");
        return -1;
    }
    rule->result = trimmed_copy(p, p + strlen(p));
    return 0;
}

static void regexp_add_rule(struct lookup_table *t, const struct regexp_rule *rule,
                            size_t *cap)
{
    if (t->nrules == *cap) {
        struct regexp_rule *grown;
        *cap = *cap ? *cap * 2 : 16;
        if ((grown = realloc(t->rules, *cap * sizeof(*grown))) == NULL)
            msg_fatal("out of memory");
        t->rules = grown;
    }
    t->rules[t->nrules++] = *rule;
}

/* Pair every "if" with its "endif" so that a failed "if" can skip. */
static int regexp_link_blocks(struct lookup_table *t, char *err, size_t errlen)
{
    size_t stack[REGEXP_NEST_MAX], depth = 0, i;

    for (i = 0; i < t->nrules; i++) {
        if (t->rules[i].kind == RULE_IF) {
            if (depth == REGEXP_NEST_MAX) {
                set_err(err, errlen, "if..endif nested too deeply");
                return -1;
            }
            stack[depth++] = i;
        } else if (t->rules[i].kind == RULE_ENDIF) {
            if (depth == 0) {
                set_err(err, errlen, "endif without matching if");
                return -1;
            }
            t->rules[stack[--depth]].skip_to = i;
        }
    }
    if (depth > 0) {
        set_err(err, errlen, "if without matching endif");
        return -1;
    }
    return 0;
}

/* Logical lines of text (comments and blank lines dropped, continuation
 * lines joined) go to regexp_parse_line; errors name the line a logical
 * line started on. Returns 0 or -1 with err set. */
static int regexp_parse_text(struct lookup_table *t, const char *text, char *err,
                             size_t errlen)
{
    size_t cap = 0, len = strlen(text), pos = 0, lineno = 0, logical_no = 0;
    char *logical = NULL;
    size_t llen = 0;
    char why[512];
    struct regexp_rule rule;

    for (;;) {
        const char *line = text + pos, *nl, *first;
        size_t n = 0;
        int at_end = pos >= len;
        int cont = 0;

        if (!at_end) {
            nl = memchr(line, '\n', len - pos);
            n = nl ? (size_t)(nl - line) : len - pos;
            pos += n + (nl != NULL);
            lineno++;
            first = line;
            while (first < line + n && isspace((unsigned char)*first))
                first++;
            if (first == line + n || *first == '#')
                continue;
            cont = isspace((unsigned char)line[0]);
            if (cont && logical != NULL) {
                char *grown = realloc(logical, llen + n + 1);
                if (grown == NULL)
                    msg_fatal("out of memory");
                logical = grown;
                memcpy(logical + llen, line, n);
                llen += n;
                logical[llen] = 0;
                continue;
            }
        }
        if (logical != NULL) {
            int rc = regexp_parse_line(logical, &rule, why, sizeof(why));
            free(logical);
            logical = NULL;
            if (rc < 0) {
                set_err(err, errlen, "table %s, line %zu: %s", t->spec, logical_no, why);
                return -1;
            }
            regexp_add_rule(t, &rule, &cap);
        }
        if (at_end)
            break;
        logical = trimmed_copy(line, line + n);
        llen = strlen(logical);
        logical_no = lineno;
    }
    return regexp_link_blocks(t, err, errlen);
}

static char *read_small_file(const char *path, const char *spec)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf;
    size_t got = 0;

    if (fd < 0) {
        msg_warn("table %s: open %s: %s", spec, path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > REGEXP_FILE_MAX) {
        msg_warn("table %s: %s is not a regular file of at most %d bytes", spec, path,
                 REGEXP_FILE_MAX);
        close(fd);
        return NULL;
    }
    buf = xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    if (strlen(buf) != got) {
        msg_warn("table %s: %s contains a NUL byte", spec, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Load or reload the regexp file when it changed. 0, or -1 (logged). */
static int regexp_table_ready(struct lookup_table *t)
{
    struct file_id now;
    char err[1024];
    char *text;

    if (t->path == NULL)
        return t->rules_ready ? 0 : -1;   /* inline rules: parsed at open */
    if (file_id_get(t->path, &now) < 0) {
        msg_warn("table %s: open %s: %s", t->spec, t->path, strerror(errno));
        regexp_rules_free(t);
        return -1;
    }
    if (t->rules_ready && file_id_same(&now, &t->id))
        return 0;
    regexp_rules_free(t);
    if ((text = read_small_file(t->path, t->spec)) == NULL)
        return -1;
    if (regexp_parse_text(t, text, err, sizeof(err)) < 0) {
        msg_warn("%s", err);
        regexp_rules_free(t);
        free(text);
        return -1;
    }
    free(text);
    t->id = now;
    t->rules_ready = 1;
    return 0;
}

/* Append to a growing result; -1 when it would exceed RESULT_MAX. */
static int result_add(char **out, size_t *len, const char *s, size_t n)
{
    char *grown;

    if (*len + n >= RESULT_MAX)
        return -1;
    if ((grown = realloc(*out, *len + n + 1)) == NULL)
        msg_fatal("out of memory");
    memcpy(grown + *len, s, n);
    *len += n;
    grown[*len] = 0;
    *out = grown;
    return 0;
}

/* The group number of "$n", "${n}" or "$(n)" at p (just after '$'), with
 * *used set to the characters consumed; -1 when it is not one. */
static int group_ref(const char *p, size_t *used)
{
    if (isdigit((unsigned char)p[0])) {
        *used = 1;
        return p[0] - '0';
    }
    if ((p[0] == '{' || p[0] == '(') && isdigit((unsigned char)p[1])
        && p[2] == (p[0] == '{' ? '}' : ')')) {
        *used = 3;
        return p[1] - '0';
    }
    return -1;
}

/* The result text with $n replaced by what group n matched and $$ by $.
 * Caller frees; NULL when the result would be too large. */
static char *regexp_substitute(const char *result, const char *key, const regmatch_t *m,
                               size_t ngroups)
{
    char *out = xstrdup("");
    size_t len = 0;
    const char *p = result;

    while (*p != 0) {
        const char *dollar = strchr(p, '$');
        size_t used;
        int g;

        if (dollar == NULL)
            return result_add(&out, &len, p, strlen(p)) < 0 ? (free(out), NULL) : out;
        if (result_add(&out, &len, p, (size_t)(dollar - p)) < 0)
            break;
        p = dollar + 1;
        if (*p == '$') {
            if (result_add(&out, &len, "$", 1) < 0)
                break;
            p++;
        } else if (m != NULL && (g = group_ref(p, &used)) >= 0) {
            if ((size_t)g <= ngroups && m[g].rm_so >= 0
                && result_add(&out, &len, key + m[g].rm_so,
                              (size_t)(m[g].rm_eo - m[g].rm_so)) < 0)
                break;
            p += used;
        } else if (result_add(&out, &len, "$", 1) < 0) {
            break;
        }
    }
    if (*p != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Whether rule matches key (negation applied); fills m for substitution. */
static int regexp_rule_matches(const struct regexp_rule *rule, const char *key,
                               regmatch_t *m)
{
    int hit = regexec(&rule->re, key, REGEXP_GROUPS, m, 0) == 0;

    return rule->negate ? !hit : hit;
}

static int regexp_table_get(struct lookup_table *t, const char *key, char **value)
{
    regmatch_t m[REGEXP_GROUPS];
    size_t i = 0;

    if (regexp_table_ready(t) < 0)
        return LOOKUP_TEMPFAIL;
    if (strlen(key) > LOOKUP_KEY_MAX)
        return LOOKUP_NOTFOUND;
    while (i < t->nrules) {
        const struct regexp_rule *rule = &t->rules[i];
        if (rule->kind == RULE_ENDIF) {
            i++;
        } else if (rule->kind == RULE_IF) {
            i = regexp_rule_matches(rule, key, m) ? i + 1 : rule->skip_to + 1;
        } else if (!regexp_rule_matches(rule, key, m)) {
            i++;
        } else {
            /* A negated rule matched because nothing did: no groups. */
            *value = regexp_substitute(rule->result, key, rule->negate ? NULL : m,
                                       rule->re.re_nsub);
            if (*value == NULL) {
                msg_warn("table %s: result for \"%.100s\" is too long", t->spec, key);
                return LOOKUP_TEMPFAIL;
            }
            return LOOKUP_FOUND;
        }
    }
    return LOOKUP_NOTFOUND;
}

/* regexp:/file, or regexp:{ {rule}, {rule} } with the rules inline. */
static int regexp_table_init(struct lookup_table *t, const char *name, char *err,
                             size_t errlen)
{
    char *inner, **items, *text;
    size_t total = 1;
    long n, i;

    if (name[0] != '{') {
        t->path = xstrdup(name);
        return 0;
    }
    if ((inner = unbrace(name)) == NULL || (n = split_tokens(inner, &items)) < 0) {
        free(inner);
        set_err(err, errlen, "table %s: need regexp:/path or regexp:{ {rule}... }", t->spec);
        return -1;
    }
    free(inner);
    for (i = 0; i < n; i++)
        total += strlen(items[i]) + 1;
    text = xmalloc(total);
    text[0] = 0;
    for (i = 0; i < n; i++) {
        char *rule = unbrace(items[i]);
        strcat(text, rule ? rule : items[i]);
        strcat(text, "\n");
        free(rule);
    }
    free_tokens(items, n);
    if (regexp_parse_text(t, text, err, errlen) < 0) {
        regexp_rules_free(t);
        free(text);
        return -1;
    }
    free(text);
    t->rules_ready = 1;
    return 0;
}

/* --- the public interface --- */

struct lookup_table *lookup_open(const char *spec, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':');
    struct lookup_table *t;
    size_t tlen;
    const char *name;
    int rc;

    if (colon == NULL || colon == spec || colon[1] == 0) {
        set_err(err, errlen, "table \"%s\": need type:name", spec);
        return NULL;
    }
    tlen = (size_t)(colon - spec);
    name = colon + 1;
    /* Postfix's proxymap is a way to reach the same table; we always open
     * tables directly, so "proxy:unix:passwd.byname" just works. */
    if (tlen == 5 && strncasecmp(spec, "proxy", 5) == 0)
        return lookup_open(name, err, errlen);
    t = xmalloc(sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->fd = -1;
    t->spec = xstrdup(spec);
#define IS_TYPE(word) (tlen == strlen(word) && strncasecmp(spec, word, tlen) == 0)
    if (IS_TYPE("cdb") || IS_TYPE("hash") || IS_TYPE("btree")) {
        t->type = LT_CDB;
        rc = cdb_table_init(t, name, err, errlen);
    } else if (IS_TYPE("static")) {
        t->type = LT_STATIC;
        rc = static_table_init(t, name, err, errlen);
    } else if (IS_TYPE("inline")) {
        t->type = LT_INLINE;
        rc = inline_table_init(t, name, err, errlen);
    } else if (IS_TYPE("regexp")) {
        t->type = LT_REGEXP;
        rc = regexp_table_init(t, name, err, errlen);
    } else if (IS_TYPE("unix") && strcmp(name, "passwd.byname") == 0) {
        t->type = LT_PASSWD;
        rc = 0;
    } else {
        set_err(err, errlen, "unsupported dictionary type: %.*s", (int)tlen, spec);
        rc = -1;
    }
#undef IS_TYPE
    if (rc < 0) {
        lookup_close(t);
        return NULL;
    }
    return t;
}

void lookup_close(struct lookup_table *t)
{
    size_t i;

    if (t == NULL)
        return;
    cdb_table_close(t);
    regexp_rules_free(t);
    for (i = 0; i < t->nitems; i++) {
        free(t->keys[i]);
        free(t->values[i]);
    }
    free(t->keys);
    free(t->values);
    free(t->value);
    free(t->path);
    free(t->source);
    free(t->spec);
    free(t);
}

int lookup_get(struct lookup_table *t, const char *key, char **value)
{
    *value = NULL;
    switch (t->type) {
    case LT_CDB:
        return cdb_table_get(t, key, value);
    case LT_STATIC:
        *value = xstrdup(t->value);
        return LOOKUP_FOUND;
    case LT_INLINE:
        return inline_table_get(t, key, value);
    case LT_REGEXP:
        return regexp_table_get(t, key, value);
    case LT_PASSWD:
        return passwd_table_get(key, value);
    }
    return LOOKUP_NOTFOUND;
}

struct lookup_list *lookup_list_open(const char *maps, char *err, size_t errlen)
{
    struct lookup_list *l = xmalloc(sizeof(*l));
    char **specs;
    long n, i;

    memset(l, 0, sizeof(*l));
    if ((n = split_tokens(maps, &specs)) < 0) {
        set_err(err, errlen, "unbalanced braces in table list \"%s\"", maps);
        free(l);
        return NULL;
    }
    l->tables = xmalloc((size_t)n * sizeof(*l->tables));
    for (i = 0; i < n; i++) {
        if ((l->tables[i] = lookup_open(specs[i], err, errlen)) == NULL) {
            free_tokens(specs, n);
            lookup_list_close(l);
            return NULL;
        }
        l->count++;
    }
    free_tokens(specs, n);
    return l;
}

void lookup_list_close(struct lookup_list *l)
{
    size_t i;

    if (l == NULL)
        return;
    for (i = 0; i < l->count; i++)
        lookup_close(l->tables[i]);
    free(l->tables);
    free(l);
}

/* Ask each table in turn; pattern tables only when full_key allows
 * (Postfix queries regexp tables with the complete address only). */
static int list_get(struct lookup_list *l, const char *key, int full_key, char **value)
{
    size_t i;

    *value = NULL;
    for (i = 0; i < l->count; i++) {
        int r;
        if (l->tables[i]->type == LT_REGEXP && !full_key)
            continue;
        r = lookup_get(l->tables[i], key, value);
        if (r != LOOKUP_NOTFOUND)
            return r;
    }
    return LOOKUP_NOTFOUND;
}

int lookup_list_get(struct lookup_list *l, const char *key, char **value)
{
    return list_get(l, key, 1, value);
}

/* Where the extension starts in local (the first delimiter character), or
 * 0 when there is none; a delimiter at the very start does not count. */
static size_t extension_at(const char *local, size_t len, const char *delimiter)
{
    size_t cut;

    if (delimiter == NULL || *delimiter == 0)
        return 0;
    cut = strcspn(local, delimiter);
    return cut > 0 && cut < len ? cut : 0;
}

int lookup_list_address(struct lookup_list *l, const char *address, int domain_is_local,
                        const char *delimiter, char **value)
{
    const char *at = strrchr(address, '@');
    size_t local_len = at ? (size_t)(at - address) : strlen(address);
    const char *domain = at ? at + 1 : NULL;
    size_t cut, klen = strlen(address) + 2;
    char *local = xstrndup(address, local_len);
    char *key = xmalloc(klen);
    int r = LOOKUP_NOTFOUND, step;

    cut = extension_at(local, local_len, delimiter);
    *value = NULL;
    /* user+ext@domain, user@domain, user+ext, user, @domain */
    for (step = 0; step < 5 && r == LOOKUP_NOTFOUND; step++) {
        int full = step == 0;
        switch (step) {
        case 0:
            if (domain == NULL)
                continue;
            snprintf(key, klen, "%s", address);
            break;
        case 1:
            if (domain == NULL || cut == 0)
                continue;
            snprintf(key, klen, "%.*s@%s", (int)cut, local, domain);
            break;
        case 2:
            if (domain != NULL && !domain_is_local)
                continue;
            snprintf(key, klen, "%s", local);
            full = domain == NULL;
            break;
        case 3:
            if ((domain != NULL && !domain_is_local) || cut == 0)
                continue;
            snprintf(key, klen, "%.*s", (int)cut, local);
            break;
        case 4:
            if (domain == NULL)
                continue;
            snprintf(key, klen, "@%s", domain);
            break;
        }
        r = list_get(l, key, full, value);
    }
    free(key);
    free(local);
    return r;
}
