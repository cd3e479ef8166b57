/* milter.c - milters in cleanup (cleanup.h).
 *
 * Mail from smtpd: smtpd ran the milters up to DATA and passes their
 * connections with the stream's first request (SCM_RIGHTS), then, before
 * the content, each connection's negotiated state and the macro values
 * of the content stages (attributes cleanup takes and does not store).
 * Here the milters get the message as it will be queued (our own
 * Received: header hidden, as Postfix hides it): headers, end of headers,
 * body in chunks with CR LF line ends, end of message, one milter after
 * the other, each seeing the changes of those before it. The answer tells
 * smtpd how each connection stands.
 *
 * Local submissions (pickup) get non_smtpd_milters the way Postfix does
 * it: cleanup opens its own sessions and pretends the mail came with
 * ESMTP from localhost [127.0.0.1]: connect, EHLO, MAIL, RCPT for each
 * recipient, DATA, then the content as above, then QUIT. A milter may not
 * reject a recipient here (Postfix: a configuration error, the mail stays
 * in the queue).
 *
 * cleanup serves one client at a time, so the milter I/O here is blocking
 * (poll with each milter's deadline per packet). A milter that fails is
 * logged and its milter_default_action decides; a reply or a change it
 * cannot make never reaches the queue file half done: the queue file is
 * written from the spool only after every milter answered.
 */
#include "cleanup.h"

#include "address.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "receive_override.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MILTERS_MAX 32
#define MACROS_MAX 256

struct cleanup_milters {
    struct cleanup_state *st;
    struct milter *m[MILTERS_MAX];   /* in smtpd's order (NULL: not usable) */
    size_t n;
    int fds[MILTERS_MAX];            /* from smtpd, until their state comes */
    size_t nfds;
    int own;                         /* non_smtpd_milters: our own sessions */
    char *macro_name[MACROS_MAX], *macro_value[MACROS_MAX];
    size_t nmacro;
    struct stream *spool, *queue;    /* while the message goes to the spool */
    struct cleanup_model *model;
    const struct milter *current;
    char reply[MILTER_REPLY_MAX];    /* the SMTP reply for the client */
    /* macros of the emulated envelope (own sessions) */
    char ext_sender[ADDRESS_MAX + 2];
    int mail_sent;                 /* ext_sender is {mail_addr} from MAIL on */
    char ext_rcpt[ADDRESS_MAX + 2];
};

/* --- receiving smtpd's milters --- */

static struct cleanup_milters *milters_new(struct cleanup_state *st)
{
    struct cleanup_milters *cm = calloc(1, sizeof(*cm));
    if (cm)
        cm->st = st;
    return cm;
}

void cleanup_milter_receive(struct cleanup_state *st, const int *fds, size_t n)
{
    if (n == 0)
        return;
    if (!st->milters && !(st->milters = milters_new(st))) {
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (st->milters->nfds < MILTERS_MAX)
            st->milters->fds[st->milters->nfds++] = fds[i];
        else
            close(fds[i]);
    }
}

/* "milter=STATE": the next passed connection's state (milter_export). */
static void take_milter(struct cleanup_milters *cm, const char *state)
{
    size_t k = cm->n;
    if (k >= cm->nfds)
        return;   /* more states than connections: ignored */
    struct milter *m = milter_import(state);
    if (m) {
        m->fd = cm->fds[k];
        cm->fds[k] = -1;
        int fl = fcntl(m->fd, F_GETFL);
        if (fl < 0 || fcntl(m->fd, F_SETFL, fl | O_NONBLOCK) < 0)
            milter_comm_error(m);
    }
    cm->m[cm->n++] = m;
}

static void take_macro(struct cleanup_milters *cm, const char *nv)
{
    const char *eq = strchr(nv, '=');
    if (!eq || cm->nmacro >= MACROS_MAX)
        return;
    char *name = strndup(nv, (size_t)(eq - nv)), *value = strdup(eq + 1);
    if (!name || !value) {
        free(name);
        free(value);
        return;
    }
    cm->macro_name[cm->nmacro] = name;
    cm->macro_value[cm->nmacro++] = value;
}

