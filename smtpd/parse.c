/* parse.c - smtpd's session-free parsing of command lines, paths and the
 * ESMTP parameters of MAIL and RCPT (parse.h).
 *
 * MAIL: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET and
 * ENVID (RFC 3461), AUTH (RFC 4954, syntax only). RCPT: NOTIFY and ORCPT
 * (RFC 3461). xtext values are decoded here; a value that decodes to NUL,
 * CR or LF is refused, so nothing the client sends can split a line in a
 * queue record, a log line or a DSN downstream. Every input is a
 * NUL-terminated line smtpd already bounded by line_length_limit; the
 * copies made here are bounded again on their own.
 */
#include "parse.h"

#include "address.h"
#include "dsn.h"
#include "record.h"
#include "xtext.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PARAMS_MAX 1024       /* all parameters of one command */
#define MAIL_WORDS_MAX 32
#define RCPT_WORDS_MAX 8
#define NOTIFY_MAX 64         /* "SUCCESS,FAILURE,DELAY" and some slack */
#define ECHO_MAX 100          /* bytes of a refused option echoed back */

/* Write the reply text of a refusal; always returns -1 for the caller to
 * pass on. */
static int refuse(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(char *why, size_t whylen, const char *fmt, ...)
{
    if (whylen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* --- paths --- */

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing past
 * U+10FFFF. */
static int valid_utf8(const unsigned char *p)
{
    while (*p) {
        unsigned char c = *p;
        int n;
        unsigned min;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        /* A NUL fails the continuation test, so this never reads past it. */
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

int smtpd_has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

/* address_parse_path knows only ASCII. Parse a copy in which every 8-bit
 * byte stands in as 'a' (valid wherever a letter is), then put the
 * original bytes back: the internal form is the path minus quotes,
 * backslashes and a source route, so matching it against the copy from the
 * right finds each output byte's position in the input. */
static int parse_utf8_path(const char *path, char *out, size_t outlen, const char **params)
{
    size_t len = strlen(path);
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    for (size_t i = 0; i <= len; i++)
        copy[i] = (unsigned char)path[i] >= 0x80 ? 'a' : path[i];
    const char *cparams, *err;
    int rc = address_parse_path(copy, out, outlen, &cparams, &err);
    if (rc == 0) {
        const char *q = cparams;
        size_t k = strlen(out);
        while (k > 0 && q > copy) {
            q--;
            if (*q == out[k - 1])
                out[--k] = path[q - copy];
        }
        rc = k == 0 ? 0 : -1;
        *params = path + (cparams - copy);
    }
    free(copy);
    return rc;
}

int smtpd_parse_path(const char *arg, enum smtpd_path_role role, int smtputf8, char *addr,
                     size_t addrlen, const char **params, char *why, size_t whylen)
{
    const char *err;
    int rc;
    if (smtputf8 && smtpd_has_8bit(arg))
        rc = valid_utf8((const unsigned char *)arg) ? parse_utf8_path(arg, addr, addrlen, params)
                                                    : -1;
    else
        rc = address_parse_path(arg, addr, addrlen, params, &err);
    if (rc == 0 && role == SMTPD_PATH_RECIPIENT && !addr[0])
        rc = -1;   /* RCPT TO:<> */
    if (rc < 0) {
        if (role == SMTPD_PATH_SENDER)
            return refuse(why, whylen, "501 5.1.7 Bad sender address syntax");
        return refuse(why, whylen, "501 5.1.3 Bad recipient address syntax");
    }
    return 0;
}

/* --- parameters --- */

/* Split params into words in buf (modified); returns the count, -1 when
 * too long or too many. */
static int split_params(const char *params, char *buf, size_t buflen, char **words, int max)
{
    size_t len = strlen(params);
    if (len >= buflen)
        return -1;
    memcpy(buf, params, len + 1);
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (n == max)
            return -1;
        words[n++] = w;
    }
    return n;
}

/* "555 5.5.4 Unsupported option: X" with at most ECHO_MAX bytes of X.
 * A bare CR (or any control byte) the client put in the line is echoed as
 * '?': the reply must stay one line. */
static int refuse_option(char *why, size_t whylen, const char *word)
{
    char echo[ECHO_MAX + 1];
    size_t n = 0;
    for (; n < ECHO_MAX && word[n]; n++) {
        unsigned char c = (unsigned char)word[n];
        echo[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    echo[n] = 0;
    return refuse(why, whylen, "555 5.5.4 Unsupported option: %s", echo);
}

static int size_param(const char *value, long long size_limit, struct smtpd_mail_params *out,
                      char *why, size_t whylen)
{
    char *end;
    errno = 0;
    long long size = strtoll(value, &end, 10);
    /* RFC 1870: digits only (strtoll would also take a sign or spaces). */
    if (errno || *end || !isdigit((unsigned char)value[0]) || size < 0)
        return refuse(why, whylen, "501 5.5.4 Bad message size syntax");
    if (size_limit > 0 && size > size_limit)
        return refuse(why, whylen, "552 5.3.4 Message size exceeds fixed limit");
    out->size = size;
    return 0;
}

static int ret_param(const char *value, struct smtpd_mail_params *out, char *why, size_t whylen)
{
    if (out->ret || (strcasecmp(value, "FULL") != 0 && strcasecmp(value, "HDRS") != 0))
        return refuse(why, whylen, "501 5.5.4 Bad RET parameter syntax");
    out->ret = strcasecmp(value, "FULL") == 0 ? "FULL" : "HDRS";
    return 0;
}

static int envid_param(const char *value, struct smtpd_mail_params *out, char *why,
                       size_t whylen)
{
    char decoded[SMTPD_ENVID_MAX + 1];
    if (out->envid || xtext_decode(value, decoded, sizeof(decoded)) <= 0)
        return refuse(why, whylen, "501 5.5.4 Bad ENVID parameter syntax");
    out->envid = strdup(decoded);
    if (!out->envid)
        return refuse(why, whylen, "451 4.3.0 Error: out of memory");
    return 0;
}

/* AUTH=<mailbox> or AUTH=<>: only its syntax matters to us. */
static int auth_param(const char *value, struct smtpd_mail_params *out, char *why, size_t whylen)
{
    char decoded[ADDRESS_MAX];
    if (strcmp(value, "<>") != 0 && xtext_decode(value, decoded, sizeof(decoded)) <= 0)
        return refuse(why, whylen, "501 5.5.4 Bad AUTH parameter syntax");
    out->auth = 1;
    return 0;
}

static int mail_param(const char *p, long long size_limit, int smtputf8,
                      struct smtpd_mail_params *out, char *why, size_t whylen)
{
    if (strncasecmp(p, "SIZE=", 5) == 0)
        return size_param(p + 5, size_limit, out, why, whylen);
    if (strcasecmp(p, "BODY=8BITMIME") == 0) {
        out->body = SMTPD_BODY_8BITMIME;
        return 0;
    }
    if (strcasecmp(p, "BODY=7BIT") == 0) {
        out->body = SMTPD_BODY_7BIT;
        return 0;
    }
    if (strcasecmp(p, "SMTPUTF8") == 0 && smtputf8) {
        out->smtputf8 = 1;
        return 0;
    }
    if (strncasecmp(p, "RET=", 4) == 0)
        return ret_param(p + 4, out, why, whylen);
    if (strncasecmp(p, "ENVID=", 6) == 0)
        return envid_param(p + 6, out, why, whylen);
    if (strncasecmp(p, "AUTH=", 5) == 0)
        return auth_param(p + 5, out, why, whylen);
    return refuse_option(why, whylen, p);
}

int smtpd_parse_mail_params(const char *params, long long size_limit, int smtputf8,
                            struct smtpd_mail_params *out, char *why, size_t whylen)
{
    char buf[PARAMS_MAX];
    char *words[MAIL_WORDS_MAX];
    memset(out, 0, sizeof(*out));
    out->size = -1;
    int n = split_params(params, buf, sizeof(buf), words, MAIL_WORDS_MAX);
    if (n < 0)
        return refuse(why, whylen, "501 5.5.4 Bad MAIL parameter syntax");
    for (int i = 0; i < n; i++) {
        if (mail_param(words[i], size_limit, smtputf8, out, why, whylen) < 0) {
            smtpd_mail_params_free(out);
            return -1;
        }
    }
    return 0;
}

void smtpd_mail_params_free(struct smtpd_mail_params *p)
{
    free(p->envid);
    p->envid = NULL;
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (lib/mail/dsn.h). */
static int notify_param(const char *value, struct smtpd_rcpt_params *out, char *why,
                        size_t whylen)
{
    int mask = out->notify || strlen(value) >= NOTIFY_MAX ? 0 : dsn_notify_parse(value);
    if (!mask)
        return refuse(why, whylen, "501 5.5.4 Bad NOTIFY parameter syntax");
    out->notify = mask;
    return 0;
}

static int is_addr_type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-';
}

/* ORCPT=addr-type;xtext, stored decoded as "addr-type;address". */
static int orcpt_param(const char *value, struct smtpd_rcpt_params *out, char *why,
                       size_t whylen)
{
    const char *semi = strchr(value, ';');
    char decoded[SMTPD_ORCPT_MAX + 1];
    size_t tlen = semi ? (size_t)(semi - value) : 0;
    int ok = !out->orcpt && semi && tlen > 0 && tlen <= SMTPD_ADDR_TYPE_MAX;
    for (size_t i = 0; ok && i < tlen; i++)
        ok = is_addr_type_char(value[i]);
    if (!ok || xtext_decode(semi + 1, decoded, sizeof(decoded)) <= 0)
        return refuse(why, whylen, "501 5.5.4 Bad ORCPT parameter syntax");
    size_t dlen = strlen(decoded);
    out->orcpt = malloc(tlen + 1 + dlen + 1);
    if (!out->orcpt)
        return refuse(why, whylen, "451 4.3.0 Error: out of memory");
    memcpy(out->orcpt, value, tlen + 1);   /* the type and its ';' */
    memcpy(out->orcpt + tlen + 1, decoded, dlen + 1);
    return 0;
}

static int rcpt_param(const char *p, struct smtpd_rcpt_params *out, char *why, size_t whylen)
{
    if (strncasecmp(p, "NOTIFY=", 7) == 0)
        return notify_param(p + 7, out, why, whylen);
    if (strncasecmp(p, "ORCPT=", 6) == 0)
        return orcpt_param(p + 6, out, why, whylen);
    return refuse_option(why, whylen, p);
}

int smtpd_parse_rcpt_params(const char *params, struct smtpd_rcpt_params *out, char *why,
                            size_t whylen)
{
    char buf[PARAMS_MAX];
    char *words[RCPT_WORDS_MAX];
    memset(out, 0, sizeof(*out));
    int n = split_params(params, buf, sizeof(buf), words, RCPT_WORDS_MAX);
    if (n < 0)
        return refuse(why, whylen, "501 5.5.4 Bad RCPT parameter syntax");
    for (int i = 0; i < n; i++) {
        if (rcpt_param(words[i], out, why, whylen) < 0) {
            smtpd_rcpt_params_free(out);
            return -1;
        }
    }
    return 0;
}

void smtpd_rcpt_params_free(struct smtpd_rcpt_params *p)
{
    free(p->orcpt);
    p->orcpt = NULL;
}
