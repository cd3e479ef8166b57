/* pipe_args.c - parsing a pipe service's command attributes and the
 * macros of its argv= (pipe_args.h).
 *
 * Every check that can fail on the text of master.cf is here, so master
 * can refuse the line once instead of the agent dying on every request;
 * what can only be known per message (an address, the size) is the
 * agent's.
 */
#include "pipe_args.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE_DIGITS_MAX 18

static const char *const macro_names[PIPE_M_COUNT] = {
    [PIPE_M_CLIENT_ADDRESS] = "client_address",
    [PIPE_M_CLIENT_HELO] = "client_helo",
    [PIPE_M_CLIENT_HOSTNAME] = "client_hostname",
    [PIPE_M_CLIENT_PORT] = "client_port",
    [PIPE_M_CLIENT_PROTOCOL] = "client_protocol",
    [PIPE_M_DOMAIN] = "domain",
    [PIPE_M_EXTENSION] = "extension",
    [PIPE_M_MAILBOX] = "mailbox",
    [PIPE_M_NEXTHOP] = "nexthop",
    [PIPE_M_ORIGINAL_RECIPIENT] = "original_recipient",
    [PIPE_M_QUEUE_ID] = "queue_id",
    [PIPE_M_RECIPIENT] = "recipient",
    [PIPE_M_SASL_METHOD] = "sasl_method",
    [PIPE_M_SASL_SENDER] = "sasl_sender",
    [PIPE_M_SASL_USERNAME] = "sasl_username",
    [PIPE_M_SENDER] = "sender",
    [PIPE_M_SIZE] = "size",
    [PIPE_M_USER] = "user",
};

