/* match.c - matching domains and client addresses against main.cf lists
 * (match.h): mydestination/relay_domains style domain lists and mynetworks
 * style network lists, and host lists that mix networks and host names.
 *
 * Lists are walked in place, item by item (strlist_next), so there is no
 * allocation and no limit on the number of items.
 * An item "!pattern" negates: the first item that matches decides, as in
 * Postfix. type:table items (lookup tables) are not supported yet: they are
 * skipped with a warning. No DNS is ever used.
 */
#include "match.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"
#include "strlist.h"

#define ITEM_MAX 256   /* longest list item we look at; longer ones are skipped */

/* Length without one trailing dot. */
static size_t domain_len(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && s[len - 1] == '.' ? len - 1 : len;
}

static int domain_equal(const char *a, const char *b)
{
    size_t la = domain_len(a), lb = domain_len(b);

    return la == lb && strncasecmp(a, b, la) == 0;
}

int match_domain_list(const char *list, const char *domain)
{
    char item[ITEM_MAX];
    const char *p = list;
    int r;

    if (list == NULL || domain == NULL || domain_len(domain) == 0)
        return 0;
    while ((r = strlist_next(&p, item, sizeof(item))) != 0) {
        const char *pattern = item;
        int negate = 0;

        if (r < 0)
            continue;
        while (*pattern == '!') {
            negate = !negate;
            pattern++;
        }
        if (strchr(pattern, ':') != NULL || pattern[0] == '/') {
            msg_warn("lookup table \"%s\" in domain list not supported yet, skipped",
                     pattern);
            continue;
        }
        if (domain_equal(pattern, domain))
            return !negate;
    }
    return 0;
}

/* An address normalised for comparison: IPv4-mapped IPv6 becomes IPv4. */
struct net_addr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char bytes[16];
};

static void net_addr_set(struct net_addr *a, int family, const void *bytes)
{
    a->family = family;
    memset(a->bytes, 0, sizeof(a->bytes));
    memcpy(a->bytes, bytes, family == AF_INET ? 4 : 16);
}

static int is_v4_mapped(const unsigned char *b)
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    return memcmp(b, prefix, sizeof(prefix)) == 0;
}

/* Turn ::ffff:a.b.c.d into a.b.c.d; *prefix (if given) follows along. */
static void net_addr_unmap(struct net_addr *a, int *prefix)
{
    if (a->family != AF_INET6 || !is_v4_mapped(a->bytes))
        return;
    if (prefix != NULL) {
        if (*prefix < 96)
            return;     /* wider than the mapped range: keep it IPv6 */
        *prefix -= 96;
    }
    a->family = AF_INET;
    memmove(a->bytes, a->bytes + 12, 4);
    memset(a->bytes + 4, 0, 12);
}

/* Parse a printable address: "1.2.3.4", "::1", "[::1]", "[IPv6:::1]",
 * "fe80::1%eth0" (the zone is ignored). Returns 0 or -1. */
static int parse_addr_text(const char *text, struct net_addr *a)
{
    char buf[INET6_ADDRSTRLEN + 16];
    size_t len = strlen(text);
    char *pct;
    unsigned char bytes[16];

    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len + 1);
    if (buf[0] == '[') {
        if (len < 2 || buf[len - 1] != ']')
            return -1;
        buf[len - 1] = 0;
        memmove(buf, buf + 1, len - 1);
        if (strncasecmp(buf, "IPv6:", 5) == 0)
            memmove(buf, buf + 5, strlen(buf + 5) + 1);
    }
    if ((pct = strchr(buf, '%')) != NULL)
        *pct = 0;
    if (inet_pton(AF_INET, buf, bytes) == 1) {
        net_addr_set(a, AF_INET, bytes);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, bytes) == 1) {
        net_addr_set(a, AF_INET6, bytes);
        return 0;
    }
    return -1;
}

/* "/n" suffix: decimal digits only, at most max. Returns n or -1. */
static int parse_prefix(const char *s, int max)
{
    int n = 0;

    if (*s == 0)
        return -1;
    for (; *s != 0; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        n = n * 10 + (*s - '0');
        if (n > max)
            return -1;
    }
    return n;
}

