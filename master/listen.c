/* listen.c - master's listening descriptors (see master.h).
 *
 * An inet service name is "host:port", "[v6addr]:port", or just a port
 * (number or service name); without a host it listens on inet_interfaces.
 * Each address becomes its own listener (and so its own process pool),
 * because a child receives exactly one listening socket on fd 3; for the
 * same reason "all" with both protocols is one dual-stack [::] socket.
 * unix services are stream sockets and fifo services are fifos under
 * queue_directory/private or queue_directory/public (the private column).
 */
#include "master.h"
#include "strlist.h"
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HOST_MAX 256
#define MAX_ADDRS 64          /* addresses of one inet service */
#define MAX_LIST_ITEMS 64     /* items of inet_interfaces / inet_protocols */

#define MODE_PRIVATE_SOCKET 0600
#define MODE_PUBLIC_SOCKET 0666
#define MODE_PRIVATE_FIFO 0600
#define MODE_PUBLIC_FIFO 0622   /* anyone may wake it, only the owner reads */

struct protocols {
    int v4, v6;
};

/* An address list under construction for one inet service. */
struct addr_list {
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t len[MAX_ADDRS];
    size_t n;
};

/* Split a list parameter; items point into *buf, which the caller frees. */
static size_t split_list(const char *value, char **buf, char **items, size_t max)
{
    *buf = malloc(strlen(value) + 1);
    if (!*buf)
        return 0;
    return strlist_split(value, *buf, items, max);
}

static void protocols_parse(const char *value, struct protocols *pr)
{
    char *buf, *items[MAX_LIST_ITEMS];
    size_t n = split_list(value, &buf, items, MAX_LIST_ITEMS);
    pr->v4 = pr->v6 = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(items[i], "all") == 0)
            pr->v4 = pr->v6 = 1;
        else if (strcasecmp(items[i], "ipv4") == 0)
            pr->v4 = 1;
        else if (strcasecmp(items[i], "ipv6") == 0)
            pr->v6 = 1;
        else
            msg_warn("inet_protocols: unknown protocol \"%s\" ignored", items[i]);
    }
    if (!pr->v4 && !pr->v6)
        pr->v4 = 1;
    free(buf);
}

/* Ports by name for systems without /etc/services (minimal containers). */
static int well_known_port(const char *name)
{
    static const struct {
        const char *name;
        int port;
    } table[] = {{"smtp", 25}, {"submission", 587}, {"smtps", 465}, {"submissions", 465}};
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].port;
    return -1;
}

static int port_parse(const char *s, int *port)
{
    char *end;
    if (*s >= '0' && *s <= '9') {
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v < 1 || v > 65535)
            return -1;
        *port = (int)v;
        return 0;
    }
    struct servent *se = getservbyname(s, "tcp");
    *port = se ? ntohs((unsigned short)se->s_port) : well_known_port(s);
    return *port > 0 ? 0 : -1;
}

/* "host:port", "[host]:port" or "port"; host is "" when absent. */
static int split_inet_name(const char *name, char *host, size_t hostlen, const char **port)
{
    const char *hstart = name, *hend;
    if (name[0] == '[') {
        hstart = name + 1;
        hend = strchr(hstart, ']');
        if (!hend || hend[1] != ':')
            return -1;
        *port = hend + 2;
    } else {
        const char *colon = strrchr(name, ':');
        hend = colon ? colon : name;
        *port = colon ? colon + 1 : name;
    }
    size_t len = (size_t)(hend - hstart);
    if (len >= hostlen || !**port)
        return -1;
    memcpy(host, hstart, len);
    host[len] = 0;
    if (strcmp(host, "*") == 0)
        host[0] = 0;
    return 0;
}

static void addr_set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((unsigned short)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((unsigned short)port);
}

