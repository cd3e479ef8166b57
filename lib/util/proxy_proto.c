/* proxy_proto.c - the PROXY protocol header parser (proxy_proto.h).
 *
 * Version 1 is one text line, "PROXY TCP4|TCP6|UNKNOWN src dst sport
 * dport" CR LF, single spaces, addresses in their family's literal form,
 * ports in decimal without leading zeros. Version 2 is binary: a 12-byte
 * signature, version/command, family/transport, a 16-bit length, then the
 * addresses and optional TLVs (skipped). Anything else is refused: the
 * header decides which client restrictions apply to, so it is read
 * strictly.
 */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v2_signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                               0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_prefix[] = "PROXY ";

static long bad(const char **why, const char *text)
{
    *why = text;
    return -1;
}

/* A decimal port, no sign, no leading zero, at most 65535. */
static int parse_port(const char *p, size_t len, unsigned *port)
{
    if (len == 0 || len > 5 || (len > 1 && p[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = v;
    return 0;
}

static int parse_addr(int family, const char *p, size_t len, struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(text))
        return -1;
    memcpy(text, p, len);
    text[len] = 0;
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        return inet_pton(AF_INET, text, &sin->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1 ? 0 : -1;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((unsigned short)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((unsigned short)port);
}

/* The next space-separated field of line[*pos..end); -1 when empty. */
static int next_field(const char *line, size_t end, size_t *pos, const char **f, size_t *flen)
{
    size_t start = *pos, i = start;
    while (i < end && line[i] != ' ')
        i++;
    if (i == start)
        return -1;
    *f = line + start;
    *flen = i - start;
    *pos = i < end ? i + 1 : i;   /* one space, no more */
    return 0;
}

/* "PROXY ..." up to, not including, its CR LF at line[end]. */
static long parse_v1_line(const char *line, size_t end, struct proxy_header *out,
                          const char **why)
{
    size_t pos = sizeof(v1_prefix) - 1;
    const char *f;
    size_t flen;
    if (next_field(line, end, &pos, &f, &flen) < 0)
        return bad(why, "unsupported protocol type");
    if (flen == 7 && memcmp(f, "UNKNOWN", 7) == 0) {
        out->local = 1;   /* the rest of the line is to be ignored */
        return 0;
    }
    int family;
    if (flen == 4 && memcmp(f, "TCP4", 4) == 0)
        family = AF_INET;
    else if (flen == 4 && memcmp(f, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return bad(why, "unsupported protocol type");
    unsigned cport, sport;
    if (next_field(line, end, &pos, &f, &flen) < 0 ||
        parse_addr(family, f, flen, &out->client) < 0)
        return bad(why, "bad or missing client address");
    if (next_field(line, end, &pos, &f, &flen) < 0 ||
        parse_addr(family, f, flen, &out->server) < 0)
        return bad(why, "bad or missing server address");
    if (next_field(line, end, &pos, &f, &flen) < 0 || parse_port(f, flen, &cport) < 0)
        return bad(why, "bad or missing client port");
    if (next_field(line, end, &pos, &f, &flen) < 0 || parse_port(f, flen, &sport) < 0 ||
        pos != end)
        return bad(why, "bad or missing server port");
    set_port(&out->client, cport);
    set_port(&out->server, sport);
    return 0;
}

static long parse_v1(const unsigned char *buf, size_t len, struct proxy_header *out,
                     const char **why)
{
    size_t limit = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    for (size_t i = 0; i < limit; i++) {
        if (buf[i] == '\n')
            return bad(why, "bad line ending");
        if (buf[i] == 0 || buf[i] > 0x7e || (buf[i] < 0x20 && buf[i] != '\r'))
            return bad(why, "bad character in protocol header");
        if (buf[i] != '\r')
            continue;
        if (i + 1 >= len)
            return 0;   /* the LF may follow */
        if (buf[i + 1] != '\n')
            return bad(why, "bad line ending");
        if (parse_v1_line((const char *)buf, i, out, why) < 0)
            return -1;
        return (long)(i + 2);
    }
    if (len >= PROXY_V1_MAX)
        return bad(why, "line > 107 characters");
    return 0;
}

static void v2_addr(struct sockaddr_storage *ss, int family, const unsigned char *a,
                    const unsigned char *port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, a, 4);
        memcpy(&sin->sin_port, port, 2);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, a, 16);
        memcpy(&sin6->sin6_port, port, 2);
    }
}

static long parse_v2(const unsigned char *buf, size_t len, struct proxy_header *out,
                     const char **why)
{
    if (len < 16)
        return 0;
    if ((buf[12] & 0xf0) != 0x20)
        return bad(why, "unsupported protocol version");
    int cmd = buf[12] & 0x0f;
    if (cmd > 1)
        return bad(why, "unsupported command");
    size_t body = ((size_t)buf[14] << 8) | buf[15];
    if (16 + body > PROXY_V2_MAX)
        return bad(why, "short version 2 protocol header");
    if (len < 16 + body)
        return 0;
    long total = (long)(16 + body);
    if (cmd == 0) {   /* LOCAL: a health check, the connection's own addresses */
        out->local = 1;
        return total;
    }
    const unsigned char *a = buf + 16;
    switch (buf[13]) {
    case 0x11:   /* TCP over IPv4 */
        if (body < 12)
            return bad(why, "short version 2 protocol header");
        v2_addr(&out->client, AF_INET, a, a + 8);
        v2_addr(&out->server, AF_INET, a + 4, a + 10);
        return total;
    case 0x21:   /* TCP over IPv6 */
        if (body < 36)
            return bad(why, "short version 2 protocol header");
        v2_addr(&out->client, AF_INET6, a, a + 32);
        v2_addr(&out->server, AF_INET6, a + 16, a + 34);
        return total;
    case 0x00:   /* UNSPEC: the sender does not know; take the connection's */
        out->local = 1;
        return total;
    default:
        return bad(why, "unsupported v2 address family or transport");
    }
}

long proxy_header_parse(const unsigned char *buf, size_t len, struct proxy_header *out,
                        const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (len == 0)
        return 0;
    if (buf[0] == v2_signature[0]) {
        size_t n = len < sizeof(v2_signature) ? len : sizeof(v2_signature);
        if (memcmp(buf, v2_signature, n) != 0)
            return bad(why, "unrecognized protocol header");
        return n < sizeof(v2_signature) ? 0 : parse_v2(buf, len, out, why);
    }
    size_t n = len < sizeof(v1_prefix) - 1 ? len : sizeof(v1_prefix) - 1;
    if (memcmp(buf, v1_prefix, n) != 0)
        return bad(why, "unrecognized protocol header");
    return n < sizeof(v1_prefix) - 1 ? 0 : parse_v1(buf, len, out, why);
}
