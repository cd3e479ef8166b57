/* fuzz_queue_file.c - libFuzzer target for the queue-file reader of
 * lib/queue_file.c (queue_envelope_read and the content iterator), which
 * qmgr, local, bounce and postqueue run over whatever is in the queue,
 * corrupt files included.
 *
 * The input is the file, on a memfd. Besides memory safety it checks what
 * the in-place updates depend on: a file reads as complete exactly when the
 * reader says 0; every recipient offset points at its own R or D type byte;
 * marking every recipient done (queue_file_mark_done) and recording a delay
 * warning (queue_file_mark_warned) change nothing else in the envelope.
 */
#include "fuzz.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

#define MAX_RCPT 1000

static void check_offsets(const struct queue_envelope *env, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        off_t off = env->rcpt[i].offset;
        FUZZ_ASSERT(off >= 0 && (size_t)off < size);
        FUZZ_ASSERT(data[off] == (env->rcpt[i].done ? REC_DONE : REC_RCPT));
        FUZZ_ASSERT(env->rcpt[i].address != NULL);
    }
}

/* Walk the content: every chunk is bounded, and together they cannot be
 * larger than the file. */
static void walk_content(int fd, const struct queue_envelope *env, size_t size)
{
    int dupfd = dup(fd);
    FUZZ_ASSERT(dupfd >= 0);
    struct stream *s = stream_open(dupfd, 0);
    struct rec_buf chunk = {0};
    size_t total = 0;

    if (queue_content_begin(s, env->content_offset) == 0) {
        int rc;
        while ((rc = queue_content_next(s, &chunk)) == 1) {
            FUZZ_ASSERT(chunk.len <= REC_CHUNK_SIZE);
            total += chunk.len;
            FUZZ_ASSERT(total <= size);
        }
        FUZZ_ASSERT(rc == 0 || rc == -1);
    }
    rec_buf_free(&chunk);
    stream_abandon(s);
}

static void same_envelope(const struct queue_envelope *a, const struct queue_envelope *b)
{
    FUZZ_ASSERT(a->nrcpt == b->nrcpt && a->nattr == b->nattr && a->complete == b->complete);
    FUZZ_ASSERT(a->content_offset == b->content_offset && a->content_size == b->content_size);
    FUZZ_ASSERT((a->sender == NULL) == (b->sender == NULL));
    if (a->sender != NULL)
        FUZZ_ASSERT(strcmp(a->sender, b->sender) == 0);
    for (size_t i = 0; i < a->nrcpt; i++) {
        FUZZ_ASSERT(a->rcpt[i].offset == b->rcpt[i].offset);
        FUZZ_ASSERT(strcmp(a->rcpt[i].address, b->rcpt[i].address) == 0);
    }
}

/* Whether the Z record at env->size_offset is what cleanup writes: four
 * "%15lld" fields apart by single spaces (whatever its header's encoding).
 * Only for such a record does the delay-warning update promise anything. */
static int size_record_well_formed(const struct queue_envelope *env, const uint8_t *data,
                                   size_t size)
{
    int type;
    size_t len;
    if (env->size_offset < 0 || (size_t)env->size_offset >= size)
        return 0;
    const uint8_t *z = data + env->size_offset;
    int h = rec_header_decode(z, size - (size_t)env->size_offset, &type, &len);
    if (h <= 0 || type != REC_SIZE || len != REC_SIZE_WIDTH ||
        (size_t)env->size_offset + (size_t)h + len > size)
        return 0;
    const uint8_t *p = z + h;
    for (int field = 0; field < 4; field++) {
        const uint8_t *f = p + field * 16;
        if (field > 0 && f[-1] != ' ')
            return 0;
        int digits = 0;
        for (int i = 0; i < 15; i++) {
            if (f[i] >= '0' && f[i] <= '9')
                digits++;
            else if (f[i] != ' ' || digits > 0)
                return 0;
        }
        if (digits == 0)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct queue_envelope env, again;
    int fd = fuzz_memfd(data, size);
    int rc = queue_envelope_read(fd, &env, MAX_RCPT);

    FUZZ_ASSERT(rc == 0 || rc == -1);
    FUZZ_ASSERT((rc == 0) == (env.complete == 1));
    FUZZ_ASSERT(env.nrcpt <= MAX_RCPT);
    check_offsets(&env, data, size);
    walk_content(fd, &env, size);
    queue_envelope_attr(&env, "client_address");

    /* In-place updates, as qmgr makes them, touch only what they mean to. */
    if (rc == 0) {
        for (size_t i = 0; i < env.nrcpt; i++)
            FUZZ_ASSERT(queue_file_mark_done(fd, env.rcpt[i].offset) == 0);
        time_t when = 1700000000;
        int warned = env.warn_capable && size_record_well_formed(&env, data, size) &&
                     queue_file_mark_warned(fd, &env, when) == 0;
        FUZZ_ASSERT(queue_envelope_read(fd, &again, MAX_RCPT) == 0);
        same_envelope(&env, &again);
        for (size_t i = 0; i < again.nrcpt; i++)
            FUZZ_ASSERT(again.rcpt[i].done);
        if (warned)
            FUZZ_ASSERT(again.warn_time == when);
        queue_envelope_free(&again);
    }
    queue_envelope_free(&env);
    close(fd);
    return 0;
}
