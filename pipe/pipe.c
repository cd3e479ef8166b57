/* pipe.c - the pipe delivery agent, as Postfix's pipe(8): serves
 * deliver_protocol on private/SERVICE for qmgr through the shared loop of
 * lib/mail/deliver_agent.h, and delivers each request by running the
 * master.cf command (argv=) once, for all its recipients, with the message
 * on its standard input and the rights of user=.
 *
 *   MASTER.CF  SERVICE unix - n n - - pipe flags=... user=U argv=CMD ${recipient}
 *   MAIN.CF    transport_maps, mailbox_transport or virtual_transport
 *              naming SERVICE; SERVICE_destination_recipient_limit = 1 for
 *              one recipient per command; SERVICE_time_limit (else
 *              command_time_limit)
 *
 * Each recipient's status is the command's (command_run.h): exit 0 sent
 * "delivered via SERVICE service" (with what the command said, in
 * parentheses), a sysexits code bounced or deferred with Postfix's DSN
 * code and text, the time limit bounced. Before anything runs: a message
 * over size= bounces 5.2.3 "message too large"; with the D flag one that
 * already has "Delivered-To: RECIPIENT" bounces 5.4.6 as a loop; the D and
 * O flags with more than one recipient defer 4.3.5 (their headers name
 * one recipient).
 *
 * We run as root in system mode only to hand the command user='s rights
 * (never root, never mail_owner); in instance mode the command runs as the
 * instance user, whatever user= says.
 */
#include "pipe.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "command_run.h"
#include "config.h"
#include "deliver_agent.h"
#include "log.h"
#include "mail_copy.h"
#include "queue_file.h"
#include "service.h"
#include "strlist.h"

#define ENV_NAMES_MAX 64
#define DEFAULT_PATH "/usr/bin:/bin"

static struct pipe_args args;
static uid_t run_uid;
static gid_t run_gid;

/* --- the command's environment: export_environment, and PATH --- */

static void env_add(char **env, size_t *n, const char *name, const char *value)
{
    if (asprintf(&env[*n], "%s=%s", name, value) < 0)
        msg_fatal("out of memory");
    (*n)++;
}

/* The variables export_environment names, from ours; MAIL_CONFIG is our
 * configuration directory, so a sendmail the command runs submits to us. */
static char **build_env(void)
{
    char *buf = malloc(strlen(var.export_environment) + 1), *names[ENV_NAMES_MAX];

    if (buf == NULL)
        msg_fatal("out of memory");
    size_t count = strlist_split(var.export_environment, buf, names, ENV_NAMES_MAX), n = 0;
    char **env = calloc(count + 2, sizeof(*env));

    if (env == NULL)
        msg_fatal("out of memory");
    env_add(env, &n, "PATH", DEFAULT_PATH);
    for (size_t i = 0; i < count; i++) {
        const char *value = strcmp(names[i], "MAIL_CONFIG") == 0 ? config_directory()
                                                                  : getenv(names[i]);
        if (value != NULL && strcmp(names[i], "PATH") != 0)
            env_add(env, &n, names[i], value);
    }
    free(buf);
    return env;
}

static void env_free(char **env)
{
    for (size_t i = 0; env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

/* --- what goes on the command's stdin --- */

struct feed {
    const struct deliver_message *m;
    struct mail_copy_trace trace;
    int flags;                     /* MAIL_COPY_* */
    mail_copy_sink sink;           /* the command's stdin */
    void *sink_ctx;
};

static int copy_flags(int pipe_flags)
{
    static const struct {
        int pipe, copy;
    } map[] = {
        {PIPE_FLAG_FROM_LINE, MAIL_COPY_FROM_LINE},    {PIPE_FLAG_RETURN_PATH, MAIL_COPY_RETURN_PATH},
        {PIPE_FLAG_ORIG_TO, MAIL_COPY_ORIG_TO},        {PIPE_FLAG_DELIVERED_TO, MAIL_COPY_DELIVERED_TO},
        {PIPE_FLAG_QUOTE_FROM, MAIL_COPY_QUOTE_FROM},  {PIPE_FLAG_DOT, MAIL_COPY_DOT},
        {PIPE_FLAG_BLANK_END, MAIL_COPY_BLANK_END},
    };
    /* The last line is always complete, as Postfix's copy makes it. */
    int flags = MAIL_COPY_NEWLINE_END;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (pipe_flags & map[i].pipe)
            flags |= map[i].copy;
    return flags;
}

/* mail_copy_sink: each LF becomes eol= on the way to the command. */
static int put_eol(void *ctx, const char *buf, size_t len)
{
    struct feed *f = ctx;

    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - buf) : len;
        if (f->sink(f->sink_ctx, buf, n) < 0)
            return -1;
        if (nl == NULL)
            break;
        if (f->sink(f->sink_ctx, args.eol, args.eol_len) < 0)
            return -1;
        buf += n + 1;
        len -= n + 1;
    }
    return 0;
}

