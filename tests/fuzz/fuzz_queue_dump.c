/* fuzz_queue_dump.c - libFuzzer target for lib/mail/queue_dump.c, what
 * postcat prints of a queue file: any file a queue directory may hold,
 * truncated, garbled or not a queue file at all.
 *
 * The input is the file, on a memfd, read once per option set. Besides
 * memory safety it checks: the result is 0 exactly for a well-formed file
 * (records that decode, the first Z or T, an E, nothing after it), 1
 * otherwise, never -1 (a memfd cannot fail to read); -bh prints exactly
 * the content, each content section's unterminated last line ended; -h
 * and -b split that at one point, -h before it; every offset -o prints is
 * inside the file and ascending.
 */
#include "fuzz.h"
#include "queue_dump.h"
#include "record.h"
#include "stream.h"

#define RECORD_MAX QUEUE_DUMP_RECORD_MAX

/* What the file says, read by a reader that trusts nothing. */
struct expect {
    int well_formed;
    char *content;             /* what -bh prints */
    size_t content_len;
    int sections;              /* M records read */
    int envelope_newline;      /* a record printed as an envelope line holds a line end */
};

static void model(const uint8_t *data, size_t size, struct expect *x)
{
    char **out = &x->content;
    size_t *outlen = &x->content_len;
    FILE *f = open_memstream(out, outlen);
    FUZZ_ASSERT(f != NULL);
    size_t pos = 0;
    int in_content = 0, ended = 0, first = 1, last = '\n', well_formed = 0;
    while (pos < size) {
        int type;
        size_t len;
        int h = rec_header_decode(data + pos, size - pos, &type, &len);
        if (h <= 0 || len > RECORD_MAX || len > size - pos - (size_t)h ||
            (first && type != REC_SIZE && type != REC_TIME))
            break;
        first = 0;
        const uint8_t *payload = data + pos + h;
        x->sections += type == REC_CONTENT_START;
        if (!(in_content && type == REC_CONTENT) && memchr(payload, '\n', len))
            x->envelope_newline = 1;   /* printed on an envelope line */
        pos += (size_t)h + len;
        if (in_content && type == REC_CONTENT) {
            fwrite(payload, 1, len, f);
            if (len > 0)
                last = payload[len - 1];
            continue;
        }
        if (in_content && last != '\n')
            fputc('\n', f);
        in_content = type == REC_CONTENT_START;
        last = '\n';
        if (type == REC_END) {
            ended = 1;
            well_formed = pos == size;
            break;
        }
    }
    if (!ended && in_content && last != '\n')
        fputc('\n', f);
    FUZZ_ASSERT(fclose(f) == 0);
    x->well_formed = well_formed;
}

/* postcat's output for flags, and its result. */
static char *dump(int fd, int flags, size_t *len, int *rc)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    FUZZ_ASSERT(out != NULL);
    FUZZ_ASSERT(lseek(fd, 0, SEEK_SET) == 0);
    int dupfd = dup(fd);
    FUZZ_ASSERT(dupfd >= 0);
    struct stream *s = stream_open(dupfd, 0);
    FUZZ_ASSERT(s != NULL);
    *rc = queue_dump(out, s, "fuzz", flags);
    stream_abandon(s);
    FUZZ_ASSERT(fclose(out) == 0);
    return text;
}

/* Offsets at the start of -o lines: inside the file, never decreasing. */
static void check_offsets(const char *text, size_t len, size_t size)
{
    long long prev = -1;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if (nl - p > 10 && p[9] == ' ' && (p[8] >= '0' && p[8] <= '9')) {
            long long off = strtoll(p, NULL, 10);
            FUZZ_ASSERT(off >= 0 && (size_t)off <= size);
            FUZZ_ASSERT(off >= prev);
            prev = off;
        }
        p = nl + 1;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_queue_dump");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = fuzz_memfd(data, size);
    struct expect x = {0};
    model(data, size, &x);

    size_t len_all, len_h, len_b, len_o;
    int rc_all, rc_h, rc_b, rc_o;
    char *all = dump(fd, QUEUE_DUMP_HEADERS | QUEUE_DUMP_BODY, &len_all, &rc_all);
    char *h = dump(fd, QUEUE_DUMP_HEADERS, &len_h, &rc_h);
    char *b = dump(fd, QUEUE_DUMP_BODY, &len_b, &rc_b);
    char *o = dump(fd, QUEUE_DUMP_ENVELOPE | QUEUE_DUMP_HEADERS | QUEUE_DUMP_BODY |
                   QUEUE_DUMP_OFFSETS | QUEUE_DUMP_TYPES | QUEUE_DUMP_NAMES, &len_o, &rc_o);

    FUZZ_ASSERT(rc_all == 0 || rc_all == 1);
    FUZZ_ASSERT(rc_all == rc_h && rc_all == rc_b && rc_all == rc_o);
    FUZZ_ASSERT((rc_all == 0) == x.well_formed);
    FUZZ_ASSERT(len_all == x.content_len && memcmp(all, x.content, len_all) == 0);
    /* -h is where -bh starts, -b the rest of it (each M starts a new
     * header block, so only for one content section). */
    FUZZ_ASSERT(len_h + len_b == len_all);
    if (x.sections <= 1)
        FUZZ_ASSERT(memcmp(all, h, len_h) == 0 && memcmp(all + len_h, b, len_b) == 0);
    if (!x.envelope_newline)   /* else a payload's own lines would look like -o lines */
        check_offsets(o, len_o, size);

    free(all);
    free(h);
    free(b);
    free(o);
    free(x.content);
    close(fd);
    return 0;
}
