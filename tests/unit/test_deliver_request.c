/* test_deliver_request.c - unit tests for lib/mail/deliver_request.c, the
 * one parser and checker of qmgr's delivery requests for every agent.
 *
 * A good request with every attribute; each refused field at its limit
 * (one byte under passes, the limit fails) and the order in which the
 * checks report; rcpt values that make a request unanswerable; requests
 * read from a stream whole, truncated or empty; the reply on a stream and
 * on an evbuffer, read back record by record; the check against a real
 * queue file (offsets, addresses, done recipients, a missing or broken
 * file); and the log line. Each test has its own queue_directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT_OWN_FIXTURE
#include "unit_support.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "address.h"
#include "deliver_request.h"
#include "events.h"
#include "ipc.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

#define QID "3AbCdE0001XyZ"

struct fixture {
    char dir[UNIT_FIXTURE_DIR_SIZE];   /* first: unit_queue_fixture_new */
};

static int fixture_setup(void **state)
{
    struct fixture *f = unit_queue_fixture_new(sizeof(*f), "test_deliver_request");
    char log[PATH_MAX];
    if (!f || queue_dirs_create() < 0)
        return -1;
    snprintf(log, sizeof(log), "%s/log", f->dir);
    log_set_file(log);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    log_set_file(NULL);
    return unit_queue_fixture_free(*state);
}

static const struct timeval received = {.tv_sec = 1700000100, .tv_usec = 250000};

/* An attribute list from name, value pairs, NULL-terminated. */
static struct attr_list attrs_of(const char *name, ...)
{
    struct attr_list l = {0};
    va_list ap;

    va_start(ap, name);
    for (; name != NULL; name = va_arg(ap, const char *))
        assert_int_equal(attr_list_add(&l, name, va_arg(ap, const char *)), 0);
    va_end(ap);
    return l;
}

/* Parse the standard envelope (queue_name, queue_id, sender) and one
 * recipient, with name set to value instead (NULL: left out). Returns
 * req->bad, or "UNANSWERABLE" when the parser gives up. */
static const char *bad_with(const char *name, const char *value, struct deliver_request *req)
{
    static const char *const env[][2] = {
        {"queue_name", "active"}, {"queue_id", QID}, {"sender", "alice@example.org"},
    };
    struct attr_list l = {0};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(env[i][0], name) != 0)
            assert_int_equal(attr_list_add(&l, env[i][0], env[i][1]), 0);
    if (value != NULL)
        assert_int_equal(attr_list_add(&l, name, value), 0);
    if (strcmp(name, "rcpt") != 0)
        assert_int_equal(attr_list_add(&l, "rcpt", "100 bob@example.com"), 0);
    if (deliver_request_parse(req, &l, &received) < 0)
        return "UNANSWERABLE";
    return req->bad;
}

static const char *check(const char *name, const char *value)
{
    struct deliver_request req;
    const char *bad = bad_with(name, value, &req);
    deliver_request_free(&req);
    return bad;
}

/* An address of exactly len bytes. */
static char *address_of_length(size_t len)
{
    char *a = malloc(len + 1);
    assert_non_null(a);
    memset(a, 'a', len);
    memcpy(a + len - strlen("@example.com"), "@example.com", strlen("@example.com"));
    a[len] = 0;
    return a;
}

/* --- parsing --- */

