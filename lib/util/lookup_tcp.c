/* lookup_tcp.c - the tcp: table type (tcp_table(5)): tcp:host:port asks a
 * server "get KEY" over one persistent TCP connection and reads one reply
 * line ("200 value", "500 ...", "400 ..."; lookup_reply.c parses it). One
 * of the table types of lookup.c (lookup_type.h); like Postfix, it is
 * asked the complete key only.
 *
 * Every connect, write and read has a deadline (lookup_timeout). A server
 * that is down, slow, closes mid-reply or sends garbage or an over-long
 * line is a temporary failure with a warning, and the connection is
 * dropped, so the next lookup starts afresh and works once the server is
 * back. A reused connection the server had closed is retried once.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_reply.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tcp_table {
    char *spec, *host, *port;
    int fd;
};

static void tcp_disconnect(struct tcp_table *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

/* Read one line (without its newline) into buf of TCP_REPLY_MAX bytes.
 * Its length, or -1 (logged) on EOF, error, time-out or an over-long line;
 * *got tells whether any byte came (a first-byte EOF may be a stale
 * connection, worth one retry). */
static ssize_t tcp_read_line(struct tcp_table *t, char *buf, long long deadline, int *got)
{
    size_t n = 0;

    *got = 0;
    for (;;) {
        ssize_t r = lookup_read_some(t->fd, buf + n, TCP_REPLY_MAX - n, deadline);
        char *nl;
        if (r <= 0) {
            if (r == 0 && n == 0)
                return -1;
            msg_warn("table %s: read from %s:%s: %s", t->spec, t->host, t->port,
                     r == 0 ? "connection closed mid-reply"
                     : errno == ETIMEDOUT ? "timeout" : strerror(errno));
            *got = 1;
            return -1;
        }
        *got = 1;
        n += (size_t)r;
        if ((nl = memchr(buf, '\n', n)) != NULL) {
            if ((size_t)(nl - buf) + 1 != n) {
                msg_warn("table %s: %s:%s sent more than one reply line", t->spec, t->host,
                         t->port);
                return -1;
            }
            return nl - buf;
        }
        if (n == TCP_REPLY_MAX) {
            msg_warn("table %s: reply from %s:%s longer than %d bytes", t->spec, t->host,
                     t->port, TCP_REPLY_MAX);
            return -1;
        }
    }
}

/* One request on a connection (made when there is none). 1 when the
 * reply line is in buf (its length in *len), 0 when a reused connection
 * turned out closed (retry), -1 (logged). */
static int tcp_exchange(struct tcp_table *t, const char *req, char *buf, size_t *len)
{
    long long deadline = lookup_deadline();
    char err[512];
    int reused = t->fd >= 0, got;
    ssize_t n;

    if (reused && !lookup_conn_alive(t->fd)) {
        tcp_disconnect(t);
        reused = 0;
    }
    if (t->fd < 0 && (t->fd = lookup_connect_inet(t->host, t->port, deadline, err,
                                                  sizeof(err))) < 0) {
        msg_warn("table %s: %s", t->spec, err);
        return -1;
    }
    if (lookup_write_all(t->fd, req, strlen(req), deadline) < 0) {
        if (reused)
            return 0;
        msg_warn("table %s: write to %s:%s: %s", t->spec, t->host, t->port,
                 errno == ETIMEDOUT ? "timeout" : strerror(errno));
        return -1;
    }
    if ((n = tcp_read_line(t, buf, deadline, &got)) < 0) {
        if (!got && reused)
            return 0;
        if (!got)
            msg_warn("table %s: read from %s:%s: connection closed", t->spec, t->host, t->port);
        return -1;
    }
    *len = (size_t)n;
    return 1;
}

static int tcp_table_get(void *state, const char *key, char **value)
{
    struct tcp_table *t = state;
    char buf[TCP_REPLY_MAX], why[256] = "";
    char *req;
    size_t len = 0;
    int rc, r;

    /* The key goes as it is: Postfix does not fold it for servers. */
    if (strlen(key) > LOOKUP_KEY_MAX)
        return LOOKUP_NOTFOUND;
    req = lookup_tcp_request(key);
    if ((rc = tcp_exchange(t, req, buf, &len)) == 0) {
        tcp_disconnect(t);
        rc = tcp_exchange(t, req, buf, &len);
    }
    free(req);
    if (rc < 0) {
        tcp_disconnect(t);
        return LOOKUP_TEMPFAIL;
    }
    r = lookup_tcp_reply(buf, len, value, why, sizeof(why));
    if (r == LOOKUP_TEMPFAIL) {
        msg_warn("table %s: lookup of \"%.100s\" failed: %s", t->spec, key, why);
        /* A server that broke the protocol may be out of step. */
        if (len < 3 || memcmp(buf, "400", 3) != 0)
            tcp_disconnect(t);
    }
    return r;
}

static void tcp_table_close(void *state)
{
    struct tcp_table *t = state;

    tcp_disconnect(t);
    free(t->spec);
    free(t->host);
    free(t->port);
    free(t);
}

static int tcp_table_open(const char *spec, const char *name, void **state, char *err,
                          size_t errlen)
{
    struct tcp_table *t = lookup_xmalloc(sizeof(*t));

    memset(t, 0, sizeof(*t));
    if (lookup_split_host_port(name, &t->host, &t->port) < 0) {
        lookup_set_err(err, errlen, "table %s: need tcp:host:port", spec);
        free(t);
        return -1;
    }
    t->spec = lookup_xstrdup(spec);
    t->fd = -1;
    *state = t;
    return 0;
}

const struct lookup_type lookup_type_tcp = {
    .open = tcp_table_open,
    .get = tcp_table_get,
    .close = tcp_table_close,
    .full_key_only = 1,
    .may_block = 1,
};
