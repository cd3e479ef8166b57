/* process.c - master's child processes (see master.h and service.h).
 *
 * A child is spawned with its service's listener on fd 3, the shared status
 * pipe on fd 4 and the master-alive pipe of its class (front or back,
 * master.h) on fd 5, and starts "available".
 * Its status reports keep the service's count of available processes,
 * which decides when master spawns another. A reload turns every child
 * into the old generation: it no longer counts for its service and is only
 * reaped. Deaths right after start throttle the service, so a daemon that
 * cannot start does not make master fork in a loop.
 */
#include "master.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_FD_TEMP_MIN 10   /* above 3..5, so dup2 never clobbers a source */
/* qmgr's nice value: it is the one serial stage of delivery, and every
 * delivery agent waits for its next request. Under CPU contention from
 * other work the scheduler gives it the share of any one process, and the
 * agents then sit idle while it waits for a CPU (bench/README.md, "What
 * bounds each scenario": e2e 0.8x Postfix's at load 10 on 2 CPUs, 1.1x
 * with qmgr reniced). It uses a fraction of a CPU, so the others lose
 * little. Needs root (CAP_SYS_NICE); without it qmgr runs at master's. */
#define QMGR_NICE (-5)
#define STATUS_BATCH 64

struct child {
    pid_t pid;
    struct service *svc;   /* NULL once it belongs to an old generation */
    char *exe;             /* for log messages: owned */
    char *key;             /* its listener's key: owned */
    long long started;
    long long detached;    /* when it became old-generation */
    int available;
    int terminated;        /* master sent it SIGTERM itself */
    int front;             /* of a front service (master.h) */
};

static struct child *children;
static size_t nchildren, capchildren;

static struct child *child_find(pid_t pid)
{
    for (size_t i = 0; i < nchildren; i++)
        if (children[i].pid == pid)
            return &children[i];
    return NULL;
}

static void child_remove(struct child *c)
{
    free(c->exe);
    free(c->key);
    *c = children[--nchildren];
}

static int table_reserve(void)
{
    if (nchildren < capchildren)
        return 0;
    size_t cap = capchildren ? capchildren * 2 : 64;
    struct child *n = realloc(children, cap * sizeof(*n));
    if (!n)
        return -1;
    children = n;
    capchildren = cap;
    return 0;
}

/* argv per service.h: COMMAND -c DIR -n NAME -t TYPE [-r] [master.cf args].
 * The array is the caller's to free; its strings belong to s. */
static char **build_argv(const struct service *s)
{
    char **argv = calloc(8 + s->nargs + 1, sizeof(*argv));
    if (!argv)
        return NULL;
    size_t n = 0;
    argv[n++] = s->argv0 ? s->argv0 : s->command;
    argv[n++] = "-c";
    argv[n++] = master.params.config_dir;
    argv[n++] = "-n";
    argv[n++] = s->name;
    argv[n++] = "-t";
    argv[n++] = (char *)mastercf_type_name(s->spec.type);
    if (s->chroot)
        argv[n++] = "-r";
    for (size_t i = 0; i < s->nargs; i++)
        argv[n++] = s->args[i];
    argv[n] = NULL;
    return argv;
}

/* In the child: give it a clean signal state and exactly fds 3 to 6
 * (everything else of master's is close-on-exec), then exec. */
static _Noreturn void child_exec(const struct service *s, char **argv)
{
    static const int sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGPIPE, SIGQUIT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    int src[4] = {s->listen_fd, master.status_wfd, master.alive_rfd[service_alive_class(s)],
                  master.secret_fd};
    int tmp[4];
    for (int i = 0; i < 4; i++)
        if ((tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, CHILD_FD_TEMP_MIN)) < 0) {
            msg_warn("%s: cannot set up descriptors: %m", s->exe);
            _exit(1);
        }
    for (int i = 0; i < 4; i++)
        if (dup2(tmp[i], SERVICE_LISTEN_FD + i) < 0) {
            msg_warn("%s: dup2: %m", s->exe);
            _exit(1);
        }
    if (strcmp(s->command, "qmgr") == 0 || strcmp(s->command, "oqmgr") == 0)
        (void)setpriority(PRIO_PROCESS, 0, QMGR_NICE);   /* best effort, see above */
    execv(s->exe, argv);
    msg_warn("exec %s: %m", s->exe);
    _exit(1);
}

/* Until it execs, a child is a copy of master, "master" in ps; whoever
 * counts master processes (postern, tests, an admin) must not see two.
 * So the spawner waits for the exec: the child holds the write end of a
 * close-on-exec pipe, and EOF on the read end means exec has happened (or
 * the child died). The write end sits above fds 3-5, which the child
 * overwrites. Returns the read end in *rfd and the write end, or -1. */
static int exec_sync_open(int *rfd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    int w = fcntl(p[1], F_DUPFD_CLOEXEC, SERVICE_ALIVE_FD + 1);
    close(p[1]);
    if (w < 0) {
        close(p[0]);
        return -1;
    }
    *rfd = p[0];
    return w;
}

static void exec_sync_wait(int rfd)
{
    char c;
    while (read(rfd, &c, 1) < 0 && errno == EINTR)
        ;
    close(rfd);
}

