/* qmgr - the queue manager.
 *
 * Wakes on its fifo (public/qmgr) and on a timer, takes complete files from
 * incoming/ (and due ones from deferred/) into active/ up to
 * qmgr_message_active_limit, resolves each recipient, hands local ones to
 * the local delivery agent, marks results in place, and removes a file only
 * when every recipient is done; a file with temporary failures goes to
 * deferred/ with its next attempt time as mtime. At start it takes back
 * whatever a previous qmgr left in active/. A lock file keeps a second qmgr
 * (e.g. during a reload) from scheduling the same files.
 */
#include "qmgr.h"

#include "address.h"
#include "config.h"
#include "delivery.h"
#include "events.h"
#include "log.h"
#include "match.h"
#include "queue_file.h"
#include "queue_id.h"
#include "service.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RCPT_PER_MESSAGE 100000

static struct {
    struct event_base *base;
    struct qmsg *active;      /* doubly linked list of messages in active/ */
    long nactive;
    long active_limit;
    int draining;             /* master went away: finish and exit */
    int scan_again;           /* a scan stopped at the active limit */
    const char *mydestination;
} q;

static void scan_incoming(void);

/* --- message lifecycle --- */

static void qmsg_link(struct qmsg *m)
{
    m->next = q.active;
    if (q.active)
        q.active->prev = m;
    q.active = m;
    q.nactive++;
}

static void qmsg_free(struct qmsg *m)
{
    transport_forget(m);
    if (m->prev)
        m->prev->next = m->next;
    else
        q.active = m->next;
    if (m->next)
        m->next->prev = m->prev;
    q.nactive--;
    if (m->fd >= 0)
        close(m->fd);
    queue_envelope_free(&m->env);
    free(m->state);
    free(m);
}

static void maybe_exit(void)
{
    if (q.draining && transport_busy() == 0)
        event_base_loopbreak(q.base);
}

/* Reopen the queue file to mark results in place. */
static int qmsg_open(struct qmsg *m)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, m->env.id) < 0)
        return -1;
    m->fd = open(path, O_RDWR | O_CLOEXEC);
    if (m->fd < 0)
        msg_warn("%s: open %s: %s", m->env.id, path, strerror(errno));
    return m->fd;
}

/* Next attempt: now + the message's age, clamped to the backoff limits. */
static time_t next_attempt(const struct qmsg *m)
{
    time_t now = time(NULL);
    long age = (long)(now - m->env.arrival.tv_sec);
    long lo = config_time("minimal_backoff_time"), hi = config_time("maximal_backoff_time");
    long delay = age < lo ? lo : age > hi ? hi : age;
    return now + delay;
}

static void defer_message(struct qmsg *m)
{
    char path[PATH_MAX];
    if (queue_file_move(m->env.id, QUEUE_ACTIVE, QUEUE_DEFERRED) < 0) {
        msg_warn("%s: move to deferred: %s", m->env.id, strerror(errno));
        return;
    }
    if (queue_path(path, sizeof(path), QUEUE_DEFERRED, m->env.id) == 0) {
        struct timespec ts[2] = {{.tv_sec = next_attempt(m)}, {.tv_sec = next_attempt(m)}};
        if (utimensat(AT_FDCWD, path, ts, 0) < 0)
            msg_warn("%s: set retry time: %s", m->env.id, strerror(errno));
    }
}

static void remove_message(struct qmsg *m)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, m->env.id) < 0 || unlink(path) < 0) {
        msg_warn("%s: remove %s: %s", m->env.id, path, strerror(errno));
        return;
    }
    msg_info("%s: removed", m->env.id);
}

/* Every recipient has a result: remove the file or defer it. */
static void finish_message(struct qmsg *m)
{
    int deferred = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        deferred |= m->state[i] == RCPT_DEFERRED;
    if (deferred)
        defer_message(m);
    else
        remove_message(m);
    qmsg_free(m);
    if (q.scan_again && !q.draining)
        scan_incoming();
    maybe_exit();
}

