/* mastercf.c - the master.cf parser (see mastercf.h).
 *
 * master reads the service table with it at start and on SIGHUP, and
 * postconf -M prints it. The parser works on the text in place: it walks
 * physical lines, glues continuation lines (leading white space) onto the
 * entry they continue, splits the logical line into white-space separated
 * tokens and checks the seven fixed columns. Only the accepted strings are
 * copied out. It must survive arbitrary bytes (it is fuzzed), so every
 * count is bounded and nothing is assumed about the input but a final NUL.
 */
#include "mastercf.h"
#include "log.h"
#include "pipe_args.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASTERCF_FILE_MAX (4 << 20)  /* a real master.cf is a few KB */
#define MASTERCF_TOKENS_MAX 1024     /* columns plus arguments in one entry */
#define MASTERCF_NUMBER_MAX 1000000000L
#define MASTERCF_FIXED_COLUMNS 8     /* service .. command */

/* One white-space separated word of a logical line; points into the text. */
struct token {
    const char *start;
    size_t len;
};

/* The logical line being collected. */
struct logical {
    struct token tok[MASTERCF_TOKENS_MAX];
    size_t ntok;
    int line;        /* where it starts; 0 when nothing is pending */
};

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static void set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A printable, bounded rendering of a token for error messages: the input
 * may hold any bytes, and a message must stay one readable line. */
