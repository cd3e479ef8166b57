/* fuzz_auth_reply.c - libFuzzer target for lib/util/auth_client.c's
 * auth_line_parse: every line a Dovecot auth server (or anything listening
 * at smtpd_sasl_path) sends goes through it before smtpd acts on it.
 *
 * Input: the server's output; lines end at LF, as the client splits them.
 * Properties: the kind is one the header lists; a bad line says why;
 * request ids of OK, CONT and FAIL are 1 to 2^32-1; user names and reasons
 * are NUL-terminated within their buffers and have no control characters
 * (they go into logs, replies and the queue file); challenges and final
 * data are base64 characters only (they go into a "334" reply); mechanism
 * names are upper case, bounded, letters, digits, '-' and '_'.
 */
#include "fuzz.h"
#include "auth_client.h"

#include <ctype.h>

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int base64_only(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/' && *s != '=')
            return 0;
    return 1;
}

static void check(const struct auth_line *l)
{
    FUZZ_ASSERT(l->kind >= AUTH_LINE_BAD && l->kind <= AUTH_LINE_FAIL);
    FUZZ_ASSERT(memchr(l->user, 0, sizeof(l->user)) != NULL && printable(l->user));
    FUZZ_ASSERT(memchr(l->reason, 0, sizeof(l->reason)) != NULL && printable(l->reason));
    if (l->kind == AUTH_LINE_BAD) {
        FUZZ_ASSERT(l->why != NULL && *l->why);
        return;
    }
    if (l->kind == AUTH_LINE_OK || l->kind == AUTH_LINE_CONT || l->kind == AUTH_LINE_FAIL)
        FUZZ_ASSERT(l->id >= 1 && l->id <= 0xffffffffUL);
    if (l->kind == AUTH_LINE_CONT)
        FUZZ_ASSERT(l->data != NULL);
    if (l->data)
        FUZZ_ASSERT(base64_only(l->data));
    if (l->kind == AUTH_LINE_MECH) {
        size_t n = strnlen(l->mech.name, sizeof(l->mech.name));
        FUZZ_ASSERT(n > 0 && n < sizeof(l->mech.name));
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(isupper((unsigned char)l->mech.name[i]) ||
                        isdigit((unsigned char)l->mech.name[i]) || l->mech.name[i] == '-' ||
                        l->mech.name[i] == '_');
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_auth_reply");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char line[AUTH_LINE_MAX + 1];
    size_t pos = 0;

    while (pos < size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
        struct auth_line l;
        if (len > AUTH_LINE_MAX) {
            /* The client refuses such a line before parsing it; the parser
             * must refuse it too when asked. */
            auth_line_parse(line, len, &l);
            FUZZ_ASSERT(l.kind == AUTH_LINE_BAD);
        } else {
            memcpy(line, data + pos, len);
            auth_line_parse(line, len, &l);
            check(&l);
        }
        pos += len + (nl ? 1 : 0);
    }
    return 0;
}
