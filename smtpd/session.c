/* session.c - one SMTP session (session.h): I/O, deadlines, replies,
 * reading commands and dispatching them. HELO/EHLO and the commands that
 * need no state (RSET, NOOP, VRFY, HELP, QUIT) are answered here; MAIL,
 * RCPT, DATA and the content go to transaction.c, AUTH to auth.c,
 * STARTTLS to starttls.c.
 *
 * Input is processed from the bufferevent's input buffer, command by
 * command, so pipelined commands are answered in one write. Anything that
 * must wait (cleanup's queue id, a DNS answer for the restrictions, the
 * delay after errors, a TLS handshake) moves the session to a waiting
 * state; the callback that ends the wait resumes processing of whatever
 * the client pipelined meanwhile.
 *
 * smtpd_milters (milters.c) see the connection before the banner, HELO,
 * and commands nobody knows; the session waits in ST_WAIT_MILTER for them.
 *
 * The end of the client's input (a half-close, or a close that left
 * pipelined commands unread) only means that nothing more will come:
 * whatever came before it is answered first, as Postfix does, and the
 * session ends when it needs more input than there is. That is also how
 * a stand-alone session (standalone.c) ends.
 *
 * Each request (command line, AUTH line, DATA content) has a deadline:
 * smtpd_timeout from its start, plus for DATA one second per
 * smtpd_min_data_rate bytes received. A client that trickles bytes cannot
 * hold a session beyond that, whatever its pace.
 */
#include "session.h"
#include "anvil.h"
#include "auth.h"
#include "peer.h"
#include "milters.h"
#include "restrict.h"
#include "smtpd.h"
#include "starttls.h"
#include "transaction.h"
#include "filter.h"
#include "proxy.h"
#include "xforward.h"

#include "log.h"
#include "match.h"
#include "service.h"
#include "smtp_command.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INPUT_HIGH_WATER (256 * 1024)   /* stop reading the client above this */
/* A client that pipelines without reading our replies: stop taking its
 * commands above the high mark, go on below the low one. */
#define OUTPUT_HIGH_WATER (256 * 1024)
#define OUTPUT_LOW_WATER (64 * 1024)

static const char *const counter_names[C_COUNT] = {
    "helo", "ehlo", "xforward", "starttls", "auth", "mail", "rcpt", "data",
    "rset", "noop", "vrfy", "help", "quit", "unknown"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void timer_in(struct session *s, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6)};
    evtimer_add(s->timer, &tv);
}

/* --- replies and logging --- */

void smtpd_reply(struct session *s, const char *fmt, ...)
{
    struct evbuffer *out = s->state == ST_PAUSED && s->held ? s->held
                                                            : bufferevent_get_output(s->bev);
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

void smtpd_count(struct session *s, enum counter c, int ok)
{
    s->total[c]++;
    s->ok[c] += ok != 0;
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
    /* Postfix writes "commands=0/0" for a session without a command. */
    if (ok == total && total > 0)
        msg_info("disconnect from %s%s commands=%u", s->namaddr, line, ok);
    else
        msg_info("disconnect from %s%s commands=%u/%u", s->namaddr, line, ok, total);
}

/* Postfix's line for a client gone in the middle of things. Gone right
 * after the answer to a message is how many clients end, and Postfix
 * does not log it. */
static void log_lost_connection(struct session *s)
{
    if (!s->last_cmd || strcmp(s->last_cmd, SMTPD_AFTER_EOM) == 0)
        return;
    if (s->state == ST_DATA)
        msg_info("lost connection after DATA (%lld bytes) from %s", smtpd_tx_content_size(s),
                 s->namaddr);
    else
        msg_info("lost connection after %s from %s", s->last_cmd, s->namaddr);
}

/* --- session lifetime --- */

static void anvil_forget(struct session *s);

void smtpd_session_free(struct session *s)
{
    if (s->state != ST_CLOSING)
        log_lost_connection(s);
    log_disconnect(s);
    smtpd_tx_reset(s);
    smtpd_milter_end(s);
    smtpd_restrict_session_end(s);
    smtpd_auth_reset(s);
    smtpd_peer_free(s);
    smtpd_xforward_reset(s);
    smtpd_filter_reset(s);
    smtpd_proxy_free(s);
    if (s->counted)
        smtpd_client_count_remove(s->addr);
    anvil_forget(s);
    if (s->held)
        evbuffer_free(s->held);
    event_free(s->timer);
    bufferevent_free(s->bev);
    int clean = s->clean;
    free(s);
    smtpd_session_closed(clean);
}

/* Bytes not yet sent, in the TLS layer and below it. */
static size_t pending_output(struct session *s)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
    struct bufferevent *under = bufferevent_get_underlying(s->bev);
    return under ? n + evbuffer_get_length(bufferevent_get_output(under)) : n;
}

