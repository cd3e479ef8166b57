/* test_auth_client.c - unit tests for lib/util/auth_client.c: the line
 * parser (handshake lines, OK/CONT/FAIL with their parameters, Dovecot's
 * tab escapes, bad ids, control characters, over-long lines), endpoints,
 * and the client on a libevent loop against a scripted server on a UNIX
 * socket: the handshake, the exact AUTH and CONT lines, answers delivered
 * later and never from inside a call, requests queued before the
 * handshake, a per-request deadline, a lost connection failing what waits
 * and a new connection for the next request, an abort that silences a
 * request.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth_client.h"
#include "log.h"

static void parse(const char *text, struct auth_line *l)
{
    static char buf[AUTH_LINE_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", text);
    auth_line_parse(buf, strlen(buf), l);
}

static void test_parse_handshake(void **state)
{
    struct auth_line l;
    parse("VERSION\t1\t2", &l);
    assert_int_equal(l.kind, AUTH_LINE_VERSION);
    assert_int_equal(l.major, 1);
    assert_int_equal(l.minor, 2);
    parse("MECH\tcram-md5\tdictionary\tactive\tnew-flag", &l);
    assert_int_equal(l.kind, AUTH_LINE_MECH);
    assert_string_equal(l.mech.name, "CRAM-MD5");
    assert_int_equal(l.mech.flags, AUTH_MECH_DICTIONARY | AUTH_MECH_ACTIVE);
    parse("MECH\tANONYMOUS\tanonymous\tprivate", &l);
    assert_int_equal(l.mech.flags, AUTH_MECH_ANONYMOUS | AUTH_MECH_PRIVATE);
    parse("SPID\t1", &l);
    assert_int_equal(l.kind, AUTH_LINE_SPID);
    parse("DONE", &l);
    assert_int_equal(l.kind, AUTH_LINE_DONE);
    parse("NOTYET\tx", &l);
    assert_int_equal(l.kind, AUTH_LINE_OTHER);
    const char *bad[] = {"VERSION\t1", "VERSION\tx\t1", "MECH", "MECH\tA B", "MECH\t",
                         "", "\001\t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse(bad[i], &l);
        assert_int_equal(l.kind, AUTH_LINE_BAD);
        assert_non_null(l.why);
    }
}

static void test_parse_replies(void **state)
{
    struct auth_line l;
    parse("OK\t7\tuser=alice@example.com\tresp=YWJj", &l);
    assert_int_equal(l.kind, AUTH_LINE_OK);
    assert_int_equal(l.id, 7);
    assert_string_equal(l.user, "alice@example.com");
    assert_string_equal(l.data, "YWJj");
    parse("CONT\t4294967295\tVXNlcm5hbWU6", &l);
    assert_int_equal(l.kind, AUTH_LINE_CONT);
    assert_int_equal(l.id, 4294967295UL);
    assert_string_equal(l.data, "VXNlcm5hbWU6");
    parse("CONT\t3", &l);
    assert_string_equal(l.data, "");
    /* Tab escapes; a control character in a reason becomes '?'. */
    parse("FAIL\t9\tuser=b\0011ob\treason=no\001tway\ttemp\tcode=x", &l);
    assert_int_equal(l.kind, AUTH_LINE_BAD);   /* \001 in a user name */
    parse("FAIL\t9\tuser=bob\treason=no\001tway\ttemp", &l);
    assert_int_equal(l.kind, AUTH_LINE_FAIL);
    assert_string_equal(l.user, "bob");
    assert_string_equal(l.reason, "no?way");
    assert_true(l.temp);
    const char *bad[] = {"OK\t0\tuser=a", "OK\t4294967296\tuser=a", "OK\t-1", "OK",
                         "CONT\t1\tnot base64!", "OK\t1\tuser=a\001", "OK\t1\tuser=a\033b",
                         "OK\t1\tuser=", "OK\t1\tresp=%%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse(bad[i], &l);
        assert_int_equal(l.kind, AUTH_LINE_BAD);
        assert_string_equal(l.user, "");
    }
    /* A long reason is cut, a long user name refused. */
    char line[1200];
    snprintf(line, sizeof(line), "FAIL\t1\treason=%0900d", 0);
    parse(line, &l);
    assert_int_equal(l.kind, AUTH_LINE_FAIL);
    assert_int_equal(strlen(l.reason), AUTH_REASON_MAX - 1);
    snprintf(line, sizeof(line), "OK\t1\tuser=%0900d", 0);
    parse(line, &l);
    assert_int_equal(l.kind, AUTH_LINE_BAD);
    /* NUL bytes and lines over the limit. */
    char nul[] = "OK\t1\0\tuser=a";
    auth_line_parse(nul, sizeof(nul) - 1, &l);
    assert_int_equal(l.kind, AUTH_LINE_BAD);
    auth_line_parse(nul, AUTH_LINE_MAX + 1, &l);
    assert_int_equal(l.kind, AUTH_LINE_BAD);
}

