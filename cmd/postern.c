/* postern.c - the administrator's control command.
 *
 *   postern [-c config_dir] [-v] start|stop|abort|reload|status|flush|check
 *
 * It finds master through the pid lock: queue_directory/pid/master.pid names
 * the master process, and is believed only while master holds its fcntl
 * lock on it (a stale file after a crash names nobody). "start" runs
 * daemon_directory/master, which returns only once every listener is bound;
 * the other commands signal master (stop and abort: SIGTERM, reload:
 * SIGHUP) or wake the queue manager (flush). Messages go to stderr and to
 * the mail log, in the style of Postfix's postfix-script.
 */
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "mastercf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_WAIT_SECS 60
#define STOP_POLL_MS 100
#define ERR_MAX 1024

static int verbose;

/* --- messages --- */

static void vreport(const char *level, const char *fmt, va_list ap)
{
    char text[ERR_MAX];
    vsnprintf(text, sizeof(text), fmt, ap);
    const char *name = config_get("syslog_name");
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
    if (snprintf(buf, len, "%s/pid/master.pid", config_get("queue_directory")) >= (int)len)
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

/* --- commands --- */

static int cmd_start(const char *dir)
{
    if (master_pid() > 0)
        die("the Postern mail system is already running");
    char exe[PATH_MAX];
    if (snprintf(exe, sizeof(exe), "%s/master", config_get("daemon_directory")) >= (int)sizeof(exe))
        die("daemon_directory path too long");
    if (access(exe, X_OK) < 0)
        die("cannot run %s: %s", exe, strerror(errno));
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

static int cmd_stop(void)
{
    pid_t pid = running_master_or_die();
    say("stopping the Postern mail system");
    signal_master(pid, SIGTERM);
    for (long waited = 0; waited < STOP_WAIT_SECS * 1000L; waited += STOP_POLL_MS) {
        if (master_pid() != pid)
            return 0;
        if (waited > 0 && waited % 5000 == 0)
            say("waiting for the Postern mail system to terminate");
        sleep_ms(STOP_POLL_MS);
    }
    warn("stopping the Postern mail system with force");
    kill(pid, SIGKILL);
    for (int i = 0; i < 50 && master_pid() == pid; i++)
        sleep_ms(STOP_POLL_MS);
    return master_pid() == pid ? 1 : 0;
}

static int cmd_abort(void)
{
    pid_t pid = running_master_or_die();
    say("aborting the Postern mail system");
    signal_master(pid, SIGTERM);
    return 0;
}

static int cmd_reload(void)
{
    pid_t pid = running_master_or_die();
    say("refreshing the Postern mail system");
    signal_master(pid, SIGHUP);
    return 0;
}

static int cmd_status(void)
{
    pid_t pid = master_pid();
    if (pid <= 0) {
        say("the Postern mail system is not running");
        return 1;
    }
    say("the Postern mail system is running: PID: %ld", (long)pid);
    return 0;
}

static int cmd_flush(void)
{
    running_master_or_die();
    if (ipc_trigger(IPC_PUBLIC, "qmgr", 'F') < 0)
        die("cannot wake the queue manager: %s", strerror(errno));
    return 0;
}

/* A first, small "check": master.cf parses and its programs exist. */
static int cmd_check(const char *dir)
{
    char path[PATH_MAX], err[ERR_MAX];
    struct mastercf cf;
    if (snprintf(path, sizeof(path), "%s/master.cf", dir) >= (int)sizeof(path))
        die("config directory path too long");
    if (mastercf_load(path, &cf, err, sizeof(err)) < 0)
        die("%s", err);
    const char *ddir = config_get("daemon_directory");
    for (size_t i = 0; i < cf.count; i++) {
        char exe[PATH_MAX];
        if (snprintf(exe, sizeof(exe), "%s/%s", ddir, cf.entries[i].command) >= (int)sizeof(exe)
            || access(exe, X_OK) < 0)
            warn("%s, line %d: service %s: cannot run %s", path, cf.entries[i].line,
                 cf.entries[i].name, exe);
        else if (verbose)
            say("service %s: %s", cf.entries[i].name, exe);
    }
    mastercf_free(&cf);
    struct stat st;
    const char *queue = config_get("queue_directory");
    if (stat(queue, &st) < 0 || !S_ISDIR(st.st_mode))
        warn("queue_directory %s does not exist yet (master creates it)", queue);
    return 0;
}

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: postern [-c config_dir] [-v] "
                    "start|stop|abort|reload|status|flush|check\n");
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
    log_set_syslog_name(config_get("syslog_name"));
    log_set_file(config_get("maillog_file"));

    int rc;
    if (strcmp(command, "start") == 0)
        rc = cmd_start(dir);
    else if (strcmp(command, "stop") == 0)
        rc = cmd_stop();
    else if (strcmp(command, "abort") == 0)
        rc = cmd_abort();
    else if (strcmp(command, "reload") == 0)
        rc = cmd_reload();
    else if (strcmp(command, "status") == 0)
        rc = cmd_status();
    else if (strcmp(command, "flush") == 0)
        rc = cmd_flush();
    else if (strcmp(command, "check") == 0)
        rc = cmd_check(dir);
    else
        usage();
    return rc;
}
