/* fuzz_remote_nexthop.c - libFuzzer target for nexthop_parse,
 * lmtp_nexthop_parse and port_parse of remote/route.c: the "domain",
 * "host:port", "[host]:port" nexthop of each delivery request (from qmgr,
 * after transport maps and relayhost, i.e. from main.cf and lookup
 * tables), and LMTP's "unix:PATH" and "inet:host:port" ones.
 *
 * route.c is compiled in unchanged; the globals remote.c would define are
 * defined here, unused by the parsers. Properties: a parsed nexthop has a
 * lower-case NUL-terminated name, a port 1-65535, brackets or an address
 * literal turn MX lookups off, and the cache key names both; an LMTP
 * nexthop never asks for MX records, and a socket path is bounded and has
 * no control characters.
 */
#include "fuzz.h"
#include "remote.h"

#include <ctype.h>

struct remote_config remote_cfg;
struct event_base *remote_base;
struct dns_resolver *remote_dns;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nexthop nh;

    if (size > 4096)
        return 0;
    char *text = fuzz_cstring(data, size);
    if (nexthop_parse(text, 25, &nh) == 0) {
        FUZZ_ASSERT(memchr(nh.name, 0, sizeof(nh.name)) != NULL && nh.name[0] != 0);
        for (const char *p = nh.name; *p; p++)
            FUZZ_ASSERT(!isupper((unsigned char)*p));
        FUZZ_ASSERT(nh.port >= 1 && nh.port <= 65535);
        if (text[0] == '[' || nh.literal)
            FUZZ_ASSERT(nh.mx == 0);
        FUZZ_ASSERT(memchr(nh.key, 0, sizeof(nh.key)) != NULL);
        FUZZ_ASSERT(strstr(nh.key, nh.name) != NULL);
    }
    if (lmtp_nexthop_parse(text, 24, &nh) == 0) {
        FUZZ_ASSERT(nh.mx == 0);
        FUZZ_ASSERT(memchr(nh.key, 0, sizeof(nh.key)) != NULL);
        FUZZ_ASSERT(memchr(nh.path, 0, sizeof(nh.path)) != NULL);
        if (nh.path[0]) {
            FUZZ_ASSERT(strncmp(text, "unix:", 5) == 0 && strcmp(nh.path, text + 5) == 0);
            for (const char *p = nh.path; *p; p++)
                FUZZ_ASSERT((unsigned char)*p >= 0x20 && *p != 0x7f);
        } else {
            FUZZ_ASSERT(nh.port >= 1 && nh.port <= 65535 && nh.name[0] != 0);
        }
    }
    unsigned port = port_parse(text);
    FUZZ_ASSERT(port <= 65535);
    free(text);
    return 0;
}
