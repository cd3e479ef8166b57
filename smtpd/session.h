/* session.h - one SMTP session: the client connection, its state, its
 * deadlines and replies (session.c). session.c reads commands and
 * dispatches them: MAIL, RCPT and DATA to transaction.h, AUTH to auth.h,
 * STARTTLS to starttls.h; the modules answer with smtpd_reply and, when
 * they made the session wait, resume it with smtpd_session_resume.
 */
#ifndef POSTERN_SMTPD_SESSION_H
#define POSTERN_SMTPD_SESSION_H

#include <netinet/in.h>
#include <sys/socket.h>

struct auth_request;
struct bufferevent;
struct evbuffer;
struct event;
struct sasl_exchange;
struct smtpd_tx;             /* transaction.h */
struct smtpd_delegated;      /* delegate.h */
struct smtpd_check;          /* restrict.h */
struct smtpd_dns_cache;      /* restrict.h */
struct smtpd_peer_lookup;    /* peer.h */
struct smtpd_anvil_req;      /* anvil.h */
struct smtpd_milters;        /* milters.h */
struct xforward;             /* xforward_proto.h */
struct smtpd_proxy_read;     /* proxy.h */

enum sess_state {
    ST_WAIT_PROXY,     /* before everything: reading the PROXY header (proxy.h) */
    ST_WAIT_NAME,      /* before the greeting: looking up the client's names */
    ST_COMMAND,
    ST_AUTH,           /* AUTH exchange: waiting for the client's next line */
    ST_WAIT_CHECK,     /* RCPT restrictions waiting for DNS */
    ST_WAIT_MILTER,    /* a stage waiting for the milters' answer */
    ST_WAIT_AUTH,      /* AUTH or EHLO waiting for the SASL server (auth.h) */
    ST_WAIT_QUEUE_ID,  /* DATA received, waiting for cleanup's queue id */
    ST_DATA,
    ST_WAIT_QUEUED,    /* end of data seen, waiting for the message to be queued */
    ST_TLS_HANDSHAKE,  /* STARTTLS accepted or wrapper mode: handshake running */
    ST_PAUSED,         /* error or failed-AUTH delay; replies are held */
    ST_CLOSING,        /* flushing the last reply */
};

/* Where a session stands after the final dot, for "timeout after ..."
 * (Postfix's name); a client that leaves there is not logged as lost. */
#define SMTPD_AFTER_EOM "END-OF-MESSAGE"

enum counter { C_HELO, C_EHLO, C_XFORWARD, C_STARTTLS, C_AUTH, C_MAIL, C_RCPT, C_DATA, C_RSET, C_NOOP,
               C_VRFY, C_HELP, C_QUIT, C_UNKNOWN, C_COUNT };

#define HELO_MAX 256
#define TLS_INFO_MAX 160

