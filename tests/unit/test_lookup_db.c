/* test_lookup_db.c - unit tests for what the database and server table
 * types share: Postfix's query files and '%' templates
 * (lib/util/lookup_db.c: expansion, suppression, result_format, joining,
 * expansion_limit, the domain restriction, the legacy query) and the wire
 * formats of tcp: and socketmap: (lib/util/lookup_reply.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "lookup.h"
#include "lookup_db.h"
#include "lookup_reply.h"

/* Expand template for key (no quoting); the text, or NULL when the
 * query is suppressed. Caller frees. */
static char *expand(const char *template, const char *key)
{
    struct strbuf b = {0};

    if (!db_expand_query(template, key, NULL, NULL, &b)) {
        strbuf_free(&b);
        return NULL;
    }
    return b.s;
}

static void expect_expansion(const char *template, const char *key, const char *want)
{
    char *got = expand(template, key);

    if (want == NULL) {
        if (got != NULL)
            fail_msg("%s with %s: got \"%s\", want suppressed", template, key, got);
        return;
    }
    if (got == NULL)
        fail_msg("%s with %s: suppressed, want \"%s\"", template, key, want);
    assert_string_equal(got, want);
    free(got);
}

static void test_query_expansion(void **state)
{
    expect_expansion("%s|%u|%d|%%", "user@mail.example.com", "user@mail.example.com|user|mail.example.com|%");
    expect_expansion("%1.%2.%3", "user@mail.example.com", "com.example.mail");
    expect_expansion("%S%U%D", "a@b", "a@bab");
    expect_expansion("%u", "user", "user");          /* no domain: the whole key */
    expect_expansion("%d", "user", NULL);            /* no domain: no query */
    expect_expansion("%u", "@example.com", NULL);    /* empty local part */
    expect_expansion("%d", "user@", NULL);
    expect_expansion("%4", "user@mail.example.com", NULL);
    expect_expansion("%1", "user", NULL);
    expect_expansion("%2", "user@a..b", NULL);       /* an empty label */
    expect_expansion("plain", "x", "plain");
    expect_expansion("%s", "", "");
    expect_expansion("%u", "a@b@c", "a@b");          /* the last '@' splits */
}

static void quote_sql(void *ctx, const char *s, size_t n, struct strbuf *out)
{
    for (size_t i = 0; i < n; i++) {
        strbuf_add(out, s + i, 1);
        if (s[i] == '\'')
            strbuf_add(out, "'", 1);
    }
}

static void test_quoting_and_checks(void **state)
{
    struct strbuf b = {0};
    char err[256];

    assert_int_equal(db_expand_query("x='%s' AND y='%u'", "o'b@x", quote_sql, NULL, &b), 1);
    assert_string_equal(b.s, "x='o''b@x' AND y='o''b'");
    strbuf_free(&b);
    assert_int_equal(db_template_check("%s %u %d %S %U %D %1 %9 %%", err, sizeof(err)), 0);
    assert_int_equal(db_template_check("%x", err, sizeof(err)), -1);
    assert_int_equal(db_template_check("trailing %", err, sizeof(err)), -1);
    assert_int_equal(db_template_check("%0", err, sizeof(err)), -1);
}

static char *format_all(const char *format, const char *key, long limit, const char **values,
                        int *overflow, long *count)
{
    struct db_result r = {.format = format, .key = key, .limit = limit};

    for (size_t i = 0; values[i] != NULL; i++)
        db_result_add(&r, values[i], strlen(values[i]));
    *overflow = r.overflow;
    *count = r.count;
    return r.out.s;
}

