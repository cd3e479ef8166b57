/* fuzz_milter_list.c - libFuzzer target for a milter list as
 * smtpd_milters, non_smtpd_milters and each smtpd_milter_maps answer give
 * it (lib/mail/milter.c: milter_list_parse, milter_endpoint). A map's
 * answer may come from a table server, so its bytes are input like any.
 *
 * Input: the list's text. Properties: the count is -1 (with a reason) or
 * at most the room given; each milter's endpoint is a non-empty string
 * that fits its buffer, its timeouts positive; an endpoint that parses
 * has a host (or path) and, for inet:, a port, each within its buffer.
 */
#include "fuzz.h"
#include "config.h"
#include "milter.h"

#include <limits.h>

#define ROOM 8

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[PATH_MAX], err[256];
    const char *dir = fuzz_tempdir();
    fuzz_quiet_log("fuzz_milter_list");
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    fuzz_write_file(path, (const uint8_t *)"", 0);
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_milter_list: %s\n", err);
        abort();
    }
    return 0;
}

static void check_endpoint(const char *spec)
{
    char host[256], port[32];
    int is_unix = -1;
    if (milter_endpoint(spec, host, sizeof(host), port, sizeof(port), &is_unix) < 0)
        return;
    FUZZ_ASSERT(is_unix == 0 || is_unix == 1);
    FUZZ_ASSERT(strlen(host) < sizeof(host) && strlen(port) < sizeof(port));
    FUZZ_ASSERT(is_unix ? *host && !*port : !!*port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring(data, size);
    struct milter_settings set[ROOM];
    char err[256] = "";
    int n = milter_list_parse(text, set, ROOM, err, sizeof(err));
    FUZZ_ASSERT(n >= -1 && n <= ROOM);
    if (n < 0)
        FUZZ_ASSERT(*err);
    for (int i = 0; i < n; i++) {
        FUZZ_ASSERT(*set[i].spec && strlen(set[i].spec) < sizeof(set[i].spec));
        FUZZ_ASSERT(set[i].connect_timeout > 0 && set[i].command_timeout > 0 &&
                    set[i].content_timeout > 0);
        FUZZ_ASSERT(strlen(set[i].default_action) < sizeof(set[i].default_action));
        check_endpoint(set[i].spec);
    }
    free(text);
    return 0;
}
