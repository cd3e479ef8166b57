/* test_milter.c - unit tests for lib/mail/milter.c, one milter session
 * without I/O: smtpd_milters lists with per-milter settings, endpoints,
 * the negotiation request for each protocol version and what the
 * milter's answer may and may not say, the packets of each event with
 * their macros, events a milter declined (SMFIP_NO*) or needs no reply to
 * (SMFIP_NR_*), what each reply means at each stage (Postfix's replies),
 * modifications only at the end of a message and only those negotiated,
 * the default actions after a failure, and a session handed to another
 * process and back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "unit_support.h"

#include "milter.h"

static int setup(void **state)
{
    unit_tmpdir_setup(state, "test_milter");
    struct fixture *f = *state;
    assert_int_equal(unit_load_queue_config(f->dir, "myhostname = mx.example\n"
                                                    "milter_command_timeout = 7s\n"),
                     0);
    return 0;
}

static int teardown(void **state)
{
    return unit_tmpdir_teardown(state);
}

/* --- settings --- */

static void test_list_parse(void **state)
{
    struct milter_settings s[4];
    char err[256];
    assert_int_equal(milter_list_parse("inet:127.0.0.1:8891, unix:/run/m.sock", s, 4, err,
                                       sizeof(err)),
                     2);
    assert_string_equal(s[0].spec, "inet:127.0.0.1:8891");
    assert_int_equal(s[0].command_timeout, 7);   /* milter_command_timeout */
    assert_int_equal(s[0].content_timeout, 300);
    assert_string_equal(s[0].default_action, "tempfail");
    assert_string_equal(s[0].protocol, "6");
    assert_string_equal(s[1].spec, "unix:/run/m.sock");
    assert_int_equal(milter_list_parse("{ inet:h:1, connect_timeout=10s, default_action=accept,"
                                       " { command_timeout = 1m }, protocol=2 } inet:h:2",
                                       s, 4, err, sizeof(err)),
                     2);
    assert_int_equal(s[0].connect_timeout, 10);
    assert_int_equal(s[0].command_timeout, 60);
    assert_string_equal(s[0].default_action, "accept");
    assert_string_equal(s[0].protocol, "2");
    assert_string_equal(s[1].default_action, "tempfail");   /* each its own */
    assert_int_equal(milter_list_parse("", s, 4, err, sizeof(err)), 0);
    /* Bad settings, too many milters. */
    assert_int_equal(milter_list_parse("{ inet:h:1, bogus=1 }", s, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bogus"));
    assert_int_equal(milter_list_parse("{ inet:h:1, connect_timeout=soon }", s, 4, err,
                                       sizeof(err)),
                     -1);
    assert_int_equal(milter_list_parse("{ inet:h:1, novalue }", s, 4, err, sizeof(err)), -1);
    assert_int_equal(milter_list_parse("a:1 b:2 c:3", s, 2, err, sizeof(err)), -1);
}

static void test_endpoints(void **state)
{
    char host[64], port[16];
    int is_unix;
    assert_int_equal(milter_endpoint("inet:127.0.0.1:8891", host, sizeof(host), port,
                                     sizeof(port), &is_unix),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "8891");
    assert_false(is_unix);
    assert_int_equal(milter_endpoint("inet:[::1]:25", host, sizeof(host), port, sizeof(port),
                                     &is_unix),
                     0);
    assert_string_equal(host, "::1");
    assert_int_equal(milter_endpoint("unix:/var/run/x", host, sizeof(host), port, sizeof(port),
                                     &is_unix),
                     0);
    assert_true(is_unix);
    assert_string_equal(host, "/var/run/x");
    assert_int_equal(milter_endpoint("local:/x", host, sizeof(host), port, sizeof(port),
                                     &is_unix),
                     0);
    const char *bad[] = {"inet:host", "inet::25", "inet:host:", "tcp:host:25", "nocolon", ":x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(milter_endpoint(bad[i], host, sizeof(host), port, sizeof(port),
                                         &is_unix),
                         -1);
}

/* --- negotiation --- */

static struct milter *session(const char *list)
{
    struct milter_settings s;
    char err[256];
    assert_int_equal(milter_list_parse(list, &s, 1, err, sizeof(err)), 1);
    struct milter *m = milter_new(&s);
    assert_non_null(m);
    return m;
}

static uint32_t u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Negotiate m with a milter answering version, actions, protocol and the
 * symbol lists (stage, names) in lists[]. */
static int negotiate(struct milter *m, uint32_t version, uint32_t actions, uint32_t protocol,
                     const char *eoh_list)
{
    struct milter_buf b = {0};
    if (milter_negotiate(m, &b) < 0) {
        milter_buf_free(&b);
        return -1;
    }
    milter_buf_free(&b);
    struct milter_buf r = {0};
    milter_add_u32(&r, version);
    milter_add_u32(&r, actions);
    milter_add_u32(&r, protocol);
    if (eoh_list) {
        milter_add_u32(&r, SMFIM_EOH);
        milter_add_str(&r, eoh_list);
    }
    int rc = milter_negotiated(m, SMFIC_OPTNEG, (char *)r.p, r.len);
    milter_buf_free(&r);
    return rc;
}

static void test_negotiation_request(void **state)
{
    struct milter_buf b = {0};
    struct milter *m = session("inet:h:1");
    assert_int_equal(milter_negotiate(m, &b), 0);
    assert_int_equal(b.len, 17);
    assert_int_equal(b.p[4], SMFIC_OPTNEG);
    assert_int_equal(u32(b.p + 5), 6);
    assert_int_equal(u32(b.p + 9), 0x1ff);
    /* every event, reply and extension, rejected recipients too (Postfix's) */
    assert_int_equal(u32(b.p + 13), 0x1fffff);
    milter_free(m);
    milter_buf_reset(&b);
    m = session("{ inet:h:1, protocol=2 }");
    assert_int_equal(milter_negotiate(m, &b), 0);
    assert_int_equal(u32(b.p + 5), 2);
    assert_int_equal(u32(b.p + 9), 0x1ff);   /* every action, whatever the version (Postfix) */
    assert_int_equal(u32(b.p + 13), 0x7f);
    milter_free(m);
    milter_buf_reset(&b);
    m = session("{ inet:h:1, { protocol = 4 no_header_reply } }");
    assert_int_equal(milter_negotiate(m, &b), 0);
    assert_int_equal(u32(b.p + 13), 0x3ff);
    milter_free(m);
    milter_buf_reset(&b);
    /* Postfix's versions only: 5 is a configuration problem. */
    m = session("{ inet:h:1, protocol=5 }");
    assert_int_equal(milter_negotiate(m, &b), -1);
    assert_int_equal(m->state, MILTER_ST_ERROR);
    assert_string_equal(milter_result(m), "451 4.3.5 Server configuration problem - try again later");
    milter_free(m);
    milter_buf_free(&b);
}

static void test_negotiation_answers(void **state)
{
    struct milter *m = session("inet:h:1");
    assert_int_equal(negotiate(m, 6, SMFIF_ADDHDRS, SMFIP_NOHELO, "i {client_addr}"), 0);
    assert_int_equal(m->state, MILTER_ST_READY);
    assert_string_equal(m->macros[SMFIM_EOH], "i {client_addr}");
    assert_string_equal(m->macros[SMFIM_EOM], "i");   /* milter_end_of_data_macros */
    milter_free(m);
    /* A newer version, actions not offered, the wrong reply. */
    m = session("{ inet:h:1, protocol=2 }");
    assert_int_equal(negotiate(m, 6, SMFIF_ADDHDRS, 0, NULL), -1);
    assert_int_equal(m->state, MILTER_ST_ERROR);
    assert_string_equal(milter_result(m), "451 4.7.1 Service unavailable - try again later");
    milter_free(m);
    m = session("{ inet:h:1, protocol=2 }");
    assert_int_equal(negotiate(m, 2, 0x200, 0, NULL), -1);   /* an action nobody offers */
    milter_free(m);
    m = session("{ inet:h:1, protocol=2 }");
    assert_int_equal(negotiate(m, 2, SMFIF_CHGFROM, 0, NULL), 0);   /* offered to every version */
    milter_free(m);
    m = session("{ inet:h:1, default_action=accept }");
    struct milter_buf b = {0};
    milter_negotiate(m, &b);
    assert_int_equal(milter_negotiated(m, SMFIR_CONTINUE, NULL, 0), -1);
    assert_null(milter_result(m));   /* accept: as if there were no milter */
    milter_buf_free(&b);
    milter_free(m);
}

/* --- events --- */

static const char *macro(void *ctx, const char *name)
{
    if (strcmp(name, "j") == 0)
        return "mx.example";
    if (strcmp(name, "{daemon_name}") == 0)
        return "ORIGINATING";
    return NULL;
}

static void test_connect_event_and_macros(void **state)
{
    struct milter *m = session("inet:h:1");
    assert_int_equal(negotiate(m, 6, 0, 0, NULL), 0);
    struct milter_buf b = {0};
    struct milter_args a = {.client_name = "c.example", .client_addr = "192.0.2.1",
                            .family = SMFIA_INET, .port = 2525};   /* 0x09dd */
    assert_int_equal(milter_event(m, MILTER_CONNECT, &a, macro, NULL, &b), MILTER_SEND);
    /* The macros the list names that have values, then the event. */
    static const unsigned char want[] = "\0\0\0\x29" "DC" "j\0mx.example\0{daemon_name}\0ORIGINATING\0"
                                        "\0\0\0\x18" "Cc.example\0" "4\x09\xdd" "192.0.2.1\0";
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.p, want, b.len);
    assert_int_equal(m->state, MILTER_ST_ENVELOPE);
    assert_int_equal(milter_reply(m, MILTER_CONNECT, SMFIR_CONTINUE, NULL, 0, NULL, NULL), 1);
    assert_null(milter_result(m));
    milter_buf_free(&b);
    milter_free(m);
}

