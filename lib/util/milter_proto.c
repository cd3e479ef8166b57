/* milter_proto.c - the Sendmail milter protocol on the wire (milter_proto.h):
 * building packets, finding them in received bytes, and splitting reply
 * data into fields without reading past a packet's end.
 */
#include "milter_proto.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- writing --- */

static int reserve(struct milter_buf *b, size_t more)
{
    if (b->failed)
        return -1;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void milter_add_bytes(struct milter_buf *b, const void *data, size_t len)
{
    if (len == 0 || reserve(b, len) < 0)
        return;
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

void milter_add_str(struct milter_buf *b, const char *s)
{
    milter_add_bytes(b, s, strlen(s) + 1);
}

void milter_add_u32(struct milter_buf *b, uint32_t v)
{
    unsigned char n[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    milter_add_bytes(b, n, 4);
}

void milter_add_u16(struct milter_buf *b, uint16_t v)
{
    unsigned char n[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    milter_add_bytes(b, n, 2);
}

void milter_add_byte(struct milter_buf *b, int c)
{
    unsigned char ch = (unsigned char)c;
    milter_add_bytes(b, &ch, 1);
}

size_t milter_packet_begin(struct milter_buf *b, int cmd)
{
    size_t start = b->len;
    milter_add_u32(b, 0);   /* the length, once known */
    milter_add_byte(b, cmd);
    return start;
}

void milter_packet_end(struct milter_buf *b, size_t start)
{
    if (b->failed || b->len < start + 5)
        return;
    uint32_t len = (uint32_t)(b->len - start - 4);
    unsigned char *p = b->p + start;
    p[0] = (unsigned char)(len >> 24);
    p[1] = (unsigned char)(len >> 16);
    p[2] = (unsigned char)(len >> 8);
    p[3] = (unsigned char)len;
}

int milter_put_packet(struct milter_buf *b, int cmd, const void *data, size_t len)
{
    size_t start = milter_packet_begin(b, cmd);
    milter_add_bytes(b, data, len);
    milter_packet_end(b, start);
    return b->failed ? -1 : 0;
}

void milter_buf_reset(struct milter_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

void milter_buf_free(struct milter_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* --- reading --- */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

long milter_packet_peek(const unsigned char *buf, size_t avail, size_t max, int *cmd,
                        const unsigned char **data, size_t *dlen)
{
    if (avail < 4)
        return MILTER_PACKET_MORE;
    uint32_t len = get_u32(buf);
    *dlen = len;
    if (len == 0)
        return MILTER_PACKET_BAD;
    if (len > max)
        return MILTER_PACKET_TOOBIG;
    if (avail - 4 < len)
        return MILTER_PACKET_MORE;
    *cmd = buf[4];
    *data = buf + 5;
    *dlen = len - 1;
    return (long)len + 4;
}

/* A cursor over one packet's data. */
struct cursor {
    char *p;
    size_t left;
    const char **why;
};

static int take_u32(struct cursor *c, uint32_t *v)
{
    if (c->left < 4) {
        *c->why = "input packet too short for network long";
        return -1;
    }
    *v = get_u32((const unsigned char *)c->p);
    c->p += 4;
    c->left -= 4;
    return 0;
}

/* A NUL-terminated string inside the packet. */
static int take_str(struct cursor *c, const char **s)
{
    char *nul = c->left ? memchr(c->p, 0, c->left) : NULL;
    if (!nul) {
        *c->why = c->left ? "missing string null terminator" : "packet too short for string";
        return -1;
    }
    *s = c->p;
    c->left -= (size_t)(nul - c->p) + 1;
    c->p = nul + 1;
    return 0;
}

static int at_end(struct cursor *c)
{
    if (c->left) {
        *c->why = "left-over data in packet";
        return -1;
    }
    return 0;
}

/* ESMTP arguments after an address: none, one string, or (as libmilter
 * sends them) several strings, joined here with spaces. */
static int take_args(struct cursor *c, const char **args)
{
    *args = NULL;
    if (c->left == 0)
        return 0;
    if (take_str(c, args) < 0)
        return -1;
    while (c->left) {
        const char *more;
        char *end = c->p - 1;   /* the NUL before the next string */
        if (take_str(c, &more) < 0)
            return -1;
        *end = ' ';
    }
    return 0;
}

int milter_reply_parse(int cmd, char *data, size_t len, struct milter_reply *r, const char **why)
{
    struct cursor c = {data, len, why};
    memset(r, 0, sizeof(*r));
    r->cmd = cmd;
    switch (cmd) {
    case SMFIR_ACCEPT:
    case SMFIR_CONTINUE:
    case SMFIR_DISCARD:
    case SMFIR_PROGRESS:
    case SMFIR_REJECT:
    case SMFIR_TEMPFAIL:
    case SMFIR_SKIP:
    case SMFIR_SHUTDOWN:
    case SMFIR_CONN_FAIL:
        if (len) {
            *why = "reply was followed by data bytes";
            return -1;
        }
        return 0;
    case SMFIR_REPLYCODE:
    case SMFIR_QUARANTINE:
        return take_str(&c, &r->value) < 0 ? -1 : at_end(&c);
    case SMFIR_ADDHEADER:
        return take_str(&c, &r->name) < 0 || take_str(&c, &r->value) < 0 ? -1 : at_end(&c);
    case SMFIR_INSHEADER:
    case SMFIR_CHGHEADER:
        if (take_u32(&c, &r->index) < 0 || take_str(&c, &r->name) < 0 ||
            take_str(&c, &r->value) < 0)
            return -1;
        return at_end(&c);
    case SMFIR_ADDRCPT:
    case SMFIR_DELRCPT:
        return take_str(&c, &r->addr) < 0 ? -1 : at_end(&c);
    case SMFIR_ADDRCPT_PAR:
    case SMFIR_CHGFROM:
        return take_str(&c, &r->addr) < 0 ? -1 : take_args(&c, &r->args);
    case SMFIR_REPLBODY:
        r->body = (const unsigned char *)data;
        r->body_len = len;
        return 0;
    default:
        return 0;
    }
}

int milter_optneg_parse(char *data, size_t len, struct milter_optneg *o, const char **why)
{
    struct cursor c = {data, len, why};
    memset(o, 0, sizeof(*o));
    if (take_u32(&c, &o->version) < 0 || take_u32(&c, &o->actions) < 0 ||
        take_u32(&c, &o->protocol) < 0)
        return -1;
    while (c.left) {
        uint32_t stage;
        const char *names;
        if (take_u32(&c, &stage) < 0 || take_str(&c, &names) < 0)
            return -1;
        if (stage >= SMFIM_COUNT) {
            *why = "unknown macro stage in option negotiation";
            return -1;
        }
        if (strlen(names) > MILTER_MACRO_LIST_MAX) {
            *why = "macro list too long in option negotiation";
            return -1;
        }
        o->macros[stage] = names;
    }
    return 0;
}

/* --- reply texts --- */

/* One line of a reply: "DDD-" or "DDD " (or just "DDD" last) with the
 * enhanced code's class; code is the first line's, or 0 to set it. */
static int check_line(const char *line, size_t len, int last, char *code)
{
    if (len < 3 || (line[0] != '4' && line[0] != '5') || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]))
        return -1;
    if (code[0] && memcmp(code, line, 3) != 0)
        return -1;
    memcpy(code, line, 3);
    if (len == 3)
        return last ? 0 : -1;
    if (line[3] != (last ? ' ' : '-'))
        return -1;
    if (len < 6 || line[4] != line[0] || line[5] != '.')
        return -1;   /* an enhanced status code of the same class, as Postfix wants */
    for (size_t i = 4; i < len; i++)
        if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
            return -1;
    return 0;
}

int milter_reply_text_check(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    char code[4] = "";
    char line[1024];
    const char *p = in;
    for (;;) {
        const char *crlf = strstr(p, "\r\n");
        const char *end = crlf ? crlf : p + strlen(p);
        size_t n = 0;
        for (const char *q = p; q < end; q++) {
            /* "%%" is "%"; a lone '%' goes and the next byte stays, as in
             * Postfix */
            if (*q == '%' && ++q == end)
                break;
            if (n + 1 >= sizeof(line))
                return -1;
            line[n++] = *q;
        }
        if (check_line(line, n, crlf == NULL, code) < 0)
            return -1;
        if (o + n + 3 > outlen)
            return -1;
        memcpy(out + o, line, n);
        o += n;
        if (!crlf)
            break;
        memcpy(out + o, "\r\n", 2);
        o += 2;
        p = crlf + 2;
    }
    out[o] = 0;
    return 0;
}

/* --- moving packets --- */

void milter_rx_reset(struct milter_rx *rx)
{
    free(rx->pkt);
    memset(rx, 0, sizeof(*rx));
}

/* read(2) that tells EAGAIN from EOF and errors. */
static enum milter_rx_status read_some(int fd, void *buf, size_t len, size_t *got)
{
    ssize_t n = read(fd, buf, len);
    if (n > 0) {
        *got += (size_t)n;
        return MILTER_RX_MORE;
    }
    if (n == 0)
        return MILTER_RX_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MILTER_RX_MORE;
    return MILTER_RX_ERROR;
}

enum milter_rx_status milter_rx_read(struct milter_rx *rx, int fd, size_t max)
{
    enum milter_rx_status st;
    while (rx->hdr_have < 4) {
        size_t before = rx->hdr_have;
        if ((st = read_some(fd, rx->hdr + rx->hdr_have, 4 - rx->hdr_have, &rx->hdr_have)) !=
            MILTER_RX_MORE)
            return st;
        if (rx->hdr_have == before)
            return MILTER_RX_MORE;
    }
    if (!rx->pkt) {
        rx->len = get_u32(rx->hdr);
        if (rx->len == 0)
            return MILTER_RX_BAD;
        if (rx->len > max)
            return MILTER_RX_TOOBIG;
        if (!(rx->pkt = malloc(rx->len + 1))) {
            errno = ENOMEM;
            return MILTER_RX_ERROR;
        }
        rx->have = 0;
    }
    while (rx->have < rx->len) {
        size_t before = rx->have;
        if ((st = read_some(fd, rx->pkt + rx->have, rx->len - rx->have, &rx->have)) !=
            MILTER_RX_MORE)
            return st;
        if (rx->have == before)
            return MILTER_RX_MORE;
    }
    rx->pkt[rx->len] = 0;
    return MILTER_RX_DONE;
}

int milter_tx_write(const struct milter_buf *b, size_t *off, int fd)
{
    while (*off < b->len) {
        ssize_t n = send(fd, b->p + *off, b->len - *off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            return -1;
        }
        *off += (size_t)n;
    }
    return 1;
}

/* --- names for log lines --- */

struct name_code {
    int code;
    const char *name;
};

static const struct name_code commands[] = {
    {SMFIC_ABORT, "SMFIC_ABORT"},     {SMFIC_BODY, "SMFIC_BODY"},
    {SMFIC_CONNECT, "SMFIC_CONNECT"}, {SMFIC_MACRO, "SMFIC_MACRO"},
    {SMFIC_BODYEOB, "SMFIC_BODYEOB"}, {SMFIC_HELO, "SMFIC_HELO"},
    {SMFIC_QUIT_NC, "SMFIC_QUIT_NC"}, {SMFIC_HEADER, "SMFIC_HEADER"},
    {SMFIC_MAIL, "SMFIC_MAIL"},       {SMFIC_EOH, "SMFIC_EOH"},
    {SMFIC_OPTNEG, "SMFIC_OPTNEG"},   {SMFIC_QUIT, "SMFIC_QUIT"},
    {SMFIC_RCPT, "SMFIC_RCPT"},       {SMFIC_DATA, "SMFIC_DATA"},
    {SMFIC_UNKNOWN, "SMFIC_UNKNOWN"}, {0, NULL},
};

static const struct name_code replies[] = {
    {SMFIR_ADDRCPT, "SMFIR_ADDRCPT"},       {SMFIR_DELRCPT, "SMFIR_DELRCPT"},
    {SMFIR_ADDRCPT_PAR, "SMFIR_ADDRCPT_PAR"}, {SMFIR_SHUTDOWN, "SMFIR_SHUTDOWN"},
    {SMFIR_ACCEPT, "SMFIR_ACCEPT"},         {SMFIR_REPLBODY, "SMFIR_REPLBODY"},
    {SMFIR_CONTINUE, "SMFIR_CONTINUE"},     {SMFIR_DISCARD, "SMFIR_DISCARD"},
    {SMFIR_CHGFROM, "SMFIR_CHGFROM"},       {SMFIR_CONN_FAIL, "SMFIR_CONN_FAIL"},
    {SMFIR_ADDHEADER, "SMFIR_ADDHEADER"},   {SMFIR_INSHEADER, "SMFIR_INSHEADER"},
    {SMFIR_SETSYMLIST, "SMFIR_SETSYMLIST"}, {SMFIR_CHGHEADER, "SMFIR_CHGHEADER"},
    {SMFIR_PROGRESS, "SMFIR_PROGRESS"},     {SMFIR_QUARANTINE, "SMFIR_QUARANTINE"},
    {SMFIR_REJECT, "SMFIR_REJECT"},         {SMFIR_SKIP, "SMFIR_SKIP"},
    {SMFIR_TEMPFAIL, "SMFIR_TEMPFAIL"},     {SMFIR_REPLYCODE, "SMFIR_REPLYCODE"},
    {0, NULL},
};

static const char *lookup_name(const struct name_code *t, int code, const char *unknown)
{
    for (; t->name; t++)
        if (t->code == code)
            return t->name;
    return unknown;
}

const char *milter_command_name(int cmd)
{
    return lookup_name(commands, cmd, "(unknown MTA event)");
}

const char *milter_reply_name(int cmd)
{
    return lookup_name(replies, cmd, "(unknown filter reply)");
}
