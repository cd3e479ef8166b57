/* test_pipe_args.c - unit tests for lib/mail/pipe_args.c, the command
 * attributes of a pipe service in master.cf (pipe(8)): every flag and
 * attribute, master.cf options before them skipped, argv= last and taking
 * the rest, each refusal with its reason (unknown flag, attribute or macro,
 * a missing user= or argv=, bad size=, eol= and paths), the macro forms of
 * argv= ($name, ${name}, $(name), $$, a lone '$') walked in order, and the
 * user= rights (never root, never the mail system owner; ours in an
 * instance).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipe_args.h"

#define WORDS_MAX 400

/* Split a line on spaces into words (no quoting: tests do not need it). */
static size_t split(char *line, char **words)
{
    size_t n = 0;
    for (char *w = strtok(line, " "); w != NULL && n < WORDS_MAX; w = strtok(NULL, " "))
        words[n++] = w;
    return n;
}

static int parse(const char *text, struct pipe_args *pa, char *err, size_t errlen)
{
    static char line[8192];
    static char *words[WORDS_MAX];
    snprintf(line, sizeof(line), "%s", text);
    return pipe_args_parse(words, split(line, words), pa, err, errlen);
}

static void parse_ok(const char *text, struct pipe_args *pa)
{
    char err[256] = "";
    if (parse(text, pa, err, sizeof(err)) != 0)
        fail_msg("\"%s\": %s", text, err);
}

static void parse_fails(const char *text, const char *why)
{
    struct pipe_args pa;
    char err[256] = "";
    assert_int_equal(parse(text, &pa, err, sizeof(err)), -1);
    if (strstr(err, why) == NULL)
        fail_msg("\"%s\": error \"%s\" lacks \"%s\"", text, err, why);
}

static void test_every_attribute(void **state)
{
    (void)state;
    struct pipe_args pa;
    parse_ok("-o a=b -v flags=BDFORXhqu.> user=mail:adm size=1000 eol=\\r\\n "
             "directory=/var/tmp chroot=/srv null_sender= argv=/bin/cmd -f ${sender} -- "
             "${recipient} user=not-an-attribute", &pa);
    assert_int_equal(pa.flags, PIPE_FLAG_BLANK_END | PIPE_FLAG_DELIVERED_TO
                     | PIPE_FLAG_FROM_LINE | PIPE_FLAG_ORIG_TO | PIPE_FLAG_RETURN_PATH
                     | PIPE_FLAG_FINAL | PIPE_FLAG_FOLD_HOST | PIPE_FLAG_QUOTE
                     | PIPE_FLAG_FOLD_USER | PIPE_FLAG_DOT | PIPE_FLAG_QUOTE_FROM);
    assert_string_equal(pa.user, "mail");
    assert_string_equal(pa.group, "adm");
    assert_int_equal(pa.size_limit, 1000);
    assert_int_equal(pa.eol_len, 2);
    assert_memory_equal(pa.eol, "\r\n", 2);
    assert_string_equal(pa.directory, "/var/tmp");
    assert_string_equal(pa.chroot, "/srv");
    assert_string_equal(pa.null_sender, "");
    /* argv= takes every word after it, attributes look-alikes included. */
    assert_int_equal(pa.argc, 6);
    assert_string_equal(pa.argv[0], "/bin/cmd");
    assert_string_equal(pa.argv[1], "-f");
    assert_string_equal(pa.argv[5], "user=not-an-attribute");
    assert_null(pa.argv[6]);
}

static void test_defaults(void **state)
{
    (void)state;
    struct pipe_args pa;
    parse_ok("user=nobody argv=/bin/true", &pa);
    assert_int_equal(pa.flags, 0);
    assert_string_equal(pa.group, "");
    assert_int_equal(pa.size_limit, 0);
    assert_int_equal(pa.eol_len, 1);
    assert_int_equal(pa.eol[0], '\n');
    assert_null(pa.directory);
    assert_null(pa.chroot);
    assert_string_equal(pa.null_sender, "MAILER-DAEMON");
    assert_int_equal(pa.argc, 1);
}

