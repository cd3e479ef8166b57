/* command.c - delivery to a command: "|command" from an alias, a .forward
 * or an :include: file, and mailbox_command.
 *
 * The command text comes only from the administrator (aliases,
 * mailbox_command) or the user (.forward); it runs as "/bin/sh -c COMMAND"
 * in a child that has dropped root for good (setgroups, setgid, setuid,
 * then checked), in a new session, with the message on stdin and a fixed
 * environment. Envelope text (sender, recipient) reaches the command only
 * through that environment, with every character outside a safe set
 * replaced by '_', so no address can smuggle shell syntax anywhere.
 *
 * The parent feeds stdin and collects a little of stdout/stderr (for the
 * bounce text) in one poll loop, so that a command that writes a lot
 * before reading cannot deadlock us, and kills the whole process group at
 * command_time_limit. The exit status follows <sysexits.h>, as in Postfix;
 * an enhanced status code at the start of the output wins.
 */
#include "local.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define OUTPUT_MAX 1000          /* bytes of command output kept */
#define ENV_VALUE_MAX 1024
#define ENV_COUNT 14
#define WAIT_SLICE_MS 20
#define EXIT_SETUP_FAILED 75     /* EX_TEMPFAIL: the child could not start */
#define DEFAULT_PATH "/usr/bin:/bin"

/* Postfix's command_expansion_filter default. */
static const char safe_chars[] =
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

struct child_io {
    pid_t pid;
    int in_fd;                  /* command's stdin, -1 once closed */
    int out_fd;                 /* command's stdout and stderr */
    char out[OUTPUT_MAX + 1];
    size_t out_len;
    struct timespec deadline;
    int timed_out;
};

/* --- the environment --- */

static char *env_entry(const char *name, const char *value)
{
    size_t len = strlen(name) + 1 + strnlen(value, ENV_VALUE_MAX) + 1;
    char *entry = malloc(len), *p;

    if (entry == NULL)
        msg_fatal("out of memory");
    snprintf(entry, len, "%s=%.*s", name, ENV_VALUE_MAX, value);
    for (p = entry + strlen(name) + 1; *p != 0; p++)
        if (strchr(safe_chars, *p) == NULL)
            *p = '_';
    return entry;
}

/* SENDER RECIPIENT ORIGINAL_RECIPIENT LOCAL EXTENSION DOMAIN USER LOGNAME
 * HOME SHELL PATH, NULL-terminated. Caller frees (env_free). */
static char **build_env(const struct local_user *u, const struct mail_copy_trace *t,
                        const struct local_command_env *e)
{
    char **env = calloc(ENV_COUNT, sizeof(char *));
    char local[DELIVERY_TEXT_MAX], user[DELIVERY_TEXT_MAX];
    const char *at = strrchr(e->recipient, '@');
    const char *delims = var.recipient_delimiter;
    size_t n = 0, cut, i;

    if (env == NULL)
        msg_fatal("out of memory");
    snprintf(local, sizeof(local), "%.*s",
             (int)(at != NULL ? (size_t)(at - e->recipient) : strlen(e->recipient)),
             e->recipient);
    snprintf(user, sizeof(user), "%s", local);
    cut = delims != NULL && *delims != 0 ? strcspn(user, delims) : strlen(user);
    if (cut == 0)
        cut = strlen(user);
    for (i = 0; user[i] != 0; i++)
        user[i] = (char)tolower((unsigned char)user[i]);
    env[n++] = env_entry("SENDER", t->sender);
    env[n++] = env_entry("RECIPIENT", e->recipient);
    env[n++] = env_entry("ORIGINAL_RECIPIENT", e->orig_rcpt ? e->orig_rcpt : e->recipient);
    env[n++] = env_entry("LOCAL", local);
    env[n++] = env_entry("EXTENSION", user[cut] != 0 ? local + cut + 1 : "");
    env[n++] = env_entry("DOMAIN", at != NULL ? at + 1 : "");
    user[cut] = 0;
    env[n++] = env_entry("USER", user);
    env[n++] = env_entry("LOGNAME", user);
    env[n++] = env_entry("HOME", u->home);
    env[n++] = env_entry("SHELL", u->shell[0] != 0 ? u->shell : "/bin/sh");
    env[n++] = env_entry("PATH", DEFAULT_PATH);
    env[n] = NULL;
    return env;
}

static void env_free(char **env)
{
    size_t i;

    for (i = 0; env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

/* --- the child --- */

/* Tell the parent why we could not run the command, and give up. */
static void child_fail(const char *what)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "4.3.0 cannot run command: %s: %s\n", what,
                     strerror(errno));

    if (n > 0) {
        ssize_t ignored = write(STDERR_FILENO, msg, (size_t)n);
        (void)ignored;
    }
    _exit(EXIT_SETUP_FAILED);
}

