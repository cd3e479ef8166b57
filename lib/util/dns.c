/* dns.c - c-ares inside a libevent loop (dns.h).
 *
 * c-ares tells us through its socket-state callback which of its sockets
 * want reading or writing; each becomes a persistent event of the base, and
 * one timer follows ares_timeout() so that retries and timeouts happen
 * without anyone polling. A lookup is a dns_query: one c-ares query (MX,
 * PTR) or two (A and AAAA), whose parsed results are kept in the query until every
 * part is answered; the caller's callback then runs from a zero-delay event,
 * so it never runs inside dns_lookup_* or inside c-ares.
 *
 * In DNSSEC mode (and for TLSA always) a query is built here with the AD
 * bit set and sent with ares_send; the answer's RCODE is then read here as
 * ares_query would, and its AD bit is kept with the part it answers. TLSA
 * answers are walked by dns_tlsa_parse, a bounded reader of the DNS
 * message (c-ares has no TLSA parser).
 */
#include "dns.h"
#include "strlist.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DNS_TIMEOUT_MS 5000   /* first try; c-ares doubles it per round */
#define DNS_TRIES 2
#define DNS_SERVERS_MAX 1024  /* bytes of the server list we accept */

#define WHY_NOTFOUND "Host not found"
#define WHY_NODATA "Host found but no data record of requested type"
#define WHY_TEMPFAIL "Host not found, try again"
#define WHY_BADREPLY "Malformed or unexpected name server reply"
#define WHY_BADNAME "Malformed domain name"

enum query_kind { QUERY_MX, QUERY_ADDR, QUERY_PTR, QUERY_TLSA };

#define EDNS_UDP_SIZE 1232       /* RFC 9715's safe EDNS0 buffer size */
#define DNS_HEADER_SIZE 12
#define DNS_FLAG_AD 0x20         /* in the fourth header byte */
#define DNS_TYPE_TLSA 52

/* One c-ares socket and the event that watches it. */
struct fd_watch {
    ares_socket_t fd;
    short what;
    struct event *ev;
    struct fd_watch *next;
};

struct dns_resolver {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;
    struct fd_watch *watches;
    struct dns_query *queries;   /* every live query, for dns_resolver_free */
    int destroying;
    int dnssec;                  /* ask for the AD bit */
};

/* The answer of one part of a lookup (the MX query, or A, or AAAA). */
struct part {
    enum dns_status status;
    const char *why;
    int secure;                  /* the answer had the AD bit */
};

struct dns_query {
    struct dns_resolver *r;
    enum query_kind kind;
    dns_mx_fn mx_fn;
    dns_addr_fn addr_fn;
    dns_ptr_fn ptr_fn;
    dns_tlsa_fn tlsa_fn;
    void *ctx;
    int cancelled;
    int pending;                 /* c-ares queries not answered yet */
    int families;                /* of an address lookup: DNS_INET4|DNS_INET6 */
    struct part mx, a, aaaa, ptr, tlsa;
    struct dns_addr ptr_addr;    /* of a PTR lookup */
    struct dns_mx *mxs;          /* owned; up to DNS_RECORDS_MAX */
    size_t nmx;
    struct dns_addr *v4, *v6;    /* owned; up to DNS_RECORDS_MAX each */
    size_t nv4, nv6;
    struct dns_name *names;      /* owned; PTR names, up to DNS_RECORDS_MAX */
    size_t nnames;
    struct dns_tlsa *tlsas;      /* owned; up to DNS_TLSA_MAX */
    unsigned char *tlsa_data;    /* owned; their association data */
    size_t ntlsa;
    struct event *finish;        /* zero-delay event that runs the callback */
    struct dns_query *prev, *next;
};

/* --- c-ares sockets and timer ------------------------------------------- */

