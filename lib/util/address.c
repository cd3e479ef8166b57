/* address.c - RFC 5321 path parsing and local-part quoting (address.h).
 *
 * smtpd hands us the text after "MAIL FROM:" / "RCPT TO:"; we return the
 * internal (unquoted) form that the queue file, qmgr and the delivery agents
 * use, and address_quote turns it back into the external form for SMTP and
 * headers. The parser is a single bounded pass over a NUL-terminated string:
 * it never looks past the terminating NUL, whatever bytes it is given, so it
 * is safe to feed with anything a client sends.
 */
#include "address.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define LOCAL_PART_MAX 64    /* RFC 5321 4.5.3.1.1, counted on the wire */
#define DOMAIN_MAX 255       /* RFC 5321 4.5.3.1.2 */

#define ERR_MALFORMED "malformed address"
#define ERR_TOO_LONG "address too long"
#define ERR_BAD_CHAR "bad character in address"

/* Output accumulator: bounded by both the caller's buffer and ADDRESS_MAX. */
struct outbuf {
    char *buf;
    size_t cap;    /* usable bytes, the NUL excluded */
    size_t len;
    int overflow;
};

static void out_init(struct outbuf *o, char *buf, size_t outlen)
{
    size_t cap = outlen < ADDRESS_MAX ? outlen : ADDRESS_MAX;

    o->buf = buf;
    o->cap = cap > 0 ? cap - 1 : 0;
    o->len = 0;
    o->overflow = 0;
}

static void out_putc(struct outbuf *o, char c)
{
    if (o->len >= o->cap) {
        o->overflow = 1;
        return;
    }
    o->buf[o->len++] = c;
}

/* Characters RFC 5321 allows in an atom ("atext"). */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Bytes never allowed anywhere in an address: controls, DEL, 8-bit (until
 * SMTPUTF8 is supported). */
static int is_bad_byte(unsigned char c)
{
    return c < 0x20 || c >= 0x7f;
}

static int is_domain_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A domain name: labels of letters, digits, '-' and '_' (the latter for
 * real-world tolerance, as Postfix), no empty label except that one trailing
 * dot is allowed. Scans from *pp, stops at the first byte that cannot be
 * part of a name and leaves *pp there. Returns 0, or -1 with *err. */
static int scan_domain_name(const char **pp, const char **err)
{
    const char *p = *pp;
    const char *start = p;
    size_t label = 0;

    for (;; p++) {
        unsigned char c = (unsigned char)*p;
        if (is_domain_char(c)) {
            label++;
            if (label > 63) {
                *err = ERR_TOO_LONG;
                return -1;
            }
        } else if (c == '.') {
            if (label == 0) {
                *err = ERR_MALFORMED;
                return -1;
            }
            label = 0;
        } else {
            break;
        }
    }
    if (p == start) {
        *err = is_bad_byte((unsigned char)*p) && *p != 0 ? ERR_BAD_CHAR : ERR_MALFORMED;
        return -1;
    }
    if ((size_t)(p - start) > DOMAIN_MAX) {
        *err = ERR_TOO_LONG;
        return -1;
    }
    *pp = p;
    return 0;
}

/* A domain literal "[1.2.3.4]" or "[IPv6:...]"; *pp points at '['. Other
 * address-literal tags are rejected: nothing could deliver to them. */
static int scan_domain_literal(const char **pp, const char **err)
{
    const char *p = *pp + 1;
    const char *body = p;
    char text[64];
    size_t n;
    unsigned char addr[16];

    while (*p != ']') {
        if (*p == 0 || *p == '[' || *p == '\\') {
            *err = ERR_MALFORMED;   /* unbalanced or nested bracket */
            return -1;
        }
        if (is_bad_byte((unsigned char)*p)) {
            *err = ERR_BAD_CHAR;
            return -1;
        }
        p++;
    }
    n = (size_t)(p - body);
    if (n == 0 || n >= sizeof(text)) {
        *err = n == 0 ? ERR_MALFORMED : ERR_TOO_LONG;
        return -1;
    }
    memcpy(text, body, n);
    text[n] = 0;
    if (strncasecmp(text, "IPv6:", 5) == 0) {
        if (inet_pton(AF_INET6, text + 5, addr) != 1) {
            *err = ERR_MALFORMED;
            return -1;
        }
    } else if (inet_pton(AF_INET, text, addr) != 1) {
        *err = ERR_MALFORMED;
        return -1;
    }
    *pp = p + 1;
    return 0;
}

