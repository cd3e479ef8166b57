/* test_lookup.c - unit tests for lib/util/lookup.c and its table types in
 * lib/util/lookup_*.c (cdb, hash/btree as cdb, static, inline, regexp, pcre,
 * cidr, texthash, unix:passwd.byname, what the network types do without a
 * server, SQL and LDAP query files, lists and Postfix's address lookup
 * order) and
 * lib/util/table_file.c (building a .cdb from postmap and aliases(5)
 * source, listing it).
 *
 * Tables are real files in a fresh mkdtemp directory; .cdb files are built
 * by table_file_build, the code postmap and postalias run. The cases that
 * matter most are the failure modes: a missing or stale table must be a
 * temporary failure, never a silent "not found".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_support.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "lookup.h"
#include "table_file.h"

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_lookup");
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

static void path_in(const struct fixture *f, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", f->dir, name);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Move a file's mtime into the past, so that a table built from it
 * afterwards is clearly newer. */
static void age_file(const char *path, int seconds)
{
    struct timeval tv[2];

    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= seconds;
    tv[1] = tv[0];
    assert_int_equal(utimes(path, tv), 0);
}

static long build(const char *source, enum table_syntax syntax, enum table_dups dups)
{
    char err[1024] = "";
    long n = table_file_build(source, syntax, dups, 0, err, sizeof(err));

    if (n < 0)
        fail_msg("build %s: %s", source, err);
    return n;
}

/* Expect key to be found in t with exactly want. */
static void expect_found(struct lookup_table *t, const char *key, const char *want)
{
    char *value = NULL;
    int r = lookup_get(t, key, &value);

    if (r != LOOKUP_FOUND)
        fail_msg("key \"%s\": result %d, want found", key, r);
    assert_string_equal(value, want);
    free(value);
}

static void expect_lookup(struct lookup_table *t, const char *key, int want)
{
    char *value = NULL;

    assert_int_equal(lookup_get(t, key, &value), want);
    assert_null(value);
}

static struct lookup_table *open_ok(const char *spec)
{
    char err[1024] = "";
    struct lookup_table *t = lookup_open(spec, err, sizeof(err));

    if (t == NULL)
        fail_msg("open %s: %s", spec, err);
    return t;
}

static void test_cdb_build_and_lookup(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "map", src, sizeof(src));
    write_text(src, "# a comment\n"
                    "Alpha  first value\n"
                    "\n"
                    "beta second\n"
                    "   continued\n"
                    "  # indented comment\n"
                    "\"quoted key\" q\n"
                    "user@Example.COM  u\n"
                    "nokey\n");
    assert_int_equal(build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN), 4);
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    t = open_ok(spec);
    expect_found(t, "alpha", "first value");
    expect_found(t, "ALPHA", "first value");        /* keys fold to lower case */
    expect_found(t, "beta", "second   continued");  /* continuation joined */
    expect_found(t, "quoted key", "q");
    expect_found(t, "user@example.com", "u");
    expect_lookup(t, "gamma", LOOKUP_NOTFOUND);
    expect_lookup(t, "nokey", LOOKUP_NOTFOUND);     /* no value: skipped */
    expect_lookup(t, "", LOOKUP_NOTFOUND);
    expect_lookup(t, "first", LOOKUP_NOTFOUND);     /* values are not keys */
    lookup_close(t);

    /* hash: and btree: read the same file. */
    snprintf(spec, sizeof(spec), "hash:%s", src);
    t = open_ok(spec);
    expect_found(t, "alpha", "first value");
    lookup_close(t);
    snprintf(spec, sizeof(spec), "btree:%s", src);
    t = open_ok(spec);
    expect_found(t, "beta", "second   continued");
    lookup_close(t);
}

