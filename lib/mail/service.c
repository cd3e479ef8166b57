/* service.c - the daemon side of the master contract (service.h): argv,
 * config, logging, privileges, status reports, single-client accept loop.
 */
#include "service.h"
#include "config.h"
#include "log.h"
#include "lookup.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_OVERRIDES 128

static char svc_name[128];
static int svc_instance;
static void (*svc_privileged_init)(void);
static int svc_chroot;     /* -r: master.cf chroot column said y */
static int svc_stand_alone;   /* -S */
static char **svc_args;       /* what follows the options (pipe's attributes) */
static int svc_nargs;

const char *service_name(void)
{
    return svc_name;
}

int service_instance_mode(void)
{
    return svc_instance;
}

int service_stand_alone(void)
{
    return svc_stand_alone;
}

char *const *service_args(size_t *n)
{
    *n = (size_t)svc_nargs;
    return svc_args;
}

static void usage(const char *prog)
{
    msg_fatal("usage: %s -c config_dir -n service_name -t type [-o name=value]... "
              "(or -S [-c config_dir] [-o name=value]...)", prog);
}

static int fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* master.cf chroot column (master passes -r, in system mode only): jail
 * the daemon in queue_directory. Its absolute queue paths would not exist
 * inside, so the configuration is re-read with queue_directory = "/"
 * while main.cf is still reachable; the time zone is loaded now for the
 * same reason, and so are the database clients of SQL and LDAP tables
 * (lookup_load_clients). Called as root, after the group switch (initgroups needs
 * /etc/group) and before the user switch (chroot needs root). */
static void enter_chroot(const char *dir, char *const *overrides, size_t nover)
{
    char *qdir = strdup(var.queue_directory);
    char *more[MAX_OVERRIDES + 1];
    if (!qdir)
        msg_fatal("out of memory");
    for (size_t i = 0; i < nover; i++)
        more[i] = overrides[i];
    more[nover] = "queue_directory=/";
    config_load(dir, more, nover + 1);
    tzset();
    log_connect();
    lookup_load_clients();
    if (chroot(qdir) < 0 || chdir("/") < 0)
        msg_fatal("chroot %s: %m", qdir);
    free(qdir);
}

void service_set_privileged_init(void (*fn)(void))
{
    svc_privileged_init = fn;
}

static void run_privileged_init(void)
{
    if (svc_privileged_init)
        svc_privileged_init();
}

/* Instance mode when mail_owner is the user we run as (docs/DESIGN.md). */
static void drop_privileges(int flags, const char *dir, char *const *overrides, size_t nover)
{
    const char *owner = var.mail_owner;
    struct passwd *pw = getpwnam(owner);
    if (!pw)
        msg_fatal("mail_owner %s: no such user", owner);
    svc_instance = pw->pw_uid == getuid();
    if (svc_instance || geteuid() != 0 || (flags & SERVICE_FLAG_ROOT)) {
        run_privileged_init();
        return;
    }
    if (pw->pw_uid == 0)
        msg_fatal("mail_owner must not be root in system mode");
    uid_t uid = pw->pw_uid;
    if (setgid(pw->pw_gid) < 0 || initgroups(owner, pw->pw_gid) < 0)
        msg_fatal("cannot switch to mail_owner %s: %m", owner);
    run_privileged_init();
    if (svc_chroot)
        enter_chroot(dir, overrides, nover);
    /* owner pointed into the configuration that enter_chroot re-read. */
    if (setuid(uid) < 0)
        msg_fatal("cannot switch to mail_owner uid %ld: %m", (long)uid);
}

/* -S: the caller's privileges, and the caller's log rights: maillog_file
 * only when it may write it (else syslog), and never standard output,
 * which is the client's. */
static void stand_alone_init(const char *dir, char *const *overrides, size_t nover)
{
    config_load(config_find_dir(dir), overrides, nover);
    log_set_syslog_name(var.syslog_name);
    const char *path = var.maillog_file;
    if (*path && strcmp(path, "/dev/stdout") != 0 && access(path, W_OK) == 0)
        log_set_file(path);
    log_set_flags(0);
    signal(SIGPIPE, SIG_IGN);
    run_privileged_init();
}

/* A daemon allocates and frees the same few large buffers (two 64 KiB
 * stream buffers per queue file or connection) for every message. With
 * glibc's defaults the heap top above 128 KiB went back to the kernel at
 * each free and was faulted in again for the next message: two brk calls,
 * a TLB shoot-down and page faults per message, most of cleanup's kernel
 * time after fsync in scenario (c) (bench/NOTES.md, session 6). Keep it:
 * a daemon's heap never exceeds its busiest moment anyway. */
static void keep_freed_memory(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
}

