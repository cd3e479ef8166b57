/* xforward_proto.c - parsing and formatting XFORWARD (xforward_proto.h).
 *
 * Each value is xtext-decoded and checked for its attribute as Postfix's
 * smtpd checks it: ADDR an IPv4 or IPv6 literal ("IPv6:" prefix allowed),
 * PORT digits, SOURCE LOCAL or REMOTE, NAME printable without spaces;
 * in HELO, PROTO and IDENT what is not printable becomes '?' (they reach
 * log lines and Received:). An unavailable value becomes "unknown"
 * (Postfix's word in log lines and Received:). A command is taken whole
 * or not at all; the replies are Postfix's.
 */
#include "xforward_proto.h"

#include "xtext.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const attr_names[XF_COUNT] = {"NAME",  "ADDR",  "PORT",  "PROTO",
                                                 "HELO",  "IDENT", "SOURCE"};

const char *xforward_attr_name(enum xforward_attr a)
{
    return (unsigned)a < XF_COUNT ? attr_names[a] : "";
}

static int attr_by_name(const char *name, size_t len)
{
    for (int i = 0; i < XF_COUNT; i++)
        if (strlen(attr_names[i]) == len && strncasecmp(attr_names[i], name, len) == 0)
            return i;
    return -1;
}

static int printable_word(const char *v)
{
    if (!*v)
        return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

static int all_digits(const char *v)
{
    size_t n = strlen(v);
    return n > 0 && strspn(v, "0123456789") == n;
}

/* Spaces and bytes outside printable ASCII become '?'. */
static void neuter(char *v)
{
    for (unsigned char *p = (unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            *p = '?';
}

/* The value as smtpd keeps it, or -1 when it is not valid for a. */
static int check_value(int a, char *v, size_t vlen)
{
    if (strcasecmp(v, XFORWARD_UNAVAILABLE) == 0 || strcasecmp(v, "[TEMPUNAVAIL]") == 0) {
        snprintf(v, vlen, "%s", a == XF_SOURCE || a == XF_IDENT ? "" : "unknown");
        return 0;
    }
    switch (a) {
    case XF_ADDR: {
        unsigned char buf[16];
        if (strncasecmp(v, "IPv6:", 5) == 0)
            memmove(v, v + 5, strlen(v + 5) + 1);
        return inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1 ? 0 : -1;
    }
    case XF_PORT:
        return all_digits(v) ? 0 : -1;
    case XF_SOURCE:
        return strcasecmp(v, "LOCAL") == 0 || strcasecmp(v, "REMOTE") == 0 ? 0 : -1;
    case XF_NAME:
        return printable_word(v) ? 0 : -1;
    default:
        if (!*v)
            return -1;
        neuter(v);
        return 0;
    }
}

int xforward_parse(const char *arg, struct xforward *xf, char *reply, size_t replylen)
{
    struct xforward next = *xf;
    const char *p = arg;
    int any = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        size_t wlen = strcspn(p, " \t");
        const char *eq = memchr(p, '=', wlen);
        if (!eq || eq == p) {
            snprintf(reply, replylen, "501 5.5.4 Error: attribute=value expected");
            return -1;
        }
        int a = attr_by_name(p, (size_t)(eq - p));
        if (a < 0) {
            snprintf(reply, replylen, "501 5.5.4 Bad XFORWARD attribute name: %.*s",
                     (int)(eq - p) > 64 ? 64 : (int)(eq - p), p);
            return -1;
        }
        char raw[XFORWARD_VALUE_MAX * 3];
        size_t vlen = wlen - (size_t)(eq + 1 - p);
        if (vlen >= sizeof(raw) ||
            (memcpy(raw, eq + 1, vlen), raw[vlen] = 0,
             xtext_decode(raw, next.value[a], sizeof(next.value[a])) < 0) ||
            check_value(a, next.value[a], sizeof(next.value[a])) < 0) {
            char shown[68];
            snprintf(shown, sizeof(shown), "%.*s", vlen > 64 ? 64 : (int)vlen, eq + 1);
            neuter(shown);
            snprintf(reply, replylen, "501 5.5.4 Bad %s syntax: %s", attr_names[a], shown);
            return -1;
        }
        next.given |= 1u << a;
        any = 1;
        p += wlen;
    }
    if (!any) {
        snprintf(reply, replylen, "501 5.5.4 Syntax: XFORWARD attribute=value...");
        return -1;
    }
    *xf = next;
    return 0;
}

unsigned xforward_offered(const char *args)
{
    unsigned mask = 0;
    const char *p = args;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t wlen = strcspn(p, " \t");
        int a = attr_by_name(p, wlen);
        if (a >= 0)
            mask |= 1u << a;
        p += wlen;
    }
    return mask;
}

/* " NAME=value" for one attribute, xtext-encoded; IPv6 addresses get
 * their "IPv6:" prefix as Postfix sends them. */
static void append_attr(char *line, size_t len, const struct xforward *xf, int a)
{
    char enc[XFORWARD_VALUE_MAX * 3 + 8], val[XFORWARD_VALUE_MAX + 8];
    const char *v = (xf->given & (1u << a)) && xf->value[a][0] &&
                            strcmp(xf->value[a], "unknown") != 0
                        ? xf->value[a]
                        : NULL;
    if (v && a == XF_ADDR && strchr(v, ':')) {
        snprintf(val, sizeof(val), "IPv6:%s", v);
        v = val;
    }
    if (!v || xtext_encode(v, enc, sizeof(enc)) < 0)
        snprintf(enc, sizeof(enc), "%s", XFORWARD_UNAVAILABLE);
    size_t used = strlen(line);
    /* A value whose encoding does not fit the line goes as unavailable:
     * the attribute is still sent, and a line is never left empty (found
     * by fuzz_xforward: a HELO of 255 bytes that all need encoding). */
    if (used + strlen(attr_names[a]) + strlen(enc) + 2 >= len)
        snprintf(enc, sizeof(enc), "%s", XFORWARD_UNAVAILABLE);
    if (used + strlen(attr_names[a]) + strlen(enc) + 2 < len)
        snprintf(line + used, len - used, " %s=%s", attr_names[a], enc);
}

size_t xforward_format(const struct xforward *xf, unsigned offered,
                       char lines[2][XFORWARD_LINE_MAX])
{
    static const int groups[2][4] = {{XF_NAME, XF_ADDR, XF_PORT, -1},
                                     {XF_PROTO, XF_HELO, XF_IDENT, XF_SOURCE}};
    size_t n = 0;
    for (int g = 0; g < 2; g++) {
        snprintf(lines[n], XFORWARD_LINE_MAX, "XFORWARD");
        int any = 0;
        for (int i = 0; i < 4 && groups[g][i] >= 0; i++) {
            if (!(offered & (1u << groups[g][i])))
                continue;
            append_attr(lines[n], XFORWARD_LINE_MAX, xf, groups[g][i]);
            any = 1;
        }
        if (any)
            n++;
    }
    return n;
}