int process_spawn(struct service *s, long long now)
{
    char **argv = build_argv(s);
    char *exe = strdup(s->exe), *key = strdup(s->spec.key);
    pid_t pid = -1;
    int sync_r = -1, sync_w = -1;
    if (master.alive_rfd[service_alive_class(s)] < 0)
        errno = EPIPE;   /* its alive pipe is closed: a stop is under way */
    else if (argv && exe && key && table_reserve() == 0 &&
             (sync_w = exec_sync_open(&sync_r)) >= 0)
        pid = fork();
    if (pid == 0)
        child_exec(s, argv);
    if (sync_w >= 0)
        close(sync_w);
    if (sync_r >= 0)
        exec_sync_wait(sync_r);
    free(argv);
    if (pid < 0) {
        msg_warn("cannot start %s: %m", s->exe);
        free(exe);
        free(key);
        /* Retrying at once would spin while memory or processes are short. */
        s->throttle_until = now + MASTER_STARTUP_GRACE_MS;
        return -1;
    }
    struct child *c = &children[nchildren++];
    memset(c, 0, sizeof(*c));
    c->pid = pid;
    c->svc = s;
    c->exe = exe;
    c->key = key;
    c->started = now;
    c->available = 1;
    c->front = service_alive_class(s) == ALIVE_FRONT;
    s->nproc++;
    s->navail++;
    return 0;
}

static void log_abnormal_exit(const struct child *c, int status)
{
    if (WIFSIGNALED(status))
        msg_warn("process %s pid %ld killed by signal %d", c->exe, (long)c->pid,
                 WTERMSIG(status));
    else if (WIFEXITED(status))
        msg_warn("process %s pid %ld exit status %d", c->exe, (long)c->pid,
                 WEXITSTATUS(status));
}

/* Account for a dead child of the current generation and decide how soon
 * its service may have another. */
static void service_child_gone(struct service *s, const struct child *c, int abnormal,
                               long long now)
{
    s->nproc--;
    if (c->available)
        s->navail--;
    if (now - c->started >= MASTER_STARTUP_GRACE_MS) {
        s->throttle_delay = 0;
        return;
    }
    if (abnormal) {
        long long cap = master.params.throttle_ms > MASTER_STARTUP_GRACE_MS
                            ? master.params.throttle_ms
                            : MASTER_STARTUP_GRACE_MS;
        s->throttle_delay = s->throttle_delay ? s->throttle_delay * 2 : MASTER_STARTUP_GRACE_MS;
        if (s->throttle_delay > cap)
            s->throttle_delay = cap;
        s->throttle_until = now + s->throttle_delay;
        msg_warn("%s: bad command startup -- throttling", c->exe);
    } else if (s->keep_running) {
        /* A clean but instant exit must not turn into a fork loop either. */
        s->throttle_until = now + MASTER_STARTUP_GRACE_MS;
    }
}

void process_reap(long long now)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return;
        struct child *c = child_find(pid);
        if (!c)
            continue;
        int abnormal = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
        /* Deaths that master caused itself are not news. */
        if (abnormal && !master.stopping && !c->terminated)
            log_abnormal_exit(c, status);
        /* Counts stay right during a stop: back services still spawn. A
         * death master caused is no reason to throttle. */
        if (c->svc)
            service_child_gone(c->svc, c, abnormal && !master.stopping && !c->terminated, now);
        child_remove(c);
    }
}

static void apply_status(const struct service_status *st)
{
    struct child *c = child_find(st->pid);
    if (!c || !c->svc)
        return;
    int avail = st->available ? 1 : 0;
    c->svc->navail += avail - c->available;
    c->available = avail;
}

void process_read_status(int fd)
{
    /* Records are written atomically (smaller than PIPE_BUF), but a read
     * may still end inside one when the buffer fills; keep the rest. */
    static unsigned char carry[sizeof(struct service_status)];
    static size_t ncarry;
    unsigned char buf[STATUS_BATCH * sizeof(struct service_status)];
    for (;;) {
        memcpy(buf, carry, ncarry);
        ssize_t n = read(fd, buf + ncarry, sizeof(buf) - ncarry);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        size_t total = ncarry + (size_t)n, off = 0;
        for (; off + sizeof(struct service_status) <= total; off += sizeof(struct service_status)) {
            struct service_status st;
            memcpy(&st, buf + off, sizeof(st));
            apply_status(&st);
        }
        ncarry = total - off;
        memcpy(carry, buf + off, ncarry);
    }
}

void process_detach_all(long long now)
{
    for (size_t i = 0; i < nchildren; i++)
        if (children[i].svc) {
            children[i].svc = NULL;
            children[i].detached = now;
        }
}

int process_old_alive(const char *key, long long now, long long grace_ms)
{
    int alive = 0;
    for (size_t i = 0; i < nchildren; i++) {
        struct child *c = &children[i];
        if (c->svc || strcmp(c->key, key) != 0)
            continue;
        alive = 1;
        if (!c->terminated && now - c->detached >= grace_ms) {
            msg_warn("process %s pid %ld still running %lld s after reload; terminating it",
                     c->exe, (long)c->pid, grace_ms / 1000);
            kill(c->pid, SIGTERM);
            c->terminated = 1;
        }
    }
    return alive;
}

void process_signal_all(int sig)
{
    for (size_t i = 0; i < nchildren; i++) {
        kill(children[i].pid, sig);
        children[i].terminated = 1;
    }
}

size_t process_count(void)
{
    return nchildren;
}

size_t process_count_front(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nchildren; i++)
        n += children[i].front;
    return n;
}
