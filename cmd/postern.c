/* postern.c - the administrator's control command.
 *
 *   postern [-c config_dir] [-v] start|start-fg|stop|abort|reload|status|flush|check
 *
 * It finds master through the pid lock: queue_directory/pid/master.pid names
 * the master process, and is believed only while master holds its fcntl
 * lock on it (a stale file after a crash names nobody). "start" checks the
 * configuration (main.cf and master.cf, refusing with file and line),
 * removes the queue files a crash left unfinished (lib/queue_purge.h) and
 * runs daemon_directory/master, which returns only once every listener is
 * bound; "start-fg" runs master in the foreground instead (containers,
 * maillog_file = /dev/stdout). The other commands signal master (stop:
 * SIGTERM, graceful; abort: SIGINT, at once; reload: SIGHUP), wake the
 * queue manager (flush), count the queues (status) or check and repair the
 * installation (check: users and groups, queue owners and modes, set-id
 * bits; run as root it creates mail_owner and setgid_group when missing and
 * fixes what is safe to fix, like Postfix's check and set-permissions).
 * Messages go to stderr and to the mail log, in the style of Postfix's
 * postfix-script; status's queue table goes to stdout.
 */
#include "config.h"
#include "strlist.h"
#include "ipc.h"
#include "log.h"
#include "lookup.h"
#include "mastercf.h"
#include "queue_file.h"
#include "queue_purge.h"
#include "table_file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_WAIT_SECS 60     /* master's own grace is shorter (master.c) */
#define ABORT_WAIT_SECS 15
#define STOP_POLL_MS 100
#define ERR_MAX 1024
#define QUEUE_SCAN_MAX 10000000L   /* files counted per queue before giving up */

static int verbose;

/* --- messages --- */

static void vreport(const char *level, const char *fmt, va_list ap)
{
    char text[ERR_MAX];
    vsnprintf(text, sizeof(text), fmt, ap);
    const char *name = var.syslog_name;
    fprintf(stderr, "%s/postern-script: %s%s%s\n", name && *name ? name : "postern",
            level ? level : "", level ? ": " : "", text);
    if (!level)
        msg_info("%s", text);
    else if (strcmp(level, "warning") == 0)
        msg_warn("%s", text);
    else
        msg_fatal("%s", text);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(NULL, fmt, ap);
    va_end(ap);
}

static void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("warning", fmt, ap);
    va_end(ap);
}

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("fatal", fmt, ap);
    va_end(ap);
    exit(1);   /* not reached: msg_fatal exits */
}

/* --- finding master --- */

static void pid_file_path(char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/pid/master.pid", var.queue_directory) >= (int)len)
        die("queue_directory path too long");
}

/* The pid written in the file, 0 when unreadable. */
static pid_t pid_file_read(int fd)
{
    char text[32];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = 0;
    char *end;
    long v = strtol(text, &end, 10);
    return v > 0 && v <= INT_MAX ? (pid_t)v : 0;
}