static void addr_list_add(struct addr_list *l, const struct sockaddr *sa, socklen_t len)
{
    if (l->n == MAX_ADDRS || len > sizeof(l->addr[0]))
        return;
    for (size_t i = 0; i < l->n; i++)
        if (l->len[i] == len && memcmp(&l->addr[i], sa, len) == 0)
            return;
    memset(&l->addr[l->n], 0, sizeof(l->addr[0]));
    memcpy(&l->addr[l->n], sa, len);
    l->len[l->n++] = len;
}

/* Every address of host (numeric or a name) that an enabled protocol takes. */
static int resolve_host(const char *host, int port, const struct protocols *pr,
                        struct addr_list *l, char *err, size_t errlen)
{
    char bare[HOST_MAX];
    size_t hl = strlen(host);
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']' && hl - 2 < sizeof(bare)) {
        memcpy(bare, host + 1, hl - 2);
        bare[hl - 2] = 0;
    } else if (hl < sizeof(bare)) {
        memcpy(bare, host, hl + 1);
    } else {
        snprintf(err, errlen, "host name too long");
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(bare, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "host %s: %s", bare, gai_strerror(rc));
        return -1;
    }
    size_t before = l->n;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if ((ai->ai_family == AF_INET && pr->v4) || (ai->ai_family == AF_INET6 && pr->v6)) {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof(ss));
            memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
            addr_set_port(&ss, port);
            addr_list_add(l, (struct sockaddr *)&ss, ai->ai_addrlen);
        }
    }
    freeaddrinfo(res);
    if (l->n == before) {
        snprintf(err, errlen, "host %s: no address for the enabled inet_protocols", bare);
        return -1;
    }
    return 0;
}

static void add_v4(struct addr_list *l, in_addr_t a, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sin.sin_addr.s_addr = htonl(a);
    addr_list_add(l, (struct sockaddr *)&sin, sizeof(sin));
}

static void add_v6(struct addr_list *l, const struct in6_addr *a, int port)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6,
                                .sin6_port = htons((unsigned short)port)};
    sin6.sin6_addr = *a;
    addr_list_add(l, (struct sockaddr *)&sin6, sizeof(sin6));
}

/* "inet:ADDR:PORT" ([ADDR] for IPv6), or "inet:*:PORT" for the dual-stack
 * wildcard. The caller frees it. */
static char *inet_key(const struct sockaddr_storage *ss, socklen_t len, int dual)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV], *key = NULL;
    if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return NULL;
    int rc;
    if (dual)
        rc = asprintf(&key, "inet:*:%s", serv);
    else if (ss->ss_family == AF_INET6)
        rc = asprintf(&key, "inet:[%s]:%s", host, serv);
    else
        rc = asprintf(&key, "inet:%s:%s", host, serv);
    return rc < 0 ? NULL : key;
}

/* The interfaces to use when the service name has no host. */
static int interface_addresses(const struct master_params *p, const struct protocols *pr,
                               int port, struct addr_list *l, int *dual, char *err,
                               size_t errlen)
{
    char *buf, *items[MAX_LIST_ITEMS];
    size_t n = split_list(p->inet_interfaces, &buf, items, MAX_LIST_ITEMS);
    int rc = 0;
    *dual = 0;
    if (n == 0) {
        snprintf(err, errlen, "inet_interfaces is empty");
        rc = -1;
    } else if (n == 1 && strcasecmp(items[0], "all") == 0) {
        if (pr->v6) {
            add_v6(l, &in6addr_any, port);
            *dual = pr->v4;
        } else {
            add_v4(l, INADDR_ANY, port);
        }
    } else {
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (strcasecmp(items[i], "loopback-only") == 0) {
                if (pr->v4)
                    add_v4(l, INADDR_LOOPBACK, port);
                if (pr->v6)
                    add_v6(l, &in6addr_loopback, port);
            } else if (strcasecmp(items[i], "all") == 0) {
                snprintf(err, errlen, "inet_interfaces: \"all\" cannot be combined with "
                         "other values");
                rc = -1;
            } else {
                rc = resolve_host(items[i], port, pr, l, err, errlen);
            }
        }
    }
    free(buf);
    return rc;
}

