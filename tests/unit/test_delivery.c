/* test_delivery.c - unit tests for lib/mail/delivery.c: one recipient's
 * status (set, cleaned, from an errno), the Postfix delivery log line
 * byte for byte, its delay format at every range border, D.S.N checks,
 * reply text cleaning, and the "OFFSET D.S.N text" and "sec.usec"
 * formats of deliver_protocol.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_support.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery.h"

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_delivery");
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

/* The text of the last line logged: what follows "]: ". */
static char *last_logged(const struct fixture *f)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/log", f->dir);
    char *log = unit_read_file(path, NULL);
    assert_non_null(log);
    size_t len = strlen(log);
    assert_true(len > 0 && log[len - 1] == '\n');
    log[len - 1] = 0;
    char *line = strrchr(log, '\n');
    line = line != NULL ? line + 1 : log;
    char *text = strstr(line, "]: ");
    assert_non_null(text);
    memmove(log, text + 3, strlen(text + 3) + 1);
    return log;
}

static struct timeval at(long long usec)
{
    return (struct timeval){.tv_sec = (time_t)(usec / 1000000), .tv_usec = usec % 1000000};
}

static const char *delay(long long usec)
{
    static char out[24];
    struct timeval from = at(1000000000LL * 1000000), to = at(1000000000LL * 1000000 + usec);
    delivery_format_delay(out, sizeof(out), &from, &to);
    return out;
}

static void test_delay_format_at_each_border(void **state)
{
    (void)state;
    assert_string_equal(delay(0), "0");
    assert_string_equal(delay(4999), "0");
    assert_string_equal(delay(5000), "0.01");
    assert_string_equal(delay(50000), "0.05");
    assert_string_equal(delay(100000), "0.1");
    assert_string_equal(delay(120000), "0.12");
    assert_string_equal(delay(994999), "0.99");
    assert_string_equal(delay(996000), "1");
    assert_string_equal(delay(1500000), "1.5");
    assert_string_equal(delay(2000000), "2");
    assert_string_equal(delay(9940000), "9.9");
    assert_string_equal(delay(9970000), "10");
    assert_string_equal(delay(12400000), "12");
    assert_string_equal(delay(345600000), "346");
    assert_string_equal(delay(-5000000), "0");   /* a clock step back */
}

static void test_status_word_and_dsn_syntax(void **state)
{
    (void)state;
    assert_string_equal(delivery_status_word("2.0.0"), "sent");
    assert_string_equal(delivery_status_word("5.1.1"), "bounced");
    assert_string_equal(delivery_status_word("4.4.1"), "deferred");
    assert_string_equal(delivery_status_word(NULL), "deferred");
    assert_true(delivery_dsn_valid("2.0.0"));
    assert_true(delivery_dsn_valid("4.7.1"));
    assert_true(delivery_dsn_valid("5.999.999"));
    assert_false(delivery_dsn_valid("3.0.0"));
    assert_false(delivery_dsn_valid("2.0"));
    assert_false(delivery_dsn_valid("2.1000.0"));
    assert_false(delivery_dsn_valid("2.0.0 "));
    assert_false(delivery_dsn_valid("2..0"));
    assert_false(delivery_dsn_valid(""));
    assert_false(delivery_dsn_valid(NULL));
}

static void test_text_clean(void **state)
{
    (void)state;
    char out[16];
    delivery_text_clean(out, sizeof(out), "  a\r\nb\t\tc\x7f d\xc3\xa9 ");
    assert_string_equal(out, "a b c d");
    delivery_text_clean(out, sizeof(out), "0123456789abcdefghij");
    assert_string_equal(out, "0123456789abcde");
    delivery_text_clean(out, sizeof(out), NULL);
    assert_string_equal(out, "");
}

static void test_status_set_cleans_and_bounds(void **state)
{
    (void)state;
    struct delivery_status st;
    char longer[2 * DELIVERY_TEXT_MAX];

    delivery_status_set(&st, "5.1.1", "unknown user: \"%s\"\r\nInjected: %d", "bob", 7);
    assert_string_equal(st.dsn, "5.1.1");
    assert_string_equal(st.text, "unknown user: \"bob\" Injected: 7");
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = 0;
    delivery_status_set(&st, "4.3.0", "%s", longer);
    assert_int_equal(strlen(st.text), DELIVERY_TEXT_MAX - 1);
}

static void test_status_from_errno(void **state)
{
    (void)state;
    struct delivery_status st;

    delivery_status_errno(&st, ENOSPC, "%s: write", "mbox");
    assert_string_equal(st.dsn, "4.3.0");
    assert_string_equal(st.text, "mbox: write: No space left on device");
    delivery_status_errno(&st, EDQUOT, "write");
    assert_string_equal(st.dsn, "4.3.0");
    delivery_status_errno(&st, EACCES, "open");
    assert_string_equal(st.dsn, "4.2.0");
    assert_string_equal(st.text, "open: Permission denied");
}