/* command_feed_fn */
static int feed_message(void *ctx, mail_copy_sink sink, void *sink_ctx)
{
    struct feed *f = ctx;
    int plain_eol = args.eol_len == 1 && args.eol[0] == '\n';

    f->sink = sink;
    f->sink_ctx = sink_ctx;
    return mail_copy(f->m, &f->trace, f->flags, 0, plain_eol ? sink : put_eol,
                     plain_eol ? sink_ctx : f);
}

/* --- one request ---------------------------------------------------------- */

/* The recipients still to do, in request order. */
struct batch {
    struct deliver_rcpt **r;
    const char **address, **orig;
    size_t n;
};

static void batch_init(struct batch *b, struct deliver_request *req)
{
    b->r = calloc(req->nrcpt, sizeof(*b->r));
    b->address = calloc(req->nrcpt, sizeof(*b->address));
    b->orig = calloc(req->nrcpt, sizeof(*b->orig));
    if (b->r == NULL || b->address == NULL || b->orig == NULL)
        msg_fatal("out of memory");
    b->n = 0;
    for (size_t i = 0; i < req->nrcpt; i++) {
        struct deliver_rcpt *r = &req->rcpt[i];
        if (r->status.dsn[0] != 0)
            continue;
        b->r[b->n] = r;
        b->address[b->n] = r->address;
        b->orig[b->n] = r->orig != NULL ? r->orig : r->address;
        b->n++;
    }
}

static void batch_free(struct batch *b)
{
    free(b->r);
    free(b->address);
    free(b->orig);
}

static void batch_set(struct batch *b, const struct delivery_status *st)
{
    for (size_t i = 0; i < b->n; i++)
        b->r[i]->status = *st;
}

/* The checks before a command runs (above). 1 when st is set. */
static int refused_before(const struct deliver_message *m, const struct batch *b,
                          struct delivery_status *st)
{
    long long size = m->env != NULL ? m->env->content_size : 0;

    if (args.size_limit > 0 && size > args.size_limit) {
        delivery_status_set(st, "5.2.3", "message too large");
        return 1;
    }
    if ((args.flags & (PIPE_FLAG_DELIVERED_TO | PIPE_FLAG_ORIG_TO)) && b->n > 1) {
        msg_warn("pipe flag `%c' requires %s_destination_recipient_limit = 1",
                 args.flags & PIPE_FLAG_DELIVERED_TO ? 'D' : 'O', service_name());
        delivery_status_set(st, "4.3.5", "mail system configuration error");
        return 1;
    }
    if (!(args.flags & PIPE_FLAG_DELIVERED_TO))
        return 0;
    int seen = mail_copy_delivered_to_seen(m, b->address[0]);
    if (seen < 0)
        delivery_status_set(st, "4.3.0", "error reading queue file");
    else if (seen)
        delivery_status_set(st, "5.4.6", "mail forwarding loop for %s", b->address[0]);
    return seen != 0;
}

/* <service>_time_limit, else command_time_limit. */
static long time_limit(void)
{
    char name[256];
    long seconds;
    const char *v;

    snprintf(name, sizeof(name), "%s_time_limit", service_name());
    if ((v = config_get(name)) == NULL || *v == 0)
        return var.command_time_limit;
    if (config_parse_time(v, 's', &seconds) < 0) {
        msg_warn("bad %s value: %s; using command_time_limit", name, v);
        return var.command_time_limit;
    }
    return seconds;
}