static void test_result_format(void **state)
{
    const char *values[] = {"a@x.example", "", "bare", "@nolocal", "b@y.example", NULL};
    int overflow;
    long count;
    char *s;

    s = format_all("%s", "k@d", 0, values, &overflow, &count);
    assert_string_equal(s, "a@x.example,bare,@nolocal,b@y.example");   /* empty skipped */
    free(s);
    s = format_all("%u", "k@d", 0, values, &overflow, &count);
    assert_string_equal(s, "a,bare,b");          /* empty local part skipped */
    free(s);
    s = format_all("%d", "k@d", 0, values, &overflow, &count);
    assert_string_equal(s, "x.example,nolocal,y.example");   /* no domain skipped */
    free(s);
    s = format_all("smtp:[%s] %U %D %1", "key@dom.tld", 0, values, &overflow, &count);
    assert_string_equal(s, "smtp:[a@x.example] key dom.tld tld,smtp:[bare] key dom.tld tld,"
                           "smtp:[@nolocal] key dom.tld tld,smtp:[b@y.example] key dom.tld tld");
    free(s);
    s = format_all("%s", "k@d", 2, values, &overflow, &count);
    assert_int_equal(overflow, 1);               /* expansion_limit passed */
    free(s);
    s = format_all("%s", "k@d", 4, values, &overflow, &count);
    assert_int_equal(overflow, 0);
    assert_int_equal(count, 4);
    free(s);
    assert_int_equal(db_key_fits_result("%s via %D", "user"), 0);
    assert_int_equal(db_key_fits_result("%s via %D", "user@d"), 1);
    assert_int_equal(db_key_fits_result("%s", "user"), 1);
}

static void test_query_file(void **state)
{
    char path[] = "/tmp/test_lookup_db.XXXXXX", err[256];
    int fd = mkstemp(path);
    FILE *fp = fdopen(fd, "w");
    struct db_cf *cf;
    struct db_domains *d;
    char *q;

    fputs("# comment\nhosts = a\n   b\nuser=me\n\nuser = again\nquery = SELECT x\n"
          "  FROM y\nexpansion_limit = 3\nbad_number = 3x\nflag = yes\n"
          "select_field = goto\ntable = aliases\nwhere_field = address\n", fp);
    fclose(fp);
    cf = db_cf_read(path, err, sizeof(err));
    assert_non_null(cf);
    assert_string_equal(db_cf_str(cf, "hosts", NULL), "a b");
    assert_string_equal(db_cf_str(cf, "user", NULL), "again");     /* the last one wins */
    assert_string_equal(db_cf_str(cf, "query", NULL), "SELECT x FROM y");
    assert_null(db_cf_str(cf, "password", NULL));
    assert_int_equal(db_cf_long(cf, "expansion_limit", 0, 0, 10, err, sizeof(err)), 3);
    assert_int_equal(db_cf_long(cf, "bad_number", 0, 0, 10, err, sizeof(err)), -1);
    assert_int_equal(db_cf_long(cf, "unset", 7, 0, 10, err, sizeof(err)), 7);
    assert_int_equal(db_cf_bool(cf, "flag", 0, err, sizeof(err)), 1);
    assert_int_equal(db_cf_bool(cf, "user", 0, err, sizeof(err)), -1);
    q = db_legacy_query(cf, err, sizeof(err));
    assert_string_equal(q, "SELECT goto FROM aliases WHERE address = '%s' ");
    free(q);
    db_cf_free(cf);
    fp = fopen(path, "w");
    fputs("no equals sign here\n", fp);
    fclose(fp);
    assert_null(db_cf_read(path, err, sizeof(err)));
    assert_non_null(strstr(err, "line 1"));
    unlink(path);

    d = db_domains_open("Example.COM, inline:{ other.example=1 }", err, sizeof(err));
    assert_non_null(d);
    assert_int_equal(db_domains_allow(d, "u@example.com"), 1);
    assert_int_equal(db_domains_allow(d, "u@OTHER.example"), 1);
    assert_int_equal(db_domains_allow(d, "u@sub.example.com"), 0);
    assert_int_equal(db_domains_allow(d, "@example.com"), 0);
    assert_int_equal(db_domains_allow(d, "example.com"), 0);
    db_domains_close(d);
    assert_null(db_domains_open(NULL, err, sizeof(err)));
    assert_int_equal(db_domains_allow(NULL, "anything"), 1);
}