static void test_cdb_many_keys(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8], key[32], want[32];
    struct lookup_table *t;
    FILE *fp;
    int i;

    path_in(f, "big", src, sizeof(src));
    fp = fopen(src, "w");
    assert_non_null(fp);
    for (i = 0; i < 10000; i++)
        fprintf(fp, "key%05d value-%d\n", i, i * 7);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN), 10000);
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    t = open_ok(spec);
    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "KEY%05d", i);
        snprintf(want, sizeof(want), "value-%d", i * 7);
        expect_found(t, key, want);
    }
    expect_lookup(t, "key10000", LOOKUP_NOTFOUND);
    lookup_close(t);
}

static void test_missing_table_recovers(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "later", src, sizeof(src));
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    /* Opening succeeds; every lookup is a temporary failure, not a miss. */
    t = open_ok(spec);
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);
    write_text(src, "x y\n");
    age_file(src, 10);
    build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
    expect_found(t, "x", "y");
    /* A table that disappears fails again. */
    {
        char db[PATH_MAX + 8];
        snprintf(db, sizeof(db), "%s.cdb", src);
        assert_int_equal(unlink(db), 0);
    }
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);
    lookup_close(t);
}

static void test_stale_table_is_tempfail(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], db[PATH_MAX + 8], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "stale", src, sizeof(src));
    snprintf(db, sizeof(db), "%s.cdb", src);
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    write_text(src, "k old\n");
    build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
    age_file(db, 60);          /* the source is now newer than the table */
    t = open_ok(spec);
    expect_lookup(t, "k", LOOKUP_TEMPFAIL);
    write_text(src, "k new\n");
    build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
    expect_found(t, "k", "new");
    lookup_close(t);
}

static void test_rebuilt_table_is_reopened(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;
    int round;

    path_in(f, "live", src, sizeof(src));
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    write_text(src, "k v0\n");
    build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
    t = open_ok(spec);
    expect_found(t, "k", "v0");
    for (round = 1; round <= 3; round++) {
        char text[64], want[16];
        snprintf(text, sizeof(text), "k v%d\nother%d x\n", round, round);
        snprintf(want, sizeof(want), "v%d", round);
        write_text(src, text);
        build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
        expect_found(t, "k", want);
    }
    lookup_close(t);
}

static void test_duplicates(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "dups", src, sizeof(src));
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    write_text(src, "k first\nK second\nother o\n");
    assert_int_equal(build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN), 2);
    t = open_ok(spec);
    expect_found(t, "k", "first");
    assert_int_equal(build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_REPLACE), 2);
    expect_found(t, "k", "second");
    assert_int_equal(build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_IGNORE), 2);
    expect_found(t, "k", "first");
    expect_found(t, "other", "o");
    lookup_close(t);
}

static void test_alias_syntax(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "aliases", src, sizeof(src));
    snprintf(spec, sizeof(spec), "cdb:%s", src);
    write_text(src, "# system aliases\n"
                    "postmaster: root\n"
                    "Root : alice, bob,\n"
                    "\tcarol\n"
                    "\"odd name\": \"|/usr/bin/cat -u\", /var/tmp/file\n"
                    "list:\t:include:/etc/list\n"
                    "broken line\n"
                    "empty:\n");
    assert_int_equal(build(src, TABLE_SYNTAX_ALIASES, TABLE_DUPS_WARN), 4);
    t = open_ok(spec);
    expect_found(t, "postmaster", "root");
    expect_found(t, "root", "alice, bob,\tcarol");
    expect_found(t, "odd name", "\"|/usr/bin/cat -u\", /var/tmp/file");
    expect_found(t, "list", ":include:/etc/list");
    expect_lookup(t, "broken", LOOKUP_NOTFOUND);
    expect_lookup(t, "empty", LOOKUP_NOTFOUND);
    lookup_close(t);
}

struct dump_ctx {
    int count;
    int saw_k2;
};

static int count_entry(const char *key, const char *value, void *arg)
{
    struct dump_ctx *d = arg;

    d->count++;
    if (strcmp(key, "k2") == 0 && strcmp(value, "v 2") == 0)
        d->saw_k2 = 1;
    return 0;
}

