/* master.c - the Postern master daemon: start-up, the event loop, reload and
 * shutdown (see master.h for how the other files of master/ fit in).
 *
 *   master [-c config_dir] [-d] [-t]
 *
 * master owns every listening socket, spawns the daemons of master.cf on
 * demand (service.h is the contract with them), restarts them when they
 * die, re-reads its configuration on SIGHUP, stops everything gracefully on
 * SIGTERM (children finish their work first, within a bound) and at once on
 * SIGINT.
 * Without -d it detaches, and its first process exits only once the daemon
 * holds the pid lock and has bound every listener, so "postern start"
 * returning 0 means the mail system accepts connections.
 */
#include "master.h"
#include "config.h"
#include "log.h"
#include "queue_file.h"
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* stop (SIGTERM) is graceful, in two steps. First the front services
 * (smtpd, pickup, qmgr) see their alive pipe close and finish the work in
 * hand (SMTP sessions, deliveries in flight) while the back services
 * (cleanup, local, ...) keep serving them, for at most FRONT_GRACE_MS.
 * Then the back services are told, and get BACK_GRACE_MS. Whoever is
 * still there gets SIGTERM, then SIGKILL. abort (SIGINT) skips the grace. */
#define FRONT_GRACE_MS 10000
#define BACK_GRACE_MS 5000
#define TERM_WAIT_MS 3000
#define KILL_WAIT_MS 2000
#define MAX_POLL_WAIT_MS 60000
#define ERR_MAX 1024

struct master_state master = {
    .status_rfd = -1, .status_wfd = -1, .secret_fd = -1,
    .alive_rfd = {-1, -1}, .alive_wfd = {-1, -1},
};

static int signal_pipe[2] = {-1, -1};
static int ready_fd = -1;          /* to the waiting parent until start-up is done */
static int pid_fd = -1;
static char pid_path[PATH_MAX];
static int foreground_mode;        /* -d */

/* --- small helpers --- */

long long master_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* A fatal error before the daemon is ready: the waiting parent prints it,
 * the log gets it too. */