static unsigned char svc_secret[SERVICE_SECRET_LEN];
static int svc_have_secret;

/* fd 6 from master: read once, then closed, so that nothing a daemon
 * starts (a pipe command, a local delivery's program) inherits it. */
static void read_secret(void)
{
    if (!fd_is_open(SERVICE_SECRET_FD))
        return;
    ssize_t n = pread(SERVICE_SECRET_FD, svc_secret, sizeof(svc_secret), 0);
    svc_have_secret = n == (ssize_t)sizeof(svc_secret);
    close(SERVICE_SECRET_FD);
}

const unsigned char *service_secret(void)
{
    return svc_have_secret ? svc_secret : NULL;
}

void service_init(int argc, char **argv, const char *progname, int flags)
{
    char *overrides[MAX_OVERRIDES];
    size_t nover = 0;
    const char *dir = NULL;
    int opt;
    keep_freed_memory();
    /* Until the log destination is known, errors also go to stderr, so a
     * daemon started by hand says why it refuses to run. */
    log_init(progname, LOG_TO_STDERR);
    /* '+': options end at the first other word, so that pipe's
     * "argv=sendmail -i -f ${sender}" is not taken for options. */
    while ((opt = getopt(argc, argv, "+c:n:t:o:rSv")) != -1) {
        switch (opt) {
        case 'c': dir = optarg; break;
        case 'S':
            if (!(flags & SERVICE_FLAG_STAND_ALONE))
                usage(progname);
            svc_stand_alone = 1;
            break;
        case 'r': svc_chroot = 1; break;
        case 'n': snprintf(svc_name, sizeof(svc_name), "%s", optarg); break;
        case 't': break;
        case 'o':
            if (nover == MAX_OVERRIDES)
                msg_fatal("too many -o options");
            overrides[nover++] = optarg;
            break;
        case 'v': break;
        default: usage(progname);
        }
    }
    svc_args = argv + optind;
    svc_nargs = argc - optind;
    if (!svc_name[0])
        snprintf(svc_name, sizeof(svc_name), "%s", progname);
    if (svc_stand_alone) {
        stand_alone_init(dir, overrides, nover);
        return;
    }
    if (!fd_is_open(SERVICE_LISTEN_FD) || !fd_is_open(SERVICE_STATUS_FD) ||
        !fd_is_open(SERVICE_ALIVE_FD))
        msg_fatal("%s must be started by master", progname);
    read_secret();
    config_load(config_find_dir(dir), overrides, nover);
    log_set_syslog_name(var.syslog_name);
    log_set_file(var.maillog_file);
    log_set_flags(0);
    for (int fd = SERVICE_LISTEN_FD; fd <= SERVICE_ALIVE_FD; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    drop_privileges(flags, config_find_dir(dir), overrides, nover);
}

void service_report(int available)
{
    struct service_status st = {.pid = getpid(), .available = available};
    ssize_t n;
    do
        n = write(SERVICE_STATUS_FD, &st, sizeof(st));
    while (n < 0 && errno == EINTR);
}

int service_master_gone(void)
{
    struct pollfd p = {.fd = SERVICE_ALIVE_FD, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* The listening socket is shared by every process of the service; with
 * EPOLLEXCLUSIVE a new connection wakes one idle process, not all of them
 * (the bench counted five failed accept()s per message before). */
static int single_wait_set(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        msg_fatal("epoll_create1: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = SERVICE_LISTEN_FD};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, SERVICE_LISTEN_FD, &ev) < 0) {
        ev.events = EPOLLIN;   /* a kernel before 4.5: wake everyone */
        if (epoll_ctl(ep, EPOLL_CTL_ADD, SERVICE_LISTEN_FD, &ev) < 0)
            msg_fatal("epoll_ctl: %s", strerror(errno));
    }
    ev = (struct epoll_event){.events = EPOLLIN, .data.fd = SERVICE_ALIVE_FD};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, SERVICE_ALIVE_FD, &ev) < 0)
        msg_fatal("epoll_ctl: %s", strerror(errno));
    return ep;
}

void service_run_single(service_conn_fn handler)
{
    long max_idle = var.max_idle;
    long max_use = var.max_use;
    long used = 0;
    int ep = single_wait_set();
    for (;;) {
        struct epoll_event ev[2];
        int n = epoll_wait(ep, ev, 2, max_idle > 0 ? (int)(max_idle * 1000) : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            exit(0);
        for (int i = 0; i < n; i++)
            if (ev[i].data.fd == SERVICE_ALIVE_FD)
                exit(0);
        int fd = accept4(SERVICE_LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;   /* another process of the service took it */
        service_report(0);
        handler(fd);
        service_report(1);
        if (max_use > 0 && ++used >= max_use)
            exit(0);
    }
}