static struct milter *connected(const char *list, uint32_t actions, uint32_t protocol)
{
    struct milter *m = session(list);
    assert_int_equal(negotiate(m, 6, actions, protocol, NULL), 0);
    struct milter_buf b = {0};
    struct milter_args a = {.client_name = "c", .client_addr = "192.0.2.1", .family = SMFIA_INET};
    assert_int_equal(milter_event(m, MILTER_CONNECT, &a, NULL, NULL, &b), MILTER_SEND);
    milter_reply(m, MILTER_CONNECT, SMFIR_CONTINUE, NULL, 0, NULL, NULL);
    milter_buf_free(&b);
    return m;
}

static void test_declined_and_unanswered_events(void **state)
{
    struct milter_buf b = {0};
    struct milter *m = connected("inet:h:1", 0, SMFIP_NOHELO | SMFIP_NR_MAIL | SMFIP_NOHDRS);
    struct milter_args helo = {.text = "x"};
    assert_int_equal(milter_event(m, MILTER_HELO, &helo, NULL, NULL, &b), MILTER_SKIP);
    assert_int_equal(b.len, 0);
    const char *argv[] = {"<a@b>", "SIZE=10", NULL};
    struct milter_args mail = {.argv = argv};
    assert_int_equal(milter_event(m, MILTER_MAIL, &mail, NULL, NULL, &b), MILTER_SEND_ONLY);
    assert_memory_equal(b.p, "\0\0\0\x0fM<a@b>\0SIZE=10\0", 19);
    milter_buf_reset(&b);
    struct milter_args hdr = {.name = "Subject", .value = " hi"};
    assert_int_equal(milter_event(m, MILTER_HEADER, &hdr, NULL, NULL, &b), MILTER_SKIP);
    milter_buf_reset(&b);
    /* Without SMFIP_HDR_LEADSPC the one space after the colon goes. */
    milter_free(m);
    m = connected("inet:h:1", 0, 0);
    assert_int_equal(milter_event(m, MILTER_HEADER, &hdr, NULL, NULL, &b), MILTER_SEND);
    assert_memory_equal(b.p, "\0\0\0\x0cLSubject\0hi\0", 16);
    milter_buf_free(&b);
    milter_free(m);
}

