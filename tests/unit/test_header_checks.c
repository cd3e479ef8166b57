/* test_header_checks.c - unit tests for lib/header_checks.c: action parsing
 * (every action, case, missing or bad arguments, FILTER's transport:nexthop,
 * REDIRECT's and BCC's user@domain),
 * REJECT replies and their status codes, the log line, Content-Type
 * parsing, the choice of table per input, and the body walker: output
 * byte for byte when nothing matches whatever the chunking, edits (IGNORE,
 * REPLACE, PREPEND), MIME part headers, attached messages, boundaries,
 * long lines inspected in pieces, body_checks_size_limit, and inspection
 * ending on request.
 *
 * Each case writes regexp tables and a main.cf into a mkdtemp directory.
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

#include "config.h"
#include "header_checks.h"
#include "log.h"
#include "lookup.h"

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_header_checks");
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

/* Write NAME as a regexp table and return its main.cf line in line. */
static void table(const struct fixture *f, const char *param, const char *rules, char *line,
                  size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", f->dir, param);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(rules, fp);
    assert_int_equal(fclose(fp), 0);
    snprintf(line, len, "%s = regexp:%s\n", param, path);
}

static void load(const struct fixture *f, const char *extra)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/main.cf", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "queue_directory = %s\n%s", f->dir, extra);
    assert_int_equal(fclose(fp), 0);
    config_load(f->dir, NULL, 0);
}

static void expect_action(const char *value, enum hc_action a, const char *text)
{
    struct hc_result r;
    hc_parse_action(value, &r);
    assert_int_equal(r.action, a);
    assert_string_equal(r.text, text);
}

static void test_parse_actions(void **state)
{
    load(*state, "");
    expect_action("REJECT", HC_REJECT, "");
    expect_action("reject  go away  ", HC_REJECT, "go away");
    expect_action("DISCARD spam", HC_DISCARD, "spam");
    expect_action("Hold", HC_HOLD, "");
    expect_action("WARN look", HC_WARN, "look");
    expect_action("INFO seen", HC_INFO, "seen");
    expect_action("PASS trusted", HC_PASS, "trusted");
    expect_action("IGNORE", HC_IGNORE, "");
    expect_action("STRIP gone", HC_STRIP, "gone");
    expect_action("REPLACE Subject: new", HC_REPLACE, "Subject: new");
    expect_action("PREPEND X-Seen: 1", HC_PREPEND, "X-Seen: 1");
    expect_action("BCC audit@example.com", HC_BCC, "audit@example.com");
    expect_action("FILTER smtp:[127.0.0.1]:10025", HC_FILTER, "smtp:[127.0.0.1]:10025");
    expect_action("REDIRECT x@example.com", HC_REDIRECT, "x@example.com");
    expect_action("DUNNO", HC_DUNNO, "");
    expect_action("OK", HC_DUNNO, "");
    /* unusable: treated as DUNNO (and warned about) */
    expect_action("REPLACE", HC_DUNNO, "");
    expect_action("BCC nobody", HC_DUNNO, "");
    expect_action("FILTER smtp", HC_DUNNO, "");
    expect_action("FILTER :nexthop", HC_DUNNO, "");
    expect_action("REDIRECT nobody", HC_DUNNO, "");
    expect_action("BOGUS x", HC_DUNNO, "");
    expect_action("", HC_DUNNO, "");
}

static void expect_reason(const char *text, const char *want, int want_status)
{
    char out[256];
    int status = 0;
    hc_reject_reason(text, out, sizeof(out), &status);
    assert_string_equal(out, want);
    assert_int_equal(status, want_status);
}

