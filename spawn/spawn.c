/* spawn.c - Postfix's spawn(8): for each connection to its master.cf
 * service, run a command with the connection as its standard input,
 * output and error (a policy server such as policyd-spf that speaks on
 * stdio), as an unprivileged user and within a time limit.
 *
 *   policyd-spf unix - n n - 0 spawn user=nobody argv=/usr/bin/policyd-spf
 *
 * Attributes after the command: user=NAME[:GROUP] (required when master
 * runs as root; never root), argv=COMMAND ARGS... (the rest of the line).
 * The limit is <service>_time_limit, else command_time_limit; a command
 * still running then is killed. One connection per process at a time
 * (service_run_single): master starts more up to maxproc.
 */
#include "config.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char **cmd_argv;
static uid_t run_uid;
static gid_t run_gid;
static int switch_user;
static long time_limit;

/* "10", "10s", "2m", "1h", "1d"; -1 when it is none of those. */
static long parse_seconds(const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || n < 0)
        return -1;
    long unit = !*end || strcmp(end, "s") == 0 ? 1
                : strcmp(end, "m") == 0        ? 60
                : strcmp(end, "h") == 0        ? 3600
                : strcmp(end, "d") == 0        ? 86400
                                               : -1;
    return unit < 0 ? -1 : n * unit;
}

static void set_time_limit(void)
{
    char name[200];
    snprintf(name, sizeof(name), "%s_time_limit", service_name());
    const char *v = config_get(name);
    time_limit = v && *v ? parse_seconds(v) : var.command_time_limit;
    if (time_limit < 0)
        msg_fatal("bad parameter value: %s = %s", name, v);
}

/* user=NAME[:GROUP]: who the command runs as. */
static void set_user(const char *spec)
{
    char name[256];
    snprintf(name, sizeof(name), "%s", spec);
    char *group = strchr(name, ':');
    if (group)
        *group++ = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw)
        msg_fatal("unknown user name: %s", name);
    run_uid = pw->pw_uid;
    run_gid = pw->pw_gid;
    if (group) {
        struct group *gr = getgrnam(group);
        if (!gr)
            msg_fatal("unknown group name: %s", group);
        run_gid = gr->gr_gid;
    }
    if (run_uid == 0)
        msg_fatal("user= must not be root: %s", spec);
    switch_user = 1;
}

static void parse_attributes(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "user=", 5) == 0) {
            set_user(argv[i] + 5);
        } else if (strncmp(argv[i], "argv=", 5) == 0) {
            argv[i] += 5;
            cmd_argv = argv + i;
            break;
        } else {
            msg_fatal("unknown attribute: %s (expected user= or argv=)", argv[i]);
        }
    }
    if (!cmd_argv || !cmd_argv[0][0])
        msg_fatal("missing argv= command");
    if (!switch_user && geteuid() == 0)
        msg_fatal("missing user= attribute");
}

static noreturn void run_command(int fd)
{
    if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(127);
    if (fd > 2)
        close(fd);
    signal(SIGPIPE, SIG_DFL);
    if (switch_user && geteuid() == 0 &&
        (setgroups(1, &run_gid) < 0 || setgid(run_gid) < 0 || setuid(run_uid) < 0))
        _exit(127);
    execv(cmd_argv[0], cmd_argv);
    _exit(127);
}

static void on_alarm(int sig)
{
    (void)sig;   /* only interrupts waitpid */
}

/* Wait for the command; kill it at the time limit. */
static void wait_command(pid_t pid)
{
    struct sigaction sa = {.sa_handler = on_alarm};   /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)time_limit);
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
        msg_warn("command %s: time limit of %ld s exceeded; killed", cmd_argv[0], time_limit);
        kill(pid, SIGKILL);
    }
    alarm(0);
    if (r < 0)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        msg_warn("command %s: cannot execute", cmd_argv[0]);
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        msg_warn("command %s exit status %d", cmd_argv[0], WEXITSTATUS(status));
    else if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
        msg_warn("command %s killed by signal %d", cmd_argv[0], WTERMSIG(status));
}

static void serve(int fd)
{
    pid_t pid = fork();
    if (pid < 0) {
        msg_warn("fork: %s", strerror(errno));
        close(fd);
        return;
    }
    if (pid == 0)
        run_command(fd);
    close(fd);
    wait_command(pid);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "spawn", SERVICE_FLAG_ROOT);
    parse_attributes(argc - optind, argv + optind);
    set_time_limit();
    service_run_single(serve);
}