static void rearm_timer(struct dns_resolver *r)
{
    struct timeval maxtv = {.tv_sec = 1}, tv;
    struct timeval *next = ares_timeout(r->channel, &maxtv, &tv);

    /* Without queries there is nothing to time out; a spare 1 s tick when
     * ares_timeout has no opinion costs nothing and cannot miss a retry. */
    if (r->queries == NULL)
        evtimer_del(r->timer);
    else
        evtimer_add(r->timer, next);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dns_resolver *r = arg;

    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_timer(r);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct dns_resolver *r = arg;

    ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm_timer(r);
}

static struct fd_watch **watch_find(struct dns_resolver *r, ares_socket_t fd)
{
    struct fd_watch **pp;

    for (pp = &r->watches; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->fd == fd)
            return pp;
    return pp;
}

static void watch_remove(struct fd_watch **pp)
{
    struct fd_watch *w = *pp;

    *pp = w->next;
    event_free(w->ev);
    free(w);
}

/* c-ares opened, changed or closed one of its sockets. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_resolver *r = data;
    struct fd_watch **pp = watch_find(r, fd);
    short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

    if (*pp != NULL && ((*pp)->what == what || what == 0)) {
        if (what == 0)
            watch_remove(pp);
        return;
    }
    if (what == 0)
        return;
    if (*pp != NULL)
        watch_remove(pp);
    struct fd_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;   /* the query then times out through the timer */
    w->fd = fd;
    w->what = what;
    w->ev = event_new(r->base, fd, (short)(what | EV_PERSIST), on_socket, r);
    if (w->ev == NULL || event_add(w->ev, NULL) < 0) {
        if (w->ev != NULL)
            event_free(w->ev);
        free(w);
        return;
    }
    w->next = r->watches;
    r->watches = w;
}

/* --- resolver ----------------------------------------------------------- */

/* dns_servers allows white space as a separator; c-ares wants commas. */
static int servers_csv(const char *servers, char *out, size_t outlen)
{
    size_t n = 0;
    int sep = 0;

    for (const char *p = servers; *p != 0; p++) {
        int is_sep = *p == ',' || isspace((unsigned char)*p);
        if (is_sep) {
            sep = n > 0;
            continue;
        }
        if (n + 3 > outlen)
            return -1;
        if (sep)
            out[n++] = ',';
        sep = 0;
        out[n++] = *p;
    }
    out[n] = 0;
    return 0;
}

static int library_ready(void)
{
    static int done;

    if (!done && ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS)
        done = 1;
    return done;
}

static int set_servers(struct dns_resolver *r, const char *servers, char *err, size_t errlen)
{
    char csv[DNS_SERVERS_MAX];
    int rc;

    if (servers == NULL || *servers == 0)
        return 0;
    if (strlen(servers) >= sizeof(csv) || servers_csv(servers, csv, sizeof(csv)) < 0) {
        snprintf(err, errlen, "dns_servers: list too long");
        return -1;
    }
    if (csv[0] == 0)
        return 0;
    if ((rc = ares_set_servers_ports_csv(r->channel, csv)) != ARES_SUCCESS) {
        snprintf(err, errlen, "dns_servers: bad server list \"%.100s\": %s", servers,
                 ares_strerror(rc));
        return -1;
    }
    return 0;
}

