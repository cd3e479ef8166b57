/* auth_client.h - a client of Dovecot's authentication protocol (version
 * 1.x: VERSION, MECH, SPID, CUID, COOKIE, DONE; AUTH, CONT, OK, FAIL),
 * non-blocking on a libevent loop, for smtpd's AUTH with
 * smtpd_sasl_type = dovecot.
 *
 * One connection serves every request of the process: requests are
 * multiplexed by their id, so thousands of sessions share it. The
 * connection is made on first use and again after it broke; each request
 * (and the handshake) has its own deadline, after which it fails as a
 * temporary error while the connection stays for the others. The
 * mechanism list of the last handshake is kept across reconnections, so an
 * EHLO can still offer AUTH while the server is away.
 *
 * Callbacks never run from inside the call that started a request: they
 * come from the event loop. Everything the server sends is parsed by
 * auth_line_parse, which is bounded and fuzzed (tests/fuzz/fuzz_auth_reply.c).
 */
#ifndef POSTERN_AUTH_CLIENT_H
#define POSTERN_AUTH_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct auth_client;
struct auth_request;

#define AUTH_LINE_MAX 16384      /* one line from the server, LF excluded */
#define AUTH_MECH_NAME_MAX 32    /* a mechanism name and its NUL */
#define AUTH_MECHS_MAX 32        /* mechanisms kept from a handshake */
#define AUTH_USER_MAX 256        /* a user name and its NUL */
#define AUTH_REASON_MAX 256      /* a failure reason and its NUL */
#define AUTH_ENDPOINT_MAX 256    /* the endpoint as configured, for logs */

/* Mechanism properties from MECH lines. */
#define AUTH_MECH_ANONYMOUS 0x01
#define AUTH_MECH_PLAINTEXT 0x02
#define AUTH_MECH_DICTIONARY 0x04
#define AUTH_MECH_ACTIVE 0x08
#define AUTH_MECH_FORWARD_SECRECY 0x10
#define AUTH_MECH_MUTUAL_AUTH 0x20
#define AUTH_MECH_PRIVATE 0x40

struct auth_mech {
    char name[AUTH_MECH_NAME_MAX];
    unsigned flags;
};

/* --- the server's lines ------------------------------------------------ */

enum auth_line_kind {
    AUTH_LINE_BAD,       /* malformed: the connection cannot go on */
    AUTH_LINE_OTHER,     /* a command this client does not use: ignored */
    AUTH_LINE_VERSION, AUTH_LINE_MECH, AUTH_LINE_SPID, AUTH_LINE_CUID,
    AUTH_LINE_COOKIE, AUTH_LINE_DONE,
    AUTH_LINE_OK, AUTH_LINE_CONT, AUTH_LINE_FAIL,
};

/* One line, parsed. Strings point into the line (changed in place) or
 * into this structure; they are valid while both are. */
struct auth_line {
    enum auth_line_kind kind;
    unsigned long major, minor;      /* VERSION */
    struct auth_mech mech;           /* MECH */
    unsigned long id;                /* OK, CONT, FAIL */
    const char *data;                /* CONT: base64 challenge; OK: resp=, or NULL */
    char user[AUTH_USER_MAX];        /* OK, FAIL: user=, unescaped; "" when absent */
    char reason[AUTH_REASON_MAX];    /* FAIL: reason=, unescaped and printable */
    int temp;                        /* FAIL: the "temp" flag */
    const char *why;                 /* AUTH_LINE_BAD: what is wrong */
};

/* Parse one line (its LF removed, at most AUTH_LINE_MAX bytes; NUL bytes
 * make it bad). A user name that is not printable, or a base64 field that
 * is not base64, makes the line bad; a reason is made printable. */
void auth_line_parse(char *line, size_t len, struct auth_line *out);

/* --- where the server is ----------------------------------------------- */

struct auth_endpoint {
    char name[AUTH_ENDPOINT_MAX];    /* as configured: "private/auth", "inet:h:p" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* "inet:host:port" ("inet:[v6]:port"), or a UNIX socket path as given
 * (the caller makes a relative one absolute first; name keeps the text
 * shown in logs). A host name is resolved here, once. -1 with err set. */
int auth_endpoint_parse(const char *spec, const char *path, struct auth_endpoint *ep, char *err,
                        size_t errlen);

/* --- the client -------------------------------------------------------- */

/* service: "smtp", sent with every request. timeout: seconds for the
 * handshake and for each answer. */
struct auth_client *auth_client_new(struct event_base *base, const struct auth_endpoint *ep,
                                    const char *service, long timeout);
/* Every request fails (callbacks do not run) and the connection closes. */
void auth_client_free(struct auth_client *c);

/* The mechanisms of the last complete handshake: how many (0 before any),
 * in *mechs. Valid until the next handshake completes. */
size_t auth_client_mechs(const struct auth_client *c, const struct auth_mech **mechs);
/* Whether a handshake ever completed. */
int auth_client_known(const struct auth_client *c);

enum auth_result {
    AUTH_RESULT_OK,          /* authenticated: user is set */
    AUTH_RESULT_CONTINUE,    /* data: the base64 challenge to pass on */
    AUTH_RESULT_FAIL,        /* refused: reason (may be ""), user if known */
    AUTH_RESULT_TEMPFAIL,    /* server away, slow, broken, or said "temp" */
    AUTH_RESULT_READY,       /* auth_client_when_ready: handshake done */
};

struct auth_answer {
    enum auth_result result;
    const char *data;        /* CONTINUE: challenge; OK: final data or NULL */
    const char *user;        /* "" when unknown */
    const char *reason;      /* FAIL, TEMPFAIL: text for the reply and log */
};

/* After OK, FAIL, TEMPFAIL and READY the request is finished and freed
 * once fn returns; after CONTINUE it waits for auth_request_continue. */
typedef void (*auth_answer_fn)(void *ctx, const struct auth_answer *a);

struct auth_request_args {
    const char *mech;        /* name as the client gave it */
    const char *initial;     /* base64 initial response, "" for an empty one, NULL none */
    const char *local_ip, *remote_ip;
    int secured;             /* the client connection is TLS */
};

/* Start an authentication. The handle is valid until its callback says it
 * finished, or until auth_request_abort. Never NULL (out of memory is
 * fatal, as everywhere in the event-driven daemons). */
struct auth_request *auth_request_start(struct auth_client *c, const struct auth_request_args *a,
                                        auth_answer_fn fn, void *ctx);
/* The client's next base64 response after CONTINUE ("" for an empty one). */
void auth_request_continue(struct auth_request *r, const char *response);
/* Forget the request: its callback will not run. */
void auth_request_abort(struct auth_request *r);
/* fn gets READY once a handshake completes (at once, from the loop, when
 * one already did on a live connection), TEMPFAIL when the server cannot
 * be reached in time. Connects when not connected. */
struct auth_request *auth_client_when_ready(struct auth_client *c, auth_answer_fn fn, void *ctx);

#endif
