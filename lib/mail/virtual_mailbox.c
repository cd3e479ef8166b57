/* virtual_mailbox.c - hosted domains (virtual_mailbox.h): which domains are
 * virtual alias or virtual mailbox domains, and which hosted addresses
 * exist. Tables are the cached ones of rewrite.c, so a reload that changes
 * a parameter is noticed and a rebuilt table file is picked up.
 */
#include "virtual_mailbox.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int domain_in(const char *value, const char *domain)
{
    if (!domain || !*domain || !value || !*value)
        return 0;
    return rewrite_match_list(value, domain, 1);
}

int virtual_alias_domain(const char *domain)
{
    return domain_in(var.virtual_alias_domains, domain);
}

int virtual_mailbox_domain(const char *domain)
{
    return domain_in(var.virtual_mailbox_domains, domain);
}

/* addr in the tables of param, keyed as virtual(5) and virtual(8) say. */
static int address_in(enum param_id param, const char *addr, int domain_is_local, char **value)
{
    int failed;
    struct lookup_list *l = rewrite_param_maps(param, &failed);
    const char *delim = var.recipient_delimiter;
    *value = NULL;
    if (!l)
        return failed ? LOOKUP_TEMPFAIL : LOOKUP_NOTFOUND;
    return lookup_list_address(l, addr, domain_is_local, delim ? delim : "", value);
}

int virtual_map_lookup(enum param_id param, const char *addr, char **value)
{
    return address_in(param, addr, 0, value);
}

int virtual_mailbox_lookup(const char *addr, char **path)
{
    return address_in(PARAM_virtual_mailbox_maps, addr, 0, path);
}

/* Whether the path has a ".." component. */
static int climbs(const char *path)
{
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2) {
        int starts = p == path || p[-1] == '/';
        int ends = p[2] == 0 || p[2] == '/';
        if (starts && ends)
            return 1;
    }
    return 0;
}

int virtual_mailbox_path(const char *value, char *out, size_t outlen, char *why, size_t whylen)
{
    const char *base = var.virtual_mailbox_base;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value) {
        snprintf(why, whylen, "empty virtual_mailbox_maps result");
        return -1;
    }
    if (climbs(value)) {
        snprintf(why, whylen, "virtual_mailbox_maps result \"%.100s\" has a \"..\" component",
                 value);
        return -1;
    }
    int n = snprintf(out, outlen, "%s%s%s", base ? base : "",
                     base && *base && base[strlen(base) - 1] != '/' && value[0] != '/' ? "/" : "",
                     value);
    if (n < 0 || (size_t)n >= outlen) {
        snprintf(why, whylen, "mailbox path too long");
        return -1;
    }
    return 0;
}

int virtual_alias_listed(const char *addr)
{
    char *value = NULL;
    const char *domain = address_domain(addr);
    int rc = address_in(PARAM_virtual_alias_maps, addr, rewrite_domain_is_local(domain), &value);
    free(value);
    /* LOOKUP_TEMPFAIL and LOOKUP_PENDING (a deferred lookup) pass on. */
    return rc == LOOKUP_FOUND ? 1 : rc < 0 ? rc : 0;
}

/* The more urgent of two answers that may be failures: pending (ask
 * again later) before temporary failure before anything else. */
static int worst(int a, int b)
{
    return a == LOOKUP_PENDING || b == LOOKUP_PENDING ? LOOKUP_PENDING
           : a == LOOKUP_TEMPFAIL || b == LOOKUP_TEMPFAIL ? LOOKUP_TEMPFAIL
                                                            : 0;
}

int virtual_recipient_check(const char *addr, const char **table)
{
    const char *domain = address_domain(addr);
    char *value = NULL;
    *table = "";
    if (!domain)
        return LOOKUP_FOUND;
    int alias_dom = virtual_alias_domain(domain);
    int mailbox_dom = alias_dom == 1 ? 0 : virtual_mailbox_domain(domain);
    if (worst(alias_dom, mailbox_dom) < 0)
        return worst(alias_dom, mailbox_dom);
    if (alias_dom != 1 && mailbox_dom != 1)
        return LOOKUP_FOUND;
    int listed = virtual_alias_listed(addr);
    if (listed != 0)
        return listed == 1 ? LOOKUP_FOUND : listed;
    if (alias_dom == 1) {
        *table = "virtual alias table";
        return LOOKUP_NOTFOUND;
    }
    int rc = virtual_mailbox_lookup(addr, &value);
    free(value);
    if (rc == LOOKUP_NOTFOUND)
        *table = "virtual mailbox table";
    return rc;
}
