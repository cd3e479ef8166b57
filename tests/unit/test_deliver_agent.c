/* test_deliver_agent.c - unit tests for lib/mail/deliver_agent.c, the
 * blocking deliver_protocol loop of local, virtual and pipe.
 *
 * The loop runs in a forked child on one end of a socketpair, with a fake
 * agent; this process plays qmgr on the other end over a real queue file:
 * the greeting, several requests on one connection (statuses in request
 * order; the agent called only for recipients that are in the queue file
 * and not done; one log line per recipient unless the agent logged it),
 * a bad request, a missing queue file, an unanswerable request that
 * ends the connection, and a batch agent (pipe's kind) that gets every
 * recipient at once. Master's alive pipe (fd 5) is a pipe this process
 * keeps open.
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deliver_agent.h"
#include "ipc.h"
#include "record.h"
#include "service.h"
#include "stream.h"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
    char log[PATH_MAX];
    char id[QUEUE_ID_SIZE];
    off_t off[3];
    pid_t child;
    int alive;                 /* write end of the child's fd 5 */
    struct stream *qmgr;       /* our end of the connection */
};

static const char *const rcpts[] = {"bob@example.com", "bounce@example.com",
                                    "logged@example.com"};

/* The fake agent: what it reads of the message goes into the status, so
 * the reply shows the message was usable. */
static int fake_deliver(const struct deliver_message *m, struct deliver_rcpt *r)
{
    struct rec_buf chunk = {0};
    char first[32] = "";

    if (queue_content_begin(m->queue, m->content_offset) == 0
        && queue_content_next(m->queue, &chunk) == 1)
        snprintf(first, sizeof(first), "%.*s", (int)strcspn(chunk.data, "\n"), chunk.data);
    rec_buf_free(&chunk);
    msg_info("fake: %s", r->address);
    if (strncmp(r->address, "bounce@", 7) == 0) {
        delivery_status_set(&r->status, "5.1.1", "unknown user");
        return 0;
    }
    delivery_status_set(&r->status, "2.0.0", "ok %s from %s [%s]", r->address, m->sender,
                        first);
    return strncmp(r->address, "logged@", 7) == 0;
}

/* The batch agent (pipe's kind): every undecided recipient at once, but
 * bounce@ left undecided, which the loop must not report as anything but
 * a deferral. The text shows the request and envelope it was given. */
static void fake_batch(const struct deliver_message *m, struct deliver_request *req)
{
    size_t n = 0;

    for (size_t i = 0; i < req->nrcpt; i++)
        n += req->rcpt[i].status.dsn[0] == 0;
    msg_info("fake batch: %zu", n);
    for (size_t i = 0; i < req->nrcpt; i++) {
        struct deliver_rcpt *r = &req->rcpt[i];
        if (r->status.dsn[0] == 0 && strncmp(r->address, "bounce@", 7) != 0)
            delivery_status_set(&r->status, "2.0.0", "batch of %zu, %s, %lld bytes", n,
                                m->req->queue_id, m->env->content_size);
    }
}

static int use_batch;   /* start_agent runs fake_batch */

static void start_agent(struct fixture *f)
{
    int sv[2], alive[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(alive), 0);
    f->child = fork();
    assert_true(f->child >= 0);
    if (f->child == 0) {
        close(sv[0]);
        close(alive[1]);
        if (dup2(alive[0], SERVICE_ALIVE_FD) < 0)
            _exit(2);
        log_set_file(f->log);   /* after the dup2: its descriptor may have been 5 */
        if (use_batch)
            deliver_agent_serve_batch(sv[1], "test", fake_batch);
        else
            deliver_agent_serve(sv[1], "test", fake_deliver);
        _exit(0);
    }
    close(sv[1]);
    close(alive[0]);
    f->alive = alive[1];
    f->qmgr = stream_open(sv[0], 10);
    assert_non_null(f->qmgr);
}

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_deliver_agent");
    const char *content[] = {"Subject: hello\n\nbody\n"};
    if (!f || queue_dirs_create() < 0)
        return -1;
    snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
    unit_write_message(1700000000, "alice@example.org", rcpts, 3, content, 1, f->off, f->id);
    start_agent(f);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    int status;

    stream_close(f->qmgr);
    close(f->alive);
    assert_int_equal(waitpid(f->child, &status, 0), f->child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return unit_queue_fixture_free(f);
}

