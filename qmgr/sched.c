/* sched.c - who gets delivered next.
 *
 * Recipients are grouped into jobs (one message, one destination, up to the
 * transport's recipient limit). Each destination (transport + nexthop; for
 * local, the recipient) has a FIFO of jobs and a concurrency limit; the
 * destinations with work form a ring per transport, served round-robin so
 * one busy or broken site cannot starve the others. A remote destination
 * whose deliveries keep failing temporarily is marked dead for a while: its
 * queued and new jobs are deferred at once instead of tying up agents.
 */
#include "qmgr.h"

#include "config.h"
#include "log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEST_BUCKETS 4096
#define DEAD_AFTER_FAILURES 2

struct dest {
    struct transport *tp;
    char *key;
    char *nexthop;
    int inflight;             /* jobs at an agent */
    struct job *head, *tail;  /* queued jobs */
    int in_ring;
    struct dest *ring_prev, *ring_next;
    int fail_streak;
    time_t dead_until;
    char dead_reason[300];
    struct dest *hash_next;
};

static struct {
    struct transport *transports;
    struct dest *buckets[DEST_BUCKETS];
    size_t jobs;              /* queued + in flight */
} sc;

void sched_init(struct event_base *base)
{
    agent_init(base);
}

size_t sched_busy(void)
{
    return sc.jobs;
}

static long transport_param(const char *tp, const char *suffix, long fallback)
{
    char name[128];
    snprintf(name, sizeof(name), "%s_%s", tp, suffix);
    const char *v = config_get(name);
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (!*end && n > 0)
            return n;
        msg_warn("bad %s value: %s", name, v);
    }
    return fallback;
}