static int output_flushed(struct session *s)
{
    return pending_output(s) == 0;
}

/* Output drained: the timer (never this callback, which runs inside
 * libevent's write) frees a closing session or resumes a blocked one. */
static void output_drained(struct session *s)
{
    if ((s->state == ST_CLOSING && output_flushed(s)) ||
        (s->output_blocked && pending_output(s) <= OUTPUT_LOW_WATER))
        timer_in(s, 0);
}

static void under_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    if (info->n_deleted)
        output_drained(arg);
}

/* Never frees synchronously: callers may still touch s after this. */
void smtpd_session_close_after_reply(struct session *s)
{
    if (s->state == ST_CLOSING)
        return;
    if (s->state == ST_PAUSED) {
        s->close_after_pause = 1;   /* the held replies go out first */
        return;
    }
    s->state = ST_CLOSING;
    s->req_start = now();
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    timer_in(s, 0);
}

/* An error reply; past the soft limit each one slows the client down,
 * at the hard limit the session ends. */
int smtpd_error_reply(struct session *s)
{
    if (++s->errors >= smtpd_cfg.hard_error_limit) {
        msg_info("too many errors after %s from %s", s->last_cmd ? s->last_cmd : "CONNECT",
                 s->namaddr);
        smtpd_reply(s, "421 4.7.0 %s Error: too many errors", smtpd_cfg.myhostname);
        smtpd_session_close_after_reply(s);
        return -1;
    }
    if (s->errors >= smtpd_cfg.soft_error_limit && s->state != ST_PAUSED)
        smtpd_session_pause(s, smtpd_cfg.error_sleep_time);
    return 0;
}

void smtpd_session_pause(struct session *s, long seconds)
{
    if (seconds <= 0 || s->state == ST_CLOSING)
        return;
    if (!s->held && !(s->held = evbuffer_new()))
        return;
    s->resume_state = s->state;
    s->state = ST_PAUSED;
    timer_in(s, (double)seconds);
}

static void pause_end(struct session *s)
{
    evbuffer_add_buffer(bufferevent_get_output(s->bev), s->held);
    s->state = s->resume_state;
    if (s->close_after_pause) {
        smtpd_session_close_after_reply(s);
        return;
    }
    smtpd_session_begin_request(s);
    smtpd_session_process(s);
}

/* --- deadlines --- */

static int reading_state(enum sess_state st)
{
    return st == ST_COMMAND || st == ST_AUTH || st == ST_DATA || st == ST_TLS_HANDSHAKE;
}

void smtpd_session_begin_request(struct session *s)
{
    s->req_start = now();
    s->req_bytes = 0;
    timer_in(s, (double)smtpd_cfg.timeout);
}

static double request_deadline(const struct session *s)
{
    double d = s->req_start + (double)smtpd_cfg.timeout;
    if (s->state == ST_DATA && smtpd_cfg.min_data_rate > 0)
        d += (double)s->req_bytes / (double)smtpd_cfg.min_data_rate;
    return d;
}

