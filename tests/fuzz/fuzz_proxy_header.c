/* fuzz_proxy_header.c - libFuzzer target for lib/util/proxy_proto.c, the
 * PROXY protocol (v1 and v2) header parser smtpd runs on the first bytes
 * of every connection when smtpd_upstream_proxy_protocol = haproxy.
 *
 * Properties: a complete header's length is within the input and the
 * bound (v1 at most 107 bytes, ending in CR LF; v2 16 bytes plus its
 * announced length); a refusal says why; "need more" is only answered
 * for a proper beginning that is shorter than the bound, and every prefix
 * of an accepted header is "need more"; a header fed byte by byte gives
 * the same answer as fed whole (smtpd reads in pieces); addresses are of
 * one family.
 */
#include "fuzz.h"
#include "proxy_proto.h"

#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header h;
    const char *why;
    long n = proxy_header_parse(data, size, &h, &why);

    FUZZ_ASSERT(n >= -1);
    if (n < 0) {
        FUZZ_ASSERT(why != NULL && *why);
        return 0;
    }
    if (n == 0) {
        FUZZ_ASSERT(size < PROXY_HEADER_MAX);
        return 0;
    }
    FUZZ_ASSERT((size_t)n <= size && n <= PROXY_HEADER_MAX);
    if (data[0] == 'P')
        FUZZ_ASSERT(n <= PROXY_V1_MAX && data[n - 2] == '\r' && data[n - 1] == '\n');
    else
        FUZZ_ASSERT(n >= 16 && (size_t)n == 16 + (((size_t)data[14] << 8) | data[15]));
    if (!h.local) {
        FUZZ_ASSERT(h.client.ss_family == AF_INET || h.client.ss_family == AF_INET6);
        FUZZ_ASSERT(h.client.ss_family == h.server.ss_family);
    }
    /* Every proper prefix asks for more: the header's end is where the
     * parser says, never earlier. */
    struct proxy_header p;
    for (long i = 1; i < n; i++)
        FUZZ_ASSERT(proxy_header_parse(data, (size_t)i, &p, &why) == 0);
    return 0;
}
