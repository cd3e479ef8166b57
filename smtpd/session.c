/* session.c - one SMTP session: commands, replies, DATA (RFC 5321).
 *
 * Input is processed from the bufferevent's input buffer, command by
 * command, so pipelined commands are answered in one write. DATA content is
 * unstuffed, turned into LF line ends and moved to cleanup in chunks; when
 * cleanup falls behind, reading from the client pauses. The 250 after DATA
 * is sent only when cleanup has answered that the queue file is durable.
 */
#include "smtpd.h"

#include "address.h"
#include "config.h"
#include "log.h"
#include "match.h"
#include "record.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define DATA_PIECE_MAX 65536          /* longest run of content without LF handled at once */
#define CLEANUP_HIGH_WATER (1024 * 1024)
#define HELO_MAX 256

enum sess_state {
    ST_COMMAND,
    ST_WAIT_QUEUE_ID,  /* DATA received, waiting for cleanup's queue id */
    ST_DATA,
    ST_WAIT_CLEANUP,   /* end of data seen, waiting for cleanup's status */
    ST_CLOSING,        /* flushing the last reply */
};

enum counter { C_HELO, C_EHLO, C_MAIL, C_RCPT, C_DATA, C_RSET, C_NOOP, C_VRFY, C_HELP,
               C_QUIT, C_UNKNOWN, C_COUNT };
static const char *const counter_names[C_COUNT] = {
    "helo", "ehlo", "mail", "rcpt", "data", "rset", "noop", "vrfy", "help", "quit", "unknown"};

struct session {
    struct bufferevent *bev;
    enum sess_state state;
    char addr[INET6_ADDRSTRLEN];
    char namaddr[INET6_ADDRSTRLEN + 16];   /* "unknown[addr]" */
    int in_mynetworks;
    char helo[HELO_MAX];
    int esmtp;
    int errors;
    int skip_line;                          /* discarding an over-long command */
    const char *last_cmd;                   /* for "lost connection after X" */
    unsigned ok[C_COUNT], total[C_COUNT];
    /* transaction */
    int have_mail;
    char *sender;
    int nrcpt;
    char *first_rcpt;
    struct cleanup_stream *cleanup;
    int client_logged;
    /* data */
    int at_line_start, prev_crlf;
    long long msg_size;
    int too_big;
    struct evbuffer *content;
};

static void session_process(struct session *s);

/* --- replies and logging --- */

static void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct session *s, const char *fmt, ...)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

static void count(struct session *s, enum counter c, int ok)
{
    s->total[c]++;
    s->ok[c] += ok != 0;
}

static const char *queue_id_or_noqueue(struct session *s)
{
    const char *id = s->cleanup ? cleanup_queue_id(s->cleanup) : NULL;
    return id ? id : "NOQUEUE";
}

static void log_reject(struct session *s, const char *cmd, const char *rcpt, const char *text)
{
    char to[ADDRESS_MAX + 8] = "";
    if (rcpt)
        snprintf(to, sizeof(to), " to=<%s>", rcpt);
    msg_info("%s: reject: %s from %s: %s; from=<%s>%s proto=%s helo=<%s>", queue_id_or_noqueue(s),
             cmd, s->namaddr, text, s->sender ? s->sender : "", to, s->esmtp ? "ESMTP" : "SMTP",
             s->helo);
}

static void log_disconnect(struct session *s)
{
    char line[512];
    size_t off = 0;
    unsigned ok = 0, total = 0;
    for (int i = 0; i < C_COUNT; i++) {
        if (!s->total[i])
            continue;
        ok += s->ok[i];
        total += s->total[i];
        int n = s->ok[i] == s->total[i]
                    ? snprintf(line + off, sizeof(line) - off, " %s=%u", counter_names[i], s->ok[i])
                    : snprintf(line + off, sizeof(line) - off, " %s=%u/%u", counter_names[i],
                               s->ok[i], s->total[i]);
        if (n > 0 && off + (size_t)n < sizeof(line))
            off += (size_t)n;
    }
    line[off] = 0;
    if (ok == total)
        msg_info("disconnect from %s%s commands=%u", s->namaddr, line, ok);
    else
        msg_info("disconnect from %s%s commands=%u/%u", s->namaddr, line, ok, total);
}

/* --- transaction --- */

