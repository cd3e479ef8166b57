/* test_queue_file.c - unit tests for lib/mail/queue_file.c: the queue
 * tree, the writer cleanup uses (create, records, commit with the Z record
 * rewritten and mode 0700, abort, commit into hold/), and the reader every
 * other daemon uses (the envelope with per-recipient O/P/N records,
 * recipients after the content, in-place updates of a recipient's type
 * byte and of the delay-warning field, the content iterator).
 *
 * Each test gets a fresh queue_directory in a mkdtemp directory (main.cf
 * written there and loaded with config_try_load). Incomplete and corrupt
 * files are written record by record next to the queue, as a crash or a
 * damaged disk would leave them, and must be refused, never half-read as
 * good.
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

#include "queue_file.h"
#include "queue_id.h"
#include "record.h"
#include "stream.h"

#define ENVELOPE_RECORD_MAX 65536   /* queue_file.c: longest envelope record */
#define ARRIVAL_SEC 1700000000
#define ARRIVAL_USEC 123456

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_queue_file");
    if (!f || queue_dirs_create() < 0)
        return -1;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    return unit_queue_fixture_free(*state);
}

/* What write_message wrote, for the checks. */
struct written {
    char id[QUEUE_ID_SIZE];
    off_t rcpt_offset[3];
    off_t content_offset;
    long long content_size;
};

static const char *const content_chunks[] = {"Subject: test\n\n", "line one\nline two\n"};

/* A complete message in incoming/ (or hold/): sender, attributes, two
 * recipients (the first with O, P and N records), content in two chunks,
 * and one recipient after the content as cleanup adds those it extracts
 * from headers. */
static void write_message(const char *queue, struct written *out)
{
    struct timeval tv = {.tv_sec = ARRIVAL_SEC, .tv_usec = ARRIVAL_USEC};
    struct queue_writer *w = queue_writer_create(QUEUE_INCOMING, &tv);
    assert_non_null(w);
    if (strcmp(queue, QUEUE_INCOMING) != 0)
        assert_int_equal(queue_writer_set_queue(w, queue), 0);
    struct stream *s = queue_writer_stream(w);

    assert_int_equal(rec_put_str(s, REC_SENDER, "alice@example.org"), 0);
    assert_int_equal(rec_put_str(s, REC_ATTR, "client_name=mx.example.org"), 0);
    assert_int_equal(rec_put_str(s, REC_ATTR, "no equals sign"), 0);
    assert_int_equal(rec_put_str(s, REC_ATTR, "expr=a=b"), 0);
    assert_int_equal(rec_put_str(s, REC_ORCPT, "Bob@Example.COM"), 0);
    assert_int_equal(rec_put_str(s, REC_DSN_ORCPT, "rfc822;bob@example.com"), 0);
    assert_int_equal(rec_put_str(s, REC_DSN_NOTIFY, "14"), 0);
    out->rcpt_offset[0] = stream_tell(s);
    assert_int_equal(rec_put_str(s, REC_RCPT, "bob@example.com"), 0);
    out->rcpt_offset[1] = stream_tell(s);
    assert_int_equal(rec_put_str(s, REC_RCPT, "carol@example.net"), 0);
    assert_int_equal(rec_put(s, REC_CONTENT_START, "", 0), 0);
    out->content_offset = stream_tell(s);
    out->content_size = 0;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(rec_put_str(s, REC_CONTENT, content_chunks[i]), 0);
        out->content_size += (long long)strlen(content_chunks[i]);
    }
    out->rcpt_offset[2] = stream_tell(s);
    assert_int_equal(rec_put_str(s, REC_RCPT, "dave@example.net"), 0);
    snprintf(out->id, sizeof(out->id), "%s", queue_writer_id(w));
    assert_int_equal(queue_writer_commit(w, out->content_size, out->content_offset, 3), 0);
}

static int open_message(const char *queue, const char *id)
{
    char path[PATH_MAX];
    assert_int_equal(queue_path(path, sizeof(path), queue, id), 0);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    return fd;
}

static off_t fd_size(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return st.st_size;
}

