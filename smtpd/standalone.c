/* standalone.c - stand-alone mode (standalone.h), as Postfix's smtpd -S.
 *
 * The session is the one every client gets (session.c), with the policies
 * of a local user's submission: no TLS, AUTH or restrictions, and each
 * message through postdrop (submit.c) like any other local submission, so
 * that mail is taken even while the mail system is down.
 *
 * A session reads and writes one socket, while standard input and output
 * are two descriptors of any kind (pipes, a terminal, regular files): a
 * socket pair joins them, and a pump moves bytes from standard input into
 * it and from it to standard output. The loop is poll's, which, unlike
 * epoll, takes regular files. The end of standard input reaches the
 * session as a half-close, and the session still answers everything that
 * came before it (session.c). The process ends once the session is over
 * and its last reply is out.
 */
#include "standalone.h"
#include "postdrop.h"
#include "session.h"
#include "smtpd.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#define PUMP_HIGH_WATER (256 * 1024)   /* bytes in flight before the pump waits */

static struct {
    struct bufferevent *in;     /* standard input */
    struct bufferevent *out;    /* standard output */
    struct bufferevent *pump;   /* our end of the socket pair */
    int in_ended;
    int session_over;
    int status;
} sa;

static void drop(struct bufferevent **bev)
{
    if (*bev) {
        bufferevent_free(*bev);
        *bev = NULL;
    }
}

static size_t pending(struct bufferevent *bev)
{
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* Over once the session is, and all it said has reached standard output
 * (or nobody reads it any more). */
static void maybe_done(void)
{
    if (sa.session_over && !sa.pump && pending(sa.out) == 0)
        event_base_loopbreak(smtpd_base);
}

/* All of standard input is in the socket pair: the session sees its end. */
static void maybe_half_close(void)
{
    if (sa.in_ended && sa.pump && pending(sa.pump) == 0)
        shutdown(bufferevent_getfd(sa.pump), SHUT_WR);
}

static void in_read_cb(struct bufferevent *bev, void *arg)
{
    if (!sa.pump) {
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    bufferevent_write_buffer(sa.pump, bufferevent_get_input(bev));
    if (pending(sa.pump) > PUMP_HIGH_WATER)
        bufferevent_disable(bev, EV_READ);   /* on again in pump_write_cb */
}

static void in_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    sa.in_ended = 1;
    drop(&sa.in);
    maybe_half_close();
}

static void pump_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *from = bufferevent_get_input(bev);
    if (!sa.out) {
        evbuffer_drain(from, evbuffer_get_length(from));
        return;
    }
    bufferevent_write_buffer(sa.out, from);
    if (pending(sa.out) > PUMP_HIGH_WATER)
        bufferevent_disable(bev, EV_READ);   /* on again in out_write_cb */
}

static void pump_write_cb(struct bufferevent *bev, void *arg)
{
    if (sa.in)
        bufferevent_enable(sa.in, EV_READ);
    maybe_half_close();
}

/* The session closed its end (or the pair broke). */
static void pump_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    pump_read_cb(bev, NULL);
    drop(&sa.pump);
    drop(&sa.in);
    maybe_done();
}

static void out_write_cb(struct bufferevent *bev, void *arg)
{
    if (sa.pump)
        bufferevent_enable(sa.pump, EV_READ);
    maybe_done();
}

/* Nobody reads our replies: the session learns it from its next write. */
static void out_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    drop(&sa.out);
    drop(&sa.pump);
    drop(&sa.in);
    maybe_done();
}

void smtpd_standalone_session_closed(int clean)
{
    sa.session_over = 1;
    sa.status = clean ? 0 : EX_TEMPFAIL;
    drop(&sa.in);   /* what comes after the session is nobody's */
    maybe_done();
}

/* poll, not epoll: standard input may be a regular file. */
static struct event_base *loop_for_any_descriptor(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg || event_config_avoid_method(cfg, "epoll") < 0)
        msg_fatal("event_config_new failed");
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!base)
        msg_fatal("event_base_new failed");
    return base;
}

/* Non-blocking for the loop; the old flags go back at the end, since the
 * descriptions may be shared with the caller (a terminal, a shell). */
static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    return flags;
}

static void restore_flags(int fd, int flags)
{
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags);
}

static struct bufferevent *pump_end(int fd, bufferevent_data_cb readcb,
                                    bufferevent_data_cb writecb, bufferevent_event_cb eventcb,
                                    int options)
{
    struct bufferevent *bev = bufferevent_socket_new(smtpd_base, fd, options);
    if (!bev)
        msg_fatal("cannot set up standard input and output");
    bufferevent_setcb(bev, readcb, writecb, eventcb, NULL);
    return bev;
}

/* The client is the local user: 127.0.0.1, named localhost, as Postfix
 * names a client that is not on the network. */
static void start_session(int fd)
{
    struct sockaddr_storage peer = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    smtpd_session_start(fd, &peer, "localhost");
}

int smtpd_standalone_run(void)
{
    int pair[2];
    smtpd_base = loop_for_any_descriptor();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
        msg_fatal("socketpair: %s", strerror(errno));
    int in_flags = set_nonblocking(0), out_flags = set_nonblocking(1);
    sa.in = pump_end(0, in_read_cb, NULL, in_event_cb, 0);
    sa.out = pump_end(1, NULL, out_write_cb, out_event_cb, 0);
    sa.pump = pump_end(pair[1], pump_read_cb, pump_write_cb, pump_event_cb,
                       BEV_OPT_CLOSE_ON_FREE);
    bufferevent_enable(sa.in, EV_READ);
    bufferevent_enable(sa.out, EV_WRITE);
    bufferevent_enable(sa.pump, EV_READ | EV_WRITE);
    start_session(pair[0]);
    if (!sa.session_over)
        event_base_dispatch(smtpd_base);
    drop(&sa.in);
    drop(&sa.out);
    drop(&sa.pump);
    smtpd_postdrop_wait_all();   /* a stopped one removes its file first */
    restore_flags(0, in_flags);
    restore_flags(1, out_flags);
    return sa.status;
}
