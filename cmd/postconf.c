/* postconf.c - show and edit the configuration, with Postfix's command line.
 *
 *   postconf [-c config_dir] [-d] [-h] [-n] [-x] [name...]
 *   postconf [-c config_dir] -e name=value...     edit main.cf in place
 *   postconf [-c config_dir] -X name...           remove from main.cf
 *   postconf [-c config_dir] -M [service[/type]...]
 *   postconf -m                                   lookup table types
 *
 * Printing goes through config.h (config_walk, config_default): every
 * parameter Postern knows, "name = value", unexpanded unless -x, only what
 * main.cf sets with -n, the built-in defaults with -d, values alone with
 * -h. -M prints master.cf through mastercf.h, one normalised line per
 * service. -e and -X rewrite main.cf as text so that comments, blank lines
 * and the order of everything else survive: a parameter's line and its
 * continuation lines are replaced (or dropped), a new one is appended, and
 * the result replaces main.cf atomically (temporary file, fsync, rename).
 */
#include "config.h"
#include "fsync_dir.h"
#include "log.h"
#include "lookup.h"
#include "mastercf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAIN_CF_MAX (16 << 20)   /* the same bound as config.c's reader */
#define ERR_MAX 1024

struct options {
    int defaults, hide_names, non_default, expand, edit, remove, master, map_types;
};

/* --- printing parameters --- */

static void print_param(const struct options *o, const char *name, const char *value)
{
    if (o->hide_names)
        printf("%s\n", value);
    else if (*value)
        printf("%s = %s\n", name, value);
    else
        printf("%s =\n", name);
}

struct print_ctx {
    const struct options *o;
    const char *only;    /* NULL: every parameter */
    int found;
};

static void print_cb(const char *name, const char *value, int is_set, void *arg)
{
    struct print_ctx *p = arg;
    if (p->only && strcmp(p->only, name) != 0)
        return;
    if (p->o->non_default && !is_set)
        return;
    p->found = 1;
    if (p->o->expand && !p->o->defaults) {
        const char *v = config_get(name);
        print_param(p->o, name, v ? v : value);
    } else {
        print_param(p->o, name, value);
    }
}

static int print_params(const struct options *o, char **names, int n)
{
    struct print_ctx p = {.o = o};
    if (n == 0) {
        config_walk(1, o->defaults, print_cb, &p);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        p.only = names[i];
        p.found = 0;
        config_walk(1, o->defaults, print_cb, &p);
        const char *how;
        enum config_kind kind = config_kind(names[i], &how);
        if (kind == CONFIG_POSTFIX_IGNORED)
            msg_warn("%s: a Postfix parameter that Postern does not implement", names[i]);
        else if (kind == CONFIG_POSTFIX_OTHERWISE)
            msg_info("%s: a Postfix parameter that Postern does not need: %s", names[i], how);
        if (!p.found && !o->non_default && kind != CONFIG_UNKNOWN)
            print_param(o, names[i], "");
        else if (!p.found && !o->non_default)
            msg_warn("%s: unknown parameter", names[i]);
    }
    return 0;
}

/* --- master.cf --- */


/* "name" or "name/type" matches e. */
static int service_selected(const struct mastercf_entry *e, char **sel, int n)
{
    if (n == 0)
        return 1;
    for (int i = 0; i < n; i++) {
        const char *slash = strchr(sel[i], '/');
        size_t len = slash ? (size_t)(slash - sel[i]) : strlen(sel[i]);
        if (strlen(e->name) == len && strncmp(e->name, sel[i], len) == 0 &&
            (!slash || strcmp(slash + 1, mastercf_type_name(e->type)) == 0))
            return 1;
    }
    return 0;
}

static void print_service(const struct mastercf_entry *e)
{
    char wakeup[16], maxproc[16];
    if (e->wakeup > 0)
        snprintf(wakeup, sizeof(wakeup), "%d%s", e->wakeup, e->wakeup_if_running ? "?" : "");
    else
        snprintf(wakeup, sizeof(wakeup), "-");
    if (e->maxproc >= 0)
        snprintf(maxproc, sizeof(maxproc), "%d", e->maxproc);
    else
        snprintf(maxproc, sizeof(maxproc), "-");
    printf("%-10s %-5s %-7s %-7s %-7s %-7s %-7s %s", e->name, mastercf_type_name(e->type),
           e->private_ ? "y" : "n", e->unpriv ? "y" : "n", e->chroot ? "y" : "n", wakeup,
           maxproc, e->command);
    for (size_t i = 0; i < e->nargs; i++)
        printf(" %s", e->args[i]);
    printf("\n");
}

