/* milter.h - the MTA side of one milter session (Sendmail milter protocol
 * versions 2 to 6), as Postfix runs it, without I/O: smtpd drives it from
 * its event loop (smtpd/milter.c), cleanup with blocking reads
 * (cleanup/milter.c). The wire format is lib/util/milter_proto.h.
 *
 * A session is one connection to one milter for one SMTP session (or one
 * local submission). For each event the driver asks milter_event for the
 * bytes to send; when a reply is expected it feeds each reply packet to
 * milter_reply until that says the answer is complete, then reads
 * milter_result: NULL to go on, or Postfix's internal form of a decision:
 *   "4XX ..." / "5XX ..."   an SMTP reply (one or more CR LF separated lines)
 *   "D"                     discard the message
 *   "H" / "Hreason"         put the message on hold (quarantine)
 *   "S"                     421 and disconnect (SMFIR_SHUTDOWN)
 * A failure (connect, timeout, a bad or unexpected packet) is reported by
 * the driver with milter_comm_error: the session then answers every later
 * event with what milter_default_action says (accept: nothing; reject,
 * tempfail: Postfix's replies; quarantine: "H").
 *
 * Modifications arrive only in reply to the end of the message and go to
 * the caller's milter_edits callbacks, each of which may refuse with a
 * reply (a queue file error) that becomes the session's answer.
 */
#ifndef POSTERN_MILTER_H
#define POSTERN_MILTER_H

#include <stddef.h>
#include <stdint.h>

#include "milter_proto.h"

#define MILTER_SPEC_MAX 256
#define MILTER_REPLY_MAX 2048

/* One item of smtpd_milters / non_smtpd_milters: the endpoint and the
 * per-milter settings ("{ inet:host:port, default_action=accept }"),
 * which default to the global milter_* parameters. */
struct milter_settings {
    char spec[MILTER_SPEC_MAX];       /* inet:host:port, unix:/path */
    long connect_timeout, command_timeout, content_timeout;
    char default_action[16];
    char protocol[64];
};

/* Parse a list value; returns the number of milters (at most max), or -1
 * with err naming the bad item or setting. */
int milter_list_parse(const char *value, struct milter_settings *out, size_t max, char *err,
                      size_t errlen);

/* The events, in SMTP order. */
enum milter_event {
    MILTER_CONNECT, MILTER_HELO, MILTER_MAIL, MILTER_RCPT, MILTER_DATA, MILTER_UNKNOWN,
    MILTER_HEADER, MILTER_EOH, MILTER_BODY, MILTER_EOM, MILTER_ABORT, MILTER_QUIT,
};

/* Where the session stands. */
enum milter_state {
    MILTER_ST_CLOSED,       /* not connected yet */
    MILTER_ST_ERROR,        /* failed: default action from now on */
    MILTER_ST_READY,        /* negotiated, waiting for the connect event */
    MILTER_ST_ENVELOPE,     /* between and in transactions */
    MILTER_ST_MESSAGE,      /* sending the message content */
    MILTER_ST_ACCEPT_CON,   /* accepted the connection: no more events */
    MILTER_ST_ACCEPT_MSG,   /* accepted or discarded this message */
    MILTER_ST_REJECT_CON,   /* rejected the connection: its reply from now on */
};

/* Macro values: NULL when the macro has no value now (it is not sent).
 * name is as the list spells it: "i", "{daemon_name}". */
typedef const char *(*milter_macro_fn)(void *ctx, const char *name);

/* The arguments of an event. */
struct milter_args {
    /* CONNECT */
    const char *client_name, *client_addr;
    int family;                  /* SMFIA_* */
    unsigned port;
    /* HELO name, UNKNOWN command line */
    const char *text;
    /* MAIL, RCPT: "<address>" then ESMTP parameters, NULL-terminated */
    const char *const *argv;
    /* RCPT: smtpd rejected the recipient; only a milter that negotiated
     * SMFIP_RCPT_REJ hears it (the others skip it: no answer) */
    int rejected;
    /* HEADER */
    const char *name, *value;
    /* BODY */
    const void *chunk;
    size_t chunk_len;
};

/* Modifications at the end of the message. Each returns NULL, or a reply
 * ("451 4.3.0 ...") that becomes the answer. */
