/* test_mastercf.c - unit tests for lib/mastercf.c, the master.cf parser
 * that master uses to know which services to run.
 *
 * Checks the eight Postfix columns, what "-" means in each, the "N?" wakeup
 * form, -o arguments (options end at the first other word), "{ a b }"
 * arguments, continuation and comment lines, that every error names the
 * file and the line, how Postfix's programs are classified, and what a
 * pipe service's arguments must be.
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
#include "mastercf.h"

static const char skeleton[] =
    "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"
    "127.0.0.1:2525 inet n - n - - smtpd\n"
    "cleanup   unix  n       -       n       -       0       cleanup\n"
    "qmgr      fifo  n       -       n       300     1       qmgr\n"
    "local     unix  -       n       n       -       -       local\n";

static struct mastercf parse_ok(const char *text)
{
    struct mastercf cf;
    char err[512] = "";
    int rc = mastercf_parse(text, "test/master.cf", &cf, err, sizeof(err));
    if (rc != 0)
        fail_msg("mastercf_parse failed: %s", err);
    return cf;
}

/* Parse text expecting an error that names test/master.cf and the line. */
static void parse_fails_at(const char *text, int line)
{
    struct mastercf cf = {0};
    char err[512] = "";
    char want[64];
    assert_int_equal(mastercf_parse(text, "test/master.cf", &cf, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "test/master.cf, line %d", line);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    assert_int_equal(cf.count, 0);
    mastercf_free(&cf);
}

static void test_skeleton_columns(void **state)
{
    struct mastercf cf = parse_ok(skeleton);
    assert_int_equal(cf.count, 4);

    const struct mastercf_entry *e = &cf.entries[0];
    assert_string_equal(e->name, "127.0.0.1:2525");
    assert_int_equal(e->type, MASTERCF_INET);
    assert_int_equal(e->private_, 0);
    assert_int_equal(e->unpriv, 1);
    assert_int_equal(e->chroot, 0);
    assert_int_equal(e->wakeup, 0);
    assert_int_equal(e->wakeup_if_running, 0);
    assert_int_equal(e->maxproc, -1);
    assert_string_equal(e->command, "smtpd");
    assert_int_equal(e->nargs, 0);
    assert_non_null(e->args);
    assert_null(e->args[0]);
    assert_int_equal(e->line, 2);

    e = &cf.entries[1];
    assert_string_equal(e->name, "cleanup");
    assert_int_equal(e->type, MASTERCF_UNIX);
    assert_int_equal(e->private_, 0);
    assert_int_equal(e->maxproc, 0);   /* 0 = no limit */
    assert_string_equal(e->command, "cleanup");
    assert_int_equal(e->line, 3);

    e = &cf.entries[2];
    assert_string_equal(e->name, "qmgr");
    assert_int_equal(e->type, MASTERCF_FIFO);
    assert_int_equal(e->wakeup, 300);
    assert_int_equal(e->wakeup_if_running, 0);
    assert_int_equal(e->maxproc, 1);
    assert_int_equal(e->line, 4);

    e = &cf.entries[3];
    assert_string_equal(e->name, "local");
    assert_int_equal(e->type, MASTERCF_UNIX);
    assert_int_equal(e->private_, 1);   /* "-" means y */
    assert_int_equal(e->unpriv, 0);
    assert_int_equal(e->chroot, 0);
    assert_int_equal(e->maxproc, -1);
    assert_int_equal(e->line, 5);
    mastercf_free(&cf);
    assert_int_equal(cf.count, 0);
}

static void test_dash_defaults(void **state)
{
    struct mastercf cf = parse_ok("svc unix - - - - - cmd\n");
    assert_int_equal(cf.count, 1);
    const struct mastercf_entry *e = &cf.entries[0];
    assert_int_equal(e->private_, 1);
    assert_int_equal(e->unpriv, 1);
    assert_int_equal(e->chroot, 0);
    assert_int_equal(e->wakeup, 0);
    assert_int_equal(e->wakeup_if_running, 0);
    assert_int_equal(e->maxproc, -1);
    mastercf_free(&cf);

    cf = parse_ok("svc unix y y y - 7 cmd\n");
    e = &cf.entries[0];
    assert_int_equal(e->private_, 1);
    assert_int_equal(e->unpriv, 1);
    assert_int_equal(e->chroot, 1);
    assert_int_equal(e->maxproc, 7);
    mastercf_free(&cf);
}

static void test_wakeup_if_running(void **state)
{
    struct mastercf cf = parse_ok("pickup fifo n - n 60? 1 pickup\n"
                                  "other unix n - n 10 1 other\n");
    assert_int_equal(cf.entries[0].wakeup, 60);
    assert_int_equal(cf.entries[0].wakeup_if_running, 1);
    assert_int_equal(cf.entries[1].wakeup, 10);
    assert_int_equal(cf.entries[1].wakeup_if_running, 0);
    mastercf_free(&cf);
}

static void test_pass_type(void **state)
{
    struct mastercf cf = parse_ok("smtpd pass - - n - - smtpd\n");
    assert_int_equal(cf.entries[0].type, MASTERCF_PASS);
    mastercf_free(&cf);
}

static void test_o_args_and_continuation(void **state)
{
    struct mastercf cf = parse_ok("# leading comment\n"
                                  "\n"
                                  "submission inet n - n - - smtpd\n"
                                  "  -o smtpd_timeout=30s\n"
                                  "# a comment inside the entry does not end it\n"
                                  "\t-o myhostname=sub.example -v\n"
                                  "cleanup unix n - n - 0 cleanup -osyslog_name=x\n");
    assert_int_equal(cf.count, 2);
    const struct mastercf_entry *e = &cf.entries[0];
    assert_string_equal(e->name, "submission");
    assert_int_equal(e->line, 3);
    assert_int_equal(e->nargs, 5);
    assert_string_equal(e->args[0], "-o");
    assert_string_equal(e->args[1], "smtpd_timeout=30s");
    assert_string_equal(e->args[2], "-o");
    assert_string_equal(e->args[3], "myhostname=sub.example");
    assert_string_equal(e->args[4], "-v");
    assert_null(e->args[5]);

    e = &cf.entries[1];
    assert_int_equal(e->line, 7);
    /* "-oname=value" comes out in the two-argument form. */
    assert_int_equal(e->nargs, 2);
    assert_string_equal(e->args[0], "-o");
    assert_string_equal(e->args[1], "syslog_name=x");
    mastercf_free(&cf);
}

static void test_crlf_and_no_final_newline(void **state)
{
    struct mastercf cf = parse_ok("a unix n - n - 1 acmd\r\nb unix n - n - 2 bcmd");
    assert_int_equal(cf.count, 2);
    assert_string_equal(cf.entries[0].command, "acmd");
    assert_string_equal(cf.entries[1].command, "bcmd");
    assert_int_equal(cf.entries[1].maxproc, 2);
    mastercf_free(&cf);
}

static void test_errors_name_line(void **state)
{
    parse_fails_at("ok unix n - n - - cmd\nshort unix n - n\n", 2);
    parse_fails_at("# c\nbad bogus n - n - - cmd\n", 2);
    parse_fails_at("bad unix x - n - - cmd\n", 1);
    parse_fails_at("bad unix n maybe n - - cmd\n", 1);
    parse_fails_at("bad unix n - sometimes - - cmd\n", 1);
    parse_fails_at("\n\nbad unix n - n soon - cmd\n", 3);
    parse_fails_at("bad unix n - n - -5 cmd\n", 1);
    parse_fails_at("bad unix n - n - lots cmd\n", 1);
    parse_fails_at("  -o continuation=without_entry\n", 1);
    parse_fails_at("ok unix n - n - - cmd\nbad unix n - n - - cmd -o\n", 2);
    parse_fails_at("bad unix n - n - - cmd -o novalue\n", 1);
    /* unix names become file names: no path components. */
    parse_fails_at("../evil unix n - n - - cmd\n", 1);
    parse_fails_at("evil unix n - n - - ../../bin/sh\n", 1);
    /* A bad -o on a continuation line still yields "FILE, line N". */
    struct mastercf cf = {0};
    char err[512];
    assert_int_equal(mastercf_parse("a unix n - n - - cmd\n  -o\n", "test/master.cf", &cf, err,
                                    sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "test/master.cf, line "));
}

static void test_duplicate_replaces(void **state)
{
    struct mastercf cf = parse_ok("svc unix n - n - 1 first\n"
                                  "svc unix n - n - 2 second\n"
                                  "svc fifo n - n - 3 third\n");
    /* Same name and type: the last one wins; another type is another service. */
    assert_int_equal(cf.count, 2);
    assert_string_equal(cf.entries[0].command, "second");
    assert_int_equal(cf.entries[0].maxproc, 2);
    assert_string_equal(cf.entries[1].command, "third");
    mastercf_free(&cf);
}

static void test_empty_file(void **state)
{
    struct mastercf cf = parse_ok("# nothing but comments\n\n");
    assert_int_equal(cf.count, 0);
    mastercf_free(&cf);
}

static void test_load_file(void **state)
{
    char dir[] = "/tmp/test_mastercf.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/master.cf", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(skeleton, fp);
    fputs("broken line\n", fp);
    fclose(fp);

    struct mastercf cf = {0};
    char err[512] = "";
    assert_int_equal(mastercf_load(path, &cf, err, sizeof(err)), -1);
    char want[160];
    snprintf(want, sizeof(want), "%s, line 6", path);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);

    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(skeleton, fp);
    fclose(fp);
    assert_int_equal(mastercf_load(path, &cf, err, sizeof(err)), 0);
    assert_int_equal(cf.count, 4);
    mastercf_free(&cf);

    unlink(path);
    err[0] = 0;
    assert_int_equal(mastercf_load(path, &cf, err, sizeof(err)), -1);
    assert_true(err[0] != 0);
    rmdir(dir);
}

