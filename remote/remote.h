/* remote.h - the parts of the SMTP client (remote) that its files share.
 *
 * remote.c    the daemon: accepts qmgr's connections on private/smtp (or
 *             private/relay), reads deliver_protocol requests (parsed,
 *             checked, logged and answered by lib/mail/deliver_request.h),
 *             runs one job per request
 * route.c     nexthop -> the list of addresses to try: MX lookup, sort and
 *             shuffle, A/AAAA, null MX, loops back to myself (lib/dns)
 * session.c   one SMTP connection: connect, greeting, EHLO/HELO, STARTTLS,
 *             the reply reader with its timeouts, QUIT; the idle cache
 * transact.c  one mail transaction on a ready session: MAIL, RCPT, DATA
 *             (pipelined when offered), the message content (CR LF and
 *             dots by lib/mail/mail_copy.h), results
 * reply.c     the bounded SMTP reply parser and EHLO keywords
 * auth.c      SMTP AUTH as a client: smtp_sasl_* (credentials by sender,
 *             server host or nexthop; mechanism filter, security options)
 * tls_policy.c  the TLS policy of a destination: smtp_tls_policy_maps, or
 *             smtp_tls_security_level and the smtp_tls_* defaults
 * dane.c      DANE (RFC 7672): TLSA records of a server from a validating
 *             resolver (smtp_dns_support_level = dnssec)
 * xforward.c  the original client XFORWARD passes to a content filter's
 *             reinjection server (smtp_send_xforward_command; transact.c
 *             sends it before MAIL when the server offers it)
 *
 * Everything runs in one libevent loop; nothing blocks but reads of the
 * local queue file.
 */
#ifndef POSTERN_REMOTE_H
#define POSTERN_REMOTE_H

#include <stddef.h>
#include <sys/time.h>

#include "deliver_request.h"
#include "delivery.h"
#include "dns.h"
#include "sasl_client.h"
#include "xforward_proto.h"

struct event_base;
struct evbuffer;
struct session;
struct job;

#define REPLY_LINE_MAX 2048     /* one reply line, CRLF excluded */
#define REPLY_TEXT_MAX 4096     /* a whole reply, lines included */
#define REPLY_LINES_MAX 100     /* lines of one reply */
#define HOST_RELAY_SIZE (DNS_NAME_SIZE + 64)  /* "host[addr]:port" */

enum tls_level { TLS_LEVEL_NONE, TLS_LEVEL_MAY, TLS_LEVEL_ENCRYPT, TLS_LEVEL_DANE,
                 TLS_LEVEL_DANE_ONLY, TLS_LEVEL_VERIFY, TLS_LEVEL_SECURE,
                 TLS_LEVEL_FINGERPRINT };

/* The usable TLSA records of one server (dane.c), DNSSEC-validated. */
struct tlsa_record {
    unsigned usage, selector, mtype;
    size_t len;
    unsigned char *data;
};
struct tlsa_set {
    char base[DNS_NAME_SIZE];    /* the name the records are for (TLSA owner's host) */
    size_t n;
    struct tlsa_record *rec;
};

#define TLS_POLICY_ATTR_MAX 256
#define TLS_POLICY_MATCH_MAX 1024   /* room for ten SHA-256 fingerprints */
/* How one destination is to be secured. */
struct tls_policy {
    enum tls_level level;
    char match[TLS_POLICY_MATCH_MAX];     /* match= (each one, '|' between for
                                           * fingerprint, else ':'), "" for main.cf's */
    char protocols[TLS_POLICY_ATTR_MAX];  /* protocols=, "" for main.cf's */
    char ciphers[64];                     /* ciphers=, "" for main.cf's */
    char exclude[TLS_POLICY_ATTR_MAX];    /* exclude=, added to main.cf's */
    char servername[DNS_NAME_SIZE];       /* servername=, "" for main.cf's */
    char tafile[TLS_POLICY_ATTR_MAX];     /* tafile= (each one), "" for main.cf's */
    const struct tlsa_set *tlsa;          /* dane, dane-only: usable records */
};