static void test_good_request(void **state)
{
    (void)state;
    struct attr_list l = attrs_of("queue_name", "deferred", "queue_id", QID,
                                  "sender", "", "arrival", "1700000000.5",
                                  "active_time", "1700000050.000001", "nexthop", "example.com",
                                  "dsn_envid", "env-1", "dsn_ret", "hdrs", "unknown", "skipped",
                                  "orig_rcpt", "Robert@example.com",
                                  "rcpt_dsn_orcpt", "rfc822;robert@example.com",
                                  "rcpt_dsn_notify", "6", "rcpt", "120 bob@example.com",
                                  "rcpt", "340 carol smith@example.net", (const char *)NULL);
    struct deliver_request req;

    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    assert_int_equal(l.count, 0);   /* taken over */
    assert_null(req.bad);
    assert_string_equal(req.queue_name, "deferred");
    assert_string_equal(req.queue_id, QID);
    assert_string_equal(req.sender, "");
    assert_string_equal(req.nexthop, "example.com");
    assert_string_equal(req.dsn_envid, "env-1");
    assert_string_equal(req.dsn_ret, "hdrs");
    assert_int_equal(req.times.arrival.tv_sec, 1700000000);
    assert_int_equal(req.times.arrival.tv_usec, 500000);
    assert_int_equal(req.times.active.tv_sec, 1700000050);
    assert_int_equal(req.times.active.tv_usec, 1);
    assert_int_equal(req.times.agent_start.tv_sec, received.tv_sec);
    assert_int_equal(req.times.conn_done.tv_usec, received.tv_usec);
    assert_int_equal(req.nrcpt, 2);
    assert_int_equal(req.rcpt[0].offset, 120);
    assert_string_equal(req.rcpt[0].address, "bob@example.com");
    assert_string_equal(req.rcpt[0].orig, "Robert@example.com");
    assert_string_equal(req.rcpt[0].dsn_orcpt, "rfc822;robert@example.com");
    assert_int_equal(req.rcpt[0].dsn_notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE);
    assert_string_equal(req.rcpt[0].status.dsn, "");
    /* What described the first recipient does not carry over. */
    assert_int_equal(req.rcpt[1].offset, 340);
    assert_string_equal(req.rcpt[1].address, "carol smith@example.net");
    assert_null(req.rcpt[1].orig);
    assert_null(req.rcpt[1].dsn_orcpt);
    assert_int_equal(req.rcpt[1].dsn_notify, 0);
    assert_string_equal(deliver_request_id(&req), QID);
    deliver_request_free(&req);
}

static void test_missing_times_default_to_when_it_came(void **state)
{
    (void)state;
    struct attr_list l = attrs_of("queue_name", "active", "queue_id", QID, "sender", "a@b",
                                  "arrival", "1700000000", (const char *)NULL);
    struct deliver_request req;

    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    assert_int_equal(req.nrcpt, 0);
    assert_int_equal(req.times.arrival.tv_sec, 1700000000);
    assert_int_equal(req.times.active.tv_sec, 1700000000);   /* = arrival */
    deliver_request_free(&req);

    l = attrs_of("queue_name", "active", "queue_id", QID, "sender", "a@b", (const char *)NULL);
    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    assert_false(req.have_arrival);
    assert_int_equal(req.times.arrival.tv_sec, received.tv_sec);
    assert_int_equal(req.times.active.tv_usec, received.tv_usec);
    deliver_request_free(&req);
}

static void test_envelope_fields_refused(void **state)
{
    (void)state;
    assert_null(check("queue_name", "incoming"));
    assert_string_equal(check("queue_name", "hold"), "bad or missing queue_name");
    assert_string_equal(check("queue_name", ""), "bad or missing queue_name");
    assert_string_equal(check("queue_name", NULL), "bad or missing queue_name");
    assert_string_equal(check("queue_id", "../active/x"), "bad or missing queue_id");
    assert_string_equal(check("queue_id", NULL), "bad or missing queue_id");
    assert_string_equal(check("sender", NULL), "missing sender");
    assert_string_equal(check("arrival", "1700000000.5x"), "bad arrival time");
    assert_string_equal(check("active_time", "soon"), "bad active_time");
    assert_null(check("dsn_ret", "FULL"));
    assert_null(check("dsn_ret", "Hdrs"));
    assert_null(check("dsn_ret", ""));
    assert_string_equal(check("dsn_ret", "NONE"), "bad dsn_ret");
}

static void test_first_failure_is_reported(void **state)
{
    (void)state;
    struct attr_list l = attrs_of("queue_name", "hold", "arrival", "x", (const char *)NULL);
    struct deliver_request req;

    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    assert_string_equal(req.bad, "bad or missing queue_name");
    assert_string_equal(deliver_request_id(&req), "?");
    deliver_request_free(&req);
}

