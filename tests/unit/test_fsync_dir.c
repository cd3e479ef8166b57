/* test_fsync_dir.c - unit tests for lib/util/fsync_dir.c, the one "make
 * this directory entry durable" of every writer: a directory, the parent
 * of a path (relative, absolute, with a trailing slash), and the errors a
 * caller turns into a deferral (missing, not a directory, too long), and
 * a new directory synced with its whole file system.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsync_dir.h"

struct fixture {
    char dir[64];
    char file[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/fsync_dir.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->file, sizeof(f->file), "%s/file", f->dir);
    int fd = open(f->file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->file);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_directory(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(fsync_dir(f->dir), 0);
    assert_int_equal(fsync_dir("/"), 0);
    errno = 0;
    assert_int_equal(fsync_dir(f->file), -1);
    assert_int_equal(errno, ENOTDIR);
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/none", f->dir);
    assert_int_equal(fsync_dir(missing), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_parent(void **state)
{
    struct fixture *f = *state;
    char path[160];
    assert_int_equal(fsync_parent(f->file), 0);
    /* A name that does not exist yet: only its directory must. */
    snprintf(path, sizeof(path), "%s/not-yet", f->dir);
    assert_int_equal(fsync_parent(path), 0);
    /* A trailing slash is not a name: the parent of "D/file/" is D. */
    snprintf(path, sizeof(path), "%s/file/", f->dir);
    assert_int_equal(fsync_parent(path), 0);
    assert_int_equal(fsync_parent("/tmp"), 0);          /* "/" */
    assert_int_equal(fsync_parent("no-slash-here"), 0);  /* "." */
    snprintf(path, sizeof(path), "%s/none/file", f->dir);
    assert_int_equal(fsync_parent(path), -1);
    assert_int_equal(errno, ENOENT);
    snprintf(path, sizeof(path), "%s/file/x", f->dir);
    assert_int_equal(fsync_parent(path), -1);
    assert_int_equal(errno, ENOTDIR);
}

static void test_parent_too_long(void **state)
{
    (void)state;
    char *path = malloc(PATH_MAX + 16);
    assert_non_null(path);
    memset(path, 'a', PATH_MAX + 15);
    path[0] = '/';
    path[PATH_MAX + 15] = 0;
    assert_int_equal(fsync_parent(path), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    free(path);
}

/* A new directory synced with its file system: 0; what it cannot open
 * is an error the caller defers on. */
static void test_new_dir(void **state)
{
    struct fixture *f = *state;
    char path[256];
    assert_int_equal(fsync_new_dir(f->dir), 0);
    snprintf(path, sizeof(path), "%s/none", f->dir);
    assert_int_equal(fsync_new_dir(path), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(fsync_new_dir(f->file), -1);
    assert_int_equal(errno, ENOTDIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parent_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