/* Debian's stock master.cf: postlogd's unix-dgram socket parses. */
static void test_unix_dgram_type(void **state)
{
    (void)state;
    struct mastercf cf = parse_ok("postlog   unix-dgram n  -       n       -       1       postlogd\n");
    assert_int_equal(cf.count, 1);
    assert_int_equal(cf.entries[0].type, MASTERCF_UNIX_DGRAM);
    assert_string_equal(mastercf_type_name(cf.entries[0].type), "unix-dgram");
    mastercf_free(&cf);
}

/* Postfix's daemon names: run as Postern's program, done another way, or
 * not available; a name of the admin's own runs as it is. */
static void test_postfix_programs_classified(void **state)
{
    (void)state;
    struct mastercf cf = parse_ok("smtp unix - - y - - smtp\n"
                                  "qmgr unix n - n 300 1 oqmgr\n"
                                  "tlsmgr unix - - y 1000? 1 tlsmgr\n"
                                  "rewrite unix - - y - - trivial-rewrite\n"
                                  "maildrop unix - n n - - pipe flags=DRXhu user=vmail argv=/x\n"
                                  "postlog unix-dgram n - n - 1 postlogd\n"
                                  "smtpd pass - - y - - smtpd\n"
                                  "mine unix - - n - - my-filter\n"
                                  "lmtp unix - - n - - lmtp\n");
    struct mastercf_program p = mastercf_classify(&cf.entries[0]);
    assert_int_equal(p.role, MASTERCF_RUN);
    assert_string_equal(p.program, "remote");
    p = mastercf_classify(&cf.entries[1]);
    assert_string_equal(p.program, "qmgr");
    assert_int_equal(mastercf_classify(&cf.entries[2]).role, MASTERCF_OTHERWISE);
    assert_int_equal(mastercf_classify(&cf.entries[3]).role, MASTERCF_OTHERWISE);
    p = mastercf_classify(&cf.entries[4]);
    assert_int_equal(p.role, MASTERCF_RUN);
    assert_string_equal(p.program, "pipe");
    assert_int_equal(mastercf_classify(&cf.entries[5]).role, MASTERCF_OTHERWISE);
    assert_int_equal(mastercf_classify(&cf.entries[6]).role, MASTERCF_OTHERWISE);
    p = mastercf_classify(&cf.entries[7]);
    assert_int_equal(p.role, MASTERCF_RUN);
    assert_string_equal(p.program, "my-filter");
    assert_null(p.argv0);
    /* lmtp is remote under its own name, which tells it to speak LMTP. */
    p = mastercf_classify(&cf.entries[8]);
    assert_int_equal(p.role, MASTERCF_RUN);
    assert_string_equal(p.program, "remote");
    assert_string_equal(p.argv0, "lmtp");
    assert_null(mastercf_classify(&cf.entries[0]).argv0);
    mastercf_free(&cf);
}