/* Entries of DIR/queue/QUEUE other than . and .. */
static int entries_in(const struct fixture *f, const char *queue)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/queue/%s", f->dir, queue);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A hand-made file DIR/NAME, written through a stream: for files no
 * writer would produce. The caller adds records, then read_raw. */
static struct stream *raw_file(const struct fixture *f, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    return s;
}

/* The usual head of a file: Z (four fields), T, S. */
static void raw_head(struct stream *s)
{
    assert_int_equal(rec_putf(s, REC_SIZE, "%15d %15d %15d %15d", 5, 0, 1, 0), 0);
    assert_int_equal(rec_putf(s, REC_TIME, "%d.%06d", ARRIVAL_SEC, 0), 0);
    assert_int_equal(rec_put_str(s, REC_SENDER, "alice@example.org"), 0);
}

/* Read the envelope of the file behind s (closing s); returns the result. */
static int read_raw(struct stream *s, struct queue_envelope *env, size_t max_rcpt)
{
    assert_int_equal(stream_flush(s), 0);
    int rc = queue_envelope_read(stream_fd(s), env, max_rcpt);
    assert_int_equal(stream_close(s), 0);
    return rc;
}

static void test_paths(void **state)
{
    struct fixture *f = *state;
    char buf[PATH_MAX], want[PATH_MAX];

    assert_int_equal(queue_path(buf, sizeof(buf), QUEUE_INCOMING, "4Xy7Zq"), 0);
    snprintf(want, sizeof(want), "%s/queue/incoming/4Xy7Zq", f->dir);
    assert_string_equal(buf, want);
    /* deferred/ is hashed on the id's last character. */
    assert_int_equal(queue_path(buf, sizeof(buf), QUEUE_DEFERRED, "4Xy7Zq"), 0);
    snprintf(want, sizeof(want), "%s/queue/deferred/q/4Xy7Zq", f->dir);
    assert_string_equal(buf, want);
    assert_int_equal(queue_dir_path(buf, sizeof(buf), "private/cleanup"), 0);
    snprintf(want, sizeof(want), "%s/queue/private/cleanup", f->dir);
    assert_string_equal(buf, want);

    /* Exactly enough room for the path and its NUL, then one byte less. */
    size_t need = strlen(want) + 1;
    assert_int_equal(queue_dir_path(buf, need, "private/cleanup"), 0);
    assert_int_equal(queue_dir_path(buf, need - 1, "private/cleanup"), -1);
    assert_int_equal(queue_path(buf, 10, QUEUE_INCOMING, "4Xy7Zq"), -1);
}

static void test_dirs_and_modes(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *name;
        mode_t mode;
    } want[] = {
        {"", 0755},         {"incoming", 0700}, {"active", 0700},      {"deferred", 0700},
        {"hold", 0700},     {"corrupt", 0700},  {"private", 0700},     {"public", 0710},
        {"pid", 0755},      {"maildrop", 01730},
    };
    char path[PATH_MAX];
    struct stat st;

    /* Already made by the fixture: a second run changes nothing. */
    assert_int_equal(queue_dirs_create(), 0);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(path, sizeof(path), "%s/queue/%s", f->dir, want[i].name);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, want[i].mode);
    }
}

