/* test_maildir.c - unit tests for lib/mail/maildir.c: a whole message
 * into a Maildir (missing parents made, one file in new/ with the trace
 * headers and the content, nothing in tmp/), the statuses of a message
 * over the limit, of an unreadable queue file and of a path that cannot be
 * a Maildir (nothing left behind in any case), and unique names ending in
 * the host name with '/', ':' and '\' escaped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT_OWN_FIXTURE
#include "unit_support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail_copy.h"
#include "maildir.h"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
    char id[QUEUE_ID_SIZE];
    struct deliver_message m;
};

static const char *const content[] = {"Subject: hi\n\nbody\n"};
static const struct mail_copy_trace trace = {.sender = "a@x", .orig_rcpt = "o@x",
                                             .delivered_to = "b@x"};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_maildir");
    const char *rcpts[] = {"b@x"};
    if (!f || queue_dirs_create() < 0)
        return -1;
    unit_write_message(1700000000, "a@x", rcpts, 1, content, 1, NULL, f->id);
    unit_open_message(f->id, "a@x", &f->m);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    stream_close(f->m.queue);
    return unit_queue_fixture_free(f);
}

/* The names in dir (at most 8, sorted by nothing); their count. */
static size_t list(const char *dir, char names[8][NAME_MAX + 1])
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && n < 8)
            snprintf(names[n++], NAME_MAX + 1, "%s", e->d_name);
    closedir(d);
    return n;
}

static size_t count(const struct fixture *f, const char *sub)
{
    char path[PATH_MAX], names[8][NAME_MAX + 1];
    snprintf(path, sizeof(path), "%s/u/Maildir/%s", f->dir, sub);
    return list(path, names);
}

static void test_message_into_new_maildir(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX], path[2 * PATH_MAX], names[8][NAME_MAX + 1];
    struct delivery_status st;
    struct stat sb;

    snprintf(dir, sizeof(dir), "%s/u/Maildir/", f->dir);
    maildir_deliver(dir, &f->m, &trace, 0, PARAM_mailbox_size_limit, &st);
    assert_string_equal(st.dsn, "2.0.0");
    assert_string_equal(st.text, "delivered to maildir");
    assert_int_equal(count(f, "tmp"), 0);
    assert_int_equal(count(f, "cur"), 0);
    snprintf(path, sizeof(path), "%snew", dir);
    assert_int_equal(list(path, names), 1);
    snprintf(path, sizeof(path), "%snew/%s", dir, names[0]);
    char *text = unit_read_file(path, NULL);
    assert_non_null(text);
    assert_string_equal(text, "Return-Path: <a@x>\nX-Original-To: o@x\nDelivered-To: b@x\n"
                              "Subject: hi\n\nbody\n");
    free(text);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
}

static void test_over_the_limit_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX];
    struct delivery_status st;

    snprintf(dir, sizeof(dir), "%s/u/Maildir/", f->dir);
    maildir_deliver(dir, &f->m, &trace, 10, PARAM_virtual_mailbox_limit, &st);
    assert_string_equal(st.dsn, "5.2.2");
    assert_string_equal(st.text, "cannot deliver to maildir: message is larger than "
                                 "virtual_mailbox_limit (10 bytes)");
    assert_int_equal(count(f, "tmp"), 0);
    assert_int_equal(count(f, "new"), 0);
}

static void test_unreadable_queue_file_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX], qpath[PATH_MAX];
    struct delivery_status st;

    assert_int_equal(queue_path(qpath, sizeof(qpath), QUEUE_INCOMING, f->id), 0);
    assert_int_equal(truncate(qpath, (off_t)f->m.content_offset + 5), 0);
    snprintf(dir, sizeof(dir), "%s/u/Maildir/", f->dir);
    maildir_deliver(dir, &f->m, &trace, 0, PARAM_mailbox_size_limit, &st);
    assert_string_equal(st.dsn, "4.3.0");
    assert_string_equal(st.text, "error reading queue file");
    assert_int_equal(count(f, "tmp"), 0);
    assert_int_equal(count(f, "new"), 0);
}

static void test_path_that_cannot_be_a_maildir(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX], file[PATH_MAX];
    struct delivery_status st;

    snprintf(file, sizeof(file), "%s/plain", f->dir);
    close(open(file, O_WRONLY | O_CREAT, 0600));
    snprintf(dir, sizeof(dir), "%s/plain/Maildir/", f->dir);
    maildir_deliver(dir, &f->m, &trace, 0, PARAM_mailbox_size_limit, &st);
    assert_string_equal(st.dsn, "4.2.0");
    assert_string_equal(st.text, "cannot deliver to maildir: create file in tmp/: "
                                 "Not a directory");
}

static void test_unique_name_ends_in_escaped_host(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX], path[2 * PATH_MAX], names[8][NAME_MAX + 1];
    struct maildir_file mf;
    enum maildir_step step;
    static const char suffix[] = ".mx\\0571\\072x\\134y_z";

    snprintf(dir, sizeof(dir), "%s/u/Maildir/", f->dir);
    assert_int_equal(maildir_file_create(&mf, dir, "mx/1:x\\y z", &step), 0);
    const char *name = strrchr(mf.tmp, '/') + 1;
    assert_true(strlen(name) > strlen(suffix));
    assert_string_equal(name + strlen(name) - strlen(suffix), suffix);
    assert_int_equal(maildir_file_publish(&mf, &step), 0);
    snprintf(path, sizeof(path), "%snew", dir);
    assert_int_equal(list(path, names), 1);
    assert_string_equal(names[0] + strlen(names[0]) - strlen(suffix), suffix);

    assert_int_equal(maildir_file_create(&mf, dir, "", &step), 0);
    assert_string_equal(mf.tmp + strlen(mf.tmp) - strlen(".localhost"), ".localhost");
    maildir_file_discard(&mf);
    assert_int_equal(count(f, "tmp"), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_message_into_new_maildir),
        T(test_over_the_limit_leaves_nothing),
        T(test_unreadable_queue_file_leaves_nothing),
        T(test_path_that_cannot_be_a_maildir),
        T(test_unique_name_ends_in_escaped_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
