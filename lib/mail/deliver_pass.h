/* deliver_pass.h - one delivery agent handing a recipient to another, as
 * Postfix's local(8) does with mailbox_transport: local expands aliases
 * and .forward, and the mailbox delivery of what comes out is done by the
 * agent of another transport (a pipe service, or virtual, ...).
 *
 * The hand-over is an ordinary deliver_protocol request (ipc.h) on
 * private/TRANSPORT, for one recipient of the message local is working
 * on: the same queue file, the recipient's offset, and the address to
 * deliver to, which may differ from the one at that offset (an alias's
 * member); the queue file's address goes along as queue_rcpt, so the
 * other agent still checks the offset against it (deliver_request.h). The
 * other agent logs the delivery under its own name (relay=TRANSPORT); its
 * status becomes the recipient's.
 */
#ifndef POSTERN_DELIVER_PASS_H
#define POSTERN_DELIVER_PASS_H

#include "deliver_request.h"
#include "delivery.h"

/* Deliver m to address through transport ("name" or "name:nexthop"; the
 * nexthop is otherwise the request's) for recipient r, whose original
 * address orig goes along. 0 with the other agent's status in st (it has
 * logged the delivery), or -1 with st 4.3.x when it could not be reached
 * or did not answer (a warning logged, the delivery not: the caller's). */
int deliver_pass(const char *transport, const struct deliver_message *m,
                 const struct deliver_rcpt *r, const char *address, const char *orig,
                 struct delivery_status *st);

#endif