/* Master's pid when it runs (it holds the lock), else 0. */
static pid_t master_pid(void)
{
    char path[PATH_MAX];
    pid_file_path(path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    pid_t pid = 0;
    if (fcntl(fd, F_GETLK, &fl) < 0) {
        warn("cannot test the lock on %s: %s", path, strerror(errno));
    } else if (fl.l_type != F_UNLCK) {
        pid_t written = pid_file_read(fd);
        /* The lock holder is master by definition; the file's text is only
         * believed when it agrees (l_pid is 0 across pid namespaces). */
        pid = fl.l_pid > 0 ? fl.l_pid : written;
        if (fl.l_pid > 0 && written != fl.l_pid)
            warn("%s says pid %ld but pid %ld holds the lock; using %ld", path, (long)written,
                 (long)fl.l_pid, (long)fl.l_pid);
    }
    close(fd);
    return pid;
}

static pid_t running_master_or_die(void)
{
    pid_t pid = master_pid();
    if (pid <= 0)
        die("the Postern mail system is not running");
    return pid;
}

static void signal_master(pid_t pid, int sig)
{
    if (kill(pid, sig) < 0)
        die("cannot signal master pid %ld: %s", (long)pid, strerror(errno));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Wait up to secs for pid to release the lock; 1 when it did. */
static int wait_master_gone(pid_t pid, long secs, int chatty)
{
    for (long waited = 0; waited < secs * 1000L; waited += STOP_POLL_MS) {
        if (master_pid() != pid)
            return 1;
        if (chatty && waited > 0 && waited % 5000 == 0)
            say("waiting for the Postern mail system to terminate");
        sleep_ms(STOP_POLL_MS);
    }
    return master_pid() != pid;
}

/* --- configuration checks shared by start, reload and check --- */

static void master_cf_path(char *buf, size_t len, const char *dir)
{
    if (snprintf(buf, len, "%s/master.cf", dir) >= (int)len)
        die("config directory path too long");
}

/* main.cf was parsed and validated in main(); master.cf is parsed here, so
 * that an error is reported with its file and line before anything runs. */
static void master_cf_load_or_die(const char *dir, struct mastercf *cf)
{
    char path[PATH_MAX], err[ERR_MAX];
    master_cf_path(path, sizeof(path), dir);
    if (mastercf_load(path, cf, err, sizeof(err)) < 0)
        die("%s", err);
}

/* Whether we are an instance: mail_owner is whoever runs us. */
static int instance_mode(void)
{
    struct passwd *pw = getpwnam(var.mail_owner);
    return pw != NULL && pw->pw_uid == getuid();
}

/* The arguments a service's program needs (a pipe service's attributes)
 * into why; 0 when they are right or the program is not run. */
static int service_args_bad(const struct mastercf_entry *e, char *why, size_t len)
{
    struct mastercf_program prog = mastercf_classify(e);
    return prog.role == MASTERCF_RUN &&
           mastercf_check_program(e, prog.program, instance_mode(), var.mail_owner, why,
                                  len) < 0;
}

/* A syntax error stops start and reload here; a service whose program
 * refuses its arguments is said here too, and master leaves it out. */
static void master_cf_validate(const char *dir)
{
    struct mastercf cf;
    char path[PATH_MAX], why[ERR_MAX];
    master_cf_path(path, sizeof(path), dir);
    master_cf_load_or_die(dir, &cf);
    for (size_t i = 0; i < cf.count; i++) {
        const struct mastercf_entry *e = &cf.entries[i];
        if (service_args_bad(e, why, sizeof(why)))
            warn("%s, line %d: service %s/%s (%s): %s; service not started", path, e->line,
                 e->name, mastercf_type_name(e->type), e->command, why);
    }
    mastercf_free(&cf);
}

/* --- start, stop, abort, reload, flush --- */

static void master_exe(char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/master", var.daemon_directory) >= (int)len)
        die("daemon_directory path too long");
    if (access(buf, X_OK) < 0)
        die("cannot run %s: %s", buf, strerror(errno));
}

/* No master, so no cleanup is writing: a queue file without its completion
 * bit is what a crash left, never to be scheduled, and goes before the
 * daemons start (each one logged, and shown, as postsuper -p does). */
static void purge_unfinished_queue_files(void)
{
    log_set_flags(LOG_TO_STDERR);
    queue_purge_leftovers(0);
    log_set_flags(0);
}

/* Without maillog_file every program logs to syslog through /dev/log; on a
 * host with no syslog daemon (a container, a minimal install) every line
 * would be lost without a word, so say it at start. */
static void warn_if_logs_go_nowhere(void)
{
    if (*var.maillog_file)
        return;
    struct sockaddr_un sun = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (!ok)
        warn("maillog_file is not set and no syslog daemon listens on /dev/log (%s): "
             "log lines will be lost; set maillog_file (e.g. /var/log/postern.log or "
             "/dev/stdout)", strerror(saved));
}

/* An instance is a whole host inside its directory (docs/DESIGN.md, "Instance
 * mode"): unless main.cf names other tables, its aliases are
 * $config_directory/aliases. A fresh instance gets an empty one, and one
 * written but never built is built, as installing Postfix runs newaliases:
 * local would otherwise defer every local recipient for want of a table. */
static void instance_aliases_ready(const char *dir)
{
    char path[PATH_MAX], cdb[PATH_MAX + 8], err[ERR_MAX];
    struct stat st;
    if (!instance_mode() || config_is_set(PARAM_alias_maps) ||
        config_is_set(PARAM_alias_database) ||
        snprintf(path, sizeof(path), "%s/aliases", dir) >= (int)sizeof(path))
        return;
    snprintf(cdb, sizeof(cdb), "%s.cdb", path);
    if (stat(cdb, &st) == 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        static const char text[] = "# aliases(5) of this instance: \"name: destination, ...\";\n"
                                   "# run newaliases (sendmail -bi) after editing.\n";
        int ok = write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1);
        if (close(fd) < 0 || !ok)
            warn("write %s: %s", path, strerror(errno));
    }
    if (table_file_build(path, TABLE_SYNTAX_ALIASES, TABLE_DUPS_WARN, 1, err, sizeof(err)) < 0)
        warn("alias table %s: %s", path, err);
    else
        msg_info("built the instance's alias table cdb:%s", path);
}

/* What start and start-fg do before master runs: refuse a second master,
 * check the configuration, make the instance's alias table, purge what a
 * crash left; exe gets master's path. */
static void prepare_start(const char *dir, char *exe, size_t len)
{
    if (master_pid() > 0)
        die("the Postern mail system is already running");
    master_cf_validate(dir);
    instance_aliases_ready(dir);
    purge_unfinished_queue_files();
    master_exe(exe, len);
}

static int cmd_start(const char *dir)
{
    char exe[PATH_MAX];
    warn_if_logs_go_nowhere();
    prepare_start(dir, exe, sizeof(exe));
    say("starting the Postern mail system");
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        char *argv[] = {"master", "-c", (char *)dir, NULL};
        execv(exe, argv);
        fprintf(stderr, "postern/postern-script: fatal: exec %s: %s\n", exe, strerror(errno));
        _exit(1);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    die("mail system startup failed");
}

/* Master in the foreground, in this process: a container's init or a
 * supervisor sees master itself, and its stdout stays where it was. */
static int cmd_start_fg(const char *dir)
{
    char exe[PATH_MAX];
    prepare_start(dir, exe, sizeof(exe));
    char *argv[] = {"master", "-c", (char *)dir, "-d", NULL};
    execv(exe, argv);
    die("exec %s: %s", exe, strerror(errno));
}

/* Signal master and wait for it to go; SIGKILL after wait_secs if it has
 * not (saying so when it was a graceful stop). */
static int stop_master(const char *what, int sig, int wait_secs, int graceful)
{
    pid_t pid = running_master_or_die();
    say("%s the Postern mail system", what);
    signal_master(pid, sig);
    if (wait_master_gone(pid, wait_secs, graceful))
        return 0;
    if (graceful)
        warn("stopping the Postern mail system with force");
    kill(pid, SIGKILL);
    return wait_master_gone(pid, 5, 0) ? 0 : 1;
}

static int cmd_stop(void)
{
    return stop_master("stopping", SIGTERM, STOP_WAIT_SECS, 1);
}

static int cmd_abort(void)
{
    return stop_master("aborting", SIGINT, ABORT_WAIT_SECS, 0);
}

static int cmd_reload(const char *dir)
{
    pid_t pid = running_master_or_die();
    master_cf_validate(dir);
    say("refreshing the Postern mail system");
    signal_master(pid, SIGHUP);
    return 0;
}

static int cmd_flush(void)
{
    running_master_or_die();
    if (ipc_trigger(IPC_PUBLIC, "qmgr", 'F') < 0)
        die("cannot wake the queue manager: %s", strerror(errno));
    return 0;
}

/* --- status --- */

/* Call fn for each entry of dir with its lstat (names starting with '.'
 * left out) until fn returns nonzero; -1 with errno when dir cannot be
 * read. */
static int each_entry(const char *dir, int (*fn)(const char *path, const struct stat *st,
                                                 void *ctx), void *ctx)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int stop = 0;
    while (!stop && (e = readdir(d))) {
        char path[PATH_MAX];
        struct stat st;
        if (e->d_name[0] == '.' ||
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
            lstat(path, &st) < 0)
            continue;
        stop = fn(path, &st, ctx);
    }
    closedir(d);
    return 0;
}

