/* reply.c - the SMTP reply parser of remote: one line at a time, bounded.
 *
 * A server's reply is untrusted input that ends up in logs and bounces, so
 * the parser is strict: every line is "DDD" then ' ' or '-' then text, the
 * first digit is 2-5, all lines of one reply carry the same code, no NUL
 * bytes, a line is at most REPLY_LINE_MAX bytes and a whole reply at most
 * REPLY_TEXT_MAX bytes and REPLY_LINES_MAX lines. Anything else makes the
 * reply malformed, which the session turns into a deferral. Control
 * characters that pass are made harmless by delivery_text_clean before any
 * text is logged or sent to qmgr.
 */
#include "remote.h"
#include "xforward_proto.h"

#include "sasl_client.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void reply_reset(struct smtp_reply *r)
{
    r->code = 0;
    r->nlines = 0;
    r->len = 0;
    r->text[0] = 0;
    r->dsn[0] = 0;
}

static int valid_code(const char *line, size_t len)
{
    return len >= 3 && line[0] >= '2' && line[0] <= '5' && isdigit((unsigned char)line[1])
           && isdigit((unsigned char)line[2]);
}

/* Append line to the reply text. Lines are kept apart by '\n' so that EHLO
 * keywords can be found again; delivery_text_clean turns the separator into
 * the single space with which Postfix shows multi-line replies
 * ("550-5.7.1 first 550 5.7.1 last"). */
static int append_text(struct smtp_reply *r, const char *line, size_t len)
{
    size_t need = len + (r->len > 0 ? 1 : 0);

    if (r->len + need >= sizeof(r->text))
        return -1;
    if (r->len > 0)
        r->text[r->len++] = '\n';
    memcpy(r->text + r->len, line, len);
    r->len += len;
    r->text[r->len] = 0;
    return 0;
}

/* "D.S.N" right after the code, with D the code's class; else "D.0.0".
 * The status code stays what the reply says, never what a lying enhanced
 * code claims. */
static void derive_dsn(struct smtp_reply *r)
{
    const char *p = r->text + 4;
    size_t i = 0;

    if (r->len > 4 && p[0] == r->text[0] && p[1] == '.') {
        int dots = 0, digits = 0;
        for (i = 0; p[i] != 0 && p[i] != ' ' && p[i] != '\n' && i < sizeof(r->dsn) - 1; i++) {
            if (p[i] == '.') {
                if (digits == 0 || ++dots > 2)
                    break;
                digits = 0;
            } else if (isdigit((unsigned char)p[i]) && digits < 3) {
                digits++;
            } else {
                break;
            }
        }
        if (dots == 2 && digits > 0 && (p[i] == 0 || p[i] == ' ' || p[i] == '\n')) {
            memcpy(r->dsn, p, i);
            r->dsn[i] = 0;
            return;
        }
    }
    snprintf(r->dsn, sizeof(r->dsn), "%c.0.0", r->text[0]);
}

int reply_add_line(struct smtp_reply *r, const char *line, size_t len)
{
    int code;

    if (len > REPLY_LINE_MAX || memchr(line, 0, len) != NULL || !valid_code(line, len))
        return REPLY_BAD;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return REPLY_BAD;
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (r->nlines > 0 && code != r->code)
        return REPLY_BAD;
    if (++r->nlines > REPLY_LINES_MAX || append_text(r, line, len) < 0)
        return REPLY_BAD;
    r->code = code;
    if (len > 3 && line[3] == '-')
        return REPLY_MORE;
    derive_dsn(r);
    return REPLY_DONE;
}

/* One EHLO keyword line ("SIZE 10240000", "PIPELINING"). */
static void parse_keyword(const char *kw, size_t len, struct smtp_features *f)
{
    char word[32];
    size_t n = 0;

    while (n < len && n < sizeof(word) - 1 && kw[n] != ' ' && kw[n] != '=') {
        word[n] = (char)toupper((unsigned char)kw[n]);
        n++;
    }
    word[n] = 0;
    if (strcmp(word, "PIPELINING") == 0) {
        f->pipelining = 1;
    } else if (strcmp(word, "8BITMIME") == 0) {
        f->eightbitmime = 1;
    } else if (strcmp(word, "STARTTLS") == 0) {
        f->starttls = 1;
    } else if (strcmp(word, "DSN") == 0) {
        f->dsn = 1;
    } else if (strcmp(word, "SMTPUTF8") == 0) {
        f->smtputf8 = 1;
    } else if (strcmp(word, "AUTH") == 0) {
        /* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN"; both may come. */
        if (n < len)
            f->auth_mechs |= sasl_client_mechs_parse(kw + n + 1, len - n - 1);
        f->auth = 1;
    } else if (strcmp(word, "XFORWARD") == 0) {
        char args[256];
        size_t alen = n < len ? len - n - 1 : 0;
        if (alen >= sizeof(args))
            alen = sizeof(args) - 1;
        memcpy(args, kw + n + 1, alen);
        args[alen] = 0;
        f->xforward = xforward_offered(args);
    } else if (strcmp(word, "SIZE") == 0) {
        long long limit = 0;
        size_t i = n;
        int digits = 0;
        while (i < len && kw[i] == ' ')
            i++;
        /* A limit we cannot represent is as good as none. */
        for (; i < len && isdigit((unsigned char)kw[i]) && digits < 18; i++, digits++)
            limit = limit * 10 + (kw[i] - '0');
        f->size_limit = digits > 0 && i == len ? limit : 0;
    }
}

void reply_parse_ehlo(const struct smtp_reply *r, struct smtp_features *f)
{
    const char *p = r->text, *end;

    memset(f, 0, sizeof(*f));
    f->esmtp = 1;
    f->size_limit = -1;
    /* The first line is the server's greeting, not a keyword. */
    if ((end = strchr(p, '\n')) == NULL)
        return;
    for (p = end + 1; *p != 0; p = *end ? end + 1 : end) {
        end = strchr(p, '\n');
        if (end == NULL)
            end = p + strlen(p);
        if (end - p > 4)
            parse_keyword(p + 4, (size_t)(end - p - 4), f);
    }
}

void text_printf(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
}