static struct transport *transport_get(const char *name)
{
    for (struct transport *t = sc.transports; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    struct transport *t = calloc(1, sizeof(*t));
    if (!t)
        msg_fatal("out of memory");
    snprintf(t->name, sizeof(t->name), "%s", name);
    /* local_transport may name a nexthop too ("local:$myhostname"). */
    size_t n = strcspn(var.local_transport, ":");
    t->is_local = strlen(name) == n && strncmp(name, var.local_transport, n) == 0;
    t->dest_limit = (int)transport_param(name, "destination_concurrency_limit",
                                         var.default_destination_concurrency_limit);
    t->rcpt_limit = (int)transport_param(name, "destination_recipient_limit",
                                         var.default_destination_recipient_limit);
    t->pool_limit = (int)var.default_process_limit;
    t->next = sc.transports;
    sc.transports = t;
    return t;
}

static unsigned hash_key(const char *tp, const char *key)
{
    unsigned h = 5381;
    for (const char *p = tp; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (const char *p = key; *p; p++)
        h = h * 33 + (unsigned char)tolower((unsigned char)*p);
    return h % DEST_BUCKETS;
}

static struct dest *dest_get(struct transport *t, const char *key, const char *nexthop)
{
    unsigned h = hash_key(t->name, key);
    for (struct dest *d = sc.buckets[h]; d; d = d->hash_next)
        if (d->tp == t && strcasecmp(d->key, key) == 0)
            return d;
    struct dest *d = calloc(1, sizeof(*d));
    if (!d || !(d->key = strdup(key)) || !(d->nexthop = strdup(nexthop)))
        msg_fatal("out of memory");
    d->tp = t;
    d->hash_next = sc.buckets[h];
    sc.buckets[h] = d;
    return d;
}

static void dest_free_if_idle(struct dest *d)
{
    if (d->head || d->inflight || d->in_ring || d->dead_until > time(NULL))
        return;
    unsigned h = hash_key(d->tp->name, d->key);
    for (struct dest **pp = &sc.buckets[h]; *pp; pp = &(*pp)->hash_next)
        if (*pp == d) {
            *pp = d->hash_next;
            break;
        }
    free(d->key);
    free(d->nexthop);
    free(d);
}

static void ring_add(struct dest *d)
{
    struct transport *t = d->tp;
    if (d->in_ring)
        return;
    d->in_ring = 1;
    if (!t->ring) {
        d->ring_prev = d->ring_next = d;
        t->ring = d;
        return;
    }
    d->ring_next = t->ring;
    d->ring_prev = t->ring->ring_prev;
    t->ring->ring_prev->ring_next = d;
    t->ring->ring_prev = d;
}

static void ring_remove(struct dest *d)
{
    struct transport *t = d->tp;
    if (!d->in_ring)
        return;
    d->in_ring = 0;
    if (d->ring_next == d) {
        t->ring = NULL;
    } else {
        d->ring_prev->ring_next = d->ring_next;
        d->ring_next->ring_prev = d->ring_prev;
        if (t->ring == d)
            t->ring = d->ring_next;
    }
}

static void job_free(struct job *j)
{
    free(j->rcpt);
    free(j);
    sc.jobs--;
}

static void job_add_rcpt(struct job *j, size_t i)
{
    if (j->nrcpt == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 4;
        size_t *r = realloc(j->rcpt, cap * sizeof(*r));
        if (!r)
            msg_fatal("out of memory");
        j->rcpt = r;
        j->cap = cap;
    }
    j->rcpt[j->nrcpt++] = i;
}

static int dest_is_dead(struct dest *d)
{
    if (!d->dead_until)
        return 0;
    if (d->dead_until > time(NULL))
        return 1;
    d->dead_until = 0;
    d->fail_streak = 0;
    return 0;
}

/* Defer every recipient of a job that will not be tried. */
static void job_defer(struct job *j, const char *why)
{
    struct qmsg *m = j->msg;
    for (size_t k = 0; k < j->nrcpt; k++)
        qmgr_rcpt_fail(m, j->rcpt[k], why);
    job_free(j);
    qmgr_check_finished(m);
}

void sched_add(struct qmsg *m, size_t i, const struct route *r)
{
    struct transport *t = transport_get(r->transport);
    const char *key = t->is_local ? m->env.rcpt[i].address : r->nexthop;
    struct dest *d = dest_get(t, key, r->nexthop);
    struct job *j = d->tail;
    if (!j || j->msg != m || (int)j->nrcpt >= t->rcpt_limit) {
        j = calloc(1, sizeof(*j));
        if (!j)
            msg_fatal("out of memory");
        j->msg = m;
        j->dest = d;
        j->dest_nexthop = d->nexthop;
        sc.jobs++;
        if (d->tail)
            d->tail->next = j;
        else
            d->head = j;
        d->tail = j;
    }
    job_add_rcpt(j, i);
    ring_add(d);
}

static struct job *dest_pop(struct dest *d)
{
    struct job *j = d->head;
    d->head = j->next;
    if (!d->head)
        d->tail = NULL;
    j->next = NULL;
    return j;
}

/* Defer what waits for a destination that is dead or cannot be reached. */
static void dest_defer_queued(struct dest *d, const char *why)
{
    ring_remove(d);
    while (d->head)
        job_defer(dest_pop(d), why);
    dest_free_if_idle(d);
}

static size_t ring_size(const struct transport *t)
{
    size_t n = 0;
    const struct dest *d = t->ring;
    if (d)
        do {
            n++;
            d = d->ring_next;
        } while (d != t->ring);
    return n;
}

/* Next destination in the ring that may start a job; dead ones are
 * emptied on the way. */
static struct dest *next_ready(struct transport *t)
{
    size_t n = ring_size(t);
    struct dest *d = t->ring;
    for (size_t k = 0; k < n && t->ring; k++) {
        struct dest *next = d->ring_next;
        if (dest_is_dead(d)) {
            char why[340];
            snprintf(why, sizeof(why), "4.4.1 delivery temporarily suspended: %s", d->dead_reason);
            dest_defer_queued(d, why);
        } else if (d->head && d->inflight < t->dest_limit) {
            return d;
        }
        d = next;
    }
    return NULL;
}

static void dispatch(struct transport *t)
{
    for (;;) {
        struct dest *d = next_ready(t);
        if (!d)
            return;
        int unavailable = 0;
        struct agent_conn *c = agent_idle(t, &unavailable);
        if (!c) {
            if (unavailable) {
                struct dest *x;
                while ((x = t->ring) != NULL)
                    dest_defer_queued(x, "4.3.0 mail transport unavailable");
            }
            return;
        }
        struct job *j = dest_pop(d);
        t->ring = d->ring_next;   /* the next destination goes first next time */
        if (!d->head)
            ring_remove(d);
        d->inflight++;
        for (size_t k = 0; k < j->nrcpt; k++)
            j->msg->state[j->rcpt[k]] = RCPT_INFLIGHT;
        agent_send(c, j);
    }
}

void sched_kick(void)
{
    for (struct transport *t = sc.transports; t; t = t->next)
        dispatch(t);
}

void sched_conn_ready(struct transport *t)
{
    dispatch(t);
}

void sched_revive_all(void)
{
    for (size_t h = 0; h < DEST_BUCKETS; h++)
        for (struct dest *d = sc.buckets[h]; d; d = d->hash_next) {
            d->dead_until = 0;
            d->fail_streak = 0;
        }
}

void sched_job_result(struct job *j, size_t nth, const char *status)
{
    if (nth >= j->nrcpt)
        return;
    if (status[0] == '2')
        j->dest->fail_streak = -1;   /* this job reached the site */
    qmgr_rcpt_result(j->msg, j->rcpt[nth], "", status);
}

/* A remote site that only defers is given a rest. */
static void dest_note_outcome(struct dest *d, int reached, const char *last)
{
    if (d->tp->is_local)
        return;
    if (reached) {
        d->fail_streak = 0;
        return;
    }
    if (++d->fail_streak < DEAD_AFTER_FAILURES)
        return;
    long rest = var.minimal_backoff_time;
    d->dead_until = time(NULL) + (rest < 60 ? rest : 60);
    const char *text = last ? strchr(last, ' ') : NULL;
    snprintf(d->dead_reason, sizeof(d->dead_reason), "%s", text ? text + 1 : "unknown error");
    msg_info("%s: destination %s marked dead: %s", d->tp->name, d->nexthop, d->dead_reason);
}

void sched_job_done(struct job *j, const char *fail_status)
{
    struct dest *d = j->dest;
    struct transport *t = d->tp;
    struct qmsg *m = j->msg;
    int reached = 0;
    const char *last = fail_status;
    for (size_t k = 0; k < j->nrcpt; k++) {
        size_t i = j->rcpt[k];
        if (m->state[i] == RCPT_INFLIGHT)
            qmgr_rcpt_fail(m, i, fail_status);
        else if (m->state[i] == RCPT_DONE || m->state[i] == RCPT_BOUNCING)
            reached = 1;
        else if (m->reason[i])
            last = m->reason[i];
    }
    reached |= d->fail_streak < 0;
    d->inflight--;
    dest_note_outcome(d, reached, last);
    job_free(j);
    qmgr_check_finished(m);
    dest_free_if_idle(d);
    dispatch(t);
}