static int expand_inet(const struct mastercf_entry *e, const struct master_params *p,
                       struct listen_spec **specs, size_t *nspecs, char *err, size_t errlen)
{
    char host[HOST_MAX];
    const char *port_text;
    int port, dual = 0;
    struct protocols pr;
    struct addr_list *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    protocols_parse(p->inet_protocols, &pr);
    int rc = -1;
    if (split_inet_name(e->name, host, sizeof(host), &port_text) < 0)
        snprintf(err, errlen, "bad inet service name \"%s\"", e->name);
    else if (port_parse(port_text, &port) < 0)
        snprintf(err, errlen, "unknown port \"%s\" in inet service \"%s\"", port_text, e->name);
    else if (host[0])
        rc = resolve_host(host, port, &pr, l, err, errlen);
    else
        rc = interface_addresses(p, &pr, port, l, &dual, err, errlen);
    if (rc == 0) {
        int have_v4 = 0;
        for (size_t i = 0; i < l->n; i++)
            have_v4 |= l->addr[i].ss_family == AF_INET;
        *specs = calloc(l->n, sizeof(**specs));
        if (!*specs) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < l->n; i++) {
            struct listen_spec *s = &(*specs)[i];
            s->type = MASTERCF_INET;
            s->addr = l->addr[i];
            s->addrlen = l->len[i];
            s->dual_stack = dual;
            s->v6_optional = have_v4 && l->addr[i].ss_family == AF_INET6;
            s->key = inet_key(&s->addr, s->addrlen, dual);
            *nspecs = i + 1;
            if (!s->key) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
            }
        }
    }
    free(l);
    return rc;
}