static void test_dump(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], db[PATH_MAX + 8], err[256];
    struct dump_ctx d = {0};

    path_in(f, "dump", src, sizeof(src));
    snprintf(db, sizeof(db), "%s.cdb", src);
    write_text(src, "k1 v1\nK2 v 2\nk3 v3\n");
    build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
    assert_int_equal(table_file_dump(db, count_entry, &d, err, sizeof(err)), 0);
    assert_int_equal(d.count, 3);
    assert_true(d.saw_k2);
    assert_int_equal(table_file_dump(src, count_entry, &d, err, sizeof(err)), -1);
}

static void test_build_errors_leave_old_table(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], db[PATH_MAX + 8], err[256];
    struct stat before, after;

    path_in(f, "keep", src, sizeof(src));
    snprintf(db, sizeof(db), "%s.cdb", src);
    write_text(src, "k v\n");
    build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN);
    assert_int_equal(stat(db, &before), 0);
    assert_int_equal(unlink(src), 0);
    assert_int_equal(table_file_build(src, TABLE_SYNTAX_MAP, TABLE_DUPS_WARN, 0, err,
                                      sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(stat(db, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
}

static void test_static_and_inline(void **state)
{
    char err[256] = "";
    struct lookup_table *t;

    t = open_ok("static:OK");
    expect_found(t, "anything", "OK");
    expect_found(t, "", "OK");
    lookup_close(t);
    t = open_ok("static:{ text with spaces }");
    expect_found(t, "x", "text with spaces");
    lookup_close(t);
    assert_null(lookup_open("static:{unclosed", err, sizeof(err)));
    assert_non_null(strstr(err, "static"));

    t = open_ok("inline:{ Alice=a1, bob=b1 ,{ carol = c with, comma }, alice=second }");
    expect_found(t, "alice", "a1");     /* first entry wins */
    expect_found(t, "ALICE", "a1");
    expect_found(t, "bob", "b1");
    expect_found(t, "carol", "c with, comma");
    expect_lookup(t, "dave", LOOKUP_NOTFOUND);
    lookup_close(t);
    assert_null(lookup_open("inline:{ novalue }", err, sizeof(err)));
    assert_null(lookup_open("inline:{ spaced = needs braces }", err, sizeof(err)));
    assert_null(lookup_open("inline:a=b", err, sizeof(err)));
    assert_null(lookup_open("inline:{ a=b", err, sizeof(err)));
}

static void test_bad_specs(void **state)
{
    char err[256] = "";

    assert_null(lookup_open("nosuchtype:/x", err, sizeof(err)));
    assert_non_null(strstr(err, "unsupported dictionary type: nosuchtype"));
    assert_null(lookup_open("/etc/aliases", err, sizeof(err)));
    assert_null(lookup_open("cdb:", err, sizeof(err)));
    assert_null(lookup_open("unix:group.byname", err, sizeof(err)));
    assert_null(lookup_list_open("static:a, inline:{ x=y", err, sizeof(err)));
}

static void test_regexp_file(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "re", src, sizeof(src));
    snprintf(spec, sizeof(spec), "regexp:%s", src);
    write_text(src, "# comment\n"
                    "/^(.*)-outgoing@(.*)$/   550 Use ${1}@$2 instead $$5\n"
                    "/^CaseSensitive$/i      exact-case\n"
                    "if !/^owner-/\n"
                    "/^list-(a|b)@/          list $1\n"
                    "endif\n"
                    "/^owner-list-a@/        owner\n"
                    "!/@/                    no at sign\n"
                    "#^hash#delimited#       hash $1\n"
                    "/^multi/  first line\n"
                    "  continued\n");
    t = open_ok(spec);
    expect_found(t, "Joe-Outgoing@Example.com", "550 Use Joe@Example.com instead $5");
    expect_found(t, "CaseSensitive", "exact-case");
    expect_lookup(t, "casesensitive@x", LOOKUP_NOTFOUND);
    expect_found(t, "LIST-B@x", "list B");
    expect_found(t, "owner-list-a@x", "owner");
    expect_found(t, "plain", "no at sign");
    expect_found(t, "multi@x", "first line  continued");
    expect_lookup(t, "nothing@here", LOOKUP_NOTFOUND);
    lookup_close(t);
}

static void test_regexp_errors_and_reload(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8], err[256];
    struct lookup_table *t;

    path_in(f, "re2", src, sizeof(src));
    snprintf(spec, sizeof(spec), "regexp:%s", src);
    t = open_ok(spec);
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);          /* missing file */
    write_text(src, "/(unclosed/ result\n");
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);          /* bad pattern */
    write_text(src, "/x/ one\n/y/\n");
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);          /* missing result */
    write_text(src, "if /a/\n/b/ ab\n");
    expect_lookup(t, "ab", LOOKUP_TEMPFAIL);         /* if without endif */
    write_text(src, "/x/q result\n");
    expect_lookup(t, "x", LOOKUP_TEMPFAIL);          /* unknown flag */
    write_text(src, "/x/ fixed result\n");
    age_file(src, 30);
    expect_found(t, "x", "fixed result");
    write_text(src, "/x/ changed\n");                /* picked up without reopen */
    expect_found(t, "x", "changed");
    lookup_close(t);

    t = open_ok("regexp:{ {/^(a+)$/ got $1}, {/^b/i B} }");
    expect_found(t, "aaa", "got aaa");
    expect_found(t, "bcd", "B");
    expect_lookup(t, "c", LOOKUP_NOTFOUND);
    lookup_close(t);
    assert_null(lookup_open("regexp:{ {/(/ x} }", err, sizeof(err)));
    assert_non_null(strstr(err, "bad regular expression"));
}

