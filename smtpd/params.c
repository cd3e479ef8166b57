/* params.c - the ESMTP parameters of MAIL FROM and RCPT TO, and paths
 * with UTF-8 (SMTPUTF8, RFC 6531).
 *
 * MAIL: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8, RET and ENVID
 * (RFC 3461), AUTH (RFC 4954, accepted and ignored). RCPT: NOTIFY and
 * ORCPT (RFC 3461). xtext values are decoded here; a value that decodes to
 * NUL, CR or LF is refused, so nothing the client sends can split a line
 * in a queue record, a log line or a DSN downstream.
 */
#include "smtpd.h"

#include "address.h"
#include "record.h"
#include "xtext.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENVID_MAX 100    /* RFC 3461 section 4.4 */
#define ORCPT_MAX 500    /* RFC 3461 section 4.2, xtext-decoded */
#define PARAMS_MAX 1024  /* all parameters of one command */

/* Split params into words in buf (modified); returns the count, -1 when
 * too long. */
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

static int size_param(struct session *s, const char *value)
{
    char *end;
    errno = 0;
    long long size = strtoll(value, &end, 10);
    if (errno || *end || end == value || size < 0) {
        reply(s, "501 5.5.4 Bad message size syntax");
        return -1;
    }
    if (smtpd_cfg.message_size_limit > 0 && size > smtpd_cfg.message_size_limit) {
        reply(s, "552 5.3.4 Message size exceeds fixed limit");
        return -1;
    }
    return 0;
}

static int ret_param(struct session *s, const char *value)
{
    if (s->dsn_ret || (strcasecmp(value, "FULL") != 0 && strcasecmp(value, "HDRS") != 0)) {
        reply(s, "501 5.5.4 Bad RET parameter syntax");
        return -1;
    }
    s->dsn_ret = strcasecmp(value, "FULL") == 0 ? "FULL" : "HDRS";
    return 0;
}

static int envid_param(struct session *s, const char *value)
{
    char decoded[ENVID_MAX + 1];
    if (s->dsn_envid || xtext_decode(value, decoded, sizeof(decoded)) <= 0) {
        reply(s, "501 5.5.4 Bad ENVID parameter syntax");
        return -1;
    }
    s->dsn_envid = strdup(decoded);
    if (!s->dsn_envid) {
        reply(s, "451 4.3.0 Error: out of memory");
        return -1;
    }
    return 0;
}

/* AUTH=<mailbox> or AUTH=<>: only its syntax matters to us. */
static int auth_param(struct session *s, const char *value)
{
    char decoded[ADDRESS_MAX];
    if (strcmp(value, "<>") != 0 && xtext_decode(value, decoded, sizeof(decoded)) <= 0) {
        reply(s, "501 5.5.4 Bad AUTH parameter syntax");
        return -1;
    }
    return 0;
}

