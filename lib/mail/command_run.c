/* command_run.c - an external command with a message on its stdin, timed,
 * and its status in Postfix's words (command_run.h).
 *
 * Moved here from local's command.c so that the pipe agent runs commands
 * the same way: one child set-up, one feeding loop, one sysexits table.
 */
#include "command_run.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdnoreturn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define WAIT_SLICE_MS 20
#define EXIT_SETUP_FAILED 75     /* EX_TEMPFAIL: the child could not start */
#define SHOWN_MAX 256            /* of a command in a status text */

struct child_io {
    pid_t pid;
    int in_fd;                   /* command's stdin, -1 once closed */
    int out_fd;                  /* command's stdout and stderr, -1 at EOF */
    struct command_result *r;
    struct timespec deadline;
};

/* --- the child --- */

/* Tell the parent why the command could not run, and give up. */
static noreturn void child_fail(const char *what)
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

/* Drop root for good and check that it cannot be regained. */
static void child_become(const struct command_spec *c)
{
    if (c->keep_ids || geteuid() != 0 || getuid() != 0)
        return;
    if (c->uid == 0) {
        errno = EPERM;
        child_fail("refusing to run a command as root");
    }
    if (setgroups(1, &c->gid) < 0 || setgid(c->gid) < 0 || setuid(c->uid) < 0)
        child_fail("set user id");
    if (setuid(0) == 0 || getuid() != c->uid || geteuid() != c->uid) {
        errno = EPERM;
        child_fail("privileges still held");
    }
}

static void child_enter_directories(const struct command_spec *c)
{
    if (c->chroot != NULL && (chroot(c->chroot) < 0 || chdir("/") < 0))
        child_fail("chroot");
    child_become(c);
    if (c->directory == NULL || chdir(c->directory) == 0)
        return;
    if (!c->directory_fallback || chdir("/") < 0)
        child_fail("change to the working directory");
}

static noreturn void child_exec(const struct command_spec *c, int in_fd, int out_fd)
{
    sigset_t none;

    setsid();
    if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0
        || dup2(out_fd, STDERR_FILENO) < 0)
        _exit(EXIT_SETUP_FAILED);
    /* Daemons ignore SIGPIPE, and an ignored signal stays ignored across
     * exec: give the command the defaults it expects. */
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    closefrom(STDERR_FILENO + 1);
    child_enter_directories(c);
    execve(c->path, c->argv, c->envp);
    child_fail(c->path);
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

/* Read what the command wrote; keep the first COMMAND_OUTPUT_MAX bytes.
 * Returns 0 at EOF, 1 otherwise. */
