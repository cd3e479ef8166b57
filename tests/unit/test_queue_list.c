/* test_queue_list.c - unit tests for lib/queue_list.c, the queue listing
 * that showq sends and postqueue prints.
 *
 * Each test gets a fresh queue_directory in a mkdtemp directory (main.cf
 * written there and loaded with config_try_load); messages are written by
 * the real queue writer (queue_file.h) and deferral reasons by dsn.h, so
 * the listing reads exactly what cleanup and bounce leave behind. Output
 * goes to an open_memstream; TZ=UTC fixes the arrival column.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT_OWN_FIXTURE
#include "unit_support.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dsn.h"
#include "log.h"
#include "queue_file.h"
#include "queue_list.h"
#include "record.h"
#include "stream.h"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_queue_list");
    setenv("TZ", "UTC", 1);
    tzset();
    if (!f || queue_dirs_create() < 0)
        return -1;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    return unit_queue_fixture_free(*state);
}

/* A complete message in queue (moved there from incoming/ when needed)
 * with the given recipients; their record offsets go to offsets. The id
 * is copied to id. */
static void write_message(const char *queue, time_t arrival, const char *sender,
                          const char *const *rcpts, size_t nrcpt, const char *content,
                          off_t *offsets, char id[QUEUE_ID_SIZE])
{
    struct timeval tv = {.tv_sec = arrival};
    struct queue_writer *w = queue_writer_create(QUEUE_INCOMING, &tv);
    assert_non_null(w);
    struct stream *s = queue_writer_stream(w);
    assert_int_equal(rec_put_str(s, REC_SENDER, sender), 0);
    for (size_t i = 0; i < nrcpt; i++) {
        offsets[i] = stream_tell(s);
        assert_int_equal(rec_put_str(s, REC_RCPT, rcpts[i]), 0);
    }
    assert_int_equal(rec_put(s, REC_CONTENT_START, "", 0), 0);
    off_t content_offset = stream_tell(s);
    assert_int_equal(rec_put_str(s, REC_CONTENT, content), 0);
    snprintf(id, QUEUE_ID_SIZE, "%s", queue_writer_id(w));
    assert_int_equal(queue_writer_commit(w, (long long)strlen(content), content_offset,
                                         (int)nrcpt), 0);
    if (strcmp(queue, QUEUE_INCOMING) != 0)
        assert_int_equal(queue_file_move(id, QUEUE_INCOMING, queue), 0);
}

/* The listing in format as a string (caller frees), and its return code. */
static char *listing(int format, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    *rc = queue_list_write(out, format);
    assert_int_equal(fclose(out), 0);
    return text;
}

static void test_empty_queue(void **state)
{
    (void)state;
    int rc;
    char *text = listing(QUEUE_LIST_TEXT, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text, "Mail queue is empty\n");
    free(text);
    text = listing(QUEUE_LIST_JSON, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text, "");
    free(text);
}

static void test_text_layout_and_order(void **state)
{
    (void)state;
    const char *one[] = {"bob@example.com"};
    const char *two[] = {"carol@example.com", "dave@example.net"};
    off_t off[2];
    char held[QUEUE_ID_SIZE], deferred[QUEUE_ID_SIZE];
    /* hold is listed after deferred whatever the ids say. */
    write_message(QUEUE_HOLD, 1700000000, "alice@example.org", one, 1, "hi\n", off, held);
    write_message(QUEUE_DEFERRED, 1700003600, "", two, 2, "Subject: x\n\nhello\n", off,
                  deferred);
    struct dsn_entry e = {.rcpt = (char *)"dave@example.net", .offset = off[1],
                          .dsn = (char *)"4.4.1", .reason = (char *)"host down",
                          .relay = (char *)"none"};
    assert_int_equal(dsn_log_append(QUEUE_DEFER_LOG, deferred, &e), 0);

    char held_status[QUEUE_ID_SIZE + 1], expected[2048];
    snprintf(held_status, sizeof(held_status), "%s!", held);
    snprintf(expected, sizeof(expected),
             "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
             "%-11s %7d Tue Nov 14 23:13:20  MAILER-DAEMON\n"
             "%*s(host down)\n"
             "                                         dave@example.net\n"
             "%*s(reason unavailable)\n"
             "                                         carol@example.com\n"
             "\n"
             "%-11s %7d Tue Nov 14 22:13:20  alice@example.org\n"
             "                                         bob@example.com\n"
             "\n"
             "-- 0 Kbytes in 2 Requests.\n",
             deferred, 18, 76 - 9, "", 76 - 18, "", held_status, 3);
    int rc;
    char *text = listing(QUEUE_LIST_TEXT, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text, expected);
    free(text);
}

