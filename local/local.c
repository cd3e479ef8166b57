/* local.c - the local delivery agent: serves deliver_protocol (ipc.h) on
 * private/local for qmgr, one connection at a time, through the shared
 * loop of lib/mail/deliver_agent.h, which reads and checks each request,
 * opens the queue file, logs each result in Postfix's format and replies.
 * What is local's own starts at local_deliver_recipient (mailbox.c). In
 * system mode we run as root only to take on each recipient's rights
 * (privs.c).
 */
#include "local.h"

#include "deliver_agent.h"
#include "log.h"
#include "maildir.h"
#include "mbox_lock.h"
#include "service.h"

static void serve(int fd)
{
    deliver_agent_serve(fd, "local", local_deliver_recipient);
}

/* A fatal error must leave no half-written Maildir file and no dot-lock. */
static void cleanup_on_fatal(void)
{
    privs_leave();
    maildir_fatal_cleanup();
    mbox_lock_cleanup();
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "local", SERVICE_FLAG_ROOT);
    log_set_fatal_hook(cleanup_on_fatal);
    service_run_single(serve);
}
