/* cleanup - the only writer of new queue files.
 *
 * A client (smtpd, pickup, bounce) streams envelope and content records
 * (cleanup_protocol, ipc.h). cleanup copies the envelope, buffers the header
 * block (bounded by header_size_limit) to append missing Message-ID, Date
 * and From headers, passes the body through chunk by chunk, and only after
 * the file and its directory entry are fsynced answers status=0 and wakes
 * qmgr. A client that disconnects early leaves nothing behind.
 */
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "record.h"
#include "service.h"
#include "stream.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MSGID_MAX 1024

struct cleanup_state {
    struct stream *client;
    struct queue_writer *writer;
    struct stream *out;
    int write_error;        /* errno of the first failed write, 0 if none */
    int nrcpt;
    char *sender;
    long long content_size;
    off_t content_offset;
    int in_headers;         /* still collecting the header block */
    char *hdr;              /* header block buffer */
    size_t hdr_len, hdr_cap;
    char message_id[MSGID_MAX];
};

static struct queue_writer *current_writer;

/* A fatal error must not leave a half-written file to be scheduled. */
static void cleanup_fatal_hook(void)
{
    if (current_writer)
        unlink(queue_writer_path(current_writer));
}

static void out_record(struct cleanup_state *st, int type, const void *data, size_t len)
{
    if (st->write_error)
        return;
    if (rec_put(st->out, type, data, len) < 0)
        st->write_error = errno ? errno : EIO;
}

static void out_content(struct cleanup_state *st, const char *data, size_t len)
{
    while (len > 0) {
        size_t n = len < REC_CHUNK_SIZE ? len : REC_CHUNK_SIZE;
        out_record(st, REC_CONTENT, data, n);
        st->content_size += (long long)n;
        data += n;
        len -= n;
    }
}

/* Length of the header name at line (up to the colon), 0 if not a header. */
static size_t header_name_len(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && line[i] > ' ' && line[i] < 0x7f && line[i] != ':')
        i++;
    return i > 0 && i < len && line[i] == ':' ? i : 0;
}

static int header_is(const char *line, size_t nlen, const char *name)
{
    return strlen(name) == nlen && strncasecmp(line, name, nlen) == 0;
}

/* Copy the (unfolded, trimmed) value of the header at line into out. */
static void header_value(const char *line, const char *end, size_t nlen, char *out, size_t outlen)
{
    size_t o = 0;
    const char *p = line + nlen + 1;
    while (p < end && o + 1 < outlen) {
        if (*p == '\n') {
            if (p + 1 < end && (p[1] == ' ' || p[1] == '\t')) {
                p++;
                continue;
            }
            break;
        }
        if (!(o == 0 && (*p == ' ' || *p == '\t')))
            out[o++] = *p;
        p++;
    }
    while (o > 0 && isspace((unsigned char)out[o - 1]))
        o--;
    out[o] = 0;
}

/* Scan the header block for the headers cleanup must add when missing. */
static void scan_headers(struct cleanup_state *st, int *have_date, int *have_from)
{
    const char *p = st->hdr, *end = st->hdr + st->hdr_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        size_t nlen = header_name_len(p, (size_t)(next - p));
        if (header_is(p, nlen, "Message-ID") || header_is(p, nlen, "Message-Id"))
            header_value(p, end, nlen, st->message_id, sizeof(st->message_id));
        else if (header_is(p, nlen, "Date"))
            *have_date = 1;
        else if (header_is(p, nlen, "From"))
            *have_from = 1;
        p = next;
    }
}

static void format_date(char *buf, size_t len, time_t when)
{
    struct tm tm;
    localtime_r(&when, &tm);
    char zone[16];
    strftime(zone, sizeof(zone), "%Z", &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, " (%s)", zone);
}

static void add_missing_headers(struct cleanup_state *st)
{
    int have_date = 0, have_from = 0;
    char line[MSGID_MAX + 64];
    scan_headers(st, &have_date, &have_from);
    time_t now = time(NULL);
    if (!st->message_id[0]) {
        struct tm tm;
        char stamp[32];
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
        snprintf(st->message_id, sizeof(st->message_id), "<%s.%s@%s>", stamp,
                 queue_writer_id(st->writer), config_get("myhostname"));
        int n = snprintf(line, sizeof(line), "Message-ID: %s\n", st->message_id);
        out_content(st, line, (size_t)n);
    }
    if (!have_date) {
        char date[64];
        format_date(date, sizeof(date), now);
        int n = snprintf(line, sizeof(line), "Date: %s\n", date);
        out_content(st, line, (size_t)n);
    }
    if (!have_from) {
        const char *from = st->sender && *st->sender ? st->sender : "MAILER-DAEMON";
        int n = snprintf(line, sizeof(line), "From: %.*s\n", MSGID_MAX, from);
        out_content(st, line, (size_t)n);
    }
    msg_info("%s: message-id=%s", queue_writer_id(st->writer), st->message_id);
}

/* Write the header block, the added headers, and whatever body followed. */
static void finish_headers(struct cleanup_state *st, size_t header_end)
{
    out_content(st, st->hdr, header_end);
    add_missing_headers(st);
    out_content(st, st->hdr + header_end, st->hdr_len - header_end);
    free(st->hdr);
    st->hdr = NULL;
    st->hdr_len = st->hdr_cap = 0;
    st->in_headers = 0;
}

/* Offset where the header block ends in the buffer (the empty line or the
 * first line that is neither a header nor a continuation), or -1 when the
 * buffer ends inside the header block. */
static long find_header_end(const struct cleanup_state *st)
{
    const char *buf = st->hdr, *end = buf + st->hdr_len;
    for (const char *p = buf; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -1;
        int continuation = (*p == ' ' || *p == '\t') && p != buf;
        if (*p == '\n' || (!continuation && header_name_len(p, (size_t)(nl - p + 1)) == 0))
            return p - buf;
        p = nl + 1;
    }
    return -1;
}