static void test_write_and_read_envelope(void **state)
{
    struct fixture *f = *state;
    struct written m;
    struct queue_envelope env;
    struct stat st;
    struct timeval tv;
    write_message(QUEUE_INCOMING, &m);

    assert_true(queue_id_valid(m.id));
    assert_int_equal(queue_id_time(m.id, &tv), 0);
    assert_int_equal(tv.tv_sec, ARRIVAL_SEC);
    assert_int_equal(tv.tv_usec, ARRIVAL_USEC);
    int fd = open_message(QUEUE_INCOMING, m.id);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, QUEUE_MODE_COMPLETE);
    assert_int_equal(entries_in(f, QUEUE_INCOMING), 1);   /* no temporary name left */

    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    assert_true(env.complete);
    assert_int_equal(env.arrival.tv_sec, ARRIVAL_SEC);
    assert_int_equal(env.arrival.tv_usec, ARRIVAL_USEC);
    assert_string_equal(env.sender, "alice@example.org");
    /* The Z record as commit rewrote it. */
    assert_int_equal(env.size_offset, 0);
    assert_true(env.warn_capable);
    assert_int_equal(env.content_size, m.content_size);
    assert_int_equal(env.content_offset, m.content_offset);
    assert_int_equal(env.warn_time, 0);
    /* Attributes: the malformed one skipped, the first '=' splits. */
    assert_int_equal(env.nattr, 2);
    assert_string_equal(queue_envelope_attr(&env, "client_name"), "mx.example.org");
    assert_string_equal(queue_envelope_attr(&env, "expr"), "a=b");
    assert_null(queue_envelope_attr(&env, "no equals sign"));

    assert_int_equal(env.nrcpt, 3);
    assert_string_equal(env.rcpt[0].address, "bob@example.com");
    assert_string_equal(env.rcpt[0].orig, "Bob@Example.COM");
    assert_string_equal(env.rcpt[0].dsn_orcpt, "rfc822;bob@example.com");
    assert_int_equal(env.rcpt[0].dsn_notify,
                     DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
    /* O, P and N describe only the R that follows them. */
    assert_string_equal(env.rcpt[1].address, "carol@example.net");
    assert_null(env.rcpt[1].orig);
    assert_null(env.rcpt[1].dsn_orcpt);
    assert_int_equal(env.rcpt[1].dsn_notify, 0);
    /* After the content, without reading it. */
    assert_string_equal(env.rcpt[2].address, "dave@example.net");
    for (size_t i = 0; i < 3; i++) {
        char type;
        assert_int_equal(env.rcpt[i].offset, m.rcpt_offset[i]);
        assert_false(env.rcpt[i].done);
        assert_int_equal(pread(fd, &type, 1, env.rcpt[i].offset), 1);
        assert_int_equal(type, REC_RCPT);
    }
    queue_envelope_free(&env);
    assert_null(env.sender);
    assert_int_equal(env.nrcpt, 0);
    close(fd);
}