static _Noreturn void startup_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static _Noreturn void startup_fatal(const char *fmt, ...)
{
    char text[ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (ready_fd >= 0) {
        ssize_t n = write(ready_fd, text, strlen(text));
        (void)n;
    }
    msg_fatal("%s", text);
}

/* --- configuration snapshot --- */

static void master_params_free(struct master_params *p)
{
    free(p->config_dir);
    free(p->queue_dir);
    free(p->daemon_dir);
    free(p->inet_interfaces);
    free(p->inet_protocols);
    free(p->mail_owner);
    free(p->maillog_file);
    free(p->syslog_name);
    free(p->version);
    memset(p, 0, sizeof(*p));
}

static char *dup_param(const char *value)
{
    return strdup(value ? value : "");
}

/* System mode (root, mail_owner someone else): sockets must belong to
 * mail_owner so that the unprivileged daemons can use them. */
static int resolve_owner(struct master_params *p, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(p->mail_owner);
    if (!pw) {
        snprintf(err, errlen, "mail_owner %s: no such user", p->mail_owner);
        return -1;
    }
    p->owner_uid = pw->pw_uid;
    p->owner_gid = pw->pw_gid;
    p->chown_sockets = geteuid() == 0 && pw->pw_uid != 0;
    return 0;
}

/* Copy what master needs of the configuration config_try_load just read. */
static int master_params_snapshot(struct master_params *p, const char *config_dir, char *err,
                                  size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->config_dir = strdup(config_dir);
    p->queue_dir = dup_param(var.queue_directory);
    p->daemon_dir = dup_param(var.daemon_directory);
    p->inet_interfaces = dup_param(var.inet_interfaces);
    p->inet_protocols = dup_param(var.inet_protocols);
    p->mail_owner = dup_param(var.mail_owner);
    p->maillog_file = dup_param(var.maillog_file);
    p->syslog_name = dup_param(var.syslog_name);
    p->version = dup_param(var.mail_version);
    if (!p->config_dir || !p->queue_dir || !p->daemon_dir || !p->inet_interfaces ||
        !p->inet_protocols || !p->mail_owner || !p->maillog_file || !p->syslog_name ||
        !p->version) {
        snprintf(err, errlen, "out of memory");
        master_params_free(p);
        return -1;
    }
    p->process_limit = var.default_process_limit;
    p->throttle_ms = var.service_throttle_time * 1000;
    /* master runs in queue_directory; relative paths would move with it. */
    if (p->queue_dir[0] != '/' || p->daemon_dir[0] != '/') {
        snprintf(err, errlen, "%s must be an absolute path: %s",
                 p->queue_dir[0] != '/' ? "queue_directory" : "daemon_directory",
                 p->queue_dir[0] != '/' ? p->queue_dir : p->daemon_dir);
        master_params_free(p);
        return -1;
    }
    if (resolve_owner(p, err, errlen) < 0) {
        master_params_free(p);
        return -1;
    }
    return 0;
}

/* In system mode the daemons append to maillog_file as mail_owner, so a
 * log file master creates as root must be theirs too. */
static void give_log_to_owner(const struct master_params *p)
{
    struct stat st;
    if (!p->chown_sockets || !p->maillog_file[0] || stat(p->maillog_file, &st) < 0 ||
        !S_ISREG(st.st_mode) || st.st_uid == p->owner_uid)
        return;
    if (chown(p->maillog_file, p->owner_uid, p->owner_gid) < 0)
        msg_warn("chown %s: %m", p->maillog_file);
}

static void apply_logging(const struct master_params *p)
{
    log_set_syslog_name(p->syslog_name);
    log_set_file(p->maillog_file);
    give_log_to_owner(p);
    /* In the foreground (-d, "postern start-fg") master also echoes to
     * stderr, unless the log already goes to a file: with maillog_file =
     * /dev/stdout a container would see every line twice. */
    if (foreground_mode)
        log_init("master", p->maillog_file[0] ? 0 : LOG_TO_STDERR);
}

/* --- pid lock --- */

static int pid_file_path(char *buf, size_t len, const char *queue_dir)
{
    int n = snprintf(buf, len, "%s/pid/master.pid", queue_dir);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Pid of the process that holds the lock on path, 0 when nobody does. */
static pid_t pid_lock_owner(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    pid_t owner = 0;
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
        owner = fl.l_pid > 0 ? fl.l_pid : 1;
    close(fd);
    return owner;
}

/* Lock the pid file for the life of the process (the descriptor stays
 * open: closing any descriptor of the file would drop the lock). */
static void pid_lock_take(const char *queue_dir)
{
    if (pid_file_path(pid_path, sizeof(pid_path), queue_dir) < 0)
        startup_fatal("queue_directory path too long");
    pid_fd = open(pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pid_fd < 0)
        startup_fatal("open lock file %s: %s", pid_path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(pid_fd, F_SETLK, &fl) < 0) {
        if (errno == EAGAIN || errno == EACCES)
            startup_fatal("the Postern mail system is already running");
        startup_fatal("lock %s: %s", pid_path, strerror(errno));
    }
    char text[32];
    int n = snprintf(text, sizeof(text), "%10ld\n", (long)getpid());
    if (ftruncate(pid_fd, 0) < 0 || pwrite(pid_fd, text, (size_t)n, 0) != n)
        startup_fatal("write %s: %s", pid_path, strerror(errno));
}

static void pid_lock_release(void)
{
    if (pid_fd < 0)
        return;
    if (unlink(pid_path) < 0 && errno != ENOENT)
        msg_warn("remove %s: %m", pid_path);
    close(pid_fd);
    pid_fd = -1;
}

/* -t: exit 0 when no master holds the lock. */
static int test_running(const char *dir)
{
    char err[ERR_MAX], path[PATH_MAX];
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0)
        msg_fatal("%s", err);
    if (pid_file_path(path, sizeof(path), var.queue_directory) < 0)
        msg_fatal("queue_directory path too long");
    if (pid_lock_owner(path) > 0)
        msg_fatal("the Postern mail system is already running");
    return 0;
}

/* --- daemonising --- */

/* The parent waits for "OK" or an error text from the daemon. */
static _Noreturn void wait_for_daemon(int fd, pid_t pid)
{
    char text[ERR_MAX];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(text) - 1)
            break;
    }
    text[len] = 0;
    if (strcmp(text, "OK") == 0)
        exit(0);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "postern/master: fatal: %s\n",
            len ? text : "the master daemon exited during start-up; see the mail log");
    exit(1);
}

