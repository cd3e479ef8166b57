/* sendmail - the Sendmail-compatible command that programs (cron, mailx,
 * mutt, git send-email, PHP's mail()) use to send mail.
 *
 *   sendmail [option...] [--] [recipient...]     mailq     newaliases
 *
 * The command line is Postfix's sendmail(1). By default the message on
 * standard input (up to EOF, or a line that is just "." unless -i / -oi)
 * becomes maildrop records (lib/maildrop.h) streamed to postdrop, which
 * writes the maildrop file; sendmail exits with postdrop's status. Line
 * ends are made LF, a leading "From " line is dropped. Recipients are the
 * arguments (address lists, like To: headers) and with -t those cleanup
 * finds in To:, Cc:, Bcc:. The sender is -f / -r, else the caller's login
 * name; cleanup qualifies bare names with myorigin and adds the missing
 * From:, Date: and Message-ID: (From: with -F, else $NAME, else the
 * account's full name).
 *
 * Other modes run a sibling program from the directory sendmail lives in:
 * -bp and mailq run "postqueue -p", -q "postqueue -f", -qRsite
 * "postqueue -s site", -qIid "postqueue -i id", -bi, -I and newaliases
 * "postalias" (its -oAfile, if given), -bd and -bl "postern start".
 * -bs runs smtpd in stand-alone mode (daemon_directory/smtpd -S), which
 * speaks SMTP on standard input and output as the caller, each message
 * going through postdrop like any other. Options Postfix ignores are
 * ignored.
 * Exit statuses are sysexits(3) values.
 */
#include "addrlist.h"
#include "address.h"
#include "config.h"
#include "header_line.h"
#include "ipc.h"
#include "log.h"
#include "maildrop.h"
#include "record.h"
#include "stream.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#define OPTIONS "+:A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"
#define LINE_PIECE 8192      /* longest piece of an input line handled at once */

enum mode { M_ENQUEUE, M_MAILQ, M_NEWALIAS, M_FLUSH, M_DAEMON, M_SMTP, M_IGNORE };

struct options {
    enum mode mode;
    int extract;              /* -t */
    int dot_ends;             /* a lone "." ends input (cleared by -i, -oi) */
    const char *sender;       /* -f, -r */
    const char *full_name;    /* -F */
    int notify;               /* -N mask, 0 = not given */
    const char *ret;          /* -R: "FULL" or "HDRS" */
    const char *envid;        /* -V */
    const char *config_dir;   /* -C */
    const char *alias_db;     /* -oA */
    const char *flush_site;   /* -qR */
    const char *flush_id;     /* -qI */
    int queue_interval;       /* -q<time>: ignored */
};

/* A growable list of strings; owns them. */
struct strlist {
    char **v;
    size_t n, cap;
};

/* The running postdrop, so a fatal error can stop it (which removes its
 * file) before sendmail exits. */
static pid_t postdrop_pid = -1;

static void stop_postdrop(void)
{
    if (postdrop_pid > 0) {
        kill(postdrop_pid, SIGTERM);
        waitpid(postdrop_pid, NULL, 0);
        postdrop_pid = -1;
    }
}

static noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static noreturn void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    msg_vlog("fatal", fmt, ap);
    va_end(ap);
    stop_postdrop();
    exit(status);
}

