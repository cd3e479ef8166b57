/* unit_support.h - what several unit test files share: a fresh temporary
 * directory per test (for main.cf, tables, logs) with the log going into
 * it, removed afterwards. Header-only, since each test is built from its
 * own .c file. Include after cmocka.h. A test file with a fixture of its
 * own defines UNIT_OWN_FIXTURE first and uses unit_remove_tree only.
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

#ifndef UNIT_OWN_FIXTURE
struct fixture {
    char dir[64];
};

/* cmocka setup: mkdtemp /tmp/NAME.XXXXXX, log to DIR/log. */
static inline int unit_tmpdir_setup(void **state, const char *name)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char log[PATH_MAX];
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/%s.XXXXXX", name);
    assert_non_null(mkdtemp(f->dir));
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