static void daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        msg_fatal("pipe: %m");
    pid_t pid = fork();
    if (pid < 0)
        msg_fatal("fork: %m");
    if (pid > 0) {
        close(p[1]);
        wait_for_daemon(p[0], pid);
    }
    close(p[0]);
    ready_fd = p[1];
    if (setsid() < 0)
        msg_fatal("setsid: %m");
    /* Whoever started us may wait for EOF on its output pipes. */
    int null = open("/dev/null", O_RDWR);
    if (null < 0)
        msg_fatal("open /dev/null: %m");
    for (int fd = 0; fd <= 2; fd++)
        if (null != fd && dup2(null, fd) < 0)
            msg_fatal("dup2: %m");
    if (null > 2)
        close(null);
}

static void startup_done(void)
{
    if (ready_fd < 0)
        return;
    ssize_t n = write(ready_fd, "OK", 2);
    (void)n;
    close(ready_fd);
    ready_fd = -1;
}

/* --- signals --- */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    ssize_t n = write(signal_pipe[1], &c, 1);
    (void)n;
    errno = saved;
}

static void signals_init(void)
{
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        startup_fatal("pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            startup_fatal("sigaction: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

/* --- pipes shared with the children --- */

/* Open a new pair of alive pipes; on failure the old ones stay. */
static int alive_pipes_open(void)
{
    int p[ALIVE_PIPES][2];
    for (int i = 0; i < ALIVE_PIPES; i++)
        if (pipe2(p[i], O_CLOEXEC) < 0) {
            while (i-- > 0) {
                close(p[i][0]);
                close(p[i][1]);
            }
            return -1;
        }
    for (int i = 0; i < ALIVE_PIPES; i++) {
        master.alive_rfd[i] = p[i][0];
        master.alive_wfd[i] = p[i][1];
    }
    return 0;
}

/* Closing the write end is what children see as EOF: finish and exit. */
static void alive_pipe_close(int which)
{
    if (master.alive_rfd[which] >= 0)
        close(master.alive_rfd[which]);
    if (master.alive_wfd[which] >= 0)
        close(master.alive_wfd[which]);
    master.alive_rfd[which] = master.alive_wfd[which] = -1;
}

/* The secret every child gets as fd 6 (service.h): random, made once per
 * master lifetime (a reload keeps it), in memory only, so that processes
 * of one service can share keys (smtpd's TLS tickets) without a file. */
static void secret_init(void)
{
    unsigned char secret[SERVICE_SECRET_LEN];
    int fd = memfd_create("postern-secret", MFD_CLOEXEC);
    if (fd < 0)
        startup_fatal("secret: memfd_create: %s", strerror(errno));
    if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret) ||
        write(fd, secret, sizeof(secret)) != (ssize_t)sizeof(secret))
        startup_fatal("secret: %s", strerror(errno));
    explicit_bzero(secret, sizeof(secret));
    master.secret_fd = fd;
}

static void pipes_init(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0 || set_nonblock(p[0]) < 0)
        startup_fatal("status pipe: %s", strerror(errno));
    master.status_rfd = p[0];
    master.status_wfd = p[1];   /* blocking: children's reports must not be lost */
    if (alive_pipes_open() < 0)
        startup_fatal("alive pipe: %s", strerror(errno));
    secret_init();
}