static void token_show(const struct token *t, char *out, size_t outlen)
{
    size_t n = 0;
    for (size_t i = 0; i < t->len && n + 4 < outlen; i++) {
        unsigned char c = (unsigned char)t->start[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (t->len > n && n + 4 <= outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n < outlen ? n : outlen - 1] = 0;
}

static int token_is(const struct token *t, const char *word)
{
    size_t n = strlen(word);
    return t->len == n && memcmp(t->start, word, n) == 0;
}

/* Caller frees the result. */
static char *token_dup(const struct token *t)
{
    return strndup(t->start, t->len);
}

/* --- columns --- */

static int parse_type(const struct token *t, enum mastercf_type *type)
{
    if (token_is(t, "inet"))
        *type = MASTERCF_INET;
    else if (token_is(t, "unix"))
        *type = MASTERCF_UNIX;
    else if (token_is(t, "unix-dgram"))
        *type = MASTERCF_UNIX_DGRAM;
    else if (token_is(t, "fifo"))
        *type = MASTERCF_FIFO;
    else if (token_is(t, "pass"))
        *type = MASTERCF_PASS;
    else
        return -1;
    return 0;
}

static int parse_yes_no(const struct token *t, int dflt, int *out)
{
    if (token_is(t, "-"))
        *out = dflt;
    else if (token_is(t, "y"))
        *out = 1;
    else if (token_is(t, "n"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* Decimal digits only, bounded well below INT_MAX. */
static int parse_digits(const char *s, size_t len, int *out)
{
    long v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > MASTERCF_NUMBER_MAX)
            return -1;
    }
    *out = (int)v;
    return 0;
}

/* "-", "N" or "N?" (wake up only while the service has a process). */
static int parse_wakeup(const struct token *t, int *wakeup, int *if_running)
{
    *wakeup = 0;
    *if_running = 0;
    if (token_is(t, "-"))
        return 0;
    size_t len = t->len;
    if (len > 0 && t->start[len - 1] == '?') {
        *if_running = 1;
        len--;
    }
    return parse_digits(t->start, len, wakeup);
}

static int parse_maxproc(const struct token *t, int *maxproc)
{
    if (token_is(t, "-")) {
        *maxproc = -1;
        return 0;
    }
    return parse_digits(t->start, t->len, maxproc);
}

/* unix and fifo names become file names under private/ or public/. */
static int service_name_ok(const struct token *t, enum mastercf_type type)
{
    if (type == MASTERCF_INET)
        return 1;
    if (token_is(t, ".") || token_is(t, "..") || t->len > 100)
        return 0;
    return memchr(t->start, '/', t->len) == NULL;
}

/* The command runs as daemon_directory/COMMAND: no path of its own. */
static int command_name_ok(const struct token *t)
{
    return !token_is(t, ".") && !token_is(t, "..") && t->len <= 255 &&
           memchr(t->start, '/', t->len) == NULL;
}

/* --- entries --- */

static void entry_free(struct mastercf_entry *e)
{
    free(e->name);
    free(e->command);
    if (e->args)
        for (size_t i = 0; i < e->nargs; i++)
            free(e->args[i]);
    free(e->args);
    memset(e, 0, sizeof(*e));
}

/* Add one argument; the array stays NULL-terminated. Takes ownership of arg. */
static int entry_add_arg(struct mastercf_entry *e, char *arg)
{
    if (!arg)
        return -1;
    char **n = realloc(e->args, (e->nargs + 2) * sizeof(*n));
    if (!n) {
        free(arg);
        return -1;
    }
    e->args = n;
    e->args[e->nargs++] = arg;
    e->args[e->nargs] = NULL;
    return 0;
}

/* "{ text }" -> "text": an argument with white space in it (Postfix 3.0
 * syntax); white space after '{' and before '}' is not part of it. */
static struct token unbrace(const struct token *t)
{
    struct token in = *t;
    if (in.len < 2 || in.start[0] != '{' || in.start[in.len - 1] != '}')
        return in;
    in.start++;
    in.len -= 2;
    while (in.len > 0 && is_blank((unsigned char)in.start[0])) {
        in.start++;
        in.len--;
    }
    while (in.len > 0 && is_blank((unsigned char)in.start[in.len - 1]))
        in.len--;
    return in;
}

/* Copy the arguments after the command, turning "-oname=value" into the
 * two-argument form so that daemons see one shape only. Options end at
 * the first other word, as the daemons read them: after it (a pipe
 * service's argv=, say) "-o" is an argument like any other. */
static int entry_set_args(struct mastercf_entry *e, const struct logical *l,
                          const char *file, char *err, size_t errlen)
{
    int options = 1;
    e->args = calloc(1, sizeof(*e->args));
    if (!e->args)
        goto nomem;
    for (size_t i = MASTERCF_FIXED_COLUMNS; i < l->ntok; i++) {
        const struct token *t = &l->tok[i];
        struct token value;
        options = options && t->len > 0 && t->start[0] == '-';
        if (!options) {
            value = unbrace(t);
            if (entry_add_arg(e, token_dup(&value)) < 0)
                goto nomem;
            continue;
        }
        if (token_is(t, "-o")) {
            if (i + 1 >= l->ntok) {
                set_error(err, errlen, "%s, line %d: -o without name=value", file, l->line);
                return -1;
            }
            value = unbrace(&l->tok[++i]);
        } else if (t->len > 2 && memcmp(t->start, "-o", 2) == 0) {
            value.start = t->start + 2;
            value.len = t->len - 2;
        } else {
            if (entry_add_arg(e, token_dup(t)) < 0)
                goto nomem;
            continue;
        }
        if (value.len < 2 || value.start[0] == '=' || !memchr(value.start, '=', value.len)) {
            char shown[64];
            token_show(&value, shown, sizeof(shown));
            set_error(err, errlen, "%s, line %d: bad -o option, need name=value: \"%s\"",
                      file, l->line, shown);
            return -1;
        }
        if (entry_add_arg(e, strdup("-o")) < 0 || entry_add_arg(e, token_dup(&value)) < 0)
            goto nomem;
    }
    return 0;
nomem:
    set_error(err, errlen, "%s, line %d: out of memory", file, l->line);
    return -1;
}

/* Check the columns of one logical line and fill e (caller frees it with
 * entry_free, also on error). */
static int entry_from_logical(const struct logical *l, struct mastercf_entry *e,
                              const char *file, char *err, size_t errlen)
{
    const struct token *t = l->tok;
    char shown[64];

    memset(e, 0, sizeof(*e));
    e->line = l->line;
    if (l->ntok < MASTERCF_FIXED_COLUMNS) {
        set_error(err, errlen, "%s, line %d: too few columns (%zu, need at least %d)", file,
                  l->line, l->ntok, MASTERCF_FIXED_COLUMNS);
        return -1;
    }
#define COLUMN_ERROR(idx, what)                                                         \
    do {                                                                                \
        token_show(&t[idx], shown, sizeof(shown));                                      \
        set_error(err, errlen, "%s, line %d: bad %s: \"%s\"", file, l->line, what, shown); \
        return -1;                                                                      \
    } while (0)
    if (parse_type(&t[1], &e->type) < 0)
        COLUMN_ERROR(1, "service type (need inet, unix, unix-dgram, fifo or pass)");
    if (!service_name_ok(&t[0], e->type))
        COLUMN_ERROR(0, "service name");
    if (parse_yes_no(&t[2], 1, &e->private_) < 0)
        COLUMN_ERROR(2, "private field (need y, n or -)");
    if (parse_yes_no(&t[3], 1, &e->unpriv) < 0)
        COLUMN_ERROR(3, "unpriv field (need y, n or -)");
    if (parse_yes_no(&t[4], 0, &e->chroot) < 0)
        COLUMN_ERROR(4, "chroot field (need y, n or -)");
    if (parse_wakeup(&t[5], &e->wakeup, &e->wakeup_if_running) < 0)
        COLUMN_ERROR(5, "wakeup time (need a number of seconds, N? or -)");
    if (parse_maxproc(&t[6], &e->maxproc) < 0)
        COLUMN_ERROR(6, "process limit (need a number or -)");
    if (!command_name_ok(&t[7]))
        COLUMN_ERROR(7, "command name");
#undef COLUMN_ERROR
    /* An inet service is reachable from outside by definition. */
    if (e->type == MASTERCF_INET)
        e->private_ = 0;
    e->name = token_dup(&t[0]);
    e->command = token_dup(&t[7]);
    if (!e->name || !e->command) {
        set_error(err, errlen, "%s, line %d: out of memory", file, l->line);
        return -1;
    }
    return entry_set_args(e, l, file, err, errlen);
}

const char *mastercf_type_name(enum mastercf_type type)
{
    switch (type) {
    case MASTERCF_INET: return "inet";
    case MASTERCF_UNIX: return "unix";
    case MASTERCF_UNIX_DGRAM: return "unix-dgram";
    case MASTERCF_FIFO: return "fifo";
    case MASTERCF_PASS: return "pass";
    }
    return "?";
}

/* Store e in out (taking its strings). Like Postfix, a second definition of
 * the same name and type replaces the first, with a warning. */
static int table_store(struct mastercf *out, struct mastercf_entry *e, const char *file,
                       char *err, size_t errlen)
{
    for (size_t i = 0; i < out->count; i++) {
        struct mastercf_entry *old = &out->entries[i];
        if (old->type == e->type && strcmp(old->name, e->name) == 0) {
            msg_warn("%s, line %d: duplicate service %s/%s (first defined at line %d), "
                     "using this definition", file, e->line, e->name, mastercf_type_name(e->type),
                     old->line);
            entry_free(old);
            *old = *e;
            return 0;
        }
    }
    struct mastercf_entry *n = realloc(out->entries, (out->count + 1) * sizeof(*n));
    if (!n) {
        set_error(err, errlen, "%s, line %d: out of memory", file, e->line);
        entry_free(e);
        return -1;
    }
    out->entries = n;
    out->entries[out->count++] = *e;
    return 0;
}

/* Turn the pending logical line into an entry, if there is one. */
static int finish_logical(struct logical *l, struct mastercf *out, const char *file,
                          char *err, size_t errlen)
{
    if (l->line == 0)
        return 0;
    struct mastercf_entry e;
    int rc = entry_from_logical(l, &e, file, err, errlen);
    if (rc == 0)
        rc = table_store(out, &e, file, err, errlen);
    else
        entry_free(&e);
    l->ntok = 0;
    l->line = 0;
    return rc;
}

/* Append the words of one physical line [p, end) to the logical line. */
static int add_tokens(struct logical *l, const char *p, const char *end, const char *file,
                      int lineno, char *err, size_t errlen)
{
    while (p < end) {
        while (p < end && is_blank((unsigned char)*p))
            p++;
        if (p == end)
            break;
        const char *start = p;
        if (*p == '{') {
            /* "{ words }" is one argument (Postfix 3.0), on one line. */
            const char *close = memchr(p, '}', (size_t)(end - p));
            if (!close) {
                set_error(err, errlen, "%s, line %d: '{' without a '}' on the same line",
                          file, lineno);
                return -1;
            }
            p = close + 1;
        } else {
            while (p < end && !is_blank((unsigned char)*p))
                p++;
        }
        if (l->ntok == MASTERCF_TOKENS_MAX) {
            set_error(err, errlen, "%s, line %d: too many arguments (more than %d)", file,
                      lineno, MASTERCF_TOKENS_MAX);
            return -1;
        }
        l->tok[l->ntok].start = start;
        l->tok[l->ntok].len = (size_t)(p - start);
        l->ntok++;
    }
    return 0;
}

void mastercf_free(struct mastercf *cf)
{
    if (!cf)
        return;
    for (size_t i = 0; i < cf->count; i++)
        entry_free(&cf->entries[i]);
    free(cf->entries);
    cf->entries = NULL;
    cf->count = 0;
}

int mastercf_parse(const char *text, const char *filename, struct mastercf *out, char *err,
                   size_t errlen)
{
    const char *file = filename ? filename : "master.cf";
    out->entries = NULL;
    out->count = 0;
    if (err && errlen)
        err[0] = 0;
    /* Too big for the stack: a logical line holds up to 1024 tokens. */
    struct logical *l = calloc(1, sizeof(*l));
    if (!l) {
        set_error(err, errlen, "%s: out of memory", file);
        return -1;
    }
    int lineno = 0, rc = 0;
    for (const char *line = text; *line && rc == 0;) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        const char *next = nl ? nl + 1 : end;
        const char *p = line;
        lineno++;
        if (lineno == INT_MAX) {
            set_error(err, errlen, "%s: too many lines", file);
            rc = -1;
            break;
        }
        while (p < end && is_blank((unsigned char)*p))
            p++;
        /* Comment and blank lines do not end an entry, as in Postfix. */
        if (p == end || *p == '#') {
            line = next;
            continue;
        }
        if (p != line) {
            if (l->line == 0) {
                set_error(err, errlen, "%s, line %d: continuation line without a service "
                          "entry before it", file, lineno);
                rc = -1;
                break;
            }
        } else {
            rc = finish_logical(l, out, file, err, errlen);
            l->line = lineno;
        }
        if (rc == 0)
            rc = add_tokens(l, p, end, file, lineno, err, errlen);
        line = next;
    }
    if (rc == 0)
        rc = finish_logical(l, out, file, err, errlen);
    free(l);
    if (rc < 0)
        mastercf_free(out);
    return rc;
}

/* Read the whole file into a NUL-terminated buffer the caller frees. */
static char *read_whole_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_error(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            char *n = cap < MASTERCF_FILE_MAX ? realloc(buf, cap * 2) : NULL;
            if (!n) {
                set_error(err, errlen, "%s: file too large or out of memory", path);
                free(buf);
                buf = NULL;
                break;
            }
            buf = n;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            set_error(err, errlen, "read %s: %s", path, strerror(errno));
            free(buf);
            buf = NULL;
        } else if (got == 0) {
            buf[len] = 0;
            break;
        } else {
            len += (size_t)got;
        }
    }
    if (!buf && err && errlen && !err[0])
        set_error(err, errlen, "%s: out of memory", path);
    close(fd);
    if (buf && memchr(buf, 0, len)) {
        /* The parser stops at a NUL; silently dropping the rest would hide
         * services, so refuse the file and say where. */
        int line = 1;
        for (const char *p = buf; *p; p++)
            line += *p == '\n';
        set_error(err, errlen, "%s, line %d: NUL byte in file", path, line);
        free(buf);
        return NULL;
    }
    return buf;
}