int mail_params(struct session *s, const char *params)
{
    char buf[PARAMS_MAX];
    char *words[32];
    int n = split_params(params, buf, sizeof(buf), words, 32);
    if (n < 0) {
        reply(s, "501 5.5.4 Bad MAIL parameter syntax");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *p = words[i];
        int rc = 0;
        if (strncasecmp(p, "SIZE=", 5) == 0)
            rc = size_param(s, p + 5);
        else if (strcasecmp(p, "BODY=8BITMIME") == 0 || strcasecmp(p, "BODY=7BIT") == 0)
            rc = 0;
        else if (strcasecmp(p, "SMTPUTF8") == 0 && smtpd_cfg.smtputf8)
            s->smtputf8 = 1;
        else if (strncasecmp(p, "RET=", 4) == 0)
            rc = ret_param(s, p + 4);
        else if (strncasecmp(p, "ENVID=", 6) == 0)
            rc = envid_param(s, p + 6);
        else if (strncasecmp(p, "AUTH=", 5) == 0)
            rc = auth_param(s, p + 5);
        else {
            reply(s, "555 5.5.4 Unsupported option: %.100s", p);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY. */
static int notify_param(struct session *s, const char *value, struct rcpt_request *r)
{
    char buf[64];
    int mask = 0;
    if (r->notify || strlen(value) >= sizeof(buf))
        goto bad;
    memcpy(buf, value, strlen(value) + 1);
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int bit = strcasecmp(w, "NEVER") == 0     ? DSN_NOTIFY_NEVER
                  : strcasecmp(w, "SUCCESS") == 0 ? DSN_NOTIFY_SUCCESS
                  : strcasecmp(w, "FAILURE") == 0 ? DSN_NOTIFY_FAILURE
                  : strcasecmp(w, "DELAY") == 0   ? DSN_NOTIFY_DELAY
                                                  : 0;
        if (!bit || (mask & bit))
            goto bad;
        mask |= bit;
    }
    /* NEVER stands alone (RFC 3461 section 4.1). */
    if (!mask || ((mask & DSN_NOTIFY_NEVER) && mask != DSN_NOTIFY_NEVER))
        goto bad;
    r->notify = mask;
    return 0;
bad:
    reply(s, "501 5.5.4 Bad NOTIFY parameter syntax");
    return -1;
}

/* ORCPT=addr-type;xtext, stored decoded as "addr-type;address". */
static int orcpt_param(struct session *s, const char *value, struct rcpt_request *r)
{
    const char *semi = strchr(value, ';');
    char decoded[ORCPT_MAX + 1];
    size_t tlen = semi ? (size_t)(semi - value) : 0;
    int ok = !r->orcpt && semi && tlen > 0 && tlen < 32;
    for (size_t i = 0; ok && i < tlen; i++) {
        char c = value[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-';
    }
    if (!ok || xtext_decode(semi + 1, decoded, sizeof(decoded)) <= 0) {
        reply(s, "501 5.5.4 Bad ORCPT parameter syntax");
        return -1;
    }
    size_t dlen = strlen(decoded);
    r->orcpt = malloc(tlen + 1 + dlen + 1);
    if (!r->orcpt) {
        reply(s, "451 4.3.0 Error: out of memory");
        return -1;
    }
    memcpy(r->orcpt, value, tlen + 1);   /* the type and its ';' */
    memcpy(r->orcpt + tlen + 1, decoded, dlen + 1);
    return 0;
}

int rcpt_params(struct session *s, const char *params, struct rcpt_request *r)
{
    char buf[PARAMS_MAX];
    char *words[8];
    int n = split_params(params, buf, sizeof(buf), words, 8);
    if (n < 0) {
        reply(s, "501 5.5.4 Bad RCPT parameter syntax");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *p = words[i];
        int rc;
        if (strncasecmp(p, "NOTIFY=", 7) == 0)
            rc = notify_param(s, p + 7, r);
        else if (strncasecmp(p, "ORCPT=", 6) == 0)
            rc = orcpt_param(s, p + 6, r);
        else {
            reply(s, "555 5.5.4 Unsupported option: %.100s", p);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* --- paths with UTF-8 --- */

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

int parse_path(struct session *s, const char *path, char *addr, size_t addrlen,
               const char **params, const char *what)
{
    const char *err;
    int utf8 = 0;
    for (const char *p = path; *p && !utf8; p++)
        utf8 = (unsigned char)*p >= 0x80;
    int rc;
    if (utf8 && smtpd_cfg.smtputf8)
        rc = valid_utf8((const unsigned char *)path) ? parse_utf8_path(path, addr, addrlen, params)
                                                     : -1;
    else
        rc = address_parse_path(path, addr, addrlen, params, &err);
    if (rc < 0) {
        if (strcmp(what, "sender") == 0)
            reply(s, "501 5.1.7 Bad sender address syntax");
        else
            reply(s, "501 5.1.3 Bad recipient address syntax");
        return -1;
    }
    return 0;
}
