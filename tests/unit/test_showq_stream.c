/* test_showq_stream.c - unit tests for lib/mail/showq_stream.c
 * (mail_queue_list_protocol) and lib/util/nulattr.c (Postfix's
 * NUL-terminated attribute lists) under it.
 *
 * POSTFIX_STREAM is cut from what the showq of Postfix 3.7 (Debian 12)
 * sent on its public/showq for a queue with a deferred and a held message
 * (one recipient of three left out): what Postern sends for the same
 * entries must be the same bytes, and what Postern reads from them the
 * same entries. Streams are memfds read
 * through lib/util/stream.c, as postqueue reads its socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "nulattr.h"
#include "queue_list.h"
#include "showq_stream.h"
#include "stream.h"

#define REFUSED "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"
#define GREETING "protocol\0mail_queue_list_protocol\0\0"
#define MSG1                                                                                \
    "queue_name\0deferred\0queue_id\00051D27A8404C\0time\0" "1796642270\0size\0" "291\0" \
    "forced_expire\0" "0\0sender\0MAILER-DAEMON\0recipient\0ctl?@relay.example\0reason\0"   \
    REFUSED "\0recipient\0\"john doe\"@relay.example\0reason\0\0\0"
#define MSG2                                                                                 \
    "queue_name\0hold\0queue_id\00093943A84033\0time\0" "1796642151\0size\0" "336\0"       \
    "forced_expire\0" "0\0sender\0sender@example.org\0recipient\0r1@relay.example\0reason\0" \
    REFUSED "\0\0"
static const char POSTFIX_STREAM[] = GREETING MSG1 MSG2 "\0";

static const struct queue_list_rcpt rcpt1[] = {{"ctl?@relay.example", REFUSED},
                                               {"\"john doe\"@relay.example", ""}};
static const struct queue_list_rcpt rcpt2[] = {{"r1@relay.example", REFUSED}};
static const struct queue_list_entry entries[] = {
    {"deferred", "51D27A8404C", 1796642270, 291, 0, "MAILER-DAEMON", 2, rcpt1},
    {"hold", "93943A84033", 1796642151, 336, 0, "sender@example.org", 1, rcpt2},
};

/* A stream reading len bytes of data (a memfd). */
static struct stream *reading(const void *data, size_t len)
{
    int fd = memfd_create("showq", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    return s;
}

/* A stream writing to a memfd; its bytes are read back with written(). */
static struct stream *writing(void)
{
    int fd = memfd_create("showq", MFD_CLOEXEC);
    assert_true(fd >= 0);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    return s;
}

static size_t written(struct stream *s, char *buf, size_t len)
{
    assert_int_equal(stream_flush(s), 0);
    ssize_t n = pread(stream_fd(s), buf, len, 0);
    assert_true(n >= 0);
    stream_close(s);
    return (size_t)n;
}

static void assert_entry_equal(const struct queue_list_entry *a, const struct queue_list_entry *b)
{
    assert_string_equal(a->queue, b->queue);
    assert_string_equal(a->id, b->id);
    assert_int_equal(a->arrival, b->arrival);
    assert_int_equal(a->size, b->size);
    assert_int_equal(a->forced_expire, b->forced_expire);
    assert_string_equal(a->sender, b->sender);
    assert_int_equal(a->nrcpt, b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        assert_string_equal(a->rcpt[i].address, b->rcpt[i].address);
        assert_string_equal(a->rcpt[i].reason, b->rcpt[i].reason);
    }
}

static void test_sends_postfix_bytes(void **state)
{
    (void)state;
    struct stream *s = writing();
    assert_int_equal(showq_stream_greet(s), 0);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(showq_stream_send(s, &entries[i]), 0);
    assert_int_equal(showq_stream_end(s), 0);
    char buf[2048];
    size_t n = written(s, buf, sizeof(buf));
    assert_int_equal(n, sizeof(POSTFIX_STREAM) - 1);
    assert_memory_equal(buf, POSTFIX_STREAM, n);
}

static void test_reads_postfix_stream(void **state)
{
    (void)state;
    struct stream *s = reading(POSTFIX_STREAM, sizeof(POSTFIX_STREAM) - 1);
    struct showq_reader r = {0};
    assert_int_equal(showq_stream_check_greeting(s), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(showq_stream_read(s, &r), 1);
        assert_entry_equal(&r.entry, &entries[i]);
    }
    assert_int_equal(showq_stream_read(s, &r), 0);
    showq_reader_free(&r);
    stream_close(s);
}

/* Every cut short of the final empty list is an incomplete listing. */
static void test_truncated_stream_is_incomplete(void **state)
{
    (void)state;
    size_t full = sizeof(POSTFIX_STREAM) - 1;
    for (size_t cut = sizeof(GREETING) - 1; cut < full; cut++) {
        struct stream *s = reading(POSTFIX_STREAM, cut);
        struct showq_reader r = {0};
        assert_int_equal(showq_stream_check_greeting(s), 0);
        int n;
        while ((n = showq_stream_read(s, &r)) == 1)
            ;
        assert_int_equal(n, -1);
        assert_non_null(r.error);
        showq_reader_free(&r);
        stream_close(s);
    }
}

static void test_greetings(void **state)
{
    (void)state;
    static const char other[] = "protocol\0showq_protocol\0\0";
    static const char none[] = "queue_name\0x\0\0";
    static const char record_framed[] = "A\027protocol=showq_protocolE\0";
    struct stream *s = reading(other, sizeof(other) - 1);
    assert_int_equal(showq_stream_check_greeting(s), -2);
    stream_close(s);
    s = reading(none, sizeof(none) - 1);
    assert_int_equal(showq_stream_check_greeting(s), -1);
    stream_close(s);
    s = reading(record_framed, sizeof(record_framed) - 1);
    assert_int_equal(showq_stream_check_greeting(s), -1);
    stream_close(s);
    s = reading("", 0);
    assert_int_equal(showq_stream_check_greeting(s), -1);
    stream_close(s);
}

/* Unknown attributes (a newer server's) are skipped, a reason before any
 * recipient is ignored, a missing forced_expire reads as 0; a message
 * without queue_id or with a malformed number is refused. */
static void test_tolerant_but_strict_where_it_matters(void **state)
{
    (void)state;
    static const char ok[] = "x_new\0y\0reason\0early\0queue_name\0active\0queue_id\0ID1\0"
                             "time\0" "5\0size\0" "7\0sender\0s@example.org\0"
                             "recipient\0r@example.com\0\0\0";
    static const char no_id[] = "queue_name\0active\0time\0" "5\0size\0" "7\0sender\0s\0\0\0";
    static const char bad_num[] = "queue_name\0active\0queue_id\0I\0time\0" "5x\0size\0" "7\0"
                                  "sender\0s\0\0\0";
    struct showq_reader r = {0};
    struct stream *s = reading(ok, sizeof(ok) - 1);
    assert_int_equal(showq_stream_read(s, &r), 1);
    assert_string_equal(r.entry.queue, "active");
    assert_string_equal(r.entry.id, "ID1");
    assert_int_equal(r.entry.arrival, 5);
    assert_int_equal(r.entry.size, 7);
    assert_int_equal(r.entry.forced_expire, 0);
    assert_int_equal(r.entry.nrcpt, 1);
    assert_string_equal(r.entry.rcpt[0].address, "r@example.com");
    assert_string_equal(r.entry.rcpt[0].reason, "");
    assert_int_equal(showq_stream_read(s, &r), 0);
    stream_close(s);
    s = reading(no_id, sizeof(no_id) - 1);
    assert_int_equal(showq_stream_read(s, &r), -1);
    stream_close(s);
    s = reading(bad_num, sizeof(bad_num) - 1);
    assert_int_equal(showq_stream_read(s, &r), -1);
    assert_string_equal(r.error, "malformed number");
    stream_close(s);
    showq_reader_free(&r);
}

/* Many recipients: the reader's storage grows and every pointer is right
 * after the moves. */
static void test_many_recipients_round_trip(void **state)
{
    (void)state;
    enum { N = 3000 };
    static struct queue_list_rcpt rcpt[N];
    static char addr[N][32], why[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(addr[i], sizeof(addr[i]), "r%d@example.com", i);
        snprintf(why[i], sizeof(why[i]), i % 3 ? "reason %d" : "", i);
        rcpt[i] = (struct queue_list_rcpt){addr[i], why[i]};
    }
    struct queue_list_entry e = {"deferred", "ID", 1, 2, 1, "s@example.org", N, rcpt};
    struct stream *w = writing();
    assert_int_equal(showq_stream_greet(w), 0);
    assert_int_equal(showq_stream_send(w, &e), 0);
    assert_int_equal(showq_stream_end(w), 0);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = written(w, buf, cap);
    struct stream *s = reading(buf, n);
    struct showq_reader r = {0};
    assert_int_equal(showq_stream_check_greeting(s), 0);
    assert_int_equal(showq_stream_read(s, &r), 1);
    assert_entry_equal(&r.entry, &e);
    assert_int_equal(showq_stream_read(s, &r), 0);
    showq_reader_free(&r);
    stream_close(s);
    free(buf);
}

static void test_nulattr_bounds(void **state)
{
    (void)state;
    char big[NULATTR_NAME_MAX + 8];
    memset(big, 'n', sizeof(big));
    big[sizeof(big) - 1] = 0;
    struct nulattr_item it = {0};
    struct stream *s = reading(big, sizeof(big));   /* a name one too long */
    assert_int_equal(nulattr_get(s, &it, 100), -1);
    stream_close(s);
    static const char value[] = "name\0" "0123456789\0";
    s = reading(value, sizeof(value) - 1);
    assert_int_equal(nulattr_get(s, &it, 9), -1);   /* a value one too long */
    stream_close(s);
    s = reading(value, sizeof(value) - 1);
    assert_int_equal(nulattr_get(s, &it, 10), NULATTR_ATTR);
    assert_string_equal(it.name, "name");
    assert_string_equal(it.value, "0123456789");
    assert_int_equal(it.len, 10);
    assert_int_equal(nulattr_get(s, &it, 10), -1);   /* EOF */
    stream_close(s);
    nulattr_item_free(&it);
}

int main(void)
{
    log_init("test_showq_stream", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sends_postfix_bytes),
        cmocka_unit_test(test_reads_postfix_stream),
        cmocka_unit_test(test_truncated_stream_is_incomplete),
        cmocka_unit_test(test_greetings),
        cmocka_unit_test(test_tolerant_but_strict_where_it_matters),
        cmocka_unit_test(test_many_recipients_round_trip),
        cmocka_unit_test(test_nulattr_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
