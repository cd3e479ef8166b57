/* cleanup - the only writer of new queue files.
 *
 * A client (smtpd, pickup, bounce) streams envelope and content records
 * (cleanup_protocol, ipc.h). cleanup rewrites the envelope (rcpt.c: canonical
 * form and maps, masquerading, virtual alias expansion), inspects and
 * rewrites the header block (headers.c; bounded by header_size_limit),
 * appends missing Message-ID, Date and From headers and, when the client
 * left it out, the empty line before the body, passes the body through
 * chunk by chunk (line by line through the body walker when body or MIME
 * checks are configured), and only after the file and its directory entry
 * are fsynced answers status=0 and wakes qmgr. A client that disconnects
 * early leaves nothing behind. A content check can instead reject the
 * message (status 5 with its text, nothing queued), discard it (status 0,
 * nothing queued) or hold it (committed into hold/, qmgr not woken); a
 * table that cannot be read defers it (status 4).
 *
 * Milters (milter.c): with smtpd's milter connections (passed with the
 * first request) or non_smtpd_milters for a local submission, everything
 * from the sender on goes to a spool first; at the end the milters see the
 * message as it would be queued, and the spool goes into the queue file
 * with their changes (milter_edit.c), or not at all.
 *
 * The sender and attributes are held until the first recipient so the
 * origin is known before the sender is written. Local submissions
 * (origin=local, from pickup) get Postfix's treatment (cleanup.h): Bcc: is
 * removed, and with extract=1 the header recipients are written after the
 * content, as queue_file.h allows.
 */
#include "cleanup.h"
#include "mail_date.h"

#include "address.h"
#include "config.h"
#include "header_line.h"
#include "ipc.h"
#include "log.h"
#include "maildrop.h"
#include "queue_file.h"
#include "receive_override.h"
#include "record.h"
#include "rewrite.h"
#include "service.h"
#include "stream.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ENVELOPE_ATTR_MAX 256   /* attributes held before the first recipient */

static struct queue_writer *current_writer;