static int print_master_cf(const char *dir, char **sel, int n)
{
    char path[PATH_MAX], err[ERR_MAX];
    struct mastercf cf;
    if (snprintf(path, sizeof(path), "%s/master.cf", dir) >= (int)sizeof(path))
        msg_fatal("config directory path too long");
    if (mastercf_load(path, &cf, err, sizeof(err)) < 0)
        msg_fatal("%s", err);
    for (size_t i = 0; i < cf.count; i++)
        if (service_selected(&cf.entries[i], sel, n))
            print_service(&cf.entries[i]);
    mastercf_free(&cf);
    return 0;
}

/* --- table types --- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every table type, sorted, once each (Postfix's -m). */
static int print_map_types(void)
{
    const char *names[64], *name;
    size_t n = 0;

    while (n < sizeof(names) / sizeof(names[0]) && (name = lookup_type_name(n)) != NULL)
        names[n++] = name;
    qsort(names, n, sizeof(names[0]), name_cmp);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
            printf("%s\n", names[i]);
    return 0;
}

/* --- editing main.cf --- */

/* One requested change: value NULL removes the parameter. */
struct edit {
    char *name;
    const char *value;
    int done;
};

/* Split "name=value" (white space around either is dropped); name is
 * allocated, the caller frees it. */
static void edit_parse(const char *arg, int remove, struct edit *e)
{
    const char *eq = remove ? NULL : strchr(arg, '=');
    if (!remove && !eq)
        msg_fatal("-e %s: need name=value", arg);
    const char *ns = arg, *ne = eq ? eq : arg + strlen(arg);
    while (ns < ne && isspace((unsigned char)*ns))
        ns++;
    while (ne > ns && isspace((unsigned char)ne[-1]))
        ne--;
    if (ne == ns)
        msg_fatal("%s: missing parameter name", arg);
    for (const char *p = ns; p < ne; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            msg_fatal("%s: bad parameter name", arg);
    e->name = strndup(ns, (size_t)(ne - ns));
    if (!e->name)
        msg_fatal("out of memory");
    e->value = NULL;
    e->done = 0;
    if (eq) {
        const char *v = eq + 1;
        while (isspace((unsigned char)*v))
            v++;
        if (strchr(v, '\n') || strchr(v, '\r'))
            msg_fatal("%s: the value must be one line", e->name);
        e->value = v;
    }
}

/* main.cf's text, NUL-terminated; the caller frees it. */
static char *read_main_cf(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        msg_fatal("open %s: %m", path);
    if (fstat(fd, st) < 0)
        msg_fatal("stat %s: %m", path);
    if (st->st_size > MAIN_CF_MAX)
        msg_fatal("%s: file too large", path);
    size_t cap = (size_t)st->st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        msg_fatal("out of memory");
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            msg_fatal("read %s: %m", path);
        if (n == 0 || (len += (size_t)n) == cap - 1)
            break;   /* a file that grows meanwhile is cut at its old size */
    }
    close(fd);
    buf[len] = 0;
    if (strlen(buf) != len)
        msg_fatal("%s: file contains a NUL byte", path);
    return buf;
}

/* The parameter a line starts, as [*start, *end), or 0 when the line is a
 * comment, blank, or continues the previous parameter. */
static int line_param(const char *line, const char *eol, const char **start, const char **end)
{
    if (line == eol || isspace((unsigned char)*line) || *line == '#')
        return 0;
    const char *p = line;
    while (p < eol && *p != '=' && !isspace((unsigned char)*p))
        p++;
    *start = line;
    *end = p;
    return 1;
}

/* A continuation line: white space first, then something not a comment
 * (config.c skips comment and blank lines without ending the parameter). */
static int line_continues(const char *line, const char *eol)
{
    if (line == eol || !isspace((unsigned char)*line))
        return 0;
    const char *p = line;
    while (p < eol && isspace((unsigned char)*p))
        p++;
    return p < eol && *p != '#';
}

static struct edit *edit_find(struct edit *edits, int n, const char *s, const char *e)
{
    for (int i = 0; i < n; i++)
        if (strlen(edits[i].name) == (size_t)(e - s) && strncmp(edits[i].name, s, e - s) == 0)
            return &edits[i];
    return NULL;
}

static void out_write(FILE *out, const char *s, size_t len, const char *tmp)
{
    if (len && fwrite(s, 1, len, out) != len)
        msg_fatal("write %s: %m", tmp);
}

static void out_setting(FILE *out, const struct edit *e, const char *tmp)
{
    if (fprintf(out, "%s = %s\n", e->name, e->value) < 0)
        msg_fatal("write %s: %m", tmp);
}

/* Copy text to out with edits applied: the first line of an edited
 * parameter becomes "name = value", its continuation lines and any later
 * setting of the same name go, so the file says it once. */
