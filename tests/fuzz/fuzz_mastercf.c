/* fuzz_mastercf.c - libFuzzer target for lib/mastercf.c, the master.cf
 * parser (master at start and on reload, postconf -M).
 *
 * The input is the file's text. A parse either fails with a message that
 * names the file, or yields entries whose fields are within their
 * documented ranges and whose argument vectors are NULL-terminated.
 */
#include "fuzz.h"
#include "mastercf.h"

static void check_entry(const struct mastercf_entry *e)
{
    FUZZ_ASSERT(e->name != NULL && e->command != NULL);
    FUZZ_ASSERT(e->type >= MASTERCF_INET && e->type <= MASTERCF_PASS);
    FUZZ_ASSERT(e->private_ == 0 || e->private_ == 1);
    FUZZ_ASSERT(e->unpriv == 0 || e->unpriv == 1);
    FUZZ_ASSERT(e->chroot == 0 || e->chroot == 1);
    FUZZ_ASSERT(e->wakeup >= 0 && e->maxproc >= -1);
    FUZZ_ASSERT(e->line >= 1);
    FUZZ_ASSERT(e->args != NULL && e->args[e->nargs] == NULL);
    for (size_t i = 0; i < e->nargs; i++)
        FUZZ_ASSERT(e->args[i] != NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_mastercf");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mastercf cf;
    char err[512];
    char *text = fuzz_cstring(data, size);

    err[0] = 0;
    memset(&cf, 0, sizeof(cf));
    int rc = mastercf_parse(text, "master.cf", &cf, err, sizeof(err));
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0) {
        for (size_t i = 0; i < cf.count; i++)
            check_entry(&cf.entries[i]);
        mastercf_free(&cf);
    } else {
        FUZZ_ASSERT(strncmp(err, "master.cf", 9) == 0);
    }
    free(text);
    return 0;
}