static void test_address_lengths_at_their_limit(void **state)
{
    (void)state;
    char *ok = address_of_length(ADDRESS_MAX - 1), *over = address_of_length(ADDRESS_MAX);
    char value[ADDRESS_MAX + 32];

    assert_null(check("sender", ok));
    assert_string_equal(check("sender", over), "sender too long");
    snprintf(value, sizeof(value), "100 %s", ok);
    assert_null(check("rcpt", value));
    snprintf(value, sizeof(value), "100 %s", over);
    assert_string_equal(check("rcpt", value), "recipient too long");
    assert_null(check("orig_rcpt", ok));
    assert_string_equal(check("orig_rcpt", over), "recipient too long");
    free(ok);
    free(over);
}

static void test_dsn_notify_values(void **state)
{
    (void)state;
    struct deliver_request req;

    assert_null(bad_with("rcpt_dsn_notify", "15", &req));
    assert_int_equal(req.rcpt[0].dsn_notify, 15);
    deliver_request_free(&req);
    assert_null(check("rcpt_dsn_notify", "0001"));
    assert_string_equal(check("rcpt_dsn_notify", "16"), "bad rcpt_dsn_notify");
    assert_string_equal(check("rcpt_dsn_notify", "00001"), "bad rcpt_dsn_notify");
    assert_string_equal(check("rcpt_dsn_notify", "4x"), "bad rcpt_dsn_notify");
    assert_string_equal(check("rcpt_dsn_notify", ""), "bad rcpt_dsn_notify");
}

static void test_rcpt_values_that_cannot_be_answered(void **state)
{
    (void)state;
    assert_null(check("rcpt", "1 a@b"));
    assert_null(check("rcpt", "999999999999999999 a@b"));          /* 18 digits */
    assert_string_equal(check("rcpt", "1000000000000000000 a@b"), "UNANSWERABLE");
    assert_string_equal(check("rcpt", "0 a@b"), "UNANSWERABLE");
    assert_string_equal(check("rcpt", "12a@b"), "UNANSWERABLE");
    assert_string_equal(check("rcpt", " a@b"), "UNANSWERABLE");
    assert_string_equal(check("rcpt", "-5 a@b"), "UNANSWERABLE");
    assert_string_equal(check("rcpt", ""), "UNANSWERABLE");
}

/* --- reading from a stream --- */

/* A stream over a file holding data, positioned at its start. */
static struct stream *file_stream(const struct fixture *f, const void *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/request", f->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    return s;
}

/* The records of a request as qmgr sends them, into a buffer. */
static size_t request_bytes(char *buf, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    evrec_put_attr(out, "queue_name", "active");
    evrec_put_attr(out, "queue_id", QID);
    evrec_put_attr(out, "sender", "alice@example.org");
    evrec_put_attr(out, "rcpt", "77 bob@example.com");
    evrec_put(out, REC_END, "", 0);
    size_t n = evbuffer_get_length(out);
    assert_true(n <= len);
    evbuffer_remove(out, buf, n);
    evbuffer_free(out);
    return n;
}

static void test_read_whole_truncated_and_empty(void **state)
{
    struct fixture *f = *state;
    char buf[512];
    size_t n = request_bytes(buf, sizeof(buf));
    struct deliver_request req;

    struct stream *s = file_stream(f, buf, n);
    assert_int_equal(deliver_request_read(s, &req), 0);
    assert_null(req.bad);
    assert_int_equal(req.nrcpt, 1);
    assert_string_equal(req.rcpt[0].address, "bob@example.com");
    deliver_request_free(&req);
    assert_int_equal(deliver_request_read(s, &req), -1);   /* EOF after it */
    deliver_request_free(&req);
    stream_close(s);

    for (size_t cut = 1; cut < n; cut++) {   /* every truncation: no request */
        s = file_stream(f, buf, cut);
        assert_int_equal(deliver_request_read(s, &req), -1);
        deliver_request_free(&req);
        stream_close(s);
    }

    buf[0] = REC_CONTENT;   /* a record that has no place in a request */
    s = file_stream(f, buf, n);
    assert_int_equal(deliver_request_read(s, &req), -1);
    deliver_request_free(&req);
    stream_close(s);
}

/* --- the reply --- */