struct dns_resolver *dns_resolver_new(struct event_base *base, const char *servers,
                                      char *err, size_t errlen)
{
    struct ares_options opts;
    struct dns_resolver *r;
    int rc;

    if (!library_ready()) {
        snprintf(err, errlen, "c-ares library initialization failed");
        return NULL;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base = base;
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = on_sock_state;
    opts.sock_state_cb_data = r;
    opts.timeout = DNS_TIMEOUT_MS;
    opts.tries = DNS_TRIES;
    opts.flags = ARES_FLAG_NOSEARCH;
    rc = ares_init_options(&r->channel, &opts,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES
                               | ARES_OPT_FLAGS);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares initialization failed: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if ((r->timer = evtimer_new(base, on_timer, r)) == NULL) {
        snprintf(err, errlen, "cannot create the DNS timer");
        ares_destroy(r->channel);
        free(r);
        return NULL;
    }
    if (set_servers(r, servers, err, errlen) < 0) {
        dns_resolver_free(r);
        return NULL;
    }
    return r;
}

static void query_unlink_free(struct dns_query *q)
{
    struct dns_resolver *r = q->r;

    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        r->queries = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    if (q->finish != NULL)
        event_free(q->finish);
    free(q->mxs);
    free(q->v4);
    free(q->v6);
    free(q->names);
    free(q->tlsas);
    free(q->tlsa_data);
    free(q);
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (r == NULL)
        return;
    r->destroying = 1;
    for (struct dns_query *q = r->queries; q != NULL; q = q->next)
        q->cancelled = 1;
    /* Runs every pending c-ares callback with ARES_EDESTRUCTION. */
    ares_destroy(r->channel);
    while (r->queries != NULL)
        query_unlink_free(r->queries);
    while (r->watches != NULL)
        watch_remove(&r->watches);
    event_free(r->timer);
    free(r);
}

/* --- queries ------------------------------------------------------------ */

static void query_finish_cb(evutil_socket_t fd, short what, void *arg);

static struct dns_query *query_new(struct dns_resolver *r, enum query_kind kind, void *ctx)
{
    struct dns_query *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return NULL;
    if ((q->finish = evtimer_new(r->base, query_finish_cb, q)) == NULL) {
        free(q);
        return NULL;
    }
    q->r = r;
    q->kind = kind;
    q->ctx = ctx;
    q->next = r->queries;
    if (r->queries != NULL)
        r->queries->prev = q;
    r->queries = q;
    return q;
}

static void query_schedule_finish(struct dns_query *q)
{
    struct timeval now = {0, 0};

    if (q->pending == 0 && !q->r->destroying)
        evtimer_add(q->finish, &now);
}

void dns_cancel(struct dns_query *q)
{
    if (q != NULL)
        q->cancelled = 1;
}

static void set_part(struct part *p, enum dns_status status, const char *why)
{
    p->status = status;
    p->why = why;
}

/* c-ares status -> ours. Anything but "does not exist" is worth a retry. */
static void part_from_ares(struct part *p, int status)
{
    switch (status) {
    case ARES_SUCCESS: set_part(p, DNS_OK, NULL); break;
    case ARES_ENOTFOUND: set_part(p, DNS_NOTFOUND, WHY_NOTFOUND); break;
    case ARES_ENODATA: set_part(p, DNS_NODATA, WHY_NODATA); break;
    case ARES_EBADRESP:
    case ARES_EFORMERR: set_part(p, DNS_TEMPFAIL, WHY_BADREPLY); break;
    default: set_part(p, DNS_TEMPFAIL, WHY_TEMPFAIL); break;
    }
}

/* The status ares_query would give an answer that ares_send delivered as
 * it came (RCODE and answer count), and the answer's AD bit into p. */
static int answer_status(int status, const unsigned char *abuf, int alen, struct part *p)
{
    unsigned rcode, ancount;

    p->secure = abuf != NULL && alen >= DNS_HEADER_SIZE && (abuf[3] & DNS_FLAG_AD) != 0;
    if (status != ARES_SUCCESS)
        return status;
    if (abuf == NULL || alen < DNS_HEADER_SIZE)
        return ARES_EBADRESP;
    rcode = abuf[3] & 0x0f;
    ancount = (unsigned)abuf[6] << 8 | abuf[7];
    switch (rcode) {
    case 0: return ancount > 0 ? ARES_SUCCESS : ARES_ENODATA;
    case 2: return ARES_ESERVFAIL;
    case 3: return ARES_ENOTFOUND;
    case 5: return ARES_EREFUSED;
    default: return ARES_EBADRESP;
    }
}

/* A query of type for name: ares_query's, or in DNSSEC mode our own with
 * the AD bit (and EDNS0, so the answer can carry what it needs). */
static void send_query(struct dns_resolver *r, const char *name, int type, int want_ad,
                       ares_callback cb, struct dns_query *q)
{
    unsigned char *buf = NULL;
    int len = 0;

    if (!want_ad) {
        ares_query(r->channel, name, ns_c_in, type, cb, q);
        return;
    }
    if (ares_create_query(name, ns_c_in, type, 0, 1, &buf, &len, EDNS_UDP_SIZE) != ARES_SUCCESS
        || len < DNS_HEADER_SIZE) {
        ares_free_string(buf);
        cb(q, ARES_ENOMEM, 0, NULL, 0);
        return;
    }
    buf[3] |= DNS_FLAG_AD;
    ares_send(r->channel, buf, len, cb, q);
    ares_free_string(buf);
}

/* Whether c-ares is tearing the query down rather than answering it. */
static int ares_gone(int status)
{
    return status == ARES_EDESTRUCTION || status == ARES_ECANCELLED;
}

static void parse_mx(struct dns_query *q, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *list = NULL;
    int rc = ares_parse_mx_reply(abuf, alen, &list);

    if (rc != ARES_SUCCESS) {
        part_from_ares(&q->mx, rc);
        return;
    }
    q->mxs = calloc(DNS_RECORDS_MAX, sizeof(*q->mxs));
    if (q->mxs == NULL) {
        set_part(&q->mx, DNS_TEMPFAIL, WHY_TEMPFAIL);
    } else {
        /* Records beyond DNS_RECORDS_MAX are dropped, as are names that do
         * not fit (c-ares already refused anything longer than 255). */
        for (struct ares_mx_reply *m = list; m != NULL && q->nmx < DNS_RECORDS_MAX; m = m->next) {
            if (m->host == NULL || strlen(m->host) >= DNS_NAME_SIZE)
                continue;
            q->mxs[q->nmx].pref = m->priority;
            strcpy(q->mxs[q->nmx].host, m->host);
            q->nmx++;
        }
        set_part(&q->mx, q->nmx > 0 ? DNS_OK : DNS_NODATA, q->nmx > 0 ? NULL : WHY_NODATA);
    }
    ares_free_data(list);
}

static void on_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;

    q->pending--;
    if (ares_gone(status))
        return;
    status = answer_status(status, abuf, alen, &q->mx);
    if (status == ARES_SUCCESS)
        parse_mx(q, abuf, alen);
    else
        part_from_ares(&q->mx, status);
    query_schedule_finish(q);
}

