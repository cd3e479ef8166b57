/* resolve.c - local delivery: where the mail for one recipient goes, and
 * with whose rights (local(8) and aliases(5) of Postfix), in system mode
 * and in instance mode alike; what a user and a mailbox are in each is
 * mailbox.c's.
 *
 * Mail for NAME goes to the alias NAME (alias_maps; "user+ext" is tried
 * before "user"), else to the destinations in ~NAME/.forward (forward_path),
 * else to NAME's mailbox (mailbox_command, home_mailbox, or
 * mail_spool_directory), else it bounces as an unknown user. An alias or
 * .forward lists addresses (delivered recursively, or re-submitted when not
 * local), "|command", "/file" and ":include:/file" entries; "\name" means
 * NAME's mailbox without further aliasing.
 *
 * Rights: files and commands from an alias run as the owner of the alias
 * table file (default_privs when that is root, or for tables without a
 * file); from a .forward as its user; from an :include: file as that
 * file's owner (default_privs for root). Mailboxes are written as their
 * user (privs.c, mbox.c, lib/mail/maildir.c). Mail for root itself is
 * refused: root gets mail only through an alias. In instance mode all of
 * that is the instance user's rights (privs.c), and root is a name like
 * any other.
 *
 * Loops: an alias or .forward that comes back to itself further up the
 * chain is a mail forwarding loop (5.4.6), as is a message that already
 * carries "Delivered-To: RECIPIENT". A name in its own expansion (the
 * immediate parent) means its mailbox, as in Postfix. Each destination is
 * delivered once per recipient however many ways lead to it.
 *
 * Every destination is logged on its own line (to=<the address whose
 * expansion it was>, orig_to=<the recipient>); the recipient's status for
 * qmgr is the worst of them: a deferral if any destination deferred (so
 * qmgr retries, at the price of duplicates, as in Postfix), else a bounce
 * if any bounced.
 */
#include "local.h"
#include "strlist.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "match.h"
#include "service.h"

#define DEPTH_MAX 20                  /* nested aliases, .forward and :include: */
#define TARGETS_MAX 1000              /* distinct destinations per recipient */
#define INCLUDE_FILE_MAX (1 << 20)    /* bytes of a .forward or :include: file */
#define ALIAS_TABLES_MAX 32
#define FORWARD_PATHS_MAX 16

enum source { SRC_ALIAS, SRC_FORWARD, SRC_INCLUDE };
static const char *const source_word[] = {"alias", "forward", "include"};

struct frame {
    enum source kind;
    char name[PATH_MAX];      /* alias key, user name, or include file */
};

/* One recipient's expansion. */
struct expansion {
    const struct deliver_message *m;
    const struct deliver_rcpt *r;  /* the request's recipient */
    const char *rcpt;              /* the recipient: Delivered-To */
    const char *orig;              /* as given to us: X-Original-To, orig_to= */
    struct frame stack[DEPTH_MAX];
    size_t depth;
    char *seen[TARGETS_MAX];       /* destinations delivered to */
    size_t nseen;
    struct delivery_status result;
    int rank;                      /* of result: 0 none, 1 sent, 2 bounced, 3 deferred */
    int logged;
};

/* Where a list of destinations came from, and what it may do. */
struct context {
    enum source source;
    struct local_user privs;       /* files and commands run as */
    int from_pattern;              /* regexp alias: no files or commands */
    char sender[ADDRESS_MAX];      /* envelope sender of these deliveries */
    char address[ADDRESS_MAX];     /* the address being expanded */
};

struct alias_table {
    struct lookup_table *table;
    char *file;                    /* whose owner gives the rights, or NULL */
    int pattern;
};

static struct {
    char *value;                   /* alias_maps the tables came from */
    size_t n;
    struct alias_table tab[ALIAS_TABLES_MAX];
} aliases;

static void deliver_address(struct expansion *x, const struct context *ctx,
                            const char *address, int literal, int bare);

/* --- small helpers --- */

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL)
        msg_fatal("out of memory");
    return p;
}

