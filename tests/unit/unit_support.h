/* unit_support.h - what several unit test files share: a fresh temporary
 * directory per test (for main.cf, tables, logs) with the log going into
 * it, removed afterwards; queue files written by the real queue writer and
 * opened as a delivery agent opens them; whole files read back.
 * Header-only, since each test is built from its own .c file. Include
 * after cmocka.h. A test file with a fixture of its own (its first member
 * char dir[UNIT_FIXTURE_DIR_SIZE]) defines UNIT_OWN_FIXTURE first and sets
 * it up with unit_queue_fixture_new.
 */
#ifndef POSTERN_UNIT_SUPPORT_H
#define POSTERN_UNIT_SUPPORT_H

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "deliver_request.h"
#include "log.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

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

/* A complete message in incoming/ from the real queue writer: arrival,
 * sender, the recipients (the offsets of their R records go to offsets,
 * when not NULL) and the content, one C record per chunk. The queue id is
 * copied to id. Needs a queue made by queue_dirs_create. */
static inline void unit_write_message(time_t arrival, const char *sender,
                                      const char *const *rcpts, size_t nrcpt,
                                      const char *const *chunks, size_t nchunks, off_t *offsets,
                                      char id[QUEUE_ID_SIZE])
{
    struct timeval tv = {.tv_sec = arrival};
    struct queue_writer *w = queue_writer_create(QUEUE_INCOMING, &tv);
    long long size = 0;
    assert_non_null(w);
    struct stream *s = queue_writer_stream(w);
    assert_int_equal(rec_put_str(s, REC_SENDER, sender), 0);
    for (size_t i = 0; i < nrcpt; i++) {
        if (offsets != NULL)
            offsets[i] = stream_tell(s);
        assert_int_equal(rec_put_str(s, REC_RCPT, rcpts[i]), 0);
    }
    assert_int_equal(rec_put(s, REC_CONTENT_START, "", 0), 0);
    off_t content_offset = stream_tell(s);
    for (size_t i = 0; i < nchunks; i++) {
        assert_int_equal(rec_put_str(s, REC_CONTENT, chunks[i]), 0);
        size += (long long)strlen(chunks[i]);
    }
    snprintf(id, QUEUE_ID_SIZE, "%s", queue_writer_id(w));
    assert_int_equal(queue_writer_commit(w, size, content_offset, (int)nrcpt), 0);
}

/* The message id in incoming/ as a delivery agent sees it once the queue
 * file is open: m->queue is a stream the caller closes. */
static inline void unit_open_message(const char *id, const char *sender,
                                     struct deliver_message *m)
{
    char path[PATH_MAX];
    struct queue_envelope env;
    assert_int_equal(queue_path(path, sizeof(path), QUEUE_INCOMING, id), 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    memset(m, 0, sizeof(*m));
    m->queue_id = id;
    m->sender = sender;
    m->content_offset = env.content_offset;
    queue_envelope_free(&env);
    m->queue = stream_open(fd, 0);
    assert_non_null(m->queue);
}

/* A whole file, NUL-terminated (caller frees); NULL when it cannot be read.
 * *len (when not NULL) gets its length. */
static inline char *unit_read_file(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n != (ssize_t)st.st_size) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len != NULL)
        *len = (size_t)n;
    return buf;
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