static void transaction_reset(struct session *s)
{
    cleanup_close(s->cleanup);
    s->cleanup = NULL;
    free(s->sender);
    free(s->first_rcpt);
    s->sender = s->first_rcpt = NULL;
    s->have_mail = 0;
    s->nrcpt = 0;
    s->client_logged = 0;
    s->too_big = 0;
    s->msg_size = 0;
    evbuffer_drain(s->content, evbuffer_get_length(s->content));
}

static void session_free(struct session *s)
{
    if (s->state != ST_CLOSING && s->last_cmd)
        msg_info("lost connection after %s from %s", s->last_cmd, s->namaddr);
    log_disconnect(s);
    transaction_reset(s);
    evbuffer_free(s->content);
    bufferevent_free(s->bev);
    free(s);
    smtpd_session_closed();
}

static void session_close_after_reply(struct session *s)
{
    s->state = ST_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        session_free(s);
}

/* An error reply; too many of them end the session (hard error limit). */
static int error_reply(struct session *s)
{
    if (++s->errors >= smtpd_cfg.hard_error_limit) {
        msg_info("too many errors after %s from %s", s->last_cmd ? s->last_cmd : "CONNECT",
                 s->namaddr);
        reply(s, "421 4.7.0 %s Error: too many errors", smtpd_cfg.myhostname);
        session_close_after_reply(s);
        return -1;
    }
    return 0;
}

/* --- commands --- */

