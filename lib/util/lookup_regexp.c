/* lookup_regexp.c - the regexp: table type: regexp:/path, a file of
 * "/pattern/flags result" lines (POSIX extended, first match wins, $1..$9
 * in the result, if/endif blocks), or regexp:{ {rule}, {rule} } with the
 * rules written in main.cf. One of the table types of lookup.c
 * (lookup_type.h); the rules, the file and $n are the pattern engine's
 * (lookup_pattern.c), this file is how a POSIX pattern is written,
 * compiled and matched. A pattern table: address lookups ask it the
 * complete address only.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_pattern.h"
#include "log.h"

#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

/* The text between a delimiter at p and the next unescaped one, with
 * *end set just past the closing delimiter. Caller frees; NULL with err
 * set when it is not closed. Shared with pcre: (same "/.../flags" form). */
char *lookup_delimited_pattern(const char *p, const char **end, char *err, size_t errlen)
{
    const char *start;
    char delim = *p;

    if (delim == 0 || isalnum((unsigned char)delim) || isspace((unsigned char)delim)) {
        lookup_set_err(err, errlen, "pattern must start with a delimiter such as '/'");
        return NULL;
    }
    start = ++p;
    while (*p != 0 && *p != delim) {
        if (*p == '\\' && p[1] != 0)
            p++;
        p++;
    }
    if (*p != delim) {
        lookup_set_err(err, errlen, "missing closing delimiter '%c'", delim);
        return NULL;
    }
    *end = p + 1;
    return lookup_xstrndup(start, (size_t)(p - start));
}

/* Parse "/pattern/flags" at *pp into a regcomp'd pattern. */
static int regexp_parse(const char **pp, void **re, char *err, size_t errlen)
{
    int cflags = REG_EXTENDED | REG_ICASE, rc;
    const char *p;
    char *pattern;
    regex_t *compiled;

    if ((pattern = lookup_delimited_pattern(*pp, &p, err, errlen)) == NULL)
        return -1;
    for (; *p != 0 && !isspace((unsigned char)*p); p++) {
        if (*p == 'i')
            cflags ^= REG_ICASE;
        else if (*p == 'x')
            cflags ^= REG_EXTENDED;
        else if (*p == 'm')
            cflags ^= REG_NEWLINE;
        else {
            lookup_set_err(err, errlen, "unknown regexp flag '%c'", *p);
            free(pattern);
            return -1;
        }
    }
    compiled = lookup_xmalloc(sizeof(*compiled));
    if ((rc = regcomp(compiled, pattern, cflags)) != 0) {
        char why[256];
        regerror(rc, compiled, why, sizeof(why));
        lookup_set_err(err, errlen, "bad regular expression \"%s\": %s", pattern, why);
        regfree(compiled);
        free(compiled);
        free(pattern);
        return -1;
    }
    free(pattern);
    *pp = p;
    *re = compiled;
    return 0;
}

static int regexp_match(const void *re, const char *key, const void *subject,
                        struct pattern_groups *g)
{
    regmatch_t m[PATTERN_GROUPS];
    const regex_t *compiled = re;

    if (regexec(compiled, key, PATTERN_GROUPS, m, 0) != 0)
        return 0;
    for (size_t i = 0; i < PATTERN_GROUPS && i <= compiled->re_nsub; i++) {
        g->so[i] = m[i].rm_so;
        g->eo[i] = m[i].rm_eo;
    }
    return 1;
}

static void regexp_free(void *re)
{
    regfree(re);
    free(re);
}

static int regexp_groups(const void *re)
{
    return (int)((const regex_t *)re)->re_nsub;
}

static const struct pattern_syntax regexp_syntax = {
    .name = "regexp",
    .substitutes = 1,
    .parse = regexp_parse,
    .match = regexp_match,
    .free = regexp_free,
    .groups = regexp_groups,
};

static int regexp_table_open(const char *spec, const char *name, void **state, char *err,
                             size_t errlen)
{
    return pattern_table_open(&regexp_syntax, spec, name, state, err, errlen);
}

const struct lookup_type lookup_type_regexp = {
    .open = regexp_table_open,
    .get = pattern_table_get,
    .close = pattern_table_close,
    .full_key_only = 1,
};