/* Domain name or literal, copied to o. */
static int parse_domain(const char **pp, struct outbuf *o, const char **err)
{
    const char *start = *pp;
    const char *p;

    if (**pp == '[') {
        if (scan_domain_literal(pp, err) < 0)
            return -1;
    } else if (scan_domain_name(pp, err) < 0) {
        return -1;
    }
    for (p = start; p < *pp; p++)
        out_putc(o, *p);
    return 0;
}

/* "@a,@b:" - RFC 5321 source route, validated and dropped. */
static int skip_source_route(const char **pp, const char **err)
{
    const char *p = *pp;

    for (;;) {
        if (*p != '@') {
            *err = ERR_MALFORMED;
            return -1;
        }
        p++;
        if (*p == '[' ? scan_domain_literal(&p, err) < 0 : scan_domain_name(&p, err) < 0)
            return -1;
        if (*p == ':') {
            *pp = p + 1;
            return 0;
        }
        if (*p != ',') {
            *err = ERR_MALFORMED;
            return -1;
        }
        p++;
    }
}

/* Quoted-string local part: *pp at the opening quote. The quotes and the
 * backslashes of quoted pairs are removed in the internal form. */
static int parse_quoted_local(const char **pp, struct outbuf *o, const char **err)
{
    const char *p = *pp + 1;

    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == 0) {
            *err = ERR_MALFORMED;   /* unbalanced quote */
            return -1;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            p++;
            c = (unsigned char)*p;
            if (c == 0) {
                *err = ERR_MALFORMED;
                return -1;
            }
        }
        if (is_bad_byte(c)) {
            *err = ERR_BAD_CHAR;
            return -1;
        }
        out_putc(o, (char)c);
        p++;
    }
    *pp = p + 1;
    return 0;
}

/* Dot-string local part. Empty or repeated dots are tolerated (Postfix
 * accepts them unless strict); address_quote will quote them on output. */
static int parse_dot_local(const char **pp, struct outbuf *o, const char **err)
{
    const char *p = *pp;

    while (is_atext((unsigned char)*p) || *p == '.')
        out_putc(o, *p++);
    if (p == *pp) {
        *err = is_bad_byte((unsigned char)*p) && *p != 0 ? ERR_BAD_CHAR : ERR_MALFORMED;
        return -1;
    }
    *pp = p;
    return 0;
}

/* mailbox = local-part [ "@" domain ]. A bare local part ("postmaster") is
 * accepted; whether it is allowed is smtpd's decision. Leaves *pp at the
 * first byte after the mailbox. */
static int parse_mailbox(const char **pp, struct outbuf *o, const char **err)
{
    const char *wire_start = *pp;
    size_t local_start = o->len;

    if ((**pp == '"' ? parse_quoted_local(pp, o, err)
                     : parse_dot_local(pp, o, err)) < 0)
        return -1;
    if ((size_t)(*pp - wire_start) > LOCAL_PART_MAX) {
        *err = ERR_TOO_LONG;
        return -1;
    }
    if (**pp != '@') {
        /* Without a domain, a quoted '@' would read back as one. */
        if (memchr(o->buf + local_start, '@', o->len - local_start) != NULL) {
            *err = ERR_MALFORMED;
            return -1;
        }
        return 0;
    }
    out_putc(o, '@');
    (*pp)++;
    return parse_domain(pp, o, err);
}