/* Parameters, read once at start (remote.c): smtp_* ones, or lmtp_* ones
 * when remote runs as "lmtp" (Postfix's lmtp is its smtp client under
 * another name, and so is ours). */
struct remote_config {
    int lmtp;                    /* LMTP (RFC 2033): LHLO, one reply per recipient */
    const char *myhostname;
    const char *helo_name;       /* smtp_helo_name or lmtp_lhlo_name */
    long connect_timeout, helo_timeout, mail_timeout, rcpt_timeout;
    long data_init_timeout, data_xfer_timeout, data_done_timeout;
    long rset_timeout, quit_timeout, starttls_timeout;
    int send_xforward;           /* smtp_send_xforward_command */
    long xforward_timeout;
    const char *tls_cafile, *tls_capath, *tls_cert_file, *tls_key_file;
    const char *tls_exclude, *tls_mandatory_exclude, *tls_servername;
    const char *tls_trust_anchor_file;   /* verify, secure: DANE-TA(2) anchors */
    const char *tls_fingerprint_digest, *tls_fingerprint_match;
    long tls_loglevel;
    const char *tls_protocols, *tls_ciphers;
    const char *tls_mandatory_protocols, *tls_mandatory_ciphers;
    int families;                /* DNS_INET4 | DNS_INET6 from inet_protocols */
    unsigned default_port;       /* smtp_tcp_port */
    long mx_address_limit, mx_session_limit;
    long cache_time_limit;       /* idle seconds in the cache */
    long reuse_time_limit;       /* seconds a connection may be reused */
    long reuse_count_limit;      /* transactions per connection, 0 = no limit */
    char **fallback;             /* smtp_fallback_relay destinations */
    size_t nfallback;
    struct dns_addr bind4, bind6;  /* smtp_bind_address(6); family 0 when unset */
};
extern struct remote_config remote_cfg;
extern struct event_base *remote_base;
extern struct dns_resolver *remote_dns;

/* --- reply.c ----------------------------------------------------------- */

struct smtp_reply {
    int code;                    /* 250 */
    char dsn[16];                /* enhanced code from the text, or "2.0.0" */
    char text[REPLY_TEXT_MAX];   /* the raw lines, '\n' between them */
    size_t len;
    int nlines;
};
struct smtp_features {
    int esmtp, pipelining, eightbitmime, starttls, dsn, smtputf8;
    int auth;                    /* AUTH offered */
    unsigned auth_mechs;         /* SASL_CLIENT_* bits of the mechanisms we know */
    long long size_limit;        /* -1 no SIZE; 0 no limit given */
    unsigned xforward;           /* XFORWARD attributes offered (xforward_proto.h) */
};
#define REPLY_BAD (-1)
#define REPLY_MORE 0
#define REPLY_DONE 1
void reply_reset(struct smtp_reply *r);
/* Add one line (CRLF removed). REPLY_DONE when it was the last line of the
 * reply, REPLY_MORE when more lines follow, REPLY_BAD when malformed or
 * over a limit (the reply must then be abandoned). */
int reply_add_line(struct smtp_reply *r, const char *line, size_t len);
void reply_parse_ehlo(const struct smtp_reply *r, struct smtp_features *f);
/* snprintf for texts where cutting a long value short is the intent (log
 * and status texts, "host[addr]" names). */