static void parse_a(struct dns_query *q, const unsigned char *abuf, int alen)
{
    struct ares_addrttl ttl[DNS_RECORDS_MAX];
    int n = DNS_RECORDS_MAX;
    int rc = ares_parse_a_reply(abuf, alen, NULL, ttl, &n);

    if (rc != ARES_SUCCESS) {
        part_from_ares(&q->a, rc);
        return;
    }
    if (n > 0 && (q->v4 = calloc((size_t)n, sizeof(*q->v4))) == NULL) {
        set_part(&q->a, DNS_TEMPFAIL, WHY_TEMPFAIL);
        return;
    }
    for (int i = 0; i < n && i < DNS_RECORDS_MAX; i++) {
        q->v4[i].family = AF_INET;
        q->v4[i].u.v4 = ttl[i].ipaddr;
        q->nv4++;
    }
    set_part(&q->a, n > 0 ? DNS_OK : DNS_NODATA, n > 0 ? NULL : WHY_NODATA);
}

static void parse_aaaa(struct dns_query *q, const unsigned char *abuf, int alen)
{
    struct ares_addr6ttl ttl[DNS_RECORDS_MAX];
    int n = DNS_RECORDS_MAX;
    int rc = ares_parse_aaaa_reply(abuf, alen, NULL, ttl, &n);

    if (rc != ARES_SUCCESS) {
        part_from_ares(&q->aaaa, rc);
        return;
    }
    if (n > 0 && (q->v6 = calloc((size_t)n, sizeof(*q->v6))) == NULL) {
        set_part(&q->aaaa, DNS_TEMPFAIL, WHY_TEMPFAIL);
        return;
    }
    for (int i = 0; i < n && i < DNS_RECORDS_MAX; i++) {
        q->v6[i].family = AF_INET6;
        memcpy(&q->v6[i].u.v6, &ttl[i].ip6addr, sizeof(q->v6[i].u.v6));
        q->nv6++;
    }
    set_part(&q->aaaa, n > 0 ? DNS_OK : DNS_NODATA, n > 0 ? NULL : WHY_NODATA);
}

