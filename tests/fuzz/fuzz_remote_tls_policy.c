/* fuzz_remote_tls_policy.c - libFuzzer target for remote/tls_policy.c's
 * parser of smtp_tls_policy_maps answers ("level attr=value ...") and its
 * resolution of match= names, as a table an administrator (or a hostile
 * table file) gives them.
 *
 * Input: line 1 the table value, line 2 the MX host name, line 3 the
 * nexthop name, line 4 a fingerprint as match= gives it. Properties: a
 * parsed policy has a known level and every attribute NUL-terminated
 * within its field; a refused one says why; the names are at most the
 * maximum asked, each a NUL-terminated string inside the buffer given; a
 * fingerprint decodes to at most the room given, and back to its own hex
 * digits.
 */
#include "fuzz.h"
#include "remote.h"

#include <ctype.h>

/* remote.c's, which this target does not link. */
struct remote_config remote_cfg;

static char *next_line(char **p)
{
    char *line = *p, *nl;

    if (line == NULL)
        return (char *)"";
    if ((nl = strchr(line, '\n')) != NULL) {
        *nl = 0;
        *p = nl + 1;
    } else {
        *p = NULL;
    }
    return line;
}

/* Decoded bytes re-encoded are the word's hex digits, colons left out. */
static void check_fingerprint(const char *word)
{
    unsigned char out[64];
    size_t len = strlen(word), n = tls_policy_fingerprint(word, len, out, sizeof(out)), k = 0;

    FUZZ_ASSERT(n <= sizeof(out));
    if (n == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        if (word[i] == ':')
            continue;
        char hex[3];
        snprintf(hex, sizeof(hex), "%02x", out[k / 2]);
        FUZZ_ASSERT(tolower((unsigned char)word[i]) == hex[k % 2]);
        k++;
    }
    FUZZ_ASSERT(k == 2 * n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tls_policy p;
    char err[160], buf[512];
    const char *names[8];

    if (size > 8192)
        return 0;
    char *text = fuzz_cstring(data, size), *rest = text;
    char *value = next_line(&rest), *host = next_line(&rest), *nexthop = next_line(&rest);
    char *fingerprint = next_line(&rest);

    if (tls_policy_parse(value, &p, err, sizeof(err)) < 0) {
        FUZZ_ASSERT(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0);
    } else {
        FUZZ_ASSERT(p.level >= TLS_LEVEL_NONE && p.level <= TLS_LEVEL_FINGERPRINT);
        FUZZ_ASSERT(*tls_level_name(p.level) != 0);
        FUZZ_ASSERT(memchr(p.match, 0, sizeof(p.match)) && memchr(p.protocols, 0, sizeof(p.protocols))
                    && memchr(p.ciphers, 0, sizeof(p.ciphers))
                    && memchr(p.exclude, 0, sizeof(p.exclude))
                    && memchr(p.servername, 0, sizeof(p.servername))
                    && memchr(p.tafile, 0, sizeof(p.tafile)));
        FUZZ_ASSERT(p.tlsa == NULL);
        if (p.match[0]) {
            size_t n = tls_policy_names(&p, host, nexthop, buf, sizeof(buf), names, 8);
            FUZZ_ASSERT(n <= 8);
            for (size_t i = 0; i < n; i++) {
                FUZZ_ASSERT(names[i] >= buf && names[i] < buf + sizeof(buf));
                FUZZ_ASSERT(memchr(names[i], 0, (size_t)(buf + sizeof(buf) - names[i])) != NULL);
            }
        }
    }
    check_fingerprint(fingerprint);
    free(text);
    return 0;
}