int mastercf_load(const char *path, struct mastercf *out, char *err, size_t errlen)
{
    out->entries = NULL;
    out->count = 0;
    if (err && errlen)
        err[0] = 0;
    char *text = read_whole_file(path, err, errlen);
    if (!text)
        return -1;
    int rc = mastercf_parse(text, path, out, err, errlen);
    free(text);
    return rc;
}

/* --- Postfix's programs --- */

static const struct {
    const char *name;
    enum mastercf_role role;
    const char *program_or_why;
    int keeps_name;   /* the program learns its role from its name */
} postfix_programs[] = {
    {"smtp", MASTERCF_RUN, "remote", 0},
    {"lmtp", MASTERCF_RUN, "remote", 1},
    {"oqmgr", MASTERCF_RUN, "qmgr", 0},
    {"postscreen", MASTERCF_RUN, "smtpd", 0},
    {"tlsmgr", MASTERCF_OTHERWISE, "TLS session caches live in each smtpd and remote process", 0},
    {"trivial-rewrite", MASTERCF_OTHERWISE, "addresses are rewritten and resolved inside cleanup "
                                            "and qmgr", 0},
    {"scache", MASTERCF_OTHERWISE, "remote keeps its own connection cache", 0},
    {"postlogd", MASTERCF_OTHERWISE, "each program writes maillog_file itself", 0},
    {"proxymap", MASTERCF_OTHERWISE, "each program opens its lookup tables itself", 0},
    {"flush", MASTERCF_OTHERWISE, "postqueue -f and postern flush ask qmgr directly", 0},
    {"verify", MASTERCF_MISSING, "address verification (reject_unverified_*) is not available", 0},
    {"dnsblog", MASTERCF_MISSING, "postscreen's DNSBL lookups are not available", 0},
    {"tlsproxy", MASTERCF_MISSING, "postscreen's TLS proxy is not available", 0},
    {"pipe", MASTERCF_RUN, "pipe", 0},
    {"qmqpd", MASTERCF_MISSING, "QMQP is not available", 0},
    {"error", MASTERCF_OTHERWISE, "qmgr bounces error: and defers retry: routes itself", 0},
    {"discard", MASTERCF_OTHERWISE, "qmgr drops discard: routes itself", 0},
};

