/* test_config.c - unit tests for lib/config.c, the main.cf reader.
 *
 * Each test writes a main.cf into a fresh mkdtemp directory and loads it with
 * config_try_load, so the real parser, expansion and validation run exactly
 * as a daemon would run them; nothing is mocked. Warnings go to a log file in
 * the same directory so the "unknown parameter" warning can be checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "strlist.h"
#include "log.h"

struct fixture {
    char dir[64];
    char main_cf[PATH_MAX];
    char log[PATH_MAX];
    char err[1024];
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_config.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->main_cf, sizeof(f->main_cf), "%s/main.cf", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/maillog", f->dir);
    /* config.c only warns about unknown names in the programs that own that
     * warning (master, postern, postconf); the test plays postconf. */
    log_init("postconf", 0);
    log_set_file(f->log);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    log_set_file(NULL);
    unlink(f->main_cf);
    unlink(f->log);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_main_cf(struct fixture *f, const char *text)
{
    FILE *fp = fopen(f->main_cf, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Write text as main.cf and load it; returns config_try_load's result. */
static int load_text(struct fixture *f, const char *text)
{
    write_main_cf(f, text);
    f->err[0] = 0;
    return config_try_load(f->dir, NULL, 0, f->err, sizeof(f->err));
}

static void load_ok(struct fixture *f, const char *text)
{
    int rc = load_text(f, text);
    if (rc != 0)
        fail_msg("config_try_load failed: %s", f->err);
}

/* Collapse runs of white space to one space, so continuation tests do not
 * depend on how many blanks the joiner keeps. */
static void squeeze_spaces(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    int in_space = 0;
    for (; *in && n + 1 < outlen; in++) {
        if (*in == ' ' || *in == '\t' || *in == '\n') {
            in_space = 1;
            continue;
        }
        if (in_space && n > 0 && n + 2 < outlen)
            out[n++] = ' ';
        in_space = 0;
        out[n++] = *in;
    }
    out[n] = 0;
}

static char *read_log(struct fixture *f)
{
    FILE *fp = fopen(f->log, "r");
    if (!fp)
        return strdup("");
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

/* The error must name the file and the line, "FILE, line N" as Postfix. */
static void assert_error_names_line(const struct fixture *f, int line)
{
    char want[64];
    snprintf(want, sizeof(want), "line %d", line);
    if (!strstr(f->err, f->main_cf))
        fail_msg("error does not name %s: %s", f->main_cf, f->err);
    if (!strstr(f->err, want))
        fail_msg("error does not name %s: %s", want, f->err);
}

static void test_simple_values(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mx.test.example\n"
               "mydestination=localhost\n"
               "  \n"
               "smtpd_recipient_limit   =   50   \n");
    assert_string_equal(var.myhostname, "mx.test.example");
    assert_string_equal(var.mydestination, "localhost");
    assert_int_equal(var.smtpd_recipient_limit, 50);
    assert_string_equal(config_directory(), f->dir);
}

static void test_defaults(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mx.test.example\n");
    assert_int_equal(var.default_process_limit, 100);
    assert_int_equal(var.message_size_limit, 10240000);
    assert_int_equal(var.smtpd_timeout, 300);
    assert_int_equal(var.maximal_queue_lifetime, 5 * 86400);
    assert_string_equal(var.mail_name, "Postern");
    /* Defaults expand too: myorigin = $myhostname. */
    assert_string_equal(var.myorigin, "mx.test.example");
    assert_string_equal(var.smtpd_banner, "mx.test.example ESMTP Postern");
    assert_string_equal(var.home_mailbox, "");
}

static void test_continuation_lines(void **state)
{
    struct fixture *f = *state;
    char squeezed[256];
    load_ok(f, "mydestination = localhost,\n"
               "    mx.test.example,\n"
               "\tother.example\n"
               "myhostname = after.example\n");
    squeeze_spaces(var.mydestination, squeezed, sizeof(squeezed));
    assert_string_equal(squeezed, "localhost, mx.test.example, other.example");
    /* The next name = value line ends the continuation. */
    assert_string_equal(var.myhostname, "after.example");

    char buf[256];
    char *items[8];
    const char *v = var.mydestination;
    assert_true(strlen(v) < sizeof(buf));
    size_t n = strlist_split(v, buf, items, 8);
    assert_int_equal(n, 3);
    assert_string_equal(items[0], "localhost");
    assert_string_equal(items[1], "mx.test.example");
    assert_string_equal(items[2], "other.example");
}

static void test_comments_ignored(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "# a comment line\n"
               "myhostname = mx.test.example\n"
               "#myhostname = commented.example\n"
               "\n"
               "# mydestination = nowhere\n");
    assert_string_equal(var.myhostname, "mx.test.example");
    assert_string_equal(var.mydestination,
                        "mx.test.example, localhost.test.example, localhost");
}

static void test_last_definition_wins(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = first.example\n"
               "smtpd_timeout = 10s\n"
               "myhostname = second.example\n"
               "smtpd_timeout = 20s\n");
    assert_string_equal(var.myhostname, "second.example");
    assert_int_equal(var.smtpd_timeout, 20);
}