static int drain_output(struct child_io *io)
{
    struct command_result *r = io->r;
    char buf[4096];

    for (;;) {
        ssize_t n = read(io->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;   /* EAGAIN: nothing more now */
        if (n == 0)
            return 0;
        size_t room = COMMAND_OUTPUT_MAX - r->output_len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(r->output + r->output_len, buf, take);
        r->output_len += take;
        r->output[r->output_len] = 0;
    }
}

static void output_ready(struct child_io *io)
{
    if (!drain_output(io)) {
        close(io->out_fd);
        io->out_fd = -1;
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
            io->r->timed_out = 1;
            errno = ETIMEDOUT;
            return -1;
        }
        if (io->out_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP)))
            output_ready(io);
        if (!(p[0].revents & (POLLOUT | POLLERR | POLLHUP)))
            continue;
        ssize_t w = write(io->in_fd, buf, len);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0) {
            int saved = errno;
            close(io->in_fd);
            io->in_fd = -1;
            errno = saved;
            return saved == EPIPE ? 0 : -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void kill_group(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

/* Wait for the child, collecting output; kill its process group at the
 * deadline. Returns the wait status. */
static int wait_child(struct child_io *io)
{
    int status;

    for (;;) {
        pid_t got = waitpid(io->pid, &status, WNOHANG);
        if (got == io->pid)
            break;
        if (got < 0 && errno != EINTR)
            msg_fatal("waitpid: %s", strerror(errno));
        if (io->r->timed_out || past(&io->deadline)) {
            io->r->timed_out = 1;
            kill_group(io->pid);
            while (waitpid(io->pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (io->out_fd >= 0) {
            struct pollfd p = {.fd = io->out_fd, .events = POLLIN};
            if (poll(&p, 1, WAIT_SLICE_MS) > 0)
                output_ready(io);
        } else {
            struct timespec slice = {0, WAIT_SLICE_MS * 1000000L};
            nanosleep(&slice, NULL);
        }
    }
    /* What it wrote before it exited; a background process that keeps the
     * pipe open must not keep us waiting. */
    if (io->out_fd >= 0)
        drain_output(io);
    kill(-io->pid, SIGKILL);
    return status;
}

static int make_pipes(int in[2], int out[2])
{
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0) {
        int saved = errno;
        close(in[0]);
        close(in[1]);
        errno = saved;
        return -1;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    return 0;
}

int command_run(const struct command_spec *c, command_feed_fn feed, void *feed_ctx,
                struct command_result *r, struct delivery_status *st)
{
    struct child_io io = {.in_fd = -1, .out_fd = -1, .r = r};
    int in[2], out[2];

    memset(r, 0, sizeof(*r));
    if (make_pipes(in, out) < 0) {
        delivery_status_set(st, "4.3.0", "cannot create pipes: %s", strerror(errno));
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &io.deadline);
    io.deadline.tv_sec += c->time_limit;
    if ((io.pid = fork()) < 0) {
        delivery_status_set(st, "4.3.0", "cannot fork: %s", strerror(errno));
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        return -1;
    }
    if (io.pid == 0)
        child_exec(c, in[0], out[1]);
    close(in[0]);
    close(out[1]);
    io.in_fd = in[1];
    io.out_fd = out[0];
    r->feed = feed(feed_ctx, feed_stdin, &io);
    r->feed_errno = errno;
    if (io.in_fd >= 0)
        close(io.in_fd);
    r->status = wait_child(&io);
    if (io.out_fd >= 0)
        close(io.out_fd);
    return 0;
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

static const struct sysexit *sysexit_find(int code)
{
    for (size_t i = 0; i < sizeof(sysexits) / sizeof(sysexits[0]); i++)
        if (sysexits[i].code == code)
            return &sysexits[i];
    return NULL;
}

/* A feed that did not get the whole message in (other than the command
 * closing its stdin, which is its own business). */
static int feed_failed(const struct command_result *r, const char *shown,
                       struct delivery_status *st)
{
    if (r->feed == MAIL_COPY_EREAD) {
        delivery_status_set(st, "4.3.0", "error reading queue file");
        return 1;
    }
    if (r->feed < 0 && !r->timed_out) {
        delivery_status_set(st, "4.3.0", "cannot write to command \"%s\": %s", shown,
                            strerror(r->feed_errno));
        return 1;
    }
    return 0;
}

int command_failed(const struct command_result *r, const char *shown,
                   struct delivery_status *st)
{
    const char *out = r->output, *sep = *out != 0 ? ". Command output: " : "";
    const struct sysexit *e;
    char dsn[16], cmd[SHOWN_MAX];

    snprintf(cmd, sizeof(cmd), "%s", shown);
    if (feed_failed(r, cmd, st))
        return 1;
    if (r->timed_out) {
        msg_warn("command time limit exceeded: \"%s\"", cmd);
        delivery_status_set(st, "5.3.0", "Command time limit exceeded: \"%s\"", cmd);
        return 1;
    }
    if (WIFSIGNALED(r->status)) {
        delivery_status_set(st, "4.3.0", "Command died with signal %d: \"%s\"",
                            WTERMSIG(r->status), cmd);
        return 1;
    }
    if (WEXITSTATUS(r->status) == 0)
        return 0;
    if (output_dsn(out, dsn, sizeof(dsn)))
        delivery_status_set(st, dsn, "%s", out + strlen(dsn) + (out[strlen(dsn)] != 0));
    else if ((e = sysexit_find(WEXITSTATUS(r->status))) != NULL)
        delivery_status_set(st, e->dsn, "%s%s%s", e->text, sep, out);
    else
        delivery_status_set(st, "5.3.0", "Command died with status %d: \"%s\"%s%s",
                            WEXITSTATUS(r->status), cmd, sep, out);
    return 1;
}