static void on_a_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;

    q->pending--;
    if (ares_gone(status))
        return;
    status = answer_status(status, abuf, alen, &q->a);
    if (status == ARES_SUCCESS)
        parse_a(q, abuf, alen);
    else
        part_from_ares(&q->a, status);
    query_schedule_finish(q);
}

static void on_aaaa_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;

    q->pending--;
    if (ares_gone(status))
        return;
    status = answer_status(status, abuf, alen, &q->aaaa);
    if (status == ARES_SUCCESS)
        parse_aaaa(q, abuf, alen);
    else
        part_from_ares(&q->aaaa, status);
    query_schedule_finish(q);
}

/* The PTR names of a reply, in its order (c-ares lists every one among
 * the aliases, the first record first); names that do not fit are
 * dropped, as are records beyond DNS_RECORDS_MAX. */
static void keep_ptr_names(struct dns_query *q, const struct hostent *h)
{
    if ((q->names = calloc(DNS_RECORDS_MAX, sizeof(*q->names))) == NULL) {
        set_part(&q->ptr, DNS_TEMPFAIL, WHY_TEMPFAIL);
        return;
    }
    for (size_t i = 0; h->h_aliases != NULL && h->h_aliases[i] != NULL; i++) {
        if (q->nnames == DNS_RECORDS_MAX)
            break;
        if (strlen(h->h_aliases[i]) < DNS_NAME_SIZE)
            strcpy(q->names[q->nnames++].name, h->h_aliases[i]);
    }
    if (q->nnames == 0 && h->h_name != NULL && strlen(h->h_name) < DNS_NAME_SIZE)
        strcpy(q->names[q->nnames++].name, h->h_name);
    set_part(&q->ptr, q->nnames > 0 ? DNS_OK : DNS_NODATA, q->nnames > 0 ? NULL : WHY_NODATA);
}

static void parse_ptr(struct dns_query *q, const unsigned char *abuf, int alen)
{
    const struct dns_addr *a = &q->ptr_addr;
    struct hostent *h = NULL;
    int rc = ares_parse_ptr_reply(abuf, alen, &a->u,
                                  a->family == AF_INET6 ? (int)sizeof(a->u.v6)
                                                        : (int)sizeof(a->u.v4),
                                  a->family, &h);

    if (rc != ARES_SUCCESS) {
        part_from_ares(&q->ptr, rc);
        return;
    }
    keep_ptr_names(q, h);
    ares_free_hostent(h);
}

static void on_ptr_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;

    q->pending--;
    if (ares_gone(status))
        return;
    if (status == ARES_SUCCESS)
        parse_ptr(q, abuf, alen);
    else
        part_from_ares(&q->ptr, status);
    query_schedule_finish(q);
}

/* The verdict of an address lookup from its parts: any address wins; then
 * a temporary failure (the other family might have answered); then
 * NXDOMAIN; else the name has no address records. */
static void merge_addr_parts(const struct dns_query *q, int families, struct part *out)
{
    const struct part *parts[2] = {(families & DNS_INET4) ? &q->a : NULL,
                                   (families & DNS_INET6) ? &q->aaaa : NULL};
    static const enum dns_status order[] = {DNS_TEMPFAIL, DNS_NOTFOUND, DNS_NODATA};

    if (q->nv4 + q->nv6 > 0) {
        set_part(out, DNS_OK, NULL);
        return;
    }
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
        for (size_t i = 0; i < 2; i++)
            if (parts[i] != NULL && parts[i]->status == order[k]) {
                *out = *parts[i];
                return;
            }
    set_part(out, DNS_NODATA, WHY_NODATA);
}