/* A network item: address and prefix length. Returns 0 or -1. */
static int parse_network(char *item, struct net_addr *net, int *prefix)
{
    char *slash = strrchr(item, '/');
    int max;

    if (slash != NULL)
        *slash = 0;
    if (parse_addr_text(item, net) < 0)
        return -1;
    max = net->family == AF_INET ? 32 : 128;
    if (slash == NULL) {
        *prefix = max;
    } else if ((*prefix = parse_prefix(slash + 1, max)) < 0) {
        *slash = '/';
        return -1;
    }
    if (slash != NULL)
        *slash = '/';
    net_addr_unmap(net, prefix);
    return 0;
}

/* Whether the first prefix bits of a and b agree. */
static int prefix_equal(const unsigned char *a, const unsigned char *b, int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((a[whole] ^ b[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Postfix refuses "1.2.3.4/24"; we only warn, and match the network. */
static void warn_host_bits(const char *item, const struct net_addr *net, int prefix)
{
    int bits = net->family == AF_INET ? 32 : 128;
    int i;

    for (i = prefix; i < bits; i++) {
        if (net->bytes[i / 8] & (0x80 >> (i % 8))) {
            msg_warn("network list item \"%s\": non-null host address bits", item);
            return;
        }
    }
}

/* Whether pattern looks like a host name or ".domain" (not a network). */
static int is_host_pattern(const char *pattern)
{
    if (!*pattern)
        return 0;
    for (const char *c = pattern; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_')
            return 0;
    return 1;
}

/* "host.example" matches that name, ".example" the names under it. */
static int host_pattern_match(const char *pattern, const char *name)
{
    if (pattern[0] != '.')
        return domain_equal(pattern, name);
    size_t lp = domain_len(pattern), ln = domain_len(name);
    return ln > lp && strncasecmp(name + ln - lp, pattern, lp) == 0;
}

/* The walk over a network list, or a host list when name is given. */
static int match_addr_or_name(const char *list, const struct net_addr *client,
                              const char *name)
{
    char item[ITEM_MAX];
    const char *p = list;
    int r;

    if (list == NULL)
        return 0;
    while ((r = strlist_next(&p, item, sizeof(item))) != 0) {
        char *pattern = item;
        struct net_addr net;
        int prefix, negate = 0;

        if (r < 0)
            continue;
        while (*pattern == '!') {
            negate = !negate;
            pattern++;
        }
        if (parse_network(pattern, &net, &prefix) < 0) {
            if (name && !strlist_is_table(pattern) && is_host_pattern(pattern)) {
                if (strcasecmp(name, "unknown") != 0 && host_pattern_match(pattern, name))
                    return !negate;
                continue;
            }
            if (strlist_is_table(pattern) || pattern[0] == '/')
                msg_warn("lookup table \"%s\" in network list not supported yet, skipped",
                         pattern);
            else
                msg_warn("bad network list item \"%s\", skipped", pattern);
            continue;
        }
        warn_host_bits(pattern, &net, prefix);
        if (net.family == client->family && prefix_equal(net.bytes, client->bytes, prefix))
            return !negate;
    }
    return 0;
}

int match_network_list(const char *list, const struct sockaddr *sa)
{
    struct net_addr client;

    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        net_addr_set(&client, AF_INET, &sin->sin_addr);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        net_addr_set(&client, AF_INET6, &sin6->sin6_addr);
        net_addr_unmap(&client, NULL);
    } else {
        return 0;
    }
    return match_addr_or_name(list, &client, NULL);
}

int match_network_list_str(const char *list, const char *addr)
{
    struct net_addr client;

    if (addr == NULL || parse_addr_text(addr, &client) < 0)
        return 0;
    net_addr_unmap(&client, NULL);
    return match_addr_or_name(list, &client, NULL);
}

int match_client_list(const char *list, const char *name, const char *addr)
{
    struct net_addr client;

    if (addr == NULL || parse_addr_text(addr, &client) < 0)
        memset(&client, 0, sizeof(client));   /* family 0: no network matches */
    else
        net_addr_unmap(&client, NULL);
    return match_addr_or_name(list, &client, name ? name : "unknown");
}
