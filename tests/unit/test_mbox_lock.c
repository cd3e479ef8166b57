/* test_mbox_lock.c - unit tests for lib/util/mbox_lock.c, the mbox
 * locking of local and virtual: the method-list parser (case, separators,
 * unknown names an error naming the parameter), each method taken and
 * released, each one held by another process (a forked child) making the
 * lock busy, all or none of the methods, stale dot-locks, and a directory
 * that cannot hold a dot-lock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_support.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>
#include <utime.h>

#include "mbox_lock.h"

#define ALL (MBOX_LOCK_FCNTL | MBOX_LOCK_FLOCK | MBOX_LOCK_DOTLOCK)

static int setup(void **state)
{
    return unit_tmpdir_setup(state, "test_mbox_lock");
}

static int teardown(void **state)
{
    mbox_lock_cleanup();
    return unit_tmpdir_teardown(state);
}

static void mbox_path(const struct fixture *f, char *path, size_t len)
{
    snprintf(path, len, "%s/mbox", f->dir);
}

static int open_mbox(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND, 0666);
    assert_true(fd >= 0);
    return fd;
}

static struct mbox_lock_policy policy(int methods)
{
    return (struct mbox_lock_policy){.methods = methods, .attempts = 2, .delay = 0,
                                     .stale_time = 500};
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* --- the parser --- */

static void test_parse_names_any_case_any_separator(void **state)
{
    (void)state;
    char why[256] = "";
    int m = -1;

    assert_int_equal(mbox_lock_parse("p", "fcntl, flock, dotlock", &m, why, sizeof(why)), 0);
    assert_int_equal(m, ALL);
    assert_int_equal(mbox_lock_parse("p", "DotLock\tFCNTL", &m, why, sizeof(why)), 0);
    assert_int_equal(m, MBOX_LOCK_DOTLOCK | MBOX_LOCK_FCNTL);
    assert_int_equal(mbox_lock_parse("p", " ,flock,, ", &m, why, sizeof(why)), 0);
    assert_int_equal(m, MBOX_LOCK_FLOCK);
    assert_int_equal(mbox_lock_parse("p", "", &m, why, sizeof(why)), 0);
    assert_int_equal(m, 0);
    assert_int_equal(mbox_lock_parse("p", NULL, &m, why, sizeof(why)), 0);
    assert_int_equal(m, 0);
}

static void test_parse_unknown_method_is_an_error(void **state)
{
    (void)state;
    char why[256] = "", longer[400];
    int m;

    assert_int_equal(mbox_lock_parse("mailbox_delivery_lock", "fcntl, lockf", &m, why,
                                     sizeof(why)), -1);
    assert_string_equal(why, "mailbox_delivery_lock: unknown mailbox lock method \"lockf\"");
    assert_int_equal(mbox_lock_parse("virtual_mailbox_lock", "flocks", &m, why, sizeof(why)), -1);
    assert_string_equal(why, "virtual_mailbox_lock: unknown mailbox lock method \"flocks\"");
    memset(longer, ' ', sizeof(longer) - 6);
    strcpy(longer + sizeof(longer) - 6, "fcntl");
    assert_int_equal(mbox_lock_parse("p", longer, &m, why, sizeof(why)), -1);
    assert_string_equal(why, "p: value too long");
}

/* --- each method alone --- */

static void test_dotlock_taken_and_released(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX], lock[PATH_MAX + 8];
    struct mbox_lock_policy p = policy(MBOX_LOCK_DOTLOCK);

    mbox_path(f, path, sizeof(path));
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int fd = open_mbox(path);
    assert_int_equal(mbox_lock(fd, path, &p), 0);
    assert_true(exists(lock));
    mbox_unlock(fd, p.methods);
    assert_false(exists(lock));
    close(fd);
}

static void test_cleanup_removes_a_held_dotlock(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX], lock[PATH_MAX + 8];
    struct mbox_lock_policy p = policy(MBOX_LOCK_DOTLOCK);

    mbox_path(f, path, sizeof(path));
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int fd = open_mbox(path);
    assert_int_equal(mbox_lock(fd, path, &p), 0);
    mbox_lock_cleanup();
    assert_false(exists(lock));
    close(fd);
}