static void set_statuses(struct deliver_request *req)
{
    delivery_status_set(&req->rcpt[0].status, "2.0.0", "delivered to maildir");
    delivery_status_set(&req->rcpt[1].status, "5.1.1", "unknown user: \"x\"\n");
    /* rcpt[2] left undecided: never answered as a success */
}

static struct deliver_request three_recipients(void)
{
    struct attr_list l = attrs_of("queue_name", "active", "queue_id", QID, "sender", "s@x",
                                  "rcpt", "10 a@x", "rcpt", "20 b@x", "rcpt", "30 c@x",
                                  (const char *)NULL);
    struct deliver_request req;
    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    return req;
}

static const char *const expected_reply[] = {
    "rcpt_status=10 2.0.0 delivered to maildir",
    "rcpt_status=20 5.1.1 unknown user: \"x\"",
    "rcpt_status=30 4.3.0 bad delivery status",
};

static void test_reply_on_a_stream(void **state)
{
    struct fixture *f = *state;
    struct deliver_request req = three_recipients();
    struct rec_buf b = {0};

    set_statuses(&req);
    struct stream *s = file_stream(f, "", 0);
    assert_int_equal(deliver_request_reply(s, &req), 0);
    assert_int_equal(stream_seek(s, 0), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rec_get(s, &b, IPC_VALUE_MAX, NULL), REC_ATTR);
        assert_string_equal(b.data, expected_reply[i]);
    }
    assert_int_equal(rec_get(s, &b, IPC_VALUE_MAX, NULL), REC_END);
    assert_int_equal(rec_get(s, &b, IPC_VALUE_MAX, NULL), REC_EOF);
    rec_buf_free(&b);
    stream_close(s);
    deliver_request_free(&req);
}

static void test_reply_on_an_evbuffer(void **state)
{
    (void)state;
    struct deliver_request req = three_recipients();
    struct evbuffer *out = evbuffer_new();
    struct rec_buf b = {0};

    set_statuses(&req);
    assert_int_equal(deliver_request_reply_ev(out, &req), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(evrec_get(out, &b, IPC_VALUE_MAX), REC_ATTR);
        assert_string_equal(b.data, expected_reply[i]);
    }
    assert_int_equal(evrec_get(out, &b, IPC_VALUE_MAX), REC_END);
    assert_int_equal(evbuffer_get_length(out), 0);
    rec_buf_free(&b);
    evbuffer_free(out);
    deliver_request_free(&req);
}

static void test_set_pending_keeps_decided(void **state)
{
    (void)state;
    struct deliver_request req = three_recipients();

    delivery_status_set(&req.rcpt[1].status, "2.0.0", "done");
    deliver_request_set_pending(&req, "4.3.0", "bad request");
    assert_string_equal(req.rcpt[0].status.dsn, "4.3.0");
    assert_string_equal(req.rcpt[1].status.dsn, "2.0.0");
    assert_string_equal(req.rcpt[1].status.text, "done");
    assert_string_equal(req.rcpt[2].status.text, "bad request");
    deliver_request_free(&req);
}

/* --- against the queue file --- */

static struct deliver_request request_for(const char *id, const off_t *off, int with_arrival)
{
    char r0[64], r1[64], r2[64], r3[64];
    snprintf(r0, sizeof(r0), "%lld bob@example.com", (long long)off[0]);
    snprintf(r1, sizeof(r1), "%lld carol@example.com", (long long)off[1] + 1);   /* stale */
    snprintf(r2, sizeof(r2), "%lld mallory@example.com", (long long)off[1]);     /* forged */
    snprintf(r3, sizeof(r3), "%lld dave@example.com", (long long)off[2]);        /* done */
    struct attr_list l = attrs_of("queue_name", "incoming", "queue_id", id, "sender", "s@x",
                                  "rcpt", r0, "rcpt", r1, "rcpt", r2, "rcpt", r3,
                                  with_arrival ? "arrival" : (const char *)NULL,
                                  "1700000099", (const char *)NULL);
    struct deliver_request req;
    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    assert_null(req.bad);
    return req;
}

