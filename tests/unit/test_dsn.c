/* test_dsn.c - unit tests for lib/dsn.c, the per-message status logs.
 *
 * Each test gets a fresh queue_directory in a mkdtemp directory (main.cf
 * written there and loaded with config_try_load), so appends, reads and
 * renames run on real files exactly as bounce and postqueue do them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT_OWN_FIXTURE
#include "unit_support.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dsn.h"
#include "log.h"
#include "record.h"

#define ID1 "0AbCdE0001XyZ"
#define ID2 "0AbCdE0002XyZ"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
    char path[128];   /* the queue directory */
};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_dsn");
    if (!f)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/queue", f->dir);
    mkdir(f->path, 0700);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    return unit_queue_fixture_free(*state);
}

static struct dsn_entry entry(const char *rcpt, long long offset, const char *dsn,
                              const char *reason)
{
    return (struct dsn_entry){.rcpt = (char *)rcpt, .offset = offset, .dsn = (char *)dsn,
                              .reason = (char *)reason, .relay = (char *)"local"};
}

static void test_append_read_round_trip(void **state)
{
    (void)state;
    struct dsn_entry e = entry("bob@example.com", 120, "5.1.1", "unknown user: \"bob\"");
    e.orig_rcpt = (char *)"robert@example.com";
    e.dsn_orcpt = (char *)"rfc822;robert@example.com";
    e.dsn_notify = DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY;
    e.when = 1700000000;
    assert_int_equal(dsn_log_append(QUEUE_BOUNCE_LOG, ID1, &e), 0);

    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_BOUNCE_LOG, ID1, &l), 0);
    assert_int_equal(l.count, 1);
    const struct dsn_entry *r = &l.entry[0];
    assert_string_equal(r->rcpt, "bob@example.com");
    assert_string_equal(r->orig_rcpt, "robert@example.com");
    assert_string_equal(r->dsn_orcpt, "rfc822;robert@example.com");
    assert_int_equal(r->dsn_notify, DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
    assert_int_equal(r->offset, 120);
    assert_string_equal(r->dsn, "5.1.1");
    assert_string_equal(r->reason, "unknown user: \"bob\"");
    assert_string_equal(r->relay, "local");
    assert_int_equal((long long)r->when, 1700000000LL);
    assert_ptr_equal(dsn_log_find(&l, 120), r);
    assert_null(dsn_log_find(&l, 121));
    dsn_log_free(&l);
}

static void test_missing_log_is_empty(void **state)
{
    (void)state;
    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_DEFER_LOG, ID2, &l), 0);
    assert_int_equal(l.count, 0);
    assert_null(dsn_log_find(&l, 0));
    dsn_log_free(&l);
}

/* Optional attributes stay NULL; "when" defaults to now. */
static void test_optional_fields_absent(void **state)
{
    (void)state;
    struct dsn_entry e = {.rcpt = (char *)"a@b", .offset = 7, .dsn = (char *)"4.2.0",
                          .reason = (char *)"later"};
    time_t before = time(NULL);
    assert_int_equal(dsn_log_append(QUEUE_DEFER_LOG, ID1, &e), 0);
    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_DEFER_LOG, ID1, &l), 0);
    assert_int_equal(l.count, 1);
    assert_null(l.entry[0].orig_rcpt);
    assert_null(l.entry[0].dsn_orcpt);
    assert_null(l.entry[0].relay);
    assert_int_equal(l.entry[0].dsn_notify, 0);
    assert_true(l.entry[0].when >= before && l.entry[0].when <= time(NULL));
    dsn_log_free(&l);
}

/* One entry per recipient: the latest status, at the first position. */
static void test_repeats_merge_to_latest(void **state)
{
    (void)state;
    struct dsn_entry a1 = entry("a@x", 300, "4.4.1", "first try a");
    struct dsn_entry b1 = entry("b@x", 100, "4.4.1", "first try b");
    struct dsn_entry c1 = entry("c@x", 200, "4.4.2", "only c");
    struct dsn_entry a2 = entry("a@x", 300, "4.4.7", "second try a");
    struct dsn_entry b2 = entry("b@x", 100, "4.2.2", "second try b");
    struct dsn_entry b3 = entry("b@x", 100, "4.3.0", "third try b");
    const struct dsn_entry *all[] = {&a1, &b1, &c1, &a2, &b2, &b3};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_int_equal(dsn_log_append(QUEUE_DEFER_LOG, ID1, all[i]), 0);

    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_DEFER_LOG, ID1, &l), 0);
    assert_int_equal(l.count, 3);
    assert_string_equal(l.entry[0].rcpt, "a@x");
    assert_string_equal(l.entry[0].reason, "second try a");
    assert_string_equal(l.entry[1].rcpt, "b@x");
    assert_string_equal(l.entry[1].reason, "third try b");
    assert_string_equal(l.entry[1].dsn, "4.3.0");
    assert_string_equal(l.entry[2].rcpt, "c@x");
    assert_string_equal(dsn_log_find(&l, 100)->reason, "third try b");
    assert_string_equal(dsn_log_find(&l, 200)->reason, "only c");
    assert_string_equal(dsn_log_find(&l, 300)->reason, "second try a");
    dsn_log_free(&l);
}

