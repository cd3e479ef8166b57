/* fuzz_remote_reply.c - libFuzzer target for remote/reply.c, the SMTP
 * client's reply parser and EHLO keyword reader: every byte a remote
 * server sends goes through it.
 *
 * Input: the server's output; lines end at LF (a CR before it is removed,
 * as the session does). Lines are fed to reply_add_line; after each
 * complete reply the parser is reset and EHLO keywords are read from it.
 * Properties: a complete reply has a code 200-599, at most REPLY_LINES_MAX
 * lines and REPLY_TEXT_MAX bytes, and an enhanced code "C.x.y" whose class
 * C is the reply code's first digit (a lying enhanced code never changes
 * the class); a SIZE limit is -1 (none offered) or not negative.
 */
#include "fuzz.h"
#include "remote.h"

static void check_complete(const struct smtp_reply *r)
{
    struct smtp_features f;

    FUZZ_ASSERT(r->code >= 200 && r->code <= 599);
    FUZZ_ASSERT(r->nlines >= 1 && r->nlines <= REPLY_LINES_MAX);
    FUZZ_ASSERT(r->len < REPLY_TEXT_MAX && strlen(r->text) == r->len);
    FUZZ_ASSERT(memchr(r->dsn, 0, sizeof(r->dsn)) != NULL);
    FUZZ_ASSERT(r->dsn[0] == '0' + r->code / 100 && r->dsn[1] == '.');
    reply_parse_ehlo(r, &f);
    FUZZ_ASSERT(f.size_limit >= -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct smtp_reply r;
    size_t pos = 0;

    reply_reset(&r);
    while (pos < size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
        size_t next = pos + len + (nl ? 1 : 0);
        if (len > 0 && data[pos + len - 1] == '\r')
            len--;
        /* A private copy, exactly len bytes, so ASan sees any overread. */
        char *line = malloc(len ? len : 1);
        memcpy(line, data + pos, len);
        int rc = reply_add_line(&r, line, len);
        free(line);
        FUZZ_ASSERT(rc == REPLY_BAD || rc == REPLY_MORE || rc == REPLY_DONE);
        if (rc == REPLY_DONE)
            check_complete(&r);
        if (rc != REPLY_MORE)
            reply_reset(&r);
        pos = next;
    }
    return 0;
}
