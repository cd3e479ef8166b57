/* addrlist.c - lenient RFC 5322 address-list parsing (addrlist.h).
 *
 * Two steps: the text is cut into tokens (atoms, quoted strings, domain
 * literals, special characters; comments and white space vanish), then the
 * tokens are cut into list members at commas and semicolons outside angle
 * brackets, and each member yields at most one address: what is inside
 * <...> if there is one, else the whole member.
 */
#include "addrlist.h"

#include <stdlib.h>
#include <string.h>

enum tok_type { TOK_ATOM, TOK_QSTRING, TOK_LITERAL, TOK_SPECIAL };

struct token {
    enum tok_type type;
    char ch;             /* TOK_SPECIAL: the character; quoted: 1 if closed */
    size_t start, end;   /* bytes of the token in the text */
};

struct tokens {
    struct token *v;
    size_t n, cap;
};

static int is_special(unsigned char c)
{
    return c && strchr("()<>@,;:\\\".[]", c) != NULL;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int tokens_add(struct tokens *t, enum tok_type type, char ch, size_t start, size_t end)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct token *v = realloc(t->v, cap * sizeof(*v));
        if (!v)
            return -1;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = (struct token){.type = type, .ch = ch, .start = start, .end = end};
    return 0;
}

/* Index just past a quoted string or domain literal opened at text[i];
 * *closed says whether the closing character was found (an unterminated
 * one runs to the end of the text). Backslash quotes the next byte. */
static size_t skip_quoted(const char *text, size_t len, size_t i, char close, int *closed)
{
    *closed = 0;
    for (i++; i < len; i++) {
        if (text[i] == '\\') {
            i++;
            continue;
        }
        if (text[i] == close) {
            *closed = 1;
            return i + 1;
        }
    }
    return len;
}

/* Index just past a (possibly nested) comment opened at text[i]. */
static size_t skip_comment(const char *text, size_t len, size_t i)
{
    int depth = 0;
    for (; i < len; i++) {
        if (text[i] == '\\') {
            i++;
            continue;
        }
        if (text[i] == '(')
            depth++;
        else if (text[i] == ')' && --depth == 0)
            return i + 1;
    }
    return len;
}

static size_t skip_atom(const char *text, size_t len, size_t i)
{
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        /* A quoted-pair escapes a visible character or a blank, never a
         * line end (RFC 5322 3.2.1). */
        if (c == '\\' && i + 1 < len && text[i + 1] != '\r' && text[i + 1] != '\n') {
            i += 2;
            continue;
        }
        if (is_space(c) || is_special(c))
            break;
        i++;
    }
    return i;
}

static int tokenize(const char *text, size_t len, struct tokens *t)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        size_t end;
        int rc = 0;
        if (is_space(c) || c == 0) {
            i++;
            continue;
        }
        if (c == '(') {
            i = skip_comment(text, len, i);
            continue;
        }
        if (c == '"' || c == '[') {
            int closed;
            end = skip_quoted(text, len, i, c == '"' ? '"' : ']', &closed);
            /* An unterminated one stops before trailing white space (a
             * header's line end): a caller appending "@domain" after the
             * span must stay inside the header. */
            while (!closed && end > i + 1 && is_space((unsigned char)text[end - 1]))
                end--;
            rc = tokens_add(t, c == '"' ? TOK_QSTRING : TOK_LITERAL, (char)closed, i, end);
        } else if (c == '\\' || !is_special(c)) {
            end = skip_atom(text, len, i);
            if (end == i)
                end = i + 1;
            rc = tokens_add(t, TOK_ATOM, 0, i, end);
        } else {
            end = i + 1;
            rc = tokens_add(t, TOK_SPECIAL, (char)c, i, end);
        }
        if (rc < 0)
            return -1;
        i = end;
    }
    return 0;
}

static int is_tok(const struct token *tk, char ch)
{
    return tk->type == TOK_SPECIAL && tk->ch == ch;
}

