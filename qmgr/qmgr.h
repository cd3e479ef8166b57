/* qmgr.h - queue manager internals shared by qmgr's source files.
 *
 * qmgr.c       the event loop, queue scans, message lifecycle
 * transport.c  connections to delivery agents (deliver_protocol)
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <stddef.h>
#include <sys/time.h>

#include "queue_file.h"

struct event_base;

enum rcpt_state { RCPT_PENDING, RCPT_INFLIGHT, RCPT_DONE, RCPT_DEFERRED };

/* One message in active/: owns its open queue file and envelope. */
struct qmsg {
    char queue[16];           /* directory it was taken from, for logs */
    int fd;                   /* queue file, O_RDWR */
    struct queue_envelope env;
    enum rcpt_state *state;   /* per env.rcpt[i] */
    struct timeval active;    /* when qmgr took it in */
    size_t inflight;          /* recipients handed to an agent */
    struct qmsg *next_wait;   /* link in the transport wait list */
    struct qmsg *prev, *next; /* link in the active list */
    int waiting;              /* on a transport wait list */
};

/* Called by transport.c with one recipient's result. */
void qmgr_rcpt_result(struct qmsg *m, size_t rcpt, const char *dsn_and_text);
/* Called by transport.c when a request finished (all results in). */
void qmgr_request_done(struct qmsg *m);

/* transport.c */
void transport_init(struct event_base *base, const char *service, int limit);
/* Queue m's pending local recipients for delivery. */
void transport_submit(struct qmsg *m);
/* Forget m (it is being freed); it must have nothing in flight. */
void transport_forget(struct qmsg *m);
size_t transport_busy(void);

#endif