static int expand_local(const struct mastercf_entry *e, const struct master_params *p,
                        struct listen_spec **specs, size_t *nspecs, char *err, size_t errlen)
{
    struct listen_spec *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *specs = s;
    *nspecs = 1;
    s->type = e->type;
    s->private_ = e->private_;
    if (asprintf(&s->path, "%s/%s/%s", p->queue_dir, e->private_ ? "private" : "public",
                 e->name) < 0) {
        s->path = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (e->type == MASTERCF_UNIX &&
        strlen(s->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", s->path);
        return -1;
    }
    if (asprintf(&s->key, "%s:%s", e->type == MASTERCF_UNIX ? "unix" : "fifo", s->path) < 0) {
        s->key = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int listen_expand(const struct mastercf_entry *e, const struct master_params *p,
                  struct listen_spec **specs, size_t *nspecs, char *err, size_t errlen)
{
    *specs = NULL;
    *nspecs = 0;
    switch (e->type) {
    case MASTERCF_INET:
        return expand_inet(e, p, specs, nspecs, err, errlen);
    case MASTERCF_UNIX:
    case MASTERCF_FIFO:
        return expand_local(e, p, specs, nspecs, err, errlen);
    case MASTERCF_UNIX_DGRAM:
    case MASTERCF_PASS:
        break;
    }
    snprintf(err, errlen, "service type \"%s\" is not run by master", mastercf_type_name(e->type));
    return -1;
}

void listen_spec_free(struct listen_spec *s)
{
    free(s->path);
    free(s->key);
    s->path = s->key = NULL;
}

/* --- opening --- */

static int open_inet(const struct sockaddr *sa, socklen_t len, int v6only)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0) ||
        bind(fd, sa, len) < 0 || listen(fd, MASTER_LISTEN_BACKLOG) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int listen_open_inet(const struct listen_spec *s, char *err, size_t errlen)
{
    const char *shown = s->key + strlen("inet:");
    int fd = open_inet((const struct sockaddr *)&s->addr, s->addrlen, !s->dual_stack);
    if (fd >= 0 || !s->dual_stack) {
        if (fd < 0)
            snprintf(err, errlen, "bind %s: %s", shown, strerror(errno));
        return fd < 0 ? (s->v6_optional ? -2 : -1) : fd;
    }
    /* No IPv6 here: the wildcard falls back to IPv4 only. */
    int saved = errno;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY),
                              .sin_port = ((const struct sockaddr_in6 *)&s->addr)->sin6_port};
    fd = open_inet((const struct sockaddr *)&sin, sizeof(sin), 0);
    if (fd < 0) {
        snprintf(err, errlen, "bind 0.0.0.0:%u: %s", ntohs(sin.sin_port), strerror(errno));
        return -1;
    }
    msg_warn("bind [::]:%u: %s; listening on IPv4 only", ntohs(sin.sin_port),
             strerror(saved));
    return fd;
}

/* Give the socket or fifo its mode and, in system mode, to mail_owner so
 * that unprivileged daemons can connect to it. */
static int set_owner_mode(const char *path, mode_t mode, const struct master_params *p)
{
    if (chmod(path, mode) < 0)
        return -1;
    if (p->chown_sockets && chown(path, p->owner_uid, p->owner_gid) < 0)
        return -1;
    return 0;
}

static int remove_stale(const char *path)
{
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

static int listen_open_unix(const struct listen_spec *s, int private_,
                            const struct master_params *p, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(s->path);
    if (len >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", s->path);
        return -1;
    }
    memcpy(sun.sun_path, s->path, len + 1);
    if (remove_stale(s->path) < 0) {
        snprintf(err, errlen, "remove %s: %s", s->path, strerror(errno));
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        set_owner_mode(s->path, private_ ? MODE_PRIVATE_SOCKET : MODE_PUBLIC_SOCKET, p) < 0 ||
        listen(fd, MASTER_LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "listen on %s: %s", s->path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int listen_open_fifo(const struct listen_spec *s, int private_,
                            const struct master_params *p, char *err, size_t errlen)
{
    mode_t mode = private_ ? MODE_PRIVATE_FIFO : MODE_PUBLIC_FIFO;
    if (remove_stale(s->path) < 0) {
        snprintf(err, errlen, "remove %s: %s", s->path, strerror(errno));
        return -1;
    }
    if (mkfifo(s->path, mode) < 0 || set_owner_mode(s->path, mode, p) < 0) {
        snprintf(err, errlen, "create fifo %s: %s", s->path, strerror(errno));
        return -1;
    }
    /* Read-write, so that the fifo never reports EOF to the service when
     * the last writer goes away. */
    int fd = open(s->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        snprintf(err, errlen, "open fifo %s: %s", s->path, strerror(errno));
    return fd;
}

int listen_open(const struct listen_spec *s, const struct master_params *p, char *err,
                size_t errlen)
{
    switch (s->type) {
    case MASTERCF_INET:
        return listen_open_inet(s, err, errlen);
    case MASTERCF_UNIX:
        return listen_open_unix(s, s->private_, p, err, errlen);
    case MASTERCF_FIFO:
        return listen_open_fifo(s, s->private_, p, err, errlen);
    case MASTERCF_UNIX_DGRAM:
    case MASTERCF_PASS:
        break;
    }
    snprintf(err, errlen, "service type \"%s\" is not run by master", mastercf_type_name(s->type));
    return -1;
}

void listen_close(const struct listen_spec *s, int fd)
{
    if (fd >= 0)
        close(fd);
    if (s->path && unlink(s->path) < 0 && errno != ENOENT)
        msg_warn("remove %s: %m", s->path);
}

/* Connect to our own unix listener and write the wake-up byte; the
 * connection waits in the backlog until a process of the service takes it. */
static void trigger_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(sun.sun_path))
        return;
    memcpy(sun.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
        ssize_t n = write(fd, "W", 1);
        (void)n;
    }
    close(fd);
}

void listen_trigger(const struct listen_spec *s, int fd)
{
    if (s->type == MASTERCF_FIFO && fd >= 0) {
        /* Non-blocking: a full fifo already holds a wake-up. */
        ssize_t n = write(fd, "W", 1);
        (void)n;
    } else if (s->type == MASTERCF_UNIX) {
        trigger_unix(s->path);
    }
}
