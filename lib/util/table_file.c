/* table_file.c - text source -> SOURCE.cdb, .cdb listing, and reading the
 * text source entry by entry for texthash: (table_file.h).
 *
 * Used by postmap and postalias. The source is read one logical line at a
 * time (bounded by TABLE_LINE_MAX), each entry goes straight into tinycdb's
 * writer on a temporary file next to the target, and only a complete,
 * fsynced file is renamed into place.
 */
#include "table_file.h"
#include "fsync_dir.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cdb.h>

#define KEY_MAX 4096     /* lookup.c never finds a longer key */

/* The temporary file being built, for table_file_cleanup. */
static char current_tmp[PATH_MAX];

void table_file_cleanup(void)
{
    if (current_tmp[0] != 0) {
        unlink(current_tmp);
        current_tmp[0] = 0;
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* --- reading logical lines --- */

struct line_reader {
    FILE *fp;
    const char *path;
    char *pending;          /* next physical line, already read */
    size_t pending_len;
    int have_pending;
    int eof;
    long lineno;            /* of the last physical line read */
    long pending_lineno;
};

/* One physical line without its newline into *out (malloc'd, caller
 * frees). Returns 1, 0 at EOF, -1 when the line is too long. */
static int read_physical(struct line_reader *r, char **out, size_t *len)
{
    size_t cap = 256, n = 0;
    char *buf = malloc(cap);
    int c;

    if (buf == NULL)
        msg_fatal("out of memory");
    while ((c = getc_unlocked(r->fp)) != EOF && c != '\n') {
        if (n + 1 >= cap) {
            char *grown;
            if (cap >= TABLE_LINE_MAX) {
                free(buf);
                return -1;
            }
            cap *= 2;
            if ((grown = realloc(buf, cap)) == NULL)
                msg_fatal("out of memory");
            buf = grown;
        }
        buf[n++] = (char)c;
    }
    if (c == EOF && n == 0) {
        free(buf);
        return 0;
    }
    buf[n] = 0;
    r->lineno++;
    *out = buf;
    *len = n;
    return 1;
}

static int is_skippable(const char *line)
{
    while (isspace((unsigned char)*line))
        line++;
    return *line == 0 || *line == '#';
}

/* The next logical line (continuations joined, newlines dropped) into
 * *out, its first physical line number into *lineno. 1, 0 at EOF, -1 for
 * an over-long line (err set). */
static int read_logical(struct line_reader *r, char **out, long *lineno, char *err,
                        size_t errlen)
{
    char *logical = NULL, *line;
    size_t llen = 0, len;
    int rc;

    for (;;) {
        if (r->have_pending) {
            line = r->pending;
            len = r->pending_len;
            r->have_pending = 0;
        } else if ((rc = read_physical(r, &line, &len)) <= 0) {
            if (rc < 0) {
                free(logical);
                set_err(err, errlen, "%s, line %ld: line too long", r->path, r->lineno + 1);
                return -1;
            }
            break;
        } else {
            r->pending_lineno = r->lineno;
        }
        if (is_skippable(line)) {
            free(line);
            continue;
        }
        if (logical != NULL && !isspace((unsigned char)line[0])) {
            r->pending = line;
            r->pending_len = len;
            r->have_pending = 1;
            break;
        }
        if (logical == NULL) {
            logical = line;
            llen = len;
            *lineno = r->pending_lineno;
            continue;
        }
        if (llen + len >= TABLE_LINE_MAX) {
            free(line);
            free(logical);
            set_err(err, errlen, "%s, line %ld: logical line too long", r->path, *lineno);
            return -1;
        }
        char *grown = realloc(logical, llen + len + 1);
        if (grown == NULL)
            msg_fatal("out of memory");
        logical = grown;
        memcpy(logical + llen, line, len + 1);
        llen += len;
        free(line);
    }
    if (logical == NULL)
        return 0;
    *out = logical;
    return 1;
}

/* --- parsing one entry --- */

/* A "double quoted" key at p: unquoted into key (at most keylen bytes),
 * *end set past the closing quote. -1 if unterminated or too long. */
static int parse_quoted(const char *p, char *key, size_t keylen, const char **end)
{
    size_t n = 0;

    for (p++; *p != 0 && *p != '"'; p++) {
        if (*p == '\\' && p[1] != 0)
            p++;
        if (n + 1 >= keylen)
            return -1;
        key[n++] = *p;
    }
    if (*p != '"')
        return -1;
    key[n] = 0;
    *end = p + 1;
    return 0;
}

static void fold(char *s)
{
    for (; *s != 0; s++)
        *s = (char)tolower((unsigned char)*s);
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = 0;
    return s;
}

/* Split a logical line into key (copied into key, folded) and value
 * (pointing into line). Returns 0, or -1 with a reason in why. */
static int parse_entry(char *line, enum table_syntax syntax, char *key, size_t keylen,
                       char **value, const char **why)
{
    char *p = trim(line);
    const char *end;
    size_t n;

    if (*p == '"') {
        if (parse_quoted(p, key, keylen, &end) < 0) {
            *why = "unterminated or over-long quoted key";
            return -1;
        }
        p += end - p;
    } else {
        n = syntax == TABLE_SYNTAX_ALIASES ? strcspn(p, ":") : strcspn(p, " \t\r\f\v");
        while (syntax == TABLE_SYNTAX_ALIASES && n > 0 && isspace((unsigned char)p[n - 1]))
            n--;
        if (n >= keylen) {
            *why = "key too long";
            return -1;
        }
        memcpy(key, p, n);
        key[n] = 0;
        p += n;
    }
    if (key[0] == 0) {
        *why = syntax == TABLE_SYNTAX_ALIASES ? "need name:value pair" : "empty key";
        return -1;
    }
    if (syntax == TABLE_SYNTAX_ALIASES) {
        p = trim(p);
        if (*p != ':') {
            *why = "need name:value pair";
            return -1;
        }
        p++;
    } else if (*p != 0 && !isspace((unsigned char)*p)) {
        *why = "expected format: key whitespace value";
        return -1;
    }
    *value = trim(p);
    if (**value == 0) {
        *why = syntax == TABLE_SYNTAX_ALIASES ? "need name:value pair"
                                              : "expected format: key whitespace value";
        return -1;
    }
    fold(key);
    return 0;
}

/* --- writing --- */

/* Add one entry according to dups. 1 when it is new, 0 for a duplicate,
 * -1 with errno. */
static int put_entry(struct cdb_make *cm, const char *key, const char *value,
                     enum table_dups dups, const char *path, long lineno)
{
    unsigned klen = (unsigned)strlen(key), vlen = (unsigned)strlen(value);
    int r;

    if (dups == TABLE_DUPS_REPLACE)
        r = cdb_make_put(cm, key, klen, value, vlen, CDB_PUT_REPLACE);
    else
        r = cdb_make_put(cm, key, klen, value, vlen, CDB_PUT_INSERT);
    if (r < 0 && errno == EEXIST)
        r = 1;   /* some tinycdb versions report an INSERT duplicate this way */
    if (r < 0)
        return -1;
    if (r > 0 && dups == TABLE_DUPS_WARN)
        msg_warn("%s, line %ld: duplicate entry: \"%s\"", path, lineno, key);
    return r == 0;
}

/* Read every entry of src into cm. Returns the number of distinct keys,
 * or -1 (err set). */
static long load_entries(FILE *src, const char *path, enum table_syntax syntax,
                         enum table_dups dups, struct cdb_make *cm, char *err, size_t errlen)
{
    struct line_reader r = {.fp = src, .path = path};
    char key[KEY_MAX + 1];
    char *line, *value;
    const char *why;
    long lineno = 0, count = 0;
    int rc, added;

    while ((rc = read_logical(&r, &line, &lineno, err, errlen)) == 1) {
        if (parse_entry(line, syntax, key, sizeof(key), &value, &why) < 0) {
            msg_warn("%s, line %ld: %s; line skipped", path, lineno, why);
        } else if ((added = put_entry(cm, key, value, dups, path, lineno)) < 0) {
            set_err(err, errlen, "write temporary database for %s: %s", path, strerror(errno));
            free(line);
            return -1;
        } else {
            count += added;
        }
        free(line);
    }
    if (rc < 0)
        return -1;
    if (ferror(src)) {
        set_err(err, errlen, "read %s: %s", path, strerror(errno));
        return -1;
    }
    return count;
}

long table_file_read(const char *source, enum table_syntax syntax, table_dump_fn fn, void *ctx,
                     char *err, size_t errlen)
{
    FILE *src = fopen(source, "re");
    struct line_reader r = {.fp = src, .path = source};
    char key[KEY_MAX + 1];
    char *line, *value;
    const char *why;
    long lineno = 0, count = 0;
    int rc = 0, stop = 0;

    if (src == NULL) {
        set_err(err, errlen, "open %s: %s", source, strerror(errno));
        return -1;
    }
    while (!stop && (rc = read_logical(&r, &line, &lineno, err, errlen)) == 1) {
        if (parse_entry(line, syntax, key, sizeof(key), &value, &why) < 0)
            msg_warn("%s, line %ld: %s; line skipped", source, lineno, why);
        else if ((stop = fn(key, value, ctx)) == 0)
            count++;
        free(line);
    }
    free(r.have_pending ? r.pending : NULL);
    if (!stop && rc < 0)
        count = -1;
    else if (ferror(src)) {
        set_err(err, errlen, "read %s: %s", source, strerror(errno));
        count = -1;
    }
    fclose(src);
    return count;
}


/* Permissions and owner of the new file, from the source. */
static int set_attributes(int fd, const struct stat *src, int default_mode)
{
    mode_t mode = default_mode ? 0644 : (0600 | (src->st_mode & 044));

    if (geteuid() == 0 && (src->st_uid != 0 || src->st_gid != 0)
        && fchown(fd, src->st_uid, src->st_gid) < 0)
        return -1;
    return fchmod(fd, mode);
}

/* cdb_make_finish, then fsync and close: the file is complete on disk. */
static int finish_file(struct cdb_make *cm, int fd, const struct stat *src, int default_mode)
{
    if (cdb_make_finish(cm) < 0 || set_attributes(fd, src, default_mode) < 0 || fsync(fd) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}

long table_file_build(const char *source, enum table_syntax syntax, enum table_dups dups,
                      int default_mode, char *err, size_t errlen)
{
    char target[PATH_MAX];
    struct cdb_make cm;
    struct stat st;
    FILE *src;
    long count;
    int fd, n;

    n = snprintf(target, sizeof(target), "%s.cdb", source);
    if (n < 0 || (size_t)n >= sizeof(target)
        || snprintf(current_tmp, sizeof(current_tmp), "%s.tmpXXXXXX", target)
               >= (int)sizeof(current_tmp)) {
        current_tmp[0] = 0;
        set_err(err, errlen, "%s: path name too long", source);
        return -1;
    }
    if ((src = fopen(source, "re")) == NULL) {
        current_tmp[0] = 0;
        set_err(err, errlen, "open %s: %s", source, strerror(errno));
        return -1;
    }
    if (fstat(fileno(src), &st) < 0 || (fd = mkostemp(current_tmp, O_CLOEXEC)) < 0) {
        set_err(err, errlen, "create temporary file for %s: %s", target, strerror(errno));
        current_tmp[0] = 0;
        fclose(src);
        return -1;
    }
    cdb_make_start(&cm, fd);
    count = load_entries(src, source, syntax, dups, &cm, err, errlen);
    fclose(src);
    if (count < 0) {
        close(fd);
        table_file_cleanup();
        return -1;
    }
    if (finish_file(&cm, fd, &st, default_mode) < 0 || rename(current_tmp, target) < 0) {
        set_err(err, errlen, "write %s: %s", target, strerror(errno));
        table_file_cleanup();
        return -1;
    }
    current_tmp[0] = 0;
    if (fsync_parent(target) < 0) {
        set_err(err, errlen, "fsync directory of %s: %s", target, strerror(errno));
        return -1;
    }
    return count;
}

int table_file_dump(const char *path, table_dump_fn fn, void *ctx, char *err, size_t errlen)
{
    struct cdb cdb;
    unsigned pos;
    int fd, r = 0, rc = 0;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        set_err(err, errlen, "open database %s: %s", path, strerror(errno));
        return -1;
    }
    if (cdb_init(&cdb, fd) < 0) {
        set_err(err, errlen, "%s is not a valid cdb file", path);
        close(fd);
        return -1;
    }
    cdb_seqinit(&pos, &cdb);
    while (rc == 0 && (r = cdb_seqnext(&pos, &cdb)) > 0) {
        char *key = strndup(cdb_getkey(&cdb), cdb_keylen(&cdb));
        char *value = strndup(cdb_getdata(&cdb), cdb_datalen(&cdb));
        if (key == NULL || value == NULL)
            msg_fatal("out of memory");
        rc = fn(key, value, ctx);
        free(key);
        free(value);
    }
    cdb_free(&cdb);
    close(fd);
    if (rc == 0 && r < 0) {
        set_err(err, errlen, "%s is corrupt", path);
        return -1;
    }
    return rc;
}