static void test_pcre_file(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "pcre", src, sizeof(src));
    snprintf(spec, sizeof(spec), "pcre:%s", src);
    write_text(src, "/^(.*)\\+(?<ext>.*)@(example\\.com)$/  $1 at $3 ($2)\n"
                    "if !/^owner-/\n"
                    "/^list-(a|b)@/          list $1\n"
                    "endif\n"
                    "/^Exact$/i              exact\n"
                    "/a.b/                   dotall\n"
                    "/^x (y) z$/x            extended $1\n"
                    "/^(a+?)(a*)$/U          ungreedy [$1][$2]\n");
    t = open_ok(spec);
    expect_found(t, "Bob+Tag@example.com", "Bob at example.com (Tag)");
    expect_found(t, "LIST-B@x", "list B");
    expect_lookup(t, "owner-list-a@x", LOOKUP_NOTFOUND);
    expect_found(t, "Exact", "exact");
    expect_lookup(t, "exact", LOOKUP_NOTFOUND);
    expect_found(t, "a\nb", "dotall");
    expect_found(t, "xyz", "extended y");
    expect_found(t, "aaa", "ungreedy [aaa][]");
    lookup_close(t);

    /* A $n past the pattern's groups, or after a negated pattern, fails
     * the table when it is read (Postfix skips the rule). */
    write_text(src, "/(a)/ $2\n");
    t = open_ok(spec);
    expect_lookup(t, "a", LOOKUP_TEMPFAIL);
    write_text(src, "!/(a)/ $1\n");
    age_file(src, 10);
    expect_lookup(t, "b", LOOKUP_TEMPFAIL);
    write_text(src, "/a/Q x\n");
    age_file(src, 20);
    expect_lookup(t, "a", LOOKUP_TEMPFAIL);
    write_text(src, "/(a/ x\n");
    age_file(src, 30);
    expect_lookup(t, "a", LOOKUP_TEMPFAIL);
    lookup_close(t);

    /* A pattern that backtracks without end hits the match limit: a
     * warning and no match, not a stalled daemon. */
    t = open_ok("pcre:{ {/^(a|aa)+$/ slow}, {/./ next} }");
    expect_found(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "next");
    lookup_close(t);
}

