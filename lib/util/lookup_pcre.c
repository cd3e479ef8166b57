/* lookup_pcre.c - the pcre: table type (pcre_table(5)): pcre:/path, a
 * file of "/pattern/flags result" rules in Perl syntax (libpcre2), first
 * match wins, "!" negation, if/endif, $1..$9 in the result; or
 * pcre:{ {rule}, {rule} } written in main.cf. The rules and the file are
 * the pattern engine's (lookup_pattern.c); this file is how a PCRE pattern
 * is compiled and matched. A pattern table: address lookups ask it the
 * complete address only.
 *
 * Flags toggle, as in Postfix: i (case-insensitive, on), m (multi-line),
 * s (dot matches newline, on), x (extended), A (anchored), E (dollar at
 * the end only), U (ungreedy); X has no PCRE2 meaning and is ignored.
 * Every match runs under match and depth limits, so a pattern that
 * backtracks without end costs a warning, not a stalled daemon.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_pattern.h"
#include "log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#define PCRE_MATCH_LIMIT 1000000
#define PCRE_DEPTH_LIMIT 10000

/* Compile options after the flags that follow the closing delimiter. */
static int pcre_flags(const char **pp, uint32_t *options, char *err, size_t errlen)
{
    const char *p = *pp;

    *options = PCRE2_CASELESS | PCRE2_DOTALL;
    for (; *p != 0 && !isspace((unsigned char)*p); p++) {
        switch (*p) {
        case 'i': *options ^= PCRE2_CASELESS; break;
        case 'm': *options ^= PCRE2_MULTILINE; break;
        case 's': *options ^= PCRE2_DOTALL; break;
        case 'x': *options ^= PCRE2_EXTENDED; break;
        case 'A': *options ^= PCRE2_ANCHORED; break;
        case 'E': *options ^= PCRE2_DOLLAR_ENDONLY; break;
        case 'U': *options ^= PCRE2_UNGREEDY; break;
        case 'X': break;
        default:
            lookup_set_err(err, errlen, "unknown regexp option \"%c\"", *p);
            return -1;
        }
    }
    *pp = p;
    return 0;
}

static int pcre_parse(const char **pp, void **re, char *err, size_t errlen)
{
    char *pattern, why[256];
    const char *p;
    uint32_t options;
    int code;
    PCRE2_SIZE offset;
    pcre2_code *compiled;

    if ((pattern = lookup_delimited_pattern(*pp, &p, err, errlen)) == NULL)
        return -1;
    if (pcre_flags(&p, &options, err, errlen) < 0) {
        free(pattern);
        return -1;
    }
    compiled = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code,
                             &offset, NULL);
    if (compiled == NULL) {
        pcre2_get_error_message(code, (PCRE2_UCHAR *)why, sizeof(why));
        lookup_set_err(err, errlen, "error in regex at offset %zu: %s", (size_t)offset, why);
        free(pattern);
        return -1;
    }
    free(pattern);
    *pp = p;
    *re = compiled;
    return 0;
}

/* One match context for every table: the limits are the same for all.
 * Made once, also when tables are used from several threads. */
static pcre2_match_context *limits;

static void pcre_limits_init(void)
{
    if ((limits = pcre2_match_context_create(NULL)) == NULL)
        msg_fatal("out of memory");
    pcre2_set_match_limit(limits, PCRE_MATCH_LIMIT);
    pcre2_set_depth_limit(limits, PCRE_DEPTH_LIMIT);
}

static pcre2_match_context *pcre_limits(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, pcre_limits_init);
    return limits;
}

static int pcre_match(const void *re, const char *key, const void *subject,
                      struct pattern_groups *g)
{
    pcre2_match_data *md = pcre2_match_data_create(PATTERN_GROUPS, NULL);
    PCRE2_SIZE *ov;
    int rc;

    if (md == NULL)
        msg_fatal("out of memory");
    rc = pcre2_match(re, (PCRE2_SPTR)key, strlen(key), 0, 0, md, pcre_limits());
    if (rc == PCRE2_ERROR_NOMATCH) {
        pcre2_match_data_free(md);
        return 0;
    }
    if (rc < 0) {
        pcre2_match_data_free(md);
        return -1;
    }
    /* rc 0: more groups than the vector holds; those past it stay unset. */
    if (rc == 0)
        rc = PATTERN_GROUPS;
    ov = pcre2_get_ovector_pointer(md);
    for (int i = 0; i < rc && i < PATTERN_GROUPS; i++) {
        if (ov[2 * i] == PCRE2_UNSET)
            continue;
        g->so[i] = (long)ov[2 * i];
        g->eo[i] = (long)ov[2 * i + 1];
    }
    pcre2_match_data_free(md);
    return 1;
}

static void pcre_free(void *re)
{
    pcre2_code_free(re);
}

static int pcre_groups(const void *re)
{
    uint32_t n = 0;

    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &n);
    return (int)n;
}

static const struct pattern_syntax pcre_syntax = {
    .name = "pcre",
    .substitutes = 1,
    .parse = pcre_parse,
    .match = pcre_match,
    .free = pcre_free,
    .groups = pcre_groups,
};

static int pcre_table_open(const char *spec, const char *name, void **state, char *err,
                           size_t errlen)
{
    return pattern_table_open(&pcre_syntax, spec, name, state, err, errlen);
}

const struct lookup_type lookup_type_pcre = {
    .open = pcre_table_open,
    .get = pattern_table_get,
    .close = pattern_table_close,
    .full_key_only = 1,
};
