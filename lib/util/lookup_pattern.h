/* lookup_pattern.h - the engine that the pattern table types (regexp:,
 * pcre:, cidr:) share: a file of "pattern result" rules read in order,
 * first match wins, "!pattern" negation, nested "if pattern" .. "endif"
 * blocks, continuation lines, $n substitution, and the file re-read when
 * it changes (or rules written inline: type:{ {rule}, {rule} }).
 *
 * A type supplies only how one pattern is written, compiled and matched
 * (struct pattern_syntax). Internal to the lookup module.
 */
#ifndef POSTERN_LOOKUP_PATTERN_H
#define POSTERN_LOOKUP_PATTERN_H

#include <stddef.h>

#define PATTERN_GROUPS 10          /* $0..$9 */

/* Where each group matched in the key: -1 when it did not take part. */
struct pattern_groups {
    long so[PATTERN_GROUPS], eo[PATTERN_GROUPS];
};

struct pattern_syntax {
    const char *name;              /* "regexp", for messages */
    int substitutes;               /* results may hold $n */
    /* Parse and compile the pattern at *pp (with its delimiters and flags),
     * moving *pp past it. 0 with *re set, or -1 with err set. */
    int (*parse)(const char **pp, void **re, char *err, size_t errlen);
    /* What a key is matched as, made once per lookup (NULL: the key text
     * itself). A NULL result means no rule can match (not an address). */
    void *(*subject)(const char *key);
    /* 1 when re matches; g is filled when the type substitutes. -1 for a
     * matching error (logged by the engine, the rule does not match). */
    int (*match)(const void *re, const char *key, const void *subject, struct pattern_groups *g);
    void (*free)(void *re);
    /* How many groups re captures, to check $n at load (substituting
     * types only). */
    int (*groups)(const void *re);
};

/* The text of "/pattern/" at p (any non-alphanumeric delimiter, which a
 * backslash escapes), *end set just past the closing delimiter. Caller
 * frees; NULL with err set when it is not closed (regexp:, pcre:). */
char *lookup_delimited_pattern(const char *p, const char **end, char *err, size_t errlen);

int pattern_table_open(const struct pattern_syntax *syntax, const char *spec, const char *name,
                       void **state, char *err, size_t errlen);
int pattern_table_get(void *state, const char *key, char **value);
void pattern_table_close(void *state);

#endif