int cleanup_milter_attr(struct cleanup_state *st, const char *payload)
{
    struct cleanup_milters *cm = st->milters;
    if (strncmp(payload, "milter=", 7) == 0) {
        if (cm)
            take_milter(cm, payload + 7);
    } else if (strncmp(payload, "milter_macro=", 13) == 0) {
        if (cm)
            take_macro(cm, payload + 13);
    } else if (strncmp(payload, "milter_hold=", 12) == 0) {
        st->hold = 1;   /* smtpd logged it */
        snprintf(st->hold_reason, sizeof(st->hold_reason), "%s", payload + 12);
    } else if (strncmp(payload, "milter_discard=", 15) == 0) {
        if (st->outcome == OUTCOME_QUEUE)
            st->outcome = OUTCOME_DISCARD;   /* smtpd logged it */
    } else {
        return 0;
    }
    return 1;
}

/* --- our own sessions (non_smtpd_milters) --- */

static struct milter_settings own_settings[MILTERS_MAX];
static int own_count = -1;

static size_t own_milters(void)
{
    if (own_count < 0) {
        char err[256];
        own_count = milter_list_parse(var.non_smtpd_milters, own_settings, MILTERS_MAX, err,
                                      sizeof(err));
        if (own_count < 0)
            msg_fatal("non_smtpd_milters: %s", err);
    }
    return (size_t)own_count;
}

/* --- macros --- */

