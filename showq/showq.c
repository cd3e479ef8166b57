/* showq - the queue listing service behind postqueue -p and -j (mailq).
 *
 * In system mode the queue directories are mail_owner's alone (0700), so a
 * set-gid postqueue run by an ordinary user cannot read them. showq runs
 * as mail_owner, listens on public/showq (public/ is 0710 with group
 * setgid_group, the socket 0666: only postqueue's group gets through), and
 * sends the listing that lib/queue_list.c formats, so both paths print the
 * same bytes. master.cf: "showq unix n - n - - showq".
 *
 * showq_protocol (ipc.h), one request per connection:
 *   S->C {protocol=showq_protocol}
 *   C->S {format=text|json}
 *   S->C REC_CONTENT chunks of the listing (each at most REC_CHUNK_SIZE
 *        bytes), then REC_END once the listing is complete.
 * A connection that closes without REC_END (a bad request, an error
 * while listing) means the listing is incomplete. The client decides
 * nothing else: showq reads only its own configuration and queue, so an
 * unprivileged client learns what mailq shows and no more.
 */
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_list.h"
#include "record.h"
#include "service.h"
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A client sends its request right after the greeting; a silent one must
 * not hold a showq process for the whole ipc_timeout. */
#define SHOWQ_REQUEST_TIMEOUT 10

/* fopencookie write function: the FILE's buffer as REC_CONTENT records.
 * Returns the bytes taken, or 0 on error (what stdio expects). */
static ssize_t write_content(void *cookie, const char *buf, size_t len)
{
    struct stream *s = cookie;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < REC_CHUNK_SIZE ? len - done : REC_CHUNK_SIZE;
        if (rec_put(s, REC_CONTENT, buf + done, n) < 0) {
            errno = EPIPE;
            return 0;
        }
        done += n;
    }
    return (ssize_t)len;
}

/* A FILE whose output goes to s as content records; s stays the caller's
 * (fclose flushes the FILE but leaves s open). NULL when out of memory. */
static FILE *content_file(struct stream *s)
{
    cookie_io_functions_t io = {.write = write_content};
    FILE *f = fopencookie(s, "w", io);
    if (f && setvbuf(f, NULL, _IOFBF, REC_CHUNK_SIZE) != 0) {
        fclose(f);
        return NULL;
    }
    return f;
}

/* The requested format, or -1 (logged) for a bad request. */
static int read_request(struct stream *s)
{
    struct attr_list req;
    if (attr_list_read(s, &req) < 0) {
        if (stream_timed_out(s))
            msg_warn("timeout reading the request");
        return -1;
    }
    const char *name = attr_get(&req, "format");
    int format = name ? queue_list_format_parse(name) : -1;
    if (format < 0)
        msg_warn("bad request: format %s", name ? name : "missing");
    attr_list_free(&req);
    return format;
}

/* Write the listing; 0 once it is complete and REC_END is sent. */
static int send_listing(struct stream *s, int format)
{
    FILE *out = content_file(s);
    if (!out) {
        msg_warn("out of memory");
        return -1;
    }
    int rc = queue_list_write(out, format);
    if (rc < 0 && errno == ENOMEM)
        msg_warn("out of memory");
    if (fclose(out) != 0)
        rc = -1;
    if (rc == 0 && (rec_put(s, REC_END, "", 0) < 0 || stream_flush(s) < 0))
        rc = -1;
    return rc;
}

/* One client, one listing. A client that goes away early (mailq | head)
 * is not worth a log line. */
static void serve(int fd)
{
    struct stream *s = stream_open(fd, SHOWQ_REQUEST_TIMEOUT);
    if (!s) {
        close(fd);
        return;
    }
    int format = ipc_greet(s, "showq_protocol") < 0 ? -1 : read_request(s);
    if (format < 0) {
        stream_abandon(s);
        return;
    }
    stream_set_timeout(s, (int)var.ipc_timeout);
    if (send_listing(s, format) < 0)
        stream_abandon(s);
    else
        stream_close(s);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "showq", 0);
    service_run_single(serve);
}
