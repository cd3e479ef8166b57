/* fuzz_maincf.c - libFuzzer target for lib/config.c, the main.cf reader
 * every program runs at start and on reload.
 *
 * The input is written as DIR/main.cf and loaded with config_try_load
 * (the variant that reports errors instead of exiting). When it loads,
 * every parameter is read back expanded and raw (config_walk, as postconf
 * does), the typed getters run on parameters of each type (a loaded file
 * has valid typed values, so they must not fail), and every value is split
 * as list parameters are. The first line may also be given as an override
 * ("name=value", as master.cf -o passes them) when the input starts with
 * "-o ".
 */
#include "config.h"
#include "strlist.h"
#include "fuzz.h"

#include <limits.h>

static char maincf[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_maincf");
    snprintf(maincf, sizeof(maincf), "%s/main.cf", fuzz_tempdir());
    return 0;
}

struct walk_state {
    size_t params;
};

static void walk_one(const char *name, const char *value, int is_set, void *ctx)
{
    struct walk_state *w = ctx;
    FUZZ_ASSERT(name != NULL && value != NULL);
    size_t len = strlen(value);
    char *buf = malloc(len + 1);
    char *items[64];
    size_t n = strlist_split(value, buf, items, 64);
    FUZZ_ASSERT(n <= 64);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(items[i] >= buf && items[i] + strlen(items[i]) <= buf + len);
    free(buf);
    w->params++;
}

static void read_back(void)
{
    struct walk_state w = {0};
    config_walk(0, 0, walk_one, &w);
    config_walk(1, 0, walk_one, &w);
    FUZZ_ASSERT(w.params > 0);
    /* One parameter of each type: a load that succeeded filled every
     * typed field within its params.def bounds. */
    FUZZ_ASSERT(var.default_process_limit >= 1);
    FUZZ_ASSERT(var.append_at_myorigin == 0 || var.append_at_myorigin == 1);
    FUZZ_ASSERT(var.bounce_queue_lifetime >= 0);
    FUZZ_ASSERT(var.header_size_limit >= 1);
    FUZZ_ASSERT(var.myhostname != NULL && var.mydestination != NULL);
    FUZZ_ASSERT(var.queue_directory != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    char *override = NULL;

    if (size > 65536)
        return 0;
    if (size > 3 && memcmp(data, "-o ", 3) == 0) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t olen = nl ? (size_t)(nl - data) - 3 : size - 3;
        override = fuzz_cstring(data + 3, olen);
        data += 3 + olen;
        size -= 3 + olen;
    }
    fuzz_write_file(maincf, data, size);
    err[0] = 0;
    int rc = config_try_load(fuzz_tempdir(), override ? &override : NULL, override ? 1 : 0, err,
                             sizeof(err));
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0)
        read_back();
    else
        FUZZ_ASSERT(err[0] != 0);
    free(override);
    return 0;
}