static void strlist_add(struct strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            die(EX_OSERR, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        die(EX_OSERR, "out of memory");
    l->n++;
}

static void strlist_free(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            exit(EX_OSERR);
}

/* --- running sibling programs --- */

/* Directory of the running executable: postdrop, postqueue and postalias
 * are installed next to sendmail. Static storage. */
static const char *self_dir(void)
{
    static char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    if (n <= 0)
        die(EX_OSERR, "cannot find my own directory: %s", strerror(errno));
    dir[n] = 0;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    return dir;
}

static void sibling_path(char *out, size_t len, const char *prog)
{
    if ((size_t)snprintf(out, len, "%s/%s", self_dir(), prog) >= len)
        die(EX_OSERR, "path too long for %s", prog);
    if (access(out, X_OK) < 0)
        die(EX_UNAVAILABLE, "cannot run %s: %s (is %s installed?)", out, strerror(errno), prog);
}

/* argv for a sibling: PROG [-c DIR] ARGS... (NULL-terminated args). -c
 * only when the configuration is not the default one. */
static void build_argv(const char **argv, size_t max, const char *prog, const char *const *args)
{
    size_t n = 0;
    argv[n++] = prog;
    if (strcmp(config_directory(), DEF_CONFIG_DIR) != 0) {
        argv[n++] = "-c";
        argv[n++] = config_directory();
    }
    for (size_t i = 0; args && args[i] && n + 1 < max; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

static noreturn void run_sibling(const char *prog, const char *const *args)
{
    char path[PATH_MAX];
    const char *argv[16];
    sibling_path(path, sizeof(path), prog);
    build_argv(argv, sizeof(argv) / sizeof(argv[0]), prog, args);
    execv(path, (char *const *)argv);
    die(EX_UNAVAILABLE, "cannot run %s: %s", path, strerror(errno));
}

/* Start postdrop with a pipe to its standard input; returns the stream
 * that writes into it (the caller closes it before postdrop_wait). */
static struct stream *postdrop_start(void)
{
    char path[PATH_MAX];
    const char *argv[8];
    const char *const args[] = {"-r", NULL};
    int fds[2];
    sibling_path(path, sizeof(path), "postdrop");
    build_argv(argv, sizeof(argv) / sizeof(argv[0]), "postdrop", args);
    if (pipe2(fds, O_CLOEXEC) < 0)
        die(EX_OSERR, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die(EX_OSERR, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(fds[0], 0) < 0)
            _exit(EX_OSERR);
        execv(path, (char *const *)argv);
        fprintf(stderr, "sendmail: fatal: cannot run %s: %s\n", path, strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    close(fds[0]);
    postdrop_pid = pid;
    struct stream *s = stream_open(fds[1], 0);
    if (!s)
        die(EX_OSERR, "out of memory");
    return s;
}

/* postdrop's exit status as ours: 0 when the maildrop file is safe. */
static int postdrop_wait(void)
{
    int status;
    pid_t pid = postdrop_pid;
    postdrop_pid = -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return EX_OSERR;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    msg_warn("postdrop was killed by signal %d", WTERMSIG(status));
    return EX_TEMPFAIL;
}

/* --- the message --- */

/* Envelope and content records on their way to postdrop. A write error
 * (postdrop gave up) is remembered; postdrop's exit status tells why. */
struct submission {
    struct stream *out;
    int failed;
    char chunk[REC_CHUNK_SIZE];
    size_t chunk_len;
    long long size;
};

static void sub_record(struct submission *s, int type, const void *data, size_t len)
{
    if (!s->failed && rec_put(s->out, type, data, len) < 0)
        s->failed = 1;
}

static void sub_attr(struct submission *s, const char *name, const char *value)
{
    char buf[IPC_VALUE_MAX];
    int n = snprintf(buf, sizeof(buf), "%s=%s", name, value);
    if (n > 0 && (size_t)n < sizeof(buf))
        sub_record(s, REC_ATTR, buf, (size_t)n);
}

/* stream_copy's flush: a full chunk becomes one content record. */
static int sub_flush_chunk(void *ctx)
{
    struct submission *s = ctx;
    sub_record(s, REC_CONTENT, s->chunk, s->chunk_len);
    return s->failed ? -1 : 0;
}

static void sub_content(struct submission *s, const char *data, size_t len)
{
    s->size += (long long)len;
    /* A failure is kept in s->failed; sub_finish reports it. */
    (void)stream_copy(s->chunk, sizeof s->chunk, &s->chunk_len, data, len, sub_flush_chunk, s);
}

/* Flush content, write the end record and close the pipe; then postdrop
 * decides. Returns its exit status. */
static int sub_finish(struct submission *s)
{
    if (s->chunk_len)
        sub_record(s, REC_CONTENT, s->chunk, s->chunk_len);
    sub_record(s, REC_END, "", 0);
    if (stream_close(s->out) < 0)
        s->failed = 1;
    s->out = NULL;
    int status = postdrop_wait();
    return status == 0 && s->failed ? EX_TEMPFAIL : status;
}

/* Envelope: sender, attributes, recipients, then the content record. */
struct envelope {
    const char *sender;
    const char *full_name;
    int extract;
    int notify;
    const char *ret, *envid;
    const struct strlist *rcpts;
};

static void sub_envelope(struct submission *s, const struct envelope *e)
{
    char mask[8];
    snprintf(mask, sizeof(mask), "%d", e->notify);
    sub_record(s, REC_SENDER, e->sender, strlen(e->sender));
    if (e->full_name && *e->full_name)
        sub_attr(s, ATTR_FULL_NAME, e->full_name);
    if (e->extract) {
        sub_attr(s, ATTR_EXTRACT, "1");
        if (e->notify)
            sub_attr(s, ATTR_DSN_NOTIFY, mask);
    }
    if (e->ret)
        sub_attr(s, ATTR_DSN_RET, e->ret);
    if (e->envid)
        sub_attr(s, ATTR_DSN_ENVID, e->envid);
    for (size_t i = 0; i < e->rcpts->n; i++) {
        if (e->notify)
            sub_record(s, REC_DSN_NOTIFY, mask, strlen(mask));
        sub_record(s, REC_RCPT, e->rcpts->v[i], strlen(e->rcpts->v[i]));
    }
    sub_record(s, REC_CONTENT_START, "", 0);
}

/* --- reading the message text --- */

/* The next piece of a line from in: up to cap bytes, ending after the
 * first '\n'. Returns its length (0 at end of input); *complete says
 * whether it ends the line. */
static size_t read_piece(struct stream *in, char *buf, size_t cap, int *complete)
{
    size_t n = 0;
    *complete = 0;
    while (n < cap) {
        int c = stream_getc(in);
        if (c < 0)
            break;
        buf[n++] = (char)c;
        if (c == '\n') {
            *complete = 1;
            break;
        }
    }
    return n;
}

/* Header block tracking for -t: whether any recipient header was seen. */
struct header_scan {
    int in_headers;
    int rcpt_headers;
};

static int is_rcpt_header(const char *line, size_t colon)
{
    static const char *const names[] = {"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc",
                                        NULL};
    return header_in(line, colon, names);
}

/* A complete line (LF end) at the start of the message or after others. */
static void scan_header_line(struct header_scan *h, const char *line, size_t len)
{
    if (!h->in_headers)
        return;
    if (len <= 1) {
        h->in_headers = 0;
        return;
    }
    if (line[0] == ' ' || line[0] == '\t')
        return;   /* a continuation line */
    size_t colon = header_name_len(line, len);
    if (!colon)
        h->in_headers = 0;
    else if (is_rcpt_header(line, colon))
        h->rcpt_headers = 1;
}

/* How message text is read from standard input (-bs is smtpd's, not ours). */
struct reader {
    int dot_ends;         /* a line "." ends the text */
    int first_line;       /* a leading "From " line is dropped */
};

/* Copy the text to s (or drop it when s is NULL), with LF line ends.
 * Lines longer than a piece pass in pieces; only whole lines can be ".",
 * a "From " line or a header. A CR is held back until we know whether an
 * LF follows it. */
static void copy_text(struct stream *in, struct reader *r, struct submission *s,
                      struct header_scan *h)
{
    char buf[LINE_PIECE + 1];
    int at_start = 1, held_cr = 0, complete;
    for (;;) {
        size_t n = read_piece(in, buf, LINE_PIECE, &complete);
        if (n == 0) {
            if (held_cr && s)
                sub_content(s, "\r", 1);
            if (!at_start && s)
                sub_content(s, "\n", 1);   /* the last line had no end */
            return;
        }
        char *line = buf;
        if (held_cr && buf[0] != '\n' && s)
            sub_content(s, "\r", 1);
        held_cr = 0;
        if (complete && n >= 2 && line[n - 2] == '\r') {
            line[n - 2] = '\n';
            n--;
        } else if (!complete && line[n - 1] == '\r') {
            held_cr = 1;
            n--;
        }
        if (at_start && complete) {
            if (r->dot_ends && n == 2 && line[0] == '.')
                return;
            if (r->first_line && n >= 5 && strncmp(line, "From ", 5) == 0) {
                r->first_line = 0;
                continue;
            }
        }
        if (at_start && h)
            scan_header_line(h, line, n);
        r->first_line = 0;
        if (s && n > 0)
            sub_content(s, line, n);
        at_start = complete;
    }
}

/* --- addresses and names --- */

static int first_address(const struct addrlist_item *item, void *ctx)
{
    snprintf(ctx, ADDRESS_MAX, "%s", item->address);
    return 1;
}

static int add_address(const struct addrlist_item *item, void *ctx)
{
    strlist_add(ctx, item->address);
    return 0;
}

/* The envelope sender: -f as an address ("<>" and "" are the null
 * sender), else the caller's login name. */
static void resolve_sender(const char *given, char *out)
{
    if (given) {
        const char *p = given;
        while (*p == ' ' || *p == '\t')
            p++;
        out[0] = 0;
        if (*p == 0 || strcmp(p, "<>") == 0)
            return;
        if (addrlist_parse(p, strlen(p), first_address, out) <= 0)
            die(EX_USAGE, "bad sender address: %.100s", given);
        return;
    }
    struct passwd *pw = getpwuid(getuid());
    if (!pw)
        die(EX_OSERR, "no login name found for user ID %ld", (long)getuid());
    snprintf(out, ADDRESS_MAX, "%s", pw->pw_name);
}

/* The sender's full name: -F, else $NAME, else the account's GECOS name
 * ("&" stands for the capitalized login name). Control characters are
 * dropped. */
static void resolve_full_name(const char *given, char *out, size_t outlen)
{
    const char *src = given;
    char gecos[MAILDROP_FULL_NAME_MAX + 1] = "";
    if (!src || !*src)
        src = getenv("NAME");
    if (!src || !*src) {
        struct passwd *pw = getpwuid(getuid());
        size_t o = 0;
        for (const char *p = pw && pw->pw_gecos ? pw->pw_gecos : ""; *p && *p != ',' &&
                                                                   o + 1 < sizeof(gecos); p++) {
            if (*p != '&') {
                gecos[o++] = *p;
                continue;
            }
            for (const char *q = pw->pw_name; *q && o + 1 < sizeof(gecos); q++)
                gecos[o++] = q == pw->pw_name ? (char)toupper((unsigned char)*q) : *q;
        }
        gecos[o] = 0;
        src = gecos;
    }
    size_t o = 0;
    for (const char *p = src; *p && o + 1 < outlen; p++)
        if ((unsigned char)*p >= ' ' && *p != 0x7f)
            out[o++] = *p;
    out[o] = 0;
}

/* -N: "never" or a list of success, delay, failure. 0 when invalid. */
static int parse_notify(const char *arg)
{
    char buf[128];
    char *save, *item;
    int mask = 0;
    snprintf(buf, sizeof(buf), "%s", arg);
    for (item = strtok_r(buf, ", \t", &save); item; item = strtok_r(NULL, ", \t", &save)) {
        if (strcasecmp(item, "never") == 0)
            mask |= DSN_NOTIFY_NEVER;
        else if (strcasecmp(item, "success") == 0)
            mask |= DSN_NOTIFY_SUCCESS;
        else if (strcasecmp(item, "failure") == 0)
            mask |= DSN_NOTIFY_FAILURE;
        else if (strcasecmp(item, "delay") == 0)
            mask |= DSN_NOTIFY_DELAY;
        else
            return 0;
    }
    if ((mask & DSN_NOTIFY_NEVER) && mask != DSN_NOTIFY_NEVER)
        return 0;
    return mask;
}

/* --- modes --- */

static int enqueue(const struct options *o, char **args)
{
    char sender[ADDRESS_MAX], full_name[MAILDROP_FULL_NAME_MAX + 1];
    struct strlist rcpts = {0};
    resolve_sender(o->sender, sender);
    resolve_full_name(o->full_name, full_name, sizeof(full_name));
    for (; *args; args++)
        if (addrlist_parse(*args, strlen(*args), add_address, &rcpts) < 0)
            die(EX_OSERR, "out of memory");
    if (rcpts.n == 0 && !o->extract)
        die(EX_USAGE, "Recipient addresses must be specified on the command line or via "
                      "the -t option");
    struct envelope e = {.sender = sender, .full_name = full_name, .extract = o->extract,
                         .notify = o->notify, .ret = o->ret, .envid = o->envid, .rcpts = &rcpts};
    static struct submission s;
    s.out = postdrop_start();
    sub_envelope(&s, &e);
    struct stream *in = stream_open(0, 0);   /* a pipe from the caller: no timeout */
    if (!in)
        die(EX_OSERR, "out of memory");
    struct reader r = {.dot_ends = o->dot_ends, .first_line = 1};
    struct header_scan h = {.in_headers = 1};
    copy_text(in, &r, &s, &h);
    stream_abandon(in);
    if (o->extract && rcpts.n == 0 && !h.rcpt_headers)
        die(EX_USAGE, "No recipient addresses found in message header");
    strlist_free(&rcpts);
    return sub_finish(&s);
}

/* --- -bs: smtpd's engine on standard input and output --- */

/* As Postfix's sendmail does: smtpd in stand-alone mode (-S) runs the
 * session as the caller and submits each message through postdrop; it
 * finds postdrop where we do, next to us. */
static noreturn void run_smtpd(void)
{
    char path[PATH_MAX], cmd_dir[PATH_MAX + 32];
    const char *argv[16];
    if ((size_t)snprintf(path, sizeof(path), "%s/smtpd", var.daemon_directory) >= sizeof(path))
        die(EX_OSERR, "daemon_directory is too long");
    if ((size_t)snprintf(cmd_dir, sizeof(cmd_dir), "command_directory=%s", self_dir()) >=
        sizeof(cmd_dir))
        die(EX_OSERR, "path too long for command_directory");
    const char *const args[] = {"-S", "-o", cmd_dir, NULL};
    build_argv(argv, sizeof(argv) / sizeof(argv[0]), "smtpd", args);
    execv(path, (char *const *)argv);
    die(EX_UNAVAILABLE, "cannot run %s: %s", path, strerror(errno));
}

/* --- the command line --- */

static void option_b(struct options *o, const char *arg)
{
    switch (arg[0]) {
    case 'd':
    case 'l': o->mode = M_DAEMON; break;
    case 'h':
    case 'H': o->mode = M_IGNORE; break;
    case 'i': o->mode = M_NEWALIAS; break;
    case 'm': o->mode = M_ENQUEUE; break;
    case 'p': o->mode = M_MAILQ; break;
    case 's': o->mode = M_SMTP; break;
    default: die(EX_USAGE, "unsupported: -b%c", arg[0]);
    }
}

static void option_o(struct options *o, const char *arg)
{
    if (arg[0] == 'i') {
        o->dot_ends = 0;
    } else if (arg[0] == 'A') {
        if (!arg[1])
            die(EX_USAGE, "-oA requires pathname");
        o->alias_db = arg + 1;
    }
    /* -o7, -o8, -om and every other -o: ignored, as Postfix does. */
}

static void option_q(struct options *o, const char *arg)
{
    if (isdigit((unsigned char)arg[0]))
        o->queue_interval = 1;
    else if (arg[0] == 'R' && arg[1])
        o->flush_site = arg + 1;
    else if (arg[0] == 'I' && arg[1])
        o->flush_id = arg + 1;
    else if (arg[0] == 'R' || arg[0] == 'I')
        die(EX_USAGE, "specify: -q%csomething", arg[0]);
    else
        die(EX_USAGE, "-q%c is not implemented", arg[0]);
}

static void option_dsn(struct options *o, int c, const char *arg)
{
    if (c == 'N') {
        if (!(o->notify = parse_notify(arg)))
            msg_warn("bad -N option value -- ignored");
    } else if (c == 'R') {
        if (strcasecmp(arg, "full") == 0 || strcasecmp(arg, "hdrs") == 0)
            o->ret = strcasecmp(arg, "full") == 0 ? "FULL" : "HDRS";
        else
            msg_warn("bad -R option value -- ignored");
    } else if (strlen(arg) > MAILDROP_ENVID_MAX || !maildrop_attr_ok(ATTR_DSN_ENVID, arg)) {
        msg_warn("bad -V option value -- ignored");
    } else {
        o->envid = arg;
    }
}

/* -C names main.cf or its directory. */
static const char *config_arg(const char *arg)
{
    static char dir[PATH_MAX];
    const char *slash = strrchr(arg, '/');
    const char *base = slash ? slash + 1 : arg;
    if (strcmp(base, "main.cf") != 0)
        return arg;
    if (!slash)
        return ".";
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - arg), arg);
    return dir[0] ? dir : "/";
}

static void option(struct options *o, int c, const char *arg)
{
    switch (c) {
    case 'B':
        if (strcasecmp(arg, "8BITMIME") != 0 && strcasecmp(arg, "7BIT") != 0)
            die(EX_USAGE, "-B option needs 8BITMIME or 7BIT");
        break;
    case 'C': o->config_dir = config_arg(arg); break;
    case 'F': o->full_name = arg; break;
    case 'I': o->mode = M_NEWALIAS; break;
    case 'N':
    case 'R':
    case 'V': option_dsn(o, c, arg); break;
    case 'X':
        if (arg[0] != 'V')
            die(EX_USAGE, "unsupported: -X%c", arg[0]);
        msg_warn("-XV (VERP) is not supported -- ignored");
        break;
    case 'b': option_b(o, arg); break;
    case 'f':
    case 'r': o->sender = arg; break;
    case 'i': o->dot_ends = 0; break;
    case 'n': die(EX_USAGE, "-n option not supported");
    case 'o': option_o(o, arg); break;
    case 'q': option_q(o, arg); break;
    case 't': o->extract = 1; break;
    case ':': die(EX_USAGE, "option -%c requires an argument", optopt);
    case '?':
        die(EX_USAGE, "usage: sendmail [options] [recipient...] (unknown option -%c)", optopt);
    default: break;   /* -A -G -L -O -U -c -e -h -m -p -v -x: ignored */
    }
}

/* Returns the index of the first recipient argument. */
static int parse_command_line(int argc, char **argv, struct options *o)
{
    opterr = 0;
    while (optind < argc && argv[optind]) {
        if (strcmp(argv[optind], "-q") == 0) {   /* getopt cannot take it */
            o->mode = M_FLUSH;
            optind++;
            continue;
        }
        int c = getopt(argc, argv, OPTIONS);
        if (c == -1)
            break;
        option(o, c, optarg);
    }
    if (o->extract && o->mode != M_ENQUEUE)
        die(EX_USAGE, "-t can be used only in delivery mode");
    if ((o->flush_site || o->flush_id) && o->mode != M_ENQUEUE)
        die(EX_USAGE, "-q%c can be used only in delivery mode", o->flush_site ? 'R' : 'I');
    return optind;
}

static void load_config(const struct options *o)
{
    char err[512];
    if (config_try_load(config_find_dir(o->config_dir), NULL, 0, err, sizeof(err)) < 0)
        die(EX_CONFIG, "%s", err);
    log_set_syslog_name(var.syslog_name);
    const char *path = var.maillog_file;
    if (path && *path && access(path, W_OK) == 0)
        log_set_file(path);
}

static void no_recipients_allowed(char **args, const char *what)
{
    if (*args)
        die(EX_USAGE, "%s mode requires no recipient", what);
}

int main(int argc, char **argv)
{
    struct options o = {.mode = M_ENQUEUE, .dot_ends = 1};
    const char *slash = strrchr(argv[0], '/');
    const char *name = slash ? slash + 1 : argv[0];
    umask(022);
    ensure_std_fds();
    log_init("sendmail", LOG_TO_STDERR);
    if (strcmp(name, "mailq") == 0)
        o.mode = M_MAILQ;
    else if (strcmp(name, "newaliases") == 0)
        o.mode = M_NEWALIAS;
    char **args = argv + parse_command_line(argc, argv, &o);
    load_config(&o);
    signal(SIGPIPE, SIG_IGN);
    if (o.queue_interval && o.mode != M_DAEMON)
        return 0;
    switch (o.mode) {
    case M_ENQUEUE:
        if (o.flush_site || o.flush_id) {
            no_recipients_allowed(args, "flush");
            const char *const q[] = {o.flush_site ? "-s" : "-i",
                                     o.flush_site ? o.flush_site : o.flush_id, NULL};
            run_sibling("postqueue", q);
        }
        return enqueue(&o, args);
    case M_MAILQ: {
        no_recipients_allowed(args, "display queue");
        const char *const q[] = {"-p", NULL};
        run_sibling("postqueue", q);
    }
    case M_FLUSH: {
        no_recipients_allowed(args, "flush queue");
        const char *const q[] = {"-f", NULL};
        run_sibling("postqueue", q);
    }
    case M_NEWALIAS: {
        no_recipients_allowed(args, "alias initialization");
        const char *const a[] = {o.alias_db, NULL};
        run_sibling("postalias", a);
    }
    case M_DAEMON: {
        no_recipients_allowed(args, "daemon");
        const char *const a[] = {"start", NULL};
        run_sibling("postern", a);
    }
    case M_SMTP:
        no_recipients_allowed(args, "stand-alone");
        run_smtpd();
    case M_IGNORE:
        return 0;
    }
    return EX_SOFTWARE;
}
