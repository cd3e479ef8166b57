/* table_cmd.c - the postmap/postalias command line (table_cmd.h).
 *
 * Building goes through table_file.c, queries through lookup.h (so that
 * "postmap -q" answers exactly what a daemon would), listings read the
 * .cdb directly.
 */
#include "table_cmd.h"
#include "strlist.h"
#include "config.h"
#include "log.h"
#include "lookup.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <search.h>
#include <strings.h>
#include <unistd.h>

#define MAX_TABLES 64
#define QUERY_LINE_MAX 4096

struct table_cmd {
    const char *progname;
    enum table_syntax syntax;
    enum table_dups dups;
    int default_mode;
    const char *query;       /* -q */
    int list;                /* -s */
    size_t ntables;
    char *tables[MAX_TABLES];
    char tables_buf[4096];   /* storage for tables taken from main.cf */
};

static void usage(const struct table_cmd *c)
{
    msg_fatal("usage: %s [-prsvwNno] [-c config_dir] [-q key] [type:]file...", c->progname);
}

/* main.cf is optional for these commands: without one they work on the
 * files named on the command line with built-in defaults. A main.cf that
 * exists but is broken, or a -c directory without one, is fatal. */
static void load_config(const char *cmdline_dir)
{
    const char *dir = config_find_dir(cmdline_dir);
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/main.cf", dir);
    if (cmdline_dir == NULL && access(path, F_OK) < 0 && errno == ENOENT)
        return;
    config_load(dir, NULL, 0);
    log_set_syslog_name(var.syslog_name);
    log_set_file(var.maillog_file);
}

static void parse_args(struct table_cmd *c, int argc, char **argv)
{
    const char *config_dir = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "c:q:prsvwNno")) != -1) {
        switch (opt) {
        case 'c': config_dir = optarg; break;
        case 'q': c->query = optarg; break;
        case 'p': c->default_mode = 1; break;
        case 'r': c->dups = TABLE_DUPS_REPLACE; break;
        case 's': c->list = 1; break;
        case 'w': c->dups = TABLE_DUPS_IGNORE; break;
        case 'v': case 'N': case 'n': case 'o': break;   /* no effect with cdb */
        default: usage(c);
        }
    }
    if (c->query != NULL && c->list)
        msg_fatal("specify -q or -s, not both");
    load_config(config_dir);
    for (; optind < argc; optind++) {
        if (c->ntables == MAX_TABLES)
            msg_fatal("too many tables (at most %d)", MAX_TABLES);
        c->tables[c->ntables++] = argv[optind];
    }
}

/* postalias with no table: alias_database, or alias_maps for -q. */
static void default_alias_tables(struct table_cmd *c)
{
    enum param_id id = c->query != NULL ? PARAM_alias_maps : PARAM_alias_database;
    const char *param = config_name(id), *value = config_value(id);

    if (value == NULL || strlen(value) >= sizeof(c->tables_buf))
        msg_fatal("parameter %s is too long", param);
    c->ntables = strlist_split(value, c->tables_buf, c->tables, MAX_TABLES);
    if (c->ntables == 0)
        msg_fatal("no tables given and %s is empty", param);
}

/* "type:name" -> its type length, or 0 for a bare file name (cdb). */
static size_t type_len(const char *spec)
{
    const char *colon = strchr(spec, ':');

    return colon != NULL && spec[0] != '/' ? (size_t)(colon - spec) : 0;
}

static int type_is(const char *spec, size_t tlen, const char *word)
{
    return tlen == strlen(word) && strncasecmp(spec, word, tlen) == 0;
}

/* The types postmap builds: one cdb file for each of them. */
static int is_file_type(const char *spec, size_t tlen)
{
    return tlen == 0 || type_is(spec, tlen, "cdb") || type_is(spec, tlen, "hash")
           || type_is(spec, tlen, "btree") || type_is(spec, tlen, "lmdb");
}

/* The text file behind a cdb-family spec; fatal for other types, in
 * Postfix's words. */
static const char *file_of(const struct table_cmd *c, const char *spec, const char *what)
{
    size_t tlen = type_len(spec);

    if (!is_file_type(spec, tlen))
        msg_fatal("unsupported dictionary type: %.*s does not support bulk-mode creation.",
                  (int)tlen, spec);
    return tlen ? spec + tlen + 1 : spec;
}

static void build_all(const struct table_cmd *c)
{
    char err[1024];
    size_t i;

    for (i = 0; i < c->ntables; i++) {
        const char *file = file_of(c, c->tables[i], "to create");
        if (table_file_build(file, c->syntax, c->dups, c->default_mode, err, sizeof(err)) < 0)
            msg_fatal("%s", err);
    }
}

/* Keys with white space or quotes are printed quoted, as they would be
 * written in the source (and, for aliases, a ':' or '#' in the name). */
static void print_key(const struct table_cmd *c, const char *key)
{
    const char *special = c->syntax == TABLE_SYNTAX_ALIASES ? " \t\"\\:#" : " \t\"\\";
    const char *p;

    if (key[strcspn(key, special)] == 0) {
        fputs(key, stdout);
    } else {
        putchar('"');
        for (p = key; *p != 0; p++) {
            if (*p == '"' || *p == '\\')
                putchar('\\');
            putchar(*p);
        }
        putchar('"');
    }
    if (c->syntax == TABLE_SYNTAX_ALIASES)
        putchar(':');
}