void qmgr_rcpt_result(struct qmsg *m, size_t i, const char *dsn_and_text)
{
    if (i >= m->env.nrcpt || m->state[i] != RCPT_INFLIGHT)
        return;
    m->inflight--;
    if (m->fd < 0 && qmsg_open(m) < 0) {
        m->state[i] = RCPT_DEFERRED;
        return;
    }
    /* Permanent failures are final for this recipient; the bounce notice
     * to the sender is the bounce daemon's job. */
    if (dsn_and_text[0] == '2' || dsn_and_text[0] == '5') {
        if (queue_file_mark_done(m->fd, m->env.rcpt[i].offset) < 0) {
            msg_warn("%s: mark recipient done: %s", m->env.id, strerror(errno));
            m->state[i] = RCPT_DEFERRED;
            return;
        }
        m->state[i] = RCPT_DONE;
    } else {
        m->state[i] = RCPT_DEFERRED;
    }
}

void qmgr_request_done(struct qmsg *m)
{
    if (m->inflight == 0 && m->fd >= 0) {
        close(m->fd);   /* descriptors are held only while in flight */
        m->fd = -1;
    }
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->state[i] == RCPT_PENDING || m->state[i] == RCPT_INFLIGHT)
            return;
    finish_message(m);
}

/* --- resolving --- */

static int is_local(const char *addr)
{
    const char *domain = address_domain(addr);
    return !domain || match_domain_list(q.mydestination, domain);
}

/* Recipients no transport can take yet are deferred on the spot. */
static void defer_unroutable(struct qmsg *m, size_t i)
{
    struct delivery_result r = {
        .queue_id = m->env.id,
        .recipient = m->env.rcpt[i].address,
        .orig_recipient = m->env.rcpt[i].orig,
        .relay = "none",
        .dsn = "4.3.0",
        .text = "mail transport unavailable",
    };
    r.times.arrival = m->env.arrival;
    r.times.active = m->active;
    gettimeofday(&r.times.done, NULL);
    r.times.agent_start = r.times.conn_done = r.times.done;
    delivery_log(&r);
    m->state[i] = RCPT_DEFERRED;
}

static void schedule_message(struct qmsg *m)
{
    int local = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        if (m->env.rcpt[i].done) {
            m->state[i] = RCPT_DONE;
        } else if (is_local(m->env.rcpt[i].address)) {
            m->state[i] = RCPT_PENDING;
            local = 1;
        } else {
            defer_unroutable(m, i);
        }
    }
    if (local)
        transport_submit(m);
    else
        qmgr_request_done(m);
}

/* --- taking files in --- */

static void move_to_corrupt(const char *id, const char *why)
{
    msg_warn("%s: %s; moving to %s/", id, why, QUEUE_CORRUPT);
    if (queue_file_move(id, QUEUE_ACTIVE, QUEUE_CORRUPT) < 0)
        msg_warn("%s: move to corrupt: %s", id, strerror(errno));
}

static void take_in(const char *from, const char *id)
{
    char path[PATH_MAX];
    if (strcmp(from, QUEUE_ACTIVE) != 0 && queue_file_move(id, from, QUEUE_ACTIVE) < 0) {
        if (errno != ENOENT)
            msg_warn("%s: move %s to active: %s", id, from, strerror(errno));
        return;
    }
    if (queue_path(path, sizeof(path), QUEUE_ACTIVE, id) < 0)
        return;
    struct qmsg *m = calloc(1, sizeof(*m));
    if (!m)
        msg_fatal("out of memory");
    m->fd = open(path, O_RDWR | O_CLOEXEC);
    if (m->fd < 0) {
        msg_warn("%s: open: %s", id, strerror(errno));
        free(m);
        return;
    }
    int rc = queue_envelope_read(m->fd, &m->env, MAX_RCPT_PER_MESSAGE);
    if (rc < 0 || !m->env.complete || m->env.nrcpt == 0) {
        close(m->fd);
        queue_envelope_free(&m->env);
        free(m);
        move_to_corrupt(id, "malformed or incomplete queue file");
        return;
    }
    close(m->fd);
    m->fd = -1;
    size_t idlen = strnlen(id, sizeof(m->env.id) - 1);
    memcpy(m->env.id, id, idlen);
    m->env.id[idlen] = 0;
    snprintf(m->queue, sizeof(m->queue), "%s", from);
    m->state = calloc(m->env.nrcpt, sizeof(*m->state));
    if (!m->state)
        msg_fatal("out of memory");
    gettimeofday(&m->active, NULL);
    qmsg_link(m);
    msg_info("%s: from=<%s>, size=%lld, nrcpt=%zu (queue active)", id, m->env.sender,
             m->env.content_size, m->env.nrcpt);
    schedule_message(m);
}