/* Send a request: the envelope of the queue file (queue_name given), then
 * recipients as "OFFSET ADDRESS" values. */
static void send_request(struct fixture *f, const char *queue_name, const char *id,
                         const char *const *values, size_t n)
{
    assert_int_equal(attr_put(f->qmgr, "queue_name", queue_name), 0);
    assert_int_equal(attr_put(f->qmgr, "queue_id", id), 0);
    assert_int_equal(attr_put(f->qmgr, "sender", "alice@example.org"), 0);
    assert_int_equal(attr_put(f->qmgr, "arrival", "1700000000.5"), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(attr_put(f->qmgr, "rcpt", values[i]), 0);
    assert_int_equal(attr_end(f->qmgr), 0);
}

/* Read the reply; its rcpt_status values must be expected, in order. */
static void expect_reply(struct fixture *f, const char *const *expected, size_t n)
{
    struct attr_list reply;

    assert_int_equal(attr_list_read(f->qmgr, &reply), 0);
    assert_int_equal(reply.count, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(reply.names[i], "rcpt_status");
        assert_string_equal(reply.values[i], expected[i]);
    }
    attr_list_free(&reply);
}

static char *value(char *buf, size_t len, off_t offset, const char *address)
{
    snprintf(buf, len, "%lld %s", (long long)offset, address);
    return buf;
}

static size_t count_in_log(const struct fixture *f, const char *needle)
{
    char *log = unit_read_file(f->log, NULL);
    size_t n = 0;

    if (log == NULL)
        return 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

static void test_greeting_and_requests_in_order(void **state)
{
    struct fixture *f = *state;
    char v[3][128], e[3][256];

    assert_int_equal(ipc_expect_greeting(f->qmgr, DELIVER_PROTOCOL), 0);
    const char *req[] = {value(v[0], 128, f->off[2], rcpts[2]), value(v[1], 128, f->off[0],
                         rcpts[0]), value(v[2], 128, f->off[1], rcpts[1])};
    send_request(f, "incoming", f->id, req, 3);
    snprintf(e[0], sizeof(e[0]), "%lld 2.0.0 ok logged@example.com from alice@example.org "
             "[Subject: hello]", (long long)f->off[2]);
    snprintf(e[1], sizeof(e[1]), "%lld 2.0.0 ok bob@example.com from alice@example.org "
             "[Subject: hello]", (long long)f->off[0]);
    snprintf(e[2], sizeof(e[2]), "%lld 5.1.1 unknown user", (long long)f->off[1]);
    const char *expected[] = {e[0], e[1], e[2]};
    expect_reply(f, expected, 3);

    /* The same connection takes the next request. The agent marked bob
     * done in the queue file itself (deliver_request_mark_sent), so asking
     * again delivers nothing twice. */
    char again[256];
    snprintf(again, sizeof(again), "%lld 4.3.0 bad request: unknown recipient offset",
             (long long)f->off[0]);
    const char *expected_again[] = {again};
    send_request(f, "incoming", f->id, req + 1, 1);
    expect_reply(f, expected_again, 1);

    assert_int_equal(count_in_log(f, "fake: "), 3);
    assert_int_equal(count_in_log(f, "to=<bob@example.com>, relay=test, "), 2);
    assert_int_equal(count_in_log(f, "to=<bounce@example.com>, relay=test, "), 1);
    assert_int_equal(count_in_log(f, "to=<logged@example.com>"), 0);   /* the agent's job */
}

static void test_recipient_not_in_queue_file_is_not_delivered(void **state)
{
    struct fixture *f = *state;
    char v[2][128], e[2][256];

    assert_int_equal(ipc_expect_greeting(f->qmgr, DELIVER_PROTOCOL), 0);
    const char *req[] = {value(v[0], 128, f->off[0], "mallory@example.com"),
                         value(v[1], 128, f->off[0], rcpts[0])};
    send_request(f, "incoming", f->id, req, 2);
    snprintf(e[0], sizeof(e[0]), "%lld 4.3.0 bad request: unknown recipient offset",
             (long long)f->off[0]);
    snprintf(e[1], sizeof(e[1]), "%lld 2.0.0 ok bob@example.com from alice@example.org "
             "[Subject: hello]", (long long)f->off[0]);
    const char *expected[] = {e[0], e[1]};
    expect_reply(f, expected, 2);
    assert_int_equal(count_in_log(f, "fake: mallory"), 0);
    assert_int_equal(count_in_log(f, "to=<mallory@example.com>, relay=test, "), 1);
}

static void test_bad_request_and_missing_file(void **state)
{
    struct fixture *f = *state;
    char v[2][128], e[2][256];

    assert_int_equal(ipc_expect_greeting(f->qmgr, DELIVER_PROTOCOL), 0);
    const char *req[] = {value(v[0], 128, f->off[0], rcpts[0]),
                         value(v[1], 128, f->off[1], rcpts[1])};
    send_request(f, "hold", f->id, req, 2);
    snprintf(e[0], sizeof(e[0]), "%lld 4.3.0 bad request", (long long)f->off[0]);
    snprintf(e[1], sizeof(e[1]), "%lld 4.3.0 bad request", (long long)f->off[1]);
    const char *bad[] = {e[0], e[1]};
    expect_reply(f, bad, 2);

    send_request(f, "deferred", f->id, req, 2);   /* the file is in incoming/ */
    snprintf(e[0], sizeof(e[0]), "%lld 4.3.0 cannot open queue file", (long long)f->off[0]);
    snprintf(e[1], sizeof(e[1]), "%lld 4.3.0 cannot open queue file", (long long)f->off[1]);
    const char *missing[] = {e[0], e[1]};
    expect_reply(f, missing, 2);
    assert_int_equal(count_in_log(f, "fake: "), 0);
    assert_int_equal(count_in_log(f, "dsn=4.3.0, status=deferred (bad request)"), 2);
    assert_int_equal(count_in_log(f, "bad delivery request: bad or missing queue_name"), 1);
}

static void test_unanswerable_request_ends_the_connection(void **state)
{
    struct fixture *f = *state;
    struct attr_list reply;
    const char *req[] = {"not-an-offset bob@example.com"};

    assert_int_equal(ipc_expect_greeting(f->qmgr, DELIVER_PROTOCOL), 0);
    send_request(f, "incoming", f->id, req, 1);
    assert_int_equal(attr_list_read(f->qmgr, &reply), -1);
    assert_int_equal(count_in_log(f, "malformed rcpt attribute in request"), 1);
}

/* A batch agent gets the recipients still to do in one call, with the
 * request and the envelope; every recipient is logged by the loop. */
static void test_batch_agent(void **state)
{
    struct fixture *f = *state;
    char v[3][128], e[3][256];

    assert_int_equal(ipc_expect_greeting(f->qmgr, DELIVER_PROTOCOL), 0);
    const char *req[] = {value(v[0], 128, f->off[0], rcpts[0]),
                         value(v[1], 128, f->off[1], rcpts[1]),
                         value(v[2], 128, f->off[0], "mallory@example.com")};
    send_request(f, "incoming", f->id, req, 3);
    snprintf(e[0], sizeof(e[0]), "%lld 2.0.0 batch of 2, %s, 21 bytes", (long long)f->off[0],
             f->id);
    snprintf(e[1], sizeof(e[1]), "%lld 4.3.0 delivery agent left the recipient undecided",
             (long long)f->off[1]);
    snprintf(e[2], sizeof(e[2]), "%lld 4.3.0 bad request: unknown recipient offset",
             (long long)f->off[0]);
    const char *expected[] = {e[0], e[1], e[2]};
    expect_reply(f, expected, 3);
    assert_int_equal(count_in_log(f, "fake batch: 2"), 1);
    assert_int_equal(count_in_log(f, ", relay=test, "), 3);
}

static int batch_setup(void **state)
{
    use_batch = 1;
    int rc = fixture_setup(state);
    use_batch = 0;
    return rc;
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_greeting_and_requests_in_order),
        T(test_recipient_not_in_queue_file_is_not_delivered),
        T(test_bad_request_and_missing_file),
        T(test_unanswerable_request_ends_the_connection),
        cmocka_unit_test_setup_teardown(test_batch_agent, batch_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
