/* delivery.h - what every delivery agent (local, virtual, remote) shares
 * about one recipient's outcome: its status (a D.S.N code and a text), the
 * Postfix-format delivery log line, the safe DSN text of a reply, and the
 * small pieces of the deliver_protocol (ipc.h) that both sides format or
 * parse: "sec.usec" times and "OFFSET D.S.N text" statuses. The request
 * and reply themselves are deliver_request.h.
 *
 * The log line is exactly Postfix's, so pflogsumm and log scanners work:
 *   QUEUEID: to=<RCPT>, [orig_to=<ORIG>, ]relay=RELAY, delay=T,
 *       delays=a/b/c/d, dsn=D.S.N, status=sent|deferred|bounced (TEXT)
 * (one line). status follows the first digit of the dsn: 2 sent,
 * 5 bounced, anything else deferred.
 *
 * Delays are seconds, printed as Postfix does:
 *   below 0.005 s (rounds to 0.00)   "0"
 *   below 1 s     two decimals, trailing zeros trimmed   "0.12", "0.1", "0.05"
 *   below 10 s    one decimal, trailing zero trimmed     "1.5", "2"
 *   otherwise     whole seconds, rounded                 "12", "345"
 * (A value that rounds up to the next range prints in that range's style,
 * e.g. 0.996 -> "1", 9.97 -> "10".) Negative intervals (clock steps) are 0.
 *   delay = done - arrival
 *   a = active - arrival        (before the queue manager took it in)
 *   b = agent_start - active    (queue manager until the agent got it)
 *   c = conn_done - agent_start (connection set-up; 0 for local)
 *   d = done - conn_done        (transmission / mailbox write)
 */
#ifndef POSTERN_DELIVERY_H
#define POSTERN_DELIVERY_H

#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>

#define DELIVERY_TEXT_MAX 512    /* buffer for one reply text, NUL included */
#define DELIVERY_STATUS_MAX 600  /* buffer for "OFFSET D.S.N text" */

/* The outcome of one recipient: dsn "" while undecided. */
struct delivery_status {
    char dsn[12];                /* "2.0.0" */
    char text[DELIVERY_TEXT_MAX];/* "delivered to maildir", cleaned */
};

/* Set st; the text is cleaned (delivery_text_clean) as it is stored. */
void delivery_status_set(struct delivery_status *st, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "TEXT: strerror(err)" with 4.3.0 when err is a full disk or quota (the
 * mail waits for room, as Postfix's "insufficient system storage"), 4.2.0
 * for any other error. */
void delivery_status_errno(struct delivery_status *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct delivery_times {
    struct timeval arrival;      /* message arrival (queue file T record) */
    struct timeval active;       /* queue manager moved it to active/ */
    struct timeval agent_start;  /* delivery agent received the request */
    struct timeval conn_done;    /* connection up; = agent_start for local */
    struct timeval done;         /* delivery attempt finished */
};

struct delivery_result {
    const char *queue_id;
    const char *recipient;       /* internal form */
    const char *orig_recipient;  /* NULL, or logged when it differs (ignoring case) */
    const char *relay;           /* "local", "host[addr]:port", "none" */
    const char *dsn;             /* "2.0.0" */
    const char *text;            /* "delivered to maildir" */
    struct delivery_times times;
};

/* Log one delivery result with msg_info in the format above. Addresses are
 * logged in external (quoted) form, as Postfix's default
 * info_log_address_format=external does; control characters in addresses
 * and text are shown as '?' or a space. */
void delivery_log(const struct delivery_result *r);

/* The delay format above, into out (at least 24 bytes is always enough). */
void delivery_format_delay(char *out, size_t outlen, const struct timeval *from,
                           const struct timeval *to);

/* "sent", "deferred" or "bounced" for a dsn. */
const char *delivery_status_word(const char *dsn);

/* 1 when dsn is "D.S.N" with D in 2, 4, 5 and S, N of 1-3 digits. */
int delivery_dsn_valid(const char *dsn);

/* Copy a reply text into out (truncated to fit, always NUL-terminated),
 * replacing control characters and 8-bit bytes with ' ' and collapsing the
 * run of white space they leave, so that a remote server's reply can go
 * into a log line or a protocol attribute unchanged. */
void delivery_text_clean(char *out, size_t outlen, const char *in);

/* "OFFSET D.S.N text" for a rcpt_status attribute; the text is cleaned.
 * Returns 0, or -1 when dsn is not valid (out then holds a 4.3.0 status). */
int delivery_status_format(char *out, size_t outlen, long long offset,
                           const char *dsn, const char *text);

/* "sec.usec" -> tv. The fraction is decimal ("5.5" is half a second, and
 * "%ld.%06ld" output reads back exactly). Returns 0, or -1 when malformed. */
int delivery_parse_time(const char *text, struct timeval *tv);
/* tv -> "sec.usec" (seconds, a dot, six digits) into out, at least 32 bytes. */
void delivery_format_time(char *out, size_t outlen, const struct timeval *tv);

#endif
