/* parse.h - smtpd's parsing of what a client sends in a command line,
 * without a session (lib/util/smtp_command.h splits off the verb and
 * finds the path): MAIL FROM/RCPT TO paths (ASCII, or UTF-8 under
 * SMTPUTF8, RFC 6531), the ESMTP parameters of MAIL (SIZE, BODY, SMTPUTF8,
 * RET, ENVID, AUTH) and of RCPT (NOTIFY, ORCPT).
 *
 * Settings come in as arguments and results go out in plain structs, so
 * the transaction code (transaction.c) and the fuzz target
 * (tests/fuzz/fuzz_smtpd_command.c) call the same functions. A refusal
 * returns -1 and writes the complete SMTP reply ("501 5.5.4 ...") into the
 * caller's why buffer, which should hold SMTPD_REPLY_MAX bytes; the reply
 * never contains CR or LF.
 */
#ifndef POSTERN_SMTPD_PARSE_H
#define POSTERN_SMTPD_PARSE_H

#include <stddef.h>

#define SMTPD_REPLY_MAX 160   /* a refusal's reply text, NUL included */
#define SMTPD_ENVID_MAX 100   /* decoded ENVID bytes (RFC 3461 section 4.4) */
#define SMTPD_ORCPT_MAX 500   /* decoded ORCPT address bytes (section 4.2) */
#define SMTPD_ADDR_TYPE_MAX 31 /* ORCPT address type, before the ';' */

/* 1 when s has a byte >= 0x80 (an address that needs SMTPUTF8). */
int smtpd_has_8bit(const char *s);

enum smtpd_path_role { SMTPD_PATH_SENDER, SMTPD_PATH_RECIPIENT };

/* Parse the path of MAIL FROM: or RCPT TO: (arg as returned by
 * smtp_path_argument, lib/util/smtp_command.h) into addr, its internal
 * form (lib/util/address.h).
 * With smtputf8 (smtputf8_enable) the path may hold well-formed UTF-8,
 * kept as is; whether the client declared SMTPUTF8 is the caller's check.
 * A recipient may not be the null path. On success returns 0 and points
 * *params at the ESMTP parameters in arg ("" when none). */
int smtpd_parse_path(const char *arg, enum smtpd_path_role role, int smtputf8, char *addr,
                     size_t addrlen, const char **params, char *why, size_t whylen);

enum smtpd_body { SMTPD_BODY_NONE, SMTPD_BODY_7BIT, SMTPD_BODY_8BITMIME };

/* The parameters of one MAIL command. */
struct smtpd_mail_params {
    long long size;        /* SIZE=, -1 when not given */
    enum smtpd_body body;  /* BODY= */
    int smtputf8;          /* SMTPUTF8 given (only accepted when enabled) */
    const char *ret;       /* RET=: "FULL", "HDRS" (static), NULL when not given */
    char *envid;           /* ENVID=, xtext-decoded; malloc'd, NULL when not given */
    int auth;              /* AUTH= given (checked for syntax, otherwise ignored) */
};

/* Parse the MAIL parameters. size_limit > 0 refuses a larger SIZE=;
 * smtputf8 says whether SMTPUTF8 is offered. On success returns 0 and the
 * caller owns out->envid (free it, or smtpd_mail_params_free). On refusal
 * returns -1 with nothing left to free. */
int smtpd_parse_mail_params(const char *params, long long size_limit, int smtputf8,
                            struct smtpd_mail_params *out, char *why, size_t whylen);
void smtpd_mail_params_free(struct smtpd_mail_params *p);

/* The parameters of one RCPT command. */
struct smtpd_rcpt_params {
    int notify;    /* DSN_NOTIFY_* mask (lib/util/record.h), 0 when not given */
    char *orcpt;   /* ORCPT= as "type;address", decoded; malloc'd, NULL when not given */
};

/* Parse the RCPT parameters. On success returns 0 and the caller owns
 * out->orcpt (free it, or smtpd_rcpt_params_free). On refusal returns -1
 * with nothing left to free. */
int smtpd_parse_rcpt_params(const char *params, struct smtpd_rcpt_params *out, char *why,
                            size_t whylen);
void smtpd_rcpt_params_free(struct smtpd_rcpt_params *p);

#endif