struct queue_count {
    long n;
    int depth;
};

static int count_entry(const char *path, const struct stat *st, void *ctx)
{
    struct queue_count *q = ctx;
    if (S_ISREG(st->st_mode)) {
        q->n++;
    } else if (S_ISDIR(st->st_mode) && q->depth > 0) {
        struct queue_count sub = {0, q->depth - 1};
        if (each_entry(path, count_entry, &sub) == 0)
            q->n += sub.n;
    }
    return q->n >= QUEUE_SCAN_MAX;
}

/* Regular files in dir, and one level of subdirectories (deferred/ is
 * hashed); -1 with errno when dir cannot be read. */
static long count_queue(const char *dir, int depth)
{
    struct queue_count q = {0, depth};
    return each_entry(dir, count_entry, &q) < 0 ? -1 : q.n;
}

static void print_queue_counts(void)
{
    static const char *const queues[] = {QUEUE_MAILDROP, QUEUE_INCOMING, QUEUE_ACTIVE,
                                         QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT};
    printf("%-10s %s\n", "queue", "messages");
    for (size_t i = 0; i < sizeof(queues) / sizeof(queues[0]); i++) {
        char path[PATH_MAX];
        if (queue_dir_path(path, sizeof(path), queues[i]) < 0)
            die("queue_directory path too long");
        long n = count_queue(path, 1);
        if (n >= 0)
            printf("%-10s %ld\n", queues[i], n);
        else
            printf("%-10s - (%s)\n", queues[i], strerror(errno));
    }
    fflush(stdout);
}

