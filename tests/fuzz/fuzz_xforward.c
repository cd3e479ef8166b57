/* fuzz_xforward.c - libFuzzer target for lib/mail/xforward_proto.c: the
 * XFORWARD command smtpd takes from a content filter (xforward_parse),
 * the EHLO keyword remote reads from a server (xforward_offered), and the
 * command lines remote writes (xforward_format).
 *
 * Properties: a refusal leaves the attributes as they were and has a 501
 * reply; accepted values are NUL-terminated in their field, printable
 * without spaces (ADDR an address, PORT a port); formatting what was
 * accepted gives lines of at most XFORWARD_LINE_MAX bytes, each starting
 * "XFORWARD " and without CR or LF, which parse back to the same values.
 */
#include "fuzz.h"
#include "xforward_proto.h"

static void check_values(const struct xforward *xf)
{
    for (int a = 0; a < XF_COUNT; a++) {
        const char *v = xf->value[a];
        FUZZ_ASSERT(memchr(v, 0, sizeof(xf->value[a])) != NULL);
        for (const unsigned char *p = (const unsigned char *)v; *p; p++)
            FUZZ_ASSERT(*p > 0x20 && *p < 0x7f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *in = fuzz_cstring(data, size);
    struct xforward xf, before;
    char reply[256];
    memset(&xf, 0, sizeof(xf));
    snprintf(xf.value[XF_HELO], sizeof(xf.value[XF_HELO]), "earlier.example");
    xf.given = 1u << XF_HELO;
    before = xf;
    if (xforward_parse(in, &xf, reply, sizeof(reply)) < 0) {
        FUZZ_ASSERT(memcmp(&xf, &before, sizeof(xf)) == 0);
        FUZZ_ASSERT(strncmp(reply, "501 5.5.4 ", 10) == 0);
    } else {
        check_values(&xf);
        char lines[2][XFORWARD_LINE_MAX];
        size_t n = xforward_format(&xf, xforward_offered(in) | (1u << XF_HELO), lines);
        FUZZ_ASSERT(n <= 2);
        struct xforward again;
        memset(&again, 0, sizeof(again));
        for (size_t i = 0; i < n; i++) {
            FUZZ_ASSERT(strlen(lines[i]) < XFORWARD_LINE_MAX);
            FUZZ_ASSERT(strncmp(lines[i], "XFORWARD ", 9) == 0);
            FUZZ_ASSERT(!strpbrk(lines[i], "\r\n"));
            FUZZ_ASSERT(xforward_parse(lines[i] + 9, &again, reply, sizeof(reply)) == 0);
        }
    }
    (void)xforward_offered(in);
    free(in);
    return 0;
}
