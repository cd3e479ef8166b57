/* test_milter_proto.c - unit tests for lib/util/milter_proto.c, the milter
 * protocol on the wire: packets built and found again, every reply's
 * fields split within the packet (strings without their NUL, left-over
 * bytes and short packets refused), SMFIC_OPTNEG with symbol lists, reply
 * texts checked as Postfix checks them, and the packet reader and writer
 * on a socket pair: a packet in pieces, the end of the connection, bad
 * lengths, and never a byte read past the end of a packet.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "milter_proto.h"

/* A reply's data as milter_reply_parse gets it: a writable copy. */
static int parse(int cmd, const void *data, size_t len, struct milter_reply *r, const char **why)
{
    static char buf[512];
    memcpy(buf, data, len);
    return milter_reply_parse(cmd, buf, len, r, why);
}

static void test_packets_built_and_found(void **state)
{
    struct milter_buf b = {0};
    size_t start = milter_packet_begin(&b, SMFIC_CONNECT);
    milter_add_str(&b, "host");
    milter_add_byte(&b, SMFIA_INET);
    milter_add_u16(&b, 25);
    milter_add_str(&b, "192.0.2.1");
    milter_packet_end(&b, start);
    assert_int_equal(milter_put_packet(&b, SMFIC_QUIT, NULL, 0), 0);
    static const unsigned char want[] = {0, 0, 0, 19, 'C', 'h', 'o', 's', 't', 0, '4', 0, 25,
                                         '1', '9', '2', '.', '0', '.', '2', '.', '1', 0,
                                         0, 0, 0, 1, 'Q'};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.p, want, sizeof(want));

    int cmd;
    const unsigned char *data;
    size_t dlen;
    assert_int_equal(milter_packet_peek(b.p, b.len, 100, &cmd, &data, &dlen), 23);
    assert_int_equal(cmd, 'C');
    assert_int_equal(dlen, 18);
    assert_ptr_equal(data, b.p + 5);
    assert_int_equal(milter_packet_peek(b.p + 23, 5, 100, &cmd, &data, &dlen), 5);
    assert_int_equal(cmd, 'Q');
    assert_int_equal(dlen, 0);
    /* Incomplete, too big for the limit, empty. */
    assert_int_equal(milter_packet_peek(b.p, 3, 100, &cmd, &data, &dlen), MILTER_PACKET_MORE);
    assert_int_equal(milter_packet_peek(b.p, 22, 100, &cmd, &data, &dlen), MILTER_PACKET_MORE);
    assert_int_equal(milter_packet_peek(b.p, b.len, 10, &cmd, &data, &dlen), MILTER_PACKET_TOOBIG);
    static const unsigned char empty[] = {0, 0, 0, 0, 'c'};
    assert_int_equal(milter_packet_peek(empty, 5, 100, &cmd, &data, &dlen), MILTER_PACKET_BAD);
    milter_buf_free(&b);
}

static void test_simple_replies(void **state)
{
    struct milter_reply r;
    const char *why;
    const int simple[] = {SMFIR_ACCEPT, SMFIR_CONTINUE, SMFIR_DISCARD, SMFIR_PROGRESS,
                          SMFIR_REJECT, SMFIR_TEMPFAIL, SMFIR_SKIP, SMFIR_SHUTDOWN};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        assert_int_equal(parse(simple[i], "", 0, &r, &why), 0);
        assert_int_equal(r.cmd, simple[i]);
        /* No data is allowed after them. */
        assert_int_equal(parse(simple[i], "x", 1, &r, &why), -1);
    }
}

static void test_replies_with_fields(void **state)
{
    struct milter_reply r;
    const char *why;
    assert_int_equal(parse(SMFIR_REPLYCODE, "550 5.7.1 no\0", 13, &r, &why), 0);
    assert_string_equal(r.value, "550 5.7.1 no");
    assert_int_equal(parse(SMFIR_ADDHEADER, "X-A\0v a\0", 8, &r, &why), 0);
    assert_string_equal(r.name, "X-A");
    assert_string_equal(r.value, "v a");
    assert_int_equal(parse(SMFIR_INSHEADER, "\0\0\0\2X\0y\0", 8, &r, &why), 0);
    assert_int_equal(r.index, 2);
    assert_string_equal(r.name, "X");
    assert_string_equal(r.value, "y");
    assert_int_equal(parse(SMFIR_CHGHEADER, "\0\0\1\0S\0\0", 7, &r, &why), 0);
    assert_int_equal(r.index, 256);
    assert_string_equal(r.value, "");
    assert_int_equal(parse(SMFIR_ADDRCPT, "<a@b>\0", 6, &r, &why), 0);
    assert_string_equal(r.addr, "<a@b>");
    assert_null(r.args);
    /* ESMTP arguments as one string or several, joined with spaces. */
    assert_int_equal(parse(SMFIR_ADDRCPT_PAR, "<a@b>\0NOTIFY=NEVER\0ORCPT=x;y\0", 29, &r, &why), 0);
    assert_string_equal(r.addr, "<a@b>");
    assert_string_equal(r.args, "NOTIFY=NEVER ORCPT=x;y");
    assert_int_equal(parse(SMFIR_CHGFROM, "<s@x>\0", 6, &r, &why), 0);
    assert_null(r.args);
    assert_int_equal(parse(SMFIR_REPLBODY, "any\0bytes", 9, &r, &why), 0);
    assert_int_equal(r.body_len, 9);
    assert_int_equal(parse(SMFIR_QUARANTINE, "why\0", 4, &r, &why), 0);
    assert_string_equal(r.value, "why");
}

