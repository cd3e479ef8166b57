/* transact.c - one mail transaction of remote on a ready session
 * (remote.h): MAIL FROM, RCPT TO for each recipient still undecided, DATA,
 * the message content from the queue file, and the final reply (LMTP: one
 * per accepted recipient).
 *
 * When the server offers PIPELINING, MAIL, every RCPT and DATA go out in
 * one write and the replies are matched in order (RFC 2920); otherwise one
 * command waits for the previous reply. Each RCPT reply decides its own
 * recipient (2xx accepted, 4xx deferred, 5xx bounced); the reply to the
 * final dot decides every accepted one (in LMTP each accepted recipient
 * gets its own reply, in RCPT order). A message larger than the server's
 * SIZE is refused before MAIL (5.3.4), as Postfix does, and so is one
 * that needs SMTPUTF8 by a server that does not offer it (5.6.7); a
 * message whose client asked for SMTPUTF8 carries it to a server that
 * offers it. XFORWARD (smtp_send_xforward_command, to a server that offers
 * it) goes first, one line and reply at a time. A transaction that ends without DATA is closed with RSET so
 * the connection can be reused.
 */
#include "remote.h"

#include "address.h"
#include "log.h"
#include "mail_copy.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"
#include "xtext.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONTENT_HIGH_WATER 65536   /* content queued in the output at most */
#define COMMAND_MAX (3 * ADDRESS_MAX + 256)

struct transaction {
    struct session *s;
    const char *key;            /* the connection cache key; the caller's */
    struct message *m;
    struct rcpt *rcpts;
    size_t *todo;               /* indices of the recipients of this transaction */
    size_t ntodo;
    size_t next_send;           /* next RCPT to send without pipelining */
    size_t next_reply;          /* next RCPT reply to match */
    size_t naccepted;
    size_t next_final;          /* LMTP: where to look for the next accepted one */
    size_t finals_left;         /* LMTP: replies to the final dot still to come */
    int mail_ok, mail_failed;
    char xforward[2][XFORWARD_LINE_MAX];   /* XFORWARD lines before MAIL */
    size_t nxforward, xforward_sent;
    int any_reply;              /* the server answered something */
    /* content */
    struct stream *queue;       /* over a dup of the queue file descriptor */
    struct rec_buf chunk;
    struct mail_copy_filter out;   /* CR LF, dots, a complete last line */
    struct generic_headers *generic;   /* smtp_generic_maps on the headers */
    transact_fn done;
    void *ctx;
};