static int cmd_status(void)
{
    pid_t pid = master_pid();
    if (pid <= 0)
        say("the Postern mail system is not running");
    else
        say("the Postern mail system is running: PID: %ld", (long)pid);
    print_queue_counts();
    return pid > 0 ? 0 : 1;
}

/* --- check --- */

struct check {
    int root;            /* we may create, chown and chmod */
    int system_mode;     /* root runs it and mail_owner is someone else */
    uid_t owner_uid;
    gid_t owner_gid;
    gid_t setgid_gid;
    int have_group;
    int problems;        /* found and not fixed */
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("warning", fmt, ap);
    va_end(ap);
    c->problems++;
}

/* Run an account tool (useradd, groupadd) without a shell. 0 on success. */
static int run_tool(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Postfix's lookup table types: a word before ':' in a value that is one
 * of these names a table. */
static const char *const postfix_table_types[] = {
    "btree", "cdb", "cidr", "environ", "fail", "hash", "inline", "internal", "ldap", "lmdb",
    "memcache", "mysql", "nis", "nisplus", "pcre", "pgsql", "pipemap", "proxy", "randmap",
    "regexp", "sdbm", "socketmap", "sqlite", "static", "tcp", "texthash", "unionmap", "unix",
};

static int is_table_type(const char *word)
{
    for (size_t i = 0; i < sizeof(postfix_table_types) / sizeof(postfix_table_types[0]); i++)
        if (strcmp(word, postfix_table_types[i]) == 0)
            return 1;
    return 0;
}

/* Tables of a type Postern does not have yet, named in a parameter's value
 * ("proxy:mysql:/etc/x.cf" names mysql). */
static void report_table_types(const char *name, const char *value)
{
    const char *p = value;
    while (*p) {
        size_t skip = strcspn(p, "abcdefghijklmnopqrstuvwxyz");
        p += skip;
        size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz");
        if (len == 0)
            break;
        char word[32];
        int at_word_start = p == value || !isalnum((unsigned char)p[-1]);
        if (at_word_start && p[len] == ':' && len < sizeof(word)) {
            memcpy(word, p, len);
            word[len] = 0;
            if (is_table_type(word) && !lookup_type_supported(word))
                say("migration: main.cf: %s uses table type %s:, which Postern does not have "
                    "yet; lookups in it fail with a temporary error", name, word);
        }
        p += len;
    }
}

/* The migration report, parameters: every main.cf setting that Postern
 * ignores or covers another way, with its value, and the misspelt ones;
 * and tables of types Postern lacks. */
static void check_param_migration(const char *name, const char *value, int is_set, void *ctx)
{
    const char *how;
    if (!is_set)
        return;
    report_table_types(name, value);
    switch (config_kind(name, &how)) {
    case CONFIG_KNOWN:
        break;
    case CONFIG_UNKNOWN:
        warn("%s/main.cf: unused parameter: %s=%s", config_directory(), name, value);
        break;
    case CONFIG_POSTFIX_IGNORED:
        say("migration: main.cf: %s = %s: a Postfix parameter that Postern does not "
            "implement; ignored", name, value);
        break;
    case CONFIG_POSTFIX_OTHERWISE:
        say("migration: main.cf: %s = %s: not needed, %s", name, value, how);
        break;
    }
}

/* The postdrop group: created as a system group when missing. */
static void check_group(struct check *c)
{
    const char *name = var.setgid_group;
    struct group *gr = getgrnam(name);
    if (!gr && c->root && c->system_mode) {
        char *argv[] = {"/usr/sbin/groupadd", "--system", (char *)name, NULL};
        if (run_tool(argv) == 0 && (gr = getgrnam(name)))
            say("created group %s (setgid_group)", name);
    }
    if (!gr) {
        if (c->system_mode)
            problem(c, "setgid_group %s: no such group", name);
        return;
    }
    c->have_group = 1;
    c->setgid_gid = gr->gr_gid;
}

/* mail_owner: a system account with no login, created when missing. Only
 * root can be in system mode; another user running check is looking at
 * his own instance (mail_owner = himself) or cannot fix anything. */
static void check_owner(struct check *c)
{
    const char *name = var.mail_owner;
    struct passwd *pw = getpwnam(name);
    if (!pw && c->root) {
        const char *queue = var.queue_directory;
        char *argv[] = {"/usr/sbin/useradd", "--system", "--user-group",
                        "--home-dir", (char *)queue, "--no-create-home",
                        "--shell", "/usr/sbin/nologin",
                        "--comment", "Postern mail system", (char *)name, NULL};
        if (run_tool(argv) == 0 && (pw = getpwnam(name)))
            say("created user %s (mail_owner)", name);
    }
    if (!pw) {
        problem(c, "mail_owner %s: no such user", name);
        return;
    }
    c->owner_uid = pw->pw_uid;
    c->owner_gid = pw->pw_gid;
    c->system_mode = c->root && pw->pw_uid != 0;
    if (pw->pw_uid != geteuid() && pw->pw_uid == 0)
        problem(c, "mail_owner %s has uid 0: it must be an unprivileged account", name);
}

static void check_account_separation(struct check *c)
{
    if (!c->system_mode || !c->have_group)
        return;
    if (c->owner_gid == c->setgid_gid)
        problem(c, "mail_owner's group must not be setgid_group %s: postdrop would get "
                   "access to the whole queue", var.setgid_group);
}

/* master.cf: every program exists; chroot only where it means something. */
static void check_master_cf(struct check *c, const char *dir)
{
    struct mastercf cf;
    char path[PATH_MAX];
    master_cf_path(path, sizeof(path), dir);
    master_cf_load_or_die(dir, &cf);
    const char *ddir = var.daemon_directory;
    for (size_t i = 0; i < cf.count; i++) {
        const struct mastercf_entry *e = &cf.entries[i];
        struct mastercf_program prog = mastercf_classify(e);
        if (prog.role != MASTERCF_RUN) {
            say("migration: master.cf, line %d: service %s/%s (%s): %s, %s%s", e->line,
                e->name, mastercf_type_name(e->type), e->command,
                prog.role == MASTERCF_OTHERWISE ? "not needed" : "not available yet", prog.why,
                prog.role == MASTERCF_MISSING ? "; mail routed to it stays in the queue" : "");
            continue;
        }
        char exe[PATH_MAX];
        if (snprintf(exe, sizeof(exe), "%s/%s", ddir, prog.program) >= (int)sizeof(exe) ||
            access(exe, X_OK) < 0)
            /* Not fatal: master leaves such a service out and runs the rest. */
            warn("%s, line %d: service %s: cannot run %s", path, e->line, e->name, exe);
        else if (verbose)
            say("service %s: %s", e->name, exe);
        if (e->chroot && !e->unpriv)
            warn("%s, line %d: service %s: chroot applies only to unprivileged services",
                 path, e->line, e->name);
        char why[ERR_MAX];
        if (service_args_bad(e, why, sizeof(why)))
            problem(c, "%s, line %d: service %s/%s (%s): %s", path, e->line, e->name,
                    mastercf_type_name(e->type), e->command, why);
    }
    mastercf_free(&cf);
}

static void describe(char *buf, size_t len, const struct stat *st)
{
    snprintf(buf, len, "%ld:%ld mode %04o", (long)st->st_uid, (long)st->st_gid,
             (unsigned)(st->st_mode & 07777));
}

/* The queue tree's directories as they are, by name (index i of names). */
#define QUEUE_SUBDIRS_MAX 64
struct tree_snapshot {
    char names[QUEUE_SUBDIRS_MAX][NAME_MAX + 1];
    struct stat st[QUEUE_SUBDIRS_MAX];
    int exists[QUEUE_SUBDIRS_MAX];
    size_t n;
};

static void snapshot_tree(const char *queue, struct tree_snapshot *t)
{
    t->n = 1;
    t->names[0][0] = 0;   /* queue_directory itself */
    DIR *d = opendir(queue);
    struct dirent *e;
    while (d && (e = readdir(d)) && t->n < QUEUE_SUBDIRS_MAX)
        if (e->d_name[0] != '.')
            snprintf(t->names[t->n++], sizeof(t->names[0]), "%s", e->d_name);
    if (d)
        closedir(d);
    for (size_t i = 0; i < t->n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", queue, t->names[i]);
        t->exists[i] = lstat(path, &t->st[i]) == 0 && S_ISDIR(t->st[i].st_mode);
    }
}

/* The layout itself (owners and modes per directory) is queue_file.c's:
 * queue_dirs_create creates what is missing and sets what is wrong, and
 * check reports the difference it made. */
static void check_queue_tree(struct check *c)
{
    const char *queue = var.queue_directory;
    struct tree_snapshot *before = calloc(1, sizeof(*before));
    struct tree_snapshot *after = calloc(1, sizeof(*after));
    if (!before || !after)
        die("out of memory");
    snapshot_tree(queue, before);
    if (!c->root) {
        if (!before->exists[0])
            warn("queue_directory %s does not exist yet (master creates it)", queue);
        free(before);
        free(after);
        return;
    }
    mode_t old = umask(022);
    if (queue_dirs_create() < 0)
        problem(c, "cannot create or repair the queue tree under %s: %s", queue,
                strerror(errno));
    umask(old);
    snapshot_tree(queue, after);
    for (size_t i = 0; i < after->n; i++) {
        size_t j = 0;
        while (j < before->n && strcmp(before->names[j], after->names[i]) != 0)
            j++;
        char was[64], now[64];
        describe(now, sizeof(now), &after->st[i]);
        const char *sep = after->names[i][0] ? "/" : "";
        if (j == before->n || !before->exists[j]) {
            say("created %s%s%s (%s)", queue, sep, after->names[i], now);
            continue;
        }
        describe(was, sizeof(was), &before->st[j]);
        if (strcmp(was, now) != 0)
            say("fixed %s%s%s: %s -> %s", queue, sep, after->names[i], was, now);
    }
    free(before);
    free(after);
}

struct owner_fix {
    struct check *c;
    int depth;
    gid_t gid;
};

static int fix_entry(const char *path, const struct stat *st, void *ctx)
{
    struct owner_fix *f = ctx;
    struct check *c = f->c;
    if (S_ISDIR(st->st_mode) && f->depth > 0) {
        struct owner_fix sub = {c, f->depth - 1, f->gid};
        each_entry(path, fix_entry, &sub);
    }
    if (S_ISLNK(st->st_mode)) {
        problem(c, "%s is a symbolic link; the queue holds none", path);
        return 0;
    }
    if ((S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) && st->st_uid != c->owner_uid) {
        if (lchown(path, c->owner_uid, f->gid) == 0)
            say("fixed owner of %s: uid %ld -> %ld", path, (long)st->st_uid,
                (long)c->owner_uid);
        else
            problem(c, "chown %s: %s", path, strerror(errno));
    }
    return 0;
}

/* Queue files belong to mail_owner (a restore from backup or a copy as
 * root breaks that and the daemons could not read them). */
static void fix_file_owners(struct check *c, const char *dir, int depth, gid_t gid)
{
    struct owner_fix f = {c, depth, gid};
    each_entry(dir, fix_entry, &f);
}

static void check_queue_files(struct check *c)
{
    static const char *const owned[] = {"incoming", "active", "deferred", "hold", "corrupt",
                                        "bounce",   "defer",  "trace",    "saved"};
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
        char path[PATH_MAX];
        if (queue_dir_path(path, sizeof(path), owned[i]) == 0)
            fix_file_owners(c, path, 1, c->owner_gid);
    }
    /* maildrop files are written by users through postdrop: owned by them
     * until pickup reads them, so only symbolic links are wrong there. */
}

