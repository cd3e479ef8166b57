/* test_queue_purge.c - unit tests for lib/queue_purge.c, what postsuper -p
 * and postern start remove from the queue: unfinished queue files (mode
 * 0600) in incoming/ and hold/, and cleanup's tmp.PID.N files; never a
 * complete file, a file of another queue, or a name that is no queue id.
 *
 * Each test gets a fresh queue_directory in a mkdtemp directory (main.cf
 * written there and loaded with config_try_load, the tree made by
 * queue_dirs_create), and plants plain files with the modes and times
 * cleanup's crash would leave.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT_OWN_FIXTURE
#include "unit_support.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "queue_purge.h"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
    unsigned next_ino;    /* makes distinct queue ids */
};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_queue_purge");
    if (!f || queue_dirs_create() < 0)
        return -1;
    f->next_ino = 1000;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    return unit_queue_fixture_free(*state);
}

/* A file queue/name with mode, last modified age seconds ago; its path
 * goes to path. */
static void plant_named(const char *queue, const char *name, mode_t mode, time_t age,
                        char path[PATH_MAX])
{
    char dir[PATH_MAX];
    assert_int_equal(queue_dir_path(dir, sizeof(dir), queue), 0);
    assert_true(snprintf(path, PATH_MAX, "%s/%s", dir, name) < PATH_MAX);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "Z", 1), 1);
    assert_int_equal(fchmod(fd, mode), 0);
    struct timespec times[2] = {{.tv_sec = time(NULL) - age}, {.tv_sec = time(NULL) - age}};
    assert_int_equal(futimens(fd, times), 0);
    close(fd);
}

/* The same with a fresh queue id for a name. */
static void plant(struct fixture *f, const char *queue, mode_t mode, time_t age,
                  char path[PATH_MAX])
{
    char id[QUEUE_ID_SIZE];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    queue_id_make(id, &tv, f->next_ino++);
    plant_named(queue, id, mode, age, path);
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void test_start_removes_every_unfinished_file(void **state)
{
    struct fixture *f = *state;
    char fresh[PATH_MAX], held[PATH_MAX], temp[PATH_MAX], done[PATH_MAX], done_held[PATH_MAX];
    char active[PATH_MAX], junk[PATH_MAX], temp_name[64];
    plant(f, QUEUE_INCOMING, QUEUE_MODE_WRITING, 0, fresh);
    plant(f, QUEUE_HOLD, QUEUE_MODE_WRITING, 0, held);
    snprintf(temp_name, sizeof(temp_name), "tmp.%ld.0", (long)getpid());   /* a live pid */
    plant_named(QUEUE_INCOMING, temp_name, QUEUE_MODE_WRITING, 0, temp);
    plant(f, QUEUE_INCOMING, QUEUE_MODE_COMPLETE, 0, done);
    plant(f, QUEUE_HOLD, QUEUE_MODE_COMPLETE, 0, done_held);
    plant(f, QUEUE_ACTIVE, QUEUE_MODE_WRITING, 0, active);   /* not cleanup's queue */
    plant_named(QUEUE_INCOMING, "not-a-queue-id", QUEUE_MODE_WRITING, 0, junk);

    assert_int_equal(queue_purge_leftovers(0), 3);
    assert_false(exists(fresh));
    assert_false(exists(held));
    assert_false(exists(temp));
    assert_true(exists(done));
    assert_true(exists(done_held));
    assert_true(exists(active));
    assert_true(exists(junk));
    assert_int_equal(queue_purge_leftovers(0), 0);   /* nothing left to do */
}

static void test_postsuper_waits_until_abandoned(void **state)
{
    struct fixture *f = *state;
    char young[PATH_MAX], old[PATH_MAX], dead_temp[PATH_MAX], live_temp[PATH_MAX];
    char old_live_temp[PATH_MAX], name[64];
    plant(f, QUEUE_INCOMING, QUEUE_MODE_WRITING, 60, young);
    plant(f, QUEUE_INCOMING, QUEUE_MODE_WRITING, QUEUE_PURGE_ABANDONED_AGE + 60, old);
    plant_named(QUEUE_INCOMING, "tmp.999999999.0", QUEUE_MODE_WRITING, 0, dead_temp);
    snprintf(name, sizeof(name), "tmp.%ld.1", (long)getpid());
    plant_named(QUEUE_INCOMING, name, QUEUE_MODE_WRITING, 0, live_temp);
    snprintf(name, sizeof(name), "tmp.%ld.2", (long)getpid());   /* a reused pid */
    plant_named(QUEUE_INCOMING, name, QUEUE_MODE_WRITING, QUEUE_PURGE_ABANDONED_AGE + 60,
                old_live_temp);

    assert_int_equal(queue_purge_leftovers(QUEUE_PURGE_ABANDONED_AGE), 3);
    assert_true(exists(young));        /* cleanup may still be writing it */
    assert_false(exists(old));
    assert_false(exists(dead_temp));   /* its process is gone */
    assert_true(exists(live_temp));
    assert_false(exists(old_live_temp));
}

static void test_unfinished_predicate(void **state)
{
    (void)state;
    struct stat st = {.st_mode = S_IFREG | QUEUE_MODE_WRITING};
    assert_true(queue_file_unfinished(QUEUE_INCOMING, &st));
    assert_true(queue_file_unfinished(QUEUE_HOLD, &st));
    assert_false(queue_file_unfinished(QUEUE_DEFERRED, &st));
    assert_false(queue_file_unfinished(QUEUE_ACTIVE, &st));
    st.st_mode = S_IFREG | QUEUE_MODE_COMPLETE;
    assert_false(queue_file_unfinished(QUEUE_INCOMING, &st));
    assert_false(queue_file_unfinished(QUEUE_HOLD, &st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_removes_every_unfinished_file, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_postsuper_waits_until_abandoned, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test(test_unfinished_predicate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
