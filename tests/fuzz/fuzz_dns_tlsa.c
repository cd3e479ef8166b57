/* fuzz_dns_tlsa.c - libFuzzer target for lib/util/dns.c's TLSA reader,
 * dns_tlsa_parse: what remote makes of the answer to a TLSA query, from
 * any name server (a validating resolver passes on what the zone holds).
 *
 * Input: the DNS message. Properties: the count is -1 or at most the
 * maximum asked; every record's data lies inside the buffer given, within
 * DNS_TLSA_DATA_MAX, the records' data do not overlap and add up to no
 * more than the buffer; fields are bytes; remote's usability check
 * accepts only usages 2 and 3, selectors 0 and 1 and digests of their
 * length.
 */
#include "dns.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_tlsa out[DNS_TLSA_MAX];
    size_t buflen = size > 0 ? size : 1, total = 0;
    unsigned char *buf = malloc(buflen);
    long n;

    if (buf == NULL)
        return 0;
    n = dns_tlsa_parse(data, size, out, DNS_TLSA_MAX, buf, buflen);
    FUZZ_ASSERT(n >= -1 && n <= DNS_TLSA_MAX);
    for (long i = 0; i < n; i++) {
        FUZZ_ASSERT(out[i].usage <= 255 && out[i].selector <= 255 && out[i].mtype <= 255);
        FUZZ_ASSERT(out[i].len > 0 && out[i].len <= DNS_TLSA_DATA_MAX);
        FUZZ_ASSERT(out[i].data >= buf && out[i].data + out[i].len <= buf + buflen);
        if (i > 0)
            FUZZ_ASSERT(out[i].data == out[i - 1].data + out[i - 1].len);
        total += out[i].len;
        /* The record's data is a copy of bytes of the message. */
        FUZZ_ASSERT(memmem(data, size, out[i].data, out[i].len) != NULL);
    }
    FUZZ_ASSERT(total <= buflen);
    free(buf);
    return 0;
}