static void test_eol_escapes(void **state)
{
    (void)state;
    struct pipe_args pa;
    parse_ok("eol=\\t\\101\\\\\\0x user=u argv=/x", &pa);
    assert_int_equal(pa.eol_len, 5);
    assert_memory_equal(pa.eol, "\tA\\\0x", 5);
    parse_fails("eol=\\q user=u argv=/x", "eol= has a bad escape sequence");
    parse_fails("eol=\\777 user=u argv=/x", "eol= has a bad escape sequence");
    parse_fails("eol= user=u argv=/x", "eol= must not be empty");
    parse_fails("eol=0123456789abcdef user=u argv=/x", "eol= is too long");
}

static void test_refusals(void **state)
{
    (void)state;
    parse_fails("user=u", "missing argv= attribute");
    parse_fails("flags=R argv=/x", "missing user= attribute");
    parse_fails("", "missing user= attribute");
    parse_fails("flags=Rz user=u argv=/x", "unknown flag: z");
    parse_fails("flags=R user=u bogus=1 argv=/x", "unknown attribute name: bogus");
    parse_fails("user=u justaword argv=/x", "unknown attribute name: justaword (attributes "
                "are name=value)");
    parse_fails("user= argv=/x", "user= needs a user name");
    parse_fails("user=:g argv=/x", "user= needs a user name");
    parse_fails("user=u: argv=/x", "empty group name");
    parse_fails("user=u size=10k argv=/x", "size= needs a number of bytes");
    parse_fails("user=u size= argv=/x", "size= needs a number of bytes");
    parse_fails("user=u size=1234567890123456789 argv=/x", "size= needs a number");
    parse_fails("user=u directory=tmp argv=/x", "directory= needs an absolute path");
    parse_fails("user=u chroot= argv=/x", "chroot= needs an absolute path");
    parse_fails("user=u argv=", "argv= needs a command");
    parse_fails("user=u argv= /bin/x", "argv= needs a command");
    parse_fails("user=u argv=/x ${nosuch}", "unknown macro name: \"nosuch\"");
    parse_fails("user=u argv=/x ${sender?x}", "unknown macro name: \"sender?x\"");
    parse_fails("user=u argv=/x ${sender:x}", "unknown macro name: \"sender:x\"");
    parse_fails("user=u argv=/x ${sender", "missing '}' in macro");
    parse_fails("user=u argv=/x $(sender", "missing ')' in macro");
    parse_fails("user=u argv=/x $nosuch", "unknown macro name: \"nosuch\"");
}

static void test_too_many_words(void **state)
{
    (void)state;
    char line[8192];
    size_t n = (size_t)snprintf(line, sizeof(line), "user=u argv=/x");
    for (int i = 0; i < PIPE_ARGV_MAX; i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " a");
    parse_fails(line, "argv= has more than 256 words");
    line[strlen(line) - 2] = 0;   /* exactly PIPE_ARGV_MAX words */
    struct pipe_args pa;
    parse_ok(line, &pa);
    assert_int_equal(pa.argc, PIPE_ARGV_MAX);
}

/* --- the macro walk --- */

struct walked {
    char text[512];
};

static int add_literal(void *ctx, const char *text, size_t len)
{
    struct walked *w = ctx;
    strncat(w->text, text, len);
    return 0;
}

static int add_macro(void *ctx, enum pipe_macro m)
{
    struct walked *w = ctx;
    strcat(w->text, "<");
    strcat(w->text, pipe_macro_name(m));
    strcat(w->text, ">");
    return 0;
}

static const char *walk(const char *word)
{
    static struct walked w;
    struct pipe_template_walk cb = {.literal = add_literal, .macro = add_macro, .ctx = &w};
    char err[128];
    w.text[0] = 0;
    assert_int_equal(pipe_template_walk(word, &cb, err, sizeof(err)), 0);
    return w.text;
}

static int stop_at_macro(void *ctx, enum pipe_macro m)
{
    (void)ctx;
    (void)m;
    return -1;
}

