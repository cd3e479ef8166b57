/* smtpd - the SMTP server: one event loop serving many sessions.
 *
 * master hands over the listening socket as fd 3. This file accepts
 * connections, reads the settings once, keeps the per-client connection
 * counts (smtpd_client_connection_count_limit when master.cf runs no anvil
 * service: then each process counts its own clients), and decides when
 * the process ends: after max_idle seconds without sessions, or once master
 * went away (or reloaded) and the last session finished. With -S it runs
 * one session on standard input and output instead (standalone.h).
 */
#include "smtpd.h"
#include "milters.h"
#include "auth.h"
#include "restrict.h"
#include "session.h"
#include "standalone.h"
#include "starttls.h"

#include "config.h"
#include "dns.h"
#include "events.h"
#include "log.h"
#include "lookup.h"
#include "service.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_BUCKETS 1024

struct smtpd_config smtpd_cfg;
struct event_base *smtpd_base;

/* One client address with open sessions. */
struct client_count {
    struct client_count *next;
    long count;
    char addr[INET6_ADDRSTRLEN];
};

static struct {
    struct event *accept_ev;
    long sessions;
    int draining;
    time_t last_activity;
    struct client_count *clients[CLIENT_BUCKETS];
    struct dns_resolver *resolver;
    int resolver_failed;
} sm;

static void maybe_exit(void)
{
    if (sm.draining && sm.sessions == 0)
        event_base_loopbreak(smtpd_base);
}

void smtpd_session_closed(int clean)
{
    sm.sessions--;
    sm.last_activity = time(NULL);
    if (smtpd_cfg.stand_alone)
        smtpd_standalone_session_closed(clean);
    else
        maybe_exit();
}

/* --- per-client connection counts --- */

static unsigned addr_hash(const char *addr)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % CLIENT_BUCKETS;
}

long smtpd_client_count_add(const char *addr)
{
    struct client_count **head = &sm.clients[addr_hash(addr)];
    for (struct client_count *c = *head; c; c = c->next)
        if (strcmp(c->addr, addr) == 0)
            return ++c->count;
    struct client_count *c = calloc(1, sizeof(*c));
    if (!c)
        return 1;   /* not counted: the limit errs on the side of service */
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->count = 1;
    c->next = *head;
    *head = c;
    return 1;
}

long smtpd_client_count(const char *addr)
{
    for (const struct client_count *c = sm.clients[addr_hash(addr)]; c; c = c->next)
        if (strcmp(c->addr, addr) == 0)
            return c->count;
    return 0;
}

void smtpd_client_count_remove(const char *addr)
{
    for (struct client_count **pp = &sm.clients[addr_hash(addr)]; *pp; pp = &(*pp)->next) {
        struct client_count *c = *pp;
        if (strcmp(c->addr, addr) != 0)
            continue;
        if (--c->count <= 0) {
            *pp = c->next;
            free(c);
        }
        return;
    }
}

struct dns_resolver *smtpd_resolver(void)
{
    if (!sm.resolver && !sm.resolver_failed) {
        char err[256] = "";
        sm.resolver = dns_resolver_new(smtpd_base, var.dns_servers, err, sizeof(err));
        if (!sm.resolver) {
            msg_warn("DNS resolver: %s", err);
            sm.resolver_failed = 1;
        }
    }
    return sm.resolver;
}

/* --- accepting --- */

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    /* One per wake-up: the other smtpd processes on this listener (one per
     * CPU, master/services.c) wake too, and whichever is least busy takes
     * the next, so sessions spread by load; a burst cannot starve the open
     * sessions either. */
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            msg_warn("accept: %s (%ld sessions)", strerror(errno), sm.sessions);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                 errno != ECONNABORTED)
            msg_warn("accept: %s", strerror(errno));
        return;
    }
    sm.sessions++;
    sm.last_activity = time(NULL);
    smtpd_session_start(fd, &peer, NULL);   /* its names are looked up */
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    long max_idle = var.max_idle;
    if (sm.sessions == 0 && time(NULL) - sm.last_activity >= max_idle)
        event_base_loopbreak(smtpd_base);
}