/* A fatal error must not leave a half-written file to be scheduled. */
static void cleanup_fatal_hook(void)
{
    if (current_writer)
        unlink(queue_writer_path(current_writer));   /* may have no name yet */
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
static void scan_headers(struct cleanup_state *st, const char *block, size_t len,
                         int *have_date, int *have_from)
{
    const char *p = block, *end = block + len;
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

static void add_missing_headers(struct cleanup_state *st, const char *block, size_t len)
{
    int have_date = 0, have_from = 0;
    char line[MSGID_MAX + 64];
    scan_headers(st, block, len, &have_date, &have_from);
    time_t now = time(NULL);
    if (!st->message_id[0]) {
        struct tm tm;
        char stamp[32];
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
        snprintf(st->message_id, sizeof(st->message_id), "<%s.%s@%s>", stamp,
                 queue_writer_id(st->writer), var.myhostname);
        int n = snprintf(line, sizeof(line), "Message-ID: %s\n", st->message_id);
        cleanup_out_content(st, line, (size_t)n);
    }
    if (!have_date) {
        char date[64];
        mail_date(date, sizeof(date), now);
        int n = snprintf(line, sizeof(line), "Date: %s\n", date);
        cleanup_out_content(st, line, (size_t)n);
    }
    if (!have_from) {
        char from[MSGID_MAX];
        if (st->sender && *st->sender)
            cleanup_local_from_value(st->local ? st->full_name : NULL, st->sender, from,
                                     sizeof(from));
        else
            snprintf(from, sizeof(from), "MAILER-DAEMON");
        int n = snprintf(line, sizeof(line), "From: %s\n", from);
        cleanup_out_content(st, line, (size_t)n);
    }
    msg_info("%s: message-id=%s", queue_writer_id(st->writer), st->message_id);
}

/* The header block as it goes into the file: inspected and rewritten
 * (headers.c), then the headers that are missing. */
static void write_header_block(struct cleanup_state *st, size_t header_end)
{
    struct dynbuf b = {0};
    if (cleanup_headers_process(st, st->hdr, header_end, &b) < 0) {
        st->write_error = ENOMEM;
    } else {
        cleanup_out_content(st, b.p, b.len);
        add_missing_headers(st, b.p, b.len);
    }
    st->header_len = st->content_size;   /* where milters find the body */
    free(b.p);
}

/* Body bytes: through the body walker when one runs. */
static void body_content(struct cleanup_state *st, const char *data, size_t len)
{
    if (st->body)
        hc_body_feed(st->body, data, len);
    else
        cleanup_out_content(st, data, len);
}

/* The first body bytes. A header block ended by a line that is no header
 * (`echo hi | sendmail bob`) gets the empty line that separates it from
 * the body, as Postfix adds it: else readers take the first body line for
 * a broken header. A message without body gets none. */
static void body_begin(struct cleanup_state *st, const char *data, size_t len)
{
    if (st->separator_due && len > 0) {
        st->separator_due = 0;
        if (data[0] != '\n')
            body_content(st, "\n", 1);
    }
    body_content(st, data, len);
}

/* Write the header block, the added headers, and whatever body followed. */
static void finish_headers(struct cleanup_state *st, size_t header_end)
{
    write_header_block(st, header_end);
    cleanup_checks_body_start(st);
    st->separator_due = 1;
    body_begin(st, st->hdr + header_end, st->hdr_len - header_end);
    free(st->hdr);
    st->hdr = NULL;
    st->hdr_len = st->hdr_cap = 0;
    st->in_headers = 0;
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
        body_begin(st, data, len);
        return;
    }
    if (collect_header_bytes(st, data, len) < 0) {
        st->write_error = ENOMEM;
        return;
    }
    long end = cleanup_headers_block_end(st->hdr, st->hdr_len, 0);
    if (end >= 0)
        finish_headers(st, (size_t)end);
    else if ((long long)st->hdr_len > var.header_size_limit)   /* the rest is body */
        finish_headers(st, (size_t)cleanup_headers_block_end(st->hdr, st->hdr_len, 1));
}

/* Content checks apply to what SMTP clients and local users send, not to
 * cleanup's internal clients. */
static void start_content(struct cleanup_state *st)
{
    st->inspect = (st->origin == ORIGIN_SMTP || st->origin == ORIGIN_LOCAL) &&
                  (hc_headers_enabled() || hc_body_enabled()) &&
                  !(st->receive_flags & RECEIVE_NO_HEADER_BODY_CHECKS);
    cleanup_headers_init(st);
    if (st->receive_flags & RECEIVE_NO_ADDRESS_MAPPINGS)
        st->hdr_rewrite = 0;
    cleanup_out_record(st, REC_CONTENT_START, "", 0);
    st->content_offset = stream_tell(st->out);
    st->in_headers = 1;
}

/* --- the envelope --- */

/* Attributes of a local submission that steer cleanup and stop here. */
static int consume_local_attr(struct cleanup_state *st, const char *payload)
{
    size_t flen = strlen(ATTR_FULL_NAME), elen = strlen(ATTR_EXTRACT),
           nlen = strlen(ATTR_DSN_NOTIFY);
    if (strncmp(payload, ATTR_FULL_NAME "=", flen + 1) == 0) {
        free(st->full_name);
        st->full_name = strdup(payload + flen + 1);
        return 1;
    }
    if (strncmp(payload, ATTR_EXTRACT "=", elen + 1) == 0) {
        st->extract = strcmp(payload + elen + 1, "1") == 0;
        return 1;
    }
    if (strncmp(payload, ATTR_DSN_NOTIFY "=", nlen + 1) == 0) {
        st->extract_notify = maildrop_notify_ok(payload + nlen + 1) ? atoi(payload + nlen + 1) : 0;
        return 1;
    }
    return 0;
}

static void copy_attr(char *out, size_t outlen, const char *value)
{
    snprintf(out, outlen, "%s", value);
}

/* Remember what log lines and header rewriting need to know. */
static void note_attr(struct cleanup_state *st, const char *payload)
{
    const char *eq = strchr(payload, '=');
    if (!eq)
        return;
    size_t nlen = (size_t)(eq - payload);
    const char *value = eq + 1;
#define IS(name) (nlen == strlen(name) && strncmp(payload, name, nlen) == 0)
    if (IS(ATTR_ORIGIN)) {
        st->origin = strcmp(value, "smtp") == 0     ? ORIGIN_SMTP
                     : strcmp(value, "local") == 0  ? ORIGIN_LOCAL
                     : strcmp(value, "bounce") == 0 ? ORIGIN_BOUNCE
                                                    : ORIGIN_OTHER;
        st->local = st->origin == ORIGIN_LOCAL;
    } else if (IS(ATTR_CLIENT_NAME)) {
        copy_attr(st->client_name, sizeof(st->client_name), value);
    } else if (IS(ATTR_CLIENT_ADDR)) {
        copy_attr(st->client_addr, sizeof(st->client_addr), value);
    } else if (IS(ATTR_HELO)) {
        copy_attr(st->helo, sizeof(st->helo), value);
    } else if (IS(ATTR_PROTOCOL)) {
        copy_attr(st->proto, sizeof(st->proto), value);
    } else if (IS(ATTR_SASL_USER)) {
        st->sasl_authenticated = *value != 0;
    }
#undef IS
}

static void hold_attr(struct cleanup_state *st, const struct rec_buf *b)
{
    if (st->n_held >= ENVELOPE_ATTR_MAX ||
        cleanup_dynbuf_add(&st->held_attrs, b->data, b->len + 1) < 0) {
        st->write_error = st->write_error ? st->write_error : E2BIG;
        return;
    }
    st->n_held++;
    note_attr(st, b->data);
}

/* Write the sender and the held attributes, now that the origin is known. */
static void flush_envelope(struct cleanup_state *st)
{
    if (!st->envelope_open)
        return;
    st->envelope_open = 0;
    cleanup_milter_start(st);
    if (st->sender) {
        cleanup_rcpt_rewrite_sender(st);
        cleanup_out_record(st, REC_SENDER, st->sender, strlen(st->sender));
    }
    for (size_t off = 0, i = 0; i < st->n_held; i++) {
        const char *payload = st->held_attrs.p + off;
        size_t len = strlen(payload);
        if (!(st->local && consume_local_attr(st, payload)))
            cleanup_out_record(st, REC_ATTR, payload, len);
        off += len + 1;
    }
    free(st->held_attrs.p);
    memset(&st->held_attrs, 0, sizeof(st->held_attrs));
}

/* Reply with a status (and what the milters said). */
static void reply(struct cleanup_state *st, const char *status, const char *reason)
{
    attr_put(st->client, "status", status);
    attr_put(st->client, "reason", reason);
    cleanup_milter_answer(st);
    attr_end(st->client);
}

/* content_filter=transport:nexthop from smtpd or pickup. */
static int filter_attr(struct cleanup_state *st, const char *payload)
{
    size_t n = strlen(ATTR_CONTENT_FILTER);
    if (strncmp(payload, ATTR_CONTENT_FILTER "=", n + 1) != 0)
        return 0;
    snprintf(st->filter, sizeof(st->filter), "%s", payload + n + 1);
    return 1;
}

/* REDIRECT and BCC actions of smtpd's restrictions: redirect=ADDR (the
 * last one wins, a header_checks REDIRECT later in the message replaces
 * it), bcc=ADDR (one more recipient, written after the content as a
 * header_checks BCC is). Neither is stored as it comes. */
static int delegated_attr(struct cleanup_state *st, const char *payload)
{
    size_t rlen = strlen(ATTR_REDIRECT), blen = strlen(ATTR_BCC);
    if (strncmp(payload, ATTR_REDIRECT "=", rlen + 1) == 0) {
        snprintf(st->redirect, sizeof(st->redirect), "%s", payload + rlen + 1);
        return 1;
    }
    if (strncmp(payload, ATTR_BCC "=", blen + 1) == 0) {
        if (payload[blen + 1] && cleanup_rcpt_list_add(&st->bcc, payload + blen + 1,
                                                       payload + blen + 1) < 0)
            st->write_error = ENOMEM;
        return 1;
    }
    return 0;
}

static void write_attr(struct cleanup_state *st, const char *name, const char *value)
{
    char rec[HC_TEXT_MAX + 64];
    if (!*value)
        return;
    int n = snprintf(rec, sizeof(rec), "%s=%s", name, value);
    cleanup_out_record(st, REC_ATTR, rec, (size_t)n < sizeof(rec) ? (size_t)n : sizeof(rec) - 1);
}

/* The content filter and the redirect after the content, as Postfix
 * records them after the message: qmgr sends the message to the filter,
 * or to the redirect address, instead of to its recipients' routes (the
 * redirect wins, as in Postfix); the filter's reinjected copy is a new
 * message without them. */
static void write_routing(struct cleanup_state *st)
{
    write_attr(st, ATTR_CONTENT_FILTER, st->filter);
    write_attr(st, ATTR_REDIRECT, st->redirect);
}

/* The outcomes that queue nothing; 1 when the reply has been sent. */
static int refuse(struct cleanup_state *st)
{
    switch (st->outcome) {
    case OUTCOME_REJECT:
        queue_writer_abort(st->writer);
        reply(st, st->status == 4 ? "4" : "5", st->reason);
        return 1;
    case OUTCOME_DISCARD:
        queue_writer_abort(st->writer);
        reply(st, "0", "");
        return 1;
    case OUTCOME_DEFER:
        queue_writer_abort(st->writer);
        reply(st, "4", st->reason);
        return 1;
    default:
        return 0;
    }
}

static void commit(struct cleanup_state *st)
{
    flush_envelope(st);
    if (st->in_headers)   /* a last line without newline may end the block */
        finish_headers(st, (size_t)cleanup_headers_block_end(st->hdr, st->hdr_len, 1));
    if (st->body)
        hc_body_finish(st->body);
    cleanup_rcpt_write_extracted(st);
    cleanup_rcpt_write_bcc(st);
    cleanup_milter_finish(st);
    write_routing(st);
    const char *id = queue_writer_id(st->writer);
    char saved_id[QUEUE_ID_SIZE];
    snprintf(saved_id, sizeof(saved_id), "%s", id);
    if (refuse(st))
        return;
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
    /* HOLD: the file goes to hold/ before the commit makes it complete,
     * so qmgr never takes it from incoming/. */
    if (st->hold && queue_writer_set_queue(st->writer, QUEUE_HOLD) < 0) {
        msg_warn("%s: move to %s: %s", saved_id, QUEUE_HOLD, strerror(errno));
        queue_writer_abort(st->writer);
        reply(st, "4", "4.3.0 Error: queue file write error");
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
    if (st->hold) {
        reply(st, "0", "");   /* nothing for qmgr until postsuper releases it */
        return;
    }
    reply(st, "0", "");
    ipc_trigger(IPC_PUBLIC, "qmgr", 'W');
}

/* One envelope or content record from the client; 1 when the message is
 * complete, -1 when the client broke off. */
static int client_record(struct cleanup_state *st, int type, struct rec_buf *b)
{
    if (st->envelope_open && type != REC_SENDER && type != REC_ATTR && type != REC_END)
        flush_envelope(st);
    switch (type) {
    case REC_SENDER:
        free(st->sender);
        st->sender = strdup(b->data);
        if (!st->envelope_open)
            cleanup_out_record(st, type, b->data, b->len);
        return 0;
    case REC_ATTR:
        if (cleanup_milter_attr(st, b->data))
            return 0;   /* for the milters, not the queue file */
        if (filter_attr(st, b->data) || delegated_attr(st, b->data))
            return 0;   /* written at the end, where a header_checks action may replace it */
        if (st->envelope_open) {
            hold_attr(st, b);
        } else if (!(st->local && consume_local_attr(st, b->data))) {
            note_attr(st, b->data);
            cleanup_out_record(st, type, b->data, b->len);
        }
        return 0;
    case REC_RCPT:
        cleanup_rcpt_envelope(st, b->data);
        return 0;
    case REC_ORCPT:
    case REC_DSN_ORCPT:
    case REC_DSN_NOTIFY:
        cleanup_rcpt_hold_meta(st, type, b->data);
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

static void state_free(struct cleanup_state *st)
{
    free(st->sender);
    free(st->hdr);
    free(st->full_name);
    free(st->held_attrs.p);
    free(st->first_rcpt);
    free(st->next_orcpt);
    free(st->next_dsn_orcpt);
    free(st->next_dsn_notify);
    hc_body_free(st->body);
    cleanup_rcpt_list_free(&st->rcpts);
    cleanup_rcpt_list_free(&st->extracted);
    cleanup_rcpt_list_free(&st->bcc);
    cleanup_str_set_free(&st->written);
    cleanup_milter_free(st);
}

/* The client's receive_override_options, the "flags" of its request. */
static unsigned receive_flags(const struct attr_list *req)
{
    for (size_t i = 0; i < req->count; i++)
        if (strcmp(req->names[i], "flags") == 0)
            return (unsigned)strtoul(req->values[i], NULL, 10);
    return 0;
}

static void serve(int fd)
{
    struct cleanup_state st = {.envelope_open = 1};
    struct attr_list req;
    st.client = stream_open(fd, (int)var.ipc_timeout);
    if (!st.client) {
        close(fd);
        return;
    }
    /* smtpd's milter connections come with the first request. */
    int fds[64];
    size_t nfds = 0;
    if (ipc_greet(st.client, "cleanup_protocol") < 0 ||
        stream_fill_fds(st.client, fds, sizeof(fds) / sizeof(fds[0]), &nfds) <= 0 ||
        attr_list_read(st.client, &req) < 0) {
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        stream_abandon(st.client);
        return;
    }
    st.receive_flags = receive_flags(&req);
    attr_list_free(&req);
    cleanup_milter_receive(&st, fds, nfds);
    struct timeval arrival;
    gettimeofday(&arrival, NULL);
    st.writer = queue_writer_create(QUEUE_INCOMING, &arrival);
    if (!st.writer) {
        msg_warn("create queue file: %s", strerror(errno));
        attr_send(st.client, "status", "4", "reason",
                  errno == ENOSPC ? "4.3.1 Insufficient system storage"
                                  : "4.3.0 Error: queue file create error",
                  (const char *)NULL);
        cleanup_milter_free(&st);
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
    state_free(&st);
    stream_close(st.client);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "cleanup", 0);
    log_set_fatal_hook(cleanup_fatal_hook);
    service_run_single(serve);
}