static void test_expansion(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mx.test.example\n"
               "mydomain = test.example\n"
               "myorigin = $mydomain\n"
               "smtpd_banner = ${myhostname} says hi\n"
               "mydestination = ${mydomain?has-domain} ${home_mailbox?has-home}\n"
               "relay_domains = ${home_mailbox:no-home} ${mydomain:no-domain}\n"
               "mail_name = cost $$5\n"
               "syslog_name = $myorigin-$myhostname\n");
    assert_string_equal(var.myorigin, "test.example");
    assert_string_equal(var.smtpd_banner, "mx.test.example says hi");
    /* ${name?x}: x when name is non-empty, nothing otherwise. */
    char squeezed[128];
    squeeze_spaces(var.mydestination, squeezed, sizeof(squeezed));
    assert_string_equal(squeezed, "has-domain");
    /* ${name:x}: x when name is empty, nothing otherwise. */
    squeeze_spaces(var.relay_domains, squeezed, sizeof(squeezed));
    assert_string_equal(squeezed, "no-home");
    assert_string_equal(var.mail_name, "cost $5");
    /* Expansion is recursive. */
    assert_string_equal(var.syslog_name, "test.example-mx.test.example");
}

static void test_expansion_of_unknown_and_unset(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "my_custom = custom-value\n"
               "myhostname = $my_custom.example\n"
               "mydomain = [$no_such_parameter]\n");
    assert_string_equal(var.myhostname, "custom-value.example");
    /* An unset unknown name expands to nothing. */
    assert_string_equal(var.mydomain, "[]");
    /* Unknown names that main.cf sets are still readable... */
    assert_string_equal(config_get("my_custom"), "custom-value");
    /* ...and unknown names it does not set are NULL. */
    assert_null(config_get("no_such_parameter"));
}

static void test_unknown_name_warns_but_loads(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mx.test.example\n"
               "frobnicate_level = 11\n");
    assert_string_equal(var.myhostname, "mx.test.example");
    assert_string_equal(config_get("frobnicate_level"), "11");
    char *log = read_log(f);
    char *line = strstr(log, "frobnicate_level");
    if (!line)
        fail_msg("no warning naming frobnicate_level in the log: [%s]", log);
    /* The warning line itself (from its start) says "warning" and the line. */
    char *bol = line;
    while (bol > log && bol[-1] != '\n')
        bol--;
    char *eol = strchr(line, '\n');
    if (eol)
        *eol = 0;
    if (!strstr(bol, "warning"))
        fail_msg("unknown parameter logged without \"warning\": %s", bol);
    if (!strstr(bol, "line 2"))
        fail_msg("unknown parameter warning does not name line 2: %s", bol);
    /* Postfix's words for a name nobody knows. */
    if (!strstr(bol, "unused parameter: frobnicate_level=11"))
        fail_msg("not Postfix's \"unused parameter\" wording: %s", bol);
    free(log);
}

static void test_bad_numeric_value(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "myhostname = mx.test.example\n"
                                  "# comment\n"
                                  "default_process_limit = lots\n"),
                     -1);
    assert_error_names_line(f, 3);
    assert_non_null(strstr(f->err, "default_process_limit"));

    assert_int_equal(load_text(f, "message_size_limit = 10M\n"), -1);
    assert_error_names_line(f, 1);
}

/* Find a boolean parameter from the table: one whose default is yes or no. */


static void test_bad_boolean_value(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mx.test.example\nsmtputf8_enable = yes\n");
    assert_int_equal(var.smtputf8_enable, 1);
    load_ok(f, "smtputf8_enable = no\n");
    assert_int_equal(var.smtputf8_enable, 0);

    assert_int_equal(load_text(f, "myhostname = mx.test.example\n\nsmtputf8_enable = maybe\n"), -1);
    assert_error_names_line(f, 3);
    assert_non_null(strstr(f->err, "smtputf8_enable"));
}

