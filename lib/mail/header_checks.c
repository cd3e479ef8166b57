/* header_checks.c - built-in content inspection (header_checks.h): action
 * parsing, table choice, the log line, and the body walker that follows a
 * message's MIME structure line by line.
 *
 * The walker holds at most one line (line_length_limit bytes; longer lines
 * are inspected in pieces, as Postfix does) and one logical MIME header
 * (header_size_limit bytes; a longer one passes uninspected), and batches
 * its output, so a large body costs no more memory than a small one.
 */
#include "header_checks.h"

#include "config.h"
#include "header_line.h"
#include "log.h"
#include "lookup.h"
#include "rewrite.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIME_DEPTH_MAX 20      /* nested multiparts we follow */
#define BOUNDARY_MAX 256       /* RFC 2046 allows 70; be lenient */
#define OUT_BUF_SIZE 65536     /* output batched before the hook sees it */
#define LOG_CONTENT_MAX 200    /* bytes of the matched input in a log line */
#define LINE_LIMIT_MIN 80

/* --- actions --- */

static const struct {
    const char *name;
    enum hc_action action;
    int needs_text;
} actions[] = {
    {"REJECT", HC_REJECT, 0},   {"DISCARD", HC_DISCARD, 0}, {"HOLD", HC_HOLD, 0},
    {"WARN", HC_WARN, 0},       {"INFO", HC_INFO, 0},       {"PASS", HC_PASS, 0},
    {"IGNORE", HC_IGNORE, 0},   {"STRIP", HC_STRIP, 0},     {"REPLACE", HC_REPLACE, 1},
    {"PREPEND", HC_PREPEND, 1}, {"BCC", HC_BCC, 1},         {"DUNNO", HC_DUNNO, 0},
    {"FILTER", HC_FILTER, 1},   {"REDIRECT", HC_REDIRECT, 1},
    {"OK", HC_DUNNO, 0},
};

/* An address for BCC and REDIRECT: a local part and a domain. */
static int target_address_ok(const char *text)
{
    const char *at = strrchr(text, '@');
    return at && at != text && at[1] && !strpbrk(text, " \t,<>");
}

/* FILTER's argument: "transport:destination", a transport name first. */
static int filter_destination_ok(const char *text)
{
    const char *colon = strchr(text, ':');
    return colon && colon != text && !strpbrk(text, " \t");
}

void hc_parse_action(const char *value, struct hc_result *r)
{
    const char *p = value;
    r->action = HC_DUNNO;
    r->text[0] = 0;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t wlen = strcspn(p, " \t");
    const char *text = p + wlen;
    while (*text == ' ' || *text == '\t')
        text++;
    size_t tlen = strlen(text);
    while (tlen > 0 && isspace((unsigned char)text[tlen - 1]))
        tlen--;
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        if (strlen(actions[i].name) != wlen || strncasecmp(p, actions[i].name, wlen) != 0)
            continue;
        if (tlen >= sizeof(r->text))
            tlen = sizeof(r->text) - 1;
        memcpy(r->text, text, tlen);
        r->text[tlen] = 0;
        if (actions[i].needs_text && !*r->text) {
            msg_warn("header/body_checks: %s needs text; treated as DUNNO", actions[i].name);
            return;
        }
        if ((actions[i].action == HC_BCC || actions[i].action == HC_REDIRECT) &&
            !target_address_ok(r->text)) {
            msg_warn("header/body_checks: %s needs user@domain, not \"%.100s\"; treated as DUNNO",
                     actions[i].name, r->text);
            r->text[0] = 0;
            return;
        }
        if (actions[i].action == HC_FILTER && !filter_destination_ok(r->text)) {
            msg_warn("header/body_checks: FILTER needs transport:destination, not \"%.100s\"; "
                     "treated as DUNNO",
                     r->text);
            r->text[0] = 0;
            return;
        }
        r->action = actions[i].action;
        return;
    }
    msg_warn("header/body_checks: unknown action \"%.100s\"; treated as DUNNO", value);
}

const char *hc_log_word(enum hc_action a)
{
    switch (a) {
    case HC_REJECT: return "reject";
    case HC_DISCARD: return "discard";
    case HC_HOLD: return "hold";
    case HC_WARN: return "warning";
    case HC_INFO: return "info";
    case HC_PASS: return "pass";
    case HC_STRIP: return "strip";
    case HC_REPLACE: return "replace";
    case HC_FILTER: return "filter";
    case HC_REDIRECT: return "redirect";
    case HC_BCC: return "bcc";
    default: return NULL;
    }
}