static void test_abort_and_writing_mode(void **state)
{
    struct fixture *f = *state;
    struct timeval tv = {.tv_sec = ARRIVAL_SEC};
    struct stat st;
    struct queue_writer *w = queue_writer_create(QUEUE_INCOMING, &tv);
    assert_non_null(w);
    assert_true(queue_id_valid(queue_writer_id(w)));

    struct stream *s = queue_writer_stream(w);
    assert_int_equal(fstat(stream_fd(s), &st), 0);
    assert_int_equal(st.st_mode & 07777, QUEUE_MODE_WRITING);
    assert_int_equal(rec_put_str(s, REC_SENDER, "alice@example.org"), 0);
    assert_int_equal(stream_flush(s), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", queue_writer_path(w));
    queue_writer_abort(w);

    assert_int_equal(entries_in(f, QUEUE_INCOMING), 0);
    assert_int_equal(access(path, F_OK), -1);
}

static void test_commit_into_hold(void **state)
{
    struct fixture *f = *state;
    struct written m;
    struct queue_envelope env;
    write_message(QUEUE_HOLD, &m);

    assert_int_equal(entries_in(f, QUEUE_INCOMING), 0);
    assert_int_equal(entries_in(f, QUEUE_HOLD), 1);
    int fd = open_message(QUEUE_HOLD, m.id);
    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    assert_int_equal(env.nrcpt, 3);
    queue_envelope_free(&env);
    close(fd);
}

static void test_move(void **state)
{
    struct written m;
    char path[PATH_MAX];
    write_message(QUEUE_INCOMING, &m);

    /* deferred/X/ does not exist yet: the move makes it. */
    assert_int_equal(queue_file_move(m.id, QUEUE_INCOMING, QUEUE_DEFERRED), 0);
    assert_int_equal(queue_path(path, sizeof(path), QUEUE_DEFERRED, m.id), 0);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(queue_file_move(m.id, QUEUE_DEFERRED, QUEUE_ACTIVE), 0);
    errno = 0;
    assert_int_equal(queue_file_move(m.id, QUEUE_DEFERRED, QUEUE_ACTIVE), -1);
    assert_int_equal(errno, ENOENT);
    close(open_message(QUEUE_ACTIVE, m.id));
}

/* A power cut between the link and the unlink of a move leaves both
 * names: the next move of the old name drops it and says the file is gone
 * from there (ENOENT), so that qmgr, which took it in from the new place,
 * does not take it twice. A different file under the new name is never
 * replaced. */
static void test_move_finishes_an_interrupted_one(void **state)
{
    struct written m, other;
    char from[PATH_MAX], to[PATH_MAX];
    write_message(QUEUE_INCOMING, &m);
    assert_int_equal(queue_path(from, sizeof(from), QUEUE_INCOMING, m.id), 0);
    assert_int_equal(queue_path(to, sizeof(to), QUEUE_ACTIVE, m.id), 0);
    assert_int_equal(link(from, to), 0);

    errno = 0;
    assert_int_equal(queue_file_move(m.id, QUEUE_INCOMING, QUEUE_ACTIVE), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(access(from, F_OK), -1);
    assert_int_equal(access(to, F_OK), 0);

    write_message(QUEUE_INCOMING, &other);
    char other_path[PATH_MAX], clash[PATH_MAX];
    assert_int_equal(queue_path(other_path, sizeof(other_path), QUEUE_INCOMING, other.id), 0);
    assert_int_equal(queue_path(clash, sizeof(clash), QUEUE_INCOMING, m.id), 0);
    assert_int_equal(rename(other_path, clash), 0);
    errno = 0;
    assert_int_equal(queue_file_move(m.id, QUEUE_INCOMING, QUEUE_ACTIVE), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(access(clash, F_OK), 0);
}

/* A batch: each file moved as by queue_file_move (an interrupted move
 * finished, a clash refused, a missing file ENOENT), the others moved;
 * into deferred/ the hash directories are made as needed. */
static void test_move_batch(void **state)
{
    struct written a, b, c, clash;
    char from[PATH_MAX], to[PATH_MAX];
    write_message(QUEUE_INCOMING, &a);
    write_message(QUEUE_INCOMING, &b);
    write_message(QUEUE_INCOMING, &c);
    write_message(QUEUE_ACTIVE, &clash);
    /* b: interrupted before, already in active/ under both names. */
    assert_int_equal(queue_path(from, sizeof(from), QUEUE_INCOMING, b.id), 0);
    assert_int_equal(queue_path(to, sizeof(to), QUEUE_ACTIVE, b.id), 0);
    assert_int_equal(link(from, to), 0);
    /* c: another file holds its name in active/. */
    assert_int_equal(queue_path(from, sizeof(from), QUEUE_ACTIVE, clash.id), 0);
    assert_int_equal(queue_path(to, sizeof(to), QUEUE_ACTIVE, c.id), 0);
    assert_int_equal(rename(from, to), 0);

    const char *ids[] = {a.id, b.id, c.id, "NOSUCHFILE"};
    int err[4];
    assert_int_equal(queue_files_move(ids, 4, QUEUE_INCOMING, QUEUE_ACTIVE, err), 1);
    assert_int_equal(err[0], 0);
    assert_int_equal(err[1], ENOENT);
    assert_int_equal(err[2], EEXIST);
    assert_int_equal(err[3], ENOENT);
    close(open_message(QUEUE_ACTIVE, a.id));
    close(open_message(QUEUE_ACTIVE, b.id));
    close(open_message(QUEUE_INCOMING, c.id));
    assert_int_equal(queue_path(from, sizeof(from), QUEUE_INCOMING, a.id), 0);
    assert_int_equal(access(from, F_OK), -1);
    assert_int_equal(queue_path(from, sizeof(from), QUEUE_INCOMING, b.id), 0);
    assert_int_equal(access(from, F_OK), -1);

    const char *both[] = {a.id, b.id};
    assert_int_equal(queue_files_move(both, 2, QUEUE_ACTIVE, QUEUE_DEFERRED, err), 2);
    close(open_message(QUEUE_DEFERRED, a.id));
    close(open_message(QUEUE_DEFERRED, b.id));
    assert_int_equal(entries_in(*state, QUEUE_ACTIVE), 1);   /* c's clash */
}

static void test_mark_done_in_place(void **state)
{
    struct written m;
    struct queue_envelope before, after;
    write_message(QUEUE_INCOMING, &m);
    int fd = open_message(QUEUE_INCOMING, m.id);
    off_t size = fd_size(fd);

    assert_int_equal(queue_envelope_read(fd, &before, 100), 0);
    assert_int_equal(queue_file_mark_done(fd, before.rcpt[1].offset), 0);
    assert_int_equal(fd_size(fd), size);
    char type;
    assert_int_equal(pread(fd, &type, 1, before.rcpt[1].offset), 1);
    assert_int_equal(type, REC_DONE);

    assert_int_equal(queue_envelope_read(fd, &after, 100), 0);
    assert_int_equal(after.nrcpt, 3);
    assert_false(after.rcpt[0].done);
    assert_true(after.rcpt[1].done);
    assert_false(after.rcpt[2].done);
    /* A done recipient keeps its address and offset; nothing else moved. */
    assert_string_equal(after.rcpt[1].address, "carol@example.net");
    assert_int_equal(after.rcpt[1].offset, before.rcpt[1].offset);
    assert_int_equal(after.content_offset, before.content_offset);
    assert_string_equal(after.rcpt[0].orig, "Bob@Example.COM");
    queue_envelope_free(&after);

    /* Every recipient done: still a complete, readable file. */
    assert_int_equal(queue_file_mark_done(fd, before.rcpt[0].offset), 0);
    assert_int_equal(queue_file_mark_done(fd, before.rcpt[2].offset), 0);
    assert_int_equal(queue_envelope_read(fd, &after, 100), 0);
    for (size_t i = 0; i < 3; i++)
        assert_true(after.rcpt[i].done);
    queue_envelope_free(&after);
    queue_envelope_free(&before);
    close(fd);
}

static void test_mark_warned(void **state)
{
    struct fixture *f = *state;
    struct written m;
    struct queue_envelope env;
    write_message(QUEUE_INCOMING, &m);
    int fd = open_message(QUEUE_INCOMING, m.id);
    off_t size = fd_size(fd);

    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    assert_int_equal(queue_file_mark_warned(fd, &env, 1700001234), 0);
    queue_envelope_free(&env);
    assert_int_equal(fd_size(fd), size);
    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    assert_int_equal(env.warn_time, 1700001234);
    assert_int_equal(env.content_size, m.content_size);
    assert_int_equal(env.content_offset, m.content_offset);
    assert_int_equal(env.nrcpt, 3);
    queue_envelope_free(&env);
    close(fd);

    /* A Z record of the older three-field form has no room for it. */
    struct stream *s = raw_file(f, "old");
    assert_int_equal(rec_putf(s, REC_SIZE, "%15d %15d %15d", 5, 0, 1), 0);
    assert_int_equal(rec_put_str(s, REC_RCPT, "bob@example.com"), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    assert_int_equal(stream_flush(s), 0);
    fd = stream_fd(s);
    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    assert_false(env.warn_capable);
    errno = 0;
    assert_int_equal(queue_file_mark_warned(fd, &env, 1700001234), -1);
    assert_int_equal(errno, EINVAL);
    queue_envelope_free(&env);
    stream_close(s);
}

static void test_incomplete_refused(void **state)
{
    struct fixture *f = *state;
    struct queue_envelope env;

    /* Everything but the E record, as a writer that died leaves it. */
    struct stream *s = raw_file(f, "noend");
    raw_head(s);
    assert_int_equal(rec_put_str(s, REC_RCPT, "bob@example.com"), 0);
    assert_int_equal(rec_put(s, REC_CONTENT_START, "", 0), 0);
    assert_int_equal(rec_put_str(s, REC_CONTENT, "hello"), 0);
    assert_int_equal(read_raw(s, &env, 100), -1);
    assert_false(env.complete);
    /* Filled as far as it went, and freed by the caller. */
    assert_string_equal(env.sender, "alice@example.org");
    assert_int_equal(env.nrcpt, 1);
    queue_envelope_free(&env);

    /* A committed file that lost its last bytes. */
    struct written m;
    write_message(QUEUE_INCOMING, &m);
    int fd = open_message(QUEUE_INCOMING, m.id);
    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);
    queue_envelope_free(&env);
    assert_int_equal(ftruncate(fd, fd_size(fd) - 1), 0);
    assert_int_equal(queue_envelope_read(fd, &env, 100), -1);
    assert_false(env.complete);
    queue_envelope_free(&env);
    close(fd);
}

/* A file of the usual head, then the bytes given, then an E record. */
static int read_with_middle(const struct fixture *f, const void *bytes, size_t len)
{
    struct queue_envelope env;
    struct stream *s = raw_file(f, "middle");
    raw_head(s);
    assert_int_equal(stream_write(s, bytes, len), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    int rc = read_raw(s, &env, 100);
    queue_envelope_free(&env);
    return rc;
}

static void test_corrupt_input(void **state)
{
    struct fixture *f = *state;
    struct queue_envelope env;

    /* Unknown record types are skipped, so formats can grow. */
    const unsigned char unknown[] = {'X', 3, 'a', 'b', 'c'};
    assert_int_equal(read_with_middle(f, unknown, sizeof(unknown)), 0);
    /* A header whose length never ends. */
    const unsigned char endless[] = {REC_RCPT, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(read_with_middle(f, endless, sizeof(endless)), -1);
    /* The same in a content record, which is skipped, not read. */
    unsigned char endless_c[sizeof(endless)];
    memcpy(endless_c, endless, sizeof(endless));
    endless_c[0] = REC_CONTENT;
    assert_int_equal(read_with_middle(f, endless_c, sizeof(endless_c)), -1);
    /* A content record longer than the rest of the file. */
    const unsigned char overrun[] = {REC_CONTENT, 100, 'x'};
    assert_int_equal(read_with_middle(f, overrun, sizeof(overrun)), -1);

    /* Z and T must parse. */
    struct stream *s = raw_file(f, "badz");
    assert_int_equal(rec_put_str(s, REC_SIZE, "12 x"), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    assert_int_equal(read_raw(s, &env, 100), -1);
    queue_envelope_free(&env);
    s = raw_file(f, "badt");
    assert_int_equal(rec_put_str(s, REC_TIME, "yesterday"), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    assert_int_equal(read_raw(s, &env, 100), -1);
    queue_envelope_free(&env);
    /* An empty file is no message. */
    s = raw_file(f, "empty");
    assert_int_equal(read_raw(s, &env, 100), -1);
    queue_envelope_free(&env);
}

/* An envelope record may hold ENVELOPE_RECORD_MAX bytes, not one more;
 * content records are skipped whatever their size. */
static void test_record_size_limit(void **state)
{
    struct fixture *f = *state;
    struct queue_envelope env;
    char *big = malloc(ENVELOPE_RECORD_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', ENVELOPE_RECORD_MAX + 1);

    struct stream *s = raw_file(f, "limit");
    raw_head(s);
    assert_int_equal(rec_put(s, REC_RCPT, big, ENVELOPE_RECORD_MAX), 0);
    assert_int_equal(rec_put(s, REC_CONTENT_START, "", 0), 0);
    assert_int_equal(rec_put(s, REC_CONTENT, big, ENVELOPE_RECORD_MAX + 1), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    assert_int_equal(read_raw(s, &env, 100), 0);
    assert_int_equal(env.nrcpt, 1);
    assert_int_equal(strlen(env.rcpt[0].address), ENVELOPE_RECORD_MAX);
    queue_envelope_free(&env);

    s = raw_file(f, "over");
    raw_head(s);
    assert_int_equal(rec_put(s, REC_RCPT, big, ENVELOPE_RECORD_MAX + 1), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    assert_int_equal(read_raw(s, &env, 100), -1);
    assert_int_equal(env.nrcpt, 0);
    queue_envelope_free(&env);
    free(big);
}

/* The content starts after the M record, whatever the Z record says
 * (here 0, as before a commit rewrote it); N keeps only the DSN bits. */
static void test_content_offset_from_m(void **state)
{
    struct fixture *f = *state;
    struct queue_envelope env;
    struct stream *s = raw_file(f, "zeroz");
    raw_head(s);
    assert_int_equal(rec_put_str(s, REC_DSN_NOTIFY, "255"), 0);
    assert_int_equal(rec_put_str(s, REC_RCPT, "bob@example.com"), 0);
    assert_int_equal(rec_put(s, REC_CONTENT_START, "", 0), 0);
    off_t content = stream_tell(s);
    assert_int_equal(rec_put_str(s, REC_CONTENT, "hello\n"), 0);
    assert_int_equal(rec_put(s, REC_END, "", 0), 0);
    assert_int_equal(read_raw(s, &env, 100), 0);
    assert_int_equal(env.content_offset, content);
    assert_int_equal(env.rcpt[0].dsn_notify, 15);
    queue_envelope_free(&env);
}

static void test_max_rcpt(void **state)
{
    struct written m;
    struct queue_envelope env;
    write_message(QUEUE_INCOMING, &m);
    int fd = open_message(QUEUE_INCOMING, m.id);

    assert_int_equal(queue_envelope_read(fd, &env, 3), 0);
    assert_int_equal(env.nrcpt, 3);
    queue_envelope_free(&env);
    assert_int_equal(queue_envelope_read(fd, &env, 2), -1);
    assert_int_equal(env.nrcpt, 2);
    queue_envelope_free(&env);
    close(fd);
}

static void test_content_iteration(void **state)
{
    struct written m;
    struct queue_envelope env;
    struct rec_buf chunk = {0};
    write_message(QUEUE_INCOMING, &m);
    int fd = open_message(QUEUE_INCOMING, m.id);
    assert_int_equal(queue_envelope_read(fd, &env, 100), 0);

    struct stream *s = stream_open(fd, 0);
    assert_int_equal(queue_content_begin(s, env.content_offset), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(queue_content_next(s, &chunk), 1);
        assert_string_equal(chunk.data, content_chunks[i]);
    }
    /* The recipient after the content ends it. */
    assert_int_equal(queue_content_next(s, &chunk), 0);
    queue_envelope_free(&env);
    rec_buf_free(&chunk);
    stream_close(s);
}

static void test_content_chunk_limit(void **state)
{
    struct fixture *f = *state;
    struct rec_buf chunk = {0};
    char *big = calloc(1, REC_CHUNK_SIZE + 1);
    assert_non_null(big);

    struct stream *s = raw_file(f, "chunks");
    assert_int_equal(rec_put(s, REC_CONTENT, big, REC_CHUNK_SIZE), 0);
    assert_int_equal(rec_put(s, REC_CONTENT, big, REC_CHUNK_SIZE + 1), 0);
    assert_int_equal(queue_content_begin(s, 0), 0);
    assert_int_equal(queue_content_next(s, &chunk), 1);
    assert_int_equal(chunk.len, REC_CHUNK_SIZE);
    assert_int_equal(queue_content_next(s, &chunk), -1);
    /* A file cut off inside the content is an error, not its end. */
    assert_int_equal(queue_content_begin(s, 0), 0);
    assert_int_equal(ftruncate(stream_fd(s), 100), 0);
    assert_int_equal(queue_content_next(s, &chunk), -1);
    rec_buf_free(&chunk);
    free(big);
    stream_close(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_paths),
        T(test_dirs_and_modes),
        T(test_write_and_read_envelope),
        T(test_abort_and_writing_mode),
        T(test_commit_into_hold),
        T(test_move),
        T(test_move_finishes_an_interrupted_one),
        T(test_move_batch),
        T(test_mark_done_in_place),
        T(test_mark_warned),
        T(test_incomplete_refused),
        T(test_corrupt_input),
        T(test_record_size_limit),
        T(test_content_offset_from_m),
        T(test_max_rcpt),
        T(test_content_iteration),
        T(test_content_chunk_limit),
    };
#undef T
    return cmocka_run_group_tests_name("queue_file", tests, NULL, NULL);
}
