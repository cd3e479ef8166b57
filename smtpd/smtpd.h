/* smtpd.h - what the whole smtpd process shares: its settings, its event
 * loop, the per-client connection counts, the DNS resolver, and the note
 * that a session ended. Each other file has its own header with only what
 * the others need from it:
 *
 * smtpd.c        accepting, per-client connection counts, the event loop,
 *                settings, process lifetime
 * standalone.c   stand-alone mode (standalone.h; smtpd -S, run by
 *                sendmail -bs): one session on standard input and output
 * session.c      one SMTP session (session.h): I/O, deadlines, replies,
 *                reading commands and dispatching them; HELO/EHLO and the
 *                simple commands
 * transaction.c  one mail transaction (transaction.h): MAIL, RCPT, DATA,
 *                the stream of the message, Received:, the end-of-data reply
 * data.c         decoding DATA content (data.h): dot-unstuffing, line ends,
 *                bare CR/LF policy, NUL, size
 * submit.c       where a message goes (submit.h): the cleanup service, or
 *                postdrop in stand-alone mode
 * postdrop.c     running postdrop without blocking (postdrop.h)
 * parse.c        session-free parsing (parse.h): paths (UTF-8 too), ESMTP
 *                parameters of MAIL and RCPT
 * peer.c         the client's names (peer.h): PTR, confirmed by A/AAAA,
 *                before the greeting
 * restrict.c     smtpd_*_restrictions at RCPT (restrict.h), DNS async
 * policy.c       check_policy_service: the policy client (policy.h)
 * anvil.c        client rate limits shared across processes (anvil.h)
 * milters.c      smtpd_milters on the event loop (milters.h): connect to
 *                DATA, unknown commands; the connections go to cleanup
 * auth.c         the AUTH command (auth.h): offered mechanisms, replies,
 *                failures; Postern's own password table (smtpd_sasl_type
 *                cyrus, the default)
 * auth_dovecot.c Dovecot's auth server (auth_dovecot.h, smtpd_sasl_type
 *                dovecot): one connection for the process, answers later
 * starttls.c     STARTTLS and wrapper mode (starttls.h)
 * storage.c      room in the queue file system (storage.h)
 * proxy.c        the PROXY header before everything (proxy.h,
 *                smtpd_upstream_proxy_protocol)
 * xforward.c     the XFORWARD command and the client a transaction names
 *                (xforward.h)
 * filter.c       the transaction's content filter: content_filter and
 *                FILTER actions (filter.h)
 * delegate.c     HOLD, DISCARD, REDIRECT and BCC of the restrictions: their
 *                log lines, and the attributes that carry them to cleanup
 *                (delegate.h)
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include "data.h"

struct event_base;
struct lookup_list;
struct dns_resolver;

enum smtpd_tls_level { SMTPD_TLS_NONE, SMTPD_TLS_MAY, SMTPD_TLS_ENCRYPT };
/* smtpd_sasl_type: "cyrus" (Postfix's default name) is Postern's own table
 * of crypt(3) hashes, smtpd_sasl_password_maps; "dovecot" is Dovecot's auth
 * server at smtpd_sasl_path. */
enum smtpd_sasl_type { SMTPD_SASL_TABLE, SMTPD_SASL_DOVECOT };

/* Settings read once per process (main.cf can change only on reload, and
 * reload replaces the process). */
struct smtpd_config {
    int stand_alone;   /* smtpd -S: one local user's session (standalone.h) */
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
    long connection_rate_limit;         /* through anvil (anvil.h) */
    long message_rate_limit;
    long recipient_rate_limit;
    long newtls_rate_limit;
    long auth_rate_limit;
    enum smtpd_bare_newline bare_newline;
    int smtputf8;
    /* TLS */
    enum smtpd_tls_level tls_level;
    int wrappermode;
    /* AUTH */
    int sasl_enable;
    enum smtpd_sasl_type sasl_type;
    unsigned sasl_security;       /* SMTPD_SASL_SEC_* (auth.h) in plaintext */
    unsigned sasl_tls_security;   /* ... and under TLS */
    int sasl_auth_header;         /* smtpd_sasl_authenticated_header */
    int broken_sasl_clients;      /* broken_sasl_auth_clients: AUTH= too */
    const char *sasl_local_domain;
    int tls_auth_only;
    long sasl_failure_limit;
    struct lookup_list *sasl_password_maps;
    int sasl_password_maps_broken;      /* set but cannot be opened */
    struct lookup_list *sender_login_maps;
    int sender_login_maps_broken;
    const char *recipient_delimiter;
};
extern struct smtpd_config smtpd_cfg;
extern struct event_base *smtpd_base;

/* A session ended; clean: by QUIT, or at the end of its input between
 * transactions (stand-alone mode's exit status). */
void smtpd_session_closed(int clean);
/* Per-client connection counts: returns the count including this one. */
long smtpd_client_count_add(const char *addr);
void smtpd_client_count_remove(const char *addr);
/* The count now (0: none), for the {client_connections} milter macro. */
long smtpd_client_count(const char *addr);
/* The process-wide resolver, created on first use; NULL if it cannot be. */
struct dns_resolver *smtpd_resolver(void);

#endif