static void cmd_helo(struct session *s, const char *arg, int esmtp)
{
    count(s, esmtp ? C_EHLO : C_HELO, 0);
    if (!*arg) {
        reply(s, "501 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        error_reply(s);
        return;
    }
    s->ok[esmtp ? C_EHLO : C_HELO]++;
    snprintf(s->helo, sizeof(s->helo), "%s", arg);
    s->esmtp = esmtp;
    transaction_reset(s);
    if (!esmtp) {
        reply(s, "250 %s", smtpd_cfg.myhostname);
        return;
    }
    reply(s, "250-%s", smtpd_cfg.myhostname);
    reply(s, "250-PIPELINING");
    reply(s, "250-SIZE %lld", smtpd_cfg.message_size_limit);
    reply(s, "250-VRFY");
    reply(s, "250-ENHANCEDSTATUSCODES");
    reply(s, "250 8BITMIME");
}

/* "FROM:" / "TO:" followed by the path; returns the argument after it. */
static const char *skip_keyword(const char *arg, const char *kw)
{
    size_t n = strlen(kw);
    if (strncasecmp(arg, kw, n) != 0)
        return NULL;
    arg += n;
    while (*arg == ' ')
        arg++;
    return arg;
}

/* ESMTP parameters of MAIL FROM; -1 after replying with the error. */
static int mail_params(struct session *s, const char *params)
{
    char buf[1024];
    if (strlen(params) >= sizeof(buf)) {
        reply(s, "501 5.5.4 Bad MAIL parameter syntax");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", params);
    char *save = NULL;
    for (char *p = strtok_r(buf, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
        if (strncasecmp(p, "SIZE=", 5) == 0) {
            char *end;
            errno = 0;
            long long size = strtoll(p + 5, &end, 10);
            if (errno || *end || end == p + 5 || size < 0) {
                reply(s, "501 5.5.4 Bad message size syntax");
                return -1;
            }
            if (smtpd_cfg.message_size_limit > 0 && size > smtpd_cfg.message_size_limit) {
                reply(s, "552 5.3.4 Message size exceeds fixed limit");
                return -1;
            }
        } else if (strcasecmp(p, "BODY=8BITMIME") == 0 || strcasecmp(p, "BODY=7BIT") == 0) {
            continue;
        } else {
            reply(s, "555 5.5.4 Unsupported option: %.100s", p);
            return -1;
        }
    }
    return 0;
}

static void cmd_mail(struct session *s, const char *arg)
{
    char addr[ADDRESS_MAX];
    const char *params, *err;
    count(s, C_MAIL, 0);
    if (s->have_mail) {
        reply(s, "503 5.5.1 Error: nested MAIL command");
        error_reply(s);
        return;
    }
    const char *path = skip_keyword(arg, "FROM:");
    if (!path) {
        reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        error_reply(s);
        return;
    }
    if (address_parse_path(path, addr, sizeof(addr), &params, &err) < 0) {
        reply(s, "501 5.1.7 Bad sender address syntax");
        error_reply(s);
        return;
    }
    if (mail_params(s, params) < 0) {
        error_reply(s);
        return;
    }
    s->sender = strdup(addr);
    if (!s->sender) {
        reply(s, "451 4.3.0 Error: out of memory");
        return;
    }
    s->have_mail = 1;
    s->ok[C_MAIL]++;
    reply(s, "250 2.1.0 Ok");
}

static int relay_permitted(struct session *s, const char *rcpt)
{
    const char *domain = address_domain(rcpt);
    if (!domain || match_domain_list(smtpd_cfg.mydestination, domain))
        return 1;
    return s->in_mynetworks;
}

/* The first recipient opens the stream to cleanup and sends the envelope. */
static int open_cleanup(struct session *s)
{
    s->cleanup = cleanup_open(s);
    if (!s->cleanup)
        return -1;
    cleanup_record(s->cleanup, REC_SENDER, s->sender, strlen(s->sender));
    cleanup_attr(s->cleanup, "client_name", "unknown");
    cleanup_attr(s->cleanup, "client_address", s->addr);
    cleanup_attr(s->cleanup, "helo_name", s->helo);
    cleanup_attr(s->cleanup, "protocol", s->esmtp ? "ESMTP" : "SMTP");
    return 0;
}

static void cmd_rcpt(struct session *s, const char *arg)
{
    char addr[ADDRESS_MAX];
    const char *params, *err;
    count(s, C_RCPT, 0);
    if (!s->have_mail) {
        reply(s, "503 5.5.1 Error: need MAIL command");
        error_reply(s);
        return;
    }
    const char *path = skip_keyword(arg, "TO:");
    if (!path) {
        reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        error_reply(s);
        return;
    }
    if (address_parse_path(path, addr, sizeof(addr), &params, &err) < 0 || !addr[0]) {
        reply(s, "501 5.1.3 Bad recipient address syntax");
        error_reply(s);
        return;
    }
    if (*params) {
        reply(s, "555 5.5.4 Unsupported option: %.100s", params);
        error_reply(s);
        return;
    }
    if (s->nrcpt >= smtpd_cfg.recipient_limit) {
        reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    if (!relay_permitted(s, addr)) {
        char text[ADDRESS_MAX + 64];
        snprintf(text, sizeof(text), "554 5.7.1 <%s>: Relay access denied", addr);
        log_reject(s, "RCPT", addr, text);
        reply(s, "%s", text);
        error_reply(s);
        return;
    }
    if (!s->cleanup && open_cleanup(s) < 0) {
        reply(s, "451 4.3.0 Error: queue file write error");
        return;
    }
    cleanup_record(s->cleanup, REC_RCPT, addr, strlen(addr));
    if (s->nrcpt++ == 0)
        s->first_rcpt = strdup(addr);
    s->ok[C_RCPT]++;
    reply(s, "250 2.1.5 Ok");
}

static void format_received_date(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    char zone[16];
    localtime_r(&now, &tm);
    strftime(zone, sizeof(zone), "%Z", &tm);
    size_t n = strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
    snprintf(buf + n, len - n, " (%s)", zone);
}

/* Content begins with our Received: header. */
static void start_data(struct session *s)
{
    char date[64];
    const char *id = cleanup_queue_id(s->cleanup);
    format_received_date(date, sizeof(date));
    cleanup_record(s->cleanup, REC_CONTENT_START, "", 0);
    evbuffer_add_printf(s->content, "Received: from %s (unknown [%s])\n\tby %s (%s) with %s id %s",
                        s->helo[0] ? s->helo : s->addr, s->addr, smtpd_cfg.myhostname,
                        smtpd_cfg.mail_name, s->esmtp ? "ESMTP" : "SMTP", id);
    if (s->nrcpt == 1 && s->first_rcpt)
        evbuffer_add_printf(s->content, "\n\tfor <%s>; %s\n", s->first_rcpt, date);
    else
        evbuffer_add_printf(s->content, ";\n\t%s\n", date);
    s->at_line_start = 1;
    s->prev_crlf = 1;
    s->state = ST_DATA;
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_data(struct session *s, const char *arg)
{
    count(s, C_DATA, 0);
    if (*arg) {
        reply(s, "501 5.5.4 Syntax: DATA");
        error_reply(s);
        return;
    }
    if (!s->have_mail) {
        reply(s, "503 5.5.1 Error: need RCPT command");
        error_reply(s);
        return;
    }
    if (s->nrcpt == 0 || !s->cleanup) {
        reply(s, "554 5.5.1 Error: no valid recipients");
        error_reply(s);
        return;
    }
    if (cleanup_failed(s->cleanup)) {
        reply(s, "451 4.3.0 Error: queue file write error");
        transaction_reset(s);
        return;
    }
    if (!cleanup_queue_id(s->cleanup)) {
        s->state = ST_WAIT_QUEUE_ID;   /* resumed by session_cleanup_ready */
        return;
    }
    start_data(s);
}

static void cmd_simple(struct session *s, const char *verb, const char *arg)
{
    if (strcasecmp(verb, "RSET") == 0) {
        count(s, C_RSET, 1);
        transaction_reset(s);
        reply(s, "250 2.0.0 Ok");
    } else if (strcasecmp(verb, "NOOP") == 0) {
        count(s, C_NOOP, 1);
        reply(s, "250 2.0.0 Ok");
    } else if (strcasecmp(verb, "VRFY") == 0) {
        count(s, C_VRFY, 1);
        reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
    } else if (strcasecmp(verb, "HELP") == 0) {
        count(s, C_HELP, 1);
        reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
    } else if (strcasecmp(verb, "QUIT") == 0) {
        count(s, C_QUIT, 1);
        reply(s, "221 2.0.0 Bye");
        session_close_after_reply(s);
    } else {
        count(s, C_UNKNOWN, 0);
        reply(s, "502 5.5.2 Error: command not recognized");
        error_reply(s);
    }
}

static void command(struct session *s, char *line)
{
    char *arg = line;
    while (*arg && *arg != ' ')
        arg++;
    if (*arg)
        *arg++ = 0;
    while (*arg == ' ')
        arg++;
    const char *verb = line;
    static const char *const known[] = {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET",
                                        "NOOP", "VRFY", "HELP", "QUIT"};
    s->last_cmd = "UNKNOWN";
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcasecmp(verb, known[i]) == 0)
            s->last_cmd = known[i];
    if (strcasecmp(verb, "HELO") == 0 || strcasecmp(verb, "EHLO") == 0)
        cmd_helo(s, arg, toupper((unsigned char)verb[0]) == 'E');
    else if (strcasecmp(verb, "MAIL") == 0)
        cmd_mail(s, arg);
    else if (strcasecmp(verb, "RCPT") == 0)
        cmd_rcpt(s, arg);
    else if (strcasecmp(verb, "DATA") == 0)
        cmd_data(s, arg);
    else
        cmd_simple(s, verb, arg);
}

/* Commands are lines ending in LF (CR LF expected); NUL bytes are refused. */
static void process_commands(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->state == ST_COMMAND) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > (size_t)smtpd_cfg.line_length_limit) {
                evbuffer_drain(in, evbuffer_get_length(in));
                if (!s->skip_line) {
                    reply(s, "500 5.5.2 Error: command line too long");
                    if (error_reply(s) < 0)
                        return;
                }
                s->skip_line = 1;
            }
            return;
        }
        if (s->skip_line) {
            s->skip_line = 0;
            free(line);
            continue;
        }
        if (strlen(line) != len) {
            reply(s, "500 5.5.2 Error: NUL character in command");
            free(line);
            if (error_reply(s) < 0)
                return;
            continue;
        }
        command(s, line);
        free(line);
    }
}

