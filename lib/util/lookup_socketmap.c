/* lookup_socketmap.c - the socketmap: table type (socketmap_table(5)):
 * socketmap:inet:host:port:name or socketmap:unix:/path:name sends the
 * netstring "name key" over one persistent connection and reads one
 * netstring reply ("OK value", "NOTFOUND ", "TEMP/TIMEOUT/PERM reason";
 * lookup_reply.c parses it). One of the table types of lookup.c
 * (lookup_type.h); like Postfix, it is asked the complete key only.
 *
 * Every connect, write and read has a deadline (lookup_timeout); a server
 * that is down, slow, closes mid-reply, or sends garbage or more than
 * 100000 bytes is a temporary failure with a warning, and the connection
 * is dropped so the next lookup starts afresh. A reused connection the
 * server had closed is retried once.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_reply.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A netstring reply: up to 9 digits, ':', the payload and ','. */
#define SOCKETMAP_BUF (SOCKETMAP_REPLY_MAX + 16)

struct socketmap_table {
    char *spec;
    char *path;                  /* unix: socket, or NULL */
    char *host, *port;           /* inet: */
    char *name;                  /* the map name sent with each key */
    char *where;                 /* for messages */
    int fd;
};

static void socketmap_disconnect(struct socketmap_table *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

static int socketmap_connect(struct socketmap_table *t, long long deadline)
{
    char err[512];

    if (t->path != NULL)
        t->fd = lookup_connect_unix(t->path, deadline, err, sizeof(err));
    else
        t->fd = lookup_connect_inet(t->host, t->port, deadline, err, sizeof(err));
    if (t->fd < 0)
        msg_warn("table %s: %s", t->spec, err);
    return t->fd;
}

/* Read one netstring into buf; the payload via data and dlen. 1, 0 when a
 * reused connection gave EOF at once (retry), -1 (logged). */
static int socketmap_read(struct socketmap_table *t, char *buf, long long deadline, int reused,
                          const char **data, size_t *dlen)
{
    size_t n = 0, used;
    char why[128];

    for (;;) {
        ssize_t r = lookup_read_some(t->fd, buf + n, SOCKETMAP_BUF - n, deadline);
        int rc;
        if (r <= 0) {
            if (r == 0 && n == 0 && reused)
                return 0;
            msg_warn("table %s: read from %s: %s", t->spec, t->where,
                     r == 0 ? (n == 0 ? "connection closed" : "connection closed mid-reply")
                     : errno == ETIMEDOUT ? "timeout" : strerror(errno));
            return -1;
        }
        n += (size_t)r;
        rc = lookup_netstring(buf, n, SOCKETMAP_REPLY_MAX, data, dlen, &used, why, sizeof(why));
        if (rc < 0) {
            msg_warn("table %s: bad reply from %s: %s", t->spec, t->where, why);
            return -1;
        }
        if (rc > 0) {
            if (used != n) {
                msg_warn("table %s: %s sent more than one reply", t->spec, t->where);
                return -1;
            }
            return 1;
        }
        if (n == SOCKETMAP_BUF) {   /* cannot happen: lookup_netstring bounds it */
            msg_warn("table %s: reply from %s too long", t->spec, t->where);
            return -1;
        }
    }
}

/* One request; 1 with the payload, 0 to retry on a new connection, -1. */
static int socketmap_exchange(struct socketmap_table *t, const char *req, size_t rlen, char *buf,
                              const char **data, size_t *dlen)
{
    long long deadline = lookup_deadline();
    int reused = t->fd >= 0;

    if (reused && !lookup_conn_alive(t->fd)) {
        socketmap_disconnect(t);
        reused = 0;
    }
    if (t->fd < 0 && socketmap_connect(t, deadline) < 0)
        return -1;
    if (lookup_write_all(t->fd, req, rlen, deadline) < 0) {
        if (reused)
            return 0;
        msg_warn("table %s: write to %s: %s", t->spec, t->where,
                 errno == ETIMEDOUT ? "timeout" : strerror(errno));
        return -1;
    }
    return socketmap_read(t, buf, deadline, reused, data, dlen);
}

static int socketmap_get(void *state, const char *key, char **value)
{
    struct socketmap_table *t = state;
    char *req, *buf, why[256] = "";
    const char *data = NULL;
    size_t rlen, dlen = 0;
    int rc, r;

    /* The key goes as it is: Postfix does not fold it for servers. */
    if (strlen(key) > LOOKUP_KEY_MAX)
        return LOOKUP_NOTFOUND;
    req = lookup_socketmap_request(t->name, key, &rlen);
    buf = lookup_xmalloc(SOCKETMAP_BUF);
    if ((rc = socketmap_exchange(t, req, rlen, buf, &data, &dlen)) == 0) {
        socketmap_disconnect(t);
        rc = socketmap_exchange(t, req, rlen, buf, &data, &dlen);
    }
    free(req);
    if (rc < 0) {
        socketmap_disconnect(t);
        free(buf);
        return LOOKUP_TEMPFAIL;
    }
    r = lookup_socketmap_reply(data, dlen, value, why, sizeof(why));
    free(buf);
    if (r == LOOKUP_TEMPFAIL)
        msg_warn("table %s: lookup of \"%.100s\" failed: %s", t->spec, key, why);
    return r;
}

static void socketmap_close(void *state)
{
    struct socketmap_table *t = state;

    socketmap_disconnect(t);
    free(t->spec);
    free(t->path);
    free(t->host);
    free(t->port);
    free(t->name);
    free(t->where);
    free(t);
}

/* "inet:host:port:name" or "unix:/path:name": the endpoint is everything
 * before the last colon. */
static int socketmap_parse(struct socketmap_table *t, const char *name)
{
    const char *last = strrchr(name, ':');
    char *endpoint;
    int rc = 0;

    if (last == NULL || last[1] == 0)
        return -1;
    t->name = lookup_xstrdup(last + 1);
    endpoint = lookup_xstrndup(name, (size_t)(last - name));
    t->where = lookup_xstrdup(endpoint);
    if (strncmp(endpoint, "unix:", 5) == 0 && endpoint[5] != 0)
        t->path = lookup_xstrdup(endpoint + 5);
    else if (strncmp(endpoint, "inet:", 5) != 0
             || lookup_split_host_port(endpoint + 5, &t->host, &t->port) < 0)
        rc = -1;
    free(endpoint);
    return rc;
}

static int socketmap_open(const char *spec, const char *name, void **state, char *err,
                          size_t errlen)
{
    struct socketmap_table *t = lookup_xmalloc(sizeof(*t));

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    t->spec = lookup_xstrdup(spec);
    if (socketmap_parse(t, name) < 0) {
        lookup_set_err(err, errlen, "table %s: need socketmap:inet:host:port:name or "
                       "socketmap:unix:/path:name", spec);
        socketmap_close(t);
        return -1;
    }
    *state = t;
    return 0;
}

const struct lookup_type lookup_type_socketmap = {
    .open = socketmap_open,
    .get = socketmap_get,
    .close = socketmap_close,
    .full_key_only = 1,
    .may_block = 1,
};
