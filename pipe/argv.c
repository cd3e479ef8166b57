/* argv.c - a pipe service's argv= with its macros expanded for one request
 * (pipe.h), as pipe(8) does it:
 *
 *   ${sender}               the envelope sender; the null sender is
 *                           null_sender= (MAILER-DAEMON by default)
 *   ${recipient}            each recipient
 *   ${original_recipient}   each recipient as it was given to us
 *   ${mailbox} ${user} ${extension}   each recipient's local part, the
 *                           part before recipient_delimiter and after it
 *   ${domain}               each recipient's domain
 *   ${nexthop} ${queue_id} ${size}
 *   ${client_address} ${client_hostname} ${client_helo} ${client_port}
 *   ${client_protocol} ${sasl_method} ${sasl_username} ${sasl_sender}
 *                           from the queue file's envelope ("" when absent)
 *
 * Flags change them: q quotes the local parts of sender and recipients
 * that need it ("x y"@example), u folds recipient local parts (and user,
 * extension, mailbox) to lower case, h domains and the nexthop. Nothing
 * here goes through a shell: each word is one argument, whatever it holds.
 */
#include "pipe.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "config.h"
#include "deliver_request.h"
#include "log.h"
#include "queue_file.h"
#include "record.h"

#define VALUE_MAX (2 * ADDRESS_MAX + 8)

/* The word being built, bounded. */
struct word {
    struct strbuf b;
    int too_long;
};

struct walk_ctx {
    const struct pipe_expand *x;
    size_t rcpt;                   /* whose per-recipient macros */
    struct word w;
    int per_recipient;             /* the word has such a macro */
};

static int word_add(struct word *w, const char *s, size_t n)
{
    if (w->b.len + n >= PIPE_ARG_MAX) {
        w->too_long = 1;
        return -1;
    }
    strbuf_add(&w->b, s, n);
    return 0;
}