/* --- DATA --- */

static void flush_content(struct session *s, int all)
{
    size_t len = evbuffer_get_length(s->content);
    if (s->too_big || !s->cleanup) {
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
    if (s->too_big) {
        msg_info("%s: reject: size limit exceeded from %s", queue_id_or_noqueue(s), s->namaddr);
        reply(s, "552 5.3.4 Message size exceeds fixed limit");
        transaction_reset(s);
        s->state = ST_COMMAND;
        return;
    }
    if (cleanup_finish(s->cleanup) < 0) {
        reply(s, "451 4.3.0 Error: queue file write error");
        transaction_reset(s);
        s->state = ST_COMMAND;
        return;
    }
    s->state = ST_WAIT_CLEANUP;
}

/* One line (or a piece of an over-long one) of DATA input. */
static void data_piece(struct session *s, const char *p, size_t len, int complete)
{
    int crlf = complete && len >= 2 && p[len - 2] == '\r';
    if (s->at_line_start && complete && len == 3 && p[0] == '.' && crlf && s->prev_crlf) {
        end_of_data(s);
        return;
    }
    if (s->at_line_start && p[0] == '.') {
        p++;
        len--;
    }
    size_t body = complete ? len - (crlf ? 2 : 1) : len;
    s->msg_size += (long long)body + complete;
    if (smtpd_cfg.message_size_limit > 0 && s->msg_size > smtpd_cfg.message_size_limit)
        s->too_big = 1;
    if (!s->too_big) {
        evbuffer_add(s->content, p, body);
        if (complete)
            evbuffer_add(s->content, "\n", 1);
    }
    s->at_line_start = complete;
    if (complete)
        s->prev_crlf = crlf;
    if (evbuffer_get_length(s->content) >= REC_CHUNK_SIZE)
        flush_content(s, 0);
}

static void process_data(struct session *s)
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
        int complete = nl.pos >= 0;
        if (complete && (size_t)nl.pos < DATA_PIECE_MAX)
            take = (size_t)nl.pos + 1;
        else if (avail >= DATA_PIECE_MAX)
            take = DATA_PIECE_MAX, complete = 0;
        else
            return;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
        data_piece(s, p, take, complete);
        evbuffer_drain(in, take);
    }
}