/* "delivered via SERVICE service", with what the command said. */
static void set_sent(const struct command_result *r, struct delivery_status *st)
{
    size_t n = r->output_len;

    while (n > 0 && (r->output[n - 1] == '\n' || r->output[n - 1] == ' '
                     || r->output[n - 1] == '\r' || r->output[n - 1] == '\t'))
        n--;
    if (n == 0)
        delivery_status_set(st, "2.0.0", "delivered via %s service", service_name());
    else
        delivery_status_set(st, "2.0.0", "delivered via %s service (%.*s)", service_name(),
                            (int)n, r->output);
}

/* The program argv[0] names: one without a '/' is looked for in PATH, as
 * execvp(3) would (argv=uux ... in Debian's master.cf). */
static const char *program_path(const char *name, char *buf, size_t len)
{
    static const char *const dirs[] = {"/usr/bin", "/bin"};

    if (strchr(name, '/') != NULL)
        return name;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (snprintf(buf, len, "%s/%s", dirs[i], name) < (int)len && access(buf, X_OK) == 0)
            return buf;
    return name;   /* execve fails, and says so */
}

static void run_command(const struct deliver_message *m, char **argv, const struct batch *b,
                        struct delivery_status *st)
{
    char **env = build_env(), path[PATH_MAX];
    struct command_spec spec = {
        .path = program_path(argv[0], path, sizeof(path)), .argv = argv, .envp = env,
        .uid = run_uid, .gid = run_gid, .keep_ids = service_instance_mode(),
        .chroot = args.chroot,
        .directory = args.directory != NULL ? args.directory : var.queue_directory,
        .time_limit = time_limit(),
    };
    struct feed f = {
        .m = m,
        .trace = {.sender = *m->sender != 0 ? m->sender : args.null_sender,
                  .orig_rcpt = b->orig[0], .delivered_to = b->address[0]},
        .flags = copy_flags(args.flags),
    };
    struct command_result *r = malloc(sizeof(*r));

    if (r == NULL)
        msg_fatal("out of memory");
    if (command_run(&spec, feed_message, &f, r, st) == 0 && !command_failed(r, argv[0], st))
        set_sent(r, st);
    if (r->feed == MAIL_COPY_EREAD)
        msg_warn("%s: error reading queue file content", m->queue_id);
    free(r);
    env_free(env);
}

/* deliver_agent_batch_fn: one command for every recipient still to do. */
static void deliver_batch(const struct deliver_message *m, struct deliver_request *req)
{
    struct delivery_status st;
    struct batch b;
    char why[256];

    batch_init(&b, req);
    if (b.n > 0 && !refused_before(m, &b, &st)) {
        struct pipe_expand x = {.pa = &args, .m = m, .req = req, .rcpt = b.address,
                                .orig = b.orig, .nrcpt = b.n};
        char **argv = pipe_argv_expand(&x, why, sizeof(why));
        if (argv == NULL) {
            msg_warn("%s: service %s: %s", m->queue_id, service_name(), why);
            delivery_status_set(&st, "4.3.5", "mail system configuration error");
        } else {
            run_command(m, argv, &b, &st);
            pipe_argv_free(argv);
        }
    }
    if (b.n > 0)
        batch_set(&b, &st);
    batch_free(&b);
}

static void serve(int fd)
{
    deliver_agent_serve_batch(fd, service_name(), deliver_batch);
}

/* The master.cf attributes and the user, once: master has checked them
 * before starting us, so a failure here is a daemon started by hand. */
static void read_attributes(void)
{
    size_t n;
    char *const *words = service_args(&n);
    char why[512];

    if (pipe_args_parse(words, n, &args, why, sizeof(why)) < 0
        || pipe_args_user(&args, service_instance_mode(), var.mail_owner, &run_uid, &run_gid,
                          why, sizeof(why)) < 0)
        msg_fatal("service %s: %s", service_name(), why);
}

int main(int argc, char **argv)
{
    service_init(argc, argv, "pipe", SERVICE_FLAG_ROOT);
    read_attributes();
    service_run_single(serve);
}
