/* postdrop.c - running postdrop without blocking (postdrop.h).
 *
 * One SIGCHLD event on smtpd's loop reaps every child; each running
 * postdrop has an entry that says whom to tell. Children are few (one per
 * transaction, plus any stopped one not yet reaped), so a list will do.
 */
#include "postdrop.h"
#include "smtpd.h"

#include "config.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

struct child {
    struct child *next;
    pid_t pid;
    void (*exited)(void *ctx, int status);
    void *ctx;
};

static struct child *children;
static struct event *sigchld_ev;

static struct child *child_find(pid_t pid)
{
    for (struct child *c = children; c; c = c->next)
        if (c->pid == pid)
            return c;
    return NULL;
}

static void child_remove(struct child *gone)
{
    for (struct child **pp = &children; *pp; pp = &(*pp)->next) {
        if (*pp == gone) {
            *pp = gone->next;
            free(gone);
            return;
        }
    }
}

static void sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct child *c = child_find(pid);
        if (!c)
            continue;
        void (*exited)(void *, int) = c->exited;
        void *ctx = c->ctx;
        child_remove(c);
        if (WIFSIGNALED(status))
            msg_warn("postdrop (pid %ld) was killed by signal %d", (long)pid, WTERMSIG(status));
        if (exited)
            exited(ctx, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

/* The child's side: postdrop reads the pipe, and never writes to our
 * standard output, which is the SMTP client's. */
static void exec_postdrop(const char *path, int in)
{
    const char *argv[5];
    size_t n = 0;
    argv[n++] = "postdrop";
    if (strcmp(config_directory(), DEF_CONFIG_DIR) != 0) {
        argv[n++] = "-c";
        argv[n++] = config_directory();
    }
    argv[n++] = "-r";
    argv[n] = NULL;
    int null = open("/dev/null", O_WRONLY);
    if (dup2(in, 0) < 0 || null < 0 || dup2(null, 1) < 0)
        _exit(EX_OSERR);
    execv(path, (char *const *)argv);
    dprintf(2, "smtpd: fatal: cannot run %s: %s\n", path, strerror(errno));
    _exit(EX_UNAVAILABLE);
}

int smtpd_postdrop_start(pid_t *pid)
{
    char path[PATH_MAX];
    int fds[2];
    if (snprintf(path, sizeof(path), "%s/postdrop", var.command_directory) >= (int)sizeof(path)) {
        msg_warn("command_directory is too long");
        return -1;
    }
    if (!sigchld_ev) {
        sigchld_ev = evsignal_new(smtpd_base, SIGCHLD, sigchld_cb, NULL);
        if (!sigchld_ev || evsignal_add(sigchld_ev, NULL) < 0) {
            msg_warn("cannot watch SIGCHLD");
            return -1;
        }
    }
    struct child *c = calloc(1, sizeof(*c));
    if (!c || pipe2(fds, O_CLOEXEC) < 0) {
        msg_warn("cannot start %s: %s", path, c ? strerror(errno) : "out of memory");
        free(c);
        return -1;
    }
    c->pid = fork();
    if (c->pid == 0)
        exec_postdrop(path, fds[0]);
    close(fds[0]);
    if (c->pid < 0) {
        msg_warn("fork: %s", strerror(errno));
        close(fds[1]);
        free(c);
        return -1;
    }
    evutil_make_socket_nonblocking(fds[1]);
    c->next = children;
    children = c;
    *pid = c->pid;
    return fds[1];
}

void smtpd_postdrop_watch(pid_t pid, void (*exited)(void *ctx, int status), void *ctx)
{
    struct child *c = child_find(pid);
    if (c) {
        c->exited = exited;
        c->ctx = ctx;
    }
}

void smtpd_postdrop_stop(pid_t pid)
{
    struct child *c = child_find(pid);
    if (!c)
        return;
    c->exited = NULL;
    kill(pid, SIGTERM);
}

void smtpd_postdrop_wait_all(void)
{
    while (children) {
        while (waitpid(children->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        child_remove(children);
    }
}