static void master_gone(void *arg)
{
    sm.draining = 1;
    event_del(sm.accept_ev);
    maybe_exit();
}

/* --- settings --- */

/* The tables of param, or NULL when it is empty. Tables that cannot be
 * opened (an unsupported type) leave NULL and *broken set, with a warning:
 * the requests that need them fail with a temporary error, as in Postfix,
 * and the daemon stays up for everything else. */
static struct lookup_list *open_maps(enum param_id param, int *broken)
{
    const char *spec = config_value(param);
    *broken = 0;
    if (!spec || !*spec)
        return NULL;
    char err[256] = "";
    struct lookup_list *l = lookup_list_open(spec, err, sizeof(err));
    if (!l) {
        msg_warn("%s: %s is unavailable. %s", config_name(param), spec, err);
        *broken = 1;
    }
    return l;
}

static enum smtpd_bare_newline bare_newline_setting(void)
{
    const char *v = var.smtpd_forbid_bare_newline;
    if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "reject") == 0)
        return SMTPD_BARE_REJECT;
    if (strcasecmp(v, "normalize") == 0)
        return SMTPD_BARE_NORMALIZE;
    if (strcasecmp(v, "no") == 0)
        return SMTPD_BARE_ALLOW;
    msg_fatal("smtpd_forbid_bare_newline: bad value \"%s\" (yes, normalize or no)", v);
}

static enum smtpd_tls_level tls_level_setting(void)
{
    const char *v = var.smtpd_tls_security_level;
    if (!*v || strcasecmp(v, "none") == 0)
        return SMTPD_TLS_NONE;
    if (strcasecmp(v, "may") == 0)
        return SMTPD_TLS_MAY;
    if (strcasecmp(v, "encrypt") == 0)
        return SMTPD_TLS_ENCRYPT;
    msg_fatal("smtpd_tls_security_level: bad value \"%s\" (none, may or encrypt)", v);
}

/* One local user's session (sendmail -bs): no TLS, no AUTH, no
 * restrictions (restrict.c), one client. */
static void stand_alone_settings(void)
{
    smtpd_cfg.tls_level = SMTPD_TLS_NONE;
    smtpd_cfg.wrappermode = 0;
    smtpd_cfg.sasl_enable = 0;
    smtpd_cfg.connection_count_limit = 0;
    smtpd_cfg.connection_rate_limit = 0;
    smtpd_cfg.message_rate_limit = 0;
    smtpd_cfg.recipient_rate_limit = 0;
    smtpd_cfg.newtls_rate_limit = 0;
    smtpd_cfg.auth_rate_limit = 0;
}

static void read_settings(void)
{
    smtpd_cfg.myhostname = var.myhostname;
    smtpd_cfg.mydestination = var.mydestination;
    smtpd_cfg.relay_domains = var.relay_domains;
    smtpd_cfg.mynetworks = var.mynetworks;
    smtpd_cfg.banner = var.smtpd_banner;
    smtpd_cfg.mail_name = var.mail_name;
    smtpd_cfg.limit_exceptions = var.smtpd_client_event_limit_exceptions;
    smtpd_cfg.message_size_limit = var.message_size_limit;
    smtpd_cfg.recipient_limit = var.smtpd_recipient_limit;
    smtpd_cfg.timeout = var.smtpd_timeout;
    smtpd_cfg.line_length_limit = var.line_length_limit;
    smtpd_cfg.hard_error_limit = var.smtpd_hard_error_limit;
    smtpd_cfg.soft_error_limit = var.smtpd_soft_error_limit;
    smtpd_cfg.junk_command_limit = var.smtpd_junk_command_limit;
    smtpd_cfg.error_sleep_time = var.smtpd_error_sleep_time;
    smtpd_cfg.min_data_rate = var.smtpd_min_data_rate;
    smtpd_cfg.connection_count_limit = var.smtpd_client_connection_count_limit;
    smtpd_cfg.connection_rate_limit = var.smtpd_client_connection_rate_limit;
    smtpd_cfg.message_rate_limit = var.smtpd_client_message_rate_limit;
    smtpd_cfg.recipient_rate_limit = var.smtpd_client_recipient_rate_limit;
    smtpd_cfg.newtls_rate_limit = var.smtpd_client_new_tls_session_rate_limit;
    smtpd_cfg.auth_rate_limit = var.smtpd_client_auth_rate_limit;
    smtpd_cfg.bare_newline = bare_newline_setting();
    smtpd_cfg.smtputf8 = var.smtputf8_enable;
    smtpd_cfg.tls_level = tls_level_setting();
    smtpd_cfg.wrappermode = var.smtpd_tls_wrappermode;
    smtpd_cfg.sasl_enable = var.smtpd_sasl_auth_enable;
    smtpd_cfg.tls_auth_only = var.smtpd_tls_auth_only;
    smtpd_cfg.sasl_failure_limit = var.smtpd_sasl_auth_failure_limit;
    smtpd_cfg.recipient_delimiter = var.recipient_delimiter;
    if (smtpd_cfg.line_length_limit < 512)
        smtpd_cfg.line_length_limit = 512;
    if (smtpd_cfg.timeout < 1)
        smtpd_cfg.timeout = 1;
    smtpd_cfg.stand_alone = service_stand_alone();
    if (smtpd_cfg.stand_alone)
        stand_alone_settings();
    smtpd_auth_settings();
}

