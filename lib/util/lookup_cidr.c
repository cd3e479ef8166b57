/* lookup_cidr.c - the cidr: table type (cidr_table(5)): cidr:/path, a file
 * of "network/prefix result" or "address result" rules, IPv4 and IPv6,
 * an address optionally in [brackets], first match wins, "!" negation and
 * if/endif blocks; or cidr:{ {rule}, {rule} } written in main.cf. The rules
 * and the file are the pattern engine's (lookup_pattern.c); this file is
 * how a network is written and matched. Keys are IP addresses as text
 * (no brackets); any other key matches nothing. A pattern table: address
 * lookups ask it the complete key only.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_pattern.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define CIDR_TEXT_MAX 64          /* longest address/prefix we parse */

struct cidr_net {
    int family;                   /* AF_INET or AF_INET6 */
    unsigned char bytes[16];
    int prefix;                   /* bits that must match */
};

/* An address as text (no brackets) into a; its bit length, or 0. */
static int cidr_address(const char *text, struct cidr_net *a)
{
    if (inet_pton(AF_INET, text, a->bytes) == 1) {
        a->family = AF_INET;
        return 32;
    }
    if (inet_pton(AF_INET6, text, a->bytes) == 1) {
        a->family = AF_INET6;
        return 128;
    }
    return 0;
}

/* 1 when no bit past prefix is set. */
static int cidr_host_bits_clear(const struct cidr_net *n, int bits)
{
    for (int i = n->prefix; i < bits; i++)
        if (n->bytes[i / 8] & (0x80 >> (i % 8)))
            return 0;
    return 1;
}

/* "addr", "addr/n", "[addr]" or "[addr]/n" in word into n. */
static int cidr_parse_word(const char *word, struct cidr_net *n, char *err, size_t errlen)
{
    char addr[CIDR_TEXT_MAX];
    const char *slash = strchr(word, '/'), *start = word;
    size_t len = slash ? (size_t)(slash - word) : strlen(word);
    int bits;

    if (len >= 2 && word[0] == '[' && word[len - 1] == ']') {
        start++;
        len -= 2;
    }
    if (len >= sizeof(addr)) {
        lookup_set_err(err, errlen, "bad address pattern: \"%s\"", word);
        return -1;
    }
    memcpy(addr, start, len);
    addr[len] = 0;
    if ((bits = cidr_address(addr, n)) == 0) {
        lookup_set_err(err, errlen, "bad address pattern: \"%s\"", word);
        return -1;
    }
    n->prefix = bits;
    if (slash != NULL) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (!isdigit((unsigned char)slash[1]) || *end != 0 || p < 0 || p > bits) {
            lookup_set_err(err, errlen, "bad net/mask pattern: \"%s\"", word);
            return -1;
        }
        n->prefix = (int)p;
    }
    if (!cidr_host_bits_clear(n, bits)) {
        lookup_set_err(err, errlen, "non-null host address bits in \"%s\"", word);
        return -1;
    }
    return 0;
}

static int cidr_parse(const char **pp, void **re, char *err, size_t errlen)
{
    const char *p = *pp, *end = p;
    struct cidr_net *n;
    char word[CIDR_TEXT_MAX + 8];

    while (*end != 0 && !isspace((unsigned char)*end))
        end++;
    if (end == p || (size_t)(end - p) >= sizeof(word)) {
        lookup_set_err(err, errlen, "bad address pattern: \"%.*s\"", (int)(end - p > 80 ? 80 : end - p), p);
        return -1;
    }
    memcpy(word, p, (size_t)(end - p));
    word[end - p] = 0;
    n = lookup_xmalloc(sizeof(*n));
    memset(n, 0, sizeof(*n));
    if (cidr_parse_word(word, n, err, errlen) < 0) {
        free(n);
        return -1;
    }
    *pp = end;
    *re = n;
    return 0;
}

/* The key as an address, or NULL when it is none (matches no rule). */
static void *cidr_subject(const char *key)
{
    struct cidr_net *a = lookup_xmalloc(sizeof(*a));

    memset(a, 0, sizeof(*a));
    if (strlen(key) >= CIDR_TEXT_MAX || cidr_address(key, a) == 0) {
        free(a);
        return NULL;
    }
    return a;
}

static int cidr_match(const void *re, const char *key, const void *subject,
                      struct pattern_groups *g)
{
    const struct cidr_net *n = re, *a = subject;
    int whole = n->prefix / 8, rest = n->prefix % 8;

    if (n->family != a->family || memcmp(n->bytes, a->bytes, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (n->bytes[whole] & mask) == (a->bytes[whole] & mask);
}

static const struct pattern_syntax cidr_syntax = {
    .name = "cidr",
    .substitutes = 0,
    .parse = cidr_parse,
    .subject = cidr_subject,
    .match = cidr_match,
    .free = free,
};

static int cidr_table_open(const char *spec, const char *name, void **state, char *err,
                           size_t errlen)
{
    return pattern_table_open(&cidr_syntax, spec, name, state, err, errlen);
}

const struct lookup_type lookup_type_cidr = {
    .open = cidr_table_open,
    .get = pattern_table_get,
    .close = pattern_table_close,
    .full_key_only = 1,
};
