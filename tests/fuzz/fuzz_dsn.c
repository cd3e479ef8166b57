/* fuzz_dsn.c - libFuzzer target for the per-message status logs of
 * lib/dsn.c (queue_directory/bounce|defer|success/ID), which bounce and
 * postqueue read back, torn last entries and all.
 *
 * The input is a bounce log; the process's main.cf points queue_directory
 * at a private directory. Properties: every entry has its mandatory
 * strings; known offsets are unique after the merge of repeats, and
 * dsn_log_find finds each of them; appending every entry read to another
 * log and reading that back gives the same recipients in the same order.
 */
#include "config.h"
#include "dsn.h"
#include "fuzz.h"
#include "record.h"

#include <limits.h>
#include <sys/stat.h>

#define ID_IN "ABCDEF0000Z1"    /* valid queue ids (queue_id.h) */
#define ID_OUT "ABCDEF0000Z2"

static char inpath[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[PATH_MAX], text[PATH_MAX + 64], err[256];
    const char *dir = fuzz_tempdir();

    fuzz_quiet_log("fuzz_dsn");
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    snprintf(text, sizeof(text), "queue_directory = %s\n", dir);
    fuzz_write_file(path, (const uint8_t *)text, strlen(text));
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_dsn: %s\n", err);
        abort();
    }
    snprintf(path, sizeof(path), "%s/%s", dir, QUEUE_BOUNCE_LOG);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%s", dir, QUEUE_DEFER_LOG);
    mkdir(path, 0700);
    FUZZ_ASSERT(dsn_log_path(inpath, sizeof(inpath), QUEUE_BOUNCE_LOG, ID_IN) == 0);
    return 0;
}

static void check_entries(const struct dsn_log *l)
{
    for (size_t i = 0; i < l->count; i++) {
        const struct dsn_entry *e = &l->entry[i];
        FUZZ_ASSERT(e->rcpt != NULL && e->dsn != NULL && e->reason != NULL);
        FUZZ_ASSERT(e->dsn_notify >= 0 && e->dsn_notify <= 15);
        if (e->offset < 0)
            continue;
        const struct dsn_entry *f = dsn_log_find(l, e->offset);
        FUZZ_ASSERT(f == e);
    }
}

/* Write the entries again, through the appender, and read them back. */
static void check_rewrite(const struct dsn_log *l)
{
    struct dsn_log again;

    dsn_log_remove(QUEUE_DEFER_LOG, ID_OUT);
    for (size_t i = 0; i < l->count; i++)
        FUZZ_ASSERT(dsn_log_append(QUEUE_DEFER_LOG, ID_OUT, &l->entry[i]) == 0);
    FUZZ_ASSERT(dsn_log_read(QUEUE_DEFER_LOG, ID_OUT, &again) == 0);
    FUZZ_ASSERT(again.count == l->count);
    for (size_t i = 0; i < l->count; i++)
        FUZZ_ASSERT(again.entry[i].offset == l->entry[i].offset);
    dsn_log_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dsn_log l;

    if (size > 65536)
        return 0;
    fuzz_write_file(inpath, data, size);
    FUZZ_ASSERT(dsn_log_read(QUEUE_BOUNCE_LOG, ID_IN, &l) == 0);
    check_entries(&l);
    check_rewrite(&l);
    dsn_log_free(&l);
    for (int w = 1; w <= 15; w++)
        dsn_notify_wants(w, DSN_NOTIFY_FAILURE);
    return 0;
}
