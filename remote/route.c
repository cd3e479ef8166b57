/* route.c - from a nexthop to the addresses remote tries, in order
 * (remote.h), the way Postfix's smtp(8) and lmtp(8) find them.
 *
 * "[host]" (and an address literal) skips the MX lookup. Otherwise the MX
 * records of the name are sorted by preference with equal preferences
 * shuffled; a null MX (RFC 7505) bounces with 5.1.10; no MX at all means
 * the name's own A/AAAA records; NXDOMAIN bounces with 5.1.2; SERVFAIL and
 * timeouts defer. Hosts that are this machine (myhostname, or one of the
 * inet_interfaces addresses) and every MX at their preference or worse are
 * dropped, and when nothing is left the mail "loops back to myself" (5.4.6).
 * The addresses of the remaining hosts are then looked up in parallel and
 * flattened, best MX first, to at most smtp_mx_address_limit targets.
 * LMTP's nexthops name a host or a UNIX socket (lmtp_nexthop_parse):
 * never an MX lookup; a socket is the one target.
 * Each target notes whether DNSSEC validated the way to it (the MX
 * RRset, when there was one, and the host's addresses), which DANE needs.
 */
#include "remote.h"
#include "strlist.h"

#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ROUTE_HOSTS_MAX 20     /* MX hosts whose addresses we look up */
#define SELF_ADDR_MAX 64       /* addresses of this host we remember */

struct mx_host {
    char name[DNS_NAME_SIZE];
    unsigned pref;
    struct route *rt;
    struct dns_query *q;       /* while the address lookup runs */
    struct dns_addr addr[DNS_RECORDS_MAX];
    size_t naddr;
    enum dns_status status;
    char why[DNS_ERROR_SIZE];
    int secure;                /* its addresses were validated */
};

struct route {
    struct nexthop nh;
    route_fn fn;
    void *ctx;
    struct dns_query *mxq;
    struct mx_host *hosts;     /* owned */
    size_t nhosts, pending;
    int mx_secure;             /* the MX RRset was validated (1 without MX) */
    struct event *finish;      /* delivers a result decided without DNS */
    struct target *targets;    /* owned */
    size_t ntargets;
    char dsn[16];
    char text[DELIVERY_TEXT_MAX];
};

static struct {
    struct dns_addr addr[SELF_ADDR_MAX];
    size_t n;
} self;

/* --- parsing ----------------------------------------------------------- */

unsigned port_parse(const char *text)
{
    unsigned long port = 0;
    const char *p;

    if (strcasecmp(text, "smtp") == 0)
        return 25;
    if (*text == 0 || strlen(text) > 5)
        return 0;
    for (p = text; *p != 0; p++) {
        if (!isdigit((unsigned char)*p))
            return 0;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    return port > 0 && port <= 65535 ? (unsigned)port : 0;
}

static int copy_name(char *out, const char *start, size_t len)
{
    if (len == 0 || len >= DNS_NAME_SIZE)
        return -1;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)start[i]);
    out[len] = 0;
    return 0;
}

int nexthop_parse(const char *text, unsigned default_port, struct nexthop *nh)
{
    const char *name = text, *name_end, *port = NULL;
    struct dns_addr literal;

    memset(nh, 0, sizeof(*nh));
    nh->mx = 1;
    if (*text == '[') {
        name = text + 1;
        if ((name_end = strchr(name, ']')) == NULL)
            return -1;
        if (name_end[1] == ':')
            port = name_end + 2;
        else if (name_end[1] != 0)
            return -1;
        nh->mx = 0;
    } else {
        name_end = strrchr(text, ':');
        if (name_end != NULL && strchr(text, ':') == name_end)
            port = name_end + 1;
        else if (name_end != NULL)
            return -1;   /* a bare IPv6 address needs brackets */
        else
            name_end = text + strlen(text);
    }
    if (copy_name(nh->name, name, (size_t)(name_end - name)) < 0)
        return -1;
    nh->port = port != NULL ? port_parse(port) : default_port;
    if (nh->port == 0)
        return -1;
    if (dns_addr_parse(nh->name, &literal) == 0) {
        nh->literal = 1;
        nh->mx = 0;
    }
    snprintf(nh->key, sizeof(nh->key), nh->mx ? "%s:%u" : "[%s]:%u", nh->name, nh->port);
    return 0;
}