static void test_reject_reason_and_log_words(void **state)
{
    (void)state;
    expect_reason("", "5.7.1 Message content rejected", 5);
    expect_reason("no spam", "5.7.1 no spam", 5);
    expect_reason("5.7.0 no spam", "5.7.0 no spam", 5);
    expect_reason("4.7.1 later", "4.7.1 later", 4);
    expect_reason("5.7.0", "5.7.0 Message content rejected", 5);
    expect_reason("5.7 no", "5.7.1 5.7 no", 5);
    expect_reason("2.0.0 odd", "5.7.1 2.0.0 odd", 5);
    assert_string_equal(hc_log_word(HC_REJECT), "reject");
    assert_string_equal(hc_log_word(HC_WARN), "warning");
    assert_string_equal(hc_log_word(HC_HOLD), "hold");
    assert_null(hc_log_word(HC_IGNORE));
    assert_null(hc_log_word(HC_PREPEND));
    assert_string_equal(hc_log_word(HC_REDIRECT), "redirect");
    assert_string_equal(hc_log_word(HC_BCC), "bcc");
}

static void test_log_line(void **state)
{
    (void)state;
    char out[1024], big[300];
    struct hc_log_info info = {"QID1", "unknown[192.0.2.1]", "a@b.example", "c@d.example",
                               "ESMTP", "client.example"};
    hc_format_log(out, sizeof(out), &info, "reject", "header", "Subject: x\n\ty", 13,
                  "5.7.1 no");
    assert_string_equal(out, "QID1: reject: header Subject: x  y from unknown[192.0.2.1]; "
                             "from=<a@b.example> to=<c@d.example> proto=ESMTP "
                             "helo=<client.example>: 5.7.1 no");
    struct hc_log_info local = {"QID2", "local", "", NULL, NULL, NULL};
    memset(big, 'x', sizeof(big));
    hc_format_log(out, sizeof(out), &local, "discard", "body", big, sizeof(big), "");
    assert_int_equal(strlen(out), strlen("QID2: discard: body ") + 200 +
                                      strlen(" from local; from=<>"));
    assert_non_null(strstr(out, "x from local; from=<>"));
}

static void expect_type(const char *header, enum hc_mime_kind kind, const char *boundary)
{
    char b[256] = "";
    assert_int_equal(hc_content_type(header, strlen(header), b, sizeof(b)), kind);
    if (boundary)
        assert_string_equal(b, boundary);
}

static void test_content_type(void **state)
{
    (void)state;
    expect_type("Content-Type: multipart/mixed; boundary=abc", HC_MIME_MULTIPART, "abc");
    expect_type("Content-Type: Multipart/Alternative;\n\tcharset=x; BOUNDARY=\"a b;c\"",
                HC_MIME_MULTIPART, "a b;c");
    expect_type("Content-Type: multipart/mixed (comment); boundary = \"q\\\"x\"",
                HC_MIME_MULTIPART, "q\"x");
    expect_type("Content-Type: multipart/mixed", HC_MIME_OTHER, NULL);
    expect_type("Content-Type: message/RFC822", HC_MIME_MESSAGE, NULL);
    expect_type("Content-Type: text/plain; boundary=x", HC_MIME_OTHER, NULL);
    expect_type("Content-Type:", HC_MIME_OTHER, NULL);
    assert_true(hc_is_mime_header("content-transfer-encoding", 25));
    assert_true(hc_is_mime_header("MIME-Version", 12));
    assert_false(hc_is_mime_header("Subject", 7));
}

