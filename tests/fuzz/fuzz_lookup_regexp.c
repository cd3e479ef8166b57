/* fuzz_lookup_regexp.c - libFuzzer target for the regexp: table file
 * parser of lib/util/lookup_regexp.c ("/pattern/flags result" lines,
 * if/endif blocks, $1 substitution), which daemons read from files an
 * administrator edits.
 *
 * Input: the file's text up to the first NUL byte, written to DIR/regexp
 * and opened as regexp:DIR/regexp; after the NUL, one key per line (a few
 * fixed keys when there are none). A table that does not parse must give
 * LOOKUP_TEMPFAIL, never a silent miss.
 *
 * Left out: stacked repetition operators ("x+++", "(a{9}){9}"). glibc's
 * regcomp copies the pattern tree for each of them and needs gigabytes
 * for a short line; that is the C library's (Postfix has the same), the
 * rest of the parser is ours and is what this target is for.
 */
#include "fuzz.h"
#include "lookup.h"

#include <limits.h>
#include <sys/stat.h>

static char path[PATH_MAX], spec[PATH_MAX + 16];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_lookup_regexp");
    snprintf(path, sizeof(path), "%s/regexp", fuzz_tempdir());
    snprintf(spec, sizeof(spec), "regexp:%s", path);
    return 0;
}

static const char *const fixed_keys[] = {
    "user@example.com", "postmaster", "", "a+b@sub.example.org", "MiXeD@CaSe.Example",
};

/* Each '+', '*' or '?' may double the tree glibc builds, and a bounded
 * repetition "{n}" copies it n times: inputs with more than a few of the
 * former or any of the latter are skipped. */
static int has_stacked_repetition(const uint8_t *p, size_t len)
{
    int doubling = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '+' || p[i] == '*' || p[i] == '?')
            doubling++;
        if (i > 0 && p[i - 1] == '{' && p[i] >= '0' && p[i] <= '9')
            return 1;
    }
    return doubling > 8;
}

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

    if (size > 16384 || has_stacked_repetition(data, flen))
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
