/* xtext.c - RFC 3461 xtext decoding and encoding (xtext.h). */
#include "xtext.h"

static int hex_value(char c)
{
    /* RFC 3461 says upper-case hex; lower case is accepted, as Postfix
     * does, because some clients send it. */
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* xchar: "!" to "~" except "+" and "=". */
static int is_xchar(unsigned char c)
{
    return c >= '!' && c <= '~' && c != '+' && c != '=';
}

int xtext_decode(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen == 0)
        return XTEXT_TOO_LONG;
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '+') {
            int hi = hex_value(p[1]);
            int lo = hi < 0 ? -1 : hex_value(p[2]);
            if (lo < 0)
                return XTEXT_MALFORMED;
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
            if (c == 0 || c == '\r' || c == '\n')
                return XTEXT_CONTROL;
        } else if (!is_xchar(c)) {
            return XTEXT_MALFORMED;
        }
        if (n + 1 >= outlen)
            return XTEXT_TOO_LONG;
        out[n++] = (char)c;
    }
    out[n] = 0;
    return (int)n;
}

int xtext_encode(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (outlen == 0)
        return XTEXT_TOO_LONG;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        size_t need = is_xchar(*p) ? 1 : 3;
        if (n + need >= outlen)
            return XTEXT_TOO_LONG;
        if (need == 1) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '+';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = 0;
    return (int)n;
}