/* "D.S.N" at text with D 4 or 5, followed by white space or the end;
 * returns its length, 0 when there is none. */
static size_t dsn_prefix(const char *text)
{
    const char *p = text;
    if (*p != '4' && *p != '5')
        return 0;
    p++;
    for (int part = 0; part < 2; part++) {
        if (*p++ != '.')
            return 0;
        int digits = 0;
        while (isdigit((unsigned char)*p) && digits < 3) {
            p++;
            digits++;
        }
        if (digits == 0)
            return 0;
    }
    return *p == 0 || *p == ' ' || *p == '\t' ? (size_t)(p - text) : 0;
}

void hc_reject_reason(const char *text, char *out, size_t outlen, int *status)
{
    size_t dlen = dsn_prefix(text);
    const char *rest = text + dlen;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (!*rest)
        rest = "Message content rejected";
    if (dlen) {
        snprintf(out, outlen, "%.*s %s", (int)dlen, text, rest);
        *status = text[0] - '0';
    } else {
        snprintf(out, outlen, "5.7.1 %s", rest);
        *status = 5;
    }
}

/* --- tables --- */

static int param_set(const char *value)
{
    return value && *value;
}

int hc_headers_enabled(void)
{
    return param_set(var.header_checks) || param_set(var.mime_header_checks) ||
           param_set(var.nested_header_checks);
}

int hc_body_enabled(void)
{
    return param_set(var.body_checks) || param_set(var.mime_header_checks) ||
           param_set(var.nested_header_checks);
}

int hc_is_mime_header(const char *name, size_t len)
{
    return (len >= 8 && strncasecmp(name, "Content-", 8) == 0) ||
           (len == 12 && strncasecmp(name, "MIME-Version", 12) == 0);
}

static enum param_id table_for(enum hc_class cls, const char *text, size_t len)
{
    if (cls == HC_BODY)
        return PARAM_body_checks;
    size_t nlen = header_name_trim(text, header_name_len(text, len));
    int mime = nlen && hc_is_mime_header(text, nlen);
    if (cls == HC_PART_HEADER || mime)
        return PARAM_mime_header_checks;
    return cls == HC_NESTED_HEADER ? PARAM_nested_header_checks : PARAM_header_checks;
}

int hc_check(enum hc_class cls, const char *text, size_t len, struct hc_result *r)
{
    enum param_id param = table_for(cls, text, len);
    int failed;
    r->action = HC_DUNNO;
    r->text[0] = 0;
    if (len == 0)
        return LOOKUP_NOTFOUND;
    struct lookup_list *l = rewrite_param_maps(param, &failed);
    if (!l)
        return failed ? LOOKUP_TEMPFAIL : LOOKUP_NOTFOUND;
    char *key = strndup(text, len), *value = NULL;
    if (!key)
        msg_fatal("out of memory");
    int rc = lookup_list_get(l, key, &value);
    free(key);
    if (rc == LOOKUP_FOUND)
        hc_parse_action(value, r);
    else if (rc == LOOKUP_TEMPFAIL)
        msg_warn("%s map lookup problem", config_name(param));
    free(value);
    return rc;
}

/* --- logging --- */

static size_t append(char *out, size_t outlen, size_t o, const char *fmt, const char *s)
{
    if (o >= outlen)
        return o;
    int n = snprintf(out + o, outlen - o, fmt, s);
    return n < 0 ? o : o + (size_t)n;
}

void hc_format_log(char *out, size_t outlen, const struct hc_log_info *info, const char *word,
                   const char *what, const char *content, size_t len, const char *text)
{
    char shown[LOG_CONTENT_MAX + 1];
    size_t n = len < LOG_CONTENT_MAX ? len : LOG_CONTENT_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)content[i];
        shown[i] = c < ' ' || c == 0x7f ? ' ' : (char)c;
    }
    shown[n] = 0;
    if (outlen == 0)
        return;
    int w = snprintf(out, outlen, "%s: %s: %s %s from %s;", info->queue_id, word, what, shown,
                     info->client ? info->client : "unknown");
    size_t o = w < 0 ? 0 : (size_t)w;
    if (info->sender)
        o = append(out, outlen, o, " from=<%s>", info->sender);
    if (info->rcpt)
        o = append(out, outlen, o, " to=<%s>", info->rcpt);
    if (info->proto && *info->proto)
        o = append(out, outlen, o, " proto=%s", info->proto);
    if (info->helo && *info->helo)
        o = append(out, outlen, o, " helo=<%s>", info->helo);
    if (text && *text)
        append(out, outlen, o, ": %s", text);
}

