/* ipc.h - the one way daemons talk: UNIX stream sockets under
 * queue_directory/private (and fifos under public/ for wake-ups), carrying
 * attribute lists framed as records (record.h): REC_ATTR "name=value"
 * records ended by REC_END.
 *
 * A server greets each connection with "protocol=NAME"; the client checks it,
 * so a mis-wired socket fails loudly. Readers skip attributes they do not
 * know, so protocols can grow. Reads are bounded (IPC_ATTR_MAX attributes,
 * IPC_VALUE_MAX bytes each) and timed by the stream's timeout.
 *
 * Protocols (the blocking side uses these helpers, libevent users events.h):
 *  cleanup_protocol (private/cleanup):
 *    S->C greeting; C->S {flags} (smtpd: {flags, milters=N}, sent with N
 *    milter connections as SCM_RIGHTS); S->C {queue_id} or {status, reason};
 *    C->S queue records: S, A*, (O? R)*, M, C*, E   (cleanup writes the file;
 *    smtpd's milter=, milter_macro=, milter_hold=, milter_discard= A records
 *    before M are for the milters and not stored)
 *    S->C {status=0|4|5, reason, [reply], [milter]*}: reply is a milter's
 *    SMTP reply, milter how each connection passed stands.
 *    A client that closes early aborts.
 *  deliver_protocol (private/local, private/smtp, private/relay: the
 *  service is the transport name qmgr resolved), persistent:
 *    S->C greeting; then repeatedly
 *    C->S {queue_name, queue_id, sender, arrival, active_time, nexthop,
 *          [dsn_envid], [dsn_ret],
 *          then per recipient: [orig_rcpt], [rcpt_dsn_orcpt], [rcpt_dsn_notify],
 *          [queue_rcpt], rcpt="OFFSET ADDRESS"}
 *    (queue_rcpt, the queue file's address at OFFSET, only when one agent
 *    hands another an address of its own: local's mailbox_transport)
 *    S->C {rcpt_status="OFFSET D.S.N text"...}, one per rcpt, in order.
 *    nexthop: for local, the recipient domain; for smtp/relay, where to
 *    connect: "domain" or "host:port" (MX lookup of the name first), or
 *    "[host]" / "[host]:port" (no MX lookup; host may be an IP address).
 *    Without a port, smtp_tcp_port applies. All recipients of one request
 *    share the nexthop. The agent side (parsing, checks, reply) is
 *    deliver_request.h; the agent logs each result (delivery.h); qmgr
 *    marks done / defers / bounces from rcpt_status.
 *  bounce_protocol (private/bounce), persistent, each request answered
 *  {status=0} or {status=1, reason}:
 *    {request=append, queue_id, log=bounce|defer|success, rcpt, [orig_rcpt],
 *     [dsn_orcpt], [dsn_notify], offset, dsn="D.S.N", reason, relay}
 *       adds one recipient status to queue_directory/LOG/QUEUE_ID (an
 *       attribute list per recipient, record framing; defer/ID is what
 *       postqueue -p shows as the reason).
 *    {request=flush, queue_id, queue_name}
 *       when bounce/ID has entries: sends the sender an RFC 3464 report for
 *       them (built from bounce/ID and the queue file, submitted through
 *       cleanup with sender <>; a failed <> message goes to postmaster as a
 *       double bounce, never to <>), then removes bounce/ID. Also sends a
 *       "delivered" report for success/ID entries. status=0 means the report
 *       is safely queued (or there was nothing to send); then qmgr may delete
 *       the message and defer/ID. Otherwise qmgr keeps the message.
 *    {request=warn, queue_id, queue_name}
 *       a delay warning (Action: delayed) from defer/ID; message stays queued.
 *  public/showq (group setgid_group reaches it, so the set-gid postqueue
 *  of an ordinary user can list mail_owner's queue) is the exception: it
 *  speaks Postfix 3's mail_queue_list_protocol in Postfix's encoding, so
 *  that Postfix's clients read it (showq_stream.h).
 *  public/qmgr, public/pickup (fifo): any byte wakes the daemon; qmgr also
 *    takes 'F' (flush deferred now).
 */
#ifndef POSTERN_IPC_H
#define POSTERN_IPC_H

#include <stddef.h>

struct stream;

#define IPC_ATTR_MAX 4096     /* attributes in one list (recipients included) */
#define IPC_VALUE_MAX 8192    /* bytes in one attribute record */
#define IPC_TIMEOUT 300       /* default seconds for internal I/O */

#define IPC_PRIVATE "private"
#define IPC_PUBLIC "public"

/* Connect to queue_directory/CLASS/SERVICE, or to the other class's
 * SERVICE when CLASS has none (a Postfix master.cf makes cleanup, pickup and
 * qmgr public). Returns fd or -1 with errno. */
int ipc_connect(const char *klass, const char *service);
/* Write one byte to the fifo queue_directory/CLASS/SERVICE (or the other
 * class's, as ipc_connect) without blocking;
 * -1 when nobody listens (the daemon will scan on its own later). */
int ipc_trigger(const char *klass, const char *service, char what);

/* An attribute list as read. Owns its storage. Order is preserved and names
 * may repeat (recipients). */
struct attr_list {
    size_t count;
    char **names;
    char **values;
    size_t cap;           /* slots allocated */
};
/* Read REC_ATTR records up to REC_END. Returns 0, or -1 on EOF, timeout,
 * malformed or oversized input. list is reset first; free with attr_list_free. */
int attr_list_read(struct stream *s, struct attr_list *list);
void attr_list_free(struct attr_list *list);
/* Append a copy of name=value (for readers that get records one at a time,
 * as remote does from an evbuffer). -1 when out of memory or when the list
 * already holds IPC_ATTR_MAX attributes. */
int attr_list_add(struct attr_list *list, const char *name, const char *value);
/* First value for name, or NULL. */
const char *attr_get(const struct attr_list *list, const char *name);

/* Write name/value pairs (NULL-terminated varargs of const char *), then
 * REC_END, then flush. Returns 0 or -1. */
int attr_send(struct stream *s, ...) __attribute__((sentinel));
/* One REC_ATTR record, unflushed. */
int attr_put(struct stream *s, const char *name, const char *value);
int attr_end(struct stream *s);   /* REC_END and flush */

/* Whether the peer of the stream socket fd has closed its end (or reset
 * it) with nothing left to read; without waiting. */
int ipc_peer_closed(int fd);

int ipc_greet(struct stream *s, const char *protocol);
/* Read the greeting without logging: 0 when it names protocol, -1 when
 * none came (EOF, timeout, malformed), -2 for another protocol. For callers
 * with a fallback (postqueue without showq). */
int ipc_check_greeting(struct stream *s, const char *protocol);
/* Read the greeting; -1 (logged) unless it names protocol. */
int ipc_expect_greeting(struct stream *s, const char *protocol);

#endif
