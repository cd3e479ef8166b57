/* lookup_async.c - lookups in tables that may wait on a server, run on
 * worker threads so that smtpd's event loop never waits (lookup_async.h).
 *
 * The hook of lookup_set_defer sees every such lookup the restriction
 * code makes between begin and end. An answer this owner already has for
 * (table, key) in the current evaluation is returned at once; otherwise a
 * job goes to the queue and the lookup is LOOKUP_PENDING. WORKERS threads
 * take jobs; each has its own copy of every table it has used (its own
 * server connections), so a slow server holds up only the one worker that
 * waits on it, and each wait is bounded by lookup_server_timeout. A
 * finished job goes back through an eventfd to the loop, which files the
 * answer with its owner and calls the owner's resume function. An owner
 * that went away meanwhile (session closed) gets nothing.
 */
#include "lookup_async.h"
#include "smtpd.h"

#include "log.h"
#include "lookup.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#define WORKERS 8            /* slow servers in a row before others wait */
#define QUEUE_MAX 10000      /* jobs waiting: beyond it, a temporary failure */
#define TABLES_MAX 64        /* tables one worker keeps open */

struct answer {              /* one (table, key) of one evaluation */
    struct answer *next;
    char *spec, *key, *value;
    int rc;                  /* LOOKUP_PENDING while its job runs */
};

struct owner {                /* a session that made deferred lookups */
    struct owner *next;
    void *id;                /* the session, NULL once it is gone */
    smtpd_lookup_resume_fn resume;
    struct answer *answers;
    int jobs;                /* in flight */
    int waiting;             /* its evaluation stopped on a pending answer */
};

struct job {
    struct job *next;
    struct owner *owner;     /* touched by the loop thread only */
    struct answer *answer;   /* filled by the worker: rc, value */
    char *spec, *key;        /* the worker's copies */
    int rc;
    char *value;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct job *todo, **todo_tail, *done, **done_tail;
    int queued, started;
    int efd;
    struct event *ev;
    struct owner *owners;    /* loop thread only */
    void *current;           /* the evaluating session, between begin and end */
    smtpd_lookup_resume_fn current_resume;
} aq = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .efd = -1,
};

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n);
    if (p == NULL)
        msg_fatal("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        msg_fatal("out of memory");
    return p;
}

/* --- worker threads --- */

struct worker_tables {
    int n;
    struct lookup_table *t[TABLES_MAX];
};

/* This worker's copy of spec, opened on first use. */
static struct lookup_table *worker_table(struct worker_tables *w, const char *spec)
{
    char err[512];
    struct lookup_table *t;

    for (int i = 0; i < w->n; i++)
        if (strcmp(lookup_table_spec(w->t[i]), spec) == 0)
            return w->t[i];
    if ((t = lookup_open(spec, err, sizeof(err))) == NULL) {
        msg_warn("%s", err);
        return NULL;
    }
    if (w->n == TABLES_MAX) {   /* keep the newest: evict the oldest */
        lookup_close(w->t[0]);
        memmove(w->t, w->t + 1, sizeof(w->t[0]) * (TABLES_MAX - 1));
        w->n--;
    }
    return w->t[w->n++] = t;
}

