/* data.c - message content after DATA: our Received: header, dot-unstuffing,
 * CR LF -> LF, the size limit, and the defence against SMTP smuggling.
 *
 * The end of DATA is only ever CR LF . CR LF: a "." line counts only when
 * the line before it ended in CR LF as well and the dot line itself does.
 * A bare LF or a bare CR anywhere in the content (what smuggling attacks
 * are made of, since other servers read them as line ends) is, per
 * smtpd_forbid_bare_newline: "yes" refused with 521 and the connection
 * closed, so nothing the client pipelined after it is ever read;
 * "normalize" turned into a line end; "no" kept as is. A NUL byte is
 * refused at the end of the message (servers downstream drop NULs, which
 * could turn a line "NUL ." into an end of data there).
 *
 * Content goes to cleanup in chunks; when cleanup falls behind, reading
 * from the client pauses (back-pressure).
 */
#include "smtpd.h"
#include "mail_date.h"

#include "address.h"
#include "log.h"
#include "record.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DATA_PIECE_MAX 65536          /* longest run of content without LF handled at once */
#define CLEANUP_HIGH_WATER (1024 * 1024)

/* Received: in Postfix's layout, with the TLS line when TLS is on. */
static void add_received(struct session *s)
{
    char date[64];
    const char *id = cleanup_queue_id(s->cleanup);
    mail_date(date, sizeof(date), time(NULL));
    evbuffer_add_printf(s->content, "Received: from %s (unknown [%s])\n",
                        s->helo[0] ? s->helo : s->addr, s->addr);
    if (s->tls)
        evbuffer_add_printf(s->content, "\t(using %s)\n\t(No client certificate requested)\n",
                            s->tls_info);
    evbuffer_add_printf(s->content, "\tby %s (%s) with %s id %s", smtpd_cfg.myhostname,
                        smtpd_cfg.mail_name, session_protocol(s), id);
    char rcpt[ADDRESS_MAX + 2];
    if (s->nrcpt == 1 && s->first_rcpt && address_quote(s->first_rcpt, rcpt, sizeof(rcpt)) == 0)
        evbuffer_add_printf(s->content, "\n\tfor <%s>; %s\n", rcpt, date);
    else
        evbuffer_add_printf(s->content, ";\n\t%s\n", date);
}

int data_prepare(struct session *s)
{
    if (!s->content && !(s->content = evbuffer_new())) {
        reply(s, "451 4.3.0 Error: out of memory");
        transaction_reset(s);
        s->state = ST_COMMAND;
        return -1;
    }
    return 0;
}

void data_go_ahead(struct session *s)
{
    s->go_ahead = 1;
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
    session_begin_request(s);
}

/* When cleanup failed after the 354, the content is read and dropped and
 * the end of data is answered 451 (cleanup_finish refuses). */
void data_begin(struct session *s)
{
    if (cleanup_record(s->cleanup, REC_CONTENT_START, "", 0) == 0)
        add_received(s);
    s->at_line_start = 1;
    s->prev_crlf = 1;
    s->state = ST_DATA;
    if (!s->go_ahead)
        data_go_ahead(s);
}

static void flush_content(struct session *s, int all)
{
    size_t len = evbuffer_get_length(s->content);
    if (s->too_big || s->has_nul || !s->cleanup) {
        evbuffer_drain(s->content, len);
        return;
    }
    if (!all)
        len -= len % REC_CHUNK_SIZE;
    if (len)
        cleanup_content(s->cleanup, s->content, len);
}

static void end_of_data(struct session *s)
{
    flush_content(s, 1);
    const char *refusal = NULL;
    if (s->too_big)
        refusal = "552 5.3.4 Message size exceeds fixed limit";
    else if (s->has_nul)
        refusal = "550 5.6.0 Error: NUL character in message content";
    if (refusal) {
        log_reject(s, "END-OF-MESSAGE", s->first_rcpt, refusal);
        s->state = ST_COMMAND;
        reply(s, "%s", refusal);
        transaction_reset(s);
        return;
    }
    if (cleanup_finish(s->cleanup) < 0) {
        s->state = ST_COMMAND;
        reply(s, "451 4.3.0 Error: queue file write error");
        transaction_reset(s);
        return;
    }
    s->state = ST_WAIT_CLEANUP;
}

/* smtpd_forbid_bare_newline = yes: the message is dropped and the session
 * ends, before anything after the offending byte is looked at. */
static void refuse_bare_newline(struct session *s, const char *which)
{
    char text[256];
    snprintf(text, sizeof(text), "521 5.5.2 %s Error: bare <%s> received", smtpd_cfg.myhostname,
             which);
    log_reject(s, "DATA", s->first_rcpt, text);
    reply(s, "%s", text);
    transaction_reset(s);
    session_close_after_reply(s);
}

static void add_content(struct session *s, const char *p, size_t len)
{
    if (!s->too_big && !s->has_nul)
        evbuffer_add(s->content, p, len);
}

/* A content run without its line end; bare CRs inside it become line
 * ends under "normalize". */
static void add_body(struct session *s, const char *p, size_t len)
{
    if (smtpd_cfg.bare_newline != BARE_NORMALIZE) {
        add_content(s, p, len);
        return;
    }
    const char *cr;
    while ((cr = memchr(p, '\r', len)) != NULL) {
        add_content(s, p, (size_t)(cr - p));
        add_content(s, "\n", 1);
        len -= (size_t)(cr - p) + 1;
        p = cr + 1;
    }
    add_content(s, p, len);
}

/* One line (complete: ends in LF) or a piece of an over-long one. */
static void data_piece(struct session *s, const char *p, size_t len, int complete)
{
    int crlf = complete && len >= 2 && p[len - 2] == '\r';
    size_t body = complete ? len - (crlf ? 2 : 1) : len;
    if (s->at_line_start && s->prev_crlf && crlf && body == 1 && p[0] == '.') {
        end_of_data(s);
        return;
    }
    if (smtpd_cfg.bare_newline == BARE_REJECT) {
        if (complete && !crlf) {
            refuse_bare_newline(s, "LF");
            return;
        }
        if (memchr(p, '\r', body)) {
            refuse_bare_newline(s, "CR");
            return;
        }
    }
    if (memchr(p, 0, body))
        s->has_nul = 1;
    if (s->at_line_start && body > 0 && p[0] == '.') {
        p++;
        body--;
    }
    s->msg_size += (long long)body + complete;
    if (smtpd_cfg.message_size_limit > 0 && s->msg_size > smtpd_cfg.message_size_limit)
        s->too_big = 1;
    add_body(s, p, body);
    if (complete)
        add_content(s, "\n", 1);
    s->at_line_start = complete;
    if (complete)
        s->prev_crlf = crlf;
    if (evbuffer_get_length(s->content) >= REC_CHUNK_SIZE)
        flush_content(s, 0);
}

void process_data(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->state == ST_DATA) {
        if (s->cleanup && cleanup_backlog(s->cleanup) > CLEANUP_HIGH_WATER) {
            bufferevent_disable(s->bev, EV_READ);   /* resumed when cleanup drains */
            return;
        }
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, NULL);
        size_t take;
        int complete = nl.pos >= 0 && (size_t)nl.pos < DATA_PIECE_MAX;
        if (complete)
            take = (size_t)nl.pos + 1;
        else if (avail >= DATA_PIECE_MAX)
            take = DATA_PIECE_MAX;
        else
            return;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
        /* Never split CR from the LF that may follow it. */
        if (!complete && p[take - 1] == '\r')
            take--;
        data_piece(s, p, take, complete);
        evbuffer_drain(in, take);
        s->req_bytes += (long long)take;
    }
}