/* What another process finds: 0 when it can take method itself now. */
static int other_process_can_lock(const char *path, int method)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fd < 0)
            _exit(2);
        if (method == MBOX_LOCK_FCNTL)
            _exit(fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
        _exit(flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void kernel_lock_excludes_others(const struct fixture *f, int method)
{
    char path[PATH_MAX];
    struct mbox_lock_policy p = policy(method);

    mbox_path(f, path, sizeof(path));
    int fd = open_mbox(path);
    assert_int_equal(other_process_can_lock(path, method), 0);
    assert_int_equal(mbox_lock(fd, path, &p), 0);
    assert_int_equal(other_process_can_lock(path, method), 1);
    mbox_unlock(fd, p.methods);
    assert_int_equal(other_process_can_lock(path, method), 0);
    close(fd);
}

static void test_fcntl_excludes_other_processes(void **state)
{
    kernel_lock_excludes_others(*state, MBOX_LOCK_FCNTL);
}

static void test_flock_excludes_other_processes(void **state)
{
    kernel_lock_excludes_others(*state, MBOX_LOCK_FLOCK);
}

/* --- a lock held by another process --- */

struct holder {
    pid_t pid;
    int release;     /* write end: closing it lets the child go */
};

/* A child that takes method on path (a dot-lock as mutt makes it, or a
 * kernel lock on its own descriptor) and holds it until released. */
static struct holder hold_in_child(const char *path, int method)
{
    int ready[2], go[2];
    char c;
    struct holder h;

    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    h.pid = fork();
    assert_true(h.pid >= 0);
    if (h.pid == 0) {
        char lock[PATH_MAX + 8];
        int fd = open(path, O_RDWR), ok;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        close(ready[0]);
        close(go[1]);
        snprintf(lock, sizeof(lock), "%s.lock", path);
        if (method == MBOX_LOCK_DOTLOCK)
            ok = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0600) >= 0;
        else if (method == MBOX_LOCK_FCNTL)
            ok = fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0;
        else
            ok = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (write(ready[1], ok ? "y" : "n", 1) != 1)
            _exit(2);
        while (read(go[0], &c, 1) > 0)
            ;
        if (method == MBOX_LOCK_DOTLOCK)
            unlink(lock);
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    assert_int_equal(c, 'y');
    h.release = go[1];
    return h;
}

static void release_child(struct holder *h)
{
    int status;

    close(h->release);
    assert_int_equal(waitpid(h->pid, &status, 0), h->pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void busy_while_another_holds(const struct fixture *f, int held, int asked)
{
    char path[PATH_MAX], lock[PATH_MAX + 8];
    struct mbox_lock_policy p = policy(asked);

    mbox_path(f, path, sizeof(path));
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int fd = open_mbox(path);
    struct holder h = hold_in_child(path, held);
    assert_int_equal(mbox_lock(fd, path, &p), 1);
    /* All or none: nothing of ours is left behind by the failed attempt. */
    if (held != MBOX_LOCK_DOTLOCK)
        assert_false(exists(lock));
    release_child(&h);
    assert_int_equal(mbox_lock(fd, path, &p), 0);
    mbox_unlock(fd, p.methods);
    close(fd);
}

static void test_dotlock_of_another_process_is_busy(void **state)
{
    busy_while_another_holds(*state, MBOX_LOCK_DOTLOCK, MBOX_LOCK_DOTLOCK);
}

static void test_fcntl_of_another_process_is_busy(void **state)
{
    busy_while_another_holds(*state, MBOX_LOCK_FCNTL, MBOX_LOCK_FCNTL);
}

static void test_flock_of_another_process_is_busy(void **state)
{
    busy_while_another_holds(*state, MBOX_LOCK_FLOCK, MBOX_LOCK_FLOCK);
}

static void test_one_busy_method_means_none_is_held(void **state)
{
    struct fixture *f = *state;

    busy_while_another_holds(f, MBOX_LOCK_FLOCK, ALL);
    /* The dot-lock and fcntl lock taken before flock failed were dropped:
     * another process can take the fcntl lock. */
    char path[PATH_MAX];
    mbox_path(f, path, sizeof(path));
    struct holder h = hold_in_child(path, MBOX_LOCK_FLOCK);
    int fd = open_mbox(path);
    struct mbox_lock_policy p = policy(ALL);
    assert_int_equal(mbox_lock(fd, path, &p), 1);
    assert_int_equal(other_process_can_lock(path, MBOX_LOCK_FCNTL), 0);
    release_child(&h);
    close(fd);
}

/* --- stale and impossible dot-locks --- */

static void test_stale_dotlock_is_removed(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX], lock[PATH_MAX + 8];
    struct mbox_lock_policy p = policy(MBOX_LOCK_DOTLOCK);
    struct utimbuf old = {.actime = time(NULL) - 1000, .modtime = time(NULL) - 1000};

    mbox_path(f, path, sizeof(path));
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int fd = open_mbox(path);
    int lfd = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(lfd >= 0);
    close(lfd);
    assert_int_equal(mbox_lock(fd, path, &p), 1);   /* fresh: someone holds it */
    assert_int_equal(utime(lock, &old), 0);
    assert_int_equal(mbox_lock(fd, path, &p), 0);   /* 1000 s old, stale after 500 */
    mbox_unlock(fd, p.methods);
    assert_false(exists(lock));
    close(fd);
}

static void test_dotlock_in_a_missing_directory_is_an_error(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    struct mbox_lock_policy p = policy(MBOX_LOCK_DOTLOCK);

    mbox_path(f, path, sizeof(path));
    int fd = open_mbox(path);
    snprintf(path, sizeof(path), "%s/no/such/mbox", f->dir);
    p.dotlock_may_fail = 1;   /* only an unwritable directory may fail */
    errno = 0;
    assert_int_equal(mbox_lock(fd, path, &p), -1);
    assert_int_equal(errno, ENOENT);
    close(fd);
}

/* In a directory we may not write: an error, unless the policy lets the
 * dot-lock fail (then the kernel locks are still taken). Run as an
 * unprivileged user in a child, since root may write anywhere. */
static int lock_in_readonly_dir(const char *dir, int may_fail)
{
    char path[PATH_MAX];
    pid_t pid;
    int status;

    snprintf(path, sizeof(path), "%s/mbox", dir);
    close(open_mbox(path));
    assert_int_equal(chmod(path, 0666), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct mbox_lock_policy p = policy(MBOX_LOCK_DOTLOCK | MBOX_LOCK_FCNTL);
        p.dotlock_may_fail = may_fail;
        if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
            _exit(3);
        int fd = open(path, O_RDWR);
        if (fd < 0)
            _exit(4);
        int r = mbox_lock(fd, path, &p);
        _exit(r == 0 ? 0 : r < 0 && errno == EACCES ? 1 : 2);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(chmod(dir, 0700), 0);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_unwritable_directory_and_dotlock_may_fail(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX];

    snprintf(dir, sizeof(dir), "%s/ro", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(f->dir, 0755), 0);   /* the child must reach it */
    assert_int_equal(lock_in_readonly_dir(dir, 0), 1);
    assert_int_equal(lock_in_readonly_dir(dir, 1), 0);
}

/* --- retries --- */

static void test_released_between_attempts_is_taken(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    struct mbox_lock_policy p = policy(MBOX_LOCK_FLOCK);

    mbox_path(f, path, sizeof(path));
    int fd = open_mbox(path);
    struct holder h = hold_in_child(path, MBOX_LOCK_FLOCK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        usleep(300000);   /* let the holder go while we wait out the delay */
        close(h.release);
        _exit(0);
    }
    close(h.release);   /* the helper child holds the only other write end */
    p.attempts = 5;
    p.delay = 1;
    assert_int_equal(mbox_lock(fd, path, &p), 0);
    mbox_unlock(fd, p.methods);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(waitpid(h.pid, &status, 0), h.pid);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_names_any_case_any_separator),
        cmocka_unit_test(test_parse_unknown_method_is_an_error),
        cmocka_unit_test_setup_teardown(test_dotlock_taken_and_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup_removes_a_held_dotlock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fcntl_excludes_other_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flock_excludes_other_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotlock_of_another_process_is_busy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fcntl_of_another_process_is_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flock_of_another_process_is_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_busy_method_means_none_is_held, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_dotlock_is_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotlock_in_a_missing_directory_is_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_directory_and_dotlock_may_fail, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_released_between_attempts_is_taken, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