static void test_open_checks_every_recipient(void **state)
{
    (void)state;
    const char *rcpts[] = {"bob@example.com", "carol@example.com", "dave@example.com"};
    const char *content[] = {"Subject: hi\n\nbody\n"};
    off_t off[3];
    char id[QUEUE_ID_SIZE], path[PATH_MAX];
    struct queue_envelope env;

    unit_write_message(1700000000, "s@x", rcpts, 3, content, 1, off, id);
    assert_int_equal(queue_path(path, sizeof(path), QUEUE_INCOMING, id), 0);
    int mark = open(path, O_RDWR);
    assert_true(mark >= 0);
    assert_int_equal(queue_file_mark_done(mark, off[2]), 0);
    close(mark);

    struct deliver_request req = request_for(id, off, 0);
    int fd = deliver_request_open(&req, &env);
    assert_true(fd >= 0);
    assert_int_equal(env.nrcpt, 3);
    assert_string_equal(req.rcpt[0].status.dsn, "");   /* still to deliver */
    for (size_t i = 1; i < 4; i++) {
        assert_string_equal(req.rcpt[i].status.dsn, "4.3.0");
        assert_string_equal(req.rcpt[i].status.text, "bad request: unknown recipient offset");
    }
    /* No arrival in the request: the queue file's. */
    assert_int_equal(req.times.arrival.tv_sec, 1700000000);
    assert_int_equal(req.times.active.tv_sec, 1700000000);
    close(fd);
    queue_envelope_free(&env);
    deliver_request_free(&req);

    req = request_for(id, off, 1);
    fd = deliver_request_open(&req, &env);
    assert_true(fd >= 0);
    assert_int_equal(req.times.arrival.tv_sec, 1700000099);   /* the request's wins */
    close(fd);
    queue_envelope_free(&env);
    deliver_request_free(&req);
}

/* A request whose sender (qmgr) closed its connection before the agent
 * took the file's lock is withdrawn: a qmgr started after it may have found
 * the file unlocked and delivers it itself. */
static void test_request_of_a_gone_sender_is_withdrawn(void **state)
{
    (void)state;
    const char *rcpts[] = {"bob@example.com", "carol@example.com", "dave@example.com"};
    const char *content[] = {"Subject: hi\n\nbody\n"};
    off_t off[3];
    char id[QUEUE_ID_SIZE];
    struct queue_envelope env;
    int sv[2];

    unit_write_message(1700000000, "s@x", rcpts, 3, content, 1, off, id);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

    struct deliver_request req = request_for(id, off, 0);
    req.client_fd = sv[0];
    int fd = deliver_request_open(&req, &env);   /* the sender is alive */
    assert_true(fd >= 0);
    assert_string_equal(req.rcpt[0].status.dsn, "");
    close(fd);
    queue_envelope_free(&env);
    deliver_request_free(&req);

    close(sv[1]);
    req = request_for(id, off, 0);
    req.client_fd = sv[0];
    assert_int_equal(deliver_request_open(&req, &env), -1);
    assert_string_equal(req.rcpt[0].status.dsn, "4.3.0");
    assert_string_equal(req.rcpt[0].status.text, "delivery request withdrawn");
    deliver_request_free(&req);
    close(sv[0]);
}

/* A recipient one agent hands another (deliver_pass.h): delivered to its
 * own address, checked against queue_rcpt, the address at the offset;
 * queue_rcpt describes only the recipient after it. */
