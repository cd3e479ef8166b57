/* fuzz_attr_lines.c - libFuzzer target for lib/util/attr_lines.c, the
 * parser of what a policy server answers smtpd (check_policy_service).
 *
 * Properties: the result is malformed, incomplete, or a length within the
 * input that ends with an empty line; a value found is terminated, fits
 * its buffer and holds no line end; a complete block scans the same when
 * more input follows it; no line longer than the bound is accepted.
 */
#include "attr_lines.h"
#include "fuzz.h"

#define MAX_LINE 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    char value[16], again[16];
    int found = 0, found2 = 0;
    long n = attr_lines_scan(buf, size, MAX_LINE, "action", value, sizeof(value), &found);

    FUZZ_ASSERT(n == ATTR_LINES_MALFORMED || n == ATTR_LINES_INCOMPLETE ||
                (n > 0 && (size_t)n <= size));
    FUZZ_ASSERT(strlen(value) < sizeof(value));
    if (n <= 0) {
        FUZZ_ASSERT(!found);
        return 0;
    }
    FUZZ_ASSERT(buf[n - 1] == '\n');
    FUZZ_ASSERT(!strchr(value, '\n'));
    /* The same block alone scans the same. */
    long m = attr_lines_scan(buf, (size_t)n, MAX_LINE, "action", again, sizeof(again), &found2);
    FUZZ_ASSERT(m == n && found2 == found && strcmp(again, value) == 0);
    /* Every line of it is within the bound. */
    const char *p = buf, *end = buf + n;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        FUZZ_ASSERT(lf && (size_t)(lf - p) <= MAX_LINE + 1);
        p = lf + 1;
    }
    /* A tiny value buffer truncates, never overruns. */
    char tiny[1];
    attr_lines_scan(buf, size, MAX_LINE, "action", tiny, sizeof(tiny), &found2);
    FUZZ_ASSERT(tiny[0] == 0);
    return 0;
}