/* A complete file from cleanup has the execute bit (queue_file.h). */
static int incoming_ready(const char *dir, const char *name)
{
    struct stat st;
    char path[PATH_MAX];
    if (!queue_id_valid(name) || snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == QUEUE_MODE_COMPLETE;
}

/* Take in ready files of one directory; stops at the active limit. */
static void scan_dir(const char *queue, const char *sub, int (*ready)(const char *, const char *))
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s/%s%s%s", config_get("queue_directory"), queue,
                 sub ? "/" : "", sub ? sub : "") >= (int)sizeof(dir))
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (q.nactive >= q.active_limit) {
            q.scan_again = 1;
            break;
        }
        if (ready(dir, de->d_name))
            take_in(queue, de->d_name);
    }
    closedir(d);
}

static void scan_incoming(void)
{
    q.scan_again = 0;
    scan_dir(QUEUE_INCOMING, NULL, incoming_ready);
}

static int deferred_force;

/* A deferred file is due when its mtime (next attempt) has passed. */
static int deferred_due(const char *dir, const char *name)
{
    struct stat st;
    char path[PATH_MAX];
    if (!queue_id_valid(name) || snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return 0;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return deferred_force || st.st_mtime <= time(NULL);
}

static void scan_deferred(int force)
{
    char dir[PATH_MAX];
    deferred_force = force;
    if (queue_dir_path(dir, sizeof(dir), QUEUE_DEFERRED) < 0)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && q.nactive < q.active_limit)
        if (de->d_name[0] != '.' && strlen(de->d_name) == 1)
            scan_dir(QUEUE_DEFERRED, de->d_name, deferred_due);
    closedir(d);
}

/* Whatever a previous qmgr left in active/ is scheduled again. */
static int any_file(const char *dir, const char *name)
{
    return queue_id_valid(name);
}

static void recover_active(void)
{
    scan_dir(QUEUE_ACTIVE, NULL, any_file);
}

/* --- events --- */

static void fifo_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    int flush = 0;
    for (ssize_t i = 0; i < n; i++)
        flush |= buf[i] == 'F';
    if (q.draining)
        return;
    if (flush)
        scan_deferred(1);
    scan_incoming();
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    if (q.draining)
        return;
    scan_deferred(0);
    scan_incoming();
}

static void master_gone(void *arg)
{
    struct event *fifo_ev = arg;
    q.draining = 1;
    event_del(fifo_ev);
    maybe_exit();
}

/* Only one qmgr may schedule at a time; a successor waits here. */
static void lock_queue_manager(void)
{
    char path[PATH_MAX];
    if (queue_dir_path(path, sizeof(path), "pid/qmgr.lock") < 0)
        msg_fatal("queue_directory too long");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        msg_fatal("open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR)
            msg_fatal("lock %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "qmgr", 0);
    lock_queue_manager();
    q.base = event_base_new();
    if (!q.base)
        msg_fatal("event_base_new failed");
    q.active_limit = config_int("qmgr_message_active_limit");
    q.mydestination = config_get("mydestination");
    transport_init(q.base, config_get("local_transport"),
                   (int)config_int("default_destination_concurrency_limit"));
    struct event *fifo_ev = event_new(q.base, SERVICE_LISTEN_FD, EV_READ | EV_PERSIST, fifo_cb, NULL);
    long delay = config_time("queue_run_delay");
    struct timeval tv = {.tv_sec = delay > 0 ? delay : 1};
    struct event *timer = event_new(q.base, -1, EV_PERSIST, timer_cb, NULL);
    if (!fifo_ev || !timer || event_add(fifo_ev, NULL) < 0 || event_add(timer, &tv) < 0)
        msg_fatal("cannot set up events");
    events_watch_master(q.base, master_gone, fifo_ev);
    recover_active();
    scan_incoming();
    event_base_dispatch(q.base);
    return 0;
}
