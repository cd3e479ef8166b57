/* output.c - cleanup's bytes into the queue file (cleanup.h), and the
 * "try again later" outcome. Kept apart from cleanup.c's session code so
 * that the header and recipient code (headers.c, checks.c, rcpt.c) links
 * without cleanup's main(): the libFuzzer target for the header parser
 * (tests/fuzz/fuzz_cleanup_header.c) compiles these files in.
 */
#include "cleanup.h"

#include "log.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <stdio.h>

void cleanup_out_record(struct cleanup_state *st, int type, const void *data, size_t len)
{
    if (st->write_error || st->outcome != OUTCOME_QUEUE)
        return;   /* a message that will not be queued needs no more bytes */
    if (rec_put(st->out, type, data, len) < 0)
        st->write_error = errno ? errno : EIO;
}

void cleanup_defer(struct cleanup_state *st, const char *why)
{
    if (st->outcome != OUTCOME_QUEUE)
        return;
    msg_warn("%s: %s -- message not accepted, try again later", queue_writer_id(st->writer), why);
    st->outcome = OUTCOME_DEFER;
    snprintf(st->reason, sizeof(st->reason), "4.3.0 Error: message not accepted, try again later");
}

void cleanup_out_content(struct cleanup_state *st, const char *data, size_t len)
{
    while (len > 0) {
        size_t n = len < REC_CHUNK_SIZE ? len : REC_CHUNK_SIZE;
        cleanup_out_record(st, REC_CONTENT, data, n);
        st->content_size += (long long)n;
        data += n;
        len -= n;
    }
    if (st->milters)
        st->content_end = stream_tell(st->out);   /* where the spool's content ends */
}