static void test_malformed_replies(void **state)
{
    struct milter_reply r;
    const char *why = NULL;
    /* A string without its NUL, short numbers, left-over bytes. */
    assert_int_equal(parse(SMFIR_REPLYCODE, "550 5.7.1 no", 12, &r, &why), -1);
    assert_non_null(why);
    assert_int_equal(parse(SMFIR_REPLYCODE, "", 0, &r, &why), -1);
    assert_int_equal(parse(SMFIR_ADDHEADER, "X\0", 2, &r, &why), -1);
    assert_int_equal(parse(SMFIR_INSHEADER, "\0\0\0", 3, &r, &why), -1);
    assert_int_equal(parse(SMFIR_CHGHEADER, "\0\0\0\1X\0y", 7, &r, &why), -1);
    assert_int_equal(parse(SMFIR_ADDRCPT, "<a@b>\0x", 7, &r, &why), -1);
    assert_int_equal(parse(SMFIR_DELRCPT, "<a@b>\0\0", 7, &r, &why), -1);
    assert_int_equal(parse(SMFIR_ADDRCPT_PAR, "<a@b>\0args", 10, &r, &why), -1);
    /* An unknown reply parses with no fields: what it means is the
     * session's business. */
    assert_int_equal(parse('Z', "zz", 2, &r, &why), 0);
    assert_int_equal(r.cmd, 'Z');
}

static void test_optneg(void **state)
{
    struct milter_optneg o;
    const char *why;
    char plain[] = {0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff};
    assert_int_equal(milter_optneg_parse(plain, sizeof(plain), &o, &why), 0);
    assert_int_equal(o.version, 6);
    assert_int_equal(o.actions, 0x1ff);
    assert_int_equal(o.protocol, 0x1fffff);
    for (int i = 0; i < SMFIM_COUNT; i++)
        assert_null(o.macros[i]);
    char lists[] = "\0\0\0\2\0\0\0\1\0\0\0\0"
                   "\0\0\0\0j {client_addr}\0"
                   "\0\0\0\6i\0";
    assert_int_equal(milter_optneg_parse(lists, sizeof(lists) - 1, &o, &why), 0);
    assert_string_equal(o.macros[SMFIM_CONNECT], "j {client_addr}");
    assert_string_equal(o.macros[SMFIM_EOH], "i");
    assert_null(o.macros[SMFIM_HELO]);
    /* Short, an unknown stage, a list without its NUL. */
    assert_int_equal(milter_optneg_parse(plain, 11, &o, &why), -1);
    char stage[] = "\0\0\0\2\0\0\0\1\0\0\0\0\0\0\0\7x\0";
    assert_int_equal(milter_optneg_parse(stage, sizeof(stage) - 1, &o, &why), -1);
    char open[] = "\0\0\0\2\0\0\0\1\0\0\0\0\0\0\0\1x";
    assert_int_equal(milter_optneg_parse(open, sizeof(open) - 1, &o, &why), -1);
    /* A list longer than MILTER_MACRO_LIST_MAX. */
    size_t n = 16 + MILTER_MACRO_LIST_MAX + 2;
    char *big = calloc(1, n);
    memcpy(big, "\0\0\0\2\0\0\0\1\0\0\0\0\0\0\0\1", 16);
    memset(big + 16, 'm', MILTER_MACRO_LIST_MAX + 1);
    assert_int_equal(milter_optneg_parse(big, n, &o, &why), -1);
    free(big);
}