static const char *local_macro(struct cleanup_milters *cm, const char *name)
{
    static const char *const fixed[][2] = {
        {"_", "localhost [127.0.0.1]"}, {"{client_addr}", "127.0.0.1"},
        {"{client_name}", "localhost"}, {"{client_ptr}", "localhost"},
        {"{client_port}", "0"},         {"{daemon_addr}", "127.0.0.1"},
        {"{daemon_port}", "0"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (strcmp(name, fixed[i][0]) == 0)
            return fixed[i][1];
    if (strcmp(name, "{mail_addr}") == 0)
        return cm->mail_sent ? cm->ext_sender : NULL;
    if (strcmp(name, "{rcpt_addr}") == 0)
        return cm->ext_rcpt[0] ? cm->ext_rcpt : NULL;
    return NULL;
}

static const char *macro_value(void *ctx, const char *name)
{
    struct cleanup_milters *cm = ctx;
    if (strcmp(name, "i") == 0)
        return queue_writer_id(cm->st->writer);
    for (size_t i = 0; i < cm->nmacro; i++)
        if (strcmp(cm->macro_name[i], name) == 0)
            return cm->macro_value[i];
    const char *v = milter_config_macro(name);
    if (v)
        return v;
    return cm->own ? local_macro(cm, name) : NULL;
}

/* --- blocking I/O with deadlines --- */

/* 1 when fd is ready, 0 at the deadline, -1 on error. */
static int wait_fd(int fd, short events, long timeout)
{
    struct pollfd p = {.fd = fd, .events = events};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = timeout * 1000 - ((now.tv_sec - start.tv_sec) * 1000 +
                                      (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0)
            return 0;
        int n = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int send_all(struct milter *m, const struct milter_buf *b, long timeout)
{
    size_t off = 0;
    for (;;) {
        int rc = milter_tx_write(b, &off, m->fd);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        int w = wait_fd(m->fd, POLLOUT, timeout);
        if (w <= 0) {
            errno = w == 0 ? ETIMEDOUT : errno;
            return -1;
        }
    }
}

/* One reply packet into rx; 0, or -1 (logged). */
static int read_packet(struct milter *m, struct milter_rx *rx, int cmd, long timeout)
{
    for (;;) {
        enum milter_rx_status st = milter_rx_read(rx, m->fd, MILTER_PACKET_MAX);
        if (st == MILTER_RX_DONE)
            return 0;
        if (st == MILTER_RX_MORE) {
            int w = wait_fd(m->fd, POLLIN, timeout);
            if (w > 0)
                continue;
            msg_warn("milter %s: can't read %s reply packet header: %s", m->set.spec,
                     milter_command_name(cmd), w == 0 ? "Connection timed out" : strerror(errno));
        } else if (st == MILTER_RX_TOOBIG) {
            msg_warn("milter %s: unreasonable packet length: %zu > %d", m->set.spec, rx->len,
                     MILTER_PACKET_MAX);
        } else if (st == MILTER_RX_BAD) {
            msg_warn("milter %s: bad packet length: 0", m->set.spec);
        } else {
            msg_warn("milter %s: can't read %s reply packet %s: %s", m->set.spec,
                     milter_command_name(cmd), rx->hdr_have < 4 ? "header" : "data",
                     st == MILTER_RX_EOF ? "Unexpected EOF" : strerror(errno));
        }
        return -1;
    }
}

static void close_milter(struct milter *m)
{
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
}

static void fail(struct milter *m)
{
    milter_comm_error(m);
    close_milter(m);
}

/* One event to one milter, and its whole answer (milter_result). */
static void exchange(struct cleanup_milters *cm, struct milter *m, enum milter_event ev,
                     const struct milter_args *a)
{
    struct milter_buf out = {0};
    struct milter_rx rx = {0};
    long timeout = milter_event_timeout(m, ev);
    cm->current = m;
    enum milter_step step = milter_event(m, ev, a, macro_value, cm, &out);
    if (step != MILTER_SKIP && send_all(m, &out, timeout) < 0) {
        msg_warn("milter %s: error writing command: %s", m->set.spec, strerror(errno));
        fail(m);
    } else if (step == MILTER_SEND) {
        for (;;) {
            if (read_packet(m, &rx, milter_event_command(ev), timeout) < 0) {
                fail(m);
                break;
            }
            int done = milter_reply(m, ev, rx.pkt[0], rx.pkt + 1, rx.len - 1, &cleanup_model_edits,
                                    cm->model);
            milter_rx_reset(&rx);
            if (done)
                break;
        }
    }
    milter_rx_reset(&rx);
    milter_buf_free(&out);
    if (milter_wants_close(m))
        close_milter(m);
}

/* Connect and negotiate (own sessions). */
static void open_milter(struct milter *m)
{
    char host[256], port[32];
    int is_unix;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (milter_endpoint(m->set.spec, host, sizeof(host), port, sizeof(port), &is_unix) < 0) {
        milter_comm_error(m);
        return;
    }
    if (is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        memset(un, 0, sizeof(*un));
        un->sun_family = AF_UNIX;
        if (strlen(host) >= sizeof(un->sun_path)) {
            msg_warn("connect to Milter service %s: socket path too long", m->set.spec);
            milter_comm_error(m);
            return;
        }
        memcpy(un->sun_path, host, strlen(host) + 1);
        sl = sizeof(*un);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0 || !res) {
            msg_warn("connect to Milter service %s: %s", m->set.spec, gai_strerror(rc));
            milter_comm_error(m);
            return;
        }
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        sl = res->ai_addrlen;
        freeaddrinfo(res);
    }
    m->fd = milter_socket(ss.ss_family);
    int err = 0;
    socklen_t elen = sizeof(err);
    if (m->fd < 0 || (connect(m->fd, (struct sockaddr *)&ss, sl) < 0 &&
                      (errno != EINPROGRESS ||
                       (err = wait_fd(m->fd, POLLOUT, m->set.connect_timeout)) <= 0 ||
                       getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err))) {
        msg_warn("connect to Milter service %s: %s", m->set.spec,
                 err == 0 ? "Connection timed out" : strerror(err > 0 ? err : errno));
        fail(m);
        return;
    }
    struct milter_buf out = {0};
    struct milter_rx rx = {0};
    if (milter_negotiate(m, &out) < 0) {
        close_milter(m);
    } else if (send_all(m, &out, m->set.command_timeout) < 0) {
        msg_warn("milter %s: write error in initial handshake", m->set.spec);
        fail(m);
    } else if (read_packet(m, &rx, SMFIC_OPTNEG, m->set.command_timeout) < 0) {
        fail(m);
    } else if (milter_negotiated(m, rx.pkt[0], rx.pkt + 1, rx.len - 1) < 0) {
        close_milter(m);
    }
    milter_rx_reset(&rx);
    milter_buf_free(&out);
}

/* --- verdicts --- */

/* "from=<a> to=<b> proto=P helo=<h>" of Postfix's cleanup log lines. */
static void whatsup(const struct cleanup_state *st, char *out, size_t len)
{
    char q[ADDRESS_MAX + 2];
    size_t o = 0;
    int n;
#define ADD(...)                                                                   \
    do {                                                                           \
        n = snprintf(out + o, len - o, __VA_ARGS__);                               \
        if (n > 0 && (size_t)n < len - o)                                          \
            o += (size_t)n;                                                        \
    } while (0)
    out[0] = 0;
    if (st->sender)
        ADD(" from=<%s>", address_quote(st->sender, q, sizeof(q)) == 0 ? q : st->sender);
    if (st->first_rcpt)
        ADD(" to=<%s>", address_quote(st->first_rcpt, q, sizeof(q)) == 0 ? q : st->first_rcpt);
    if (st->proto[0])
        ADD(" proto=%s", st->proto);
    if (st->helo[0])
        ADD(" helo=<%s>", st->helo);
#undef ADD
}

static void log_action(const struct cleanup_state *st, const char *action, const char *event,
                       const char *text)
{
    char what[2 * ADDRESS_MAX + 600], shown[MILTER_REPLY_MAX];
    int smtp = st->origin == ORIGIN_SMTP;
    whatsup(st, what, sizeof(what));
    milter_printable(text, shown, sizeof(shown));
    msg_info("%s: %s: %s from %s[%s]: %s;%s", queue_writer_id(st->writer), action, event,
             smtp && st->client_name[0] ? st->client_name : smtp ? "unknown" : "localhost",
             smtp ? st->client_addr : "127.0.0.1", shown, what);
}

void cleanup_milter_hold(struct cleanup_state *st, const char *reason)
{
    if (st->hold)
        return;
    st->hold = 1;
    snprintf(st->hold_reason, sizeof(st->hold_reason), "%s", reason ? reason : "");
    log_action(st, "milter-hold", "END-OF-MESSAGE",
               reason && *reason ? reason : "milter triggers HOLD action");
}

/* What a milter's answer does to the message; 1 when it is not queued. */
static int apply(struct cleanup_milters *cm, const char *event, const char *reply)
{
    struct cleanup_state *st = cm->st;
    if (!reply)
        return 0;
    switch (reply[0]) {
    case 'H':
        if (!st->hold) {
            st->hold = 1;
            snprintf(st->hold_reason, sizeof(st->hold_reason), "%s", reply + 1);
            log_action(st, "milter-hold", event,
                       reply[1] ? reply + 1 : "milter triggers HOLD action");
        }
        return 0;
    case 'D':
        st->outcome = OUTCOME_DISCARD;
        log_action(st, "milter-discard", event, "milter triggers DISCARD action");
        return 1;
    case 'S':
        reply = "421 4.7.0 Server closing connection";
        /* FALLTHROUGH */
    default:
        snprintf(cm->reply, sizeof(cm->reply), "%s", reply);
        st->outcome = OUTCOME_REJECT;
        st->status = reply[0] == '5' ? 5 : 4;
        /* the reason: the first line's text, after the code */
        snprintf(st->reason, sizeof(st->reason), "%.*s", (int)strcspn(reply + 4, "\r\n"),
                 strlen(reply) > 4 ? reply + 4 : "");
        log_action(st, "milter-reject", event, strlen(reply) > 4 ? reply + 4 : reply);
        return 1;
    }
}

/* --- the events --- */

/* An event to every milter in order, until one decides. */
static const char *each(struct cleanup_milters *cm, enum milter_event ev,
                        const struct milter_args *a)
{
    for (size_t i = 0; i < cm->n; i++) {
        if (!cm->m[i])
            continue;
        exchange(cm, cm->m[i], ev, a);
        if (milter_result(cm->m[i]))
            return milter_result(cm->m[i]);
    }
    return NULL;
}

/* The envelope recipients (the address the client gave when known). */
static int for_each_recipient(struct cleanup_milters *cm, const char **reply)
{
    struct rec_buf b = {0}, orig = {0};
    int have_orig = 0, rc = 0;
    if (stream_seek(cm->spool, 0) < 0)
        return -1;
    for (;;) {
        int type = rec_get(cm->spool, &b, REC_CHUNK_SIZE + IPC_VALUE_MAX, NULL);
        if (type < 0) {
            rc = type == REC_EOF ? 0 : -1;
            break;
        }
        if (type == REC_ORCPT) {
            have_orig = rec_buf_set(&orig, b.data, b.len) == 0;
            continue;
        }
        if (type != REC_RCPT)
            continue;
        const char *addr = have_orig ? orig.data : b.data;
        have_orig = 0;
        if (address_quote(addr, cm->ext_rcpt, sizeof(cm->ext_rcpt)) < 0)
            snprintf(cm->ext_rcpt, sizeof(cm->ext_rcpt), "%s", addr);
        /* as Postfix gives them: no angle brackets (Sendmail 8.13's way) */
        const char *argv[] = {cm->ext_rcpt, NULL};
        struct milter_args a = {.argv = argv};
        if ((*reply = each(cm, MILTER_RCPT, &a)))
            break;
    }
    rec_buf_free(&b);
    rec_buf_free(&orig);
    return rc;
}

/* Postfix's emulated SMTP session for a local submission; 1 when a milter
 * decided against the message. */
static int local_envelope(struct cleanup_milters *cm)
{
    struct cleanup_state *st = cm->st;
    const char *r;
    for (size_t i = 0; i < cm->n; i++)
        open_milter(cm->m[i]);
    struct milter_args c = {.client_name = "localhost", .client_addr = "127.0.0.1",
                            .family = SMFIA_INET, .port = 0};
    if ((r = each(cm, MILTER_CONNECT, &c)))
        return apply(cm, "CONNECT", r);
    struct milter_args h = {.text = st->helo[0] ? st->helo : "localhost"};
    if ((r = each(cm, MILTER_HELO, &h)))
        return apply(cm, "EHLO", r);
    const char *sender = st->sender ? st->sender : "";
    if (*sender == 0 || address_quote(sender, cm->ext_sender, sizeof(cm->ext_sender)) < 0)
        snprintf(cm->ext_sender, sizeof(cm->ext_sender), "%s", sender);
    const char *argv[] = {cm->ext_sender, NULL};
    struct milter_args mail = {.argv = argv};
    cm->mail_sent = 1;
    if ((r = each(cm, MILTER_MAIL, &mail)))
        return apply(cm, "MAIL", r);
    r = NULL;
    if (for_each_recipient(cm, &r) < 0) {
        st->write_error = st->write_error ? st->write_error : EIO;
        return 1;
    }
    if (r && (r[0] == '4' || r[0] == '5' || r[0] == 'S')) {
        const char *id = queue_writer_id(st->writer);
        msg_warn("%s: milter configuration error: can't reject recipient in non-smtpd(8) "
                 "submission", id);
        msg_warn("%s: message not accepted, try again later", id);
        st->outcome = OUTCOME_DEFER;
        snprintf(st->reason, sizeof(st->reason), "4.3.5 Server configuration error");
        return 1;
    }
    if (r && apply(cm, "RCPT", r))
        return 1;
    struct milter_args none = {0};
    if ((r = each(cm, MILTER_DATA, &none)))
        return apply(cm, "DATA", r);
    return 0;
}

/* The body to one milter in chunks of CR LF lines; 0, or 1 when its
 * answer came early (a decision, a failure, or SMFIR_SKIP). */
static int send_body(struct cleanup_milters *cm, struct milter *m)
{
    struct cleanup_body *b = cleanup_body_open(cm->model);
    static char chunk[MILTER_CHUNK_MAX];
    size_t n = 0;
    const char *data;
    size_t len;
    int rc, stop = 0;
    if (!b) {
        msg_warn("%s: cannot read the body back: %s", queue_writer_id(cm->st->writer),
                 strerror(errno));
        cm->st->write_error = EIO;
        return 1;
    }
    while (!stop && (rc = cleanup_body_next(b, &data, &len)) == 1) {
        for (size_t i = 0; i < len && !stop; i++) {
            if (data[i] == '\n')
                chunk[n++] = '\r';
            chunk[n++] = data[i];
            if (n >= MILTER_CHUNK_MAX - 1) {
                struct milter_args a = {.chunk = chunk, .chunk_len = n};
                exchange(cm, m, MILTER_BODY, &a);
                n = 0;
                stop = milter_result(m) != NULL || m->skip_body || m->fd < 0;
            }
        }
    }
    if (!stop && n) {
        struct milter_args a = {.chunk = chunk, .chunk_len = n};
        exchange(cm, m, MILTER_BODY, &a);
        stop = milter_result(m) != NULL;
    }
    cleanup_body_close(b);
    return stop && milter_result(m) != NULL;
}

/* The message to one milter: headers, end of headers, body, end. Returns
 * its answer (NULL: go on). */
static const char *message_to(struct cleanup_milters *cm, struct milter *m)
{
    char name[256];
    const char *value;
    size_t vlen;
    struct milter_args none = {0};
    if (!milter_in_message(m))
        return m->def_reply;   /* failed, rejected, or accepted the message */
    for (size_t i = 0; !(m->protocol & SMFIP_NOHDRS) && i < cleanup_model_headers(cm->model);
         i++) {
        if (cleanup_model_header(cm->model, i, name, sizeof(name), &value, &vlen) < 0)
            continue;
        char *v = strndup(value, vlen);
        if (!v)
            continue;
        struct milter_args a = {.name = name, .value = v};
        exchange(cm, m, MILTER_HEADER, &a);
        free(v);
        if (milter_result(m) || !milter_in_message(m))
            return milter_result(m);
    }
    exchange(cm, m, MILTER_EOH, &none);
    if (milter_result(m) || !milter_in_message(m))
        return milter_result(m);
    if (!(m->protocol & SMFIP_NOBODY) && (send_body(cm, m) || !milter_in_message(m)))
        return milter_result(m);
    exchange(cm, m, MILTER_EOM, &none);
    if (m->state == MILTER_ST_ERROR)
        cleanup_model_drop_body(cm->model);
    else
        cleanup_model_commit_body(cm->model);
    return milter_result(m);
}

int cleanup_milter_leadspc(const struct cleanup_state *st)
{
    const struct milter *m = st->milters ? st->milters->current : NULL;
    return m && (m->protocol & SMFIP_HDR_LEADSPC);
}

static void run(struct cleanup_milters *cm)
{
    if (cm->own && local_envelope(cm))
        return;
    for (size_t i = 0; i < cm->n; i++)
        if (cm->m[i] && apply(cm, "END-OF-MESSAGE", message_to(cm, cm->m[i])))
            return;
}

/* --- the message's way through the spool --- */

void cleanup_milter_start(struct cleanup_state *st)
{
    if (!st->milters && st->origin == ORIGIN_LOCAL &&
        !(st->receive_flags & RECEIVE_NO_MILTERS) && own_milters()) {
        if (!(st->milters = milters_new(st))) {
            st->write_error = ENOMEM;
            return;
        }
        st->milters->own = 1;
        for (size_t i = 0; i < own_milters(); i++)
            if ((st->milters->m[st->milters->n] = milter_new(&own_settings[i])))
                st->milters->n++;
    }
    struct cleanup_milters *cm = st->milters;
    if (!cm)
        return;
    int fd = queue_spool_open();
    if (fd < 0 || !(cm->spool = stream_open(fd, 0))) {
        msg_warn("%s: spool for the milters: %s", queue_writer_id(st->writer), strerror(errno));
        if (fd >= 0)
            close(fd);
        st->write_error = st->write_error ? st->write_error : errno ? errno : EIO;
        return;
    }
    cm->queue = st->out;
    st->out = cm->spool;
}

void cleanup_milter_finish(struct cleanup_state *st)
{
    struct cleanup_milters *cm = st->milters;
    if (!cm || !cm->spool)
        return;
    if (st->outcome == OUTCOME_QUEUE && !st->write_error) {
        if (!(cm->model = cleanup_model_new(st)))
            st->write_error = EIO;
        else
            run(cm);
    }
    if (st->outcome == OUTCOME_QUEUE && !st->write_error)
        cleanup_model_write(cm->model, cm->queue);
    st->out = cm->queue;
    /* Postfix accepts a message whose recipients the milters all deleted
     * and removes it unsent; here it is not queued at all. */
    if (st->outcome == OUTCOME_QUEUE && !st->write_error && st->nrcpt == 0 && cm->model &&
        cleanup_model_deletions(cm->model)) {
        st->outcome = OUTCOME_DISCARD;
        log_action(st, "milter-discard", "END-OF-MESSAGE", "milters deleted every recipient");
    }
}

void cleanup_milter_answer(struct cleanup_state *st)
{
    struct cleanup_milters *cm = st->milters;
    char state[4096];
    if (!cm)
        return;
    if (cm->reply[0])
        attr_put(st->client, "reply", cm->reply);
    for (size_t i = 0; !cm->own && i < cm->n; i++) {
        if (!cm->m[i] || milter_export(cm->m[i], state, sizeof(state)) < 0)
            snprintf(state, sizeof(state), "-");
        attr_put(st->client, "milter", state);
    }
}

void cleanup_milter_free(struct cleanup_state *st)
{
    struct cleanup_milters *cm = st->milters;
    if (!cm)
        return;
    for (size_t i = 0; i < cm->n; i++) {
        struct milter *m = cm->m[i];
        if (!m)
            continue;
        if (cm->own && m->fd >= 0) {
            struct milter_buf b = {0};
            if (milter_event(m, MILTER_QUIT, NULL, NULL, NULL, &b) != MILTER_SKIP)
                (void)send_all(m, &b, 1);
            milter_buf_free(&b);
        }
        close_milter(m);
        milter_free(m);
    }
    for (size_t i = 0; i < cm->nfds; i++)
        if (cm->fds[i] >= 0)
            close(cm->fds[i]);
    for (size_t i = 0; i < cm->nmacro; i++) {
        free(cm->macro_name[i]);
        free(cm->macro_value[i]);
    }
    cleanup_model_free(cm->model);
    if (cm->spool)
        stream_abandon(cm->spool);
    free(cm);
    st->milters = NULL;
}