static void request_timed_out(struct session *s)
{
    const char *after = s->last_cmd ? s->last_cmd : "CONNECT";
    if (s->state == ST_TLS_HANDSHAKE) {
        msg_info("timeout after %s from %s", after, s->namaddr);
        s->last_cmd = NULL;
        smtpd_session_free(s);
        return;
    }
    if (s->state == ST_DATA)
        msg_info("timeout after DATA (%lld bytes) from %s", smtpd_tx_content_size(s),
                 s->namaddr);
    else
        msg_info("timeout after %s from %s", after, s->namaddr);
    smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded", smtpd_cfg.myhostname);
    smtpd_tx_reset(s);
    smtpd_session_close_after_reply(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    double t = now();
    if (s->output_blocked && s->state != ST_CLOSING && pending_output(s) <= OUTPUT_LOW_WATER) {
        s->output_blocked = 0;
        bufferevent_enable(s->bev, EV_READ);
        smtpd_session_process(s);
        /* Unless that started a new request or a pause, the current
         * request keeps its deadline. */
        if (!evtimer_pending(s->timer, NULL) && reading_state(s->state))
            timer_in(s, request_deadline(s) - t);
        return;
    }
    if (s->state == ST_PAUSED) {
        pause_end(s);
    } else if (s->state == ST_CLOSING) {
        if (output_flushed(s) || t - s->req_start >= (double)smtpd_cfg.timeout)
            smtpd_session_free(s);
        else
            timer_in(s, s->req_start + (double)smtpd_cfg.timeout - t);
    } else if (reading_state(s->state)) {
        double left = request_deadline(s) - t;
        if (left > 0)
            timer_in(s, left);
        else
            request_timed_out(s);
    }
    /* Other states wait for the message to be queued or for DNS, which
     * have their own timeouts;
     * the deadline restarts when the session reads again. */
}

/* --- commands --- */

/* HELO names go into logs and the Received: header: keep them printable
 * so a bare CR cannot start a header line downstream. */
static void set_helo(struct session *s, const char *arg)
{
    snprintf(s->helo, sizeof(s->helo), "%s", arg);
    for (char *p = s->helo; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

/* The answer to HELO/EHLO. A milter's rejection is only logged here and
 * applies from MAIL on, as in Postfix; its 421 ends the session. */
static void helo_reply(struct session *s, const char *milter_reply)
{
    int esmtp = s->esmtp;
    const char *refusal = smtpd_milter_verdict(s, esmtp ? "EHLO" : "HELO", milter_reply);
    if (refusal && strncmp(refusal, "421", 3) == 0) {
        smtpd_reply(s, "%s", refusal);
        return;
    }
    if (!esmtp) {
        smtpd_reply(s, "250 %s", smtpd_cfg.myhostname);
        return;
    }
    if (!smtpd_auth_ehlo_wait(s))
        smtpd_session_ehlo_reply(s);
}

void smtpd_session_ehlo_reply(struct session *s)
{
    char size[32], auth[600], auth_old[600];
    snprintf(size, sizeof(size), "SIZE %lld", smtpd_cfg.message_size_limit);
    const char *kw[12];
    size_t n = 0;
    kw[n++] = "PIPELINING";
    kw[n++] = size;
    kw[n++] = "VRFY";
    if (smtpd_xforward_ehlo(s))
        kw[n++] = smtpd_xforward_ehlo(s);
    if (smtpd_starttls_offered(s))
        kw[n++] = "STARTTLS";
    if (smtpd_auth_ehlo_keywords(s, auth, sizeof(auth), auth_old, sizeof(auth_old))) {
        kw[n++] = auth;
        if (auth_old[0])
            kw[n++] = auth_old;
    }
    kw[n++] = "ENHANCEDSTATUSCODES";
    kw[n++] = "8BITMIME";
    kw[n++] = "DSN";
    if (smtpd_cfg.smtputf8)
        kw[n++] = "SMTPUTF8";
    smtpd_reply(s, "250-%s", smtpd_cfg.myhostname);
    for (size_t i = 0; i < n; i++)
        smtpd_reply(s, "250%c%s", i + 1 == n ? ' ' : '-', kw[i]);
}

static void helo_checked(struct session *s, const char *reply)
{
    s->state = ST_COMMAND;
    helo_reply(s, reply);
    smtpd_session_resume(s);
}

static void cmd_helo(struct session *s, const char *arg, int esmtp)
{
    smtpd_count(s, esmtp ? C_EHLO : C_HELO, 0);
    if (!*arg) {
        smtpd_reply(s, "501 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        smtpd_error_reply(s);
        return;
    }
    s->ok[esmtp ? C_EHLO : C_HELO]++;
    set_helo(s, arg);
    s->esmtp = esmtp;
    smtpd_tx_reset(s);
    smtpd_xforward_reset(s);   /* as RSET, and as Postfix */
    const char *reply;
    if (!smtpd_milter_helo(s, s->helo, helo_checked, &reply)) {
        s->state = ST_WAIT_MILTER;   /* resumed by helo_checked */
        return;
    }
    helo_reply(s, reply);
}

/* NOOP, VRFY, RSET: harmless one by one, but past smtpd_junk_command_limit
 * each counts as an error so an endless stream of them ends the session. */
static void junk_command(struct session *s)
{
    if (++s->junk > smtpd_cfg.junk_command_limit)
        smtpd_error_reply(s);
}

/* A command nobody knows: 500 (as Postfix 3.7), unless a milter answers it otherwise. */
static void unknown_reply(struct session *s, const char *milter_reply)
{
    const char *refusal = smtpd_milter_verdict(s, "UNKNOWN", milter_reply);
    smtpd_reply(s, "%s", refusal ? refusal : "500 5.5.2 Error: command not recognized");
    smtpd_error_reply(s);
}

static void unknown_checked(struct session *s, const char *reply)
{
    s->state = ST_COMMAND;
    unknown_reply(s, reply);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

static void cmd_unknown(struct session *s, const char *verb, const char *arg)
{
    char line[1024];
    const char *reply;
    smtpd_count(s, C_UNKNOWN, 0);
    snprintf(line, sizeof(line), "%s%s%s", verb, *arg ? " " : "", arg);
    if (!smtpd_milter_unknown(s, line, unknown_checked, &reply)) {
        s->state = ST_WAIT_MILTER;   /* resumed by unknown_checked */
        return;
    }
    unknown_reply(s, reply);
}

static void cmd_simple(struct session *s, const char *verb, const char *arg)
{
    if (strcasecmp(verb, "RSET") == 0) {
        smtpd_count(s, C_RSET, 1);
        smtpd_tx_reset(s);
        smtpd_xforward_reset(s);   /* XFORWARD's attributes too, as Postfix */
        smtpd_reply(s, "250 2.0.0 Ok");
        junk_command(s);
    } else if (strcasecmp(verb, "NOOP") == 0) {
        smtpd_count(s, C_NOOP, 1);
        smtpd_reply(s, "250 2.0.0 Ok");
        junk_command(s);
    } else if (strcasecmp(verb, "VRFY") == 0) {
        smtpd_count(s, C_VRFY, 1);
        smtpd_reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
        junk_command(s);
    } else if (strcasecmp(verb, "HELP") == 0) {
        smtpd_count(s, C_HELP, 1);
        smtpd_reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
    } else if (strcasecmp(verb, "QUIT") == 0) {
        smtpd_count(s, C_QUIT, 1);
        smtpd_reply(s, "221 2.0.0 Bye");
        s->clean = 1;
        smtpd_session_close_after_reply(s);
    } else {
        cmd_unknown(s, verb, arg);
    }
}

static const char *const known_verbs[] = {"HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT",
                                          "DATA", "RSET", "NOOP", "VRFY", "HELP", "QUIT",
                                          "XFORWARD"};

static enum counter verb_counter(const char *verb)
{
    static const enum counter counters[] = {C_HELO, C_EHLO, C_STARTTLS, C_AUTH, C_MAIL, C_RCPT,
                                            C_DATA, C_RSET, C_NOOP, C_VRFY, C_HELP, C_QUIT,
                                            C_XFORWARD};
    for (size_t i = 0; i < sizeof(known_verbs) / sizeof(known_verbs[0]); i++)
        if (strcasecmp(verb, known_verbs[i]) == 0)
            return counters[i];
    return C_UNKNOWN;
}

/* Commands allowed before STARTTLS at smtpd_tls_security_level = encrypt. */
static int allowed_without_tls(const char *verb)
{
    static const char *const ok[] = {"HELO", "EHLO", "STARTTLS", "NOOP", "RSET", "QUIT"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcasecmp(verb, ok[i]) == 0)
            return 1;
    return 0;
}

/* --- improper pipelining (reject_unauth_pipelining) --- */

/* Up to len bytes the client sent that no command has taken yet: the
 * input buffer, else the socket (not under TLS: those are record bytes). */
static size_t pending_input(struct session *s, char *buf, size_t len)
{
    if (s->bev) {
        ev_ssize_t n = evbuffer_copyout(bufferevent_get_input(s->bev), buf, len);
        if (n > 0 || s->tls)
            return n > 0 ? (size_t)n : 0;
    }
    int fd = s->bev ? (int)bufferevent_getfd(s->bev) : s->fd;
    ssize_t n = fd >= 0 ? recv(fd, buf, len, MSG_PEEK | MSG_DONTWAIT) : -1;
    return n > 0 ? (size_t)n : 0;
}

/* Bytes as Postfix shows them in its log: the usual C escapes, a doubled
 * backslash, octal for any other byte that is not printable ASCII. */
static void escape_bytes(const char *in, size_t n, char *out, size_t outlen)
{
    static const char ctl[] = "\a\b\f\n\r\t\v", letter[] = "abfnrtv";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 <= outlen; i++) {
        unsigned char c = (unsigned char)in[i];
        const char *k = c ? strchr(ctl, c) : NULL;
        if (k) {
            out[o++] = '\\';
            out[o++] = letter[k - ctl];
        } else if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\%03o", c);
        }
    }
    out[o] = 0;
}

/* Postfix's rule: a client that sends ahead where it may not (before the
 * greeting; any command unless it said EHLO; after HELO, EHLO, DATA, NOOP
 * or VRFY, which end an RFC 2920 group) is marked for the rest of the
 * session, once, with Postfix's log line; reject_unauth_pipelining
 * refuses on the mark. */
static void check_pipelining(struct session *s, const char *where)
{
    char buf[100], shown[4 * sizeof(buf) + 1];
    if (s->ill_pipelining || smtpd_cfg.stand_alone)
        return;
    size_t n = pending_input(s, buf, sizeof(buf));
    if (n == 0)
        return;
    escape_bytes(buf, n, shown, sizeof(shown));
    msg_info("improper command pipelining after %s from %s: %s", where, s->namaddr, shown);
    s->ill_pipelining = 1;
}

static int ends_group(const char *verb)
{
    static const char *const last[] = {"HELO", "EHLO", "DATA", "NOOP", "VRFY"};
    for (size_t i = 0; i < sizeof(last) / sizeof(last[0]); i++)
        if (strcasecmp(verb, last[i]) == 0)
            return 1;
    return 0;
}

/* Counted like Postfix: accepted XFORWARD commands as xforward=N. */
static void xforward_command(struct session *s, const char *arg)
{
    unsigned errors = (unsigned)s->errors;
    smtpd_count(s, C_XFORWARD, 0);
    smtpd_xforward_command(s, arg);
    if ((unsigned)s->errors == errors)
        s->ok[C_XFORWARD]++;
}

static void command(struct session *s, char *line)
{
    char *verb, *arg;
    smtp_split_command(line, &verb, &arg);
    s->last_cmd = "UNKNOWN";
    for (size_t i = 0; i < sizeof(known_verbs) / sizeof(known_verbs[0]); i++)
        if (strcasecmp(verb, known_verbs[i]) == 0)
            s->last_cmd = known_verbs[i];
    if (smtpd_starttls_required(s) && !allowed_without_tls(verb)) {
        smtpd_count(s, verb_counter(verb), 0);
        smtpd_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
        smtpd_error_reply(s);
        return;
    }
    if (verb_counter(verb) != C_UNKNOWN && (!s->esmtp || ends_group(verb)))
        check_pipelining(s, s->last_cmd);
    if (strcasecmp(verb, "HELO") == 0 || strcasecmp(verb, "EHLO") == 0)
        cmd_helo(s, arg, toupper((unsigned char)verb[0]) == 'E');
    else if (strcasecmp(verb, "STARTTLS") == 0)
        smtpd_starttls_command(s, arg);
    else if (strcasecmp(verb, "AUTH") == 0)
        smtpd_auth_command(s, arg);
    else if (strcasecmp(verb, "MAIL") == 0)
        smtpd_tx_mail(s, arg);
    else if (strcasecmp(verb, "RCPT") == 0)
        smtpd_tx_rcpt(s, arg);
    else if (strcasecmp(verb, "DATA") == 0)
        smtpd_tx_data(s, arg);
    else if (strcasecmp(verb, "XFORWARD") == 0)
        xforward_command(s, arg);
    else
        cmd_simple(s, verb, arg);
}

/* An over-long line is answered once and then discarded up to its end. */
static int line_too_long(struct session *s)
{
    if (!s->skip_line) {
        smtpd_reply(s, "500 5.5.2 Error: command line too long");
        if (smtpd_error_reply(s) < 0)
            return -1;
    }
    s->skip_line = 1;
    return 0;
}

/* Command lines (and AUTH responses) end in LF, CR LF expected; NUL bytes
 * are refused. Returns 1 when it stopped for want of input. */
static int process_commands(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->state == ST_COMMAND || s->state == ST_AUTH) {
        if (pending_output(s) > OUTPUT_HIGH_WATER) {
            s->output_blocked = 1;   /* resumed from the timer once drained */
            bufferevent_disable(s->bev, EV_READ);
            return 0;
        }
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > (size_t)smtpd_cfg.line_length_limit) {
                evbuffer_drain(in, evbuffer_get_length(in));
                if (line_too_long(s) < 0)
                    return 0;
            }
            return 1;
        }
        if (s->skip_line) {
            s->skip_line = 0;
            free(line);
            continue;
        }
        if (len > (size_t)smtpd_cfg.line_length_limit) {
            free(line);
            if (line_too_long(s) < 0)
                return 0;
            s->skip_line = 0;
            continue;
        }
        if (strlen(line) != len) {
            smtpd_reply(s, "500 5.5.2 Error: NUL character in command");
            free(line);
            if (smtpd_error_reply(s) < 0)
                return 0;
            continue;
        }
        if (s->state == ST_AUTH)
            smtpd_auth_response(s, line);
        else
            command(s, line);
        free(line);
        if (reading_state(s->state) && s->state != ST_TLS_HANDSHAKE && s->state != ST_DATA)
            smtpd_session_begin_request(s);
    }
    return 0;
}