/* A command that should (or should not) be set-group-id. */
static void check_setgid(struct check *c, const char *path, int want_setgid)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    mode_t mode = st.st_mode & 07777;
    int ok = want_setgid ? (mode & S_ISGID) && !(mode & S_ISUID) && c->have_group &&
                               st.st_gid == c->setgid_gid && !(mode & S_IWOTH)
                         : !(mode & (S_ISUID | S_ISGID));
    if (ok)
        return;
    if (!c->system_mode || (want_setgid && !c->have_group)) {
        if (c->system_mode)
            problem(c, "%s: %s", path, want_setgid ? "should be set-group-id setgid_group"
                                                   : "should not be set-id");
        return;
    }
    mode_t fixed = want_setgid ? 02755 : (mode & 0755);
    if ((want_setgid && chown(path, 0, c->setgid_gid) < 0) || chmod(path, fixed) < 0) {
        problem(c, "fix %s: %s", path, strerror(errno));
        return;
    }
    say("fixed %s: mode %04o -> %04o%s", path, (unsigned)mode, (unsigned)fixed,
        want_setgid ? ", group setgid_group" : "");
}

/* postdrop and postqueue are set-group-id setgid_group; nothing else of
 * ours is set-id at all. */
static void check_programs(struct check *c)
{
    static const char *const commands[] = {"postern",  "postconf", "postsuper", "postmap",
                                           "postalias", "sendmail", "postdrop",  "postqueue"};
    const char *cdir = var.command_directory;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", cdir, commands[i]) < (int)sizeof(path))
            check_setgid(c, path, strcmp(commands[i], "postdrop") == 0 ||
                                      strcmp(commands[i], "postqueue") == 0);
    }
    const char *ddir = var.daemon_directory;
    DIR *d = opendir(ddir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[PATH_MAX];
        if (e->d_name[0] != '.' &&
            snprintf(path, sizeof(path), "%s/%s", ddir, e->d_name) < (int)sizeof(path))
            check_setgid(c, path, 0);
    }
    if (d)
        closedir(d);
}