void rcpt_set(struct rcpt *r, const char *dsn, const char *relay, const char *fmt, ...)
{
    char text[DELIVERY_TEXT_MAX];
    va_list ap;

    if (r->req->status.dsn[0] != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* A reply class we did not expect here (3xx) is a protocol error. */
    delivery_status_set(&r->req->status, delivery_dsn_valid(dsn) ? dsn : "4.5.0", "%s", text);
    snprintf(r->relay, sizeof(r->relay), "%s", relay);
}

static struct rcpt *todo_rcpt(struct transaction *t, size_t i)
{
    return &t->rcpts[t->todo[i]];
}

static void set_all(struct transaction *t, int accepted_only, const char *dsn, const char *text)
{
    for (size_t i = 0; i < t->ntodo; i++) {
        struct rcpt *r = todo_rcpt(t, i);
        if (!accepted_only || r->accepted)
            rcpt_set(r, dsn, session_relay(t->s), "%s", text);
    }
}

/* reusable: 1 the session goes back to the cache, 0 it is closed, -1 it is
 * already gone (aborted). */
static void transaction_end(struct transaction *t, int reusable, int broke_early)
{
    transact_fn done = t->done;
    void *ctx = t->ctx;

    if (reusable >= 0)
        session_release(t->s, t->key, reusable);
    if (t->queue != NULL)
        stream_close(t->queue);
    generic_headers_free(t->generic);
    rec_buf_free(&t->chunk);
    free(t->todo);
    free(t);
    done(ctx, broke_early);
}

/* The session broke: whatever is undecided is deferred with its reason,
 * unless a cached connection died before the server said anything. */
static void on_session_error(void *owner, const struct session_failure *f)
{
    struct transaction *t = owner;

    if (session_reused(t->s) && !t->any_reply) {
        transaction_end(t, 0, 1);
        return;
    }
    set_all(t, 0, f->dsn, f->text);
    transaction_end(t, 0, 0);
}

/* --- RSET ---------------------------------------------------------------- */

static void rset_reply(void *owner, const struct smtp_reply *r)
{
    transaction_end(owner, r->code / 100 == 2, 0);
}

static void send_rset(struct transaction *t)
{
    session_send(t->s, "RSET");
    session_expect(t->s, rset_reply, remote_cfg.rset_timeout, "RSET", "sending RSET");
}

/* --- content ------------------------------------------------------------ */

/* mail_copy_sink: content into the session's output. */
static int put_output(void *ctx, const char *p, size_t len)
{
    struct transaction *t = ctx;

    return evbuffer_add(session_output(t->s), p, len);
}

static void dot_reply(void *owner, const struct smtp_reply *r)
{
    struct transaction *t = owner;
    char said[DELIVERY_TEXT_MAX];

    if (r->code / 100 == 2) {
        delivery_text_clean(said, sizeof(said), r->text);
    } else {
        session_said(t->s, r, "end of DATA", said, sizeof(said));
    }
    set_all(t, 1, r->dsn, said);
    transaction_end(t, 1, 0);
}

/* LMTP: the next recipient that RCPT accepted, in RCPT order. */
static struct rcpt *next_accepted(struct transaction *t)
{
    while (t->next_final < t->ntodo) {
        struct rcpt *r = todo_rcpt(t, t->next_final++);
        if (r->accepted)
            return r;
    }
    return NULL;
}

/* LMTP (RFC 2033): one reply to the final dot per accepted recipient, in
 * RCPT order; each decides its own recipient. */
static void lmtp_dot_reply(void *owner, const struct smtp_reply *r)
{
    struct transaction *t = owner;
    struct rcpt *rc = next_accepted(t);
    char said[DELIVERY_TEXT_MAX];

    if (r->code / 100 == 2)
        delivery_text_clean(said, sizeof(said), r->text);
    else
        session_said(t->s, r, "end of DATA", said, sizeof(said));
    if (rc != NULL)
        rcpt_set(rc, r->dsn, session_relay(t->s), "%s", said);
    if (--t->finals_left == 0)
        transaction_end(t, 1, 0);
}

static void put_generic(void *ctx, const char *p, size_t len)
{
    struct transaction *t = ctx;
    mail_copy_filter_put(&t->out, p, len);
}

/* Content to the server (LF -> CR LF, a dot doubled at the start of a
 * line: RFC 5321 4.5.2), through smtp_generic_maps when that is set. */
static void put_message(struct transaction *t, const char *p, size_t len)
{
    if (t->generic)
        generic_headers_feed(t->generic, p, len, put_generic, t);
    else
        mail_copy_filter_put(&t->out, p, len);
}

static void send_content(void *owner);

static void content_done(struct transaction *t)
{
    struct evbuffer *out = session_output(t->s);

    if (t->generic)
        generic_headers_finish(t->generic, put_generic, t);
    mail_copy_filter_end(&t->out);
    evbuffer_add(out, ".\r\n", 3);
    session_on_drain(t->s, NULL, 0);
    if (!remote_cfg.lmtp) {
        session_expect(t->s, dot_reply, remote_cfg.data_done_timeout, "end of DATA",
                       "sending end of data -- message may be sent more than once");
        return;
    }
    t->finals_left = t->naccepted;
    for (size_t i = 0; i < t->naccepted; i++)
        session_expect(t->s, lmtp_dot_reply, remote_cfg.data_done_timeout, "end of DATA",
                       "sending end of data -- message may be sent more than once");
}

/* Top the output up from the queue file; called again as it drains. */
static void send_content(void *owner)
{
    struct transaction *t = owner;
    struct evbuffer *out = session_output(t->s);

    while (evbuffer_get_length(out) < CONTENT_HIGH_WATER) {
        int rc = queue_content_next(t->queue, &t->chunk);
        if (rc == 0) {
            content_done(t);
            return;
        }
        if (rc < 0) {
            /* Never send the final dot for a message we could not read:
             * dropping the connection makes the server discard it. */
            msg_warn("%s: error reading queue file content", t->m->queue_id);
            set_all(t, 1, "4.3.0", "error reading the queued message");
            session_abort(t->s);
            transaction_end(t, -1, 0);
            return;
        }
        put_message(t, t->chunk.data, t->chunk.len);
    }
}

static int open_content(struct transaction *t)
{
    int fd = dup(t->m->fd);

    if (fd < 0 || (t->queue = stream_open(fd, 0)) == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return queue_content_begin(t->queue, (off_t)t->m->content_offset);
}

static void data_reply(void *owner, const struct smtp_reply *r)
{
    struct transaction *t = owner;
    char said[DELIVERY_TEXT_MAX];

    if (!t->mail_ok || t->naccepted == 0) {
        /* Nothing to send. A server that still says 354 gets the
         * connection dropped: an empty message must not go out. */
        if (r->code == 354) {
            session_abort(t->s);
            transaction_end(t, -1, 0);
        } else {
            send_rset(t);
        }
        return;
    }
    if (r->code != 354) {
        session_said(t->s, r, "DATA", said, sizeof(said));
        set_all(t, 1, r->dsn, said);
        send_rset(t);
        return;
    }
    if (open_content(t) < 0) {
        msg_warn("%s: cannot read queue file content", t->m->queue_id);
        set_all(t, 1, "4.3.0", "error reading the queued message");
        session_abort(t->s);
        transaction_end(t, -1, 0);
        return;
    }
    mail_copy_filter_init(&t->out, MAIL_COPY_CRLF | MAIL_COPY_DOT | MAIL_COPY_NEWLINE_END, 0,
                          put_output, t);
    if (generic_enabled())
        t->generic = generic_headers_new();
    session_on_drain(t->s, send_content, remote_cfg.data_xfer_timeout);
    send_content(t);
}

static void send_data(struct transaction *t)
{
    session_send(t->s, "DATA");
    session_expect(t->s, data_reply, remote_cfg.data_init_timeout, "DATA", "sending DATA command");
}

/* --- MAIL and RCPT ------------------------------------------------------- */

static void rcpt_reply(void *owner, const struct smtp_reply *r);

static void format_rcpt(const struct transaction *t, const struct rcpt *r, char *line,
                        size_t len)
{
    char quoted[2 * ADDRESS_MAX], orcpt[3 * ADDRESS_MAX], mapped[ADDRESS_MAX];
    const struct smtp_features *f = session_features(t->s);
    size_t n;
    const struct deliver_rcpt *d = r->req;
    const char *addr = d->address;

    if (generic_enabled() && generic_address(addr, mapped, sizeof(mapped)) == 0)
        addr = mapped;
    if (address_quote(addr, quoted, sizeof(quoted)) < 0)
        snprintf(quoted, sizeof(quoted), "%s", addr);
    n = (size_t)snprintf(line, len, "RCPT TO:<%s>", quoted);
    if (!f->dsn || n >= len)
        return;
    if (d->dsn_notify != 0) {
        if (d->dsn_notify & DSN_NOTIFY_NEVER)
            n += (size_t)snprintf(line + n, len - n, " NOTIFY=NEVER");
        else
            n += (size_t)snprintf(line + n, len - n, " NOTIFY=%s%s%s",
                                  (d->dsn_notify & DSN_NOTIFY_SUCCESS) ? "SUCCESS," : "",
                                  (d->dsn_notify & DSN_NOTIFY_FAILURE) ? "FAILURE," : "",
                                  (d->dsn_notify & DSN_NOTIFY_DELAY) ? "DELAY," : "");
        if (n < len && line[n - 1] == ',')
            line[--n] = 0;
    }
    const char *semi = d->dsn_orcpt != NULL ? strchr(d->dsn_orcpt, ';') : NULL;
    if (semi != NULL && n < len && semi - d->dsn_orcpt < 32
        && xtext_encode(semi + 1, orcpt, sizeof(orcpt)) >= 0)
        snprintf(line + n, len - n, " ORCPT=%.*s;%s", (int)(semi - d->dsn_orcpt), d->dsn_orcpt,
                 orcpt);
}

static void send_rcpt(struct transaction *t, size_t i)
{
    char line[COMMAND_MAX];

    format_rcpt(t, todo_rcpt(t, i), line, sizeof(line));
    session_send(t->s, line);
    session_expect(t->s, rcpt_reply, remote_cfg.rcpt_timeout, "RCPT TO", "sending RCPT TO");
}

static void rcpt_reply(void *owner, const struct smtp_reply *r)
{
    struct transaction *t = owner;
    struct rcpt *rc = todo_rcpt(t, t->next_reply++);
    char said[DELIVERY_TEXT_MAX];

    t->any_reply = 1;
    if (!t->mail_failed) {
        if (r->code / 100 == 2) {
            rc->accepted = 1;
            t->naccepted++;
        } else {
            session_said(t->s, r, "RCPT TO", said, sizeof(said));
            rcpt_set(rc, r->dsn, session_relay(t->s), "%s", said);
        }
    }
    if (session_features(t->s)->pipelining)
        return;   /* DATA is already on its way */
    if (t->next_send < t->ntodo)
        send_rcpt(t, t->next_send++);
    else if (t->naccepted > 0)
        send_data(t);
    else
        send_rset(t);
}

static void mail_reply(void *owner, const struct smtp_reply *r)
{
    struct transaction *t = owner;
    char said[DELIVERY_TEXT_MAX];

    t->any_reply = 1;
    if (r->code / 100 == 2) {
        t->mail_ok = 1;
        if (!session_features(t->s)->pipelining)
            send_rcpt(t, t->next_send++);
        return;
    }
    t->mail_failed = 1;
    session_said(t->s, r, "MAIL FROM", said, sizeof(said));
    set_all(t, 0, r->dsn, said);
    if (!session_features(t->s)->pipelining)
        send_rset(t);
    /* Pipelined: the RCPT and DATA replies still come and are ignored. */
}

/* Scan the content once for 8-bit bytes: anywhere (BODY=8BITMIME), and in
 * the header block (a UTF-8 header needs SMTPUTF8). */
static void scan_eightbit(struct message *m)
{
    struct rec_buf chunk = {0};
    struct stream *s;
    int fd, in_headers = 1;
    char prev = '\n';

    m->eightbit = m->header_eightbit = 0;
    if ((fd = dup(m->fd)) < 0 || (s = stream_open(fd, 0)) == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    if (queue_content_begin(s, (off_t)m->content_offset) == 0) {
        while (!m->eightbit && queue_content_next(s, &chunk) > 0) {
            for (size_t i = 0; i < chunk.len; i++) {
                char c = chunk.data[i];
                if ((unsigned char)c >= 0x80) {
                    m->eightbit = 1;
                    m->header_eightbit = in_headers;
                    break;
                }
                if (c == '\n' && prev == '\n')
                    in_headers = 0;   /* the empty line ends the headers */
                prev = c;
            }
        }
    }
    rec_buf_free(&chunk);
    stream_close(s);
}

static int message_eightbit(struct message *m)
{
    if (m->eightbit < 0)
        scan_eightbit(m);
    return m->eightbit;
}

static int header_eightbit(struct message *m)
{
    if (m->header_eightbit < 0)
        scan_eightbit(m);
    return m->header_eightbit;
}

static int has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

/* RFC 6531: a message whose client asked for SMTPUTF8 needs it when its
 * sender, one of these recipients or a header is not ASCII; otherwise it
 * may go to a server without it (as Postfix decides). */
static int smtputf8_needed(struct transaction *t)
{
    if (!t->m->smtputf8)
        return 0;
    if (has_8bit(t->m->sender) || header_eightbit(t->m))
        return 1;
    for (size_t i = 0; i < t->ntodo; i++)
        if (has_8bit(todo_rcpt(t, i)->req->address))
            return 1;
    return 0;
}

static void format_mail(struct transaction *t, char *line, size_t len)
{
    char quoted[2 * ADDRESS_MAX], envid[3 * 100 + 1], mapped[ADDRESS_MAX];
    const struct smtp_features *f = session_features(t->s);
    size_t n;
    const char *sender = t->m->sender;

    if (generic_enabled() && generic_address(sender, mapped, sizeof(mapped)) == 0)
        sender = mapped;
    if (address_quote(sender, quoted, sizeof(quoted)) < 0)
        snprintf(quoted, sizeof(quoted), "%s", sender);
    n = (size_t)snprintf(line, len, "MAIL FROM:<%s>", quoted);
    if (n < len && f->smtputf8 && t->m->smtputf8)
        n += (size_t)snprintf(line + n, len - n, " SMTPUTF8");
    if (n < len && f->size_limit >= 0)
        n += (size_t)snprintf(line + n, len - n, " SIZE=%lld", t->m->content_size);
    if (n < len && f->eightbitmime && message_eightbit(t->m))
        n += (size_t)snprintf(line + n, len - n, " BODY=8BITMIME");
    if (n < len && f->dsn && t->m->dsn_ret != NULL && *t->m->dsn_ret)
        n += (size_t)snprintf(line + n, len - n, " RET=%s", t->m->dsn_ret);
    if (n < len && f->dsn && t->m->dsn_envid != NULL && *t->m->dsn_envid
        && xtext_encode(t->m->dsn_envid, envid, sizeof(envid)) >= 0)
        snprintf(line + n, len - n, " ENVID=%s", envid);
}

/* The recipients still undecided take part. Returns how many. */
static size_t collect_todo(struct transaction *t, size_t n)
{
    if ((t->todo = calloc(n ? n : 1, sizeof(*t->todo))) == NULL)
        msg_fatal("out of memory for %zu recipients", n);
    for (size_t i = 0; i < n; i++) {
        t->rcpts[i].accepted = 0;
        if (t->rcpts[i].req->status.dsn[0] == 0)
            t->todo[t->ntodo++] = i;
    }
    return t->ntodo;
}

/* Whether smtp_generic_maps is set but cannot be read for the envelope:
 * then nothing goes out with addresses the table was meant to change. */
static int generic_unavailable(struct transaction *t)
{
    char mapped[ADDRESS_MAX];
    if (!generic_enabled())
        return 0;
    if (generic_address(t->m->sender, mapped, sizeof(mapped)) < 0)
        return 1;
    for (size_t i = 0; i < t->ntodo; i++)
        if (generic_address(todo_rcpt(t, i)->req->address, mapped, sizeof(mapped)) < 0)
            return 1;
    return 0;
}

/* MAIL, and with PIPELINING every RCPT and DATA with it. */
static void send_mail(struct transaction *t)
{
    char line[COMMAND_MAX];
    format_mail(t, line, sizeof(line));
    session_send(t->s, line);
    session_expect(t->s, mail_reply, remote_cfg.mail_timeout, "MAIL FROM", "sending MAIL FROM");
    if (session_features(t->s)->pipelining) {
        for (t->next_send = 0; t->next_send < t->ntodo; t->next_send++)
            send_rcpt(t, t->next_send);
        send_data(t);
    }
}

static void xforward_reply(void *owner, const struct smtp_reply *r);

/* The next XFORWARD line (xforward.c made them), one reply at a time. */
static void send_xforward(struct transaction *t)
{
    session_send(t->s, t->xforward[t->xforward_sent++]);
    session_expect(t->s, xforward_reply, remote_cfg.xforward_timeout, "XFORWARD",
                   "sending XFORWARD");
}

/* A refused XFORWARD defers the transaction's recipients, as Postfix's
 * client does with an unexpected reply. */
static void xforward_reply(void *owner, const struct smtp_reply *r)
{
    struct transaction *t = owner;
    char said[DELIVERY_TEXT_MAX];
    t->any_reply = 1;
    if (r->code / 100 != 2) {
        session_said(t->s, r, "XFORWARD", said, sizeof(said));
        set_all(t, 0, r->dsn, said);
        send_rset(t);
        return;
    }
    if (t->xforward_sent < t->nxforward)
        send_xforward(t);
    else
        send_mail(t);
}

void transact_start(struct session *s, const char *key, struct message *m, struct rcpt *rcpts,
                    size_t n, transact_fn done, void *ctx)
{
    struct transaction *t = calloc(1, sizeof(*t));
    const struct smtp_features *f = session_features(s);

    if (t == NULL)
        msg_fatal("out of memory for a transaction");
    t->s = s;
    t->key = key;
    t->m = m;
    t->rcpts = rcpts;
    t->done = done;
    t->ctx = ctx;
    session_bind(s, t, on_session_error);
    if (collect_todo(t, n) == 0) {
        transaction_end(t, 1, 0);
        return;
    }
    if (generic_unavailable(t)) {
        set_all(t, 0, "4.3.0", "smtp_generic_maps lookup failure");
        transaction_end(t, 1, 0);
        return;
    }
    if (!f->smtputf8 && smtputf8_needed(t)) {
        char text[DELIVERY_TEXT_MAX];
        snprintf(text, sizeof(text), "SMTPUTF8 is required, but was not offered by host %s",
                 session_peer(s));
        set_all(t, 0, "5.6.7", text);
        transaction_end(t, 1, 0);
        return;
    }
    if (f->size_limit > 0 && m->content_size > f->size_limit) {
        char text[DELIVERY_TEXT_MAX];
        snprintf(text, sizeof(text), "message size %lld exceeds size limit %lld of server %s",
                 m->content_size, f->size_limit, session_peer(s));
        set_all(t, 0, "5.3.4", text);
        transaction_end(t, 1, 0);
        return;
    }
    if (remote_cfg.send_xforward && f->xforward) {
        t->nxforward = xforward_format(&m->xforward, f->xforward, t->xforward);
        if (t->nxforward > 0) {
            send_xforward(t);
            return;
        }
    }
    send_mail(t);
}
