/* smtpd.h - the SMTP server's internals shared by its source files.
 *
 * smtpd.c     accepting, per-client connection counts, the event loop,
 *             settings, process lifetime
 * session.c   one SMTP session: I/O, deadlines, replies, command dispatch,
 *             HELO/EHLO, MAIL, RCPT, DATA, the simple commands
 * data.c      message content: dot-unstuffing, bare CR/LF policy, size
 * parse.c     session-free parsing (parse.h): command line, paths (UTF-8
 *             too), ESMTP parameters of MAIL and RCPT (SIZE, BODY,
 *             SMTPUTF8, RET, ENVID, NOTIFY, ORCPT, AUTH)
 * params.c    parse.c's results into the session, its refusals as replies
 * starttls.c  STARTTLS and wrapper mode on libevent's OpenSSL bufferevents
 * auth.c      the AUTH command (lib/sasl.h) with its delay and limit
 * restrict.c  smtpd_*_restrictions, evaluated at RCPT, DNS lookups async
 * cleanup.c   the per-transaction stream to the cleanup service
 * storage.c   room in the queue file system (queue_minfree, SIZE=) and
 *             the 452 of "insufficient system storage"
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "address.h"
#include "parse.h"
#include "sasl.h"

struct event;
struct event_base;
struct bufferevent;
struct evbuffer;
struct session;
struct lookup_list;
struct dns_resolver;

enum bare_newline { BARE_REJECT, BARE_NORMALIZE, BARE_ALLOW };
enum tls_level { TLS_NONE, TLS_MAY, TLS_ENCRYPT };

/* Settings read once per process (main.cf can change only on reload, and
 * reload replaces the process). */
struct smtpd_config {
    const char *myhostname;
    const char *mydestination;
    const char *relay_domains;
    const char *mynetworks;
    const char *banner;
    const char *mail_name;
    const char *limit_exceptions;
    long long message_size_limit;
    long recipient_limit;
    long timeout;
    long line_length_limit;
    long hard_error_limit;
    long soft_error_limit;
    long junk_command_limit;
    long error_sleep_time;
    long min_data_rate;
    long connection_count_limit;
    enum bare_newline bare_newline;
    int smtputf8;
    /* TLS */
    enum tls_level tls_level;
    int wrappermode;
    /* AUTH */
    int sasl_enable;
    int tls_auth_only;
    long sasl_failure_limit;
    struct lookup_list *sasl_password_maps;
    struct lookup_list *sender_login_maps;
    const char *recipient_delimiter;
};
extern struct smtpd_config smtpd_cfg;
extern struct event_base *smtpd_base;

enum sess_state {
    ST_COMMAND,
    ST_AUTH,           /* AUTH exchange: waiting for the client's next line */
    ST_WAIT_CHECK,     /* RCPT restrictions waiting for DNS */
    ST_WAIT_QUEUE_ID,  /* DATA received, waiting for cleanup's queue id */
    ST_DATA,
    ST_WAIT_CLEANUP,   /* end of data seen, waiting for cleanup's status */
    ST_TLS_HANDSHAKE,  /* STARTTLS accepted or wrapper mode: handshake running */
    ST_PAUSED,         /* error or failed-AUTH delay; replies are held */
    ST_CLOSING,        /* flushing the last reply */
};

enum counter { C_HELO, C_EHLO, C_STARTTLS, C_AUTH, C_MAIL, C_RCPT, C_DATA, C_RSET, C_NOOP,
               C_VRFY, C_HELP, C_QUIT, C_UNKNOWN, C_COUNT };

#define HELO_MAX 256
#define TLS_INFO_MAX 160

/* The recipient of a RCPT command while its restrictions are evaluated. */
struct rcpt_request {
    char addr[ADDRESS_MAX];
    int notify;                 /* DSN_NOTIFY_* mask, 0 = not given */
    char *orcpt;                /* "type;address", decoded; NULL = not given */
};

struct check_state;             /* restrict.c */
struct dns_cache;               /* restrict.c */

struct session {
    struct bufferevent *bev;
    enum sess_state state;
    enum sess_state resume_state;           /* after ST_PAUSED */
    int close_after_pause;
    struct evbuffer *held;                  /* replies held during ST_PAUSED */
    struct event *timer;                    /* request deadline or pause */
    double req_start;                       /* when the current request began */
    long long req_bytes;                    /* DATA bytes of this request */
    char addr[INET6_ADDRSTRLEN];
    char namaddr[INET6_ADDRSTRLEN + 16];    /* "unknown[addr]" */
    int in_mynetworks;
    int counted;                            /* in the per-client connection count */
    char helo[HELO_MAX];
    int esmtp;
    int errors;
    int junk;
    int skip_line;                          /* discarding an over-long command */
    int output_blocked;                     /* not reading: the client does not read */
    const char *last_cmd;                   /* for "lost connection after X" */
    unsigned ok[C_COUNT], total[C_COUNT];
    /* TLS */
    int tls;
    char tls_info[TLS_INFO_MAX];            /* tls_describe() once established */
    /* AUTH */
    char *sasl_user;
    const char *sasl_method;
    int auth_failures;
    struct sasl_exchange *sasl;
    /* restrictions */
    struct check_state *check;
    struct dns_cache *dns_cache;
    /* transaction */
    int have_mail;
    char *sender;
    int smtputf8;
    char *dsn_envid;
    const char *dsn_ret;
    struct rcpt_request *rcpt;              /* RCPT being checked */
    int nrcpt;
    char *first_rcpt;
    struct cleanup_stream *cleanup;
    int client_logged;
    /* data */
    int at_line_start, prev_crlf;
    long long msg_size;
    int too_big;
    int go_ahead;          /* 354 sent for this transaction */
    int has_nul;
    struct evbuffer *content;
};