/* Once, after the chroot (tables are reopened there when they change). */
static void open_tables(void)
{
    if (smtpd_cfg.sasl_enable && smtpd_cfg.sasl_type == SMTPD_SASL_TABLE) {
        smtpd_cfg.sasl_password_maps = open_maps(PARAM_smtpd_sasl_password_maps,
                                                 &smtpd_cfg.sasl_password_maps_broken);
        if (!smtpd_cfg.sasl_password_maps && !smtpd_cfg.sasl_password_maps_broken)
            msg_warn("smtpd_sasl_auth_enable = yes without smtpd_sasl_password_maps: "
                     "every AUTH attempt will fail");
    }
    if (!smtpd_cfg.stand_alone)
        smtpd_cfg.sender_login_maps = open_maps(PARAM_smtpd_sender_login_maps,
                                                &smtpd_cfg.sender_login_maps_broken);
}

/* Every session holds a descriptor (two with a cleanup stream): use the
 * whole hard limit, not the usual soft 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            msg_warn("setrlimit RLIMIT_NOFILE: %s", strerror(errno));
    }
}

static int tls_ready;

/* As root: the TLS key may be readable by root only, and outside a chroot. */
static void privileged_init(void)
{
    raise_fd_limit();
    read_settings();
    tls_ready = smtpd_starttls_init() == 0;
}

int main(int argc, char **argv)
{
    service_set_privileged_init(privileged_init);
    service_init(argc, argv, "smtpd", SERVICE_FLAG_STAND_ALONE);
    read_settings();   /* again: a chroot reloads the configuration */
    open_tables();
    if (smtpd_cfg.stand_alone)
        return smtpd_standalone_run();
    smtpd_base = events_base_new();
    if (!tls_ready && smtpd_cfg.wrappermode)
        msg_warn("smtpd_tls_wrappermode: TLS is not available; connections will be dropped");
    smtpd_restrict_init();
    smtpd_milter_init();
    smtpd_auth_init();
    evutil_make_socket_nonblocking(SERVICE_LISTEN_FD);
    sm.last_activity = time(NULL);
    sm.accept_ev = event_new(smtpd_base, SERVICE_LISTEN_FD, EV_READ | EV_PERSIST, accept_cb, NULL);
    long max_idle = var.max_idle;
    struct timeval tick = {.tv_sec = max_idle > 0 ? max_idle : 100};
    struct event *idle = event_new(smtpd_base, -1, EV_PERSIST, idle_cb, NULL);
    if (!sm.accept_ev || !idle || event_add(sm.accept_ev, NULL) < 0 || event_add(idle, &tick) < 0)
        msg_fatal("cannot set up events");
    events_watch_eof(smtpd_base, SERVICE_ALIVE_FD, master_gone, NULL);
    event_base_dispatch(smtpd_base);
    return 0;
}
