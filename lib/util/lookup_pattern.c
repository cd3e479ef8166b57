/* lookup_pattern.c - the rule engine of the pattern tables regexp:, pcre:
 * and cidr: (lookup_pattern.h): logical lines, if/endif blocks, negation,
 * first match wins, $n substitution, reading and re-reading the file.
 *
 * A file is parsed lazily and re-checked on every lookup: when its inode,
 * size or mtime changes it is parsed again. A missing file or one with a
 * syntax error is a logged temporary failure, never a silent miss (Postfix
 * skips a bad rule; answering without it could let through what the rule
 * was written to stop).
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_pattern.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATTERN_FILE_MAX (4 << 20) /* bytes of table source we accept */
#define PATTERN_NEST_MAX 100       /* if..endif depth */
#define RESULT_MAX 65536           /* a substituted result */

/* One line of a pattern table: a match rule, an "if", or an "endif". */
enum rule_kind { RULE_MATCH, RULE_IF, RULE_ENDIF };
struct pattern_rule {
    enum rule_kind kind;
    int negate;
    void *re;              /* the type's compiled pattern */
    char *result;          /* RULE_MATCH only */
    size_t skip_to;        /* RULE_IF: index of its endif */
};

struct pattern_table {
    const struct pattern_syntax *syntax;
    char *spec;                  /* as given, for log messages */
    char *path;                  /* the source file; NULL for inline rules */
    struct pattern_rule *rules;
    size_t nrules;
    int rules_ready;
    struct lookup_file_id id;
};

static void pattern_rules_free(struct pattern_table *t)
{
    size_t i;

    for (i = 0; i < t->nrules; i++) {
        if (t->rules[i].re != NULL)
            t->syntax->free(t->rules[i].re);
        free(t->rules[i].result);
    }
    free(t->rules);
    t->rules = NULL;
    t->nrules = 0;
    t->rules_ready = 0;
}

/* "if" followed by a pattern (white space, '!' or a delimiter). */
static int starts_if(const char *p)
{
    return strncasecmp(p, "if", 2) == 0 && p[2] != 0
           && (isspace((unsigned char)p[2]) || p[2] == '!' || !isalnum((unsigned char)p[2]));
}

static int group_ref(const char *p, size_t *used);

/* A $n in result past the groups of its pattern (or any $n after a
 * negated one, which has no groups) is an error when the table is read,
 * not an empty string at lookup time. */
static int pattern_check_refs(const struct pattern_syntax *syn, const struct pattern_rule *rule,
                              char *err, size_t errlen)
{
    int have = rule->negate ? 0 : syn->groups(rule->re);

    for (const char *p = rule->result; (p = strchr(p, '$')) != NULL;) {
        size_t used = 1;
        int n;
        p++;
        if (*p == '$') {
            p++;
        } else if ((n = group_ref(p, &used)) >= 0) {
            if (n > have) {
                lookup_set_err(err, errlen, "out of range replacement index \"%d\"", n);
                return -1;
            }
            p += used;
        }
    }
    return 0;
}

/* Parse one logical line into rule. Returns 0, or -1 with err set. */
static int pattern_parse_line(const struct pattern_syntax *syn, const char *line,
                              struct pattern_rule *rule, char *err, size_t errlen)
{
    const char *p = line;

    memset(rule, 0, sizeof(*rule));
    if (strncasecmp(p, "endif", 5) == 0 && (p[5] == 0 || isspace((unsigned char)p[5]))) {
        rule->kind = RULE_ENDIF;
        return 0;
    }
    rule->kind = RULE_MATCH;
    if (starts_if(p)) {
        rule->kind = RULE_IF;
        p = lookup_skip_space(p + 2);
    }
    if (*p == '!') {
        rule->negate = 1;
        p = lookup_skip_space(p + 1);
    }
    if (syn->parse(&p, &rule->re, err, errlen) < 0)
        return -1;
    p = lookup_skip_space(p);
    if (rule->kind == RULE_IF) {
        if (*p != 0) {
            lookup_set_err(err, errlen, "text after \"if\" pattern");
            goto fail;
        }
        return 0;
    }
    if (*p == 0) {
        lookup_set_err(err, errlen, "missing result after pattern");
        goto fail;
    }
    rule->result = lookup_trimmed_copy(p, p + strlen(p));
    if (syn->substitutes && pattern_check_refs(syn, rule, err, errlen) < 0) {
        free(rule->result);
        rule->result = NULL;
        goto fail;
    }
    return 0;
fail:
    syn->free(rule->re);
    rule->re = NULL;
    return -1;
}

