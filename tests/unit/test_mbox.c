/* test_mbox.c - unit tests for lib/mail/mbox.c, delivery into an open
 * mbox file for local and virtual: the appended copy and its status, the
 * locks released afterwards, a lock another process holds (4.2.0, file
 * untouched), a wrong method list in the agent's lock parameter (4.3.0,
 * logged with the parameter's name), and both size-limit statuses with the
 * file left as it was.
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
#include <sys/wait.h>
#include <unistd.h>

#include "mbox.h"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
    char id[QUEUE_ID_SIZE];
    char path[PATH_MAX];
    struct deliver_message m;
    int fd;
};

static const char *const content[] = {"Subject: hi\n\nFrom me\n"};
static const struct mail_copy_trace trace = {.sender = "a@x", .delivered_to = "b@x"};
static const char before[] = "From old Mon Jan  1 00:00:00 2024\nold\n\n";

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_mbox");
    const char *rcpts[] = {"b@x"};
    char log[PATH_MAX];
    if (!f || queue_dirs_create() < 0)
        return -1;
    snprintf(log, sizeof(log), "%s/log", f->dir);
    log_set_file(log);
    unit_write_message(1700000000, "a@x", rcpts, 1, content, 1, NULL, f->id);
    unit_open_message(f->id, "a@x", &f->m);
    snprintf(f->path, sizeof(f->path), "%s/mbox", f->dir);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_APPEND, 0600);
    if (f->fd < 0 || write(f->fd, before, strlen(before)) != (ssize_t)strlen(before))
        return -1;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    close(f->fd);
    stream_close(f->m.queue);
    log_set_file(NULL);
    return unit_queue_fixture_free(f);
}

static struct mbox_target target(const struct fixture *f)
{
    return (struct mbox_target){
        .path = f->path, .target = "cannot update mailbox M", .what = "delivered to mailbox",
        .lock_param = PARAM_mailbox_delivery_lock, .limit_param = PARAM_mailbox_size_limit,
    };
}

static void load(const struct fixture *f, const char *extra)
{
    assert_int_equal(unit_load_queue_config(f->dir, extra), 0);
}

static char *mbox_text(const struct fixture *f)
{
    char *text = unit_read_file(f->path, NULL);
    assert_non_null(text);
    return text;
}

/* 0 when another process can take an fcntl write lock on the file now. */
static int fcntl_free(const char *path)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        int fd = open(path, O_RDWR);
        _exit(fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_appended_and_unlocked(void **state)
{
    struct fixture *f = *state;
    struct mbox_target d = target(f);
    struct delivery_status st;
    char lock[PATH_MAX + 8];

    mbox_deliver_fd(f->fd, &d, &f->m, &trace, &st);
    assert_string_equal(st.dsn, "2.0.0");
    assert_string_equal(st.text, "delivered to mailbox");
    char *text = mbox_text(f);
    assert_memory_equal(text, before, strlen(before));
    assert_memory_equal(text + strlen(before), "From a@x ", strlen("From a@x "));
    assert_non_null(strstr(text, "\nReturn-Path: <a@x>\nDelivered-To: b@x\nSubject: hi\n\n"
                                 ">From me\n\n"));
    free(text);
    snprintf(lock, sizeof(lock), "%s.lock", f->path);
    assert_int_equal(access(lock, F_OK), -1);
    assert_true(fcntl_free(f->path));
}

static void test_lock_held_elsewhere_defers(void **state)
{
    struct fixture *f = *state;
    struct mbox_target d = target(f);
    struct delivery_status st;
    int ready[2], go[2];
    char c;

    load(f, "mailbox_delivery_lock = FCNTL\ndeliver_lock_attempts = 2\n"
            "deliver_lock_delay = 0\n");
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        int fd = open(f->path, O_RDWR);
        close(go[1]);
        if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0 || write(ready[1], "y", 1) != 1)
            _exit(1);
        while (read(go[0], &c, 1) > 0)
            ;
        _exit(0);
    }
    close(go[0]);
    close(ready[1]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    mbox_deliver_fd(f->fd, &d, &f->m, &trace, &st);
    close(go[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(ready[0]);
    assert_string_equal(st.dsn, "4.2.0");
    assert_string_equal(st.text, "cannot update mailbox M: unable to lock for exclusive "
                                 "access: Resource temporarily unavailable");
    char *text = mbox_text(f);
    assert_string_equal(text, before);
    free(text);
}

static void test_wrong_lock_method_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    struct mbox_target d = target(f);
    struct delivery_status st;
    char log[PATH_MAX];

    load(f, "virtual_mailbox_lock = fcntl, posix\n");
    d.lock_param = PARAM_virtual_mailbox_lock;
    mbox_deliver_fd(f->fd, &d, &f->m, &trace, &st);
    assert_string_equal(st.dsn, "4.3.0");
    assert_string_equal(st.text, "mail system configuration error");
    snprintf(log, sizeof(log), "%s/log", f->dir);
    char *text = unit_read_file(log, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "virtual_mailbox_lock: unknown mailbox lock method "
                                 "\"posix\"\n"));
    free(text);
    text = mbox_text(f);
    assert_string_equal(text, before);
    free(text);
}

static void test_size_limits(void **state)
{
    struct fixture *f = *state;
    struct mbox_target d = target(f);
    struct delivery_status st;
    char expected[256];

    d.limit = (long long)strlen(before);
    mbox_deliver_fd(f->fd, &d, &f->m, &trace, &st);
    assert_string_equal(st.dsn, "5.2.2");
    snprintf(expected, sizeof(expected), "cannot update mailbox M: mailbox is full "
             "(mailbox_size_limit %lld bytes)", d.limit);
    assert_string_equal(st.text, expected);

    d.limit = (long long)strlen(before) + 20;
    d.limit_param = PARAM_virtual_mailbox_limit;
    mbox_deliver_fd(f->fd, &d, &f->m, &trace, &st);
    assert_string_equal(st.dsn, "5.2.2");
    snprintf(expected, sizeof(expected), "cannot update mailbox M: message would exceed "
             "virtual_mailbox_limit (%lld bytes)", d.limit);
    assert_string_equal(st.text, expected);
    char *text = mbox_text(f);
    assert_string_equal(text, before);
    free(text);
    assert_true(fcntl_free(f->path));
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_appended_and_unlocked),
        T(test_lock_held_elsewhere_defers),
        T(test_wrong_lock_method_is_a_configuration_error),
        T(test_size_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
