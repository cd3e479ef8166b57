/* fuzz_sasl.c - libFuzzer target for lib/sasl.c: the base64 codec and the
 * AUTH PLAIN / LOGIN exchanges smtpd drives with client lines, before any
 * password is checked.
 *
 * Input: lines. The first selects the mechanism by name and may carry an
 * initial response after a space ("PLAIN AGFsaWNlAHNlY3JldA=="); each
 * further line is one client response. Properties: base64 decode/encode
 * round-trip; the exchange only ever returns its documented steps; on
 * SASL_CREDENTIALS the user and password are NUL-terminated within their
 * buffers.
 */
#include "fuzz.h"
#include "sasl.h"

static void check_base64(const char *line)
{
    unsigned char dec[SASL_LINE_MAX];
    char enc[2 * SASL_LINE_MAX];
    int n = sasl_base64_decode(line, dec, sizeof(dec));

    if (n < 0)
        return;
    FUZZ_ASSERT((size_t)n < sizeof(dec) && dec[n] == 0);
    int e = sasl_base64_encode(dec, (size_t)n, enc, sizeof(enc));
    FUZZ_ASSERT(e >= 0 && (size_t)e == strlen(enc));
    /* Padding is required and there is one encoding of each byte string
     * only if the decoder rejects non-zero padding bits; compare decoded. */
    unsigned char again[SASL_LINE_MAX];
    FUZZ_ASSERT(sasl_base64_decode(enc, again, sizeof(again)) == n);
    FUZZ_ASSERT(memcmp(again, dec, (size_t)n) == 0);
}

static void check_step(enum sasl_step st, const struct sasl_exchange *x, const char *challenge,
                       size_t clen)
{
    FUZZ_ASSERT(st == SASL_CONTINUE || st == SASL_CREDENTIALS || st == SASL_BAD_RESPONSE ||
                st == SASL_CANCELLED);
    if (st == SASL_CONTINUE)
        FUZZ_ASSERT(strlen(challenge) < clen);
    if (st == SASL_CREDENTIALS) {
        FUZZ_ASSERT(memchr(x->user, 0, sizeof(x->user)) != NULL);
        FUZZ_ASSERT(memchr(x->pass, 0, sizeof(x->pass)) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char challenge[512];
    struct sasl_exchange x;

    if (size > 16384)
        return 0;
    char *text = fuzz_cstring(data, size);
    char *line = text, *next = strchr(line, '\n');
    if (next != NULL)
        *next++ = 0;
    char *initial = strchr(line, ' ');
    if (initial != NULL)
        *initial++ = 0;
    enum sasl_mech mech = sasl_mech_lookup(line);
    if (mech != SASL_MECH_NONE)
        FUZZ_ASSERT(strcasecmp(sasl_mech_name(mech), line) == 0);
    if (initial != NULL)
        check_base64(initial);

    enum sasl_step st = sasl_exchange_start(&x, mech, initial, challenge, sizeof(challenge));
    check_step(st, &x, challenge, sizeof(challenge));
    for (int i = 0; next != NULL && st == SASL_CONTINUE && i < 8; i++) {
        line = next;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = 0;
        check_base64(line);
        st = sasl_exchange_step(&x, line, challenge, sizeof(challenge));
        check_step(st, &x, challenge, sizeof(challenge));
    }
    sasl_exchange_clear(&x);

    char resp[SASL_LINE_MAX];
    sasl_plain_response(text, initial ? initial : "", resp, sizeof(resp));
    free(text);
    return 0;
}