static void test_handed_over_recipient(void **state)
{
    (void)state;
    const char *rcpts[] = {"team@example.com", "dave@example.com"};
    const char *content[] = {"Subject: hi\n\nbody\n"};
    off_t off[2];
    char id[QUEUE_ID_SIZE], r0[64], r1[64], r2[64];
    struct queue_envelope env;

    unit_write_message(1700000000, "s@x", rcpts, 2, content, 1, off, id);
    snprintf(r0, sizeof(r0), "%lld bob@example.com", (long long)off[0]);
    snprintf(r1, sizeof(r1), "%lld carol@example.com", (long long)off[0]);
    snprintf(r2, sizeof(r2), "%lld eve@example.com", (long long)off[1]);
    struct attr_list l = attrs_of("queue_name", "incoming", "queue_id", id, "sender", "s@x",
                                  "queue_rcpt", "team@example.com", "rcpt", r0,
                                  "rcpt", r1, "queue_rcpt", "team@example.com", "rcpt", r2,
                                  (const char *)NULL);
    struct deliver_request req;
    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    assert_null(req.bad);
    assert_string_equal(req.rcpt[0].address, "bob@example.com");
    assert_string_equal(req.rcpt[0].queue_address, "team@example.com");
    assert_null(req.rcpt[1].queue_address);
    int fd = deliver_request_open(&req, &env);
    assert_true(fd >= 0);
    assert_string_equal(req.rcpt[0].status.dsn, "");        /* team's offset: bob */
    assert_string_equal(req.rcpt[1].status.dsn, "4.3.0");   /* carol is not team */
    assert_string_equal(req.rcpt[2].status.dsn, "4.3.0");   /* dave's offset is not team's */
    close(fd);
    queue_envelope_free(&env);
    deliver_request_free(&req);
    /* Bounded like the other addresses. */
    char *too_long = address_of_length(ADDRESS_MAX);
    assert_string_equal(check("queue_rcpt", too_long), "recipient too long");
    free(too_long);
}

static void test_open_missing_or_broken_file(void **state)
{
    (void)state;
    const char *rcpts[] = {"bob@example.com", "carol@example.com", "dave@example.com"};
    const char *content[] = {"x\n"};
    off_t off[3];
    char id[QUEUE_ID_SIZE], path[PATH_MAX];
    struct queue_envelope env;

    unit_write_message(1700000000, "s@x", rcpts, 3, content, 1, off, id);
    struct deliver_request req = request_for("3AbCdE0009XyZ", off, 0);
    assert_int_equal(deliver_request_open(&req, &env), -1);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(req.rcpt[i].status.dsn, "4.3.0");
        assert_string_equal(req.rcpt[i].status.text, "cannot open queue file");
    }
    deliver_request_free(&req);

    assert_int_equal(queue_path(path, sizeof(path), QUEUE_INCOMING, id), 0);
    assert_int_equal(truncate(path, 60), 0);   /* no E record any more */
    req = request_for(id, off, 0);
    assert_int_equal(deliver_request_open(&req, &env), -1);
    assert_string_equal(req.rcpt[0].status.text, "malformed queue file");
    deliver_request_free(&req);
}

/* --- the log line --- */

static void test_log_names_relay_and_original(void **state)
{
    struct fixture *f = *state;
    struct attr_list l = attrs_of("queue_name", "active", "queue_id", QID, "sender", "s@x",
                                  "arrival", "1700000100", "orig_rcpt", "sales@example.com",
                                  "rcpt", "10 bob@example.com", (const char *)NULL);
    struct deliver_request req;
    char path[PATH_MAX];

    assert_int_equal(deliver_request_parse(&req, &l, &received), 0);
    delivery_status_set(&req.rcpt[0].status, "2.0.0", "delivered to maildir");
    deliver_request_log(&req, &req.rcpt[0], "virtual");
    deliver_request_log(&req, &req.rcpt[0], "");
    snprintf(path, sizeof(path), "%s/log", f->dir);
    char *log = unit_read_file(path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, ": " QID ": to=<bob@example.com>, orig_to=<sales@example.com>, "
                                "relay=virtual, delay="));
    assert_non_null(strstr(log, "relay=none, delay="));
    assert_non_null(strstr(log, "dsn=2.0.0, status=sent (delivered to maildir)\n"));
    free(log);
    deliver_request_free(&req);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_good_request),
        T(test_missing_times_default_to_when_it_came),
        T(test_envelope_fields_refused),
        T(test_first_failure_is_reported),
        T(test_address_lengths_at_their_limit),
        T(test_dsn_notify_values),
        T(test_rcpt_values_that_cannot_be_answered),
        T(test_read_whole_truncated_and_empty),
        T(test_reply_on_a_stream),
        T(test_reply_on_an_evbuffer),
        T(test_set_pending_keeps_decided),
        T(test_open_checks_every_recipient),
        T(test_handed_over_recipient),
        T(test_request_of_a_gone_sender_is_withdrawn),
        T(test_open_missing_or_broken_file),
        T(test_log_names_relay_and_original),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
