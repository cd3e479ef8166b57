/* fuzz_lookup_spec.c - libFuzzer target for the table specifications of
 * lib/util/lookup*.c as main.cf writes them: "static:value", "inline:{ k=v,
 * { k2 = v w } }", "regexp:{ {/re/ result} ... }", lists of them.
 *
 * Input: the first line is the maps value given to lookup_list_open; each
 * further line is a key looked up with lookup_list_get and, as an address,
 * with lookup_list_address. File-backed tables (any name with a '/') are
 * left out here: a path could name a device or a FIFO that blocks, and the
 * regexp file parser has its own target (fuzz_lookup_regexp).
 */
#include "fuzz.h"
#include "lookup.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_lookup_spec");
    return 0;
}

static void look_up(struct lookup_list *l, const char *key)
{
    char *value = NULL;
    int rc = lookup_list_get(l, key, &value);
    FUZZ_ASSERT(rc == LOOKUP_FOUND || rc == LOOKUP_NOTFOUND || rc == LOOKUP_TEMPFAIL);
    FUZZ_ASSERT((rc == LOOKUP_FOUND) == (value != NULL));
    free(value);
    value = NULL;
    rc = lookup_list_address(l, key, 1, "+", &value);
    FUZZ_ASSERT((rc == LOOKUP_FOUND) == (value != NULL));
    free(value);
    value = NULL;
    rc = lookup_list_address(l, key, 0, "", &value);
    FUZZ_ASSERT((rc == LOOKUP_FOUND) == (value != NULL));
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec, *keys;
    char err[512];

    fuzz_split(data, size, '\n', &spec, &keys);
    if (strchr(spec, '/') == NULL) {
        err[0] = 0;
        struct lookup_list *l = lookup_list_open(spec, err, sizeof(err));
        if (l == NULL) {
            FUZZ_ASSERT(err[0] != 0);
        } else {
            int n = 0;
            for (char *k = keys, *next; k != NULL && n < 64; k = next, n++) {
                next = strchr(k, '\n');
                if (next != NULL)
                    *next++ = 0;
                look_up(l, k);
            }
            lookup_list_close(l);
        }
    }
    free(spec);
    free(keys);
    return 0;
}