/* The input ended and the session wants more: whatever came before the
 * end has been answered, and the replies still go out. Between
 * transactions that is a normal end (stand-alone mode: a script's last
 * command was its last). */
static void input_ended(struct session *s)
{
    log_lost_connection(s);
    s->last_cmd = NULL;
    s->clean = s->state == ST_COMMAND && !s->tx;
    smtpd_tx_reset(s);
    smtpd_session_close_after_reply(s);
}

void smtpd_session_process(struct session *s)
{
    for (;;) {
        enum sess_state before = s->state;
        int starved = 0;
        if (s->state == ST_COMMAND || s->state == ST_AUTH)
            starved = process_commands(s);
        else if (s->state == ST_DATA)
            starved = smtpd_tx_read_content(s);
        if (starved && s->input_ended) {
            input_ended(s);
            return;
        }
        if (s->state == before || !(s->state == ST_COMMAND || s->state == ST_AUTH ||
                                     s->state == ST_DATA))
            return;
    }
}

void smtpd_session_resume(struct session *s)
{
    if (s->state == ST_COMMAND)
        smtpd_session_begin_request(s);
    smtpd_session_process(s);
}

void smtpd_session_reset_for_tls(struct session *s)
{
    smtpd_tx_reset(s);
    smtpd_auth_reset(s);
    s->helo[0] = 0;
    s->esmtp = 0;
    s->skip_line = 0;
}

