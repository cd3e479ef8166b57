/* fuzz_showq_stream.c - libFuzzer target for lib/mail/showq_stream.c and
 * lib/util/nulattr.c: what postqueue reads from public/showq, which may
 * be a Postfix showq, a newer server, or anything listening there.
 *
 * The input is the server's output (greeting included), on a memfd.
 * Besides memory safety it checks: the greeting check and every read
 * answer in range; a failed read says why; an entry has every string and
 * at most as many recipients as the input has bytes; every entry read,
 * sent again with showq_stream_send and read back, is the same entry (the
 * writer and the reader agree, whatever the reader was fed).
 */
#include "fuzz.h"
#include "showq_stream.h"
#include "stream.h"

#define MAX_ENTRIES 1000

static struct stream *memfd_stream(const void *data, size_t size)
{
    struct stream *s = stream_open(fuzz_memfd(data, size), 0);
    FUZZ_ASSERT(s != NULL);
    return s;
}

static void same_entry(const struct queue_list_entry *a, const struct queue_list_entry *b)
{
    FUZZ_ASSERT(strcmp(a->queue, b->queue) == 0 && strcmp(a->id, b->id) == 0);
    FUZZ_ASSERT(a->arrival == b->arrival && a->size == b->size);
    FUZZ_ASSERT(a->forced_expire == b->forced_expire && strcmp(a->sender, b->sender) == 0);
    FUZZ_ASSERT(a->nrcpt == b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        FUZZ_ASSERT(strcmp(a->rcpt[i].address, b->rcpt[i].address) == 0);
        FUZZ_ASSERT(strcmp(a->rcpt[i].reason, b->rcpt[i].reason) == 0);
    }
}

/* Send e and read it back. */
static void round_trip(const struct queue_list_entry *e)
{
    char *bytes = NULL;
    size_t len = 0;
    int fd = memfd_create("out", MFD_CLOEXEC);
    FUZZ_ASSERT(fd >= 0);
    struct stream *w = stream_open(fd, 0);
    FUZZ_ASSERT(w != NULL);
    FUZZ_ASSERT(showq_stream_greet(w) == 0 && showq_stream_send(w, e) == 0);
    FUZZ_ASSERT(showq_stream_end(w) == 0);
    len = (size_t)lseek(fd, 0, SEEK_END);
    bytes = malloc(len ? len : 1);
    FUZZ_ASSERT(bytes != NULL && pread(fd, bytes, len, 0) == (ssize_t)len);
    stream_close(w);

    struct stream *s = memfd_stream(bytes, len);
    struct showq_reader r = {0};
    FUZZ_ASSERT(showq_stream_check_greeting(s) == 0);
    FUZZ_ASSERT(showq_stream_read(s, &r) == 1);
    same_entry(e, &r.entry);
    FUZZ_ASSERT(showq_stream_read(s, &r) == 0);
    showq_reader_free(&r);
    stream_close(s);
    free(bytes);
}

static void check_entry(const struct queue_list_entry *e, size_t size)
{
    FUZZ_ASSERT(e->queue && e->id && e->sender);
    FUZZ_ASSERT(e->forced_expire == 0 || e->forced_expire == 1);
    FUZZ_ASSERT(e->nrcpt <= size);
    for (size_t i = 0; i < e->nrcpt; i++)
        FUZZ_ASSERT(e->rcpt[i].address && e->rcpt[i].reason);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_showq_stream");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct stream *s = memfd_stream(data, size);
    int g = showq_stream_check_greeting(s);
    FUZZ_ASSERT(g == 0 || g == -1 || g == -2);
    /* Entries are read whatever the greeting said: the reader must hold
     * up on its own. */
    struct showq_reader r = {0};
    int n = 1;
    for (int i = 0; i < MAX_ENTRIES && n == 1; i++) {
        n = showq_stream_read(s, &r);
        FUZZ_ASSERT(n >= -1 && n <= 1);
        if (n == 1) {
            check_entry(&r.entry, size);
            round_trip(&r.entry);
        } else if (n < 0) {
            FUZZ_ASSERT(r.error != NULL);
        }
    }
    showq_reader_free(&r);
    stream_close(s);
    return 0;
}