static const struct {
    char letter;
    int flag;
} flag_letters[] = {
    {'B', PIPE_FLAG_BLANK_END}, {'D', PIPE_FLAG_DELIVERED_TO}, {'F', PIPE_FLAG_FROM_LINE},
    {'O', PIPE_FLAG_ORIG_TO},   {'R', PIPE_FLAG_RETURN_PATH},  {'X', PIPE_FLAG_FINAL},
    {'h', PIPE_FLAG_FOLD_HOST}, {'q', PIPE_FLAG_QUOTE},        {'u', PIPE_FLAG_FOLD_USER},
    {'.', PIPE_FLAG_DOT},       {'>', PIPE_FLAG_QUOTE_FROM},
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A byte of master.cf text fit for a one-line message. */
static char shown_char(char c)
{
    return c > 0x20 && c < 0x7f ? c : '?';
}

const char *pipe_macro_name(enum pipe_macro m)
{
    return m >= 0 && m < PIPE_M_COUNT ? macro_names[m] : "?";
}

int pipe_macro_per_recipient(enum pipe_macro m)
{
    return m == PIPE_M_RECIPIENT || m == PIPE_M_ORIGINAL_RECIPIENT || m == PIPE_M_USER
           || m == PIPE_M_EXTENSION || m == PIPE_M_MAILBOX || m == PIPE_M_DOMAIN;
}

/* --- attributes ---------------------------------------------------------- */

static int parse_flags(const char *value, int *flags, char *err, size_t errlen)
{
    for (const char *p = value; *p != 0; p++) {
        size_t i;
        for (i = 0; i < sizeof(flag_letters) / sizeof(flag_letters[0]); i++)
            if (flag_letters[i].letter == *p)
                break;
        if (i == sizeof(flag_letters) / sizeof(flag_letters[0]))
            return fail(err, errlen, "unknown flag: %c (pipe(8) has BDFORXhqu.>)",
                        shown_char(*p));
        *flags |= flag_letters[i].flag;
    }
    return 0;
}

static int parse_user(const char *value, struct pipe_args *pa, char *err, size_t errlen)
{
    const char *colon = strchr(value, ':');
    size_t ulen = colon != NULL ? (size_t)(colon - value) : strlen(value);

    if (ulen == 0)
        return fail(err, errlen, "user= needs a user name");
    if (ulen >= sizeof(pa->user) || (colon != NULL && strlen(colon + 1) >= sizeof(pa->group)))
        return fail(err, errlen, "user= name too long");
    if (colon != NULL && colon[1] == 0)
        return fail(err, errlen, "user= has an empty group name after ':'");
    snprintf(pa->user, sizeof(pa->user), "%.*s", (int)ulen, value);
    snprintf(pa->group, sizeof(pa->group), "%s", colon != NULL ? colon + 1 : "");
    return 0;
}

static int parse_size(const char *value, long long *limit, char *err, size_t errlen)
{
    long long n = 0;
    int digits = 0;

    for (const char *p = value; *p != 0; p++) {
        if (*p < '0' || *p > '9' || ++digits > SIZE_DIGITS_MAX)
            return fail(err, errlen, "size= needs a number of bytes");
        n = n * 10 + (*p - '0');
    }
    if (digits == 0)
        return fail(err, errlen, "size= needs a number of bytes");
    *limit = n;
    return 0;
}

/* One C escape after a backslash at *p (advanced past it) into *out. */
static int eol_escape(const char **p, char *out)
{
    static const char from[] = "abfnrtv\\", to[] = "\a\b\f\n\r\t\v\\";
    const char *hit = **p != 0 ? strchr(from, **p) : NULL;

    if (hit != NULL) {
        *out = to[hit - from];
        (*p)++;
        return 0;
    }
    if (**p < '0' || **p > '7')
        return -1;
    int v = 0;
    for (int i = 0; i < 3 && **p >= '0' && **p <= '7'; i++, (*p)++)
        v = v * 8 + (**p - '0');
    if (v > 0xff)
        return -1;
    *out = (char)v;
    return 0;
}

/* eol=: \a \b \f \n \r \t \v \ddd and \\, as pipe(8). */
static int parse_eol(const char *value, struct pipe_args *pa, char *err, size_t errlen)
{
    size_t n = 0;

    for (const char *p = value; *p != 0;) {
        char c = *p++;
        if (c == '\\' && eol_escape(&p, &c) < 0)
            return fail(err, errlen, "eol= has a bad escape sequence");
        if (n + 1 >= sizeof(pa->eol))
            return fail(err, errlen, "eol= is too long");
        pa->eol[n++] = c;
    }
    if (n == 0)
        return fail(err, errlen, "eol= must not be empty");
    pa->eol[n] = 0;
    pa->eol_len = n;
    return 0;
}

/* argv=CMD WORD...: the last attribute, CMD the rest of its word. Every
 * macro of every word known, every brace closed; user= given before. */
static int parse_command(char *const *words, size_t n, struct pipe_args *pa, char *err,
                         size_t errlen)
{
    struct pipe_template_walk w = {0};

    if (n > PIPE_ARGV_MAX)
        return fail(err, errlen, "argv= has more than %d words", PIPE_ARGV_MAX);
    for (size_t i = 0; i < n; i++) {
        pa->argv[i] = i == 0 ? words[0] + 5 : words[i];
        if (pipe_template_walk(pa->argv[i], &w, err, errlen) < 0)
            return -1;
    }
    pa->argv[n] = NULL;
    pa->argc = n;
    if (pa->argv[0][0] == 0)
        return fail(err, errlen, "argv= needs a command right after the '='");
    if (pa->user[0] == 0)
        return fail(err, errlen, "missing user= attribute");
    return 0;
}

/* "name=value" other than argv=. */
static int parse_attribute(const char *arg, struct pipe_args *pa, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    size_t nlen = eq != NULL ? (size_t)(eq - arg) : 0;
    const char *value = eq != NULL ? eq + 1 : "";

#define IS(word) (nlen == strlen(word) && strncmp(arg, word, nlen) == 0)
    if (IS("flags"))
        return parse_flags(value, &pa->flags, err, errlen);
    if (IS("user"))
        return parse_user(value, pa, err, errlen);
    if (IS("size"))
        return parse_size(value, &pa->size_limit, err, errlen);
    if (IS("eol"))
        return parse_eol(value, pa, err, errlen);
    if (IS("directory") || IS("chroot")) {
        if (*value != '/')
            return fail(err, errlen, "%.*s= needs an absolute path", (int)nlen, arg);
        *(IS("chroot") ? &pa->chroot : &pa->directory) = value;
        return 0;
    }
    if (IS("null_sender")) {
        pa->null_sender = value;
        return 0;
    }
#undef IS
    char shown[64];
    size_t i;
    for (i = 0; i + 1 < sizeof(shown) && arg[i] != 0 && arg + i != eq; i++)
        shown[i] = shown_char(arg[i]);
    shown[i] = 0;
    return fail(err, errlen, "unknown attribute name: %s%s", shown,
                eq == NULL ? " (attributes are name=value)" : "");
}

int pipe_args_parse(char *const *args, size_t nargs, struct pipe_args *pa, char *err,
                    size_t errlen)
{
    size_t i = 0;

    memset(pa, 0, sizeof(*pa));
    pa->eol[0] = '\n';
    pa->eol_len = 1;
    pa->null_sender = "MAILER-DAEMON";
    /* master.cf's options come first; the daemon has taken them already. */
    while (i < nargs && args[i][0] == '-')
        i += strcmp(args[i], "-o") == 0 ? 2 : 1;
    for (; i < nargs; i++) {
        if (strncmp(args[i], "argv=", 5) == 0)
            return parse_command(args + i, nargs - i, pa, err, errlen);
        if (parse_attribute(args[i], pa, err, errlen) < 0)
            return -1;
    }
    return fail(err, errlen, "%s", pa->user[0] == 0 ? "missing user= attribute"
                                                    : "missing argv= attribute");
}

int pipe_args_user(const struct pipe_args *pa, int instance, const char *mail_owner,
                   uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
    struct passwd *pw;
    struct group *gr;

    if (instance) {
        *uid = getuid();
        *gid = getgid();
        return 0;
    }
    errno = 0;
    if ((pw = getpwnam(pa->user)) == NULL)
        return fail(err, errlen, "user=%s: no such user", pa->user);
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (pa->group[0] != 0) {
        if ((gr = getgrnam(pa->group)) == NULL)
            return fail(err, errlen, "user=%s:%s: no such group", pa->user, pa->group);
        *gid = gr->gr_gid;
    }
    if (*uid == 0)
        return fail(err, errlen, "user=%s: commands never run with root privileges", pa->user);
    if (*gid == 0)
        return fail(err, errlen, "user=%s: commands never run with group id 0", pa->user);
    if (mail_owner != NULL && strcmp(pa->user, mail_owner) == 0)
        return fail(err, errlen, "user=%s: commands never run as the mail system owner",
                    pa->user);
    return 0;
}

/* --- argv= macros ---------------------------------------------------------- */

static int macro_find(const char *name, size_t len)
{
    for (int m = 0; m < PIPE_M_COUNT; m++)
        if (strlen(macro_names[m]) == len && strncmp(macro_names[m], name, len) == 0)
            return m;
    return -1;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '_';
}

static int emit_literal(const struct pipe_template_walk *w, const char *text, size_t len)
{
    if (len == 0 || w->literal == NULL)
        return 0;
    return w->literal(w->ctx, text, len);
}

/* The macro whose name starts at p ("${" or "$(" already passed when
 * close is '}' or ')'; else a bare $name). *end: past it. */
static int parse_macro(const char *p, char close, const char **end, char *err, size_t errlen)
{
    const char *name = p;
    size_t len;

    if (close != 0) {
        const char *c = strchr(p, close);
        if (c == NULL)
            return fail(err, errlen, "missing '%c' in macro", close);
        len = (size_t)(c - p);
        *end = c + 1;
    } else {
        for (len = 0; is_name_char(p[len]); len++)
            ;
        *end = p + len;
    }
    int m = macro_find(name, len);
    if (m < 0) {
        char shown[64];
        size_t i;
        for (i = 0; i < len && i + 1 < sizeof(shown); i++)
            shown[i] = shown_char(name[i]);
        shown[i] = 0;
        return fail(err, errlen, "unknown macro name: \"%s\"", shown);
    }
    return m;
}

int pipe_template_walk(const char *word, const struct pipe_template_walk *w, char *err,
                       size_t errlen)
{
    const char *p = word, *start = word;

    while ((p = strchr(p, '$')) != NULL) {
        char next = p[1], close = next == '{' ? '}' : next == '(' ? ')' : 0;
        if (next == '$') {
            if (emit_literal(w, start, (size_t)(p - start) + 1) < 0)
                return -1;
            start = p = p + 2;
            continue;
        }
        if (close == 0 && !is_name_char(next)) {
            p++;   /* a '$' before anything else is itself */
            continue;
        }
        if (emit_literal(w, start, (size_t)(p - start)) < 0)
            return -1;
        const char *end = p + 1;
        int m = parse_macro(p + 1 + (close != 0), close, &end, err, errlen);
        if (m < 0 || (w->macro != NULL && w->macro(w->ctx, (enum pipe_macro)m) < 0))
            return -1;
        start = p = end;
    }
    return emit_literal(w, start, strlen(start));
}