/* --- client callbacks --- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    smtpd_session_process(arg);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    output_drained(arg);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    if (smtpd_starttls_event(s, what))
        return;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* The client sent all it will (it may have half-closed after a
         * pipelined batch); libevent stopped reading. What came before
         * is answered, as Postfix does, then the session ends. */
        s->input_ended = 1;
        smtpd_session_process(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        /* Only writes have a libevent timeout: the client stopped reading. */
        msg_info("timeout after %s from %s", s->last_cmd ? s->last_cmd : "CONNECT", s->namaddr);
        s->last_cmd = NULL;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        smtpd_session_free(s);
}

void smtpd_session_attach_bev(struct session *s)
{
    struct bufferevent *under = bufferevent_get_underlying(s->bev);
    bufferevent_setcb(s->bev, client_read_cb, client_write_cb, client_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_WRITE, OUTPUT_LOW_WATER, 0);
    if (under)
        evbuffer_add_cb(bufferevent_get_output(under), under_output_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void peer_address(struct session *s, const struct sockaddr_storage *peer)
{
    const void *a = peer->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)peer)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)peer)->sin_addr;
    if (!inet_ntop(peer->ss_family, a, s->addr, sizeof(s->addr)))
        snprintf(s->addr, sizeof(s->addr), "unknown");
    snprintf(s->port, sizeof(s->port), "%u",
             ntohs(peer->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)peer)->sin6_port
                                               : ((const struct sockaddr_in *)peer)->sin_port));
    /* Show v4-mapped clients as plain IPv4, as Postfix does. */
    if (strncmp(s->addr, "::ffff:", 7) == 0 && strchr(s->addr, '.'))
        memmove(s->addr, s->addr + 7, strlen(s->addr + 7) + 1);
    s->in_mynetworks = match_network_list(smtpd_cfg.mynetworks, (const struct sockaddr *)peer);
    s->count_exempt = match_network_list(smtpd_cfg.limit_exceptions,
                                         (const struct sockaddr *)peer);
}

