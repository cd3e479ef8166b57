/* test_ipc.c - unit tests for lib/mail/ipc.c: attribute lists over record
 * streams (order, repeated names, values with '=', the IPC_VALUE_MAX and
 * IPC_ATTR_MAX limits at their edges, malformed and truncated lists, a
 * read timeout), the protocol greeting (right, wrong and missing protocol,
 * unknown attributes skipped, what ipc_expect_greeting logs), and services
 * reached by name: sockets and fifos under queue_directory in a mkdtemp
 * directory whose main.cf is loaded with config_try_load.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_support.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

/* A fresh directory with the log in DIR/log and queue_directory DIR/queue
 * created as daemons create it. */
static int setup(void **state)
{
    unit_tmpdir_setup(state, "test_ipc");
    struct fixture *f = *state;
    if (unit_load_queue_config(f->dir, "") < 0 || queue_dirs_create() < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

/* Two connected streams: *a writes what *b reads and the other way. */
static void stream_pair(struct stream **a, struct stream **b, int timeout)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    *a = stream_open(sv[0], timeout);
    *b = stream_open(sv[1], timeout);
    assert_non_null(*a);
    assert_non_null(*b);
}

/* A stream on an unlinked temporary file, for lists too large for a
 * socket buffer: written, then read back from offset 0. */
static struct stream *temp_stream(void)
{
    char path[] = "/tmp/test_ipc.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    return s;
}

static void rewind_stream(struct stream *s)
{
    assert_int_equal(stream_flush(s), 0);
    assert_int_equal(stream_seek(s, 0), 0);
}

/* The log written so far (caller frees). */
static char *log_text(const struct fixture *f)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/log", f->dir);
    FILE *fp = fopen(path, "r");
    char *text = calloc(1, 65536);
    assert_non_null(text);
    if (fp) {
        size_t n = fread(text, 1, 65535, fp);
        text[n] = 0;
        fclose(fp);
    }
    return text;
}

static void assert_list_empty(const struct attr_list *list)
{
    assert_int_equal(list->count, 0);
    assert_null(list->names);
    assert_null(list->values);
}