static void test_time_values(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "smtpd_timeout = 5m\n"
               "max_idle = 2h\n"
               "ipc_timeout = 45\n"
               "minimal_backoff_time = 1d\n"
               "maximal_backoff_time = 1w\n"
               "maximal_queue_lifetime = 2\n");
    assert_int_equal(var.smtpd_timeout, 300);
    assert_int_equal(var.max_idle, 7200);
    assert_int_equal(var.ipc_timeout, 45);
    assert_int_equal(var.minimal_backoff_time, 86400);
    assert_int_equal(var.maximal_backoff_time, 7 * 86400);
    /* A bare number takes the parameter's own unit: days here, as Postfix. */
    assert_int_equal(var.maximal_queue_lifetime, 2 * 86400);
}

static void test_bad_time_value(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "myhostname = mx.test.example\n"
                                  "smtpd_timeout = 10x\n"),
                     -1);
    assert_error_names_line(f, 2);
    assert_non_null(strstr(f->err, "smtpd_timeout"));

    assert_int_equal(load_text(f, "max_idle = soon\n"), -1);
    assert_error_names_line(f, 1);
}

static void test_overrides_win(void **state)
{
    struct fixture *f = *state;
    write_main_cf(f, "myhostname = file.example\nsmtpd_timeout = 10s\n");
    char o1[] = "myhostname=override.example";
    char o2[] = "smtpd_timeout = 30s";
    char *overrides[] = {o1, o2};
    assert_int_equal(config_try_load(f->dir, overrides, 2, f->err, sizeof(f->err)), 0);
    assert_string_equal(var.myhostname, "override.example");
    assert_int_equal(var.smtpd_timeout, 30);

    char bad[] = "smtpd_timeout=never";
    char *bad_overrides[] = {bad};
    assert_int_equal(config_try_load(f->dir, bad_overrides, 1, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "smtpd_timeout"));
}

static void test_reload_discards_previous_state(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = first.example\nrelay_domains = first.example\n");
    assert_string_equal(var.relay_domains, "first.example");
    load_ok(f, "myhostname = second.example\n");
    assert_string_equal(var.myhostname, "second.example");
    assert_string_equal(var.relay_domains, "");
    assert_string_equal(var.myorigin, "second.example");
}

static void test_missing_main_cf(void **state)
{
    struct fixture *f = *state;
    unlink(f->main_cf);
    f->err[0] = 0;
    assert_int_equal(config_try_load(f->dir, NULL, 0, f->err, sizeof(f->err)), -1);
    assert_true(f->err[0] != 0);
}

static void test_syntax_error_names_line(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "myhostname = mx.test.example\n"
                                  "this line has no equals sign\n"),
                     -1);
    assert_error_names_line(f, 2);
}

static void test_split(void **state)
{
    char buf[128];
    char *items[4];
    assert_int_equal(strlist_split("a, b  c,,d\t e", buf, items, 4), 4);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b");
    assert_string_equal(items[2], "c");
    assert_string_equal(items[3], "d");
    assert_int_equal(strlist_split("  , ,", buf, items, 4), 0);
    assert_int_equal(strlist_split("one", buf, items, 4), 1);
    assert_string_equal(items[0], "one");
}

static void test_find_dir(void **state)
{
    assert_string_equal(config_find_dir("/some/dir"), "/some/dir");
    assert_int_equal(setenv("MAIL_CONFIG", "/from/env", 1), 0);
    assert_string_equal(config_find_dir(NULL), "/from/env");
    assert_string_equal(config_find_dir("/cmdline/wins"), "/cmdline/wins");
    assert_int_equal(unsetenv("MAIL_CONFIG"), 0);
    assert_string_equal(config_find_dir(NULL), DEF_CONFIG_DIR);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

/* Found by fuzzing: two parameters that expand each other twice per
 * reference made expansion explore ~2^100 paths; it must end with an
 * error instead of hanging every daemon at start. */
static void test_exponential_expansion_is_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "a = $b$b\nb = $a\nmyhostname = $a\n"), -1);
    assert_non_null(strstr(f->err, "expansion too deep or too large"));
}

/* Found by fuzzing: myhostname refers to mydomain, whose default is derived
 * from myhostname; the cycle must not recurse forever. */
static void test_mydomain_myhostname_cycle_terminates(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mail.$mydomain\n");
    assert_string_equal(var.mydomain, "localdomain");
    assert_string_equal(var.myhostname, "mail.localdomain");
}

/* Postfix's parameters are told apart from typos: implemented, covered
 * another way, ignored, unknown. */
