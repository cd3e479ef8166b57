/* showq - the queue listing service behind postqueue -p and -j (mailq),
 * speaking Postfix 3's showq protocol.
 *
 * In system mode the queue directories are mail_owner's alone (0700), so a
 * set-gid postqueue run by an ordinary user cannot read them. showq runs
 * as mail_owner, listens on public/showq (public/ is 0710 with group
 * setgid_group, the socket 0666: only postqueue's group gets through), and
 * sends what lib/mail/queue_list.c finds in the queue, one entry per
 * message, as mail_queue_list_protocol (showq_stream.h). The client
 * formats: postqueue prints -p or -j from it as Postfix's postqueue does,
 * and monitoring tools written for Postfix (prometheus-postfix-exporter)
 * read the same stream. master.cf: "showq unix n - n - - showq".
 *
 * As Postfix's showq, it reads nothing from the client: it greets, sends
 * the listing and the empty list that ends it, and closes. A connection
 * that closes before that end (an error while listing) means the listing
 * is incomplete. showq reads only its own configuration and queue, so an
 * unprivileged client learns what mailq shows and no more.
 */
#include "config.h"
#include "log.h"
#include "queue_list.h"
#include "service.h"
#include "showq_stream.h"
#include "stream.h"

#include <errno.h>
#include <unistd.h>

/* queue_list_walk's callback: one message to the client. A client that
 * went away stops the walk (EPIPE). */
static int send_entry(const struct queue_list_entry *e, void *ctx)
{
    if (showq_stream_send(ctx, e) < 0) {
        errno = EPIPE;
        return -1;
    }
    return 0;
}

/* The whole listing; 0 once it is complete and its end is sent. A client
 * that goes away early (mailq | head) is not worth a log line. */
static int send_listing(struct stream *s)
{
    if (showq_stream_greet(s) < 0)
        return -1;
    if (queue_list_walk(send_entry, s) != 0) {
        if (errno == ENOMEM)
            msg_warn("out of memory");
        else if (errno == ENAMETOOLONG)
            msg_warn("queue_directory is too long");
        return -1;
    }
    return showq_stream_end(s);
}

/* One client, one listing. */
static void serve(int fd)
{
    struct stream *s = stream_open(fd, (int)var.ipc_timeout);
    if (!s) {
        close(fd);
        return;
    }
    if (send_listing(s) < 0)
        stream_abandon(s);
    else
        stream_close(s);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "showq", 0);
    service_run_single(serve);
}
