/* lookup_regexp.c - the regexp: table type: regexp:/path, a file of
 * "/pattern/flags result" lines (POSIX extended, first match wins, $1..$9
 * in the result, if/endif blocks), or regexp:{ {rule}, {rule} } with the
 * rules written in main.cf. One of the table types of lookup.c
 * (lookup_type.h); a pattern table, so address lookups ask it the
 * complete address only.
 *
 * A file is parsed lazily and re-checked on every lookup: when its inode,
 * size or mtime changes it is parsed again. A missing file or one with a
 * syntax error is a logged temporary failure, never a silent miss.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGEXP_FILE_MAX (4 << 20)  /* bytes of regexp source we accept */
#define REGEXP_GROUPS 10           /* $0..$9 */
#define REGEXP_NEST_MAX 100        /* if..endif depth */
#define RESULT_MAX 65536           /* a substituted regexp result */

/* One line of a regexp table: a match rule, an "if", or an "endif". */
enum rule_kind { RULE_MATCH, RULE_IF, RULE_ENDIF };
struct regexp_rule {
    enum rule_kind kind;
    int negate;
    regex_t re;
    char *result;          /* RULE_MATCH only */
    size_t skip_to;        /* RULE_IF: index of its endif */
};

struct regexp_table {
    char *spec;                  /* as given, for log messages */
    char *path;                  /* the source file; NULL for inline rules */
    struct regexp_rule *rules;
    size_t nrules;
    int rules_ready;
    struct lookup_file_id id;
};

static void regexp_rules_free(struct regexp_table *t)
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
        lookup_set_err(err, errlen, "pattern must start with a delimiter such as '/'");
        return -1;
    }
    start = ++p;
    while (*p != 0 && *p != delim) {
        if (*p == '\\' && p[1] != 0)
            p++;
        p++;
    }
    if (*p != delim) {
        lookup_set_err(err, errlen, "missing closing delimiter '%c'", delim);
        return -1;
    }
    pattern = lookup_xstrndup(start, (size_t)(p - start));
    for (p++; *p != 0 && !isspace((unsigned char)*p); p++) {
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
    if ((rc = regcomp(&rule->re, pattern, cflags)) != 0) {
        char why[256];
        regerror(rc, &rule->re, why, sizeof(why));
        lookup_set_err(err, errlen, "bad regular expression \"%s\": %s", pattern, why);
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
        p = lookup_skip_space(p + 2);
    }
    if (*p == '!') {
        rule->negate = 1;
        p = lookup_skip_space(p + 1);
    }
    if (regexp_parse_pattern(&p, rule, err, errlen) < 0)
        return -1;
    p = lookup_skip_space(p);
    if (rule->kind == RULE_IF) {
        if (*p != 0) {
            regfree(&rule->re);
            lookup_set_err(err, errlen, "text after \"if\" pattern");
            return -1;
        }
        return 0;
    }
    if (*p == 0) {
        regfree(&rule->re);
        lookup_set_err(err, errlen, "missing result after pattern");
        return -1;
    }
    rule->result = lookup_trimmed_copy(p, p + strlen(p));
    return 0;
}

static void regexp_add_rule(struct regexp_table *t, const struct regexp_rule *rule,
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
static int regexp_link_blocks(struct regexp_table *t, char *err, size_t errlen)
{
    size_t stack[REGEXP_NEST_MAX], depth = 0, i;

    for (i = 0; i < t->nrules; i++) {
        if (t->rules[i].kind == RULE_IF) {
            if (depth == REGEXP_NEST_MAX) {
                lookup_set_err(err, errlen, "if..endif nested too deeply");
                return -1;
            }
            stack[depth++] = i;
        } else if (t->rules[i].kind == RULE_ENDIF) {
            if (depth == 0) {
                lookup_set_err(err, errlen, "endif without matching if");
                return -1;
            }
            t->rules[stack[--depth]].skip_to = i;
        }
    }
    if (depth > 0) {
        lookup_set_err(err, errlen, "if without matching endif");
        return -1;
    }
    return 0;
}

/* Logical lines of text (comments and blank lines dropped, continuation
 * lines joined) go to regexp_parse_line; errors name the line a logical
 * line started on. Returns 0 or -1 with err set. */
static int regexp_parse_text(struct regexp_table *t, const char *text, char *err,
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
                lookup_set_err(err, errlen, "table %s, line %zu: %s", t->spec, logical_no, why);
                return -1;
            }
            regexp_add_rule(t, &rule, &cap);
        }
        if (at_end)
            break;
        logical = lookup_trimmed_copy(line, line + n);
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
    buf = lookup_xmalloc((size_t)st.st_size + 1);
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
static int regexp_table_ready(struct regexp_table *t)
{
    struct lookup_file_id now;
    char err[1024];
    char *text;

    if (t->path == NULL)
        return t->rules_ready ? 0 : -1;   /* inline rules: parsed at open */
    if (lookup_file_id_get(t->path, &now) < 0) {
        msg_warn("table %s: open %s: %s", t->spec, t->path, strerror(errno));
        regexp_rules_free(t);
        return -1;
    }
    if (t->rules_ready && lookup_file_id_same(&now, &t->id))
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
    char *out = lookup_xstrdup("");
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

static int regexp_table_get(void *state, const char *key, char **value)
{
    struct regexp_table *t = state;
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

/* The rules of regexp:{ {rule}, {rule} }, parsed once: there is no file
 * to watch. 0, or -1 with err set. */
static int regexp_rules_inline(struct regexp_table *t, const char *name, char *err,
                               size_t errlen)
{
    char *inner, **items, *text;
    size_t total = 1;
    long n, i;

    if ((inner = lookup_unbrace(name)) == NULL || (n = lookup_split_tokens(inner, &items)) < 0) {
        free(inner);
        lookup_set_err(err, errlen, "table %s: need regexp:/path or regexp:{ {rule}... }", t->spec);
        return -1;
    }
    free(inner);
    for (i = 0; i < n; i++)
        total += strlen(items[i]) + 1;
    text = lookup_xmalloc(total);
    text[0] = 0;
    for (i = 0; i < n; i++) {
        char *rule = lookup_unbrace(items[i]);
        strcat(text, rule ? rule : items[i]);
        strcat(text, "\n");
        free(rule);
    }
    lookup_free_tokens(items, n);
    if (regexp_parse_text(t, text, err, errlen) < 0) {
        regexp_rules_free(t);
        free(text);
        return -1;
    }
    free(text);
    t->rules_ready = 1;
    return 0;
}

static void regexp_table_close(void *state)
{
    struct regexp_table *t = state;

    regexp_rules_free(t);
    free(t->path);
    free(t->spec);
    free(t);
}

/* A file is not read yet: a missing one fails at lookup time, so a daemon
 * started before the file exists recovers once it does. */
static int regexp_table_open(const char *spec, const char *name, void **state, char *err,
                             size_t errlen)
{
    struct regexp_table *t = lookup_xmalloc(sizeof(*t));

    memset(t, 0, sizeof(*t));
    t->spec = lookup_xstrdup(spec);
    if (name[0] != '{') {
        t->path = lookup_xstrdup(name);
    } else if (regexp_rules_inline(t, name, err, errlen) < 0) {
        regexp_table_close(t);
        return -1;
    }
    *state = t;
    return 0;
}

const struct lookup_type lookup_type_regexp = {
    .open = regexp_table_open,
    .get = regexp_table_get,
    .close = regexp_table_close,
    .full_key_only = 1,
};