/* 1 when an alias_database table is missing its .cdb or is newer than it
 * (a fresh install: smtpd would answer every local recipient with a
 * temporary lookup failure until newaliases runs). */
static int alias_database_stale(void)
{
    const char *value = var.alias_database;
    char *buf = malloc(strlen(value) + 1), *items[64];
    if (!buf)
        die("out of memory");
    size_t n = strlist_split(value, buf, items, 64);
    int stale = 0;
    for (size_t i = 0; i < n && !stale; i++) {
        char *colon = strchr(items[i], ':');
        if (!colon || (strncmp(items[i], "cdb:", 4) != 0 && strncmp(items[i], "hash:", 5) != 0 &&
                       strncmp(items[i], "btree:", 6) != 0))
            continue;
        char cdb[PATH_MAX];
        struct stat src, db;
        if (snprintf(cdb, sizeof(cdb), "%s.cdb", colon + 1) >= (int)sizeof(cdb) ||
            stat(colon + 1, &src) < 0)
            continue;
        stale = stat(cdb, &db) < 0 || db.st_mtime < src.st_mtime;
    }
    free(buf);
    return stale;
}

/* Like Postfix's installation, which runs newaliases: rebuild with
 * postalias (no file argument: every alias_database table). */
static void check_alias_database(struct check *c, const char *dir)
{
    if (!alias_database_stale())
        return;
    char exe[PATH_MAX];
    if (!c->system_mode ||
        snprintf(exe, sizeof(exe), "%s/postalias", var.command_directory) >=
            (int)sizeof(exe) || access(exe, X_OK) < 0) {
        warn("alias_database %s is not built or is out of date: run newaliases",
             var.alias_database);
        return;
    }
    char *argv[] = {exe, "-c", (char *)dir, NULL};
    if (run_tool(argv) == 0)
        say("rebuilt alias_database %s", var.alias_database);
    else
        problem(c, "%s -c %s failed", exe, dir);
}