/* Drop root for good; verify that it cannot be regained. */
static void child_become(const struct local_user *u)
{
    if (!privs_can_switch())
        return;
    if (u->uid == 0) {
        errno = EPERM;
        child_fail("refusing to run a command as root");
    }
    if (setgroups(1, &u->gid) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
        child_fail("set user id");
    if (setuid(0) == 0 || getuid() != u->uid || geteuid() != u->uid) {
        errno = EPERM;
        child_fail("privileges still held");
    }
}

static noreturn void child_exec(const char *command, const struct local_user *u, int in_fd,
                                int out_fd, char **env)
{
    char *argv[] = {"sh", "-c", (char *)command, NULL};
    sigset_t none;

    setsid();
    if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0
        || dup2(out_fd, STDERR_FILENO) < 0)
        _exit(EXIT_SETUP_FAILED);
    /* service_init ignores SIGPIPE, and an ignored signal stays ignored
     * across exec: give the command the defaults it expects. */
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    closefrom(STDERR_FILENO + 1);
    child_become(u);
    if (chdir(u->home[0] != 0 ? u->home : "/") < 0 && chdir("/") < 0)
        child_fail("chdir");
    execve("/bin/sh", argv, env);
    child_fail("exec /bin/sh");
    _exit(EXIT_SETUP_FAILED);
}

/* --- the parent --- */

static int ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000
         + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