struct milter_edits {
    const char *(*add_header)(void *ctx, const char *name, const char *value);
    /* index: 0 = the top of the header block (before our own Received:) */
    const char *(*ins_header)(void *ctx, uint32_t index, const char *name, const char *value);
    /* the index-th header called name (1 = the first); value "" deletes */
    const char *(*chg_header)(void *ctx, uint32_t index, const char *name, const char *value);
    const char *(*add_rcpt)(void *ctx, const char *addr, const char *args);
    const char *(*del_rcpt)(void *ctx, const char *addr);
    const char *(*chg_from)(void *ctx, const char *addr, const char *args);
    /* first: this is the first chunk of a new body in this reply */
    const char *(*repl_body)(void *ctx, int first, const unsigned char *data, size_t len);
    const char *(*quarantine)(void *ctx, const char *reason);
};

struct milter {
    struct milter_settings set;
    int fd;                        /* the driver's; -1 when none */
    enum milter_state state;
    uint32_t version, actions, protocol;   /* what the milter negotiated */
    uint32_t np_mask;              /* events outside the protocol version */
    char *macros[SMFIM_COUNT + 1]; /* names per stage; [SMFIM_COUNT]: unknown */
    char *def_reply;               /* the answer once in error or rejected */
    char *result;                  /* the answer to the last event */
    int skip_body;                 /* SMFIR_SKIP: no more body chunks */
    int body_replaced;             /* a REPLBODY chunk came in this reply */
};

/* A session for these settings, not connected (state CLOSED). */
struct milter *milter_new(const struct milter_settings *set);
void milter_free(struct milter *m);

/* A non-blocking, close-on-exec stream socket for a milter connection;
 * over TCP with Nagle off: each packet we write is whole and the milter
 * answers it, so holding a small one back for the previous one's ACK
 * (delayed by the peer up to 40 ms) only adds that delay. -1 + errno. */
int milter_socket(int family);
/* Parse an endpoint: inet:host:port (host may be [v6]), unix:/path,
 * local:/path. Returns 0 with host and port, or path (port NULL), or -1
 * (logged). */
int milter_endpoint(const char *spec, char *host, size_t hostlen, char *port, size_t portlen,
                    int *is_unix);

/* The negotiation request into out; -1 when the settings are bad
 * (logged; the session is then in error). */
int milter_negotiate(struct milter *m, struct milter_buf *out);
/* The milter's answer to it: 0 (state READY) or -1 (logged, in error). */
int milter_negotiated(struct milter *m, int cmd, char *data, size_t len);

/* What to do for an event. */
enum milter_step {
    MILTER_SKIP,         /* nothing to send: milter_result is the answer */
    MILTER_SEND,         /* send out, then read replies */
    MILTER_SEND_ONLY,    /* send out, no reply comes (the answer is ready) */
};
enum milter_step milter_event(struct milter *m, enum milter_event ev, const struct milter_args *a,
                              milter_macro_fn macros, void *ctx, struct milter_buf *out);

/* One reply packet for event ev: 1 when the answer is complete, 0 when
 * more packets follow (progress, modifications). Protocol errors are
 * logged and handled (milter_comm_error) and complete the answer. */
int milter_reply(struct milter *m, enum milter_event ev, int cmd, char *data, size_t len,
                 const struct milter_edits *ed, void *ctx);

const char *milter_result(const struct milter *m);

/* The driver failed to talk to the milter (it logged why): close, and
 * the default action from now on. */
void milter_comm_error(struct milter *m);
/* Whether the driver should close the connection now (the milter
 * accepted or rejected the connection, or failed). */
int milter_wants_close(const struct milter *m);
/* Whether the message content (header .. end of message) goes to it. */
int milter_in_message(const struct milter *m);

/* The timeout of an event (connect, command or content), seconds. */
long milter_event_timeout(const struct milter *m, enum milter_event ev);
/* "SMFIC_MAIL" and so on, for log lines. */
int milter_event_command(enum milter_event ev);

/* A session handed from smtpd to cleanup with its connection: its
 * negotiated state as one text, and back. milter_import returns NULL
 * when text does not parse. */
int milter_export(const struct milter *m, char *out, size_t outlen);
struct milter *milter_import(const char *text);

/* The macros every driver gives the same way, from main.cf: j
 * (myhostname), {daemon_name} (milter_macro_daemon_name), v
 * (milter_macro_v); NULL for any other name. */
const char *milter_config_macro(const char *name);

/* Log-line form of a reply: control characters (the CR LF between lines)
 * shown as '?', as Postfix prints them. */
void milter_printable(const char *in, char *out, size_t outlen);

#endif
