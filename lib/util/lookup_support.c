/* lookup_support.c - helpers shared by the lookup dispatcher (lookup.c)
 * and the table types (lookup_*.c): allocation, error text, key folding,
 * the brace-aware splitting of "inline:{ a=b, { c = d e } }" and table
 * lists, and file identity for tables that reopen a changed file.
 * Declared in lookup_type.h.
 */
#include "lookup_type.h"
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>

void lookup_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void *lookup_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        msg_fatal("out of memory");
    return p;
}

char *lookup_xstrndup(const char *s, size_t n)
{
    char *p = lookup_xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *lookup_xstrdup(const char *s)
{
    return lookup_xstrndup(s, strlen(s));
}

char *lookup_fold_key(const char *key)
{
    size_t len = strlen(key), i;
    char *out;

    if (len > LOOKUP_KEY_MAX)
        return NULL;
    out = lookup_xmalloc(len + 1);
    for (i = 0; i <= len; i++)
        out[i] = (char)tolower((unsigned char)key[i]);
    return out;
}

const char *lookup_skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

char *lookup_trimmed_copy(const char *start, const char *end)
{
    start = lookup_skip_space(start);
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    return lookup_xstrndup(start, (size_t)(end - start));
}

/* --- brace-aware splitting --- */

/* The end of the token starting at p: the first comma or white space
 * outside braces, or the end of the string. NULL for unbalanced braces. */
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

long lookup_split_tokens(const char *text, char ***out)
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
            lookup_free_tokens(items, (long)n);
            return -1;
        }
        if (n == cap) {
            char **grown;
            cap = cap ? cap * 2 : 8;
            if ((grown = realloc(items, cap * sizeof(*items))) == NULL)
                msg_fatal("out of memory");
            items = grown;
        }
        items[n++] = lookup_xstrndup(p, (size_t)(end - p));
        p = end;
    }
    *out = items;
    return (long)n;
}

void lookup_free_tokens(char **items, long n)
{
    while (n > 0)
        free(items[--n]);
    free(items);
}

char *lookup_unbrace(const char *s)
{
    size_t len = strlen(s);

    if (len < 2 || s[0] != '{' || s[len - 1] != '}')
        return NULL;
    return lookup_trimmed_copy(s + 1, s + len - 1);
}

/* --- file identity --- */

void lookup_file_id_of(const struct stat *st, struct lookup_file_id *id)
{
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime = st->st_mtim;
}

int lookup_file_id_get(const char *path, struct lookup_file_id *id)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return -1;
    lookup_file_id_of(&st, id);
    return 0;
}

int lookup_file_id_same(const struct lookup_file_id *a, const struct lookup_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size
           && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int lookup_timespec_after(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/* --- endpoints --- */

int lookup_split_host_port(const char *text, char **host, char **port)
{
    const char *colon;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':' || close[2] == 0)
            return -1;
        *host = lookup_xstrndup(text + 1, (size_t)(close - text - 1));
        *port = lookup_xstrdup(close + 2);
        return 0;
    }
    if ((colon = strrchr(text, ':')) == NULL || colon == text || colon[1] == 0)
        return -1;
    *host = lookup_xstrndup(text, (size_t)(colon - text));
    *port = lookup_xstrdup(colon + 1);
    return 0;
}

char *lookup_read_small_file(const char *path, size_t max, size_t *len, char *err,
                             size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    size_t got = 0;

    if (fd < 0) {
        lookup_set_err(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        lookup_set_err(err, errlen, "%s is not a regular file of at most %zu bytes", path, max);
        close(fd);
        return NULL;
    }
    char *buf = lookup_xmalloc((size_t)st.st_size + 1);
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
    *len = got;
    return buf;
}