static void session_process(struct session *s)
{
    for (;;) {
        enum sess_state before = s->state;
        if (s->state == ST_COMMAND)
            process_commands(s);
        else if (s->state == ST_DATA)
            process_data(s);
        if (s->state == ST_CLOSING || s->state == before)
            return;
    }
}

/* --- callbacks from cleanup.c --- */

void session_cleanup_ready(struct session *s)
{
    const char *id = cleanup_queue_id(s->cleanup);
    if (id && !s->client_logged) {
        msg_info("%s: client=%s", id, s->namaddr);
        s->client_logged = 1;
    }
    if (s->state != ST_WAIT_QUEUE_ID)
        return;
    if (!id || cleanup_failed(s->cleanup)) {
        reply(s, "451 4.3.0 Error: queue file write error");
        transaction_reset(s);
        s->state = ST_COMMAND;
    } else {
        start_data(s);
    }
    session_process(s);
}

void session_cleanup_done(struct session *s, int status, const char *reason)
{
    if (s->state != ST_WAIT_CLEANUP) {
        return;   /* failure before DATA: reported when DATA comes */
    }
    const char *id = queue_id_or_noqueue(s);
    if (status == 0) {
        s->ok[C_DATA]++;
        reply(s, "250 2.0.0 Ok: queued as %s", id);
    }
    else if (status == 5)
        reply(s, "554 %s", reason && *reason ? reason : "5.3.0 Error: message rejected");
    else
        reply(s, "451 %s", reason && *reason ? reason : "4.3.0 Error: queue file write error");
    transaction_reset(s);
    s->state = ST_COMMAND;
    session_process(s);
}

void session_cleanup_drained(struct session *s)
{
    if (s->state == ST_DATA && !(bufferevent_get_enabled(s->bev) & EV_READ)) {
        bufferevent_enable(s->bev, EV_READ);
        session_process(s);
    }
}

/* --- client callbacks --- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    session_process(arg);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    if (s->state == ST_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        session_free(s);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        msg_info("timeout after %s from %s", s->last_cmd ? s->last_cmd : "CONNECT", s->namaddr);
        s->last_cmd = NULL;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        session_free(s);
}

static void peer_address(struct session *s, const struct sockaddr_storage *peer)
{
    const void *a = peer->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)peer)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)peer)->sin_addr;
    if (!inet_ntop(peer->ss_family, a, s->addr, sizeof(s->addr)))
        snprintf(s->addr, sizeof(s->addr), "unknown");
    /* Show v4-mapped clients as plain IPv4, as Postfix does. */
    if (strncmp(s->addr, "::ffff:", 7) == 0 && strchr(s->addr, '.'))
        memmove(s->addr, s->addr + 7, strlen(s->addr + 7) + 1);
    snprintf(s->namaddr, sizeof(s->namaddr), "unknown[%s]", s->addr);
    s->in_mynetworks = match_network_list(smtpd_cfg.mynetworks, (const struct sockaddr *)peer);
}

void session_start(int fd, const struct sockaddr_storage *peer)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return;
    }
    s->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    s->content = evbuffer_new();
    if (!s->bev || !s->content) {
        if (s->bev)
            bufferevent_free(s->bev);
        else
            close(fd);
        if (s->content)
            evbuffer_free(s->content);
        free(s);
        return;
    }
    peer_address(s, peer);
    msg_info("connect from %s", s->namaddr);
    struct timeval tmo = {.tv_sec = smtpd_cfg.timeout};
    bufferevent_setcb(s->bev, client_read_cb, client_write_cb, client_event_cb, s);
    bufferevent_set_timeouts(s->bev, &tmo, &tmo);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    reply(s, "220 %s", smtpd_cfg.banner);
}