void text_printf(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- route.c ----------------------------------------------------------- */

#define SOCKET_PATH_MAX 108      /* a UNIX socket path and its NUL (sun_path) */

/* One address to try. */
struct target {
    char host[DNS_NAME_SIZE];    /* MX host name, or the literal; myhostname for a path */
    struct dns_addr addr;
    unsigned port;
    char path[SOCKET_PATH_MAX];  /* LMTP over a UNIX socket: as configured, else "" */
    int dnssec;                  /* MX (if any) and address validated by DNSSEC */
};

/* The parsed nexthop of a request. */
struct nexthop {
    char name[DNS_NAME_SIZE];    /* domain, host, address literal, or socket path */
    unsigned port;
    int mx;                      /* MX lookup first (no brackets) */
    int literal;                 /* name is an IP address */
    char path[SOCKET_PATH_MAX];  /* "unix:PATH" (LMTP): relative to the queue */
    char key[DNS_NAME_SIZE + 16];/* for the connection cache */
};
/* "domain", "host:port", "[host]", "[host]:port" (ipc.h). -1 if malformed. */
int nexthop_parse(const char *text, unsigned default_port, struct nexthop *nh);
/* LMTP's: "unix:PATH", "inet:host[:port]", "inet:[host][:port]", or the
 * forms above without "inet:"; never an MX lookup. -1 if malformed. */
int lmtp_nexthop_parse(const char *text, unsigned default_port, struct nexthop *nh);
/* Parse a port: digits, or "smtp". 0 when invalid. */
unsigned port_parse(const char *text);

/* Outcome of routing: targets, or a status for every recipient. */
struct route_result {
    struct target *targets;      /* owned by the route; valid in the callback */
    size_t ntargets;
    const char *dsn;             /* when ntargets == 0 */
    const char *text;
};
typedef void (*route_fn)(void *ctx, const struct route_result *res);
struct route;
/* Resolve nh; fn runs once, later, from the event loop. The caller owns the
 * handle until fn has run (route_cancel before that frees it silently). */
struct route *route_start(const struct nexthop *nh, route_fn fn, void *ctx);
void route_cancel(struct route *rt);
/* Learn this host's addresses (inet_interfaces) for loop detection. */
void route_init_self(void);

/* --- tls_policy.c ----------------------------------------------------------- */

void tls_policy_init(void);
const char *tls_level_name(enum tls_level level);
/* The policy of nh (nexthop_text as qmgr wrote it). 0, or -1 with text
 * set when the table cannot be read or its answer is wrong (defer). */
int tls_policy_find(const struct nexthop *nh, const char *nexthop_text, struct tls_policy *p,
                    char *text, size_t textlen);
/* "level name=value ..." into p; -1 with err for what does not parse. */
int tls_policy_parse(const char *value, struct tls_policy *p, char *err, size_t errlen);
/* TLS or nothing (encrypt and up, fingerprint; dane with usable TLSA
 * records). */
int tls_policy_mandatory(const struct tls_policy *p);
/* The certificate must be verified (fingerprint, verify, secure, dane
 * with records). */
int tls_policy_verifies(const struct tls_policy *p);
/* The names a certificate must match at verify and secure: match= or
 * smtp_tls_verify_cert_match / smtp_tls_secure_cert_match, with hostname,
 * nexthop and dot-nexthop resolved. Returns how many, at most max, as
 * pointers into buf. */
size_t tls_policy_names(const struct tls_policy *p, const char *host, const char *nexthop,
                        char *buf, size_t buflen, const char **names, size_t max);
/* One fingerprint of match= ("AB:CD:..." or "abcd...", colons anywhere)
 * into at most max bytes; 0 when it is no whole hex, or too long. */
size_t tls_policy_fingerprint(const char *word, size_t len, unsigned char *out, size_t max);
/* A new SSL object for a connection to host (relay "host[addr]:port")
 * under p: protocols, ciphers, names or TLSA records, SNI, a cached
 * session. NULL with err set. */
typedef struct ssl_st SSL;
SSL *tls_policy_ssl(const struct tls_policy *p, const char *host, const char *relay,
                    const char *nexthop_name, char *err, size_t errlen);
/* After the handshake: log it as Postfix does; 1 when the connection
 * meets p, else 0 with the status text. */
int tls_policy_established(SSL *ssl, const struct tls_policy *p, const char *relay, char *text,
                           size_t textlen);

/* --- dane.c ---------------------------------------------------------------- */

enum dane_result {
    DANE_RECORDS,     /* validated, usable records: TLS mandatory and verified */
    DANE_UNUSABLE,    /* validated, but no usable record (or none at all) */
    DANE_INSECURE,    /* not validated: DANE does not apply */
    DANE_ERROR,       /* the lookup failed (SERVFAIL, bogus, timeout) */
};
struct dane_lookup;
/* set is the caller's (tlsa_set_free) when result is DANE_RECORDS. */
typedef void (*dane_fn)(void *ctx, enum dane_result result, struct tlsa_set *set);
/* smtp_dns_support_level and tls_dane_digests; after remote_dns exists. */
void dane_init(void);
int dane_dnssec(void);                 /* smtp_dns_support_level = dnssec */
/* The TLSA records of t (_PORT._tcp.HOST); fn runs once, later. */
struct dane_lookup *dane_start(const struct target *t, dane_fn fn, void *ctx);
void dane_cancel(struct dane_lookup *d);
void tlsa_set_free(struct tlsa_set *set);
/* Whether a record of these fields can be used (RFC 7672 3.1). */
int dane_record_usable(unsigned usage, unsigned selector, unsigned mtype, size_t len);

/* --- auth.c: SMTP AUTH as a client ---------------------------------------- */

/* A user name and password from smtp_sasl_password_maps. */
struct sasl_creds {
    int found;
    char user[SASL_CLIENT_USER_MAX];
    char pass[SASL_CLIENT_PASS_MAX];
};
struct session_failure;
struct auth_state;
/* Read the smtp_sasl_* settings and open the tables (fatal when wrong). */
void auth_init(void);
int auth_enabled(void);
/* The sender's own credentials when smtp_sender_dependent_authentication
 * is on (full address, then @domain): 1 found, 0 none, -1 table failure. */
int auth_lookup_sender(const char *sender, struct sasl_creds *c);
/* After EHLO (and STARTTLS): authenticate when the server offers AUTH and
 * credentials exist (the sender's c, else those of the server's host name,
 * else of the nexthop as qmgr wrote it). done runs once, with f NULL when
 * the session may go on (authenticated, or nothing to do). */
typedef void (*auth_done_fn)(struct session *s, const struct session_failure *f);
void auth_run(struct session *s, const struct sasl_creds *c, const char *host,
              const char *nexthop, auth_done_fn done);
void auth_state_free(struct auth_state *a);
void auth_creds_clear(struct sasl_creds *c);

/* --- session.c ----------------------------------------------------------- */

/* Why a session could not be opened or broke. */
struct session_failure {
    char dsn[16];
    char text[DELIVERY_TEXT_MAX];
    int greeted;                 /* the server spoke: counts against mx_session_limit */
    int retry_plain;             /* TLS handshake failed under "may": try without */
};

/* Ready: s is set and f is NULL; failed: s is NULL (already freed). */
typedef void (*session_open_fn)(void *owner, struct session *s, const struct session_failure *f);
typedef void (*session_reply_fn)(void *owner, const struct smtp_reply *r);
/* The session broke (I/O error, timeout, malformed reply): it is unusable
 * and the owner must session_release(s, 0) it. */
typedef void (*session_error_fn)(void *owner, const struct session_failure *f);
typedef void (*session_drain_fn)(void *owner);

/* What one delivery asks of the sessions it opens; copied by session_open. */
struct session_opts {
    const char *nexthop;             /* as qmgr wrote it (a SASL lookup key) */
    const char *nexthop_name;        /* its domain or host: certificate names */
    const struct tls_policy *tls;    /* the destination's TLS policy */
    const struct sasl_creds *creds;  /* the sender's credentials, or NULL */
    int no_tls;                      /* skip STARTTLS */
};
/* Connect to t and get the server ready for MAIL (greeting, EHLO or HELO,
 * STARTTLS per policy, AUTH). */
void session_open(const struct target *t, const struct session_opts *o, session_open_fn done,
                  void *owner);
/* An idle session for the cache key, or NULL. */
struct session *session_cache_take(const char *key);
/* Done with s: reusable ones go to the cache under key (within the reuse
 * limits), the rest get QUIT and are closed. */
void session_release(struct session *s, const char *key, int reusable);
void session_cache_flush(void);
size_t session_count(void);

void session_bind(struct session *s, void *owner, session_error_fn on_error);
/* Queue a command line (CRLF added). */
void session_send(struct session *s, const char *line);
/* Expect the next reply; timeout in seconds. command names it for "in reply
 * to COMMAND command"; doing for "while DOING" in failures. */
void session_expect(struct session *s, session_reply_fn fn, long timeout, const char *command,
                    const char *doing);
struct evbuffer *session_output(struct session *s);
/* Call fn when the output buffer runs low (message content flow control);
 * the timer then allows timeout seconds per step. NULL fn stops it. */
void session_on_drain(struct session *s, session_drain_fn fn, long timeout);
/* Close at once, without QUIT (the transaction cannot be finished). */
void session_abort(struct session *s);

const struct smtp_features *session_features(const struct session *s);
const char *session_relay(const struct session *s);    /* "host[addr]:port" */
const char *session_peer(const struct session *s);     /* "host[addr]" */
int session_reused(const struct session *s);           /* taken from the cache */
int session_tls_active(const struct session *s);
/* The AUTH exchange's state while it runs (auth.c), freed with s. */
struct auth_state **session_auth_state(struct session *s);
/* "host H[A] said: REPLY (in reply to CMD command)" into out. */
void session_said(const struct session *s, const struct smtp_reply *r, const char *command,
                  char *out, size_t outlen);

/* --- transact.c -------------------------------------------------------- */

/* One recipient of a job: the request's (address, DSN, status), and
 * what the SMTP client adds. */
struct rcpt {
    struct deliver_rcpt *req;    /* in the job's deliver_request */
    char relay[HOST_RELAY_SIZE]; /* the server its status came from, "" none */
    int accepted;                /* RCPT got 2xx in this transaction */
};

/* What a transaction needs to know about the message. */
struct message {
    const char *queue_id;
    const char *sender;          /* internal form */
    const char *dsn_envid, *dsn_ret;
    int fd;                      /* the queue file */
    long long content_size;
    long long content_offset;
    int eightbit;                /* -1 unknown, 0 no 8-bit bytes, 1 some */
    int smtputf8;                /* the client asked for SMTPUTF8 */
    int header_eightbit;         /* -1 unknown, 0 ASCII headers, 1 UTF-8 in them */
    struct xforward xforward;    /* the original client, for XFORWARD */
};

/* The transaction is over and the session handed back (to the cache
 * under key, or closed). broke_early: s was a cached connection that died
 * before the server answered anything, so nothing was decided and a fresh
 * connection should be tried; otherwise every recipient that took part has
 * its status. */
typedef void (*transact_fn)(void *ctx, int broke_early);
/* Run one transaction on s for the recipients still undecided. The
 * transaction owns s from here on; m, rcpts and key must stay valid until
 * done has run. */
void transact_start(struct session *s, const char *key, struct message *m, struct rcpt *rcpts,
                    size_t n, transact_fn done, void *ctx);

/* --- xforward.c: the client attributes XFORWARD passes on ------------- */

struct queue_envelope;
/* The queue file's client (name, address, HELO, protocol, origin) and the
 * message's queue id, as XFORWARD sends them. */
void xforward_from_envelope(struct xforward *xf, const struct queue_envelope *env,
                            const char *queue_id);

/* --- generic.c: smtp_generic_maps -------------------------------------- */

int generic_enabled(void);
/* addr rewritten into out (addr itself when the table has nothing);
 * -1 (logged) when the table cannot be read. */
int generic_address(const char *addr, char *out, size_t outlen);
/* The message content as it goes out, sender and recipient headers
 * rewritten: content in, content out through fn. */
typedef void (*generic_out_fn)(void *ctx, const char *p, size_t len);
struct generic_headers;
struct generic_headers *generic_headers_new(void);
void generic_headers_feed(struct generic_headers *g, const char *p, size_t len,
                          generic_out_fn out, void *ctx);
void generic_headers_finish(struct generic_headers *g, generic_out_fn out, void *ctx);
void generic_headers_free(struct generic_headers *g);

/* Set a recipient's result once (a D.S.N of a class that does not fit
 * becomes 4.5.0). */
void rcpt_set(struct rcpt *r, const char *dsn, const char *relay, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