static void test_round_trip(void **state)
{
    struct stream *c, *s;
    struct attr_list list;
    stream_pair(&c, &s, 5);

    assert_int_equal(attr_send(c, "queue_id", "4Xy7", "rcpt", "a@example.com", "rcpt",
                               "b@example.net", "empty", (const char *)NULL, "expr", "a=b=c",
                               (const char *)NULL), 0);
    assert_int_equal(attr_list_read(s, &list), 0);
    assert_int_equal(list.count, 5);
    /* In the order sent, repeated names kept. */
    assert_string_equal(list.names[0], "queue_id");
    assert_string_equal(list.names[1], "rcpt");
    assert_string_equal(list.values[1], "a@example.com");
    assert_string_equal(list.names[2], "rcpt");
    assert_string_equal(list.values[2], "b@example.net");
    /* attr_get gives the first of a repeated name. */
    assert_string_equal(attr_get(&list, "rcpt"), "a@example.com");
    assert_string_equal(attr_get(&list, "queue_id"), "4Xy7");
    /* A NULL value is sent as "", and only the first '=' splits. */
    assert_string_equal(attr_get(&list, "empty"), "");
    assert_string_equal(attr_get(&list, "expr"), "a=b=c");
    assert_null(attr_get(&list, "missing"));
    assert_null(attr_get(&list, "QUEUE_ID"));
    attr_list_free(&list);
    assert_list_empty(&list);

    /* attr_put/attr_end build the same thing by hand; an empty list too. */
    assert_int_equal(attr_put(c, "status", "0"), 0);
    assert_int_equal(attr_end(c), 0);
    assert_int_equal(attr_end(c), 0);
    assert_int_equal(attr_list_read(s, &list), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(attr_get(&list, "status"), "0");
    attr_list_free(&list);
    assert_int_equal(attr_list_read(s, &list), 0);
    assert_int_equal(list.count, 0);
    attr_list_free(&list);

    stream_close(c);
    stream_close(s);
}

static void test_value_limit(void **state)
{
    struct stream *s = temp_stream();
    struct attr_list list;
    /* "v=" plus the value: exactly IPC_VALUE_MAX bytes of payload. */
    size_t vlen = IPC_VALUE_MAX - 2;
    char *value = malloc(vlen + 2);
    assert_non_null(value);
    memset(value, 'x', vlen + 1);
    value[vlen] = 0;

    assert_int_equal(attr_put(s, "v", value), 0);
    off_t before = stream_tell(s);
    value[vlen] = 'x';   /* one byte more */
    value[vlen + 1] = 0;
    assert_int_equal(attr_put(s, "v", value), -1);
    assert_int_equal(stream_tell(s), before);   /* nothing of it written */
    assert_int_equal(attr_end(s), 0);
    rewind_stream(s);
    assert_int_equal(attr_list_read(s, &list), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(strlen(attr_get(&list, "v")), vlen);
    attr_list_free(&list);

    /* attr_send gives up at the oversized pair and writes no REC_END: a
     * list that lost an attribute must not look complete to the peer. */
    struct stream *t = temp_stream();
    assert_int_equal(attr_send(t, "a", "1", "v", value, "b", "2", (const char *)NULL), -1);
    rewind_stream(t);
    struct rec_buf b = {0};
    assert_int_equal(rec_get(t, &b, 1024, NULL), REC_ATTR);
    assert_string_equal(b.data, "a=1");
    assert_int_equal(rec_get(t, &b, 1024, NULL), REC_EOF);
    rec_buf_free(&b);
    stream_close(t);

    /* A reader refuses a record one byte over the limit, from any writer. */
    assert_int_equal(stream_seek(s, 0), 0);
    assert_int_equal(rec_put(s, REC_ATTR, "", 0), 0);   /* no '=': skipped */
    char *record = malloc(IPC_VALUE_MAX + 1);
    assert_non_null(record);
    memcpy(record, "v=", 2);
    memset(record + 2, 'y', IPC_VALUE_MAX - 1);
    assert_int_equal(rec_put(s, REC_ATTR, record, IPC_VALUE_MAX + 1), 0);
    assert_int_equal(attr_end(s), 0);
    rewind_stream(s);
    assert_int_equal(attr_list_read(s, &list), -1);
    assert_list_empty(&list);

    free(record);
    free(value);
    stream_close(s);
}

/* n attributes "aN=N" and an end record, read back. */
static int read_list_of(size_t n, struct attr_list *list)
{
    struct stream *s = temp_stream();
    char name[32], value[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "a%zu", i);
        snprintf(value, sizeof(value), "%zu", i);
        assert_int_equal(attr_put(s, name, value), 0);
    }
    assert_int_equal(attr_end(s), 0);
    rewind_stream(s);
    int rc = attr_list_read(s, list);
    stream_close(s);
    return rc;
}

static void test_count_limit(void **state)
{
    struct attr_list list;
    assert_int_equal(read_list_of(IPC_ATTR_MAX, &list), 0);
    assert_int_equal(list.count, IPC_ATTR_MAX);
    assert_string_equal(list.names[IPC_ATTR_MAX - 1], "a4095");
    assert_string_equal(attr_get(&list, "a4095"), "4095");
    attr_list_free(&list);

    assert_int_equal(read_list_of(IPC_ATTR_MAX + 1, &list), -1);
    assert_list_empty(&list);
}

static void test_malformed_lists(void **state)
{
    struct stream *s = temp_stream();
    struct attr_list list;

    /* An attribute record without '=' is skipped, the rest is kept. */
    assert_int_equal(rec_put_str(s, REC_ATTR, "no equals sign"), 0);
    assert_int_equal(attr_put(s, "kept", "yes"), 0);
    assert_int_equal(attr_end(s), 0);
    /* Any other record type inside a list is an error. */
    assert_int_equal(attr_put(s, "before", "content"), 0);
    assert_int_equal(rec_put_str(s, REC_CONTENT, "text"), 0);
    assert_int_equal(attr_end(s), 0);
    /* Attributes and then the end of the input: no REC_END. */
    assert_int_equal(attr_put(s, "cut", "off"), 0);
    rewind_stream(s);

    assert_int_equal(attr_list_read(s, &list), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.names[0], "kept");
    attr_list_free(&list);
    assert_int_equal(attr_list_read(s, &list), -1);
    assert_list_empty(&list);
    /* The reader stopped at the content record; the next list begins
     * after the end record that followed it. */
    assert_int_equal(attr_list_read(s, &list), 0);
    assert_int_equal(list.count, 0);
    assert_int_equal(attr_list_read(s, &list), -1);
    assert_list_empty(&list);
    stream_close(s);

    /* A record cut off in the middle of its payload. */
    s = temp_stream();
    const unsigned char cut[] = {REC_ATTR, 10, 'a', '=', 'b'};
    assert_int_equal(stream_write(s, cut, sizeof(cut)), 0);
    rewind_stream(s);
    assert_int_equal(attr_list_read(s, &list), -1);
    assert_list_empty(&list);
    stream_close(s);
}

static void test_read_timeout(void **state)
{
    struct stream *c, *s;
    struct attr_list list;
    stream_pair(&c, &s, 1);
    /* Half a list, then silence with the connection open. */
    assert_int_equal(attr_put(c, "queue_id", "X"), 0);
    assert_int_equal(stream_flush(c), 0);
    assert_int_equal(attr_list_read(s, &list), -1);
    assert_true(stream_timed_out(s));
    assert_list_empty(&list);
    stream_close(c);
    stream_close(s);
}

static void test_greeting(void **state)
{
    struct stream *c, *s;
    stream_pair(&c, &s, 5);

    assert_int_equal(ipc_greet(s, "cleanup_protocol"), 0);
    assert_int_equal(ipc_check_greeting(c, "cleanup_protocol"), 0);
    /* Another protocol, and case counts. */
    assert_int_equal(ipc_greet(s, "showq_protocol"), 0);
    assert_int_equal(ipc_check_greeting(c, "cleanup_protocol"), -2);
    assert_int_equal(ipc_greet(s, "Cleanup_Protocol"), 0);
    assert_int_equal(ipc_check_greeting(c, "cleanup_protocol"), -2);
    /* A list without a protocol attribute is the wrong protocol too. */
    assert_int_equal(attr_send(s, "status", "0", (const char *)NULL), 0);
    assert_int_equal(ipc_check_greeting(c, "cleanup_protocol"), -2);
    /* Attributes the reader does not know are skipped, before or after. */
    assert_int_equal(attr_send(s, "version", "2", "protocol", "cleanup_protocol", "future",
                               "x", (const char *)NULL), 0);
    assert_int_equal(ipc_check_greeting(c, "cleanup_protocol"), 0);
    /* No greeting at all: the server went away. */
    stream_close(s);
    assert_int_equal(ipc_check_greeting(c, "cleanup_protocol"), -1);
    stream_close(c);
}

static void test_expect_greeting_logs(void **state)
{
    struct fixture *f = *state;
    struct stream *c, *s;
    stream_pair(&c, &s, 1);

    assert_int_equal(ipc_greet(s, "deliver_protocol"), 0);
    assert_int_equal(ipc_expect_greeting(c, "deliver_protocol"), 0);
    char *text = log_text(f);
    assert_string_equal(text, "");   /* success is silent */
    free(text);

    assert_int_equal(ipc_greet(s, "bounce_protocol"), 0);
    assert_int_equal(ipc_expect_greeting(c, "deliver_protocol"), -1);
    text = log_text(f);
    assert_non_null(strstr(text, "unexpected server protocol: wanted deliver_protocol"));
    free(text);

    /* Silence: a timeout, said so. */
    assert_int_equal(ipc_expect_greeting(c, "deliver_protocol"), -1);
    text = log_text(f);
    assert_non_null(strstr(text, "no deliver_protocol greeting from server: timeout"));
    free(text);
    stream_close(c);
    stream_close(s);

    /* The server closes without a word. */
    stream_pair(&c, &s, 1);
    stream_close(s);
    assert_int_equal(ipc_expect_greeting(c, "deliver_protocol"), -1);
    text = log_text(f);
    assert_non_null(strstr(text, "no deliver_protocol greeting from server: "
                                 "connection closed or malformed"));
    free(text);
    stream_close(c);
}

/* A listening socket at queue_directory/CLASS/NAME; its descriptor. */
static int listen_at(const struct fixture *f, const char *klass, const char *name,
                     int backlog)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/queue/%s/%s", f->dir, klass, name);
    assert_true(n > 0 && (size_t)n < sizeof(sun.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    if (backlog > 0)
        assert_int_equal(listen(fd, backlog), 0);
    return fd;
}

static void test_connect_by_name(void **state)
{
    struct fixture *f = *state;
    int lfd = listen_at(f, IPC_PRIVATE, "cleanup", 4);

    int cfd = ipc_connect(IPC_PRIVATE, "cleanup");
    assert_true(cfd >= 0);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    struct stream *c = stream_open(cfd, 5), *s = stream_open(sfd, 5);
    struct attr_list list;

    assert_int_equal(ipc_greet(s, "cleanup_protocol"), 0);
    assert_int_equal(ipc_expect_greeting(c, "cleanup_protocol"), 0);
    assert_int_equal(attr_send(c, "flags", "0", (const char *)NULL), 0);
    assert_int_equal(attr_list_read(s, &list), 0);
    assert_string_equal(attr_get(&list, "flags"), "0");
    attr_list_free(&list);
    /* The descriptor is close-on-exec, as daemons run other programs. */
    assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
    stream_close(c);
    stream_close(s);
    close(lfd);
}

static void test_connect_failures(void **state)
{
    struct fixture *f = *state;

    errno = 0;
    assert_int_equal(ipc_connect(IPC_PRIVATE, "nosuch"), -1);
    assert_int_equal(errno, ENOENT);
    /* A socket nobody listens on. */
    int dead = listen_at(f, IPC_PRIVATE, "dead", 0);
    errno = 0;
    assert_int_equal(ipc_connect(IPC_PRIVATE, "dead"), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(dead);
    /* A service name never leaves its class directory. */
    int lfd = listen_at(f, IPC_PUBLIC, "showq", 4);
    errno = 0;
    assert_int_equal(ipc_connect(IPC_PRIVATE, "../public/showq"), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    int fd = ipc_connect(IPC_PUBLIC, "showq");   /* while the real name works */
    assert_true(fd >= 0);
    close(fd);
    close(lfd);
    /* A path longer than a socket address holds. */
    char name[sizeof(((struct sockaddr_un *)0)->sun_path)];
    memset(name, 's', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    errno = 0;
    assert_int_equal(ipc_connect(IPC_PRIVATE, name), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

/* A fifo at queue_directory/public/NAME. */
static void fifo_at(const struct fixture *f, const char *name, char *path, size_t len)
{
    int n = snprintf(path, len, "%s/queue/%s/%s", f->dir, IPC_PUBLIC, name);
    assert_true(n > 0 && (size_t)n < len);
    assert_int_equal(mkfifo(path, 0622), 0);
}

static void test_trigger(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX], got[4];
    fifo_at(f, "qmgr", path, sizeof(path));

    /* Nobody reading: the trigger fails rather than blocks. */
    errno = 0;
    assert_int_equal(ipc_trigger(IPC_PUBLIC, "qmgr", 'W'), -1);
    assert_int_equal(errno, ENXIO);

    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    assert_int_equal(ipc_trigger(IPC_PUBLIC, "qmgr", 'F'), 0);
    assert_int_equal(ipc_trigger(IPC_PUBLIC, "qmgr", 'W'), 0);
    assert_int_equal(read(rfd, got, sizeof(got)), 2);
    assert_memory_equal(got, "FW", 2);
    close(rfd);

    assert_int_equal(ipc_trigger(IPC_PUBLIC, "nosuch", 'W'), -1);
    errno = 0;
    assert_int_equal(ipc_trigger(IPC_PUBLIC, "../public/qmgr", 'W'), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

/* "CLASS/SERVICE" must fit in 255 bytes: "public/" and a 248-byte name
 * do, a 249-byte name does not, though both fifos exist. */
static void test_trigger_name_limit(void **state)
{
    struct fixture *f = *state;
    char longest[249], too_long[250], path[PATH_MAX], got;
    memset(longest, 'q', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = 0;
    memset(too_long, 'q', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = 0;

    fifo_at(f, longest, path, sizeof(path));
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    assert_int_equal(ipc_trigger(IPC_PUBLIC, longest, 'W'), 0);
    assert_int_equal(read(rfd, &got, 1), 1);
    assert_int_equal(got, 'W');
    close(rfd);

    fifo_at(f, too_long, path, sizeof(path));
    rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    errno = 0;
    assert_int_equal(ipc_trigger(IPC_PUBLIC, too_long, 'W'), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(read(rfd, &got, 1), 0);   /* no writer ever came */
    close(rfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_greeting_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger_name_limit, setup, teardown),
    };
    return cmocka_run_group_tests_name("ipc", tests, NULL, NULL);
}