static int collect_header_bytes(struct cleanup_state *st, const char *data, size_t len)
{
    if (st->hdr_len + len > st->hdr_cap) {
        size_t cap = st->hdr_cap ? st->hdr_cap : 8192;
        while (cap < st->hdr_len + len)
            cap *= 2;
        char *p = realloc(st->hdr, cap);
        if (!p)
            return -1;
        st->hdr = p;
        st->hdr_cap = cap;
    }
    memcpy(st->hdr + st->hdr_len, data, len);
    st->hdr_len += len;
    return 0;
}

static void content_chunk(struct cleanup_state *st, const char *data, size_t len)
{
    if (!st->in_headers) {
        out_content(st, data, len);
        return;
    }
    if (collect_header_bytes(st, data, len) < 0) {
        st->write_error = ENOMEM;
        return;
    }
    long end = find_header_end(st);
    if (end >= 0)
        finish_headers(st, (size_t)end);
    else if ((long long)st->hdr_len > config_size("header_size_limit"))
        finish_headers(st, st->hdr_len);   /* oversized: the rest is body */
}

static void start_content(struct cleanup_state *st)
{
    out_record(st, REC_CONTENT_START, "", 0);
    st->content_offset = stream_tell(st->out);
    st->in_headers = 1;
}

/* Reply with a status; status 0 also wakes qmgr. */
static void reply(struct cleanup_state *st, const char *status, const char *reason)
{
    attr_send(st->client, "status", status, "reason", reason, (const char *)NULL);
}

static void commit(struct cleanup_state *st)
{
    if (st->in_headers)
        finish_headers(st, st->hdr_len);
    const char *id = queue_writer_id(st->writer);
    char saved_id[QUEUE_ID_SIZE];
    snprintf(saved_id, sizeof(saved_id), "%s", id);
    if (st->nrcpt == 0) {
        queue_writer_abort(st->writer);
        reply(st, "5", "5.1.3 Error: no recipients specified");
        return;
    }
    if (st->write_error) {
        msg_warn("%s: queue file write error: %s", saved_id, strerror(st->write_error));
        queue_writer_abort(st->writer);
        reply(st, "4", st->write_error == ENOSPC ? "4.3.1 Insufficient system storage"
                                                  : "4.3.0 Error: queue file write error");
        return;
    }
    if (queue_writer_commit(st->writer, st->content_size, (long long)st->content_offset,
                            st->nrcpt) < 0) {
        int e = errno;
        msg_warn("%s: queue file commit error: %s", saved_id, strerror(e));
        reply(st, "4", e == ENOSPC ? "4.3.1 Insufficient system storage"
                                   : "4.3.0 Error: queue file write error");
        return;
    }
    reply(st, "0", "");
    ipc_trigger(IPC_PUBLIC, "qmgr", 'W');
}

/* One envelope or content record from the client; 1 when the message is
 * complete, -1 when the client broke off. */
static int client_record(struct cleanup_state *st, int type, struct rec_buf *b)
{
    switch (type) {
    case REC_SENDER:
        free(st->sender);
        st->sender = strdup(b->data);
        out_record(st, type, b->data, b->len);
        return 0;
    case REC_RCPT:
        st->nrcpt++;
        out_record(st, type, b->data, b->len);
        return 0;
    case REC_ATTR:
    case REC_ORCPT:
        out_record(st, type, b->data, b->len);
        return 0;
    case REC_CONTENT_START:
        start_content(st);
        return 0;
    case REC_CONTENT:
        content_chunk(st, b->data, b->len);
        return 0;
    case REC_END:
        return 1;
    default:
        return 0;   /* unknown records are skipped, so the protocol can grow */
    }
}

static void receive_message(struct cleanup_state *st)
{
    struct rec_buf b = {0};
    for (;;) {
        int type = rec_get(st->client, &b, REC_CHUNK_SIZE + IPC_VALUE_MAX, NULL);
        if (type < 0) {
            queue_writer_abort(st->writer);
            break;
        }
        if (client_record(st, type, &b) == 1) {
            commit(st);
            break;
        }
    }
    current_writer = NULL;
    rec_buf_free(&b);
}

static void serve(int fd)
{
    struct cleanup_state st = {0};
    struct attr_list req;
    st.client = stream_open(fd, (int)config_time("ipc_timeout"));
    if (!st.client) {
        close(fd);
        return;
    }
    if (ipc_greet(st.client, "cleanup_protocol") < 0 || attr_list_read(st.client, &req) < 0) {
        stream_abandon(st.client);
        return;
    }
    attr_list_free(&req);
    struct timeval arrival;
    gettimeofday(&arrival, NULL);
    st.writer = queue_writer_create(QUEUE_INCOMING, &arrival);
    if (!st.writer) {
        msg_warn("create queue file: %s", strerror(errno));
        attr_send(st.client, "status", "4", "reason",
                  errno == ENOSPC ? "4.3.1 Insufficient system storage"
                                  : "4.3.0 Error: queue file create error",
                  (const char *)NULL);
        stream_abandon(st.client);
        return;
    }
    current_writer = st.writer;
    st.out = queue_writer_stream(st.writer);
    if (attr_send(st.client, "queue_id", queue_writer_id(st.writer), (const char *)NULL) == 0)
        receive_message(&st);
    else {
        queue_writer_abort(st.writer);
        current_writer = NULL;
    }
    free(st.sender);
    free(st.hdr);
    stream_close(st.client);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "cleanup", 0);
    log_set_fatal_hook(cleanup_fatal_hook);
    service_run_single(serve);
}
