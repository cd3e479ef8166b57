/* proxy.c - reading the PROXY header before the greeting (proxy.h).
 *
 * The header must be taken without reading a byte past it: a client's
 * first command may follow in the same segment. So each round peeks at
 * what is there, parses the header read so far plus that, and consumes
 * exactly the header's remaining bytes when it is complete, or all of
 * what was peeked when it is not (every one of those bytes is then part
 * of the header, so nothing is taken from the SMTP stream, and the next
 * readable event means new bytes). The buffer and the time are bounded:
 * PROXY_HEADER_MAX bytes, smtpd_upstream_proxy_timeout from the accept.
 */
#include "proxy.h"
#include "session.h"
#include "smtpd.h"

#include "log.h"
#include "params.h"
#include "proxy_proto.h"

#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct smtpd_proxy_read {
    struct event *ev;
    double deadline;                  /* CLOCK_MONOTONIC seconds */
    unsigned char buf[PROXY_HEADER_MAX];
    size_t len;
    struct sockaddr_storage peer;     /* the connection's own */
    smtpd_proxy_done_fn done;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int smtpd_proxy_enabled(void)
{
    const char *v = var.smtpd_upstream_proxy_protocol;
    if (smtpd_cfg.stand_alone || !*v)
        return 0;
    if (strcasecmp(v, "haproxy") != 0) {
        static int warned;
        if (!warned++)
            msg_warn("unsupported smtpd_upstream_proxy_protocol value \"%s\"; expected "
                     "\"haproxy\" or empty: no PROXY header is read",
                     v);
        return 0;
    }
    return 1;
}

void smtpd_proxy_free(struct session *s)
{
    if (!s->proxy)
        return;
    if (s->proxy->ev)
        event_free(s->proxy->ev);
    free(s->proxy);
    s->proxy = NULL;
}

/* The bytes as the log line shows them: printable ones as they are,
 * others as C escapes. */
static void escape_bytes(const unsigned char *b, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < outlen; i++) {
        unsigned char c = b[i];
        if (c == '\r')
            o += (size_t)snprintf(out + o, outlen - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(out + o, outlen - o, "\\n");
        else if (c < 0x20 || c >= 0x7f || c == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\%03o", c);
        else
            out[o++] = (char)c;
    }
    out[o] = 0;
}

/* Postfix's warning for a header that failed; the session goes on as the
 * connection's own client, to be refused. */
static void fail(struct session *s, const char *why, const unsigned char *b, size_t n)
{
    if (b) {
        char text[PROXY_HEADER_MAX * 4 + 1];
        escape_bytes(b, n, text, sizeof(text));
        msg_warn("haproxy read: %s: %s", why, text);
    } else {
        msg_warn("haproxy read: %s", why);
    }
    struct sockaddr_storage peer = s->proxy->peer;
    smtpd_proxy_done_fn done = s->proxy->done;
    smtpd_proxy_free(s);
    done(s, &peer, 0);
}

static int wait_more(struct session *s)
{
    double left = s->proxy->deadline - now();
    if (left <= 0)
        return -1;
    struct timeval tv = {.tv_sec = (time_t)left,
                         .tv_usec = (suseconds_t)((left - floor(left)) * 1e6)};
    return event_add(s->proxy->ev, &tv);
}

static void header_event(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    struct smtpd_proxy_read *p = s->proxy;
    if (what & EV_TIMEOUT) {
        fail(s, "timeout error", NULL, 0);
        return;
    }
    ssize_t n = recv(fd, p->buf + p->len, sizeof(p->buf) - p->len, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (wait_more(s) < 0)
            fail(s, "timeout error", NULL, 0);
        return;
    }
    if (n <= 0) {
        fail(s, n == 0 ? "EOF" : strerror(errno), NULL, 0);
        return;
    }
    struct proxy_header h;
    const char *why;
    size_t have = p->len + (size_t)n;
    long r = proxy_header_parse(p->buf, have, &h, &why);
    if (r < 0) {
        /* Take what was peeked, so that the refusal reaches the client
         * before a close that would otherwise reset the connection. */
        if (recv(fd, p->buf + p->len, (size_t)n, 0) < 0)
            have = p->len;
        fail(s, why, p->buf, have);
        return;
    }
    size_t take = r > 0 ? (size_t)r - p->len : (size_t)n;
    if (recv(fd, p->buf + p->len, take, 0) != (ssize_t)take) {
        fail(s, "read error", NULL, 0);
        return;
    }
    p->len += take;
    if (r == 0) {
        if (wait_more(s) < 0)
            fail(s, "timeout error", NULL, 0);
        return;
    }
    struct sockaddr_storage client = h.local ? p->peer : h.client;
    smtpd_proxy_done_fn done = p->done;
    smtpd_proxy_free(s);
    done(s, &client, 1);
}

int smtpd_proxy_start(struct session *s, const struct sockaddr_storage *peer,
                      smtpd_proxy_done_fn done)
{
    struct smtpd_proxy_read *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    p->ev = event_new(smtpd_base, s->fd, EV_READ, header_event, s);
    if (!p->ev) {
        free(p);
        return -1;
    }
    p->peer = *peer;
    p->done = done;
    p->deadline = now() + (double)var.smtpd_upstream_proxy_timeout;
    s->proxy = p;
    if (wait_more(s) < 0) {
        smtpd_proxy_free(s);
        return -1;
    }
    return 0;
}
