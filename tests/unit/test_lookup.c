/* test_lookup.c - unit tests for lib/util/lookup.c and its table types in
 * lib/util/lookup_*.c (cdb, hash/btree as cdb, static, inline, regexp,
 * unix:passwd.byname, lists and Postfix's address lookup order) and
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
        cmocka_unit_test_setup_teardown(test_passwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
        cmocka_unit_test(test_split_specs),
        cmocka_unit_test_setup_teardown(test_address_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
