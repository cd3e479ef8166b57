/* fuzz_milter_reply.c - libFuzzer target for what a milter sends back:
 * lib/util/milter_proto.c (packet framing, milter_reply_parse,
 * milter_optneg_parse, milter_reply_text_check) and lib/mail/milter.c
 * (milter_negotiated, milter_reply: what each reply means, the edits at
 * the end of a message). Every byte a milter sends goes through these.
 *
 * Input: one byte choosing the event the replies answer (and whether the
 * first packet is taken as the negotiation answer), then the milter's
 * output, split into packets as smtpd and cleanup split it.
 * Properties: a packet is found only when all its bytes are there, with
 * its data inside the input; parsed fields lie inside the packet and end
 * before its end; a checked reply text has one 4xx/5xx code on every line,
 * CR LF only between lines and no other control bytes; the session's
 * answer is NULL or one of Postfix's forms (4xx/5xx reply, D, H..., S);
 * edits reach the callbacks only at the end of a message, with their
 * strings set; nothing leaks.
 */
#include "fuzz.h"
#include "milter.h"
#include "milter_proto.h"

static const char *packet_start, *packet_end;

static void check_in_packet(const char *s)
{
    if (!s)
        return;
    FUZZ_ASSERT(s >= packet_start && s < packet_end);
    FUZZ_ASSERT(s + strlen(s) < packet_end);
}

static const char *add_header(void *ctx, const char *name, const char *value)
{
    check_in_packet(name);
    check_in_packet(value);
    return NULL;
}

static const char *ins_header(void *ctx, uint32_t index, const char *name, const char *value)
{
    return add_header(ctx, name, value);
}

static const char *chg_header(void *ctx, uint32_t index, const char *name, const char *value)
{
    FUZZ_ASSERT(index >= 1 && *name);
    return add_header(ctx, name, value);
}

static const char *rcpt_edit(void *ctx, const char *addr, const char *args)
{
    check_in_packet(addr);
    check_in_packet(args);
    /* Now and then an edit fails: the answer is then that reply. */
    return addr && addr[0] == '!' ? "451 4.3.0 Error: queue file write error" : NULL;
}

static const char *del_rcpt(void *ctx, const char *addr)
{
    return rcpt_edit(ctx, addr, NULL);
}

static const char *repl_body(void *ctx, int first, const unsigned char *data, size_t len)
{
    FUZZ_ASSERT((const char *)data >= packet_start && (const char *)data + len <= packet_end);
    return NULL;
}

static const char *quarantine(void *ctx, const char *reason)
{
    check_in_packet(reason);
    return NULL;
}

static const struct milter_edits edits = {add_header, ins_header, chg_header, rcpt_edit,
                                          del_rcpt,   rcpt_edit,  repl_body,  quarantine};

static void check_answer(const char *r)
{
    if (!r)
        return;
    FUZZ_ASSERT(strchr("45DHS", r[0]) != NULL);
    if (r[0] == '4' || r[0] == '5') {
        FUZZ_ASSERT(strlen(r) >= 3);
        for (const char *p = r; *p; p++) {
            if (*p == '\r') {
                FUZZ_ASSERT(p[1] == '\n' && p[2] && p[2] == r[0]);
                FUZZ_ASSERT(memcmp(p + 2, r, 3) == 0);
            } else {
                FUZZ_ASSERT(*p == '\n' ? p > r && p[-1] == '\r' : (unsigned char)*p >= 0x20 || *p == '\t');
            }
        }
    }
}

static void check_fields(const struct milter_reply *r)
{
    check_in_packet(r->name);
    check_in_packet(r->value);
    check_in_packet(r->addr);
    check_in_packet(r->args);
    if (r->body)
        FUZZ_ASSERT((const char *)r->body + r->body_len <= packet_end);
    if (r->cmd == SMFIR_REPLYCODE && r->value) {
        char out[MILTER_REPLY_MAX];
        if (milter_reply_text_check(r->value, out, sizeof(out)) == 0)
            check_answer(out);
    }
}

static struct milter *new_session(int version)
{
    struct milter_settings s;
    memset(&s, 0, sizeof(s));
    snprintf(s.spec, sizeof(s.spec), "inet:127.0.0.1:1");
    s.connect_timeout = s.command_timeout = s.content_timeout = 1;
    snprintf(s.default_action, sizeof(s.default_action), "tempfail");
    snprintf(s.protocol, sizeof(s.protocol), "%d", version);
    return milter_new(&s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_milter_reply");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const enum milter_event events[] = {MILTER_CONNECT, MILTER_HELO, MILTER_MAIL,
                                               MILTER_RCPT,    MILTER_DATA, MILTER_UNKNOWN,
                                               MILTER_HEADER,  MILTER_EOH,  MILTER_BODY,
                                               MILTER_EOM};
    enum milter_event ev = events[(data[0] & 0x7f) % (sizeof(events) / sizeof(events[0]))];
    int negotiate = data[0] & 0x80;
    struct milter *m = new_session(data[0] & 0x40 ? 2 : 6);
    struct milter_buf out = {0};
    FUZZ_ASSERT(milter_negotiate(m, &out) == 0);
    if (!negotiate) {
        /* as negotiated by a milter that may do anything */
        m->state = MILTER_ST_READY;
        m->actions = 0x1ff;
        m->protocol = SMFIP_SKIP;
    }
    size_t pos = 1;
    int done = 0;
    while (!done && pos < size) {
        int cmd;
        const unsigned char *pdata;
        size_t dlen;
        long n = milter_packet_peek(data + pos, size - pos, MILTER_PACKET_MAX, &cmd, &pdata, &dlen);
        if (n <= 0)
            break;
        FUZZ_ASSERT((size_t)n == dlen + 5 && pos + (size_t)n <= size);
        FUZZ_ASSERT(pdata == data + pos + 5);
        /* A private copy of exactly the data, as the readers give it. */
        char *copy = malloc(dlen + 1);
        memcpy(copy, pdata, dlen);
        copy[dlen] = 0;
        packet_start = copy;
        packet_end = copy + dlen + 1;
        struct milter_reply r;
        const char *why;
        char *copy2 = malloc(dlen + 1);
        memcpy(copy2, copy, dlen + 1);
        if (milter_reply_parse(cmd, copy2, dlen, &r, &why) == 0) {
            const char *s0 = packet_start, *e0 = packet_end;
            packet_start = copy2;
            packet_end = copy2 + dlen + 1;
            check_fields(&r);
            packet_start = s0;
            packet_end = e0;
        } else {
            FUZZ_ASSERT(why && *why);
        }
        free(copy2);
        if (negotiate) {
            negotiate = 0;
            if (milter_negotiated(m, cmd, copy, dlen) < 0)
                done = 1;
            else if (ev != MILTER_CONNECT) {
                m->state = MILTER_ST_ENVELOPE;
            }
        } else {
            if (m->state == MILTER_ST_READY && ev != MILTER_CONNECT)
                m->state = MILTER_ST_ENVELOPE;
            if (ev >= MILTER_HEADER && m->state == MILTER_ST_ENVELOPE)
                m->state = MILTER_ST_MESSAGE;
            done = milter_reply(m, ev, cmd, copy, dlen, &edits, NULL);
            FUZZ_ASSERT(done == 0 || done == 1);
            if (done)
                check_answer(milter_result(m));
        }
        free(copy);
        pos += (size_t)n;
    }
    milter_buf_free(&out);
    milter_free(m);
    return 0;
}
