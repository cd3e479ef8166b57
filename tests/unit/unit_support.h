/* unit_support.h - what several unit test files share: a fresh temporary
 * directory per test (for main.cf, tables, logs) with the log going into
 * it, removed afterwards. Header-only, since each test is built from its
 * own .c file. Include after cmocka.h. A test file with a fixture of its
 * own (its first member char dir[UNIT_FIXTURE_DIR_SIZE]) defines
 * UNIT_OWN_FIXTURE first and sets it up with unit_queue_fixture_new.
 */
#ifndef POSTERN_UNIT_SUPPORT_H
#define POSTERN_UNIT_SUPPORT_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"

/* dir := a new directory /tmp/NAME.XXXXXX (mkdtemp); 0, or -1. */
static inline int unit_make_tmpdir(char *dir, size_t len, const char *name)
{
    snprintf(dir, len, "/tmp/%s.XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

/* Write DIR/main.cf (queue_directory = DIR/queue, then the extra lines)
 * and load it; 0, or -1. */
static inline int unit_load_queue_config(const char *dir, const char *extra)
{
    char main_cf[PATH_MAX], err[512];
    snprintf(main_cf, sizeof(main_cf), "%s/main.cf", dir);
    FILE *fp = fopen(main_cf, "w");
    if (!fp)
        return -1;
    fprintf(fp, "queue_directory = %s/queue\n%s", dir, extra);
    fclose(fp);
    return config_try_load(dir, NULL, 0, err, sizeof(err));
}

/* rm -rf dir (a mkdtemp directory of the test's); 0, or -1. */
static inline int unit_remove_tree(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* For the queue tests' own fixtures, whose first member is char dir[64]:
 * a zeroed fixture of size bytes, dir made (/tmp/NAME.XXXXXX), the log
 * initialised and a main.cf with queue_directory = DIR/queue loaded.
 * Caller frees it with unit_queue_fixture_free. NULL on failure. */
#define UNIT_FIXTURE_DIR_SIZE 64
static inline void *unit_queue_fixture_new(size_t size, const char *name)
{
    char *dir = calloc(1, size);
    if (!dir)
        return NULL;
    if (unit_make_tmpdir(dir, UNIT_FIXTURE_DIR_SIZE, name) < 0) {
        free(dir);
        return NULL;
    }
    log_init(name, 0);
    if (unit_load_queue_config(dir, "") < 0) {
        unit_remove_tree(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

/* Remove the fixture's directory and free it; 0, or -1. */
static inline int unit_queue_fixture_free(void *fixture)
{
    int rc = unit_remove_tree(fixture);
    free(fixture);
    return rc;
}

#ifndef UNIT_OWN_FIXTURE
struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];
};

/* cmocka setup: mkdtemp /tmp/NAME.XXXXXX, log to DIR/log. */
static inline int unit_tmpdir_setup(void **state, const char *name)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char log[PATH_MAX];
    assert_non_null(f);
    assert_int_equal(unit_make_tmpdir(f->dir, sizeof(f->dir), name), 0);
    snprintf(log, sizeof(log), "%s/log", f->dir);
    log_init(name, 0);
    log_set_file(log);
    *state = f;
    return 0;
}

static inline int unit_tmpdir_teardown(void **state)
{
    struct fixture *f = *state;
    log_set_file(NULL);
    assert_int_equal(unit_remove_tree(f->dir), 0);
    free(f);
    return 0;
}
#endif

#endif
