/* deliver_agent.h - the loop of a delivery agent that serves qmgr one
 * request at a time with blocking I/O (local, virtual; pipe to come):
 * greet, then per request read and check it (deliver_request.h), open the
 * queue file, hand each recipient to the agent, log each outcome and
 * reply, until qmgr closes the connection or master goes away.
 *
 * The agent supplies only what it does with one recipient: where the
 * bytes go. Everything it is given is checked already: the recipient is
 * in the queue file at its offset and not yet done.
 */
#ifndef POSTERN_DELIVER_AGENT_H
#define POSTERN_DELIVER_AGENT_H

#include "deliver_request.h"

/* Deliver m to r: set r->status. Return 1 when the agent logged the
 * outcome itself (local logs each alias or .forward destination), 0 when
 * the loop is to log it. */
typedef int (*deliver_agent_fn)(const struct deliver_message *m, struct deliver_rcpt *r);

/* Serve one qmgr connection on fd (owned, closed at the end). relay is
 * what the log lines say ("local", "virtual"). */
void deliver_agent_serve(int fd, const char *relay, deliver_agent_fn deliver);

#endif