static void test_parameter_kinds(void **state)
{
    (void)state;
    const char *how;
    assert_int_equal(config_kind("myhostname", &how), CONFIG_KNOWN);
    assert_int_equal(config_kind("biff", &how), CONFIG_POSTFIX_OTHERWISE);
    assert_non_null(how);
    assert_int_equal(config_kind("readme_directory", &how), CONFIG_POSTFIX_OTHERWISE);
    assert_int_equal(config_kind("smtpd_tls_loglevel", &how), CONFIG_POSTFIX_IGNORED);
    assert_null(how);
    assert_int_equal(config_kind("frobnicate_level", &how), CONFIG_UNKNOWN);
    assert_int_equal(config_kind("", &how), CONFIG_UNKNOWN);
    /* Per-transport parameters of any master.cf transport. */
    assert_int_equal(config_kind("dovecot_destination_recipient_limit", &how), CONFIG_KNOWN);
    assert_int_equal(config_kind("smtp-amavis_destination_concurrency_limit", &how),
                     CONFIG_KNOWN);
    /* pipe reads <transport>_time_limit; Postfix's own *_time_limit
     * parameters stay what they are. */
    assert_int_equal(config_kind("policyd-spf_time_limit", &how), CONFIG_KNOWN);
    assert_int_equal(config_kind("maildrop_time_limit", &how), CONFIG_KNOWN);
    assert_int_equal(config_kind("postscreen_command_time_limit", &how),
                     CONFIG_POSTFIX_IGNORED);
    assert_int_equal(config_kind("lmtp_connection_cache_time_limit", &how), CONFIG_KNOWN);
    assert_int_equal(config_kind("smtp_connection_cache_time_limit", &how), CONFIG_KNOWN);
    assert_int_equal(config_kind("dovecot_delivery_slot_cost", &how), CONFIG_POSTFIX_IGNORED);
}

/* compatibility_level chooses Postfix 3's level-dependent defaults; without
 * it Postern's own stay (relaying refused with reject, not defer). */
static void test_compatibility_level_defaults(void **state)
{
    struct fixture *f = *state;
    load_ok(f, "myhostname = mx.test.example\n");
    assert_non_null(strstr(var.smtpd_relay_restrictions, "reject_unauth_destination"));
    assert_string_equal(var.relay_domains, "");
    assert_int_equal(var.smtputf8_enable, 1);
    load_ok(f, "myhostname = mx.test.example\ncompatibility_level = 3.6\n");
    assert_string_equal(var.smtpd_relay_restrictions,
                        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination");
    assert_string_equal(var.relay_domains, "");
    assert_int_equal(var.append_dot_mydomain, 0);
    load_ok(f, "myhostname = mx.test.example\ncompatibility_level = 0\n");
    assert_string_equal(var.smtpd_relay_restrictions, "");
    assert_string_equal(var.relay_domains, "mx.test.example, localhost.test.example, localhost");
    assert_int_equal(var.append_dot_mydomain, 1);
    assert_int_equal(var.smtputf8_enable, 0);
    /* An explicit setting wins over any level's default. */
    load_ok(f, "compatibility_level = 0\nsmtputf8_enable = yes\n");
    assert_int_equal(var.smtputf8_enable, 1);
}

/* Debian writes "myorigin = /etc/mailname": the file's first line is the
 * domain; a missing file falls back to $myhostname. */
static void test_myorigin_from_file(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX], text[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/mailname", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("  origin.example  \nsecond.example\n", fp);
    fclose(fp);
    snprintf(text, sizeof(text), "myhostname = mx.test.example\nmyorigin = %s\n", path);
    load_ok(f, text);
    assert_string_equal(var.myorigin, "origin.example");
    snprintf(text, sizeof(text), "myhostname = mx.test.example\nmyorigin = %s.missing\n", path);
    load_ok(f, text);
    assert_string_equal(var.myorigin, "mx.test.example");
}

/* params.def bounds: a value outside them is fatal with file and line. */
static void test_out_of_bounds_value(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "myhostname = mx.test.example\nipc_timeout = 0\n"), -1);
    assert_error_names_line(f, 2);
    assert_non_null(strstr(f->err, "invalid ipc_timeout parameter value 0 < 1"));
    load_ok(f, "ipc_timeout = 1s\n");
    assert_int_equal(var.ipc_timeout, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_simple_values),
        T(test_defaults),
        T(test_continuation_lines),
        T(test_comments_ignored),
        T(test_last_definition_wins),
        T(test_expansion),
        T(test_expansion_of_unknown_and_unset),
        T(test_unknown_name_warns_but_loads),
        T(test_bad_numeric_value),
        T(test_bad_boolean_value),
        T(test_time_values),
        T(test_bad_time_value),
        T(test_overrides_win),
        T(test_reload_discards_previous_state),
        T(test_missing_main_cf),
        T(test_syntax_error_names_line),
        T(test_exponential_expansion_is_refused),
        T(test_mydomain_myhostname_cycle_terminates),
        T(test_compatibility_level_defaults),
        T(test_myorigin_from_file),
        T(test_out_of_bounds_value),
        cmocka_unit_test(test_parameter_kinds),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_find_dir),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