static void test_json_lines(void **state)
{
    (void)state;
    const char *rcpt[] = {"x\"y@example.com"};
    off_t off[1];
    char id[QUEUE_ID_SIZE];
    write_message(QUEUE_ACTIVE, 1700000000, "s@example.org", rcpt, 1, "hi\n", off, id);
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "{\"queue_name\": \"active\", \"queue_id\": \"%s\", \"arrival_time\": 1700000000, "
             "\"message_size\": 3, \"forced_expire\": false, \"sender\": \"s@example.org\", "
             "\"recipients\": [{\"address\": \"\\\"x\\\\\\\"y\\\"@example.com\"}]}\n",
             id);
    int rc;
    char *text = listing(QUEUE_LIST_JSON, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text, expected);
    free(text);
}

/* Files that are not messages: one cleanup is still writing (0600 in
 * incoming/), temporary and junk names. */
static void test_skips_what_is_not_a_message(void **state)
{
    struct fixture *f = *state;
    const char *rcpt[] = {"r@example.com"};
    off_t off[1];
    char id[QUEUE_ID_SIZE], path[PATH_MAX];
    write_message(QUEUE_INCOMING, 1700000000, "s@example.org", rcpt, 1, "hi\n", off, id);
    assert_int_equal(queue_path(path, sizeof(path), QUEUE_INCOMING, id), 0);
    assert_int_equal(chmod(path, QUEUE_MODE_WRITING), 0);
    snprintf(path, sizeof(path), "%s/queue/hold/not-a-queue-id", f->dir);
    FILE *junk = fopen(path, "w");
    assert_non_null(junk);
    fputs("junk", junk);
    fclose(junk);
    int rc;
    char *text = listing(QUEUE_LIST_TEXT, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text, "Mail queue is empty\n");
    free(text);
}

static void test_long_ids(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(unit_load_queue_config(f->dir, "enable_long_queue_ids = yes\n"), 0);
    const char *rcpt[] = {"r@example.com"};
    off_t off[1];
    char id[QUEUE_ID_SIZE];
    write_message(QUEUE_INCOMING, 1700000000, "s@example.org", rcpt, 1, "hi\n", off, id);
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
             "%-17s %8d Tue Nov 14 22:13:20 s@example.org\n"
             "%47sr@example.com\n"
             "\n"
             "-- 0 Kbytes in 1 Request.\n",
             id, 3, "");
    int rc;
    char *text = listing(QUEUE_LIST_TEXT, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text, expected);
    free(text);
}

static ssize_t failing_write(void *cookie, const char *buf, size_t len)
{
    (void)cookie, (void)buf, (void)len;
    errno = EPIPE;
    return 0;
}

/* A reader that went away: the listing stops with the write's errno. */
static void test_output_failure_stops(void **state)
{
    (void)state;
    const char *rcpt[] = {"r@example.com"};
    off_t off[1];
    char id[QUEUE_ID_SIZE];
    for (int i = 0; i < 3; i++)
        write_message(QUEUE_HOLD, 1700000000 + i, "s@example.org", rcpt, 1, "hi\n", off, id);
    FILE *out = fopencookie(NULL, "w", (cookie_io_functions_t){.write = failing_write});
    assert_non_null(out);
    setvbuf(out, NULL, _IONBF, 0);
    errno = 0;
    assert_int_equal(queue_list_write(out, QUEUE_LIST_TEXT), -1);
    assert_int_equal(errno, EPIPE);
    fclose(out);
}

static void test_scan_sorts_by_id(void **state)
{
    (void)state;
    const char *rcpt[] = {"r@example.com"};
    off_t off[1];
    char a[QUEUE_ID_SIZE], b[QUEUE_ID_SIZE];
    write_message(QUEUE_DEFERRED, 1700000100, "s@example.org", rcpt, 1, "hi\n", off, b);
    write_message(QUEUE_DEFERRED, 1700000000, "s@example.org", rcpt, 1, "hi\n", off, a);
    struct queue_msg_list l;
    assert_int_equal(queue_msg_list_scan(QUEUE_DEFERRED, &l), 0);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.ref[0].id, a);
    assert_string_equal(l.ref[1].id, b);
    queue_msg_list_free(&l);
    assert_int_equal(queue_msg_list_scan(QUEUE_HOLD, &l), 0);
    assert_int_equal(l.count, 0);
    queue_msg_list_free(&l);
}

static void test_formats_and_readable(void **state)
{
    (void)state;
    assert_int_equal(queue_list_format_parse("text"), QUEUE_LIST_TEXT);
    assert_int_equal(queue_list_format_parse("json"), QUEUE_LIST_JSON);
    assert_int_equal(queue_list_format_parse("xml"), -1);
    assert_string_equal(queue_list_format_name(QUEUE_LIST_JSON), "json");
    assert_string_equal(queue_list_format_name(QUEUE_LIST_TEXT), "text");
    assert_int_equal(queue_list_readable(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_queue, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_text_layout_and_order, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_json_lines, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_skips_what_is_not_a_message, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_long_ids, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_output_failure_stops, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_scan_sorts_by_id, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_formats_and_readable, fixture_setup,
                                        fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