static void test_older_versions_get_no_newer_events(void **state)
{
    struct milter_buf b = {0};
    struct milter *m = session("{ inet:h:1, protocol=6 }");
    assert_int_equal(negotiate(m, 2, 0, 0, NULL), 0);   /* the milter speaks 2 */
    struct milter_args a = {.client_name = "c", .client_addr = "192.0.2.1", .family = SMFIA_INET};
    milter_event(m, MILTER_CONNECT, &a, NULL, NULL, &b);
    milter_reply(m, MILTER_CONNECT, SMFIR_CONTINUE, NULL, 0, NULL, NULL);
    milter_buf_reset(&b);
    struct milter_args none = {.text = "FOO"};
    assert_int_equal(milter_event(m, MILTER_DATA, &none, NULL, NULL, &b), MILTER_SKIP);
    assert_int_equal(milter_event(m, MILTER_UNKNOWN, &none, NULL, NULL, &b), MILTER_SKIP);
    assert_int_equal(b.len, 0);
    milter_buf_free(&b);
    milter_free(m);
}

/* Send ev and feed the one reply cmd/data; the result. */
static const char *answer(struct milter *m, enum milter_event ev, int cmd, const char *data,
                          size_t len)
{
    struct milter_buf b = {0};
    struct milter_args a = {.text = "x", .name = "X", .value = "y"};
    const char *argv[] = {"<a@b>", NULL};
    a.argv = argv;
    a.client_name = "c";
    a.client_addr = "192.0.2.1";
    a.family = SMFIA_INET;
    char copy[256];
    memcpy(copy, data, len);
    if (milter_event(m, ev, &a, NULL, NULL, &b) == MILTER_SEND)
        assert_int_equal(milter_reply(m, ev, cmd, copy, len, NULL, NULL), 1);
    milter_buf_free(&b);
    return milter_result(m);
}