static void print_entry(const struct table_cmd *c, const char *key, const char *value)
{
    print_key(c, key);
    printf("\t%s\n", value);
}

struct dump_once {
    const struct table_cmd *cmd;
    void *seen;              /* tsearch tree of keys printed */
};

static int dump_one(const char *key, const char *value, void *ctx)
{
    print_entry(ctx, key, value);
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* A texthash: entry, printed unless its key came before (the first one
 * is the one lookups find). */
static int dump_first(const char *key, const char *value, void *ctx)
{
    struct dump_once *d = ctx;
    char *copy;

    if (tfind(key, &d->seen, key_cmp) != NULL)
        return 0;
    if ((copy = strdup(key)) == NULL || tsearch(copy, &d->seen, key_cmp) == NULL)
        msg_fatal("out of memory");
    print_entry(d->cmd, key, value);
    return 0;
}

/* -s of a texthash: table: its source text, as lookups read it. */
static void list_texthash(const struct table_cmd *c, const char *file)
{
    struct dump_once d = {.cmd = c};
    char err[1024];

    if (table_file_read(file, TABLE_SYNTAX_MAP, dump_first, &d, err, sizeof(err)) < 0)
        msg_fatal("%s", err);
    tdestroy(d.seen, free);
}

static void list_all(const struct table_cmd *c)
{
    char err[1024], path[PATH_MAX];
    size_t i;

    for (i = 0; i < c->ntables; i++) {
        size_t tlen = type_len(c->tables[i]);
        if (type_is(c->tables[i], tlen, "texthash")) {
            list_texthash(c, c->tables[i] + tlen + 1);
            continue;
        }
        if (!is_file_type(c->tables[i], tlen))
            msg_fatal("table %s: sequence operation is not supported", c->tables[i]);
        const char *file = file_of(c, c->tables[i], "-s");
        if (snprintf(path, sizeof(path), "%s.cdb", file) >= (int)sizeof(path))
            msg_fatal("%s: path name too long", file);
        if (table_file_dump(path, dump_one, (void *)c, err, sizeof(err)) < 0)
            msg_fatal("table %s: %s", c->tables[i], err);
    }
}

/* A bare file name means cdb:, as in the tables postmap builds. */
static struct lookup_table *open_for_query(const char *spec)
{
    char err[1024], buf[PATH_MAX + 8];
    struct lookup_table *t;

    if (type_len(spec) == 0 && strchr(spec, ':') == NULL) {
        if (snprintf(buf, sizeof(buf), "cdb:%s", spec) >= (int)sizeof(buf))
            msg_fatal("%s: path name too long", spec);
        spec = buf;
    }
    if ((t = lookup_open(spec, err, sizeof(err))) == NULL)
        msg_fatal("%s", err);
    return t;
}

/* The first answer for key among the tables; NULL when none has one.
 * A temporary failure is fatal: "not found" would be a lie. */
static char *query_tables(struct lookup_table **t, size_t n, const struct table_cmd *c,
                          const char *key)
{
    char *value;
    size_t i;

    for (i = 0; i < n; i++) {
        int r = lookup_get(t[i], key, &value);
        if (r == LOOKUP_FOUND)
            return value;
        if (r == LOOKUP_TEMPFAIL)
            msg_fatal("table %s: lookup of \"%s\" failed", c->tables[i], key);
    }
    return NULL;
}

/* One key per line from stdin; returns how many were found. */
static long query_stdin(struct lookup_table **t, const struct table_cmd *c)
{
    char line[QUERY_LINE_MAX + 2];
    long found = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t len = strlen(line);
        char *value;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        else if (len > QUERY_LINE_MAX)
            msg_fatal("query key too long");
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = 0;
        if ((value = query_tables(t, c->ntables, c, line)) != NULL) {
            /* The key as it was asked, as Postfix prints it. */
            printf("%s%s\t%s\n", line, c->syntax == TABLE_SYNTAX_ALIASES ? ":" : "", value);
            free(value);
            found++;
        }
    }
    return found;
}

static int query_all(const struct table_cmd *c)
{
    struct lookup_table *t[MAX_TABLES];
    char *value;
    size_t i;
    int status;

    for (i = 0; i < c->ntables; i++)
        t[i] = open_for_query(c->tables[i]);
    if (strcmp(c->query, "-") == 0) {
        status = query_stdin(t, c) > 0 ? 0 : 1;
    } else if ((value = query_tables(t, c->ntables, c, c->query)) != NULL) {
        printf("%s\n", value);
        free(value);
        status = 0;
    } else {
        status = 1;
    }
    for (i = 0; i < c->ntables; i++)
        lookup_close(t[i]);
    return status;
}

int table_cmd_main(int argc, char **argv, const char *progname, enum table_syntax syntax)
{
    struct table_cmd c = {.progname = progname, .syntax = syntax};

    log_init(progname, LOG_TO_STDERR);
    log_set_fatal_hook(table_file_cleanup);
    parse_args(&c, argc, argv);
    if (c.ntables == 0) {
        if (syntax != TABLE_SYNTAX_ALIASES)
            usage(&c);
        default_alias_tables(&c);
    }
    if (c.query != NULL)
        return query_all(&c);
    if (c.list)
        list_all(&c);
    else
        build_all(&c);
    if (fflush(stdout) != 0 || ferror(stdout))
        msg_fatal("write to standard output: %s", strerror(errno));
    return 0;
}