/* smtpd_client_connection_count_limit; 0 when this session may go on. */
static int over_connection_limit(struct session *s)
{
    if (smtpd_cfg.connection_count_limit <= 0 || s->count_exempt)
        return 0;
    long n = smtpd_client_count_add(s->addr);
    s->counted = 1;
    if (n <= smtpd_cfg.connection_count_limit)
        return 0;
    msg_warn("Connection concurrency limit exceeded: %ld from %s for service %s", n, s->namaddr,
             service_name());
    return 1;
}

/* The descriptor's bufferevent, TLS in wrapper mode; -1 (and the
 * descriptor closed) when it cannot be had. Made only once the names are
 * known, so that nothing, a TLS handshake included, runs before. */
static int open_bev(struct session *s, int fd)
{
    if (smtpd_cfg.wrappermode && !s->tls_refused) {
        s->bev = smtpd_starttls_wrap_socket(fd);   /* closes fd on failure */
        return s->bev ? 0 : -1;
    }
    s->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev)
        close(fd);
    return s->bev ? 0 : -1;
}

/* The session ends: anvil no longer counts its connection. */
static void anvil_forget(struct session *s)
{
    smtpd_anvil_cancel(s->anvil_req);
    s->anvil_req = NULL;
    free(s->anvil_arg);
    s->anvil_arg = NULL;
    if (s->anvil_counted)
        smtpd_anvil_tell("disconnect", s->addr);
    s->anvil_counted = 0;
}