static void test_check_picks_the_table(void **state)
{
    struct fixture *f = *state;
    char cf[4 * PATH_MAX], line[PATH_MAX + 64];
    struct hc_result r;
    cf[0] = 0;
    table(f, "header_checks", "/^Subject: top/ WARN top\n/^Content-Type:/ WARN wrong table\n",
          line, sizeof(line));
    strcat(cf, line);
    table(f, "mime_header_checks", "/^Content-/ WARN mime\n/^X-Part:/ WARN part\n", line,
          sizeof(line));
    strcat(cf, line);
    table(f, "nested_header_checks", "/^Subject:/ WARN nested\n", line, sizeof(line));
    strcat(cf, line);
    table(f, "body_checks", "/^body (.*)/ REPLACE line $1\n", line, sizeof(line));
    strcat(cf, line);
    load(f, cf);
    assert_int_equal(hc_check(HC_PRIMARY_HEADER, "Subject: top", 12, &r), LOOKUP_FOUND);
    assert_string_equal(r.text, "top");
    assert_int_equal(hc_check(HC_PRIMARY_HEADER, "Content-Type: x", 15, &r), LOOKUP_FOUND);
    assert_string_equal(r.text, "mime");
    assert_int_equal(hc_check(HC_PART_HEADER, "X-Part: 1", 9, &r), LOOKUP_FOUND);
    assert_string_equal(r.text, "part");
    assert_int_equal(hc_check(HC_NESTED_HEADER, "Subject: top", 12, &r), LOOKUP_FOUND);
    assert_string_equal(r.text, "nested");
    assert_int_equal(hc_check(HC_NESTED_HEADER, "Content-Type: y", 15, &r), LOOKUP_FOUND);
    assert_string_equal(r.text, "mime");
    assert_int_equal(hc_check(HC_BODY, "body text here", 9, &r), LOOKUP_FOUND);
    assert_int_equal(r.action, HC_REPLACE);
    assert_string_equal(r.text, "line text");
    assert_int_equal(hc_check(HC_BODY, "", 0, &r), LOOKUP_NOTFOUND);
    assert_true(hc_headers_enabled() && hc_body_enabled());
    load(f, "body_checks = cdb:/nonexistent/table\n");
    assert_false(hc_headers_enabled());
    assert_int_equal(hc_check(HC_BODY, "x", 1, &r), LOOKUP_TEMPFAIL);
    assert_int_equal(hc_check(HC_PRIMARY_HEADER, "Subject: x", 10, &r), LOOKUP_NOTFOUND);
}

/* --- the body walker --- */

struct walk {
    char out[65536];
    size_t len;
    char matches[4096];   /* "what:text|" for each match */
    int stop_on_match;
    int tempfails;
};

static void w_out(void *ctx, const char *data, size_t len)
{
    struct walk *w = ctx;
    assert_true(w->len + len < sizeof(w->out));
    memcpy(w->out + w->len, data, len);
    w->len += len;
    w->out[w->len] = 0;
}

static int w_matched(void *ctx, const char *what, const char *text, size_t len,
                     const struct hc_result *r)
{
    struct walk *w = ctx;
    size_t n = strlen(w->matches);
    snprintf(w->matches + n, sizeof(w->matches) - n, "%s:%.*s|", what, (int)len, text);
    return w->stop_on_match || r->action == HC_REJECT;
}

static int w_tempfail(void *ctx)
{
    struct walk *w = ctx;
    w->tempfails++;
    return 1;
}

/* Feed body in pieces of step bytes (0: all at once). */
static void walk(struct walk *w, enum hc_mime_kind kind, const char *boundary, const char *body,
                 size_t step)
{
    struct hc_body_hooks hooks = {w, w_out, w_matched, w_tempfail};
    struct hc_body *b = hc_body_new(&hooks, kind, boundary);
    size_t len = strlen(body);
    for (size_t off = 0; off < len;) {
        size_t n = step && step < len - off ? step : len - off;
        hc_body_feed(b, body + off, n);
        off += n;
    }
    hc_body_finish(b);
    hc_body_free(b);
}

static const char MULTI[] =
    "preamble\n"
    "--outer\n"
    "Content-Type: text/plain;\n"
    "\tcharset=us-ascii\n"
    "X-Part: one\n"
    "\n"
    "secret line\n"
    "--outer\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "Subject: inner\n"
    "Content-Type: multipart/alternative; boundary=\"inner\"\n"
    "\n"
    "--inner\n"
    "Content-Type: text/html\n"
    "\n"
    "secret html\n"
    "--inner--\n"
    "--outer--\n"
    "epilogue without newline";