struct session {
    struct bufferevent *bev;                /* NULL until the greeting */
    int fd;                                 /* the client's, until bev has it */
    enum sess_state state;
    enum sess_state resume_state;           /* after ST_PAUSED */
    int close_after_pause;
    struct evbuffer *held;                  /* replies held during ST_PAUSED */
    struct event *timer;                    /* request deadline or pause */
    double req_start;                       /* when the current request began */
    long long req_bytes;                    /* DATA bytes of this request */
    char addr[INET6_ADDRSTRLEN];
    char port[8];                           /* the client's TCP port; "" when none */
    /* the client's names (peer.h), pointing into names */
    const char *name;                       /* client_name, or "unknown" */
    const char *reverse_name;               /* reverse_client_name, or "unknown" */
    const char *namaddr;                    /* "name[addr]" for logs */
    char *names;
    unsigned char name_status, reverse_name_status;   /* enum smtpd_peer_status */
    struct smtpd_peer_lookup *peer_lookup;  /* while they are looked up */
    int in_mynetworks;
    int count_exempt;                       /* in smtpd_client_event_limit_exceptions */
    int counted;                            /* in the per-client connection count */
    struct smtpd_anvil_req *anvil_req;      /* anvil.h: the request out */
    int anvil_counted;                      /* anvil has our connection */
    /* a command waiting for anvil (smtpd_session_ask_anvil) */
    void (*anvil_then)(struct session *s, int ok, long rate, const char *arg);
    char *anvil_arg;
    char helo[HELO_MAX];
    int esmtp;
    int errors;
    int junk;
    int skip_line;                          /* discarding an over-long command */
    int tls_refused;                        /* wrapper mode: over the new TLS session rate */
    int ill_pipelining;                     /* sent ahead where not allowed (reject_unauth_pipelining) */
    int output_blocked;                     /* not reading: the client does not read */
    const char *last_cmd;                   /* for "lost connection after X" */
    int input_ended;                        /* the client sent all it will */
    int clean;                              /* ended by QUIT or between transactions */
    int greeted;                            /* the banner (or its refusal) is decided */
    unsigned ok[C_COUNT], total[C_COUNT];
    /* TLS (starttls.c) */
    int tls;
    char tls_info[TLS_INFO_MAX];            /* tls_describe() once established */
    /* AUTH (auth.c, auth_dovecot.c) */
    char *sasl_user;
    char sasl_method[32];
    int auth_failures;
    struct sasl_exchange *sasl;             /* own table: the exchange */
    struct auth_request *auth_req;          /* Dovecot: the request or EHLO wait */
    int auth_final;                         /* Dovecot's final data sent: 235 next */
    /* restrictions (restrict.c) */
    struct smtpd_check *check;
    struct smtpd_dns_cache *dns_cache;
    /* the mail transaction (transaction.c): from MAIL to its end, else NULL */
    struct smtpd_tx *tx;
    /* smtpd_milters (milters.c), NULL when none */
    struct smtpd_milters *milters;
    /* XFORWARD (xforward.h): may the client send it; what it sent */
    int xforward_allowed;
    struct xforward *xforward;
    /* the transaction's FILTER action (filter.h), NULL when none */
    char *filter;
    /* its HOLD, DISCARD, REDIRECT and BCC actions (delegate.h), NULL when none */
    struct smtpd_delegated *delegated;
    /* the PROXY header being read (proxy.h), NULL otherwise; it failed */
    struct smtpd_proxy_read *proxy;
    int proxy_refused;
};

/* A new session on an accepted connection. name is the client's name
 * when it is known (stand-alone mode), else NULL: it is looked up
 * (peer.h) before the greeting. */
void smtpd_session_start(int fd, const struct sockaddr_storage *peer, const char *name);

void smtpd_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After an error reply: counts towards the soft and hard error limits.
 * -1 when the session is being closed. */
int smtpd_error_reply(struct session *s);
void smtpd_count(struct session *s, enum counter c, int ok);

/* Never frees synchronously: callers may still touch s after this. */
void smtpd_session_close_after_reply(struct session *s);
void smtpd_session_free(struct session *s);
/* Stop processing for seconds; replies made meanwhile go out after. */
void smtpd_session_pause(struct session *s, long seconds);
/* Start the deadline of a new request (command, AUTH line, DATA). */
void smtpd_session_begin_request(struct session *s);
/* Process whatever input the state allows (commands, DATA content). */
void smtpd_session_process(struct session *s);
/* A wait is over: back to commands, a new request, and on with the input
 * the client pipelined meanwhile. */
void smtpd_session_resume(struct session *s);
/* The EHLO reply after HELO checks (auth.h may make EHLO wait for the
 * SASL server's mechanisms first). */
void smtpd_session_ehlo_reply(struct session *s);
/* Forget HELO, AUTH and the transaction (STARTTLS). */
void smtpd_session_reset_for_tls(struct session *s);
/* The milters' connect event, then the banner. */
void smtpd_session_greet(struct session *s);
/* A command that anvil counts first (AUTH, STARTTLS, a new TLS session):
 * the session reads nothing until then(s, ok, rate, arg) runs from the
 * loop, arg a copy of the command's argument; ok 0 when anvil could not
 * be asked (no limit applies). -1 when it could not even ask: go on. */
int smtpd_session_ask_anvil(struct session *s, const char *request, const char *arg,
                            void (*then)(struct session *s, int ok, long rate, const char *arg));
/* Install the session's callbacks on s->bev (new or replaced) and enable it. */
void smtpd_session_attach_bev(struct session *s);

#endif