/* --- MIME --- */

static const char *skip_cfws(const char *p, const char *end)
{
    while (p < end) {
        if (isspace((unsigned char)*p)) {
            p++;
        } else if (*p == '(') {
            int depth = 0;
            for (; p < end; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                else if (*p == '(')
                    depth++;
                else if (*p == ')' && --depth == 0) {
                    p++;
                    break;
                }
            }
        } else {
            break;
        }
    }
    return p;
}

/* The boundary parameter among the "; name=value" parameters at p. */
static int find_boundary(const char *p, const char *end, char *boundary, size_t blen)
{
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi)
            return 0;
        p = skip_cfws(semi + 1, end);
        const char *name = p;
        while (p < end && *p != '=' && *p != ';' && !isspace((unsigned char)*p))
            p++;
        size_t nlen = (size_t)(p - name);
        p = skip_cfws(p, end);
        if (p >= end || *p != '=')
            continue;
        p = skip_cfws(p + 1, end);
        if (nlen != 8 || strncasecmp(name, "boundary", 8) != 0)
            continue;
        size_t o = 0;
        if (p < end && *p == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                if (o + 1 >= blen)
                    return 0;
                boundary[o++] = *p;
            }
        } else {
            for (; p < end && *p != ';' && !isspace((unsigned char)*p); p++) {
                if (o + 1 >= blen)
                    return 0;
                boundary[o++] = *p;
            }
        }
        boundary[o] = 0;
        return o > 0;
    }
    return 0;
}

enum hc_mime_kind hc_content_type(const char *text, size_t len, char *boundary, size_t blen)
{
    const char *end = text + len;
    const char *p = memchr(text, ':', len);
    if (!p)
        return HC_MIME_OTHER;
    p = skip_cfws(p + 1, end);
    const char *type = p;
    while (p < end && *p != ';' && !isspace((unsigned char)*p) && *p != '(')
        p++;
    size_t tlen = (size_t)(p - type);
    if (tlen == 14 && strncasecmp(type, "message/rfc822", 14) == 0)
        return HC_MIME_MESSAGE;
    if (tlen > 10 && strncasecmp(type, "multipart/", 10) == 0 &&
        find_boundary(p, end, boundary, blen))
        return HC_MIME_MULTIPART;
    return HC_MIME_OTHER;
}

/* --- the body walker --- */

enum walk_mode { W_BODY, W_HEADERS };

struct hc_body {
    struct hc_body_hooks h;
    int checking;               /* inspection still on */
    int body_checks;            /* body_checks configured */
    long long seg_limit, seg_used;
    /* the physical line being assembled */
    char *line;
    size_t line_len, line_max;
    int at_bol;                 /* the next piece starts a physical line */
    int piece_in_header;        /* the current line's first piece was a header's */
    /* MIME state */
    char *bounds[MIME_DEPTH_MAX];
    size_t nbounds;
    enum walk_mode mode;
    enum hc_class hdr_class;    /* HC_PART_HEADER or HC_NESTED_HEADER */
    enum hc_mime_kind part_kind;
    char part_boundary[BOUNDARY_MAX];
    /* the logical header being assembled (W_HEADERS) */
    char *hdr;
    size_t hdr_len, hdr_max;
    int hdr_raw;                /* too long: the rest of it passes uninspected */
    /* batched output */
    char out[OUT_BUF_SIZE];
    size_t out_len;
};

static void out_flush(struct hc_body *b)
{
    if (b->out_len) {
        b->h.out(b->h.ctx, b->out, b->out_len);
        b->out_len = 0;
    }
}

static void emit(struct hc_body *b, const char *data, size_t len)
{
    if (len > sizeof(b->out) - b->out_len) {
        out_flush(b);
        if (len > sizeof(b->out)) {
            b->h.out(b->h.ctx, data, len);
            return;
        }
    }
    memcpy(b->out + b->out_len, data, len);
    b->out_len += len;
}

static void emit_line(struct hc_body *b, const char *p, size_t n, int nl)
{
    emit(b, p, n);
    if (nl)
        emit(b, "\n", 1);
}

static void report_tempfail(struct hc_body *b)
{
    if (b->h.tempfail(b->h.ctx))
        b->checking = 0;
}