/* smtpd.c */
void smtpd_session_closed(void);
/* Per-client connection counts: returns the count including this one. */
long smtpd_client_count_add(const char *addr);
void smtpd_client_count_remove(const char *addr);
/* The process-wide resolver, created on first use; NULL if it cannot be. */
struct dns_resolver *smtpd_resolver(void);

/* session.c */
void session_start(int fd, const struct sockaddr_storage *peer);
void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After an error reply: counts towards the soft and hard error limits.
 * -1 when the session is being closed. */
int error_reply(struct session *s);
void count(struct session *s, enum counter c, int ok);
void session_close_after_reply(struct session *s);
void session_free(struct session *s);
/* Stop processing for seconds; replies made meanwhile go out after. */
void session_pause(struct session *s, long seconds);
/* Start the deadline of a new request (command, AUTH line, DATA). */
void session_begin_request(struct session *s);
void session_process(struct session *s);
void session_reset_for_tls(struct session *s);
/* Install the session's callbacks on s->bev (new or replaced) and enable it. */
void session_attach_bev(struct session *s);
/* "ESMTP", "ESMTPSA", "UTF8SMTPS", ... for logs, Received: and the queue. */
const char *session_protocol(const struct session *s);
void transaction_reset(struct session *s);
void log_reject(struct session *s, const char *cmd, const char *rcpt, const char *text);
const char *queue_id_or_noqueue(struct session *s);
/* Called by cleanup.c: the queue id is known, or the stream failed. */
void session_cleanup_ready(struct session *s);
/* Called by cleanup.c with cleanup's final answer for the message. */
void session_cleanup_done(struct session *s, int status, const char *reason);
/* Called by cleanup.c when the stream to cleanup has room again. */
void session_cleanup_drained(struct session *s);
/* Called by restrict.c when a pending RCPT check has its answer. */
void session_check_done(struct session *s, int code, const char *text);

/* data.c */
/* DATA: data_prepare (-1: refused, replied), data_go_ahead (the 354,
 * possibly before cleanup has the queue id), data_begin (the content
 * phase, once the id is known or cleanup failed). */
int data_prepare(struct session *s);
void data_go_ahead(struct session *s);
void data_begin(struct session *s);
void process_data(struct session *s);

/* params.c, over parse.c: -1 after replying with the error (the caller
 * counts it). mail_params gives the SIZE= declared (0 when none). */
int mail_params(struct session *s, const char *params, long long *size);
int rcpt_params(struct session *s, const char *params, struct rcpt_request *r);
/* Parse a MAIL/RCPT path (UTF-8 allowed when smtputf8_enable; whether it
 * was declared is the caller's check; a recipient may not be <>); -1 after
 * replying 501. */
int parse_path(struct session *s, const char *path, char *addr, size_t addrlen,
               const char **params, enum smtpd_path_role role);

/* starttls.c */
int starttls_init(void);               /* load the server context; 0 = usable */
int starttls_offered(const struct session *s);
int starttls_required(const struct session *s);   /* encrypt level, no TLS yet */
void cmd_starttls(struct session *s, const char *arg);
/* Wrap a new connection for wrapper mode; -1 on failure (fd closed). */
struct bufferevent *starttls_wrap_socket(int fd);
/* Handshake events of s->bev; 1 when what was handled here. */
int starttls_event(struct session *s, short what);

/* auth.c */
int auth_offered(const struct session *s);
void cmd_auth(struct session *s, const char *arg);
void auth_response(struct session *s, const char *line);
void auth_reset(struct session *s);

/* restrict.c */
void restrict_init(void);
/* Evaluate the restrictions for s->rcpt. Returns 1 with *code/text set
 * (code 0: accepted) or 0 when DNS is pending (session_check_done follows). */
int restrict_rcpt(struct session *s, int *code, char *text, size_t textlen);
/* Drop a pending check (its DNS lookup is cancelled). */
void restrict_cancel(struct session *s);
/* restrict_cancel plus the session's DNS answer cache. */
void restrict_session_end(struct session *s);

/* cleanup.c: one stream per transaction, owned by the session. */
struct cleanup_stream;
struct cleanup_stream *cleanup_open(struct session *s);
void cleanup_close(struct cleanup_stream *c);   /* aborts if not finished */
const char *cleanup_queue_id(const struct cleanup_stream *c);  /* NULL until known */
int cleanup_failed(const struct cleanup_stream *c);
int cleanup_record(struct cleanup_stream *c, int type, const char *data, size_t len);
int cleanup_attr(struct cleanup_stream *c, const char *name, const char *value);
/* Move len bytes of content from buf as REC_CONTENT records. */
int cleanup_content(struct cleanup_stream *c, struct evbuffer *buf, size_t len);
/* Send REC_END; the answer comes through session_cleanup_done. */
int cleanup_finish(struct cleanup_stream *c);
/* Bytes queued towards cleanup (for back-pressure). */
size_t cleanup_backlog(const struct cleanup_stream *c);

/* storage.c */
/* At MAIL FROM: when the queue file system is at or below queue_minfree,
 * or cannot hold 1.5 times the declared size (SIZE=, 0 when none), reply
 * 452 4.3.1 (logged as a reject), reset the transaction, count the error
 * and return -1. */
int storage_check_mail(struct session *s, long long size);
/* The reply code for cleanup's temporary failure with this reason: 452
 * for 4.3.1 (insufficient system storage, RFC 5321), 451 otherwise. */
int storage_reply_code(const char *reason);

#endif