static int past(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec
           || (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Read what the command wrote; keep the first OUTPUT_MAX bytes. Returns
 * 0 at EOF, 1 otherwise. */
static int drain_output(struct child_io *io)
{
    char buf[4096];

    for (;;) {
        ssize_t n = read(io->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;   /* EAGAIN: nothing more now */
        if (n == 0)
            return 0;
        if (io->out_len < OUTPUT_MAX) {
            size_t take = (size_t)n < OUTPUT_MAX - io->out_len ? (size_t)n
                                                                : OUTPUT_MAX - io->out_len;
            memcpy(io->out + io->out_len, buf, take);
            io->out_len += take;
            io->out[io->out_len] = 0;
        }
    }
}

/* mail_copy_sink: feed stdin while draining output. A command that exits
 * or closes stdin early simply does not get the rest. */
static int feed_stdin(void *ctx, const char *buf, size_t len)
{
    struct child_io *io = ctx;

    while (len > 0 && io->in_fd >= 0) {
        struct pollfd p[2] = {{.fd = io->in_fd, .events = POLLOUT},
                              {.fd = io->out_fd, .events = POLLIN}};
        int n = poll(p, io->out_fd >= 0 ? 2 : 1, ms_left(&io->deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (past(&io->deadline)) {
            io->timed_out = 1;
            errno = ETIMEDOUT;
            return -1;
        }
        if (io->out_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP)) && !drain_output(io)) {
            close(io->out_fd);
            io->out_fd = -1;
        }
        if (!(p[0].revents & (POLLOUT | POLLERR | POLLHUP)))
            continue;
        ssize_t w = write(io->in_fd, buf, len);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0) {
            close(io->in_fd);
            io->in_fd = -1;
            return errno == EPIPE ? 0 : -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Wait for the child to exit, collecting output; kill its process group at
 * the deadline. Returns the wait status. */
static int wait_child(struct child_io *io)
{
    int status;

    for (;;) {
        pid_t r = waitpid(io->pid, &status, WNOHANG);
        if (r == io->pid)
            break;
        if (r < 0 && errno != EINTR)
            msg_fatal("waitpid: %s", strerror(errno));
        if (past(&io->deadline)) {
            io->timed_out = 1;
            kill(-io->pid, SIGKILL);
            kill(io->pid, SIGKILL);
            while (waitpid(io->pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (io->out_fd >= 0) {
            struct pollfd p = {.fd = io->out_fd, .events = POLLIN};
            if (poll(&p, 1, WAIT_SLICE_MS) > 0 && !drain_output(io)) {
                close(io->out_fd);
                io->out_fd = -1;
            }
        } else {
            struct timespec slice = {0, WAIT_SLICE_MS * 1000000L};
            nanosleep(&slice, NULL);
        }
    }
    /* What the command wrote before it exited; a background process that
     * keeps the pipe open must not keep us waiting. */
    if (io->out_fd >= 0)
        drain_output(io);
    kill(-io->pid, SIGKILL);
    return status;
}

/* --- the outcome --- */

struct sysexit {
    int code;
    const char *dsn;
    const char *text;
};

static const struct sysexit sysexits[] = {
    {64, "5.3.0", "command line usage error"},
    {65, "5.6.0", "data format error"},
    {66, "5.3.0", "cannot open input"},
    {67, "5.1.1", "user unknown"},
    {68, "5.1.2", "host name unknown"},
    {69, "5.3.0", "service unavailable"},
    {70, "5.3.0", "internal software error"},
    {71, "4.3.0", "system resource problem"},
    {72, "5.3.0", "critical OS file missing"},
    {73, "5.2.0", "can't create user output file"},
    {74, "5.3.0", "input/output error"},
    {75, "4.3.0", "temporary failure"},
    {76, "5.5.0", "remote protocol error"},
    {77, "5.7.0", "permission denied"},
    {78, "5.3.5", "local configuration error"},
};

/* "4.x.y " or "5.x.y " at the start of the output, copied into dsn. */
static int output_dsn(const char *out, char *dsn, size_t len)
{
    size_t n = strcspn(out, " \t\r\n");

    if (n == 0 || n >= len || (out[0] != '4' && out[0] != '5'))
        return 0;
    snprintf(dsn, len, "%.*s", (int)n, out);
    return delivery_dsn_valid(dsn);
}

static void set_outcome(struct delivery_status *st, const char *command, int status,
                        const struct child_io *io)
{
    char dsn[16], shown[256];
    const char *out = io->out;
    size_t i;

    snprintf(shown, sizeof(shown), "%s", command);
    if (io->timed_out) {
        delivery_status_set(st, "4.3.0", "Command time limit exceeded: \"%s\"", shown);
        return;
    }
    if (WIFSIGNALED(status)) {
        delivery_status_set(st, "4.3.0", "Command died with signal %d: \"%s\"", WTERMSIG(status),
                         shown);
        return;
    }
    if (WEXITSTATUS(status) == 0) {
        delivery_status_set(st, "2.0.0", "delivered to command: %s", shown);
        return;
    }
    if (output_dsn(out, dsn, sizeof(dsn))) {
        delivery_status_set(st, dsn, "%s", out + strlen(dsn) + 1);
        return;
    }
    for (i = 0; i < sizeof(sysexits) / sizeof(sysexits[0]); i++) {
        if (sysexits[i].code == WEXITSTATUS(status)) {
            delivery_status_set(st, sysexits[i].dsn, "%s%s%s", sysexits[i].text,
                             *out ? ". Command output: " : "", out);
            return;
        }
    }
    delivery_status_set(st, "5.3.0", "Command died with status %d: \"%s\"%s%s",
                     WEXITSTATUS(status), shown, *out ? ". Command output: " : "", out);
}

static int make_pipes(int in[2], int out[2])
{
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    return 0;
}

void command_deliver(const char *command, const struct local_user *u,
                     const struct deliver_message *m, const struct mail_copy_trace *t,
                     const struct local_command_env *env, struct delivery_status *st)
{
    struct child_io io = {.in_fd = -1, .out_fd = -1};
    int in[2], out[2], status, r;
    char **envp;

    if (make_pipes(in, out) < 0) {
        delivery_status_set(st, "4.3.0", "cannot create pipes: %s", strerror(errno));
        return;
    }
    envp = build_env(u, t, env);
    clock_gettime(CLOCK_MONOTONIC, &io.deadline);
    io.deadline.tv_sec += var.command_time_limit;
    if ((io.pid = fork()) < 0) {
        delivery_status_set(st, "4.3.0", "cannot fork: %s", strerror(errno));
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        env_free(envp);
        return;
    }
    if (io.pid == 0)
        child_exec(command, u, in[0], out[1], envp);
    env_free(envp);
    close(in[0]);
    close(out[1]);
    io.in_fd = in[1];
    io.out_fd = out[0];
    r = mail_copy(m, t, MAIL_COPY_FROM_LINE | MAIL_COPY_TRACE, 0, feed_stdin, &io);
    if (io.in_fd >= 0)
        close(io.in_fd);
    io.in_fd = -1;
    status = wait_child(&io);
    if (io.out_fd >= 0)
        close(io.out_fd);
    if (r == MAIL_COPY_EREAD) {
        msg_warn("%s: error reading queue file content", m->queue_id);
        delivery_status_set(st, "4.3.0", "error reading queue file");
        return;
    }
    if (r < 0 && !io.timed_out) {
        delivery_status_set(st, "4.3.0", "cannot write to command \"%s\": %s", command,
                         strerror(errno));
        return;
    }
    set_outcome(st, command, status, &io);
}