/* A session that never started: no log lines, no counts. */
static void session_abort(struct session *s)
{
    anvil_forget(s);
    if (s->bev)
        bufferevent_free(s->bev);
    else if (s->fd >= 0)
        close(s->fd);
    if (s->timer)
        event_free(s->timer);
    smtpd_peer_free(s);
    smtpd_proxy_free(s);
    free(s);
    smtpd_session_closed(0);
}

/* Postfix's answer when the PROXY header failed (in wrapper mode there is
 * no TLS to say it over). */
static void refuse_unproxied(struct session *s)
{
    if (smtpd_cfg.wrappermode) {
        s->last_cmd = NULL;
        smtpd_session_free(s);
        return;
    }
    smtpd_reply(s, "421 4.3.0 %s Server local error", smtpd_cfg.myhostname);
    smtpd_session_close_after_reply(s);
}

static int connection_refused(struct session *s, int anvil_ok, long count, long rate);

/* The client's names are known (and anvil's count, anvil_ok, when it was
 * asked): log the connection, start reading, greet. */
static void greet_now(struct session *s, int anvil_ok, long count, long rate)
{
    int fd = s->fd;
    s->fd = -1;
    if (open_bev(s, fd) < 0) {
        session_abort(s);
        return;
    }
    msg_info("connect from %s", s->namaddr);
    s->last_cmd = "CONNECT";   /* Postfix's name for before the first command */
    struct timeval tmo = {.tv_sec = smtpd_cfg.timeout};
    bufferevent_set_timeouts(s->bev, NULL, &tmo);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH_WATER);
    smtpd_session_attach_bev(s);
    s->state = smtpd_cfg.wrappermode ? ST_TLS_HANDSHAKE : ST_COMMAND;
    smtpd_session_begin_request(s);
    if (s->proxy_refused) {   /* no PROXY header, or a bad one (proxy.h) */
        refuse_unproxied(s);
        return;
    }
    if (s->tls_refused) {   /* no handshake, no reply: Postfix's way */
        msg_warn("Refusing TLS service request from %s for service %s", s->namaddr,
                 service_name());
        s->last_cmd = NULL;
        smtpd_session_free(s);
        return;
    }
    if (connection_refused(s, anvil_ok, count, rate)) {
        if (smtpd_cfg.wrappermode) {
            s->last_cmd = NULL;
            smtpd_session_free(s);
            return;
        }
        smtpd_reply(s, "421 4.7.0 %s Error: too many connections from %s", smtpd_cfg.myhostname,
              s->addr);
        smtpd_session_close_after_reply(s);
        return;
    }
    /* In wrapper mode the banner waits for the handshake (starttls.c). */
    if (!smtpd_cfg.wrappermode) {
        check_pipelining(s, "CONNECT");
        smtpd_session_greet(s);
    }
}

/* The banner, after the milters saw the connection: Postfix's 554 for a
 * milter's 5xx (the session goes on, and MAIL is refused), 421 and the
 * end for its 421. */
static void banner(struct session *s, const char *milter_reply)
{
    const char *refusal = smtpd_milter_verdict(s, "CONNECT", milter_reply);
    if (refusal && refusal[0] == '5') {
        smtpd_reply(s, "554 %s ESMTP not accepting connections", smtpd_cfg.myhostname);
    } else if (refusal && strncmp(refusal, "421", 3) == 0) {
        smtpd_reply(s, "421 %s Service unavailable - try again later", smtpd_cfg.myhostname);
        smtpd_session_close_after_reply(s);
    } else {
        smtpd_reply(s, "220 %s", smtpd_cfg.banner);
    }
}

static void connect_checked(struct session *s, const char *reply)
{
    s->state = s->resume_state;
    banner(s, reply);
    smtpd_session_resume(s);
}

void smtpd_session_greet(struct session *s)
{
    const char *reply;
    s->greeted = 1;
    if (!smtpd_milter_connect(s, connect_checked, &reply)) {
        s->resume_state = s->state;
        s->state = ST_WAIT_MILTER;   /* resumed by connect_checked */
        return;
    }
    banner(s, reply);
}

/* smtpd_client_connection_count_limit and _rate_limit, with Postfix's
 * warnings: anvil's count across every smtpd process of the service when
 * it answered; else this process's own count (no anvil service in
 * master.cf, or anvil down), and no rate limit. */