static void pattern_add_rule(struct pattern_table *t, const struct pattern_rule *rule,
                             size_t *cap)
{
    if (t->nrules == *cap) {
        struct pattern_rule *grown;
        *cap = *cap ? *cap * 2 : 16;
        if ((grown = realloc(t->rules, *cap * sizeof(*grown))) == NULL)
            msg_fatal("out of memory");
        t->rules = grown;
    }
    t->rules[t->nrules++] = *rule;
}

/* Pair every "if" with its "endif" so that a failed "if" can skip. */
static int pattern_link_blocks(struct pattern_table *t, char *err, size_t errlen)
{
    size_t stack[PATTERN_NEST_MAX], depth = 0, i;

    for (i = 0; i < t->nrules; i++) {
        if (t->rules[i].kind == RULE_IF) {
            if (depth == PATTERN_NEST_MAX) {
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
 * lines joined) go to pattern_parse_line; errors name the line a logical
 * line started on. Returns 0 or -1 with err set. */
static int pattern_parse_text(struct pattern_table *t, const char *text, char *err,
                              size_t errlen)
{
    size_t cap = 0, len = strlen(text), pos = 0, lineno = 0, logical_no = 0;
    char *logical = NULL;
    size_t llen = 0;
    char why[512];
    struct pattern_rule rule;

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
            int rc = pattern_parse_line(t->syntax, logical, &rule, why, sizeof(why));
            free(logical);
            logical = NULL;
            if (rc < 0) {
                lookup_set_err(err, errlen, "table %s, line %zu: %s", t->spec, logical_no, why);
                return -1;
            }
            pattern_add_rule(t, &rule, &cap);
        }
        if (at_end)
            break;
        logical = lookup_trimmed_copy(line, line + n);
        llen = strlen(logical);
        logical_no = lineno;
    }
    return pattern_link_blocks(t, err, errlen);
}

static char *read_small_file(const char *path, const char *spec)
{
    char err[PATH_MAX + 128];
    size_t got;
    char *buf = lookup_read_small_file(path, PATTERN_FILE_MAX, &got, err, sizeof(err));
    if (!buf) {
        msg_warn("table %s: %s", spec, err);
        return NULL;
    }
    if (strlen(buf) != got) {
        msg_warn("table %s: %s contains a NUL byte", spec, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Load or reload the file when it changed. 0, or -1 (logged). */
static int pattern_table_ready(struct pattern_table *t)
{
    struct lookup_file_id now;
    char err[1024];
    char *text;

    if (t->path == NULL)
        return t->rules_ready ? 0 : -1;   /* inline rules: parsed at open */
    if (lookup_file_id_get(t->path, &now) < 0) {
        msg_warn("table %s: open %s: %s", t->spec, t->path, strerror(errno));
        pattern_rules_free(t);
        return -1;
    }
    if (t->rules_ready && lookup_file_id_same(&now, &t->id))
        return 0;
    pattern_rules_free(t);
    if ((text = read_small_file(t->path, t->spec)) == NULL)
        return -1;
    if (pattern_parse_text(t, text, err, sizeof(err)) < 0) {
        msg_warn("%s", err);
        pattern_rules_free(t);
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

/* The result text with $n replaced by what group n matched and $$ by $
 * (g NULL: no groups, as for a negated rule). Caller frees; NULL when the
 * result would be too large. */
static char *pattern_substitute(const char *result, const char *key,
                                const struct pattern_groups *g)
{
    char *out = lookup_xstrdup("");
    size_t len = 0;
    const char *p = result;

    while (*p != 0) {
        const char *dollar = strchr(p, '$');
        size_t used;
        int n;

        if (dollar == NULL)
            return result_add(&out, &len, p, strlen(p)) < 0 ? (free(out), NULL) : out;
        if (result_add(&out, &len, p, (size_t)(dollar - p)) < 0)
            break;
        p = dollar + 1;
        if (*p == '$') {
            if (result_add(&out, &len, "$", 1) < 0)
                break;
            p++;
        } else if (g != NULL && (n = group_ref(p, &used)) >= 0) {
            if (g->so[n] >= 0
                && result_add(&out, &len, key + g->so[n], (size_t)(g->eo[n] - g->so[n])) < 0)
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

/* Whether rule matches key (negation applied); fills g for substitution. */
static int pattern_rule_matches(const struct pattern_table *t, const struct pattern_rule *rule,
                                const char *key, const void *subject, struct pattern_groups *g)
{
    int hit;

    for (int i = 0; i < PATTERN_GROUPS; i++)
        g->so[i] = g->eo[i] = -1;
    hit = t->syntax->match(rule->re, key, subject, g);
    if (hit < 0) {
        msg_warn("table %s: matching error for \"%.100s\"; the rule does not match", t->spec,
                 key);
        hit = 0;
    }
    return rule->negate ? !hit : hit;
}

/* The first matching rule's result, walking if..endif blocks. */
static int pattern_search(struct pattern_table *t, const char *key, const void *subject,
                          char **value)
{
    struct pattern_groups g;
    size_t i = 0;

    while (i < t->nrules) {
        const struct pattern_rule *rule = &t->rules[i];
        if (rule->kind == RULE_ENDIF) {
            i++;
        } else if (rule->kind == RULE_IF) {
            i = pattern_rule_matches(t, rule, key, subject, &g) ? i + 1 : rule->skip_to + 1;
        } else if (!pattern_rule_matches(t, rule, key, subject, &g)) {
            i++;
        } else if (!t->syntax->substitutes) {
            *value = lookup_xstrdup(rule->result);
            return LOOKUP_FOUND;
        } else {
            /* A negated rule matched because nothing did: no groups. */
            *value = pattern_substitute(rule->result, key, rule->negate ? NULL : &g);
            if (*value == NULL) {
                msg_warn("table %s: result for \"%.100s\" is too long", t->spec, key);
                return LOOKUP_TEMPFAIL;
            }
            return LOOKUP_FOUND;
        }
    }
    return LOOKUP_NOTFOUND;
}

int pattern_table_get(void *state, const char *key, char **value)
{
    struct pattern_table *t = state;
    void *subject = NULL;
    int r;

    if (pattern_table_ready(t) < 0)
        return LOOKUP_TEMPFAIL;
    if (strlen(key) > LOOKUP_KEY_MAX)
        return LOOKUP_NOTFOUND;
    if (t->syntax->subject != NULL && (subject = t->syntax->subject(key)) == NULL)
        return LOOKUP_NOTFOUND;
    r = pattern_search(t, key, subject, value);
    free(subject);
    return r;
}

/* The rules of type:{ {rule}, {rule} }, parsed once: there is no file
 * to watch. 0, or -1 with err set. */
static int pattern_rules_inline(struct pattern_table *t, const char *name, char *err,
                                size_t errlen)
{
    char *inner, **items, *text;
    size_t total = 1;
    long n, i;

    if ((inner = lookup_unbrace(name)) == NULL || (n = lookup_split_tokens(inner, &items)) < 0) {
        free(inner);
        lookup_set_err(err, errlen, "table %s: need %s:/path or %s:{ {rule}... }", t->spec,
                       t->syntax->name, t->syntax->name);
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
    if (pattern_parse_text(t, text, err, errlen) < 0) {
        pattern_rules_free(t);
        free(text);
        return -1;
    }
    free(text);
    t->rules_ready = 1;
    return 0;
}

void pattern_table_close(void *state)
{
    struct pattern_table *t = state;

    pattern_rules_free(t);
    free(t->path);
    free(t->spec);
    free(t);
}

/* A file is not read yet: a missing one fails at lookup time, so a daemon
 * started before the file exists recovers once it does. */
int pattern_table_open(const struct pattern_syntax *syntax, const char *spec, const char *name,
                       void **state, char *err, size_t errlen)
{
    struct pattern_table *t = lookup_xmalloc(sizeof(*t));

    memset(t, 0, sizeof(*t));
    t->syntax = syntax;
    t->spec = lookup_xstrdup(spec);
    if (name[0] != '{') {
        t->path = lookup_xstrdup(name);
    } else if (pattern_rules_inline(t, name, err, errlen) < 0) {
        pattern_table_close(t);
        return -1;
    }
    *state = t;
    return 0;
}