/* --- start, reload, stop --- */

static int master_cf_load(const struct master_params *p, struct mastercf *cf, char *err,
                          size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/master.cf", p->config_dir) >= (int)sizeof(path)) {
        snprintf(err, errlen, "config_directory path too long");
        return -1;
    }
    return mastercf_load(path, cf, err, errlen);
}

static void start(const char *dir)
{
    char err[ERR_MAX];
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0)
        startup_fatal("%s", err);
    if (master_params_snapshot(&master.params, dir, err, sizeof(err)) < 0)
        startup_fatal("%s", err);
    apply_logging(&master.params);
    config_report_unimplemented();
    umask(022);
    if (queue_dirs_create() < 0)
        startup_fatal("create queue directories under %s: %s", master.params.queue_dir,
                      strerror(errno));
    pid_lock_take(master.params.queue_dir);
    if (chdir(master.params.queue_dir) < 0)
        startup_fatal("chdir %s: %s", master.params.queue_dir, strerror(errno));
    msg_info("daemon started -- version %s, configuration %s", master.params.version, dir);

    struct mastercf cf;
    if (master_cf_load(&master.params, &cf, err, sizeof(err)) < 0)
        startup_fatal("%s", err);
    signals_init();
    pipes_init();
    struct service *list = NULL;
    if (services_build(&cf, &master.params, 1, &list, err, sizeof(err)) < 0 ||
        services_adopt(NULL, &list, &master.params, 1, err, sizeof(err)) < 0)
        startup_fatal("%s", err);
    mastercf_free(&cf);
    master.services = list;
    if (!list)
        msg_warn("%s/master.cf defines no service", dir);
    startup_done();
}

static void reload(void)
{
    char err[ERR_MAX];
    const char *dir = master.params.config_dir;
    struct master_params np;
    struct mastercf cf;
    struct service *list = NULL;

    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0 ||
        master_params_snapshot(&np, dir, err, sizeof(err)) < 0) {
        msg_warn("reload: %s; keeping the running configuration", err);
        return;
    }
    if (strcmp(np.queue_dir, master.params.queue_dir) != 0) {
        msg_warn("reload: a new queue_directory takes effect only after a restart");
        free(np.queue_dir);
        np.queue_dir = strdup(master.params.queue_dir);
    }
    if (!np.queue_dir || master_cf_load(&np, &cf, err, sizeof(err)) < 0) {
        msg_warn("reload: %s; keeping the running configuration",
                 np.queue_dir ? err : "out of memory");
        master_params_free(&np);
        return;
    }
    if (services_build(&cf, &np, 0, &list, err, sizeof(err)) < 0) {
        msg_warn("reload: %s; keeping the running configuration", err);
        mastercf_free(&cf);
        master_params_free(&np);
        return;
    }
    mastercf_free(&cf);
    apply_logging(&np);
    msg_info("reload -- version %s, configuration %s", np.version, dir);

    /* Closing the old alive pipes tells the running children to finish
     * and exit; new children get the new configuration. */
    int old_r[ALIVE_PIPES], old_w[ALIVE_PIPES];
    memcpy(old_r, master.alive_rfd, sizeof(old_r));
    memcpy(old_w, master.alive_wfd, sizeof(old_w));
    if (alive_pipes_open() < 0) {
        msg_warn("reload: alive pipe: %m; old processes keep running");
    } else {
        for (int i = 0; i < ALIVE_PIPES; i++) {
            close(old_r[i]);
            close(old_w[i]);
        }
    }
    process_detach_all(master_now());
    services_adopt(master.services, &list, &np, 0, err, sizeof(err));
    master.services = list;
    master_params_free(&master.params);
    master.params = np;
}

/* Wait until every child is gone or until deadline; reaps as they go.
 * Status reports are read and dropped, so that a child never blocks on a
 * full status pipe while it finishes. Returns 1 when SIGINT arrives
 * (abort: stop waiting), else 0. */