static void apply_edits(const char *text, FILE *out, struct edit *edits, int n, const char *tmp)
{
    int skipping = 0;   /* inside a replaced or removed parameter */
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        const char *eol = nl ? nl : line + strlen(line);
        const char *next = nl ? nl + 1 : eol;
        const char *ns, *ne;
        int drop = 0;   /* comments and blank lines always stay */
        if (line_param(line, eol, &ns, &ne)) {
            struct edit *e = edit_find(edits, n, ns, ne);
            skipping = drop = e != NULL;
            if (e && e->value && !e->done)
                out_setting(out, e, tmp);
            if (e)
                e->done = 1;
        } else if (line_continues(line, eol)) {
            drop = skipping;
        }
        if (!drop) {
            out_write(out, line, (size_t)(next - line), tmp);
            if (!nl)
                out_write(out, "\n", 1, tmp);   /* the file lacked a final newline */
        }
        line = next;
    }
    for (int i = 0; i < n; i++)
        if (!edits[i].done && edits[i].value)
            out_setting(out, &edits[i], tmp);
}

/* Write the edited text beside main.cf with its owner and mode, then
 * rename it over: readers see the old file or the new one, never half. */
static int edit_main_cf(const char *dir, char **args, int n, int remove)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/main.cf", dir) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/main.cf.postconf.%ld", dir, (long)getpid()) >=
            (int)sizeof(tmp))
        msg_fatal("config directory path too long");
    struct edit *edits = calloc((size_t)n, sizeof(*edits));
    if (!edits)
        msg_fatal("out of memory");
    for (int i = 0; i < n; i++)
        edit_parse(args[i], remove, &edits[i]);
    struct stat st;
    char *text = read_main_cf(path, &st);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
    if (fd < 0)
        msg_fatal("create %s: %m", tmp);
    if (fchmod(fd, st.st_mode & 07777) < 0 ||
        (geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) < 0))
        msg_warn("%s: cannot copy the owner and mode of main.cf: %m", tmp);
    FILE *out = fdopen(fd, "w");
    if (!out)
        msg_fatal("fdopen %s: %m", tmp);
    apply_edits(text, out, edits, n, tmp);
    if (fflush(out) != 0 || fsync(fd) < 0) {
        unlink(tmp);
        msg_fatal("write %s: %m", tmp);
    }
    fclose(out);
    if (rename(tmp, path) < 0) {
        unlink(tmp);
        msg_fatal("rename %s to %s: %m", tmp, path);
    }
    if (fsync_dir(dir) < 0)
        msg_warn("fsync %s: %m", dir);
    free(text);
    for (int i = 0; i < n; i++)
        free(edits[i].name);
    free(edits);
    return 0;
}

/* --- main --- */

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: postconf [-c config_dir] [-d] [-h] [-n] [-x] [name...]\n"
                    "       postconf [-c config_dir] -e name=value...\n"
                    "       postconf [-c config_dir] -X name...\n"
                    "       postconf [-c config_dir] -M [service[/type]...]\n"
                    "       postconf -m\n");
    exit(1);
}

/* Static, so that exits through msg_fatal leave nothing unreachable. */
static char *config_dir;

int main(int argc, char **argv)
{
    struct options o = {0};
    const char *cmdline_dir = NULL;
    int opt;
    log_init("postconf", LOG_TO_STDERR);
    while ((opt = getopt(argc, argv, "c:dehnmxMXv")) != -1) {
        switch (opt) {
        case 'c': cmdline_dir = optarg; break;
        case 'd': o.defaults = 1; break;
        case 'e': o.edit = 1; break;
        case 'h': o.hide_names = 1; break;
        case 'n': o.non_default = 1; break;
        case 'x': o.expand = 1; break;
        case 'M': o.master = 1; break;
        case 'm': o.map_types = 1; break;
        case 'X': o.remove = 1; break;
        case 'v': break;
        default: usage();
        }
    }
    if (o.edit + o.remove + o.master + o.map_types + (o.defaults || o.non_default) > 1)
        usage();
    /* Needs no configuration: the types are compiled in. */
    if (o.map_types)
        return print_map_types();
    if ((o.edit || o.remove) && optind == argc)
        usage();
    const char *given = config_find_dir(cmdline_dir);
    if (!(config_dir = realpath(given, NULL)))
        msg_fatal("config directory %s: %m", given);
    if (o.edit || o.remove)
        return edit_main_cf(config_dir, argv + optind, argc - optind, o.remove);
    if (o.master)
        return print_master_cf(config_dir, argv + optind, argc - optind);
    char err[ERR_MAX];
    /* Defaults need no main.cf; everything else shows what main.cf says. */
    if (config_try_load(config_dir, NULL, 0, err, sizeof(err)) < 0 && !o.defaults)
        msg_fatal("%s", err);
    return print_params(&o, argv + optind, argc - optind);
}