static void test_replies_at_each_stage(void **state)
{
    struct milter *m = connected("inet:h:1", 0, 0);
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_REJECT, "", 0), "550 5.7.1 Command rejected");
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_TEMPFAIL, "", 0),
                        "451 4.7.1 Service unavailable - try again later");
    assert_string_equal(answer(m, MILTER_RCPT, SMFIR_REPLYCODE, "553 5.1.1 no %% way\0", 20),
                        "553 5.1.1 no % way");
    assert_string_equal(answer(m, MILTER_RCPT, SMFIR_DISCARD, "", 0), "D");
    /* The message is done for this milter; the next one is not. */
    assert_int_equal(m->state, MILTER_ST_ACCEPT_MSG);
    assert_null(answer(m, MILTER_DATA, SMFIR_REJECT, "", 0));
    assert_null(answer(m, MILTER_MAIL, SMFIR_CONTINUE, "", 0));
    assert_int_equal(m->state, MILTER_ST_ENVELOPE);
    assert_null(answer(m, MILTER_RCPT, SMFIR_ACCEPT, "", 0));
    assert_int_equal(m->state, MILTER_ST_ACCEPT_MSG);
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_SHUTDOWN, "", 0), "S");
    assert_true(milter_wants_close(m));
    milter_free(m);
    /* At CONNECT and HELO a rejection is for the whole connection. */
    m = session("inet:h:1");
    assert_int_equal(negotiate(m, 6, 0, 0, NULL), 0);
    assert_string_equal(answer(m, MILTER_CONNECT, SMFIR_TEMPFAIL, "", 0),
                        "451 4.7.1 Service unavailable - try again later");
    assert_true(milter_wants_close(m));
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_CONTINUE, "", 0),
                        "451 4.7.1 Service unavailable - try again later");
    milter_free(m);
    /* DISCARD is not allowed there: a configuration problem. */
    m = session("inet:h:1");
    assert_int_equal(negotiate(m, 6, 0, 0, NULL), 0);
    assert_string_equal(answer(m, MILTER_CONNECT, SMFIR_DISCARD, "", 0),
                        "451 4.3.5 Server configuration problem - try again later");
    milter_free(m);
    /* A malformed reply text, and one with data after CONTINUE. */
    m = connected("inet:h:1", 0, 0);
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_REPLYCODE, "250 ok\0", 7),
                        "451 4.3.5 Server configuration problem - try again later");
    milter_free(m);
    m = connected("inet:h:1", 0, 0);
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_CONTINUE, "xy", 2),
                        "451 4.7.1 Service unavailable - try again later");
    assert_int_equal(m->state, MILTER_ST_ERROR);
    milter_free(m);
}

