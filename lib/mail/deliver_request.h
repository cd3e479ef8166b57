/* deliver_request.h - the agent's side of deliver_protocol (ipc.h), one
 * parser and one set of checks for every delivery agent: local, virtual,
 * pipe and remote now, lmtp to come.
 *
 * A request is read as an attribute list (attr_list_read, or attr_list_add
 * record by record for an event-driven agent) and turned into a
 * deliver_request here. What makes a request unanswerable (a rcpt whose
 * value is not "OFFSET ADDRESS", so its status could not be matched) makes
 * the parser fail and the agent close the connection. Anything else wrong
 * is a bad request: the agent answers every recipient with 4.3.0 "bad
 * request", touching nothing. The checks, in this order (the first failure
 * is the one logged):
 *   queue_name   active, incoming or deferred
 *   queue_id     a valid queue id (queue_id.h)
 *   sender       present, shorter than ADDRESS_MAX
 *   arrival, active_time   absent, or "sec.usec"
 *   dsn_ret      absent, empty, FULL or HDRS (any case)
 *   per recipient: address, orig_rcpt and queue_rcpt shorter than
 *                ADDRESS_MAX, rcpt_dsn_notify decimal with only
 *                DSN_NOTIFY_* bits
 * Before anything is delivered the queue file is opened and each recipient
 * looked up in it (deliver_request_open): a recipient whose offset does not
 * hold that address, still undone, gets 4.3.0 and nothing is written. A
 * recipient one agent hands another (local's mailbox_transport,
 * deliver_pass.h) is delivered to its rcpt address but checked against
 * its queue_rcpt, the address at the offset.
 *
 * The reply is one rcpt_status "OFFSET D.S.N text" per recipient, in
 * request order (deliver_request_reply on a stream, _reply_ev on an
 * evbuffer), and every recipient is logged once in Postfix's format
 * (deliver_request_log).
 */
#ifndef POSTERN_DELIVER_REQUEST_H
#define POSTERN_DELIVER_REQUEST_H

#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>

#include "delivery.h"
#include "ipc.h"

struct evbuffer;
struct queue_envelope;
struct stream;

#define DELIVER_PROTOCOL "deliver_protocol"

/* One recipient of a request. Strings point into the request's attrs. */
struct deliver_rcpt {
    long long offset;              /* of its R record in the queue file */
    const char *address;           /* internal form */
    const char *orig;              /* original recipient, or NULL */
    const char *dsn_orcpt;         /* DSN ORCPT "type;address", or NULL */
    const char *queue_address;     /* queue_rcpt: the queue file's address at
                                    * offset when it is not address, or NULL */
    int dsn_notify;                /* DSN_NOTIFY_* mask, 0 when not given */
    struct delivery_status status; /* dsn "" until decided */
};

struct deliver_request {
    struct attr_list attrs;        /* owned: every string points into it */
    const char *queue_name, *queue_id, *sender, *nexthop;
    const char *dsn_envid, *dsn_ret;   /* NULL when absent */
    struct delivery_times times;   /* arrival and active from the request
                                    * (else the queue file's arrival), agent
                                    * start and conn_done = when it came */
    int have_arrival, have_active;
    const char *bad;               /* why it is a bad request, or NULL */
    int client_fd;                 /* the connection it came on (qmgr's, or
                                    * the agent's that handed it on); -1 */
    size_t nrcpt;
    struct deliver_rcpt *rcpt;
};

/* The message a request names, once its queue file is open: what the
 * copy (mail_copy.h) and the agents' own code read. */
struct deliver_message {
    const char *queue_id;
    const char *sender;            /* internal form, "" for <> */
    struct stream *queue;          /* the open queue file */
    off_t content_offset;          /* of its first content record */
    const struct delivery_times *times;
    const struct deliver_request *req;   /* nexthop, queue name, DSN; NULL in tests */
    const struct queue_envelope *env;    /* envelope attributes (client_address,
                                          * ...) and content_size; NULL in tests */
};

/* Take over *attrs (left empty) as the request received at *received.
 * Returns 0 with req filled (req->bad set for a bad request, logged), or
 * -1 when the request cannot be answered (logged; req is still freed with
 * deliver_request_free). */
int deliver_request_parse(struct deliver_request *req, struct attr_list *attrs,
                          const struct timeval *received);
/* attr_list_read, then deliver_request_parse, timed now, client_fd the
 * stream's. -1 also on EOF,
 * timeout or a malformed or truncated list: the connection is done. */
int deliver_request_read(struct stream *s, struct deliver_request *req);
void deliver_request_free(struct deliver_request *req);

/* The queue id for log lines: "?" unless it is a valid one. */
const char *deliver_request_id(const struct deliver_request *req);
/* Set every recipient still undecided. */
void deliver_request_set_pending(struct deliver_request *req, const char *dsn, const char *text);

/* Open the queue file and check every recipient against it (above). A
 * missing arrival becomes the file's, a missing active_time the arrival.
 * Returns the descriptor with env filled (the caller closes and frees
 * both), or -1 with every undecided recipient set to 4.3.0 (env is then
 * freed already). */
int deliver_request_open(struct deliver_request *req, struct queue_envelope *env);

/* Log r's status (msg_info, delivery.h) with relay, done now. */
void deliver_request_log(const struct deliver_request *req, const struct deliver_rcpt *r,
                         const char *relay);
/* Before the reply: every recipient delivered (2xx), wanting no success
 * notice and not handed on by another agent is marked done in the queue file by the agent itself, so that a
 * qmgr that dies between the delivery and the reply does not make the next
 * qmgr deliver it again. Best effort: a failure is logged and costs at
 * most a duplicate, since qmgr marks it too. */
void deliver_request_mark_sent(const struct deliver_request *req);
/* The reply: one rcpt_status per recipient, then the end record. 0 or -1;
 * the stream form flushes. */
int deliver_request_reply(struct stream *s, const struct deliver_request *req);
int deliver_request_reply_ev(struct evbuffer *out, const struct deliver_request *req);

#endif
