/* deliver_pass.h - one delivery agent hands a recipient to another, as
 * local does with mailbox_transport (Postfix's deliver_pass): the request
 * qmgr would send (ipc.h, deliver_protocol) on private/TRANSPORT with one
 * recipient, and the agent's one rcpt_status back. The agent there checks
 * the recipient's offset in the queue file, delivers, and logs the
 * outcome itself; the caller only takes the status over.
 *
 * The address may differ from the queue file's (local passes what an alias
 * or .forward expanded to): the request says "delegated", and the agent
 * then checks the offset and that the recipient there is not yet done,
 * not the address (deliver_request.h).
 */
#ifndef POSTERN_DELIVER_PASS_H
#define POSTERN_DELIVER_PASS_H

#include "deliver_request.h"

#define DELIVER_ATTR_DELEGATED "delegated"   /* request attribute: "1" */

/* Pass recipient r of req, delivering to address, to transport_spec
 * ("transport" or "transport:nexthop"; without a nexthop the address's
 * domain is the nexthop), and wait for the answer (ipc_timeout). Returns
 * 1 with *st the agent's status (logged by that agent), or 0 when the
 * agent could not be reached or answered wrongly: *st is then 4.3.0 with
 * the reason, for the caller to log. */
int deliver_pass(const char *transport_spec, const struct deliver_request *req,
                 const struct deliver_rcpt *r, const char *address, struct delivery_status *st);

#endif