static void test_default_actions(void **state)
{
    const char *actions[][2] = {
        {"accept", NULL},
        {"reject", "550 5.5.0 Service unavailable"},
        {"tempfail", "451 4.7.1 Service unavailable - try again later"},
        {"quarantine", "H"},
        {"bogus", "451 4.3.5 Server configuration problem - try again later"},
    };
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        char list[128];
        snprintf(list, sizeof(list), "{ inet:h:1, default_action=%s }", actions[i][0]);
        struct milter *m = connected(list, 0, 0);
        milter_comm_error(m);
        if (actions[i][1])
            assert_string_equal(milter_result(m), actions[i][1]);
        else
            assert_null(milter_result(m));
        /* and for every later event */
        struct milter_buf b = {0};
        assert_int_equal(milter_event(m, MILTER_RCPT, NULL, NULL, NULL, &b), MILTER_SKIP);
        if (actions[i][1])
            assert_string_equal(milter_result(m), actions[i][1]);
        milter_buf_free(&b);
        milter_free(m);
    }
}

/* --- modifications --- */

struct edits_seen {
    char log[512];
};

static const char *add_header(void *ctx, const char *name, const char *value)
{
    struct edits_seen *e = ctx;
    snprintf(e->log + strlen(e->log), sizeof(e->log) - strlen(e->log), "add %s=%s;", name, value);
    return NULL;
}

static const char *chg_header(void *ctx, uint32_t index, const char *name, const char *value)
{
    struct edits_seen *e = ctx;
    snprintf(e->log + strlen(e->log), sizeof(e->log) - strlen(e->log), "chg %u %s=%s;", index,
             name, value);
    return NULL;
}

static const char *add_rcpt(void *ctx, const char *addr, const char *args)
{
    return "451 4.3.0 Error: queue file write error";
}

static void test_modifications(void **state)
{
    struct milter_edits ed = {.add_header = add_header, .chg_header = chg_header,
                              .add_rcpt = add_rcpt};
    struct edits_seen seen = {""};
    struct milter *m = connected("inet:h:1", SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT, 0);
    struct milter_buf b = {0};
    assert_int_equal(milter_event(m, MILTER_EOM, NULL, NULL, NULL, &b), MILTER_SEND);
    char add[] = "X-A\0one\0", chg[] = "\0\0\0\0Subject\0new\0";
    assert_int_equal(milter_reply(m, MILTER_EOM, SMFIR_ADDHEADER, add, 8, &ed, &seen), 0);
    assert_int_equal(milter_reply(m, MILTER_EOM, SMFIR_PROGRESS, NULL, 0, &ed, &seen), 0);
    assert_int_equal(milter_reply(m, MILTER_EOM, SMFIR_CHGHEADER, chg, 16, &ed, &seen), 0);
    assert_int_equal(milter_reply(m, MILTER_EOM, SMFIR_ACCEPT, NULL, 0, &ed, &seen), 1);
    assert_null(milter_result(m));
    /* index 0 means the first, as in Sendmail */
    assert_string_equal(seen.log, "add X-A=one;chg 1 Subject=new;");
    assert_int_equal(m->state, MILTER_ST_ENVELOPE);   /* ready for the next message */
    /* An edit the callback cannot make becomes the answer. */
    milter_buf_reset(&b);
    milter_event(m, MILTER_EOM, NULL, NULL, NULL, &b);
    char rcpt[] = "<x@y>";
    assert_int_equal(milter_reply(m, MILTER_EOM, SMFIR_ADDRCPT, rcpt, 6, &ed, &seen), 1);
    assert_string_equal(milter_result(m), "451 4.3.0 Error: queue file write error");
    assert_true(milter_wants_close(m));
    milter_free(m);
    /* Not negotiated, or not at the end of the message: a protocol error. */
    m = connected("inet:h:1", SMFIF_ADDHDRS, 0);
    milter_buf_reset(&b);
    milter_event(m, MILTER_EOM, NULL, NULL, NULL, &b);
    assert_int_equal(milter_reply(m, MILTER_EOM, SMFIR_CHGFROM, rcpt, 6, &ed, &seen), 1);
    assert_int_equal(m->state, MILTER_ST_ERROR);
    milter_free(m);
    m = connected("inet:h:1", SMFIF_ADDHDRS, 0);
    milter_buf_reset(&b);
    struct milter_args none = {.text = "x"};
    milter_event(m, MILTER_DATA, &none, NULL, NULL, &b);
    assert_int_equal(milter_reply(m, MILTER_DATA, SMFIR_ADDHEADER, add, 8, &ed, &seen), 1);
    assert_int_equal(m->state, MILTER_ST_ERROR);
    milter_free(m);
    milter_buf_free(&b);
}