int lmtp_nexthop_parse(const char *text, unsigned default_port, struct nexthop *nh)
{
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        memset(nh, 0, sizeof(*nh));
        if (!*path || strlen(path) >= sizeof(nh->path))
            return -1;
        for (const char *p = path; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return -1;
        snprintf(nh->path, sizeof(nh->path), "%s", path);
        snprintf(nh->name, sizeof(nh->name), "%s", path);
        snprintf(nh->key, sizeof(nh->key), "unix:%s", path);
        return 0;
    }
    if (strncmp(text, "inet:", 5) == 0)
        text += 5;
    if (nexthop_parse(text, default_port, nh) < 0)
        return -1;
    /* An LMTP server is a host, never a domain's MX. */
    nh->mx = 0;
    snprintf(nh->key, sizeof(nh->key), "[%s]:%u", nh->name, nh->port);
    return 0;
}

/* --- this host --------------------------------------------------------- */

static void self_add(const struct dns_addr *a)
{
    if (self.n < SELF_ADDR_MAX)
        self.addr[self.n++] = *a;
}

static void self_add_interfaces(void)
{
    struct ifaddrs *list, *ifa;

    if (getifaddrs(&list) < 0) {
        msg_warn("cannot list network interfaces: %m");
        return;
    }
    for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
        struct dns_addr a = {0};
        if (ifa->ifa_addr == NULL)
            continue;
        if (ifa->ifa_addr->sa_family == AF_INET) {
            a.family = AF_INET;
            a.u.v4 = ((struct sockaddr_in *)ifa->ifa_addr)->sin_addr;
        } else if (ifa->ifa_addr->sa_family == AF_INET6) {
            a.family = AF_INET6;
            a.u.v6 = ((struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr;
        } else {
            continue;
        }
        self_add(&a);
    }
    freeifaddrs(list);
}

void route_init_self(void)
{
    const char *value = var.inet_interfaces;
    char *buf = malloc(strlen(value) + 1);
    char *items[SELF_ADDR_MAX];
    size_t n;

    if (buf == NULL)
        msg_fatal("out of memory");
    n = strlist_split(value, buf, items, SELF_ADDR_MAX);
    for (size_t i = 0; i < n; i++) {
        struct dns_addr a;
        char *item = items[i];
        size_t len = strlen(item);
        if (strcasecmp(item, "all") == 0) {
            self_add_interfaces();
        } else if (strcasecmp(item, "loopback-only") == 0 || strcasecmp(item, "localhost") == 0) {
            dns_addr_parse("127.0.0.1", &a);
            self_add(&a);
            dns_addr_parse("::1", &a);
            self_add(&a);
        } else {
            if (item[0] == '[' && len > 2 && item[len - 1] == ']') {
                item[len - 1] = 0;
                item++;
            }
            /* Host names would need a lookup; Postfix resolves them at
             * start, we only take literals. */
            if (dns_addr_parse(item, &a) == 0)
                self_add(&a);
        }
    }
    free(buf);
}

static int addr_equal(const struct dns_addr *a, const struct dns_addr *b)
{
    if (a->family != b->family)
        return 0;
    if (a->family == AF_INET)
        return a->u.v4.s_addr == b->u.v4.s_addr;
    return memcmp(&a->u.v6, &b->u.v6, sizeof(a->u.v6)) == 0;
}

static int addr_is_self(const struct dns_addr *a)
{
    for (size_t i = 0; i < self.n; i++)
        if (addr_equal(a, &self.addr[i]))
            return 1;
    return 0;
}

/* Names compare without case and without a trailing dot. */
static int name_is_self(const char *name)
{
    const char *me = remote_cfg.myhostname;
    size_t a = strlen(name), b = strlen(me);

    if (a > 0 && name[a - 1] == '.')
        a--;
    if (b > 0 && me[b - 1] == '.')
        b--;
    return a == b && a > 0 && strncasecmp(name, me, a) == 0;
}

/* --- finishing --------------------------------------------------------- */

static void route_free(struct route *rt)
{
    for (size_t i = 0; i < rt->nhosts; i++)
        if (rt->hosts[i].q != NULL)
            dns_cancel(rt->hosts[i].q);
    if (rt->mxq != NULL)
        dns_cancel(rt->mxq);
    if (rt->finish != NULL)
        event_free(rt->finish);
    free(rt->hosts);
    free(rt->targets);
    free(rt);
}

void route_cancel(struct route *rt)
{
    route_free(rt);
}

static void route_done(struct route *rt)
{
    struct route_result res = {
        .targets = rt->targets,
        .ntargets = rt->ntargets,
        .dsn = rt->dsn,
        .text = rt->text,
    };

    rt->fn(rt->ctx, &res);
    route_free(rt);
}

static void route_finish_cb(evutil_socket_t fd, short what, void *arg)
{
    route_done(arg);
}

/* Decide without waiting for DNS, but answer from the event loop. */
static void route_done_later(struct route *rt)
{
    struct timeval now = {0, 0};

    rt->finish = evtimer_new(remote_base, route_finish_cb, rt);
    if (rt->finish == NULL)
        msg_fatal("out of memory for a route");
    evtimer_add(rt->finish, &now);
}

static void route_fail(struct route *rt, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void route_fail(struct route *rt, const char *dsn, const char *fmt, ...)
{
    va_list ap;

    snprintf(rt->dsn, sizeof(rt->dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(rt->text, sizeof(rt->text), fmt, ap);
    va_end(ap);
}

static void name_service_error(struct route *rt, enum dns_status st, const char *name,
                               const char *type, const char *why, const char *hard_dsn)
{
    route_fail(rt, st == DNS_TEMPFAIL ? "4.4.3" : hard_dsn,
               "Host or domain name not found. Name service error for name=%s type=%s: %s",
               name, type, why != NULL ? why : "unknown error");
}

static unsigned random_below(unsigned bound)
{
    return bound > 1 ? arc4random_uniform(bound) : 0;
}

static void shuffle_addrs(struct dns_addr *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = random_below((unsigned)i);
        struct dns_addr tmp = a[i - 1];
        a[i - 1] = a[j];
        a[j] = tmp;
    }
}

static void add_target(struct route *rt, const char *host, const struct dns_addr *a,
                       int secure)
{
    struct target *t;

    if ((long)rt->ntargets >= remote_cfg.mx_address_limit && remote_cfg.mx_address_limit > 0)
        return;
    t = &rt->targets[rt->ntargets++];
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->addr = *a;
    t->port = rt->nh.port;
    t->dnssec = secure;
}

static const char *addr_type(void)
{
    return (remote_cfg.families & DNS_INET4) ? "A" : "AAAA";
}

/* Every host's addresses are in: drop myself and worse, then flatten. */
static void hosts_resolved(struct route *rt)
{
    size_t limit = rt->nhosts, total = 0;
    const struct mx_host *first_fail = NULL, *tempfail = NULL;

    for (size_t i = 0; i < rt->nhosts; i++) {
        const struct mx_host *h = &rt->hosts[i];
        for (size_t k = 0; k < h->naddr && rt->nh.mx; k++)
            if (addr_is_self(&h->addr[k])) {
                /* This host and every MX as good or worse are out. */
                while (limit > 0 && rt->hosts[limit - 1].pref >= h->pref)
                    limit--;
                break;
            }
        if (limit <= i)
            break;
    }
    if (limit == 0) {
        route_fail(rt, "5.4.6", "mail for %s loops back to myself", rt->nh.name);
        route_done(rt);
        return;
    }
    for (size_t i = 0; i < limit; i++)
        total += rt->hosts[i].naddr;
    if (total > 0 && (rt->targets = calloc(total, sizeof(*rt->targets))) == NULL)
        msg_fatal("out of memory for %zu addresses", total);
    for (size_t i = 0; i < limit; i++) {
        struct mx_host *h = &rt->hosts[i];
        if (h->status != DNS_OK) {
            if (first_fail == NULL)
                first_fail = h;
            if (h->status == DNS_TEMPFAIL && tempfail == NULL)
                tempfail = h;
        }
        shuffle_addrs(h->addr, h->naddr);
        for (size_t k = 0; k < h->naddr; k++)
            add_target(rt, h->name, &h->addr[k], rt->mx_secure && h->secure);
    }
    if (rt->ntargets == 0) {
        const struct mx_host *h = tempfail != NULL ? tempfail : first_fail;
        name_service_error(rt, h != NULL ? h->status : DNS_NODATA,
                           h != NULL ? h->name : rt->nh.name, addr_type(),
                           h != NULL ? h->why : "no address", "5.4.4");
    }
    route_done(rt);
}

static void on_host_addr(void *ctx, enum dns_status status, const struct dns_addr *addr,
                         size_t n, const char *why)
{
    struct mx_host *h = ctx;
    struct route *rt = h->rt;

    h->secure = dns_query_secure(h->q);
    h->q = NULL;
    h->status = status;
    snprintf(h->why, sizeof(h->why), "%s", why != NULL ? why : "");
    for (size_t i = 0; i < n && i < DNS_RECORDS_MAX; i++)
        h->addr[h->naddr++] = addr[i];
    if (--rt->pending == 0)
        hosts_resolved(rt);
}

static void lookup_hosts(struct route *rt)
{
    rt->pending = rt->nhosts;
    for (size_t i = 0; i < rt->nhosts; i++) {
        rt->hosts[i].rt = rt;
        rt->hosts[i].q = dns_lookup_addr(remote_dns, rt->hosts[i].name, remote_cfg.families,
                                         on_host_addr, &rt->hosts[i]);
        if (rt->hosts[i].q == NULL)
            msg_fatal("out of memory for a DNS lookup");
    }
}

static void hosts_alloc(struct route *rt, size_t n)
{
    if ((rt->hosts = calloc(n, sizeof(*rt->hosts))) == NULL)
        msg_fatal("out of memory for %zu MX hosts", n);
}

/* Sorted MX records -> hosts to look up, without the null MX and without
 * myself-by-name and anything as good or worse. Returns -1 when the
 * route was decided (null MX, loop). */
static int take_mx_hosts(struct route *rt, struct dns_mx *mx, size_t n)
{
    size_t limit = n;

    if (n == 1 && (mx[0].host[0] == 0 || strcmp(mx[0].host, ".") == 0)) {
        route_fail(rt, "5.1.10", "Domain %s does not accept mail (nullMX)", rt->nh.name);
        return -1;
    }
    dns_mx_sort(mx, n, random_below);
    for (size_t i = 0; i < limit; i++)
        if (name_is_self(mx[i].host)) {
            while (limit > 0 && mx[limit - 1].pref >= mx[i].pref)
                limit--;
            break;
        }
    if (limit == 0) {
        route_fail(rt, "5.4.6", "mail for %s loops back to myself", rt->nh.name);
        return -1;
    }
    hosts_alloc(rt, limit < ROUTE_HOSTS_MAX ? limit : ROUTE_HOSTS_MAX);
    for (size_t i = 0; i < limit && rt->nhosts < ROUTE_HOSTS_MAX; i++) {
        if (mx[i].host[0] == 0 || strcmp(mx[i].host, ".") == 0)
            continue;   /* a null MX among real ones is a zone mistake */
        snprintf(rt->hosts[rt->nhosts].name, DNS_NAME_SIZE, "%s", mx[i].host);
        rt->hosts[rt->nhosts].pref = mx[i].pref;
        rt->nhosts++;
    }
    if (rt->nhosts == 0) {
        route_fail(rt, "5.1.10", "Domain %s does not accept mail (nullMX)", rt->nh.name);
        return -1;
    }
    return 0;
}

/* The name itself as the only host (no MX, or "[host]"). */
static void take_name_as_host(struct route *rt)
{
    hosts_alloc(rt, 1);
    snprintf(rt->hosts[0].name, DNS_NAME_SIZE, "%s", rt->nh.name);
    rt->nhosts = 1;
}

static void on_mx(void *ctx, enum dns_status status, const struct dns_mx *mx, size_t n,
                  const char *why)
{
    struct route *rt = ctx;
    struct dns_mx copy[DNS_RECORDS_MAX];

    rt->mx_secure = dns_query_secure(rt->mxq);
    rt->mxq = NULL;
    if (status == DNS_NODATA) {
        take_name_as_host(rt);
    } else if (status != DNS_OK) {
        name_service_error(rt, status, rt->nh.name, "MX", why, "5.1.2");
        route_done(rt);
        return;
    } else {
        n = n < DNS_RECORDS_MAX ? n : DNS_RECORDS_MAX;
        memcpy(copy, mx, n * sizeof(*mx));
        if (take_mx_hosts(rt, copy, n) < 0) {
            route_done(rt);
            return;
        }
    }
    lookup_hosts(rt);
}

struct route *route_start(const struct nexthop *nh, route_fn fn, void *ctx)
{
    struct route *rt = calloc(1, sizeof(*rt));

    if (rt == NULL)
        msg_fatal("out of memory for a route");
    rt->nh = *nh;
    rt->fn = fn;
    rt->ctx = ctx;
    if (nh->path[0]) {
        /* A UNIX socket (LMTP): logged as myhostname[path], as Postfix does. */
        if ((rt->targets = calloc(1, sizeof(*rt->targets))) == NULL)
            msg_fatal("out of memory for a route");
        snprintf(rt->targets[0].host, sizeof(rt->targets[0].host), "%s", remote_cfg.myhostname);
        snprintf(rt->targets[0].path, sizeof(rt->targets[0].path), "%s", nh->path);
        rt->ntargets = 1;
        route_done_later(rt);
    } else if (nh->literal) {
        struct dns_addr a;
        dns_addr_parse(nh->name, &a);
        if ((rt->targets = calloc(1, sizeof(*rt->targets))) == NULL)
            msg_fatal("out of memory for a route");
        add_target(rt, nh->name, &a, 0);
        route_done_later(rt);
    } else if (!nh->mx) {
        rt->mx_secure = 1;
        take_name_as_host(rt);
        lookup_hosts(rt);
    } else if ((rt->mxq = dns_lookup_mx(remote_dns, nh->name, on_mx, rt)) == NULL) {
        msg_fatal("out of memory for a DNS lookup");
    }
    return rt;
}