/* Entries without an offset cannot be matched up and are all kept. */
static void test_unknown_offsets_kept(void **state)
{
    (void)state;
    struct dsn_entry a = entry("a@x", -1, "5.0.0", "one");
    struct dsn_entry b = entry("a@x", -1, "5.0.0", "two");
    assert_int_equal(dsn_log_append(QUEUE_BOUNCE_LOG, ID1, &a), 0);
    assert_int_equal(dsn_log_append(QUEUE_BOUNCE_LOG, ID1, &b), 0);
    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_BOUNCE_LOG, ID1, &l), 0);
    assert_int_equal(l.count, 2);
    assert_null(dsn_log_find(&l, -1));
    dsn_log_free(&l);
}

/* A crash mid-write leaves a torn last entry: the complete ones still read. */
static void test_torn_last_entry_ignored(void **state)
{
    struct fixture *f = *state;
    struct dsn_entry a = entry("a@x", 10, "5.1.1", "gone");
    assert_int_equal(dsn_log_append(QUEUE_BOUNCE_LOG, ID1, &a), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/bounce/%s", f->path, ID1);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "A\x10rcpt=b@", 8), 8);
    close(fd);
    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_BOUNCE_LOG, ID1, &l), 0);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.entry[0].rcpt, "a@x");
    dsn_log_free(&l);
}

/* A reason longer than a reader accepts is cut, not made unreadable. */
static void test_long_reason_truncated(void **state)
{
    (void)state;
    size_t n = 20000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = 0;
    struct dsn_entry a = entry("a@x", 1, "4.0.0", big);
    assert_int_equal(dsn_log_append(QUEUE_DEFER_LOG, ID1, &a), 0);
    struct dsn_log l;
    assert_int_equal(dsn_log_read(QUEUE_DEFER_LOG, ID1, &l), 0);
    assert_int_equal(l.count, 1);
    assert_int_equal(strlen(l.entry[0].reason), 8192 - strlen("reason="));
    dsn_log_free(&l);
    free(big);
}

/* success/ is created on demand; remove and rename act on all three logs. */
static void test_remove_and_rename(void **state)
{
    struct fixture *f = *state;
    struct dsn_entry a = entry("a@x", 1, "2.0.0", "delivered");
    assert_int_equal(dsn_log_append(QUEUE_SUCCESS_LOG, ID1, &a), 0);
    assert_int_equal(dsn_log_append(QUEUE_DEFER_LOG, ID1, &a), 0);
    assert_int_equal(dsn_log_rename_all(ID1, ID2), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/success/%s", f->path, ID2);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/success/%s", f->path, ID1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(dsn_log_remove_all(ID2), 0);
    snprintf(path, sizeof(path), "%s/success/%s", f->path, ID2);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/defer/%s", f->path, ID2);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(dsn_log_remove(QUEUE_BOUNCE_LOG, ID2), 0);   /* absent is fine */
}

/* Names become paths: anything but the three logs and valid ids is refused. */
static void test_names_validated(void **state)
{
    (void)state;
    char path[PATH_MAX];
    struct dsn_entry a = entry("a@x", 1, "5.0.0", "x");
    assert_int_equal(dsn_log_path(path, sizeof(path), "../etc", ID1), -1);
    assert_int_equal(dsn_log_path(path, sizeof(path), QUEUE_DEFER_LOG, "../../x"), -1);
    assert_int_equal(dsn_log_path(path, sizeof(path), QUEUE_DEFER_LOG, "tmp.1.2"), -1);
    assert_int_equal(dsn_log_append("hold", ID1, &a), -1);
    assert_int_equal(errno, EINVAL);
    assert_true(dsn_log_name_valid(QUEUE_SUCCESS_LOG));
    assert_false(dsn_log_name_valid("trace"));
}

static void test_notify_wants(void **state)
{
    (void)state;
    assert_true(dsn_notify_wants(0, DSN_NOTIFY_FAILURE));
    assert_true(dsn_notify_wants(0, DSN_NOTIFY_DELAY));
    assert_false(dsn_notify_wants(0, DSN_NOTIFY_SUCCESS));
    assert_false(dsn_notify_wants(DSN_NOTIFY_NEVER, DSN_NOTIFY_FAILURE));
    assert_false(dsn_notify_wants(DSN_NOTIFY_NEVER, DSN_NOTIFY_DELAY));
    assert_true(dsn_notify_wants(DSN_NOTIFY_SUCCESS, DSN_NOTIFY_SUCCESS));
    assert_false(dsn_notify_wants(DSN_NOTIFY_SUCCESS, DSN_NOTIFY_FAILURE));
    assert_true(dsn_notify_wants(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, DSN_NOTIFY_FAILURE));
    assert_false(dsn_notify_wants(DSN_NOTIFY_FAILURE, DSN_NOTIFY_DELAY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_read_round_trip, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_log_is_empty, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_optional_fields_absent, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_repeats_merge_to_latest, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_offsets_kept, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_torn_last_entry_ignored, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_long_reason_truncated, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_remove_and_rename, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_names_validated, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_notify_wants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
