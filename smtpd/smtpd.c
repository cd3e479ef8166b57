/* smtpd - the SMTP server: one event loop serving many sessions.
 *
 * master hands over the listening socket as fd 3. This file accepts
 * connections, reads the settings once, and decides when the process ends:
 * after max_idle seconds without sessions, or once master went away (or
 * reloaded) and the last session finished.
 */
#include "smtpd.h"

#include "config.h"
#include "events.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct smtpd_config smtpd_cfg;
struct event_base *smtpd_base;

static struct {
    struct event *accept_ev;
    long sessions;
    int draining;
    time_t last_activity;
} sm;

static void maybe_exit(void)
{
    if (sm.draining && sm.sessions == 0)
        event_base_loopbreak(smtpd_base);
}

void smtpd_session_closed(void)
{
    sm.sessions--;
    sm.last_activity = time(NULL);
    maybe_exit();
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    /* Take a bounded batch so one burst cannot starve open sessions. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                msg_warn("accept: %s", strerror(errno));
            return;
        }
        sm.sessions++;
        sm.last_activity = time(NULL);
        session_start(fd, &peer);
    }
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    long max_idle = config_time("max_idle");
    if (sm.sessions == 0 && time(NULL) - sm.last_activity >= max_idle)
        event_base_loopbreak(smtpd_base);
}

static void master_gone(void *arg)
{
    sm.draining = 1;
    event_del(sm.accept_ev);
    maybe_exit();
}

static void read_settings(void)
{
    smtpd_cfg.myhostname = config_get("myhostname");
    smtpd_cfg.mydestination = config_get("mydestination");
    smtpd_cfg.mynetworks = config_get("mynetworks");
    smtpd_cfg.banner = config_get("smtpd_banner");
    smtpd_cfg.mail_name = config_get("mail_name");
    smtpd_cfg.message_size_limit = config_size("message_size_limit");
    smtpd_cfg.recipient_limit = config_int("smtpd_recipient_limit");
    smtpd_cfg.timeout = config_time("smtpd_timeout");
    smtpd_cfg.line_length_limit = config_int("line_length_limit");
    smtpd_cfg.hard_error_limit = config_int("smtpd_hard_error_limit");
    if (smtpd_cfg.line_length_limit < 512)
        smtpd_cfg.line_length_limit = 512;
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "smtpd", 0);
    read_settings();
    smtpd_base = event_base_new();
    if (!smtpd_base)
        msg_fatal("event_base_new failed");
    evutil_make_socket_nonblocking(SERVICE_LISTEN_FD);
    sm.last_activity = time(NULL);
    sm.accept_ev = event_new(smtpd_base, SERVICE_LISTEN_FD, EV_READ | EV_PERSIST, accept_cb, NULL);
    long max_idle = config_time("max_idle");
    struct timeval tick = {.tv_sec = max_idle > 0 ? max_idle : 100};
    struct event *idle = event_new(smtpd_base, -1, EV_PERSIST, idle_cb, NULL);
    if (!sm.accept_ev || !idle || event_add(sm.accept_ev, NULL) < 0 || event_add(idle, &tick) < 0)
        msg_fatal("cannot set up events");
    events_watch_master(smtpd_base, master_gone, NULL);
    event_base_dispatch(smtpd_base);
    return 0;
}