static void test_cidr_file(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 8];
    struct lookup_table *t;

    path_in(f, "cidr", src, sizeof(src));
    snprintf(spec, sizeof(spec), "cidr:%s", src);
    write_text(src, "192.168.1.1 host\n"
                    "192.168.0.0/16 net16\n"
                    "[2001:db8::1] v6host\n"
                    "2001:db8::/32 v6net\n"
                    "if 10.0.0.0/8\n"
                    "!10.2.0.0/15 ten-not-2-3\n"
                    "endif\n"
                    "0.0.0.0/0 any\n");
    t = open_ok(spec);
    expect_found(t, "192.168.1.1", "host");
    expect_found(t, "192.168.200.1", "net16");
    expect_found(t, "2001:DB8::1", "v6host");
    expect_found(t, "2001:db8:0:0::2", "v6net");
    expect_found(t, "10.1.0.1", "ten-not-2-3");
    expect_found(t, "10.3.0.1", "any");
    expect_found(t, "8.8.8.8", "any");
    expect_lookup(t, "2001:db9::1", LOOKUP_NOTFOUND);
    expect_lookup(t, "[10.1.0.1]", LOOKUP_NOTFOUND);
    expect_lookup(t, "not-an-address", LOOKUP_NOTFOUND);
    lookup_close(t);
    write_text(src, "10.1.0.0/8 host bits set\n");
    t = open_ok(spec);
    expect_lookup(t, "10.1.0.1", LOOKUP_TEMPFAIL);
    lookup_close(t);
    t = open_ok("cidr:{ {127.0.0.0/8 loopback}, {::1 v6-loopback} }");
    expect_found(t, "127.0.0.2", "loopback");
    expect_found(t, "::1", "v6-loopback");
    lookup_close(t);
}

static void test_texthash_file(void **state)
{
    struct fixture *f = *state;
    char src[PATH_MAX], spec[PATH_MAX + 16];
    struct lookup_table *t;

    path_in(f, "th", src, sizeof(src));
    snprintf(spec, sizeof(spec), "texthash:%s", src);
    t = open_ok(spec);
    expect_lookup(t, "a", LOOKUP_TEMPFAIL);          /* missing file */
    write_text(src, "Alpha one\nbeta two\n  continued\nalpha duplicate\n");
    expect_found(t, "ALPHA", "one");
    expect_found(t, "beta", "two  continued");
    expect_lookup(t, "gamma", LOOKUP_NOTFOUND);
    write_text(src, "gamma three\n");              /* no postmap needed */
    age_file(src, 10);
    expect_found(t, "gamma", "three");
    expect_lookup(t, "alpha", LOOKUP_NOTFOUND);
    lookup_close(t);
    t = open_ok(spec + 4);                           /* "hash:..." stays cdb */
    lookup_close(t);
}

static void test_network_specs(void **state)
{
    char err[256];
    struct lookup_table *t;

    t = open_ok("tcp:127.0.0.1:1");
    lookup_set_timeout(1);
    expect_lookup(t, "key", LOOKUP_TEMPFAIL);        /* nobody listens */
    lookup_close(t);
    t = open_ok("socketmap:unix:/nonexistent/socket:name");
    expect_lookup(t, "key", LOOKUP_TEMPFAIL);
    lookup_close(t);
    t = open_ok("proxy:socketmap:inet:[::1]:1:name");
    expect_lookup(t, "key", LOOKUP_TEMPFAIL);
    lookup_close(t);
    assert_null(lookup_open("tcp:nohostport", err, sizeof(err)));
    assert_null(lookup_open("socketmap:tcp:host:1:name", err, sizeof(err)));
    assert_null(lookup_open("socketmap:inet:host:1", err, sizeof(err)));
    assert_null(lookup_open("mysql:relative.cf", err, sizeof(err)));
    assert_null(lookup_open("pgsql:/nonexistent.cf", err, sizeof(err)));
    assert_non_null(strstr(err, "No such file"));
}