static void load_walker_tables(const struct fixture *f, const char *extra)
{
    char cf[4 * PATH_MAX], line[PATH_MAX + 64];
    cf[0] = 0;
    table(f, "mime_header_checks", "/^X-Part: (.*)/ REPLACE X-Part: replaced $1\n"
                                   "/^Content-Type: text\\/html/ PREPEND X-Html: yes\n",
          line, sizeof(line));
    strcat(cf, line);
    table(f, "nested_header_checks", "/^Subject: inner/ WARN inner subject\n", line,
          sizeof(line));
    strcat(cf, line);
    table(f, "body_checks", "/^secret/ IGNORE\n/^--outer--$/ INFO end\n", line, sizeof(line));
    strcat(cf, line);
    strcat(cf, extra);
    load(f, cf);
}

static void test_walker_follows_mime(void **state)
{
    static const char want[] =
        "preamble\n"
        "--outer\n"
        "Content-Type: text/plain;\n"
        "\tcharset=us-ascii\n"
        "X-Part: replaced one\n"
        "\n"
        "--outer\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: inner\n"
        "Content-Type: multipart/alternative; boundary=\"inner\"\n"
        "\n"
        "--inner\n"
        "X-Html: yes\n"
        "Content-Type: text/html\n"
        "\n"
        "--inner--\n"
        "--outer--\n"
        "epilogue without newline";
    load_walker_tables(*state, "");
    static const size_t steps[] = {0, 1, 3, 7, 64};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct walk *w = calloc(1, sizeof(*w));
        assert_non_null(w);
        walk(w, HC_MIME_MULTIPART, "outer", MULTI, steps[i]);
        assert_string_equal(w->out, want);
        assert_string_equal(w->matches,
                            "header:X-Part: one|body:secret line|header:Subject: inner|"
                            "header:Content-Type: text/html|body:secret html|body:--outer--|");
        free(w);
    }
}

static void test_walker_passes_unmatched_content_unchanged(void **state)
{
    struct walk *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    load(*state, "");
    walk(w, HC_MIME_MULTIPART, "outer", MULTI, 5);
    assert_string_equal(w->out, MULTI);
    assert_string_equal(w->matches, "");
    free(w);
}

static void test_walker_long_lines_and_size_limit(void **state)
{
    struct fixture *f = *state;
    char cf[PATH_MAX + 128], line[PATH_MAX + 64];
    table(f, "body_checks", "/^x+$/ WARN piece\n/^late/ WARN late\n", line, sizeof(line));
    snprintf(cf, sizeof(cf), "%sline_length_limit = 100\nbody_checks_size_limit = 300\n", line);
    load(f, cf);
    char body[1024];
    memset(body, 'x', 250);
    strcpy(body + 250, "\nearly\n");
    memset(body + 257, 'y', 300);
    strcpy(body + 557, "\nlate line\n");
    struct walk *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    walk(w, HC_MIME_OTHER, NULL, body, 33);
    assert_string_equal(w->out, body);
    /* 250 x's are seen as pieces of 100, 100 and 50; "late" is past the
     * first 300 bytes of the segment. */
    char want[512];
    snprintf(want, sizeof(want), "body:%.100s|body:%.100s|body:%.50s|", body, body, body);
    assert_string_equal(w->matches, want);
    free(w);
}

static void test_walker_stops_inspecting(void **state)
{
    struct fixture *f = *state;
    char line[PATH_MAX + 64];
    table(f, "body_checks", "/^bad/ REJECT no\n/^worse/ WARN never seen\n", line,
          sizeof(line));
    load(f, line);
    struct walk *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    walk(w, HC_MIME_OTHER, NULL, "ok\nbad line\nworse line\n", 4);
    assert_string_equal(w->matches, "body:bad line|");
    assert_string_equal(w->out, "ok\nbad line\nworse line\n");
    free(w);

    load(f, "body_checks = cdb:/nonexistent/table\n");
    w = calloc(1, sizeof(*w));
    assert_non_null(w);
    walk(w, HC_MIME_OTHER, NULL, "a\nb\n", 0);
    assert_int_equal(w->tempfails, 1);
    assert_string_equal(w->out, "a\nb\n");
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_reason_and_log_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_picks_the_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walker_follows_mime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walker_passes_unmatched_content_unchanged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_walker_long_lines_and_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walker_stops_inspecting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