/* Whoever can write main.cf or master.cf runs code as root. */
static void check_config_files(struct check *c, const char *dir)
{
    static const char *const files[] = {"main.cf", "master.cf"};
    for (size_t i = 0; i < 2; i++) {
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, files[i]) >= (int)sizeof(path) ||
            stat(path, &st) < 0)
            continue;
        if (!(st.st_mode & (S_IWGRP | S_IWOTH)))
            continue;
        if (c->root && chmod(path, st.st_mode & 07755) == 0)
            say("fixed %s: group/other write permission removed", path);
        else
            problem(c, "%s is writable by group or others", path);
    }
}

static int cmd_check(const char *dir)
{
    struct check c = {.root = geteuid() == 0};
    config_walk(1, 0, check_param_migration, NULL);
    check_master_cf(&c, dir);
    check_owner(&c);
    check_group(&c);
    check_account_separation(&c);
    check_config_files(&c, dir);
    if (c.system_mode) {
        check_queue_tree(&c);
        check_queue_files(&c);
    } else {
        struct stat st;
        const char *queue = var.queue_directory;
        if (stat(queue, &st) < 0 || !S_ISDIR(st.st_mode))
            warn("queue_directory %s does not exist yet (master creates it)", queue);
    }
    check_programs(&c);
    check_alias_database(&c, dir);
    if (verbose || c.problems)
        say("check: %d problem%s left", c.problems, c.problems == 1 ? "" : "s");
    return c.problems ? 1 : 0;
}

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: postern [-c config_dir] [-v] "
                    "start|start-fg|stop|abort|reload|status|flush|check\n");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *cmdline_dir = NULL;
    int opt;
    log_init("postern-script", 0);
    while ((opt = getopt(argc, argv, "c:v")) != -1) {
        switch (opt) {
        case 'c': cmdline_dir = optarg; break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (optind + 1 != argc)
        usage();
    const char *command = argv[optind];

    /* Static, so that exits through die() leave nothing unreachable. */
    static char *dir;
    const char *given = config_find_dir(cmdline_dir);
    if (!(dir = realpath(given, NULL)))
        die("config directory %s: %s", given, strerror(errno));
    char err[ERR_MAX];
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0)
        die("%s", err);
    log_set_syslog_name(var.syslog_name);
    log_set_file(var.maillog_file);

    int rc;
    if (strcmp(command, "start") == 0)
        rc = cmd_start(dir);
    else if (strcmp(command, "start-fg") == 0)
        rc = cmd_start_fg(dir);
    else if (strcmp(command, "stop") == 0)
        rc = cmd_stop();
    else if (strcmp(command, "abort") == 0)
        rc = cmd_abort();
    else if (strcmp(command, "reload") == 0)
        rc = cmd_reload(dir);
    else if (strcmp(command, "status") == 0)
        rc = cmd_status();
    else if (strcmp(command, "flush") == 0)
        rc = cmd_flush();
    else if (strcmp(command, "check") == 0 || strcmp(command, "set-permissions") == 0)
        rc = cmd_check(dir);
    else
        usage();
    return rc;
}