static void lower(char *s, size_t n)
{
    for (size_t i = 0; i < n && s[i] != 0; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
}

/* An address with the u, h and q flags applied, into out. */
static const char *address_value(const char *address, int flags, char *out, size_t len)
{
    char folded[ADDRESS_MAX];

    /* The request's addresses are shorter than ADDRESS_MAX; split the copy
     * all the same, so a longer one could only be cut, never overrun. */
    snprintf(folded, sizeof(folded), "%s", address);
    const char *at = strrchr(folded, '@');
    size_t local = at != NULL ? (size_t)(at - folded) : strlen(folded);
    if (flags & PIPE_FLAG_FOLD_USER)
        lower(folded, local);
    if ((flags & PIPE_FLAG_FOLD_HOST) && at != NULL)
        lower(folded + local, sizeof(folded) - local);
    if ((flags & PIPE_FLAG_QUOTE) && address_quote(folded, out, len) == 0)
        return out;
    snprintf(out, len, "%s", folded);
    return out;
}

static const char *sender_value(const struct pipe_expand *x, char *out, size_t len)
{
    const char *sender = x->m->sender;

    /* The replacement is quoted like an address, unless it is empty. */
    if (*sender == 0)
        sender = x->pa->null_sender;
    if (*sender == 0 || !(x->pa->flags & PIPE_FLAG_QUOTE) || address_quote(sender, out, len) < 0)
        snprintf(out, len, "%s", sender);
    return out;
}

/* Where recipient_delimiter splits a local part: its length when there
 * is no delimiter, or one at the very start (that is no extension). */
static size_t user_length(const char *local)
{
    const char *delims = var.recipient_delimiter;
    size_t cut = delims != NULL && *delims != 0 ? strcspn(local, delims) : strlen(local);

    return cut > 0 ? cut : strlen(local);
}

/* ${user}, ${extension}, ${mailbox}: pieces of the local part, u folded. */
static const char *local_value(const char *address, enum pipe_macro m, int flags, char *out,
                               size_t len)
{
    char local[ADDRESS_MAX];

    if (address_localpart(address, local, sizeof(local)) < 0)
        local[0] = 0;
    if (flags & PIPE_FLAG_FOLD_USER)
        lower(local, sizeof(local));
    size_t cut = user_length(local);
    if (m == PIPE_M_USER)
        snprintf(out, len, "%.*s", (int)cut, local);
    else if (m == PIPE_M_EXTENSION)
        snprintf(out, len, "%s", local[cut] != 0 ? local + cut + 1 : "");
    else
        snprintf(out, len, "%s", local);
    return out;
}

static const char *folded_host(const char *host, int flags, char *out, size_t len)
{
    snprintf(out, len, "%s", host != NULL ? host : "");
    if (flags & PIPE_FLAG_FOLD_HOST)
        lower(out, len);
    return out;
}

static const char *envelope_value(const struct pipe_expand *x, const char *name)
{
    const char *v = x->m->env != NULL ? queue_envelope_attr(x->m->env, name) : NULL;
    return v != NULL ? v : "";
}

static const char *recipient_macro(const struct walk_ctx *c, enum pipe_macro m, char *out,
                                   size_t len)
{
    const struct pipe_expand *x = c->x;
    const char *rcpt = x->rcpt[c->rcpt], *orig = x->orig[c->rcpt];
    int flags = x->pa->flags;

    switch (m) {
    case PIPE_M_RECIPIENT: return address_value(rcpt, flags, out, len);
    case PIPE_M_ORIGINAL_RECIPIENT: return address_value(orig, flags, out, len);
    case PIPE_M_DOMAIN: return folded_host(address_domain(rcpt), flags, out, len);
    default: return local_value(rcpt, m, flags, out, len);
    }
}

static const char *macro_value(const struct walk_ctx *c, enum pipe_macro m, char *out,
                               size_t len)
{
    const struct pipe_expand *x = c->x;

    if (pipe_macro_per_recipient(m))
        return recipient_macro(c, m, out, len);
    switch (m) {
    case PIPE_M_SENDER: return sender_value(x, out, len);
    case PIPE_M_NEXTHOP:
        return folded_host(x->req != NULL ? x->req->nexthop : NULL, x->pa->flags, out, len);
    case PIPE_M_QUEUE_ID: return x->m->queue_id;
    case PIPE_M_SIZE:
        snprintf(out, len, "%lld", x->m->env != NULL ? x->m->env->content_size : 0LL);
        return out;
    case PIPE_M_CLIENT_ADDRESS: return envelope_value(x, ATTR_CLIENT_ADDR);
    case PIPE_M_CLIENT_HELO: return envelope_value(x, ATTR_HELO);
    case PIPE_M_CLIENT_HOSTNAME: return envelope_value(x, ATTR_CLIENT_NAME);
    case PIPE_M_CLIENT_PORT: return envelope_value(x, ATTR_CLIENT_PORT);
    case PIPE_M_CLIENT_PROTOCOL: return envelope_value(x, ATTR_PROTOCOL);
    case PIPE_M_SASL_METHOD: return envelope_value(x, ATTR_SASL_METHOD);
    case PIPE_M_SASL_USERNAME: return envelope_value(x, ATTR_SASL_USER);
    case PIPE_M_SASL_SENDER: return envelope_value(x, "sasl_sender");
    default: return "";
    }
}

static int on_literal(void *ctx, const char *text, size_t len)
{
    struct walk_ctx *c = ctx;
    return word_add(&c->w, text, len);
}

static int on_macro(void *ctx, enum pipe_macro m)
{
    struct walk_ctx *c = ctx;
    char buf[VALUE_MAX];
    const char *v = macro_value(c, m, buf, sizeof(buf));
    return word_add(&c->w, v, strlen(v));
}

static int note_macro(void *ctx, enum pipe_macro m)
{
    struct walk_ctx *c = ctx;
    c->per_recipient |= pipe_macro_per_recipient(m);
    return 0;
}

/* The growing vector. */
struct vector {
    char **v;
    size_t n, cap, bytes;
};

static int vector_add(struct vector *vec, char *word, size_t len, char *err, size_t errlen)
{
    if ((vec->bytes += len + 1) > PIPE_ARGV_BYTES_MAX) {
        snprintf(err, errlen, "command line longer than %d bytes", PIPE_ARGV_BYTES_MAX);
        free(word);
        return -1;
    }
    if (vec->n + 2 > vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 16;
        char **p = realloc(vec->v, cap * sizeof(*p));
        if (p == NULL)
            msg_fatal("out of memory");
        vec->v = p;
        vec->cap = cap;
    }
    vec->v[vec->n++] = word;
    vec->v[vec->n] = NULL;
    return 0;
}

/* One template word, for recipient rcpt, onto vec. */
static int expand_word(const struct pipe_expand *x, const char *tmpl, size_t rcpt,
                       struct vector *vec, char *err, size_t errlen)
{
    struct walk_ctx c = {.x = x, .rcpt = rcpt};
    struct pipe_template_walk w = {.literal = on_literal, .macro = on_macro, .ctx = &c};

    word_add(&c.w, "", 0);   /* an empty word is an argument too */
    if (pipe_template_walk(tmpl, &w, err, errlen) < 0) {
        if (c.w.too_long)
            snprintf(err, errlen, "command argument longer than %d bytes", PIPE_ARG_MAX);
        strbuf_free(&c.w.b);
        return -1;
    }
    return vector_add(vec, c.w.b.s, c.w.b.len, err, errlen);
}

static int has_recipient_macro(const char *tmpl)
{
    struct walk_ctx c = {0};
    struct pipe_template_walk w = {.macro = note_macro, .ctx = &c};
    char err[8];

    return pipe_template_walk(tmpl, &w, err, sizeof(err)) == 0 && c.per_recipient;
}

char **pipe_argv_expand(const struct pipe_expand *x, char *err, size_t errlen)
{
    struct vector vec = {0};

    for (size_t i = 0; i < x->pa->argc; i++) {
        const char *tmpl = x->pa->argv[i];
        size_t n = has_recipient_macro(tmpl) ? x->nrcpt : 1;
        for (size_t r = 0; r < n; r++) {
            if (expand_word(x, tmpl, r, &vec, err, errlen) < 0) {
                pipe_argv_free(vec.v);
                return NULL;
            }
        }
    }
    if (vec.n == 0 || vec.v[0][0] == 0) {
        snprintf(err, errlen, "the command name is empty");
        pipe_argv_free(vec.v);
        return NULL;
    }
    return vec.v;
}

void pipe_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (size_t i = 0; argv[i] != NULL; i++)
        free(argv[i]);
    free(argv);
}