static void test_status_format(void **state)
{
    (void)state;
    char out[DELIVERY_STATUS_MAX];

    assert_int_equal(delivery_status_format(out, sizeof(out), 123, "2.0.0",
                                            "delivered\tto maildir"), 0);
    assert_string_equal(out, "123 2.0.0 delivered to maildir");
    assert_int_equal(delivery_status_format(out, sizeof(out), 9, "2.0", "ok"), -1);
    assert_string_equal(out, "9 4.3.0 bad delivery status");
    assert_int_equal(delivery_status_format(out, sizeof(out), 9, "", "ok"), -1);
    assert_string_equal(out, "9 4.3.0 bad delivery status");
}

static void test_times_parse_and_format(void **state)
{
    (void)state;
    struct timeval tv;
    char out[32];

    assert_int_equal(delivery_parse_time("5.5", &tv), 0);
    assert_int_equal(tv.tv_sec, 5);
    assert_int_equal(tv.tv_usec, 500000);
    assert_int_equal(delivery_parse_time("1700000000.000001", &tv), 0);
    assert_int_equal(tv.tv_sec, 1700000000);
    assert_int_equal(tv.tv_usec, 1);
    delivery_format_time(out, sizeof(out), &tv);
    assert_string_equal(out, "1700000000.000001");
    assert_int_equal(delivery_parse_time("42", &tv), 0);
    assert_int_equal(tv.tv_sec, 42);
    assert_int_equal(tv.tv_usec, 0);
    assert_int_equal(delivery_parse_time("1.", &tv), -1);
    assert_int_equal(delivery_parse_time(".5", &tv), -1);
    assert_int_equal(delivery_parse_time("1.1234567", &tv), -1);
    assert_int_equal(delivery_parse_time("1.5x", &tv), -1);
    assert_int_equal(delivery_parse_time("-1", &tv), -1);
    assert_int_equal(delivery_parse_time("2199023255553", &tv), -1);   /* 2^41 + 1 */
    assert_int_equal(delivery_parse_time(NULL, &tv), -1);
}

static struct delivery_result result(void)
{
    long long base = 1700000000LL * 1000000;
    return (struct delivery_result){
        .queue_id = "3AbCdE0001XyZ",
        .recipient = "bob@example.com",
        .relay = "local",
        .dsn = "2.0.0",
        .text = "delivered to maildir",
        .times = {.arrival = at(base), .active = at(base + 500000),
                  .agent_start = at(base + 750000), .conn_done = at(base + 750000),
                  .done = at(base + 1500000)},
    };
}

static void test_log_line(void **state)
{
    struct fixture *f = *state;
    struct delivery_result r = result();

    delivery_log(&r);
    char *line = last_logged(f);
    assert_string_equal(line, "3AbCdE0001XyZ: to=<bob@example.com>, relay=local, delay=1.5, "
                              "delays=0.5/0.25/0/0.75, dsn=2.0.0, status=sent "
                              "(delivered to maildir)");
    free(line);
}

static void test_log_line_orig_to_quoting_and_control_characters(void **state)
{
    struct fixture *f = *state;
    struct delivery_result r = result();

    r.orig_recipient = "BOB@example.com";   /* differs only in case: not logged */
    r.dsn = "5.1.1";
    r.text = "unknown\r\nuser";
    delivery_log(&r);
    char *line = last_logged(f);
    assert_non_null(strstr(line, ": to=<bob@example.com>, relay=local,"));
    assert_non_null(strstr(line, "dsn=5.1.1, status=bounced (unknown user)"));
    free(line);

    r.recipient = "john doe@example.com";
    r.orig_recipient = "sales\n@example.com";
    r.dsn = "4.2.0";
    delivery_log(&r);
    line = last_logged(f);
    assert_non_null(strstr(line, ": to=<\"john doe\"@example.com>, "
                                 "orig_to=<\"sales?\"@example.com>, relay=local,"));
    assert_non_null(strstr(line, "status=deferred"));
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_format_at_each_border),
        cmocka_unit_test(test_status_word_and_dsn_syntax),
        cmocka_unit_test(test_text_clean),
        cmocka_unit_test(test_status_set_cleans_and_bounds),
        cmocka_unit_test(test_status_from_errno),
        cmocka_unit_test(test_status_format),
        cmocka_unit_test(test_times_parse_and_format),
        cmocka_unit_test_setup_teardown(test_log_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_line_orig_to_quoting_and_control_characters,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
