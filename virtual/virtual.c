/* virtual.c - the virtual delivery agent (Postfix's virtual(8)): serves
 * deliver_protocol (ipc.h) for qmgr, one connection at a time, on the
 * master.cf service that virtual_transport names (normally "virtual"),
 * through the shared loop of lib/mail/deliver_agent.h: each request is
 * checked against its queue file, each recipient delivered (deliver.c),
 * logged in Postfix's format with relay=virtual and answered, in request
 * order.
 */
#include "virtual.h"

#include "deliver_agent.h"
#include "log.h"
#include "service.h"

static void serve(int fd)
{
    deliver_agent_serve(fd, "virtual", virtual_deliver);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "virtual", SERVICE_FLAG_ROOT);
    log_set_fatal_hook(virtual_cleanup);
    service_run_single(serve);
}