struct mastercf_program mastercf_classify(const struct mastercf_entry *e)
{
    struct mastercf_program p = {MASTERCF_RUN, e->command, NULL, NULL};
    if (e->type == MASTERCF_PASS || e->type == MASTERCF_UNIX_DGRAM) {
        /* postscreen's hand-off to smtpd and postlogd's socket: Postern's
         * smtpd listens itself and each program logs itself. */
        p.role = MASTERCF_OTHERWISE;
        p.why = e->type == MASTERCF_PASS ? "smtpd accepts its connections itself"
                                         : "each program writes maillog_file itself";
        return p;
    }
    for (size_t i = 0; i < sizeof(postfix_programs) / sizeof(postfix_programs[0]); i++) {
        if (strcmp(e->command, postfix_programs[i].name) != 0)
            continue;
        p.role = postfix_programs[i].role;
        if (p.role == MASTERCF_RUN) {
            p.program = postfix_programs[i].program_or_why;
            if (postfix_programs[i].keeps_name)
                p.argv0 = postfix_programs[i].name;
        } else {
            p.program = NULL;
            p.why = postfix_programs[i].program_or_why;
        }
        break;
    }
    return p;
}

int mastercf_check_program(const struct mastercf_entry *e, const char *program, int instance,
                           const char *mail_owner, char *err, size_t errlen)
{
    struct pipe_args *pa;
    char why[512];
    uid_t uid;
    gid_t gid;
    int rc = 0;

    if (strcmp(program, "pipe") != 0)
        return 0;
    /* Too big for a stack frame that master's loop calls into. */
    if ((pa = malloc(sizeof(*pa))) == NULL) {
        set_error(err, errlen, "out of memory");
        return -1;
    }
    if (pipe_args_parse(e->args, e->nargs, pa, why, sizeof(why)) < 0
        || pipe_args_user(pa, instance, mail_owner, &uid, &gid, why, sizeof(why)) < 0) {
        set_error(err, errlen, "%s", why);
        rc = -1;
    }
    free(pa);
    return rc;
}
