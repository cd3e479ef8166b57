/* qmgr.h - queue manager internals shared by qmgr's source files.
 *
 * qmgr.c       event loop, queue scans, message lifecycle (take in, finish,
 *              defer with back-off, expire, remove)
 * sched.c      transports, destinations and jobs: per-destination
 *              concurrency, round-robin between destinations, dead sites
 * transport.c  connections to delivery agents (deliver_protocol)
 * bounce.c     the client of the bounce service (bounce_protocol)
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <stddef.h>
#include <sys/time.h>

#include "queue_file.h"
#include "resolve.h"

struct event_base;

enum rcpt_state {
    RCPT_PENDING,    /* waiting in a job */
    RCPT_INFLIGHT,   /* handed to an agent */
    RCPT_BOUNCING,   /* permanent failure, waiting for the bounce log append */
    RCPT_DONE,       /* marked done in the queue file */
    RCPT_DEFERRED,   /* temporary failure this round */
};

/* One message in active/: its envelope and per-recipient state. The queue
 * file is open (fd) only while results are being marked. */
struct qmsg {
    int fd;
    struct queue_envelope env;
    enum rcpt_state *state;   /* per env.rcpt[i] */
    char **reason;            /* last "D.S.N text" per recipient, or NULL */
    struct timeval active;    /* when qmgr took it in */
    size_t unfinished;        /* recipients PENDING, INFLIGHT or BOUNCING */
    int pending_ops;          /* bounce requests outstanding */
    int finishing;            /* flush sent, waiting for the answer */
    int gone;                 /* the file vanished (postsuper -d) */
    size_t redirected;        /* 1 + the recipient a REDIRECT sends elsewhere, 0 none */
    char *queue_addr;         /* that recipient's address in the queue file */
    struct qmsg *prev, *next; /* active list */
};

/* qmgr.c: results, called by sched.c / transport.c / bounce.c. */
void qmgr_rcpt_result(struct qmsg *m, size_t rcpt, const char *relay, const char *dsn_and_text);
void qmgr_check_finished(struct qmsg *m);
/* A result qmgr decides without an agent (no transport, dead site, agent
 * crash, error:): logged as the agent would (relay=none), then recorded. */
void qmgr_rcpt_fail(struct qmsg *m, size_t rcpt, const char *dsn_and_text);

/* sched.c */
void sched_init(struct event_base *base);
/* Queue recipient i of m for delivery along route r. */
void sched_add(struct qmsg *m, size_t i, const struct route *r);
/* Start whatever can start now (call after a batch of sched_add). */
void sched_kick(void);
/* Forget dead-destination marks (postqueue -f: try everything now). */
void sched_revive_all(void);
/* Jobs queued or in flight anywhere. */
size_t sched_busy(void);

struct dest;
struct agent_conn;

/* One delivery request: some recipients of one message, one nexthop. */
struct job {
    struct qmsg *msg;
    struct dest *dest;
    const char *dest_nexthop; /* owned by dest */
    size_t *rcpt;             /* indices into msg->env.rcpt */
    size_t nrcpt, cap;
    struct job *next;         /* in the destination's queue */
};

/* A transport (master.cf service a delivery agent listens on). */
struct transport {
    char name[64];
    int dest_limit;           /* concurrency per destination */
    int rcpt_limit;           /* recipients per request */
    int pool_limit;           /* connections to the agent */
    int is_local;             /* destination = recipient (per-user limit) */
    struct agent_conn *conns; /* pool */
    int nconn, nopening;
    struct dest *ring;        /* destinations with queued jobs (circular) */
    struct transport *next;
};

/* transport.c: connections of one transport, driven by sched.c. */
void agent_init(struct event_base *base);
/* An idle connection of t, or NULL; may start opening one (sched_conn_ready
 * follows). *unavailable is set when the agent cannot be reached at all. */
struct agent_conn *agent_idle(struct transport *t, int *unavailable);
/* Hand job to conn; results come back through sched_job_result/_done. */
void agent_send(struct agent_conn *c, struct job *j);

/* Called by transport.c */
void sched_job_result(struct job *j, size_t nth, const char *status);
void sched_job_done(struct job *j, const char *fail_status);
void sched_conn_ready(struct transport *t);

/* bounce.c */
void bounce_client_init(struct event_base *base);
typedef void (*bounce_done_fn)(void *ctx, int ok);
/* Append a recipient status to LOG (bounce, defer, success); done may be NULL. */
void bounce_append(const char *log, struct qmsg *m, size_t rcpt, const char *relay,
                   const char *dsn_and_text, bounce_done_fn done, void *ctx);
/* Ask for the reports of m (flush); done(ctx, 1) when safely queued. */
void bounce_flush(struct qmsg *m, bounce_done_fn done, void *ctx);
/* Ask for a delay warning to the sender of m. */
void bounce_warn(struct qmsg *m, bounce_done_fn done, void *ctx);

#endif