static void test_macro_forms(void **state)
{
    (void)state;
    assert_string_equal(walk("plain"), "plain");
    assert_string_equal(walk(""), "");
    assert_string_equal(walk("-f${sender}"), "-f<sender>");
    assert_string_equal(walk("$(recipient)x"), "<recipient>x");
    assert_string_equal(walk("$nexthop!rmail ($recipient)"), "<nexthop>!rmail (<recipient>)");
    assert_string_equal(walk("a$$b$$"), "a$b$");
    assert_string_equal(walk("$ $-x$"), "$ $-x$");
    assert_string_equal(walk("${user}+${extension}@${domain}"), "<user>+<extension>@<domain>");
    assert_string_equal(walk("$client_address$client_port"), "<client_address><client_port>");
    for (int m = 0; m < PIPE_M_COUNT; m++) {
        char word[64], want[64];
        snprintf(word, sizeof(word), "${%s}", pipe_macro_name((enum pipe_macro)m));
        snprintf(want, sizeof(want), "<%s>", pipe_macro_name((enum pipe_macro)m));
        assert_string_equal(walk(word), want);
    }
    /* A callback's -1 stops the walk. */
    struct pipe_template_walk cb = {.macro = stop_at_macro};
    char err[64];
    assert_int_equal(pipe_template_walk("a ${sender} b", &cb, err, sizeof(err)), -1);
}

static void test_per_recipient(void **state)
{
    (void)state;
    assert_true(pipe_macro_per_recipient(PIPE_M_RECIPIENT));
    assert_true(pipe_macro_per_recipient(PIPE_M_ORIGINAL_RECIPIENT));
    assert_true(pipe_macro_per_recipient(PIPE_M_USER));
    assert_true(pipe_macro_per_recipient(PIPE_M_EXTENSION));
    assert_true(pipe_macro_per_recipient(PIPE_M_MAILBOX));
    assert_true(pipe_macro_per_recipient(PIPE_M_DOMAIN));
    assert_false(pipe_macro_per_recipient(PIPE_M_SENDER));
    assert_false(pipe_macro_per_recipient(PIPE_M_NEXTHOP));
    assert_false(pipe_macro_per_recipient(PIPE_M_SIZE));
    assert_string_equal(pipe_macro_name(PIPE_M_COUNT), "?");
}

/* --- user= --- */

static void test_user_rights(void **state)
{
    (void)state;
    struct pipe_args pa;
    char err[256];
    uid_t uid;
    gid_t gid;

    parse_ok("user=root argv=/x", &pa);
    assert_int_equal(pipe_args_user(&pa, 1, "postern", &uid, &gid, err, sizeof(err)), 0);
    assert_int_equal(uid, getuid());
    assert_int_equal(gid, getgid());
    assert_int_equal(pipe_args_user(&pa, 0, "postern", &uid, &gid, err, sizeof(err)), -1);
    assert_string_equal(err, "user=root: commands never run with root privileges");

    struct passwd *nobody = getpwnam("nobody");
    assert_non_null(nobody);
    parse_ok("user=nobody argv=/x", &pa);
    assert_int_equal(pipe_args_user(&pa, 0, "postern", &uid, &gid, err, sizeof(err)), 0);
    assert_int_equal(uid, nobody->pw_uid);
    assert_int_equal(gid, nobody->pw_gid);
    assert_int_equal(pipe_args_user(&pa, 0, "nobody", &uid, &gid, err, sizeof(err)), -1);
    assert_string_equal(err, "user=nobody: commands never run as the mail system owner");

    parse_ok("user=nobody:root argv=/x", &pa);
    assert_int_equal(pipe_args_user(&pa, 0, "postern", &uid, &gid, err, sizeof(err)), -1);
    assert_string_equal(err, "user=nobody: commands never run with group id 0");
    parse_ok("user=nobody:no-such-group-pt argv=/x", &pa);
    assert_int_equal(pipe_args_user(&pa, 0, "postern", &uid, &gid, err, sizeof(err)), -1);
    assert_string_equal(err, "user=nobody:no-such-group-pt: no such group");
    parse_ok("user=no-such-user-pt argv=/x", &pa);
    assert_int_equal(pipe_args_user(&pa, 0, "postern", &uid, &gid, err, sizeof(err)), -1);
    assert_string_equal(err, "user=no-such-user-pt: no such user");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_attribute),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_eol_escapes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_too_many_words),
        cmocka_unit_test(test_macro_forms),
        cmocka_unit_test(test_per_recipient),
        cmocka_unit_test(test_user_rights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