static void test_sql_query_files(void **state)
{
    struct fixture *f = *state;
    char cf[PATH_MAX], spec[PATH_MAX + 16], err[512];
    struct lookup_table *t;

    path_in(f, "q.cf", cf, sizeof(cf));
    snprintf(spec, sizeof(spec), "mysql:%s", cf);
    write_text(cf, "hosts = unix:/nonexistent/sock\nquery = SELECT %x\n");
    assert_null(lookup_open(spec, err, sizeof(err)));
    assert_non_null(strstr(err, "invalid % expansion"));
    write_text(cf, "hosts = unix:/nonexistent/sock\n");
    assert_null(lookup_open(spec, err, sizeof(err)));
    assert_non_null(strstr(err, "select_field"));
    write_text(cf, "hosts = unix:/nonexistent/sock\nquery = SELECT 1\nexpansion_limit = x\n");
    assert_null(lookup_open(spec, err, sizeof(err)));
    /* A server that is not there is a temporary failure, keys the query
     * cannot use are not found without asking it. */
    write_text(cf, "hosts = unix:/nonexistent/sock inet:127.0.0.1:1\n"
                   "query = SELECT '%d'\ndomain = example.com\n");
    t = open_ok(spec);
    expect_lookup(t, "user@example.com", LOOKUP_TEMPFAIL);
    expect_lookup(t, "user@example.org", LOOKUP_NOTFOUND);
    expect_lookup(t, "user", LOOKUP_NOTFOUND);
    lookup_close(t);
    snprintf(spec, sizeof(spec), "ldap:%s", cf);
    write_text(cf, "server_host = ldap://127.0.0.1:1\nsearch_base = dc=x\nbind = no\n");
    t = open_ok(spec);
    expect_lookup(t, "user@example.com", LOOKUP_TEMPFAIL);
    lookup_close(t);
    write_text(cf, "server_host = ldap://127.0.0.1:1\nscope = everywhere\n");
    assert_null(lookup_open(spec, err, sizeof(err)));
}

static void test_passwd(void **state)
{
    struct lookup_table *t = open_ok("unix:passwd.byname");
    char *value = NULL;

    assert_int_equal(lookup_get(t, "ROOT", &value), LOOKUP_FOUND);
    assert_memory_equal(value, "root:", 5);
    free(value);
    lookup_close(t);
    /* proxy: is accepted and means the table itself. */
    t = open_ok("proxy:unix:passwd.byname");
    assert_int_equal(lookup_get(t, "root", &value), LOOKUP_FOUND);
    assert_memory_equal(value, "root:", 5);
    assert_non_null(strstr(value, ":0:0:"));
    free(value);
    expect_lookup(t, "no-such-user-postern", LOOKUP_NOTFOUND);
    expect_lookup(t, "root@localhost", LOOKUP_NOTFOUND);
    lookup_close(t);
}

static struct lookup_list *list_ok(const char *maps)
{
    char err[1024] = "";
    struct lookup_list *l = lookup_list_open(maps, err, sizeof(err));

    if (l == NULL)
        fail_msg("open list %s: %s", maps, err);
    return l;
}

static void expect_list(struct lookup_list *l, const char *key, int want, const char *value)
{
    char *got = NULL;

    assert_int_equal(lookup_list_get(l, key, &got), want);
    if (want == LOOKUP_FOUND)
        assert_string_equal(got, value);
    else
        assert_null(got);
    free(got);
}

static void test_lists(void **state)
{
    struct fixture *f = *state;
    char maps[PATH_MAX * 2];
    struct lookup_list *l;

    l = list_ok("");
    expect_list(l, "x", LOOKUP_NOTFOUND, NULL);
    lookup_list_close(l);

    l = list_ok("inline:{ a=1, b=2 }, inline:{a=other, c=3}\tstatic:fallback");
    expect_list(l, "a", LOOKUP_FOUND, "1");
    expect_list(l, "c", LOOKUP_FOUND, "3");
    expect_list(l, "zzz", LOOKUP_FOUND, "fallback");
    lookup_list_close(l);

    /* A failing table before the answer makes the answer a failure; an
     * answer found before it stands. */
    snprintf(maps, sizeof(maps), "inline:{a=1}, cdb:%s/missing, inline:{b=2}", f->dir);
    l = list_ok(maps);
    expect_list(l, "a", LOOKUP_FOUND, "1");
    expect_list(l, "b", LOOKUP_TEMPFAIL, NULL);
    lookup_list_close(l);
}