/* Output p[0..n) (plus a newline) as the action r says. */
static void apply(struct hc_body *b, const struct hc_result *r, const char *p, size_t n, int nl)
{
    switch (r->action) {
    case HC_IGNORE:
    case HC_STRIP:
        return;
    case HC_REPLACE:
        emit_line(b, r->text, strlen(r->text), 1);
        return;
    case HC_PREPEND:
        emit_line(b, r->text, strlen(r->text), 1);
        break;
    default:
        break;
    }
    emit_line(b, p, n, nl);
}

/* Check one input and output it, edited as its action says. */
static void inspect(struct hc_body *b, enum hc_class cls, const char *p, size_t n, int nl)
{
    struct hc_result r;
    int rc = hc_check(cls, p, n, &r);
    if (rc == LOOKUP_TEMPFAIL)
        report_tempfail(b);
    if (rc != LOOKUP_FOUND || r.action == HC_DUNNO) {
        emit_line(b, p, n, nl);
        return;
    }
    int stop = b->h.matched(b->h.ctx, cls == HC_BODY ? "body" : "header", p, n, &r);
    apply(b, &r, p, n, nl);
    if (stop)
        b->checking = 0;
}

static void body_line(struct hc_body *b, const char *p, size_t n, int nl)
{
    int inspect_it = b->checking && b->body_checks && b->seg_used < b->seg_limit;
    b->seg_used += (long long)(n + (nl ? 1 : 0));
    if (inspect_it)
        inspect(b, HC_BODY, p, n, nl);
    else
        emit_line(b, p, n, nl);
}

static void push_boundary(struct hc_body *b, const char *boundary)
{
    if (b->nbounds >= MIME_DEPTH_MAX)
        return;   /* deeper parts are inspected as plain body */
    b->bounds[b->nbounds] = strdup(boundary);
    if (!b->bounds[b->nbounds])
        msg_fatal("out of memory");
    b->nbounds++;
}

static void pop_boundaries(struct hc_body *b, size_t keep)
{
    while (b->nbounds > keep)
        free(b->bounds[--b->nbounds]);
}

/* "--boundary" or "--boundary--" (trailing white space allowed) of an
 * enclosing multipart: the part it starts or the multipart it ends. */
static void boundary_line(struct hc_body *b, const char *p, size_t n)
{
    if (n < 3 || p[0] != '-' || p[1] != '-')
        return;
    for (size_t i = b->nbounds; i-- > 0;) {
        size_t blen = strlen(b->bounds[i]);
        if (n < 2 + blen || memcmp(p + 2, b->bounds[i], blen) != 0)
            continue;
        const char *rest = p + 2 + blen, *end = p + n;
        int closing = end - rest >= 2 && rest[0] == '-' && rest[1] == '-';
        for (rest += closing ? 2 : 0; rest < end && isspace((unsigned char)*rest); rest++)
            ;
        if (rest != end)
            continue;
        pop_boundaries(b, closing ? i : i + 1);
        b->seg_used = 0;
        if (!closing) {
            b->mode = W_HEADERS;
            b->hdr_class = HC_PART_HEADER;
            b->part_kind = HC_MIME_OTHER;
        }
        return;
    }
}

/* The headers of a part or an attached message ended: what follows is
 * its body (a multipart's preamble, or an attached message's headers). */
static void end_of_headers(struct hc_body *b)
{
    enum hc_mime_kind kind = b->part_kind;
    b->part_kind = HC_MIME_OTHER;
    b->mode = W_BODY;
    b->seg_used = 0;
    if (kind == HC_MIME_MULTIPART)
        push_boundary(b, b->part_boundary);
    else if (kind == HC_MIME_MESSAGE) {
        b->mode = W_HEADERS;
        b->hdr_class = HC_NESTED_HEADER;
    }
}

static void hdr_append(struct hc_body *b, const char *p, size_t n, int nl)
{
    size_t need = n + (nl ? 1 : 0);
    if (b->hdr_raw || b->hdr_len + need > b->hdr_max) {
        /* Too long to inspect: out it goes as it is. */
        emit(b, b->hdr, b->hdr_len);
        b->hdr_len = 0;
        b->hdr_raw = 1;
        emit_line(b, p, n, nl);
        return;
    }
    memcpy(b->hdr + b->hdr_len, p, n);
    b->hdr_len += n;
    if (nl)
        b->hdr[b->hdr_len++] = '\n';
}

static void flush_header(struct hc_body *b)
{
    size_t len = b->hdr_len;
    b->hdr_raw = 0;
    if (len == 0)
        return;
    b->hdr_len = 0;
    int nl = b->hdr[len - 1] == '\n';
    size_t tlen = nl ? len - 1 : len;
    if (header_is(b->hdr, header_name_len(b->hdr, tlen), "Content-Type"))
        b->part_kind = hc_content_type(b->hdr, tlen, b->part_boundary, sizeof(b->part_boundary));
    if (b->checking)
        inspect(b, b->hdr_class, b->hdr, tlen, nl);
    else
        emit(b, b->hdr, len);
}

