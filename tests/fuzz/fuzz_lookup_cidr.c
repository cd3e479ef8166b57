/* fuzz_lookup_cidr.c - libFuzzer target for the cidr: table file parser
 * (lib/util/lookup_cidr.c) and the rule engine it shares with regexp: and
 * pcre: (lib/util/lookup_pattern.c): "network/prefix result" lines, IPv4
 * and IPv6, brackets, if/endif, negation, host bits. Daemons read these
 * files, which an administrator edits.
 *
 * Input: the file's text up to the first NUL byte, written to DIR/cidr and
 * opened as cidr:DIR/cidr; after the NUL, one key per line (a few fixed keys
 * when there are none). A table that does not parse must give
 * LOOKUP_TEMPFAIL, never a silent miss; FOUND comes with a value.
 */
#include "fuzz.h"
#include "lookup.h"

#include <limits.h>

static char path[PATH_MAX], spec[PATH_MAX + 16];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_lookup_cidr");
    snprintf(path, sizeof(path), "%s/cidr", fuzz_tempdir());
    snprintf(spec, sizeof(spec), "cidr:%s", path);
    return 0;
}

static const char *const fixed_keys[] = {
    "192.168.1.1", "10.0.0.1", "2001:db8::1", "::1", "::ffff:10.0.0.1", "not an address",
    "",
};

static void look_up(struct lookup_table *t, const char *key)
{
    char *value = NULL;
    int rc = lookup_get(t, key, &value);
    FUZZ_ASSERT(rc == LOOKUP_FOUND || rc == LOOKUP_NOTFOUND || rc == LOOKUP_TEMPFAIL);
    FUZZ_ASSERT((rc == LOOKUP_FOUND) == (value != NULL));
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    char err[512];

    if (size > 16384)
        return 0;
    fuzz_write_file(path, data, flen);
    /* A new mtime for every input is not guaranteed within one clock
     * tick, so the table is opened afresh each time. */
    struct lookup_table *t = lookup_open(spec, err, sizeof(err));
    FUZZ_ASSERT(t != NULL);
    char *keys = nul ? fuzz_cstring(nul + 1, size - flen - 1) : NULL;
    if (keys != NULL && *keys != 0) {
        int n = 0;
        for (char *k = keys, *next; k != NULL && n < 16; k = next, n++) {
            next = strchr(k, '\n');
            if (next != NULL)
                *next++ = 0;
            look_up(t, k);
        }
    } else {
        for (size_t i = 0; i < sizeof(fixed_keys) / sizeof(fixed_keys[0]); i++)
            look_up(t, fixed_keys[i]);
    }
    free(keys);
    lookup_close(t);
    return 0;
}