static int wait_children(long long deadline)
{
    while (process_count() > 0) {
        long long now = master_now();
        if (now >= deadline)
            return 0;
        struct pollfd p[2] = {{.fd = signal_pipe[0], .events = POLLIN},
                              {.fd = master.status_rfd, .events = POLLIN}};
        long long wait = deadline - now;
        poll(p, 2, wait > 1000 ? 1000 : (int)wait);
        unsigned char buf[64];
        ssize_t n;
        int abort_now = 0;
        while ((n = read(signal_pipe[0], buf, sizeof(buf))) > 0)
            for (ssize_t i = 0; i < n; i++)
                abort_now |= buf[i] == SIGINT;
        if (p[1].revents)
            process_read_status(master.status_rfd);
        process_reap(master_now());
        if (abort_now)
            return 1;
    }
    return 0;
}

static void still_running_warn(const char *what, int seconds)
{
    size_t n = process_count();
    msg_warn("%zu process%s still running after %d s; %s", n, n == 1 ? "" : "es", seconds,
             what);
}

/* The end of every stop: tell everyone, wait (unless aborting), then
 * terminate and kill what is left, release the lock and exit. */
static _Noreturn void finish_stop(int graceful)
{
    master.stopping = MASTER_STOP_ALL;
    services_close_all(master.services);
    for (int i = 0; i < ALIVE_PIPES; i++)
        alive_pipe_close(i);
    if (graceful && wait_children(master_now() + BACK_GRACE_MS) == 0 && process_count() > 0)
        still_running_warn("terminating them", BACK_GRACE_MS / 1000);
    if (process_count() > 0) {
        process_signal_all(SIGTERM);
        wait_children(master_now() + TERM_WAIT_MS);
    }
    if (process_count() > 0) {
        still_running_warn("killing them", TERM_WAIT_MS / 1000);
        process_signal_all(SIGKILL);
        wait_children(master_now() + KILL_WAIT_MS);
    }
    services_free(master.services);
    master.services = NULL;
    pid_lock_release();
    exit(0);
}

/* SIGTERM: the front first; the event loop goes on serving the back
 * services and calls stop_progress until the front is gone. */
static void begin_stop(int sig)
{
    msg_info("terminating on signal %d", sig);
    if (sig == SIGINT)
        finish_stop(0);
    master.stopping = MASTER_STOP_FRONT;
    master.stop_deadline = master_now() + FRONT_GRACE_MS;
    services_close_front(master.services);
    alive_pipe_close(ALIVE_FRONT);
    /* Old-generation children still read the pipes of their generation,
     * closed at the reload that detached them. */
}

static void stop_progress(long long now)
{
    if (master.stopping != MASTER_STOP_FRONT)
        return;
    if (process_count_front() == 0) {
        finish_stop(1);
    } else if (now >= master.stop_deadline) {
        msg_warn("%zu front process%s still busy after %d s; stopping the rest",
                 process_count_front(), process_count_front() == 1 ? "" : "es",
                 FRONT_GRACE_MS / 1000);
        finish_stop(1);
    }
}

static void handle_signals(void)
{
    unsigned char buf[64];
    int child = 0, hup = 0, term = 0;
    ssize_t n;
    while ((n = read(signal_pipe[0], buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == SIGCHLD)
                child = 1;
            else if (buf[i] == SIGHUP)
                hup = 1;
            else if (buf[i] == SIGTERM || buf[i] == SIGINT)
                term = term == SIGINT ? SIGINT : buf[i];   /* abort wins */
        }
    if (child)
        process_reap(master_now());
    if (term == SIGINT && master.stopping != MASTER_RUNNING)
        finish_stop(0);   /* abort during a graceful stop */
    if (term && master.stopping == MASTER_RUNNING)
        begin_stop(term);
    if (hup && master.stopping == MASTER_RUNNING)
        reload();
}

/* --- the loop --- */

struct watch_set {
    struct pollfd *pfd;
    struct service **svc;   /* svc[i] owns pfd[i]; NULL for master's own */
    size_t n, cap;
};

static void watch_add(struct watch_set *w, int fd, struct service *s)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        struct pollfd *p = realloc(w->pfd, cap * sizeof(*p));
        if (!p)
            msg_fatal("out of memory");
        w->pfd = p;
        struct service **q = realloc(w->svc, cap * sizeof(*q));
        if (!q)
            msg_fatal("out of memory");
        w->svc = q;
        w->cap = cap;
    }
    w->pfd[w->n] = (struct pollfd){.fd = fd, .events = POLLIN};
    w->svc[w->n] = s;
    w->n++;
}