static void body_piece(struct hc_body *b, const char *p, size_t n, int nl, int bol)
{
    body_line(b, p, n, nl);
    if (bol && b->nbounds)
        boundary_line(b, p, n);
}

/* One piece of a physical line in the headers of a part or attached
 * message: a continuation joins the logical header, an empty line or a
 * line that is no header ends the headers. */
static void header_piece(struct hc_body *b, const char *p, size_t n, int nl, int bol)
{
    if (!bol) {
        if (b->piece_in_header)
            hdr_append(b, p, n, nl);
        else
            body_piece(b, p, n, nl, bol);
        return;
    }
    if ((b->hdr_len > 0 || b->hdr_raw) && n > 0 && (p[0] == ' ' || p[0] == '\t')) {
        b->piece_in_header = 1;
        hdr_append(b, p, n, nl);
        return;
    }
    flush_header(b);
    if (n == 0 && nl) {
        b->piece_in_header = 0;
        emit(b, "\n", 1);
        end_of_headers(b);
        return;
    }
    if (header_name_len(p, n) > 0) {
        b->piece_in_header = 1;
        hdr_append(b, p, n, nl);
        return;
    }
    b->piece_in_header = 0;
    end_of_headers(b);
    if (b->mode == W_HEADERS)
        header_piece(b, p, n, nl, bol);   /* an attached message starts here */
    else
        body_piece(b, p, n, nl, bol);
}

static void piece(struct hc_body *b, const char *p, size_t n, int nl)
{
    int bol = b->at_bol;
    b->at_bol = nl;
    if (b->mode == W_HEADERS)
        header_piece(b, p, n, nl, bol);
    else
        body_piece(b, p, n, nl, bol);
}

struct hc_body *hc_body_new(const struct hc_body_hooks *hooks, enum hc_mime_kind kind,
                            const char *boundary)
{
    struct hc_body *b = calloc(1, sizeof(*b));
    long line_max = var.line_length_limit;
    long long hdr_max = var.header_size_limit;
    if (!b)
        msg_fatal("out of memory");
    b->h = *hooks;
    b->checking = 1;
    b->body_checks = param_set(var.body_checks);
    b->seg_limit = var.body_checks_size_limit;
    b->line_max = line_max < LINE_LIMIT_MIN ? LINE_LIMIT_MIN : (size_t)line_max;
    b->hdr_max = hdr_max < (long long)b->line_max ? b->line_max : (size_t)hdr_max;
    b->line = malloc(b->line_max);
    b->hdr = malloc(b->hdr_max);
    if (!b->line || !b->hdr)
        msg_fatal("out of memory");
    b->at_bol = 1;
    b->mode = W_BODY;
    if (kind == HC_MIME_MULTIPART && boundary)
        push_boundary(b, boundary);
    else if (kind == HC_MIME_MESSAGE) {
        b->mode = W_HEADERS;
        b->hdr_class = HC_NESTED_HEADER;
    }
    return b;
}

void hc_body_feed(struct hc_body *b, const char *data, size_t len)
{
    while (len > 0) {
        if (!b->checking && b->line_len == 0 && b->hdr_len == 0) {
            emit(b, data, len);   /* inspection is over: pass it all */
            return;
        }
        const char *nl = memchr(data, '\n', len);
        size_t upto = nl ? (size_t)(nl - data) : len;
        size_t room = b->line_max - b->line_len;
        size_t take = upto < room ? upto : room;
        memcpy(b->line + b->line_len, data, take);
        b->line_len += take;
        data += take;
        len -= take;
        if (nl && take == upto) {
            data++;
            len--;
            piece(b, b->line, b->line_len, 1);
            b->line_len = 0;
        } else if (b->line_len == b->line_max) {
            piece(b, b->line, b->line_len, 0);
            b->line_len = 0;
        }
    }
}

void hc_body_finish(struct hc_body *b)
{
    if (b->line_len > 0) {
        piece(b, b->line, b->line_len, 0);
        b->line_len = 0;
    }
    flush_header(b);
    out_flush(b);
}

void hc_body_free(struct hc_body *b)
{
    if (!b)
        return;
    pop_boundaries(b, 0);
    free(b->line);
    free(b->hdr);
    free(b);
}