static void test_skip(void **state)
{
    struct milter *m = connected("inet:h:1", 0, SMFIP_SKIP);
    struct milter_buf b = {0};
    struct milter_args chunk = {.chunk = "abc", .chunk_len = 3};
    assert_int_equal(milter_event(m, MILTER_BODY, &chunk, NULL, NULL, &b), MILTER_SEND);
    assert_int_equal(milter_reply(m, MILTER_BODY, SMFIR_SKIP, NULL, 0, NULL, NULL), 1);
    assert_true(m->skip_body);
    milter_buf_reset(&b);
    assert_int_equal(milter_event(m, MILTER_BODY, &chunk, NULL, NULL, &b), MILTER_SKIP);
    assert_int_equal(milter_event(m, MILTER_EOM, NULL, NULL, NULL, &b), MILTER_SEND);
    milter_buf_free(&b);
    milter_free(m);
    /* SKIP without SMFIP_SKIP, or not for a body chunk, is a protocol error. */
    m = connected("inet:h:1", 0, 0);
    assert_string_equal(answer(m, MILTER_MAIL, SMFIR_SKIP, "", 0),
                        "451 4.7.1 Service unavailable - try again later");
    milter_free(m);
}

static void test_export_import(void **state)
{
    struct milter *m = connected("{ inet:127.0.0.1:9, default_action=accept, content_timeout=9 }",
                                 SMFIF_ADDHDRS, SMFIP_NR_HDR);
    char text[2048];
    assert_int_equal(milter_export(m, text, sizeof(text)), 0);
    struct milter *back = milter_import(text);
    assert_non_null(back);
    assert_string_equal(back->set.spec, "inet:127.0.0.1:9");
    assert_string_equal(back->set.default_action, "accept");
    assert_int_equal(back->set.content_timeout, 9);
    assert_int_equal(back->version, 6);
    assert_int_equal(back->actions, SMFIF_ADDHDRS);
    assert_int_equal(back->protocol, SMFIP_NR_HDR);
    assert_int_equal(back->state, MILTER_ST_ENVELOPE);
    assert_string_equal(back->macros[SMFIM_EOM], "i");
    assert_int_equal(back->fd, -1);
    milter_free(back);
    assert_null(milter_import("garbage"));
    assert_null(milter_import("1 2 3 4 99 1 1 1\na\nb\nc\nd\n\n"));   /* no such state */
    milter_free(m);
    char shown[64];
    milter_printable("550-5.7.1 a\r\n550 5.7.1 b", shown, sizeof(shown));
    assert_string_equal(shown, "550-5.7.1 a??550 5.7.1 b");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negotiation_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negotiation_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_event_and_macros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declined_and_unanswered_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_versions_get_no_newer_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replies_at_each_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import, setup, teardown),
    };
    return cmocka_run_group_tests_name("milter", tests, NULL, NULL);
}