static void lowercase(char *s)
{
    for (; *s != 0; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* Length of the part of name before its extension (recipient_delimiter). */
static size_t bare_length(const char *name)
{
    const char *delims = var.recipient_delimiter;
    size_t cut;

    if (delims == NULL || *delims == 0)
        return strlen(name);
    cut = strcspn(name, delims);
    return cut > 0 ? cut : strlen(name);
}

/* Whether item is in a list parameter such as allow_mail_to_commands. */
static int list_has(const char *value, const char *item)
{
    char buf[512], *items[16];
    size_t n, i;

    if (value == NULL || strlen(value) >= sizeof(buf))
        return 0;
    n = strlist_split(value, buf, items, 16);
    for (i = 0; i < n; i++)
        if (strcasecmp(items[i], item) == 0)
            return 1;
    return 0;
}



/* --- results --- */

static int rank_of(const char *dsn)
{
    return dsn[0] == '4' ? 3 : dsn[0] == '5' ? 2 : 1;
}

/* One destination is done: log it and fold it into the result. */
static void target_done(struct expansion *x, const char *address,
                        const struct delivery_status *st)
{
    struct delivery_result res = {
        .queue_id = x->m->queue_id,
        .recipient = address,
        .orig_recipient = x->orig,
        .relay = "local",
        .dsn = st->dsn,
        .text = st->text,
    };
    int rank = rank_of(st->dsn);

    if (x->m->times != NULL)
        res.times = *x->m->times;
    gettimeofday(&res.times.done, NULL);
    delivery_log(&res);
    x->logged = 1;
    if (rank > x->rank) {
        x->result = *st;
        x->rank = rank;
    }
}

/* One destination another agent delivered and logged: only its result. */
static void target_passed(struct expansion *x, const struct delivery_status *st)
{
    int rank = rank_of(st->dsn);

    x->logged = 1;
    if (rank > x->rank) {
        x->result = *st;
        x->rank = rank;
    }
}

static void target_fail(struct expansion *x, const char *address, const char *dsn,
                        const char *fmt, const char *arg)
{
    struct delivery_status st;

    delivery_status_set(&st, dsn, fmt, arg);
    target_done(x, address, &st);
}

/* 1 when key was delivered to already; otherwise remembers it. -1 when
 * the expansion has too many destinations. */
static int seen_before(struct expansion *x, const char *key)
{
    size_t i;

    for (i = 0; i < x->nseen; i++)
        if (strcmp(x->seen[i], key) == 0)
            return 1;
    if (x->nseen == TARGETS_MAX)
        return -1;
    x->seen[x->nseen++] = xstrdup(key);
    return 0;
}

/* Dedupe a destination; a duplicate is silently skipped, too many
 * destinations defer. Returns 1 when the caller should deliver. */
static int first_time(struct expansion *x, const char *address, const char *kind,
                      const char *what)
{
    char key[PATH_MAX + ADDRESS_MAX];
    int r;

    snprintf(key, sizeof(key), "%s:%s", kind, what);
    r = seen_before(x, key);
    if (r < 0)
        target_fail(x, address, "4.3.0", "%s: too many destinations in alias expansion",
                    address);
    return r == 0;
}

static void make_trace(const struct expansion *x, const struct context *ctx,
                       struct mail_copy_trace *t)
{
    t->sender = ctx->sender;
    t->orig_rcpt = x->orig;
    t->delivered_to = x->rcpt;
}

/* --- the ancestry: loops and self-references --- */

static int on_stack(const struct expansion *x, enum source kind, const char *name)
{
    size_t i;

    for (i = 0; i < x->depth; i++)
        if (x->stack[i].kind == kind && strcmp(x->stack[i].name, name) == 0)
            return 1;
    return 0;
}

static int is_parent(const struct expansion *x, enum source kind, const char *name)
{
    return x->depth > 0 && x->stack[x->depth - 1].kind == kind
           && strcmp(x->stack[x->depth - 1].name, name) == 0;
}

/* Push a frame; a full stack is a loop (bounced). Returns 0 or -1. */
static int push(struct expansion *x, enum source kind, const char *name, const char *address)
{
    if (x->depth == DEPTH_MAX) {
        target_fail(x, address, "5.4.6", "mail forwarding loop for %s", address);
        return -1;
    }
    x->stack[x->depth].kind = kind;
    snprintf(x->stack[x->depth].name, sizeof(x->stack[x->depth].name), "%s", name);
    x->depth++;
    return 0;
}

/* --- alias tables --- */

/* The file whose owner gives an alias table's rights, or NULL. */
static char *table_file(const char *spec, int *pattern)
{
    const char *colon;
    size_t tlen;
    char *file;

    while (strncasecmp(spec, "proxy:", 6) == 0)
        spec += 6;
    colon = strchr(spec, ':');
    tlen = colon != NULL ? (size_t)(colon - spec) : 0;
    *pattern = 0;
    if (colon == NULL || colon[1] == 0 || colon[1] == '{')
        return NULL;
    if ((tlen == 3 && strncasecmp(spec, "cdb", 3) == 0)
        || (tlen == 4 && strncasecmp(spec, "hash", 4) == 0)
        || (tlen == 5 && strncasecmp(spec, "btree", 5) == 0)) {
        size_t len = strlen(colon + 1) + 5;
        if ((file = malloc(len)) == NULL)
            msg_fatal("out of memory");
        snprintf(file, len, "%s.cdb", colon + 1);
        return file;
    }
    if (tlen == 6 && strncasecmp(spec, "regexp", 6) == 0) {
        *pattern = 1;
        return xstrdup(colon + 1);
    }
    return NULL;
}

static void aliases_close(void)
{
    size_t i;

    for (i = 0; i < aliases.n; i++) {
        lookup_close(aliases.tab[i].table);
        free(aliases.tab[i].file);
    }
    aliases.n = 0;
    free(aliases.value);
    aliases.value = NULL;
}

/* Open each table of specs with the file whose owner gives its rights.
 * -1 with the reason in err. */
static int aliases_open(char **specs, long n, char *err, size_t errlen)
{
    if (n > ALIAS_TABLES_MAX) {
        snprintf(err, errlen, "too many tables");
        return -1;
    }
    for (long i = 0; i < n; i++) {
        struct alias_table *a = &aliases.tab[aliases.n];
        if ((a->table = lookup_open(specs[i], err, errlen)) == NULL)
            return -1;
        a->file = table_file(specs[i], &a->pattern);
        aliases.n++;
    }
    return 0;
}

/* Open alias_maps (again only when its value changed). -1 with st set. */
static int aliases_ready(struct delivery_status *st)
{
    const char *value = var.alias_maps;
    char err[1024], **specs = NULL;
    long n;
    int rc;

    if (aliases.value != NULL && strcmp(aliases.value, value) == 0)
        return 0;
    aliases_close();
    if ((n = lookup_split_specs(value, &specs)) < 0) {
        snprintf(err, sizeof(err), "unbalanced braces");
        rc = -1;
    } else {
        rc = aliases_open(specs, n, err, sizeof(err));
        lookup_free_specs(specs, n);
    }
    if (rc == 0) {
        aliases.value = xstrdup(value);
        return 0;
    }
    msg_warn("alias_maps: %s", err);
    aliases_close();
    delivery_status_set(st, "4.3.0", "mail system configuration error: alias_maps: %s", err);
    return -1;
}

/* Look key up in every alias table. 1 found (*value malloc'd, *which the
 * table), 0 not found, -1 temporary failure. */
static int alias_lookup(const char *key, char **value, size_t *which)
{
    size_t i;

    for (i = 0; i < aliases.n; i++) {
        int r = lookup_get(aliases.tab[i].table, key, value);
        if (r == LOOKUP_FOUND) {
            *which = i;
            return 1;
        }
        if (r == LOOKUP_TEMPFAIL)
            return -1;
    }
    return 0;
}

/* The rights of an alias table's owner. -1 with st set. */
static int alias_privs(size_t which, struct local_user *u, struct delivery_status *st)
{
    struct stat sb;

    if (aliases.tab[which].file == NULL || stat(aliases.tab[which].file, &sb) < 0)
        return local_default_privs(u, st);
    return local_owner_privs(sb.st_uid, sb.st_gid, u, st);
}

/* With an "owner-KEY" alias, errors go to that owner: it becomes the
 * envelope sender of the expansion (aliases(5)). */
static void owner_sender(const char *key, char *sender, size_t len)
{
    char owner[ADDRESS_MAX], *value = NULL;
    size_t which;

    if (strncmp(key, "owner-", 6) == 0)
        return;
    if (snprintf(owner, sizeof(owner), "owner-%s", key) >= (int)sizeof(owner))
        return;
    if (alias_lookup(owner, &value, &which) == 1
        && snprintf(sender, len, "%s@%s", owner, var.myorigin) >= (int)len)
        msg_warn("owner alias %s: address too long, sender unchanged", owner);
    free(value);
}

/* --- reading .forward and :include: files --- */

/* Read a file with u's rights. Returns the text (malloc'd), or NULL with
 * *err = errno (ENOENT for "no such file"); *sb gets its attributes. */
static char *read_list_file(const char *path, const struct local_user *u, struct stat *sb,
                            int *err)
{
    char *buf = NULL;
    ssize_t n;
    int fd;

    privs_enter(u);
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    *err = errno;
    privs_leave();
    if (fd < 0)
        return NULL;
    if (fstat(fd, sb) < 0 || !S_ISREG(sb->st_mode) || sb->st_size > INCLUDE_FILE_MAX) {
        *err = EFBIG;
        close(fd);
        return NULL;
    }
    if ((buf = malloc((size_t)sb->st_size + 1)) == NULL)
        msg_fatal("out of memory");
    n = read(fd, buf, (size_t)sb->st_size);
    *err = errno;
    close(fd);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static int all_blank(const char *text)
{
    for (; *text != 0; text++)
        if (!isspace((unsigned char)*text))
            return 0;
    return 1;
}

/* --- destinations --- */

static void deliver_command(struct expansion *x, const struct context *ctx, const char *cmd)
{
    struct local_command_env env = {.recipient = ctx->address, .orig_rcpt = x->orig};
    struct mail_copy_trace t;
    struct delivery_status st;
    char what[PATH_MAX + 32];

    if (ctx->from_pattern || !list_has(var.allow_mail_to_commands, source_word[ctx->source])) {
        target_fail(x, ctx->address, "5.7.1", "mail to command is restricted%s", "");
        return;
    }
    snprintf(what, sizeof(what), "%lu:%s", (unsigned long)ctx->privs.uid, cmd);
    if (!first_time(x, ctx->address, "command", what))
        return;
    make_trace(x, ctx, &t);
    command_deliver(cmd, &ctx->privs, x->m, &t, &env, &st);
    target_done(x, ctx->address, &st);
}

static void deliver_file(struct expansion *x, const struct context *ctx, const char *path)
{
    struct mail_copy_trace t;
    struct delivery_status st;
    char what[PATH_MAX + 32];
    size_t len = strlen(path);

    if (ctx->from_pattern || !list_has(var.allow_mail_to_files, source_word[ctx->source])) {
        target_fail(x, ctx->address, "5.7.1", "mail to file is restricted%s", "");
        return;
    }
    if (!first_time(x, ctx->address, "file", path))
        return;
    make_trace(x, ctx, &t);
    if (path[len - 1] == '/') {
        privs_enter(&ctx->privs);
        maildir_deliver(path, x->m, &t, var.mailbox_size_limit, PARAM_mailbox_size_limit, &st);
        privs_leave();
    } else {
        snprintf(what, sizeof(what), "delivered to file: %s", path);
        mbox_deliver(path, &ctx->privs, 0, x->m, &t, what, &st);
    }
    target_done(x, ctx->address, &st);
}

static void deliver_remote(struct expansion *x, const struct context *ctx, const char *address)
{
    char lower[ADDRESS_MAX];
    struct mail_copy_trace t;
    struct delivery_status st;

    snprintf(lower, sizeof(lower), "%s", address);
    lowercase(lower);
    if (!first_time(x, address, "forward", lower))
        return;
    make_trace(x, ctx, &t);
    forward_deliver(address, x->m, &t, &st);
    target_done(x, address, &st);
}

static void expand_list(struct expansion *x, const struct context *ctx, const char *text);

static void deliver_include(struct expansion *x, const struct context *ctx, const char *path)
{
    struct context inner = *ctx;
    struct delivery_status st;
    struct stat sb;
    char *text;
    int err;

    if (path[0] != '/') {
        target_fail(x, ctx->address, "5.3.5", ":include: needs an absolute path: %s", path);
        return;
    }
    if (on_stack(x, SRC_INCLUDE, path)) {
        target_fail(x, ctx->address, "5.4.6", "mail forwarding loop for %s", ctx->address);
        return;
    }
    if ((text = read_list_file(path, &ctx->privs, &sb, &err)) == NULL) {
        delivery_status_set(&st, "4.3.0", "cannot open include file %s: %s", path, strerror(err));
        target_done(x, ctx->address, &st);
        return;
    }
    if (local_owner_privs(sb.st_uid, sb.st_gid, &inner.privs, &st) < 0) {
        target_done(x, ctx->address, &st);
        free(text);
        return;
    }
    inner.source = SRC_INCLUDE;
    inner.from_pattern = 0;
    if (push(x, SRC_INCLUDE, path, ctx->address) == 0) {
        expand_list(x, &inner, text);
        x->depth--;
    }
    free(text);
}

/* "\"quoted text\"" -> quoted text, in place. */
static char *unquote(char *token)
{
    size_t len = strlen(token), i, n = 0;

    if (len < 2 || token[0] != '"' || token[len - 1] != '"')
        return token;
    for (i = 1; i + 1 < len; i++) {
        if (token[i] == '\\' && i + 2 < len)
            i++;
        token[n++] = token[i];
    }
    token[n] = 0;
    return token;
}

static void deliver_token(struct expansion *x, const struct context *ctx, char *token)
{
    char address[ADDRESS_MAX];
    size_t len;

    token = unquote(token);
    if (*token == 0)
        return;
    if (token[0] == '|') {
        deliver_command(x, ctx, token + 1);
    } else if (token[0] == '/') {
        deliver_file(x, ctx, token);
    } else if (strncasecmp(token, ":include:", 9) == 0) {
        deliver_include(x, ctx, token + 9);
    } else {
        int literal = token[0] == '\\';
        if (literal)
            token++;
        len = strlen(token);
        if (len >= 2 && token[0] == '<' && token[len - 1] == '>') {
            token[len - 1] = 0;
            token++;
        }
        if (*token == 0)
            return;
        if (strchr(token, '@') != NULL) {
            deliver_address(x, ctx, token, literal, 0);
        } else {
            snprintf(address, sizeof(address), "%s@%s", token, var.myorigin);
            deliver_address(x, ctx, address, literal, 1);
        }
    }
}

/* Destinations separated by commas or newlines (outside double quotes);
 * lines starting with '#' are comments. */
static void expand_list(struct expansion *x, const struct context *ctx, const char *text)
{
    char *copy = xstrdup(text), *p = copy;

    while (*p != 0) {
        char *start, *end;
        int quoted = 0;
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (*p == '#') {
            p += strcspn(p, "\n");
            continue;
        }
        start = p;
        for (; *p != 0; p++) {
            if (*p == '\\' && p[1] != 0)
                p++;
            else if (*p == '"')
                quoted = !quoted;
            else if (!quoted && (*p == ',' || *p == '\n'))
                break;
        }
        end = p;
        if (*p != 0)
            p++;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        *end = 0;
        if (*start != 0)
            deliver_token(x, ctx, start);
    }
    free(copy);
}

/* --- aliases, .forward, mailbox --- */

/* Returns 1 when name is an alias (delivered, or failed), 0 if not. */
static int deliver_alias(struct expansion *x, const struct context *ctx, const char *address,
                         const char *name)
{
    struct context inner;
    struct delivery_status st;
    char key[ADDRESS_MAX], *value = NULL;
    size_t which = 0, bare = bare_length(name);
    int r;

    if (aliases_ready(&st) < 0) {
        target_done(x, address, &st);
        return 1;
    }
    snprintf(key, sizeof(key), "%s", name);
    r = alias_lookup(key, &value, &which);
    if (r == 0 && bare < strlen(name)) {
        snprintf(key, sizeof(key), "%.*s", (int)bare, name);
        r = alias_lookup(key, &value, &which);
    }
    if (r < 0) {
        target_fail(x, address, "4.3.0", "alias database unavailable for %s", address);
        return 1;
    }
    if (r == 0)
        return 0;
    /* "name: name, other": the name itself means the user's mailbox. */
    if (is_parent(x, SRC_ALIAS, key)) {
        free(value);
        return 0;
    }
    if (on_stack(x, SRC_ALIAS, key)) {
        target_fail(x, address, "5.4.6", "mail forwarding loop for %s", address);
        free(value);
        return 1;
    }
    memset(&inner, 0, sizeof(inner));
    inner.source = SRC_ALIAS;
    inner.from_pattern = aliases.tab[which].pattern;
    snprintf(inner.sender, sizeof(inner.sender), "%s", ctx->sender);
    snprintf(inner.address, sizeof(inner.address), "%s", address);
    if (alias_privs(which, &inner.privs, &st) < 0) {
        target_done(x, address, &st);
    } else if (push(x, SRC_ALIAS, key, address) == 0) {
        owner_sender(key, inner.sender, sizeof(inner.sender));
        expand_list(x, &inner, value);
        x->depth--;
    }
    free(value);
    return 1;
}

/* One expanded forward_path variable, with characters that mean something
 * to a shell or a file system replaced by '_'. */
static void add_filtered(char *out, size_t len, size_t *n, const char *value)
{
    static const char safe[] =
        "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    for (; *value != 0 && *n + 1 < len; value++)
        out[(*n)++] = strchr(safe, *value) != NULL ? *value : '_';
    out[*n] = 0;
}

struct fwd_vars {
    const struct local_user *u;
    const char *address;
    const char *local;
    const char *extension;
    const char *delimiter;         /* the one that split off the extension */
    const char *domain;
};

static const char *fwd_var(const struct fwd_vars *v, const char *name, size_t len)
{
#define VAR(word) (len == strlen(word) && strncmp(name, word, len) == 0)
    if (VAR("user"))
        return v->u->name;
    if (VAR("home"))
        return v->u->home;
    if (VAR("shell"))
        return v->u->shell;
    if (VAR("recipient"))
        return v->address;
    if (VAR("extension"))
        return v->extension;
    if (VAR("domain"))
        return v->domain;
    if (VAR("local"))
        return v->local;
    if (VAR("recipient_delimiter"))
        return v->delimiter;
#undef VAR
    return "";
}

/* Expand $name, ${name}, ${name?text}, ${name:text} in forward_path. */
static void expand_forward_path(const char *tmpl, const struct fwd_vars *v, char *out,
                                size_t len)
{
    const char *p = tmpl;
    size_t n = 0;

    out[0] = 0;
    while (*p != 0 && n + 1 < len) {
        const char *name, *end;
        if (*p != '$') {
            out[n++] = *p++;
            out[n] = 0;
            continue;
        }
        p++;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (close == NULL)
                break;
            name = p + 1;
            end = name + strcspn(name, "?:}");
            const char *value = fwd_var(v, name, (size_t)(end - name));
            if (*end == '?' && *value != 0) {
                char text[PATH_MAX];
                snprintf(text, sizeof(text), "%.*s", (int)(close - end - 1), end + 1);
                expand_forward_path(text, v, out + n, len - n);
                n += strlen(out + n);
            } else if (*end == ':' && *value == 0) {
                char text[PATH_MAX];
                snprintf(text, sizeof(text), "%.*s", (int)(close - end - 1), end + 1);
                expand_forward_path(text, v, out + n, len - n);
                n += strlen(out + n);
            } else if (*end == '}') {
                add_filtered(out, len, &n, value);
            }
            p = close + 1;
        } else {
            name = p;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            add_filtered(out, len, &n, fwd_var(v, name, (size_t)(p - name)));
        }
    }
}

/* Returns 1 when a .forward file took the mail (delivered or failed). */
static int deliver_dotforward(struct expansion *x, const struct context *ctx,
                              const char *address, const char *name,
                              const struct local_user *u)
{
    char local[ADDRESS_MAX], expanded[PATH_MAX * 2], buf[PATH_MAX * 2], *paths[FORWARD_PATHS_MAX];
    char delimiter[2] = "";
    const char *at = strrchr(address, '@');
    size_t bare = bare_length(name), n, i;
    struct fwd_vars v;
    struct context inner;
    struct stat sb;
    int err;

    if (is_parent(x, SRC_FORWARD, u->name))
        return 0;
    if (on_stack(x, SRC_FORWARD, u->name)) {
        target_fail(x, address, "5.4.6", "mail forwarding loop for %s", address);
        return 1;
    }
    snprintf(local, sizeof(local), "%.*s",
             (int)(at != NULL ? (size_t)(at - address) : strlen(address)), address);
    v.u = u;
    v.address = address;
    v.local = local;
    v.domain = at != NULL ? at + 1 : "";
    v.extension = bare < strlen(name) ? name + bare + 1 : "";
    if (bare < strlen(name))
        delimiter[0] = name[bare];
    v.delimiter = delimiter;
    expand_forward_path(config_raw(PARAM_forward_path), &v, expanded, sizeof(expanded));
    n = strlist_split(expanded, buf, paths, FORWARD_PATHS_MAX);
    for (i = 0; i < n; i++) {
        char *text = read_list_file(paths[i], u, &sb, &err);
        if (text == NULL && (err == ENOENT || err == ENOTDIR))
            continue;
        if (text == NULL) {
            target_fail(x, address, "4.3.0", "cannot read forward file: %s", paths[i]);
            return 1;
        }
        if (sb.st_uid != u->uid && sb.st_uid != 0) {
            msg_warn("%s: not owned by %s, ignored", paths[i], u->name);
            free(text);
            continue;
        }
        if (all_blank(text)) {
            free(text);
            return 0;   /* an empty .forward means no forwarding */
        }
        memset(&inner, 0, sizeof(inner));
        inner.source = SRC_FORWARD;
        inner.privs = *u;
        snprintf(inner.sender, sizeof(inner.sender), "%s", ctx->sender);
        snprintf(inner.address, sizeof(inner.address), "%s", address);
        if (push(x, SRC_FORWARD, u->name, address) == 0) {
            expand_list(x, &inner, text);
            x->depth--;
        }
        free(text);
        return 1;
    }
    return 0;
}

static void deliver_mailbox(struct expansion *x, const struct context *ctx,
                            const char *address, const struct local_user *u)
{
    struct mail_copy_trace t;
    struct delivery_status st;

    if (!first_time(x, address, "mailbox", u->name))
        return;
    make_trace(x, ctx, &t);
    if (local_mailbox_deliver(x->m, x->r, u, address, &t, &st))
        target_passed(x, &st);
    else
        target_done(x, address, &st);
}

/* The user NAME: its passwd entry, or in instance mode mailbox.c's.
 * 1 found, 0 not (logged), -1 failed (logged). */
static int find_user(struct expansion *x, const char *address, const char *bare,
                     struct local_user *u)
{
    struct delivery_status st;
    int r;

    if (service_instance_mode()) {
        if ((r = local_instance_user(address, bare, u, &st)) <= 0)
            target_done(x, address, &st);
        return r;
    }
    if ((r = local_user_by_name(bare, u)) < 0) {
        target_fail(x, address, "4.3.0", "cannot look up user %s", bare);
        return -1;
    }
    if (r == 0 || strchr(u->name, '/') != NULL) {
        target_fail(x, address, "5.1.1", "unknown user: \"%s\"", bare);
        return 0;
    }
    if (u->uid == 0) {
        target_fail(x, address, "4.3.0", "mail for %s must go through an alias "
                    "(no mailbox delivery as root)", bare);
        return -1;
    }
    return 1;
}

static void deliver_user(struct expansion *x, const struct context *ctx, const char *address,
                         const char *name, int literal)
{
    char bare[ADDRESS_MAX];
    struct local_user u;

    snprintf(bare, sizeof(bare), "%.*s", (int)bare_length(name), name);
    if (find_user(x, address, bare, &u) <= 0)
        return;
    if (!literal && deliver_dotforward(x, ctx, address, name, &u))
        return;
    deliver_mailbox(x, ctx, address, &u);
}

/* Deliver to address: local (alias, .forward, mailbox) or re-submitted.
 * literal: "\name", straight to the mailbox; bare: it had no domain. */
static void deliver_address(struct expansion *x, const struct context *ctx,
                            const char *address, int literal, int bare)
{
    char name[ADDRESS_MAX];
    const char *domain = address_domain(address);

    if (!bare && domain != NULL && !match_domain_list(var.mydestination, domain)) {
        deliver_remote(x, ctx, address);
        return;
    }
    if (address_localpart(address, name, sizeof(name)) < 0 || name[0] == 0) {
        target_fail(x, address, "5.1.3", "bad address syntax: %s", address);
        return;
    }
    lowercase(name);
    if (!literal && deliver_alias(x, ctx, address, name))
        return;
    deliver_user(x, ctx, address, name, literal);
}

int local_resolve(const struct deliver_message *m, const struct deliver_rcpt *r,
                         struct delivery_status *st)
{
    const char *rcpt = r->address, *orig = r->orig;
    /* malloc, not calloc: the stack of frames and the seen list are about
     * 90 KB that push() and the seen list fill as they grow; clearing them
     * for every recipient was a quarter of local's instructions. */
    struct expansion *x = malloc(sizeof(*x));
    struct context top;
    size_t i;
    int seen, logged;

    if (x == NULL)
        msg_fatal("out of memory");
    x->depth = 0;
    x->nseen = 0;
    memset(&x->result, 0, sizeof(x->result));
    x->rank = 0;
    x->logged = 0;
    x->m = m;
    x->r = r;
    x->rcpt = rcpt;
    x->orig = orig != NULL ? orig : rcpt;
    memset(&top, 0, sizeof(top));
    top.source = SRC_ALIAS;
    snprintf(top.sender, sizeof(top.sender), "%s", m->sender);
    snprintf(top.address, sizeof(top.address), "%s", rcpt);
    if ((seen = mail_copy_delivered_to_seen(m, rcpt)) < 0) {
        msg_warn("%s: error reading queue file content", m->queue_id);
        delivery_status_set(&x->result, "4.3.0", "error reading queue file");
    } else if (seen) {
        target_fail(x, rcpt, "5.4.6", "mail forwarding loop for %s", rcpt);
    } else {
        /* qmgr chose local for this recipient: its domain is ours,
         * whatever mydestination says. */
        deliver_address(x, &top, rcpt, 0, 1);
    }
    if (x->rank == 0 && !x->logged && x->result.dsn[0] == 0)
        delivery_status_set(&x->result, "2.0.0", "delivered");
    *st = x->result;
    logged = x->logged;
    for (i = 0; i < x->nseen; i++)
        free(x->seen[i]);
    free(x);
    return logged;
}
