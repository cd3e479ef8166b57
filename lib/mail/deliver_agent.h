/* deliver_agent.h - the loop of a delivery agent that serves qmgr one
 * request at a time with blocking I/O (local, virtual, pipe): greet, then
 * per request read and check it (deliver_request.h), open the queue file,
 * hand the recipients to the agent, log each outcome and reply, until
 * qmgr closes the connection or master goes away.
 *
 * The agent supplies only what it does with one recipient (local,
 * virtual), or with all the recipients of a request at once (pipe: one
 * command for all of them). Everything it is given is checked already:
 * each recipient is in the queue file at its offset and not yet done.
 */
#ifndef POSTERN_DELIVER_AGENT_H
#define POSTERN_DELIVER_AGENT_H

#include "deliver_request.h"

/* Deliver m to r: set r->status. Return 1 when the agent logged the
 * outcome itself (local logs each alias or .forward destination), 0 when
 * the loop is to log it. */
typedef int (*deliver_agent_fn)(const struct deliver_message *m, struct deliver_rcpt *r);

/* Deliver m to every recipient of req whose status is still undecided
 * (dsn ""), setting each; the loop logs them all. */
typedef void (*deliver_agent_batch_fn)(const struct deliver_message *m,
                                       struct deliver_request *req);

/* Serve one qmgr connection on fd (owned, closed at the end). relay is
 * what the log lines say ("local", "virtual", a pipe service's name). */
void deliver_agent_serve(int fd, const char *relay, deliver_agent_fn deliver);
void deliver_agent_serve_batch(int fd, const char *relay, deliver_agent_batch_fn deliver);

#endif