static void test_endpoints(void **state)
{
    struct auth_endpoint ep;
    char err[256];
    assert_int_equal(auth_endpoint_parse("inet:127.0.0.1:12345", NULL, &ep, err, sizeof(err)), 0);
    assert_int_equal(ep.addr.ss_family, AF_INET);
    assert_string_equal(ep.name, "inet:127.0.0.1:12345");
    assert_int_equal(auth_endpoint_parse("inet:[::1]:1", NULL, &ep, err, sizeof(err)), 0);
    assert_int_equal(ep.addr.ss_family, AF_INET6);
    assert_int_equal(auth_endpoint_parse("private/auth", "/q/private/auth", &ep, err,
                                         sizeof(err)), 0);
    assert_int_equal(ep.addr.ss_family, AF_UNIX);
    assert_string_equal(((struct sockaddr_un *)&ep.addr)->sun_path, "/q/private/auth");
    assert_string_equal(ep.name, "private/auth");
    const char *bad[] = {"inet:", "inet:host", "inet::25", "inet:[::1]25"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(auth_endpoint_parse(bad[i], NULL, &ep, err, sizeof(err)), -1);
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = 0;
    assert_int_equal(auth_endpoint_parse("x", longpath, &ep, err, sizeof(err)), -1);
}

/* --- the client against a scripted server ----------------------------- */

/* The server: what it got, and what it answers to each AUTH/CONT. */
struct server {
    struct event_base *base;
    int lfd;
    struct event *accept_ev;
    struct bufferevent *conn;
    int connections;
    char got[8192];
    const char *mode;       /* "answer", "silent", "close" */
};

struct result {
    int calls;
    enum auth_result result;
    char data[256], user[256], reason[256];
    int in_call;            /* set around calls into the client */
};

static struct server srv;

static void server_read(struct bufferevent *bev, void *arg)
{
    char *line;
    size_t len;
    while ((line = evbuffer_readln(bufferevent_get_input(bev), &len, EVBUFFER_EOL_LF))) {
        strncat(srv.got, line, sizeof(srv.got) - strlen(srv.got) - 2);
        strcat(srv.got, "\n");
        unsigned long id = 0;
        char verb[8] = "";
        sscanf(line, "%7[A-Z]\t%lu", verb, &id);
        free(line);
        if (strcmp(srv.mode, "close") == 0 && strcmp(verb, "AUTH") == 0) {
            bufferevent_free(bev);
            srv.conn = NULL;
            return;
        }
        if (strcmp(srv.mode, "answer") != 0)
            continue;
        struct evbuffer *out = bufferevent_get_output(bev);
        if (strcmp(verb, "AUTH") == 0)
            evbuffer_add_printf(out, "CONT\t%lu\tY2hhbGxlbmdl\n", id);
        else if (strcmp(verb, "CONT") == 0)
            evbuffer_add_printf(out, "OK\t%lu\tuser=alice@example.com\n", id);
    }
}

static void server_accept(evutil_socket_t lfd, short what, void *arg)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    srv.connections++;
    if (srv.conn)
        bufferevent_free(srv.conn);
    srv.conn = bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(srv.conn, server_read, NULL, NULL, NULL);
    bufferevent_enable(srv.conn, EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(srv.conn),
                        "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                        "SPID\t1\nCUID\t1\nCOOKIE\tc0ffee\nDONE\n");
}

static void on_answer(void *ctx, const struct auth_answer *a)
{
    struct result *r = ctx;
    assert_false(r->in_call);   /* never from inside a call of ours */
    r->calls++;
    r->result = a->result;
    snprintf(r->data, sizeof(r->data), "%s", a->data ? a->data : "");
    snprintf(r->user, sizeof(r->user), "%s", a->user ? a->user : "");
    snprintf(r->reason, sizeof(r->reason), "%s", a->reason ? a->reason : "");
    event_base_loopbreak(srv.base);
}

static void guard_expired(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(srv.base);
}

static void run_until_answer(struct result *r, int calls)
{
    struct timeval limit = {5, 0};
    struct event *guard = evtimer_new(srv.base, guard_expired, NULL);
    evtimer_add(guard, &limit);
    while (r->calls < calls && evtimer_pending(guard, NULL))
        event_base_loop(srv.base, EVLOOP_ONCE);
    event_free(guard);
    assert_int_equal(r->calls, calls);
}

static int client_setup(void **state)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memset(&srv, 0, sizeof(srv));
    srv.base = event_base_new();
    snprintf(sun.sun_path, sizeof(sun.sun_path), "/tmp/test_auth_client.%d", (int)getpid());
    unlink(sun.sun_path);
    srv.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (bind(srv.lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(srv.lfd, 8) < 0)
        return -1;
    srv.accept_ev = event_new(srv.base, srv.lfd, EV_READ | EV_PERSIST, server_accept, NULL);
    event_add(srv.accept_ev, NULL);
    srv.mode = "answer";
    struct auth_endpoint *ep = calloc(1, sizeof(*ep));
    char err[256];
    if (auth_endpoint_parse("test", sun.sun_path, ep, err, sizeof(err)) < 0)
        return -1;
    *state = ep;
    return 0;
}

static int client_teardown(void **state)
{
    struct auth_endpoint *ep = *state;
    unlink(((struct sockaddr_un *)&ep->addr)->sun_path);
    free(ep);
    if (srv.conn)
        bufferevent_free(srv.conn);
    event_free(srv.accept_ev);
    close(srv.lfd);
    event_base_free(srv.base);
    return 0;
}

static const struct auth_request_args args = {
    .mech = "PLAIN", .initial = "AGEAYg==", .local_ip = "127.0.0.1", .remote_ip = "127.0.0.2",
    .secured = 1,
};

static void test_exchange(void **state)
{
    struct auth_client *c = auth_client_new(srv.base, *state, "smtp", 1);
    struct result r = {0};
    assert_int_equal(auth_client_known(c), 0);
    /* Started before any connection: queued until the handshake is done. */
    r.in_call = 1;
    struct auth_request *q = auth_request_start(c, &args, on_answer, &r);
    r.in_call = 0;
    run_until_answer(&r, 1);
    assert_int_equal(r.result, AUTH_RESULT_CONTINUE);
    assert_string_equal(r.data, "Y2hhbGxlbmdl");
    assert_true(auth_client_known(c));
    const struct auth_mech *m;
    assert_int_equal(auth_client_mechs(c, &m), 2);
    assert_string_equal(m[1].name, "LOGIN");
    r.in_call = 1;
    auth_request_continue(q, "");
    r.in_call = 0;
    run_until_answer(&r, 2);
    assert_int_equal(r.result, AUTH_RESULT_OK);
    assert_string_equal(r.user, "alice@example.com");
    char expect[512];
    snprintf(expect, sizeof(expect),
             "VERSION\t1\t1\nCPID\t%d\nAUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\t"
             "rip=127.0.0.2\tsecured\tresp=AGEAYg==\nCONT\t1\t\n", (int)getpid());
    assert_string_equal(srv.got, expect);
    /* An invalid response never reaches the server. */
    struct auth_request_args bad = args;
    bad.initial = "not base64";
    auth_request_start(c, &bad, on_answer, &r);
    run_until_answer(&r, 3);
    assert_int_equal(r.result, AUTH_RESULT_FAIL);
    assert_string_equal(r.reason, "Invalid base64 data in initial response");
    auth_client_free(c);
}

static void test_deadline_lost_connection_and_abort(void **state)
{
    struct auth_client *c = auth_client_new(srv.base, *state, "smtp", 1);
    struct result r = {0}, silent = {0};
    /* No answer: a temporary failure after the deadline. */
    srv.mode = "silent";
    auth_request_start(c, &args, on_answer, &r);
    run_until_answer(&r, 1);
    assert_int_equal(r.result, AUTH_RESULT_TEMPFAIL);
    assert_string_equal(r.reason, "Connection lost to authentication server");
    /* An aborted request stays silent. */
    struct auth_request *q = auth_request_start(c, &args, on_answer, &silent);
    auth_request_abort(q);
    /* The server closes the connection: a temporary failure at once, and
     * the next request connects again. */
    srv.mode = "close";
    auth_request_start(c, &args, on_answer, &r);
    run_until_answer(&r, 2);
    assert_int_equal(r.result, AUTH_RESULT_TEMPFAIL);
    assert_int_equal(silent.calls, 0);
    srv.mode = "answer";
    auth_request_start(c, &args, on_answer, &r);
    run_until_answer(&r, 3);
    assert_int_equal(r.result, AUTH_RESULT_CONTINUE);
    assert_int_equal(srv.connections, 2);
    auth_client_free(c);
}

static void test_server_away(void **state)
{
    struct auth_endpoint ep = *(struct auth_endpoint *)*state;
    struct sockaddr_un *sun = (struct sockaddr_un *)&ep.addr;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "/nonexistent/postern-test/auth");
    struct auth_client *c = auth_client_new(srv.base, &ep, "smtp", 1);
    struct result r = {0};
    r.in_call = 1;
    auth_client_when_ready(c, on_answer, &r);
    auth_request_start(c, &args, on_answer, &r);
    r.in_call = 0;
    run_until_answer(&r, 2);
    assert_int_equal(r.result, AUTH_RESULT_TEMPFAIL);
    assert_int_equal(auth_client_known(c), 0);
    auth_client_free(c);
}

int main(void)
{
    char logpath[] = "/tmp/test_auth_client.log.XXXXXX";
    int fd = mkstemp(logpath);
    if (fd >= 0)
        close(fd);
    log_init("test_auth_client", 0);
    log_set_file(logpath);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_handshake),
        cmocka_unit_test(test_parse_replies),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test_setup_teardown(test_exchange, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_deadline_lost_connection_and_abort, client_setup,
                                        client_teardown),
        cmocka_unit_test_setup_teardown(test_server_away, client_setup, client_teardown),
    };
    int rc = cmocka_run_group_tests_name("auth_client", tests, NULL, NULL);
    log_set_file(NULL);
    unlink(logpath);
    return rc;
}