/* The path itself: "<...>" or a bare address. Leaves *pp after it. */
static int parse_path_body(const char **pp, struct outbuf *o, const char **err)
{
    const char *p = *pp;

    if (*p != '<') {
        if (parse_mailbox(&p, o, err) < 0)
            return -1;
        *pp = p;
        return 0;
    }
    p++;
    if (*p == '>') {             /* the null sender */
        *pp = p + 1;
        return 0;
    }
    if (*p == '@' && skip_source_route(&p, err) < 0)
        return -1;
    if (parse_mailbox(&p, o, err) < 0)
        return -1;
    if (*p != '>') {
        if (*p != 0 && is_bad_byte((unsigned char)*p))
            *err = ERR_BAD_CHAR;
        else
            *err = ERR_MALFORMED;
        return -1;
    }
    *pp = p + 1;
    return 0;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

int address_parse_path(const char *arg, char *out, size_t outlen,
                       const char **params, const char **err)
{
    struct outbuf o;
    const char *p;
    const char *dummy_err;

    if (err == NULL)
        err = &dummy_err;
    if (arg == NULL || out == NULL || outlen == 0) {
        *err = ERR_MALFORMED;
        return -1;
    }
    out_init(&o, out, outlen);
    p = skip_spaces(arg);
    if (*p == 0) {
        *err = ERR_MALFORMED;
        out[0] = 0;
        return -1;
    }
    if (parse_path_body(&p, &o, err) < 0) {
        out[0] = 0;
        return -1;
    }
    if (o.overflow) {
        *err = ERR_TOO_LONG;
        out[0] = 0;
        return -1;
    }
    /* The path must end the argument or be followed by white space. */
    if (*p != 0 && *p != ' ' && *p != '\t') {
        *err = is_bad_byte((unsigned char)*p) ? ERR_BAD_CHAR : ERR_MALFORMED;
        out[0] = 0;
        return -1;
    }
    out[o.len] = 0;
    if (params != NULL)
        *params = skip_spaces(p);
    return 0;
}

/* RFC 5321 Dot-string: atoms separated by single dots. UTF-8 bytes count
 * as atom characters (RFC 6531's UTF8-non-ascii in atext): an SMTPUTF8
 * local part such as "ü" goes out, and into logs and headers, unquoted, as
 * Postfix writes it. Only smtpd's SMTPUTF8 parser makes such internal
 * forms; it checked the UTF-8. */
static int is_dot_atom(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return 0;
        } else if (!is_atext((unsigned char)s[i]) && (unsigned char)s[i] < 0x80) {
            return 0;
        }
    }
    return 1;
}

int address_quote(const char *internal, char *out, size_t outlen)
{
    const char *at;
    size_t local_len, need, i, n = 0;
    int quote;

    if (internal == NULL || out == NULL || outlen == 0)
        return -1;
    if (*internal == 0) {            /* the null sender stays empty */
        out[0] = 0;
        return 0;
    }
    at = strrchr(internal, '@');
    local_len = at != NULL ? (size_t)(at - internal) : strlen(internal);
    quote = !is_dot_atom(internal, local_len);

    /* Worst case every local byte is escaped. Check as we go instead. */
    if (quote)
        out[n++] = '"';
    for (i = 0; i < local_len; i++) {
        char c = internal[i];
        need = (quote && (c == '"' || c == '\\')) ? 2 : 1;
        if (n + need >= outlen)
            return -1;
        if (need == 2)
            out[n++] = '\\';
        out[n++] = c;
    }
    if (quote) {
        if (n + 1 >= outlen)
            return -1;
        out[n++] = '"';
    }
    if (at != NULL) {
        size_t rest = strlen(at);
        if (n + rest >= outlen)
            return -1;
        memcpy(out + n, at, rest);
        n += rest;
    }
    out[n] = 0;
    return 0;
}

void address_quote_shown(const char *internal, char *out, size_t outlen)
{
    char *p;

    if (out == NULL || outlen == 0)
        return;
    if (internal == NULL)
        internal = "";
    if (address_quote(internal, out, outlen) < 0)
        snprintf(out, outlen, "%s", internal);
    for (p = out; *p != 0; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

const char *address_domain(const char *internal)
{
    const char *at;

    if (internal == NULL)
        return NULL;
    at = strrchr(internal, '@');
    return at != NULL ? at + 1 : NULL;
}

int address_localpart(const char *internal, char *out, size_t outlen)
{
    const char *at;
    size_t len;

    if (internal == NULL || out == NULL || outlen == 0)
        return -1;
    at = strrchr(internal, '@');
    len = at != NULL ? (size_t)(at - internal) : strlen(internal);
    if (len >= outlen) {
        out[0] = 0;
        return -1;
    }
    memcpy(out, internal, len);
    out[len] = 0;
    return 0;
}

int address_lowercase(const char *in, char *out, size_t outlen)
{
    size_t i;

    if (in == NULL || out == NULL || outlen == 0)
        return -1;
    for (i = 0; in[i] != 0; i++) {
        if (i + 1 >= outlen) {
            out[0] = 0;
            return -1;
        }
        out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
    }
    out[i] = 0;
    return 0;
}