static void test_tcp_wire(void **state)
{
    char why[128], *v, *req;

    req = lookup_tcp_request("a b%c\n@d");
    assert_string_equal(req, "get a%20b%25c%0A@d\n");
    free(req);
    assert_int_equal(lookup_tcp_reply("200 a%20b%2c", 12, &v, why, sizeof(why)), LOOKUP_FOUND);
    assert_string_equal(v, "a b,");
    free(v);
    assert_int_equal(lookup_tcp_reply("200 ", 4, &v, why, sizeof(why)), LOOKUP_FOUND);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(lookup_tcp_reply("500 no", 6, &v, why, sizeof(why)), LOOKUP_NOTFOUND);
    assert_null(v);
    assert_int_equal(lookup_tcp_reply("400 busy", 8, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_string_equal(why, "400 busy");
    assert_int_equal(lookup_tcp_reply("200 bad%zz", 10, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_int_equal(lookup_tcp_reply("200 nul%00", 10, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_int_equal(lookup_tcp_reply("200 cut%4", 9, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_int_equal(lookup_tcp_reply("200 a\0b", 7, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_int_equal(lookup_tcp_reply("200", 3, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_int_equal(lookup_tcp_reply("\x1b[31m", 5, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_string_equal(why, "?[31m");                   /* printable for the log */
    assert_int_equal(lookup_tcp_reply("2000 x", 6, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
}

static void test_socketmap_wire(void **state)
{
    char why[128], *v, *req;
    const char *data;
    size_t dlen, used, len;

    req = lookup_socketmap_request("map", "key", &len);
    assert_string_equal(req, "7:map key,");
    assert_int_equal(len, 10);
    free(req);
    assert_int_equal(lookup_netstring("5:OK xy,", 8, 100, &data, &dlen, &used, why, sizeof(why)), 1);
    assert_int_equal(dlen, 5);
    assert_int_equal(used, 8);
    assert_memory_equal(data, "OK xy", 5);
    assert_int_equal(lookup_netstring("5:OK x", 6, 100, &data, &dlen, &used, why, sizeof(why)), 0);
    assert_int_equal(lookup_netstring("12", 2, 100, &data, &dlen, &used, why, sizeof(why)), 0);
    assert_int_equal(lookup_netstring("5:OK xy;", 8, 100, &data, &dlen, &used, why, sizeof(why)), -1);
    assert_int_equal(lookup_netstring("x:", 2, 100, &data, &dlen, &used, why, sizeof(why)), -1);
    assert_int_equal(lookup_netstring("200:", 4, 100, &data, &dlen, &used, why, sizeof(why)), -1);
    assert_int_equal(lookup_netstring("9999999999:", 11, 100000, &data, &dlen, &used, why,
                                      sizeof(why)), -1);
    assert_int_equal(lookup_netstring("05:OK xy,", 9, 100, &data, &dlen, &used, why, sizeof(why)), -1);
    assert_int_equal(lookup_netstring("0:,", 3, 100, &data, &dlen, &used, why, sizeof(why)), 1);

    assert_int_equal(lookup_socketmap_reply("OK value x", 10, &v, why, sizeof(why)), LOOKUP_FOUND);
    assert_string_equal(v, "value x");
    free(v);
    assert_int_equal(lookup_socketmap_reply("NOTFOUND ", 9, &v, why, sizeof(why)),
                     LOOKUP_NOTFOUND);
    assert_int_equal(lookup_socketmap_reply("NOTFOUND", 8, &v, why, sizeof(why)),
                     LOOKUP_NOTFOUND);
    assert_int_equal(lookup_socketmap_reply("TEMP later", 10, &v, why, sizeof(why)),
                     LOOKUP_TEMPFAIL);
    assert_string_equal(why, "TEMP later");
    assert_int_equal(lookup_socketmap_reply("PERM no", 7, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_int_equal(lookup_socketmap_reply("OK a\0b", 6, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
    assert_null(v);
    assert_int_equal(lookup_socketmap_reply("OKAY", 4, &v, why, sizeof(why)), LOOKUP_TEMPFAIL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_expansion),
        cmocka_unit_test(test_quoting_and_checks),
        cmocka_unit_test(test_result_format),
        cmocka_unit_test(test_query_file),
        cmocka_unit_test(test_tcp_wire),
        cmocka_unit_test(test_socketmap_wire),
    };
    log_init("test_lookup_db", LOG_TO_STDERR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
