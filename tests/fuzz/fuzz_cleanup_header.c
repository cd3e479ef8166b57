/* fuzz_cleanup_header.c - libFuzzer target for the header treatment of
 * local submissions in cleanup/local.c: any local user's sendmail input
 * reaches it (via postdrop and pickup).
 *
 * cleanup/local.c is compiled in unchanged; main.cf sets myorigin. Input:
 * byte 0 bit 0 is sendmail -t (extract recipients), the rest is the
 * header block. Properties: no Bcc: or Resent-Bcc: header survives; every
 * extracted recipient is qualified (has a domain); every header of the
 * input that is not a blind copy is still there, in order (bytes can only
 * be added, as "@myorigin"); the From: value builder stays in bounds.
 */
#include "cleanup.h"
#include "config.h"
#include "fuzz.h"

#include <limits.h>

#define ORIGIN "origin.example"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[PATH_MAX], err[256];
    const char *dir = fuzz_tempdir();
    static const char text[] = "myorigin = " ORIGIN "\nappend_at_myorigin = yes\n";

    fuzz_quiet_log("fuzz_cleanup_header");
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    fuzz_write_file(path, (const uint8_t *)text, sizeof(text) - 1);
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_cleanup_header: %s\n", err);
        abort();
    }
    return 0;
}

/* Header names of a block, in order: each line that starts a header. */
static size_t header_names(const char *block, size_t len, const char **names, size_t *lens,
                           size_t max)
{
    size_t n = 0;
    for (size_t pos = 0; pos < len && n < max;) {
        const char *nl = memchr(block + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - (block + pos)) + 1 : len - pos;
        size_t nlen = header_name_len(block + pos, llen);
        if (nlen > 0) {
            names[n] = block + pos;
            lens[n++] = nlen;
        }
        pos += llen;
    }
    return n;
}

static int is_blind(const char *name, size_t nlen)
{
    return header_is(name, nlen, "Bcc") || header_is(name, nlen, "Resent-Bcc");
}

#define MAX_HEADERS 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *in_names[MAX_HEADERS], *out_names[MAX_HEADERS];
    static size_t in_lens[MAX_HEADERS], out_lens[MAX_HEADERS];
    struct dynbuf out = {0};
    struct rcpt_list found = {0};

    if (size < 1 || size > 65536)
        return 0;
    int extract = data[0] & 1;
    char *block = malloc(size - 1 ? size - 1 : 1);
    memcpy(block, data + 1, size - 1);
    FUZZ_ASSERT(local_header_block(block, size - 1, extract, &out, &found) == 0);

    for (size_t i = 0; i < found.n; i++)
        FUZZ_ASSERT(strchr(found.addr[i], '@') != NULL);
    size_t nin = header_names(block, size - 1, in_names, in_lens, MAX_HEADERS);
    size_t nout = header_names(out.p, out.len, out_names, out_lens, MAX_HEADERS);
    size_t j = 0;
    for (size_t i = 0; i < nout; i++)
        FUZZ_ASSERT(!is_blind(out_names[i], out_lens[i]));
    if (nin < MAX_HEADERS && nout < MAX_HEADERS) {
        for (size_t i = 0; i < nin; i++) {
            if (is_blind(in_names[i], in_lens[i]))
                continue;
            FUZZ_ASSERT(j < nout && out_lens[j] == in_lens[i] &&
                        memcmp(out_names[j], in_names[i], in_lens[i]) == 0);
            j++;
        }
        FUZZ_ASSERT(j == nout);
    }

    char *text = fuzz_cstring(data + 1, size - 1);
    char from[600];
    local_from_value(text, "user@" ORIGIN, from, sizeof(from));
    FUZZ_ASSERT(strlen(from) < sizeof(from));
    free(text);
    free(out.p);
    rcpt_list_free(&found);
    free(block);
    return 0;
}