static int connection_refused(struct session *s, int anvil_ok, long count, long rate)
{
    if (!anvil_ok)
        return over_connection_limit(s);
    if (smtpd_cfg.connection_count_limit > 0 && count > smtpd_cfg.connection_count_limit) {
        msg_warn("Connection concurrency limit exceeded: %ld from %s for service %s", count,
                 s->namaddr, service_name());
        return 1;
    }
    if (smtpd_cfg.connection_rate_limit > 0 && rate > smtpd_cfg.connection_rate_limit) {
        msg_warn("Connection rate limit exceeded: %ld from %s for service %s", rate,
                 s->namaddr, service_name());
        return 1;
    }
    return 0;
}

static void connect_counted(void *ctx, int ok, long count, long rate)
{
    struct session *s = ctx;
    s->anvil_req = NULL;
    greet_now(s, ok, count, rate);
}

/* anvil counts the connection first (across smtpd processes), as in
 * Postfix whenever a limit is set; nothing is read or sent meanwhile. */
static void count_connection(struct session *s)
{
    if ((smtpd_cfg.connection_rate_limit > 0 || smtpd_cfg.connection_count_limit > 0) &&
        !s->count_exempt) {
        s->anvil_req = smtpd_anvil_ask("connect", s->addr, connect_counted, s);
        if (s->anvil_req) {
            s->anvil_counted = 1;
            return;
        }
    }
    greet_now(s, 0, 0, 0);
}

/* Wrapper mode: a client over smtpd_client_new_tls_session_rate_limit
 * gets no handshake at all, as in Postfix. */
static void wrapper_tls_counted(void *ctx, int ok, long count, long rate)
{
    struct session *s = ctx;
    s->anvil_req = NULL;
    s->tls_refused = ok && rate > smtpd_cfg.newtls_rate_limit;
    if (s->tls_refused)
        greet_now(s, 0, 0, 0);
    else
        count_connection(s);
}

static void greet(struct session *s)
{
    smtpd_xforward_session_init(s);   /* by address or name: once the names are known */
    if (s->proxy_refused) {   /* refused before anvil counts anything */
        greet_now(s, 0, 0, 0);
        return;
    }
    if (smtpd_cfg.wrappermode && smtpd_cfg.newtls_rate_limit > 0 && !s->count_exempt &&
        (s->anvil_req = smtpd_anvil_ask("newtls_stat", s->addr, wrapper_tls_counted, s)))
        return;
    count_connection(s);
}

static void anvil_answered(void *ctx, int ok, long count, long rate)
{
    struct session *s = ctx;
    char *arg = s->anvil_arg;
    s->anvil_req = NULL;
    s->anvil_arg = NULL;
    s->state = ST_COMMAND;
    s->anvil_then(s, ok, rate, arg);
    free(arg);
    if (s->state == ST_COMMAND)
        smtpd_session_resume(s);
}

int smtpd_session_ask_anvil(struct session *s, const char *request, const char *arg,
                            void (*then)(struct session *s, int ok, long rate, const char *arg))
{
    if (!(s->anvil_arg = strdup(arg)))
        return -1;
    s->anvil_then = then;
    if (!(s->anvil_req = smtpd_anvil_ask(request, s->addr, anvil_answered, s))) {
        free(s->anvil_arg);
        s->anvil_arg = NULL;
        return -1;
    }
    s->state = ST_WAIT_CHECK;   /* resumed by anvil_answered */
    return 0;
}

/* The client is known by address: its names, then the greeting. */
static void identify(struct session *s, const struct sockaddr_storage *peer, const char *name)
{
    peer_address(s, peer);
    s->state = ST_WAIT_NAME;
    int known = name ? (smtpd_peer_set(s, name) == 0 ? 1 : -1) : smtpd_peer_lookup(s, greet);
    if (known < 0)
        session_abort(s);
    else if (known > 0)
        greet(s);
}

static void proxy_read(struct session *s, const struct sockaddr_storage *client, int ok)
{
    s->proxy_refused = !ok;   /* refused once the client is known, as Postfix */
    identify(s, client, NULL);
}

void smtpd_session_start(int fd, const struct sockaddr_storage *peer, const char *name)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        smtpd_session_closed(0);
        return;
    }
    s->fd = fd;
    if (!(s->timer = evtimer_new(smtpd_base, timer_cb, s))) {
        session_abort(s);
        return;
    }
    if (!name && smtpd_proxy_enabled()) {
        s->state = ST_WAIT_PROXY;   /* the client is the one the header names */
        if (smtpd_proxy_start(s, peer, proxy_read) < 0)
            session_abort(s);
        return;
    }
    identify(s, peer, name);
}
