/* fuzz_maildrop.c - libFuzzer target for the maildrop file check of
 * lib/maildrop.c: what pickup runs over files any local user can make
 * postdrop write, and postdrop over what sendmail sends it.
 *
 * The input is read as records (rec_get over a memfd, with pickup's limit
 * of REC_CHUNK_SIZE) and fed to maildrop_check_record twice, as a file
 * (with_time) and as postdrop's input (the T record then is refused).
 * Properties: each answer is -1, 0 or 1; a refusal says why; nothing is
 * accepted after the end record; the content size never passes the limit.
 * Readers stop at the first refusal (the check is not sticky), so do we.
 */
#include "fuzz.h"
#include "maildrop.h"
#include "record.h"
#include "stream.h"

#define SIZE_LIMIT 1000

static void check_sequence(const uint8_t *data, size_t size, int with_time)
{
    struct maildrop_check c;
    struct rec_buf b = {0};
    struct stream *s = stream_open(fuzz_memfd(data, size), 0);
    int verdict = 0;

    maildrop_check_init(&c, with_time, SIZE_LIMIT);
    for (;;) {
        int type = rec_get(s, &b, REC_CHUNK_SIZE, NULL);
        if (type < 0)
            break;
        int r = maildrop_check_record(&c, type, b.data, b.len);
        FUZZ_ASSERT(r >= -1 && r <= 1);
        if (verdict == 1)
            FUZZ_ASSERT(r == -1);   /* anything after the end is refused */
        if (r == -1)
            FUZZ_ASSERT(c.error != NULL && *c.error != 0);
        FUZZ_ASSERT(c.content_size <= SIZE_LIMIT || r == -1);
        if (r != 0)
            verdict = r;
        if (type == 'A') {
            char *name, *value;
            if (rec_attr_split(b.data, &name, &value) == 0)
                maildrop_attr_ok(name, value);
        }
        if (r == -1)
            break;
    }
    rec_buf_free(&b);
    stream_abandon(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    check_sequence(data, size, 1);
    check_sequence(data, size, 0);
    char *text = fuzz_cstring(data, size);
    maildrop_notify_ok(text);
    free(text);
    return 0;
}