static void finish_addr(struct dns_query *q)
{
    struct dns_addr all[DNS_RECORDS_MAX];
    struct part verdict;
    size_t n = 0;

    merge_addr_parts(q, q->families, &verdict);
    for (size_t i = 0; i < q->nv4 && n < DNS_RECORDS_MAX; i++)
        all[n++] = q->v4[i];
    for (size_t i = 0; i < q->nv6 && n < DNS_RECORDS_MAX; i++)
        all[n++] = q->v6[i];
    q->addr_fn(q->ctx, verdict.status, n ? all : NULL, n, verdict.why);
}

static void query_finish_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_query *q = arg;

    if (!q->cancelled) {
        if (q->kind == QUERY_MX)
            q->mx_fn(q->ctx, q->mx.status, q->nmx ? q->mxs : NULL, q->nmx, q->mx.why);
        else if (q->kind == QUERY_PTR)
            q->ptr_fn(q->ctx, q->ptr.status, q->nnames ? q->names : NULL, q->nnames,
                      q->ptr.why);
        else if (q->kind == QUERY_TLSA)
            q->tlsa_fn(q->ctx, q->tlsa.status, q->ntlsa ? q->tlsas : NULL, q->ntlsa, q->tlsa.why);
        else
            finish_addr(q);
    }
    query_unlink_free(q);
}

