/* lookup_reply.c - request encoding and reply parsing of the tcp: and
 * socketmap: table protocols (lookup_reply.h). Whatever a server sends is
 * checked here before a table type believes it: a reply that breaks the
 * protocol is a temporary failure with a printable reason, never a value.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "lookup_reply.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bounded, printable copy of untrusted text for a log line. */
static void printable(char *out, size_t outlen, const char *s, size_t len)
{
    size_t n = 0;

    if (outlen == 0)
        return;
    for (size_t i = 0; i < len && n + 1 < outlen && i < 100; i++)
        out[n++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    out[n] = 0;
}

static int needs_encoding(unsigned char c)
{
    return c == '%' || c <= ' ' || c >= 127;
}

char *lookup_tcp_request(const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(key), n = 0;
    char *out = lookup_xmalloc(len * 3 + 6);

    memcpy(out, "get ", 4);
    n = 4;
    for (const unsigned char *p = (const unsigned char *)key; *p != 0; p++) {
        if (needs_encoding(*p)) {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n++] = '\n';
    out[n] = 0;
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* %XX-decode [s, s+len) into a malloc'd string; NULL when an escape is
 * broken or decodes to a NUL byte. */
static char *tcp_decode(const char *s, size_t len)
{
    char *out = lookup_xmalloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == 0) {
            free(out);
            return NULL;
        }
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len || (hi = hex_value(s[i + 1])) < 0 || (lo = hex_value(s[i + 2])) < 0
            || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = 0;
    return out;
}

int lookup_tcp_reply(const char *line, size_t len, char **value, char *why, size_t whylen)
{
    const char *text = line + 4;
    size_t tlen = len >= 4 ? len - 4 : 0;

    *value = NULL;
    if (len < 4 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1])
        || !isdigit((unsigned char)line[2]) || line[3] != ' ') {
        printable(why, whylen, line, len);
        return LOOKUP_TEMPFAIL;
    }
    if (memcmp(line, "500", 3) == 0)
        return LOOKUP_NOTFOUND;
    if (memcmp(line, "200", 3) != 0) {
        printable(why, whylen, line, len);
        return LOOKUP_TEMPFAIL;
    }
    if ((*value = tcp_decode(text, tlen)) == NULL) {
        lookup_set_err(why, whylen, "malformed encoding in reply");
        return LOOKUP_TEMPFAIL;
    }
    return LOOKUP_FOUND;
}

char *lookup_socketmap_request(const char *name, const char *key, size_t *len)
{
    size_t payload = strlen(name) + 1 + strlen(key);
    size_t cap = payload + 32;
    char *out = lookup_xmalloc(cap);
    int n = snprintf(out, cap, "%zu:%s %s,", payload, name, key);

    *len = (size_t)n;
    return out;
}

int lookup_netstring(const char *buf, size_t len, size_t max, const char **data, size_t *dlen,
                     size_t *used, char *why, size_t whylen)
{
    size_t i = 0, n = 0;

    while (i < len && isdigit((unsigned char)buf[i])) {
        n = n * 10 + (size_t)(buf[i] - '0');
        if (++i > 9 || n > max) {
            lookup_set_err(why, whylen, "netstring length exceeds %zu", max);
            return -1;
        }
    }
    if (i == len)
        return 0;
    if (i == 0 || buf[i] != ':' || (i > 1 && buf[0] == '0')) {
        lookup_set_err(why, whylen, "malformed netstring length");
        return -1;
    }
    if (len - i - 1 < n + 1)
        return 0;
    if (buf[i + 1 + n] != ',') {
        lookup_set_err(why, whylen, "netstring not terminated by ','");
        return -1;
    }
    *data = buf + i + 1;
    *dlen = n;
    *used = i + 2 + n;
    return 1;
}

/* "WORD " at the start of data (the space may end the payload). */
static int starts_word(const char *data, size_t len, const char *word)
{
    size_t w = strlen(word);

    return len >= w + 1 && memcmp(data, word, w) == 0 && data[w] == ' ';
}

int lookup_socketmap_reply(const char *data, size_t len, char **value, char *why,
                           size_t whylen)
{
    *value = NULL;
    if (starts_word(data, len, "OK")) {
        if (memchr(data, 0, len) != NULL) {
            lookup_set_err(why, whylen, "NUL byte in reply");
            return LOOKUP_TEMPFAIL;
        }
        *value = lookup_xstrndup(data + 3, len - 3);
        return LOOKUP_FOUND;
    }
    if (starts_word(data, len, "NOTFOUND") || (len == 8 && memcmp(data, "NOTFOUND", 8) == 0))
        return LOOKUP_NOTFOUND;
    printable(why, whylen, data, len);
    return LOOKUP_TEMPFAIL;
}
