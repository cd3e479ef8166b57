/* fuzz_xtext.c - libFuzzer target for lib/xtext.c, the RFC 3461 xtext
 * decoder smtpd runs on ENVID=, ORCPT= and AUTH= values from clients.
 *
 * Properties: a decoded value has the length returned and no CR or LF (the
 * decoder refuses them: nothing downstream may be tricked into splitting a
 * line); encoding any string and decoding it again gives it back, unless
 * it holds CR or LF; small output buffers are refused, never overrun.
 */
#include "fuzz.h"
#include "xtext.h"

#define BIG 8192

static void check_decode(const char *in)
{
    static char out[BIG], enc[3 * BIG + 1], again[BIG];
    int n = xtext_decode(in, out, sizeof(out));

    FUZZ_ASSERT(n >= XTEXT_CONTROL);
    if (n < 0)
        return;
    FUZZ_ASSERT((size_t)n == strlen(out) && (size_t)n <= strlen(in));
    FUZZ_ASSERT(strchr(out, '\r') == NULL && strchr(out, '\n') == NULL);
    int e = xtext_encode(out, enc, sizeof(enc));
    FUZZ_ASSERT(e >= 0 && (size_t)e == strlen(enc));
    FUZZ_ASSERT(xtext_decode(enc, again, sizeof(again)) == n && strcmp(again, out) == 0);
}

static void check_encode(const char *in)
{
    static char enc[3 * BIG + 1], dec[BIG];
    int e = xtext_encode(in, enc, sizeof(enc));

    FUZZ_ASSERT(e >= 0 && (size_t)e == strlen(enc));
    int d = xtext_decode(enc, dec, sizeof(dec));
    if (strchr(in, '\r') != NULL || strchr(in, '\n') != NULL) {
        FUZZ_ASSERT(d == XTEXT_CONTROL);
        return;
    }
    FUZZ_ASSERT(d >= 0 && strcmp(dec, in) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char small[8];

    if (size >= BIG)
        return 0;
    char *in = fuzz_cstring(data, size);
    check_decode(in);
    check_encode(in);
    xtext_decode(in, small, sizeof(small));
    xtext_encode(in, small, sizeof(small));
    xtext_decode(in, small, 1);
    free(in);
    return 0;
}