/* Append the bytes of a token to out in internal form: quotes and
 * backslashes removed from quoted strings and atoms. -1 if it overflows. */
static int append_token(const char *text, const struct token *tk, char *out, size_t *o)
{
    size_t from = tk->start, to = tk->end;
    int unquote = tk->type == TOK_QSTRING || tk->type == TOK_ATOM;
    if (tk->type == TOK_QSTRING) {
        from++;
        if (tk->ch)
            to--;   /* the closing quote */
    }
    for (size_t i = from; i < to; i++) {
        char c = text[i];
        if (unquote && c == '\\' && i + 1 < to)
            c = text[++i];
        if ((unsigned char)c < ' ' || c == 0x7f)
            continue;   /* control bytes never reach an envelope */
        if (*o + 1 >= ADDRESS_MAX)
            return -1;
        out[(*o)++] = c;
    }
    return 0;
}

/* The addr-spec tokens of member tokens [a, b): inside <...> when present
 * (without a source route), else all of them. */
static void member_addr_range(const struct token *v, size_t a, size_t b, size_t *r0, size_t *r1)
{
    *r0 = a;
    *r1 = b;
    for (size_t i = a; i < b; i++) {
        if (!is_tok(&v[i], '<'))
            continue;
        size_t j = i + 1;
        while (j < b && !is_tok(&v[j], '>'))
            j++;
        *r0 = i + 1;
        *r1 = j;
        if (*r0 < *r1 && is_tok(&v[*r0], '@')) {
            size_t k = *r0;
            while (k < *r1 && !is_tok(&v[k], ':'))
                k++;
            *r0 = k < *r1 ? k + 1 : *r1;
        }
        return;
    }
}

/* One list member: build its address and hand it to fn. Returns 1 when
 * an address was reported, 0 when the member was empty, 2 to stop. */
static int member(const char *text, const struct token *v, size_t a, size_t b,
                  addrlist_fn fn, void *ctx)
{
    size_t r0, r1, at = (size_t)-1, o = 0;
    member_addr_range(v, a, b, &r0, &r1);
    if (r0 >= r1)
        return 0;
    for (size_t i = r0; i < r1; i++)
        if (is_tok(&v[i], '@'))
            at = i;
    struct addrlist_item item = {.start = v[r0].start, .end = v[r1 - 1].end,
                                 .qualified = at != (size_t)-1};
    for (size_t i = r0; i < r1; i++)
        if (append_token(text, &v[i], item.address, &o) < 0)
            return 0;   /* too long: skipped, as documented */
    item.address[o] = 0;
    if (o == 0)
        return 0;
    return fn(&item, ctx) ? 2 : 1;
}

int addrlist_parse(const char *text, size_t len, addrlist_fn fn, void *ctx)
{
    struct tokens t = {0};
    if (tokenize(text, len, &t) < 0) {
        free(t.v);
        return -1;
    }
    int count = 0, in_angle = 0, angle_seen = 0;
    size_t start = 0;
    for (size_t i = 0; i <= t.n; i++) {
        int boundary = i == t.n;
        if (!boundary) {
            const struct token *tk = &t.v[i];
            if (is_tok(tk, '<')) {
                in_angle = angle_seen = 1;
            } else if (is_tok(tk, '>')) {
                in_angle = 0;
            } else if (!in_angle && is_tok(tk, ':') && !angle_seen) {
                start = i + 1;   /* "group name:" is not an address */
                continue;
            } else if (!in_angle && (is_tok(tk, ',') || is_tok(tk, ';'))) {
                boundary = 1;
            }
        }
        if (!boundary)
            continue;
        int r = member(text, t.v, start, i, fn, ctx);
        if (r > 0)
            count++;
        if (r == 2)
            break;
        start = i + 1;
        in_angle = angle_seen = 0;
    }
    free(t.v);
    return count;
}