static void test_reply_texts(void **state)
{
    char out[256];
    assert_int_equal(milter_reply_text_check("550 5.7.1 no thanks", out, sizeof(out)), 0);
    assert_string_equal(out, "550 5.7.1 no thanks");
    assert_int_equal(milter_reply_text_check("451 4.7.1", out, sizeof(out)), 0);
    assert_int_equal(milter_reply_text_check("554-5.7.1 one\r\n554 5.7.1 two", out, sizeof(out)),
                     0);
    assert_string_equal(out, "554-5.7.1 one\r\n554 5.7.1 two");
    /* libmilter's replies are printf formats: %% is one %, a lone % goes. */
    assert_int_equal(milter_reply_text_check("553 5.7.0 50%% off %d", out, sizeof(out)), 0);
    assert_string_equal(out, "553 5.7.0 50% off d");
    const char *bad[] = {
        "250 2.0.0 ok",              /* not 4xx or 5xx */
        "550 no enhanced code",      /* Postfix wants one, of the same class */
        "550 4.7.1 wrong class",
        "55 5.7.1 short",
        "5x0 5.7.1 digits",
        "550-5.7.1 last line with a dash",
        "550 5.7.1 one\r\n550 5.7.1 two",   /* ' ' before the last line */
        "550-5.7.1 one\r\n551 5.7.1 two",   /* codes that differ */
        "550 5.7.1 bare\nLF",
        "550 5.7.1 trailing\r\n",
        "550 5.7.1 ctl\x01",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(milter_reply_text_check(bad[i], out, sizeof(out)), -1);
    assert_int_equal(milter_reply_text_check("550 5.7.1 fits?", out, 10), -1);
}

static void test_names(void **state)
{
    assert_string_equal(milter_command_name(SMFIC_BODYEOB), "SMFIC_BODYEOB");
    assert_string_equal(milter_command_name('z'), "(unknown MTA event)");
    assert_string_equal(milter_reply_name(SMFIR_REPLYCODE), "SMFIR_REPLYCODE");
    assert_string_equal(milter_reply_name('z'), "(unknown filter reply)");
}

static void nonblocking_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

static void test_rx_reads_exactly_one_packet(void **state)
{
    int sv[2];
    struct milter_rx rx = {0};
    nonblocking_pair(sv);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_MORE);
    /* In pieces: two bytes of the length, then the rest and the next one. */
    assert_int_equal(write(sv[1], "\0\0", 2), 2);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_MORE);
    assert_int_equal(write(sv[1], "\0\4y45", 5), 5);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_MORE);
    assert_int_equal(write(sv[1], "0NEXT", 5), 5);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_DONE);
    assert_int_equal(rx.len, 4);
    assert_memory_equal(rx.pkt, "y450", 5);   /* NUL-terminated */
    milter_rx_reset(&rx);
    /* The bytes after the packet are still in the socket. */
    char rest[8];
    assert_int_equal(read(sv[0], rest, sizeof(rest)), 4);
    assert_memory_equal(rest, "NEXT", 4);
    close(sv[0]);
    close(sv[1]);
}

static void test_rx_bad_lengths_and_eof(void **state)
{
    int sv[2];
    struct milter_rx rx = {0};
    nonblocking_pair(sv);
    assert_int_equal(write(sv[1], "\0\0\0\0", 4), 4);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_BAD);
    milter_rx_reset(&rx);
    assert_int_equal(write(sv[1], "\x7f\xff\xff\xff", 4), 4);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_TOOBIG);
    assert_int_equal(rx.len, 0x7fffffff);
    milter_rx_reset(&rx);
    assert_int_equal(write(sv[1], "\0\0\0\5abc", 7), 7);
    close(sv[1]);
    assert_int_equal(milter_rx_read(&rx, sv[0], 100), MILTER_RX_EOF);
    milter_rx_reset(&rx);
    close(sv[0]);
}

static void test_tx_writes_until_full(void **state)
{
    int sv[2];
    struct milter_buf b = {0};
    size_t off = 0;
    nonblocking_pair(sv);
    int size = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    char *big = calloc(1, 1 << 20);
    milter_put_packet(&b, SMFIC_BODY, big, 1 << 20);
    /* The socket takes part of it; the rest waits for writability. */
    assert_int_equal(milter_tx_write(&b, &off, sv[0]), 0);
    assert_true(off > 0 && off < b.len);
    size_t got = 0;
    while (off < b.len) {
        ssize_t n = read(sv[1], big, 1 << 20);
        if (n > 0)
            got += (size_t)n;
        assert_int_not_equal(milter_tx_write(&b, &off, sv[0]), -1);
    }
    ssize_t n;
    while ((n = read(sv[1], big, 1 << 20)) > 0)
        got += (size_t)n;
    assert_int_equal(got, b.len);
    /* A peer gone: an error, not a SIGPIPE. */
    close(sv[1]);
    off = 0;
    assert_int_equal(milter_tx_write(&b, &off, sv[0]), -1);
    free(big);
    milter_buf_free(&b);
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packets_built_and_found),
        cmocka_unit_test(test_simple_replies),
        cmocka_unit_test(test_replies_with_fields),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_optneg),
        cmocka_unit_test(test_reply_texts),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_rx_reads_exactly_one_packet),
        cmocka_unit_test(test_rx_bad_lengths_and_eof),
        cmocka_unit_test(test_tx_writes_until_full),
    };
    return cmocka_run_group_tests_name("milter_proto", tests, NULL, NULL);
}