static void expect_address(struct lookup_list *l, const char *addr, int local,
                           const char *delim, int want, const char *value)
{
    char *got = NULL;
    int r = lookup_list_address(l, addr, local, delim, &got);

    if (r != want)
        fail_msg("%s: result %d, want %d", addr, r, want);
    if (want == LOOKUP_FOUND)
        assert_string_equal(got, value);
    free(got);
}

/* The specs of a list, split where lookup_list_open splits them. */
static void test_split_specs(void **state)
{
    (void)state;
    char **specs;
    long n = lookup_split_specs(" cdb:/etc/aliases,inline:{ a=b, { c = d e } }\tstatic:x ,",
                                &specs);

    assert_int_equal(n, 3);
    assert_string_equal(specs[0], "cdb:/etc/aliases");
    assert_string_equal(specs[1], "inline:{ a=b, { c = d e } }");
    assert_string_equal(specs[2], "static:x");
    lookup_free_specs(specs, n);
    assert_int_equal(lookup_split_specs(" , ", &specs), 0);
    lookup_free_specs(specs, 0);
    assert_int_equal(lookup_split_specs("inline:{ a=b", &specs), -1);
    assert_int_equal(lookup_split_specs("static:x}", &specs), -1);
}

static void test_address_order(void **state)
{
    struct lookup_list *l;

    l = list_ok("inline:{ user+ext@example.com=full, user@example.com=nodelim,"
                " user+ext=localext, user=local, @example.com=catchall }");
    expect_address(l, "user+ext@example.com", 1, "+", LOOKUP_FOUND, "full");
    expect_address(l, "User+Other@Example.com", 1, "+", LOOKUP_FOUND, "nodelim");
    lookup_list_close(l);

    l = list_ok("inline:{ user+ext=localext, user=local, @example.com=catchall }");
    expect_address(l, "user+ext@example.com", 1, "+", LOOKUP_FOUND, "localext");
    expect_address(l, "user+x@example.com", 1, "+", LOOKUP_FOUND, "local");
    expect_address(l, "user-x@example.com", 1, "+-", LOOKUP_FOUND, "local");
    /* Without a delimiter, no extension is split off. */
    expect_address(l, "user+x@example.com", 1, "", LOOKUP_FOUND, "catchall");
    /* Bare local parts only for a local domain. */
    expect_address(l, "user@example.com", 0, "+", LOOKUP_FOUND, "catchall");
    expect_address(l, "user@other.example", 0, "+", LOOKUP_NOTFOUND, NULL);
    expect_address(l, "user@other.example", 1, "+", LOOKUP_FOUND, "local");
    /* An address without a domain, and a leading delimiter kept. */
    expect_address(l, "user+ext", 1, "+", LOOKUP_FOUND, "localext");
    expect_address(l, "+user", 1, "+", LOOKUP_NOTFOUND, NULL);
    lookup_list_close(l);

    /* regexp tables see the whole address only. */
    l = list_ok("regexp:{ {/^user$/ bare}, {/^user@example\\.com$/ whole} }");
    expect_address(l, "user@example.com", 1, "+", LOOKUP_FOUND, "whole");
    expect_address(l, "user@other.example", 1, "+", LOOKUP_NOTFOUND, NULL);
    expect_address(l, "user", 1, "+", LOOKUP_FOUND, "bare");
    lookup_list_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cdb_build_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cdb_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_table_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_table_is_tempfail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuilt_table_is_reopened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alias_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_errors_leave_old_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_and_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regexp_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regexp_errors_and_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcre_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cidr_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_texthash_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sql_query_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
        cmocka_unit_test(test_split_specs),
        cmocka_unit_test_setup_teardown(test_address_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