static void *worker_main(void *arg)
{
    struct worker_tables tables = {0};
    uint64_t one = 1;

    for (;;) {
        pthread_mutex_lock(&aq.lock);
        while (aq.todo == NULL)
            pthread_cond_wait(&aq.work, &aq.lock);
        struct job *j = aq.todo;
        if ((aq.todo = j->next) == NULL)
            aq.todo_tail = &aq.todo;
        aq.queued--;
        pthread_mutex_unlock(&aq.lock);

        struct lookup_table *t = worker_table(&tables, j->spec);
        j->value = NULL;
        j->rc = t ? lookup_get_now(t, j->key, &j->value) : LOOKUP_TEMPFAIL;

        pthread_mutex_lock(&aq.lock);
        j->next = NULL;
        *aq.done_tail = j;
        aq.done_tail = &j->next;
        pthread_mutex_unlock(&aq.lock);
        if (write(aq.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            msg_warn("lookup worker: write eventfd: %m");
    }
    return NULL;
}

/* --- the loop thread --- */

static void job_free(struct job *j)
{
    free(j->spec);
    free(j->key);
    free(j->value);
    free(j);
}

static void owner_drop_answers(struct owner *o)
{
    while (o->answers != NULL) {
        struct answer *a = o->answers;
        o->answers = a->next;
        free(a->spec);
        free(a->key);
        free(a->value);
        free(a);
    }
}

static struct owner *owner_find(void *id)
{
    for (struct owner *o = aq.owners; o != NULL; o = o->next)
        if (o->id == id)
            return o;
    return NULL;
}

/* Unlink and free o once it is gone and no job refers to it. */
static void owner_release(struct owner *o)
{
    if (o->id != NULL || o->jobs > 0)
        return;
    for (struct owner **pp = &aq.owners; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    owner_drop_answers(o);
    free(o);
}

/* An owner with no answers and no jobs costs a walk of the list for
 * nothing: drop it (it is made again on its next deferred lookup). */
static void owner_release_if_idle(struct owner *o)
{
    if (o->jobs == 0 && o->answers == NULL && aq.current != o->id) {
        o->id = NULL;
        owner_release(o);
    }
}

/* Finished jobs: file each answer, then resume each owner once. */
static void jobs_done(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;
    struct job *list;

    if (read(aq.efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        msg_warn("lookup: read eventfd: %m");
    pthread_mutex_lock(&aq.lock);
    list = aq.done;
    aq.done = NULL;
    aq.done_tail = &aq.done;
    pthread_mutex_unlock(&aq.lock);
    while (list != NULL) {
        struct job *j = list;
        struct owner *o = j->owner;
        list = j->next;
        o->jobs--;
        if (o->id != NULL && j->answer != NULL) {
            j->answer->rc = j->rc;
            j->answer->value = j->value;
            j->value = NULL;
        }
        job_free(j);
        if (o->id == NULL) {
            owner_release(o);
        } else if (o->waiting) {
            /* Only an evaluation that stopped on an answer goes on: one
             * that waits for DNS, or is over, is not disturbed. */
            o->waiting = 0;
            o->resume(o->id);
        }
    }
}

static int start_pool(void)
{
    pthread_t tid;
    pthread_attr_t attr;
    sigset_t all, old;

    if ((aq.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        msg_warn("lookup: eventfd: %m");
        return -1;
    }
    aq.todo_tail = &aq.todo;
    aq.done_tail = &aq.done;
    aq.ev = event_new(smtpd_base, aq.efd, EV_READ | EV_PERSIST, jobs_done, NULL);
    if (aq.ev == NULL || event_add(aq.ev, NULL) < 0)
        msg_fatal("lookup: cannot watch the worker eventfd");
    /* Signals stay with the loop thread: workers start with all blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&tid, &attr, worker_main, NULL) == 0)
            aq.started++;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (aq.started == 0)
        msg_warn("lookup: no worker thread could be started; lookups run in the event loop");
    return aq.started > 0 ? 0 : -1;
}

/* Queue the lookup of key in t for o. LOOKUP_PENDING, or LOOKUP_TEMPFAIL
 * when the queue is full. */
static int enqueue(struct owner *o, struct lookup_table *t, const char *key)
{
    struct answer *a = xcalloc(sizeof(*a));
    struct job *j = xcalloc(sizeof(*j));
    int full;

    a->spec = xstrdup(lookup_table_spec(t));
    a->key = xstrdup(key);
    a->rc = LOOKUP_PENDING;
    j->owner = o;
    j->answer = a;
    j->spec = xstrdup(a->spec);
    j->key = xstrdup(key);
    pthread_mutex_lock(&aq.lock);
    if (!(full = aq.queued >= QUEUE_MAX)) {
        *aq.todo_tail = j;
        aq.todo_tail = &j->next;
        aq.queued++;
        pthread_cond_signal(&aq.work);
    }
    pthread_mutex_unlock(&aq.lock);
    if (full) {
        msg_warn("table %s: %d lookups waiting; lookup of \"%.100s\" not started",
                 a->spec, QUEUE_MAX, key);
        a->rc = LOOKUP_TEMPFAIL;
        job_free(j);
    } else {
        o->jobs++;
    }
    a->next = o->answers;
    o->answers = a;
    return a->rc;
}

/* The owner record of the evaluating session, made on its first
 * deferred lookup. */
static struct owner *current_owner(void)
{
    struct owner *o = owner_find(aq.current);

    if (o == NULL) {
        o = xcalloc(sizeof(*o));
        o->id = aq.current;
        o->next = aq.owners;
        aq.owners = o;
    }
    o->resume = aq.current_resume;
    return o;
}

/* The hook: an answer this evaluation already has, or a job. */
static int defer_lookup(struct lookup_table *t, const char *key, char **value)
{
    struct owner *o;
    int rc;

    if (aq.current == NULL || (aq.started == 0 && (aq.efd >= 0 || start_pool() < 0)))
        return lookup_get_now(t, key, value);
    o = current_owner();
    for (struct answer *a = o->answers; a != NULL; a = a->next) {
        if (strcmp(a->key, key) == 0 && strcmp(a->spec, lookup_table_spec(t)) == 0) {
            if (a->rc == LOOKUP_FOUND)
                *value = xstrdup(a->value);
            o->waiting |= a->rc == LOOKUP_PENDING;
            return a->rc;
        }
    }
    rc = enqueue(o, t, key);
    o->waiting |= rc == LOOKUP_PENDING;
    return rc;
}

void smtpd_lookup_async_begin(void *id, smtpd_lookup_resume_fn resume)
{
    aq.current = id;
    aq.current_resume = resume;
    lookup_set_defer(defer_lookup);
}

void smtpd_lookup_async_end(void)
{
    aq.current = NULL;
    lookup_set_defer(NULL);
}

/* Answers still pending stay filed (their jobs point at them); the rest go,
 * and nothing waits any more. */
void smtpd_lookup_async_reset(void *id)
{
    struct owner *o = owner_find(id);

    if (o == NULL)
        return;
    o->waiting = 0;
    for (struct answer **pp = &o->answers; *pp != NULL;) {
        struct answer *a = *pp;
        if (a->rc == LOOKUP_PENDING) {
            pp = &a->next;
            continue;
        }
        *pp = a->next;
        free(a->spec);
        free(a->key);
        free(a->value);
        free(a);
    }
    owner_release_if_idle(o);
}

void smtpd_lookup_async_forget(void *id)
{
    struct owner *o = owner_find(id);

    if (aq.current == id)
        smtpd_lookup_async_end();
    if (o == NULL)
        return;
    o->id = NULL;
    /* Jobs in flight still point at its answers: kept until they are in. */
    owner_release(o);
}