/* Options end at the first other word, as the daemons read them: a pipe
 * service's argv= keeps its own "-o"; "{ a b }" is one argument. */
static void test_options_end_and_braces(void **state)
{
    (void)state;
    struct mastercf cf = parse_ok("f unix - n n - - pipe -o x=1 -oy=2 flags=R user=u\n"
                                  "  argv=/bin/cmd -o out { two  words } {} -o\n"
                                  "  -o { name = value }\n");
    const struct mastercf_entry *e = &cf.entries[0];
    const char *want[] = {"-o", "x=1", "-o", "y=2", "flags=R", "user=u", "argv=/bin/cmd",
                          "-o", "out", "two  words", "", "-o", "-o", "name = value"};
    assert_int_equal(e->nargs, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < e->nargs; i++)
        assert_string_equal(e->args[i], want[i]);
    mastercf_free(&cf);
    /* An option's "-o" still needs its value; an unclosed brace is an error. */
    parse_fails_at("a unix - n n - - pipe -o\n", 1);
    parse_fails_at("a unix - n n - - pipe\nb unix - n n - - pipe argv=/x {a b\n", 2);
}

/* What a program needs of its arguments: only pipe has needs. */
static void test_check_program(void **state)
{
    (void)state;
    struct mastercf cf = parse_ok("good unix - n n - - pipe -o a=b flags=Rq user=nobody "
                                  "argv=/bin/cat ${recipient}\n"
                                  "bad unix - n n - - pipe flags=Rq user=nobody\n"
                                  "other unix - n n - - local whatever=1\n");
    char err[256];
    assert_int_equal(mastercf_check_program(&cf.entries[0], "pipe", 1, "postern", err,
                                            sizeof(err)), 0);
    assert_int_equal(mastercf_check_program(&cf.entries[1], "pipe", 1, "postern", err,
                                            sizeof(err)), -1);
    assert_string_equal(err, "missing argv= attribute");
    assert_int_equal(mastercf_check_program(&cf.entries[2], "local", 1, "postern", err,
                                            sizeof(err)), 0);
    /* Outside an instance the user is looked up. */
    assert_int_equal(mastercf_check_program(&cf.entries[0], "pipe", 0, "nobody", err,
                                            sizeof(err)), -1);
    assert_non_null(strstr(err, "mail system owner"));
    mastercf_free(&cf);
}

int main(void)
{
    /* Duplicate services are warned about; keep that out of syslog. */
    char logpath[] = "/tmp/test_mastercf.log.XXXXXX";
    int fd = mkstemp(logpath);
    if (fd >= 0)
        close(fd);
    log_init("test_mastercf", 0);
    log_set_file(logpath);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skeleton_columns),
        cmocka_unit_test(test_dash_defaults),
        cmocka_unit_test(test_wakeup_if_running),
        cmocka_unit_test(test_pass_type),
        cmocka_unit_test(test_o_args_and_continuation),
        cmocka_unit_test(test_crlf_and_no_final_newline),
        cmocka_unit_test(test_errors_name_line),
        cmocka_unit_test(test_duplicate_replaces),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_unix_dgram_type),
        cmocka_unit_test(test_postfix_programs_classified),
        cmocka_unit_test(test_options_end_and_braces),
        cmocka_unit_test(test_check_program),
    };
    int rc = cmocka_run_group_tests_name("mastercf", tests, NULL, NULL);
    log_set_file(NULL);
    unlink(logpath);
    return rc;
}