/* Listeners are watched only while their service needs another process;
 * otherwise the running children take the connections. */
static void watch_build(struct watch_set *w, long long now)
{
    w->n = 0;
    watch_add(w, signal_pipe[0], NULL);
    watch_add(w, master.status_rfd, NULL);
    for (struct service *s = master.services; s; s = s->next)
        if (service_wants_child(s, now))
            watch_add(w, s->listen_fd, s);
}

static int poll_timeout(long long now)
{
    long long deadline = services_next_deadline(master.services, now);
    if (master.stopping == MASTER_STOP_FRONT && (deadline < 0 || master.stop_deadline < deadline))
        deadline = master.stop_deadline;
    if (deadline < 0)
        return -1;
    long long wait = deadline - now;
    if (wait < 0)
        wait = 0;
    return wait > MAX_POLL_WAIT_MS ? MAX_POLL_WAIT_MS : (int)wait;
}

static _Noreturn void event_loop(void)
{
    struct watch_set w = {0};
    for (;;) {
        long long now = master_now();
        stop_progress(now);
        services_maintain(master.services, now);
        watch_build(&w, now);
        int rc = poll(w.pfd, w.n, poll_timeout(now));
        if (rc < 0 && errno != EINTR)
            msg_fatal("poll: %m");
        if (rc <= 0)
            continue;
        now = master_now();
        /* Listeners first: a reload below may free their services. All
         * the processes a service keeps available start together (smtpd:
         * one per CPU): once one runs, it may take every connection before
         * this poll sees the listener readable again. A failed spawn
         * throttles the service, which ends the loop. */
        for (size_t i = 2; i < w.n; i++)
            while (w.pfd[i].revents && service_wants_child(w.svc[i], now))
                if (process_spawn(w.svc[i], now) < 0)
                    break;
        if (w.pfd[1].revents)
            process_read_status(master.status_rfd);
        if (w.pfd[0].revents)
            handle_signals();
    }
}

static _Noreturn void usage(void)
{
    msg_fatal("usage: master [-c config_dir] [-d] [-t]");
}

/* Whatever descriptors our starter leaked would live as long as the mail
 * system, in every child too, and keep its pipes from ever seeing EOF. */
static void close_inherited_fds(void)
{
    if (close_range(3, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int)fd);
}

int main(int argc, char **argv)
{
    const char *cmdline_dir = NULL;
    int foreground = 0, test = 0, opt;

    close_inherited_fds();
    log_init("master", LOG_TO_STDERR);
    while ((opt = getopt(argc, argv, "c:dtv")) != -1) {
        switch (opt) {
        case 'c': cmdline_dir = optarg; break;
        case 'd': foreground = foreground_mode = 1; break;
        case 't': test = 1; break;
        case 'v': break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    /* Static: the process lives on in event_loop, or exits in daemonize. */
    static char *dir;
    const char *given = config_find_dir(cmdline_dir);
    if (!(dir = realpath(given, NULL)))
        msg_fatal("config directory %s: %m", given);
    if (test)
        return test_running(dir);
    if (!foreground) {
        /* Detached, stderr is /dev/null: errors reach the parent instead. */
        log_init("master", 0);
        daemonize();
    }
    start(dir);
    event_loop();
}