int dns_valid_name(const char *name)
{
    size_t len = strlen(name), label = 0;

    if (len == 0 || len > 254 || (len == 254 && name[253] != '.'))
        return 0;
    for (const char *p = name; *p != 0; p++) {
        if (*p == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

struct dns_query *dns_lookup_mx(struct dns_resolver *r, const char *name, dns_mx_fn fn,
                                void *ctx)
{
    struct dns_query *q = query_new(r, QUERY_MX, ctx);

    if (q == NULL)
        return NULL;
    q->mx_fn = fn;
    if (!dns_valid_name(name)) {
        set_part(&q->mx, DNS_NOTFOUND, WHY_BADNAME);
    } else {
        q->pending = 1;
        send_query(r, name, ns_t_mx, r->dnssec, on_mx_answer, q);
    }
    query_schedule_finish(q);
    rearm_timer(r);
    return q;
}

struct dns_query *dns_lookup_addr(struct dns_resolver *r, const char *host, int families,
                                  dns_addr_fn fn, void *ctx)
{
    struct dns_query *q = query_new(r, QUERY_ADDR, ctx);

    if (q == NULL)
        return NULL;
    q->addr_fn = fn;
    q->families = families & (DNS_INET4 | DNS_INET6);
    if (!dns_valid_name(host) || q->families == 0) {
        /* The verdict then comes from the A part alone. */
        set_part(&q->a, DNS_NOTFOUND, WHY_BADNAME);
        q->families = DNS_INET4;
    } else {
        q->pending = ((families & DNS_INET4) != 0) + ((families & DNS_INET6) != 0);
        if (families & DNS_INET4)
            send_query(r, host, ns_t_a, r->dnssec, on_a_answer, q);
        if (families & DNS_INET6)
            send_query(r, host, ns_t_aaaa, r->dnssec, on_aaaa_answer, q);
    }
    query_schedule_finish(q);
    rearm_timer(r);
    return q;
}

struct dns_query *dns_lookup_ptr(struct dns_resolver *r, const struct dns_addr *addr,
                                 dns_ptr_fn fn, void *ctx)
{
    struct dns_query *q = query_new(r, QUERY_PTR, ctx);
    char name[DNS_NAME_SIZE];

    if (q == NULL)
        return NULL;
    q->ptr_fn = fn;
    q->ptr_addr = *addr;
    if (dns_reverse_name(addr, NULL, name, sizeof(name)) < 0) {
        set_part(&q->ptr, DNS_NOTFOUND, WHY_BADNAME);
    } else {
        q->pending = 1;
        ares_query(r->channel, name, ns_c_in, ns_t_ptr, on_ptr_answer, q);
    }
    query_schedule_finish(q);
    rearm_timer(r);
    return q;
}

/* --- TLSA ---------------------------------------------------------------- */

/* The position after the name at pos (labels, or a compression pointer
 * that ends it), or -1 when it runs past the message or is malformed. */
static long skip_name(const unsigned char *m, size_t len, size_t pos)
{
    size_t total = 0;

    while (pos < len) {
        unsigned c = m[pos];
        if (c == 0)
            return (long)pos + 1;
        if ((c & 0xc0) == 0xc0)
            return pos + 1 < len ? (long)pos + 2 : -1;
        if ((c & 0xc0) != 0 || (total += c + 1) > 255)
            return -1;
        pos += 1 + c;
    }
    return -1;
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

long dns_tlsa_parse(const unsigned char *abuf, size_t alen, struct dns_tlsa *out, size_t max,
                    unsigned char *data_buf, size_t data_len)
{
    size_t pos = DNS_HEADER_SIZE, n = 0, used = 0;
    unsigned qd, an;
    long next;

    if (alen < DNS_HEADER_SIZE)
        return -1;
    qd = get16(abuf + 4);
    an = get16(abuf + 6);
    for (unsigned i = 0; i < qd; i++) {
        if ((next = skip_name(abuf, alen, pos)) < 0 || (size_t)next + 4 > alen)
            return -1;
        pos = (size_t)next + 4;
    }
    for (unsigned i = 0; i < an; i++) {
        if ((next = skip_name(abuf, alen, pos)) < 0 || (size_t)next + 10 > alen)
            return -1;
        const unsigned char *rr = abuf + next;
        size_t rdlen = get16(rr + 8);
        if ((size_t)next + 10 + rdlen > alen)
            return -1;
        const unsigned char *rd = rr + 10;
        pos = (size_t)next + 10 + rdlen;
        if (get16(rr) != DNS_TYPE_TLSA || get16(rr + 2) != ns_c_in || rdlen < 3)
            continue;   /* CNAMEs on the way, RRSIGs, or nothing we can use */
        size_t dlen = rdlen - 3;
        if (n >= max || dlen == 0 || dlen > DNS_TLSA_DATA_MAX || used + dlen > data_len)
            continue;
        out[n] = (struct dns_tlsa){.usage = rd[0], .selector = rd[1], .mtype = rd[2],
                                   .len = dlen, .data = data_buf + used};
        memcpy(data_buf + used, rd + 3, dlen);
        used += dlen;
        n++;
    }
    return (long)n;
}

static void parse_tlsa(struct dns_query *q, const unsigned char *abuf, int alen)
{
    long n;

    q->tlsas = calloc(DNS_TLSA_MAX, sizeof(*q->tlsas));
    q->tlsa_data = malloc((size_t)alen);
    if (q->tlsas == NULL || q->tlsa_data == NULL) {
        set_part(&q->tlsa, DNS_TEMPFAIL, WHY_TEMPFAIL);
        return;
    }
    n = dns_tlsa_parse(abuf, (size_t)alen, q->tlsas, DNS_TLSA_MAX, q->tlsa_data, (size_t)alen);
    if (n < 0) {
        set_part(&q->tlsa, DNS_TEMPFAIL, WHY_BADREPLY);
        return;
    }
    q->ntlsa = (size_t)n;
    set_part(&q->tlsa, n > 0 ? DNS_OK : DNS_NODATA, n > 0 ? NULL : WHY_NODATA);
}

static void on_tlsa_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;

    q->pending--;
    if (ares_gone(status))
        return;
    status = answer_status(status, abuf, alen, &q->tlsa);
    if (status == ARES_SUCCESS)
        parse_tlsa(q, abuf, alen);
    else
        part_from_ares(&q->tlsa, status);
    query_schedule_finish(q);
}

struct dns_query *dns_lookup_tlsa(struct dns_resolver *r, const char *name, dns_tlsa_fn fn,
                                  void *ctx)
{
    struct dns_query *q = query_new(r, QUERY_TLSA, ctx);

    if (q == NULL)
        return NULL;
    q->tlsa_fn = fn;
    if (!dns_valid_name(name)) {
        set_part(&q->tlsa, DNS_NOTFOUND, WHY_BADNAME);
    } else {
        q->pending = 1;
        send_query(r, name, DNS_TYPE_TLSA, 1, on_tlsa_answer, q);
    }
    query_schedule_finish(q);
    rearm_timer(r);
    return q;
}

void dns_resolver_set_dnssec(struct dns_resolver *r, int on)
{
    r->dnssec = on;
}

int dns_query_secure(const struct dns_query *q)
{
    switch (q->kind) {
    case QUERY_MX:
        return q->mx.secure;
    case QUERY_TLSA:
        return q->tlsa.secure;
    default:
        return (!(q->families & DNS_INET4) || q->a.secure)
               && (!(q->families & DNS_INET6) || q->aaaa.secure);
    }
}

/* --- helpers ------------------------------------------------------------- */

int dns_reverse_name(const struct dns_addr *addr, const char *domain, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = (const unsigned char *)&addr->u;
    char nibbles[64 + 1];
    int w;

    if (addr->family == AF_INET) {
        w = snprintf(out, outlen, "%u.%u.%u.%u.%s", b[3], b[2], b[1], b[0],
                     domain != NULL ? domain : "in-addr.arpa");
    } else if (addr->family == AF_INET6) {
        for (int i = 0; i < 16; i++) {
            nibbles[4 * i] = hex[b[15 - i] & 15];
            nibbles[4 * i + 1] = '.';
            nibbles[4 * i + 2] = hex[b[15 - i] >> 4];
            nibbles[4 * i + 3] = '.';
        }
        nibbles[64] = 0;
        w = snprintf(out, outlen, "%s%s", nibbles, domain != NULL ? domain : "ip6.arpa");
    } else {
        return -1;
    }
    return w > 0 && (size_t)w < outlen ? 0 : -1;
}

static int mx_pref_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;

    return x->pref < y->pref ? -1 : x->pref > y->pref;
}

void dns_mx_sort(struct dns_mx *mx, size_t n, unsigned (*rnd)(unsigned bound))
{
    size_t start = 0;

    if (n < 2)
        return;
    qsort(mx, n, sizeof(*mx), mx_pref_cmp);
    while (start < n) {
        size_t end = start + 1;
        while (end < n && mx[end].pref == mx[start].pref)
            end++;
        /* Fisher-Yates over the run [start, end). */
        for (size_t i = end - 1; i > start; i--) {
            size_t j = start + rnd((unsigned)(i - start + 1));
            if (j != i) {
                struct dns_mx tmp = mx[i];
                mx[i] = mx[j];
                mx[j] = tmp;
            }
        }
        start = end;
    }
}

int dns_families(const char *inet_protocols)
{
    char buf[256], *items[8];
    size_t n;
    int families = 0;

    if (inet_protocols == NULL || strlen(inet_protocols) >= sizeof(buf))
        return 0;
    n = strlist_split(inet_protocols, buf, items, 8);
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(items[i], "all") == 0)
            families |= DNS_INET4 | DNS_INET6;
        else if (strcasecmp(items[i], "ipv4") == 0)
            families |= DNS_INET4;
        else if (strcasecmp(items[i], "ipv6") == 0)
            families |= DNS_INET6;
    }
    return families;
}

void dns_addr_str(const struct dns_addr *addr, char *out, size_t outlen)
{
    if (inet_ntop(addr->family, &addr->u, out, (socklen_t)outlen) == NULL && outlen > 0)
        snprintf(out, outlen, "?");
}

int dns_addr_parse(const char *text, struct dns_addr *addr)
{
    memset(addr, 0, sizeof(*addr));
    if (strncasecmp(text, "IPv6:", 5) == 0) {
        addr->family = AF_INET6;
        return inet_pton(AF_INET6, text + 5, &addr->u.v6) == 1 ? 0 : -1;
    }
    if (inet_pton(AF_INET, text, &addr->u.v4) == 1) {
        addr->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &addr->u.v6) == 1) {
        addr->family = AF_INET6;
        return 0;
    }
    return -1;
}
