/* unit_support.h - what several unit test files share: a fresh temporary
 * directory per test (for main.cf, tables, logs) with the log going into
 * it, removed afterwards. Header-only, since each test is built from its
 * own .c file. Include after cmocka.h.
 */
#ifndef POSTERN_UNIT_SUPPORT_H
#define POSTERN_UNIT_SUPPORT_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

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
    char cmd[PATH_MAX + 16];
    log_set_file(NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

#endif
