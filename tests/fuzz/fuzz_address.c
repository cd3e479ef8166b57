/* fuzz_address.c - libFuzzer target for lib/address.c, the parser of the
 * MAIL FROM:/RCPT TO: argument that smtpd feeds with whatever a client
 * sends.
 *
 * Besides memory safety it checks the contract of address.h: a parsed path
 * fits ADDRESS_MAX, its params point into the argument, and quoting the
 * internal form then parsing it again gives the same internal form (what
 * the SMTP client and the headers rely on). The input is also given to
 * address_quote and the helpers as if it were an internal form.
 */
#include "address.h"
#include "fuzz.h"

#define LOCAL_PART_MAX 64   /* RFC 5321 4.5.3.1.1, as address.c counts it */

/* The parser tolerates what Postfix tolerates (".." in a dot-string), and
 * quoting such a local part adds two quotes; so the only allowed failure of
 * the round trip is a quoted local part that has grown over the limit. */
static void check_round_trip(const char *internal)
{
    char quoted[ADDRESS_MAX + 2], path[ADDRESS_MAX + 4], again[ADDRESS_MAX];
    const char *params, *err;

    int q = address_quote(internal, quoted, sizeof(quoted));
    FUZZ_ASSERT(q == 0);
    FUZZ_ASSERT(strlen(quoted) < sizeof(quoted));
    snprintf(path, sizeof(path), "<%s>", quoted);
    if (address_parse_path(path, again, sizeof(again), &params, &err) < 0) {
        const char *at = strrchr(quoted, '@');
        size_t local_len = at != NULL ? (size_t)(at - quoted) : strlen(quoted);
        FUZZ_ASSERT(local_len > LOCAL_PART_MAX);
        FUZZ_ASSERT(strcmp(err, "address too long") == 0);
        return;
    }
    FUZZ_ASSERT(strcmp(again, internal) == 0);
    FUZZ_ASSERT(*params == 0);
}

static void exercise_helpers(const char *internal)
{
    char buf[ADDRESS_MAX];
    const char *domain = address_domain(internal);

    if (domain != NULL)
        FUZZ_ASSERT(domain > internal && domain[-1] == '@');
    if (address_localpart(internal, buf, sizeof(buf)) == 0)
        FUZZ_ASSERT(strlen(buf) <= strlen(internal));
    if (address_lowercase(internal, buf, sizeof(buf)) == 0)
        FUZZ_ASSERT(strlen(buf) == strlen(internal));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *arg = fuzz_cstring(data, size);
    char out[ADDRESS_MAX], small[16], quoted[ADDRESS_MAX];
    const char *params = NULL, *err = NULL;
    size_t arglen = strlen(arg);

    if (address_parse_path(arg, out, sizeof(out), &params, &err) == 0) {
        FUZZ_ASSERT(strlen(out) < ADDRESS_MAX);
        FUZZ_ASSERT(params >= arg && params <= arg + arglen);
        check_round_trip(out);
        exercise_helpers(out);
    } else {
        FUZZ_ASSERT(err != NULL && *err != 0);
        FUZZ_ASSERT(out[0] == 0);
    }
    /* A small output buffer must be refused, never overrun. */
    if (address_parse_path(arg, small, sizeof(small), &params, &err) == 0)
        FUZZ_ASSERT(strlen(small) < sizeof(small));

    if (address_quote(arg, quoted, sizeof(quoted)) == 0)
        FUZZ_ASSERT(strlen(quoted) < sizeof(quoted));
    address_quote(arg, small, sizeof(small));
    exercise_helpers(arg);
    free(arg);
    return 0;
}
