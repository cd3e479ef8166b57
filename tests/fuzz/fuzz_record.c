/* fuzz_record.c - libFuzzer target for lib/record.c: the one framing that
 * queue files, maildrop files and every internal protocol share.
 *
 * The input is read as a record stream twice, from a memfd (how queue files
 * are read) and from a pipe (how IPC reads), and both readings must agree.
 * Each record read is written again with rec_put and read back unchanged.
 * rec_header_decode is also run on the raw bytes and must agree with its
 * own encoder.
 */
#include "fuzz.h"
#include "record.h"
#include "stream.h"

#include <fcntl.h>

#define MAX_PAYLOAD 4096   /* the max handed to rec_get: larger is REC_TOOBIG */
#define MAX_RECORDS 4096   /* inputs are small; a bound keeps the arrays fixed */

struct reading {
    int types[MAX_RECORDS];
    size_t lens[MAX_RECORDS];
    off_t offsets[MAX_RECORDS];
    size_t n;
    int last;                  /* the negative result that ended the reading */
};

static void check_header(const uint8_t *data, size_t size)
{
    int type;
    size_t len;
    int h = rec_header_decode(data, size, &type, &len);

    FUZZ_ASSERT(h >= -1 && h <= REC_MAX_HEADER);
    if (h <= 0)
        return;
    FUZZ_ASSERT(type == data[0]);
    unsigned char enc[REC_MAX_HEADER];
    size_t elen = rec_header_encode(enc, type, len);
    /* Only the encoder's (shortest) form is accepted. */
    FUZZ_ASSERT(elen == (size_t)h && memcmp(enc, data, elen) == 0);
    int type2;
    size_t len2;
    FUZZ_ASSERT(rec_header_decode(enc, elen, &type2, &len2) == (int)elen);
    FUZZ_ASSERT(type2 == type && len2 == len);
    /* Every shorter prefix of a complete header asks for more. */
    for (size_t cut = 1; cut < elen; cut++)
        FUZZ_ASSERT(rec_header_decode(enc, cut, &type2, &len2) == 0);
}

/* Read every record of fd; when out is given, write each one there again.
 * Offsets mean something only on a seekable file (stream_tell on a pipe
 * counts written bytes), so only those are checked. */
static void read_all(int fd, struct reading *r, struct stream *out, int seekable)
{
    struct stream *s = stream_open(fd, 5);
    struct rec_buf b = {0};
    off_t prev = -1;

    FUZZ_ASSERT(s != NULL);
    r->n = 0;
    for (;;) {
        off_t off;
        int type = rec_get(s, &b, MAX_PAYLOAD, &off);
        if (type < 0 || r->n == MAX_RECORDS) {
            r->last = type;
            break;
        }
        FUZZ_ASSERT(type < 256 && b.len <= MAX_PAYLOAD && b.data[b.len] == 0);
        if (seekable) {
            FUZZ_ASSERT(off > prev);
            prev = off;
        }
        r->types[r->n] = type;
        r->lens[r->n] = b.len;
        r->offsets[r->n] = off;
        r->n++;
        if (out != NULL)
            FUZZ_ASSERT(rec_put(out, type, b.data, b.len) == 0);
        char *name, *value;
        if (rec_attr_split(b.data, &name, &value) == 0)
            FUZZ_ASSERT(value == name + strlen(name) + 1);
    }
    rec_buf_free(&b);
    stream_abandon(s);
}

static int pipe_with(const uint8_t *data, size_t size)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0)
        abort();
    /* Inputs stay far below the pipe's 64 KiB, so this cannot block. */
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    if (size > 0 && write(p[1], data, size) != (ssize_t)size)
        abort();
    close(p[1]);
    return p[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct reading from_file, from_pipe, again;

    if (size > 65536)
        return 0;
    check_header(data, size);

    int copy_fd = memfd_create("copy", MFD_CLOEXEC);
    FUZZ_ASSERT(copy_fd >= 0);
    struct stream *copy = stream_open(copy_fd, 0);
    read_all(fuzz_memfd(data, size), &from_file, copy, 1);
    FUZZ_ASSERT(stream_flush(copy) == 0);

    read_all(pipe_with(data, size), &from_pipe, NULL, 0);
    FUZZ_ASSERT(from_pipe.n == from_file.n && from_pipe.last == from_file.last);
    for (size_t i = 0; i < from_file.n; i++)
        FUZZ_ASSERT(from_pipe.types[i] == from_file.types[i] &&
                    from_pipe.lens[i] == from_file.lens[i]);

    /* The rewritten records read back the same, and end cleanly. */
    FUZZ_ASSERT(stream_seek(copy, 0) == 0);
    int dup_fd = dup(stream_fd(copy));
    FUZZ_ASSERT(dup_fd >= 0 && lseek(dup_fd, 0, SEEK_SET) == 0);
    read_all(dup_fd, &again, NULL, 1);
    stream_abandon(copy);
    FUZZ_ASSERT(again.last == REC_EOF && again.n == from_file.n);
    for (size_t i = 0; i < again.n; i++)
        FUZZ_ASSERT(again.types[i] == from_file.types[i] && again.lens[i] == from_file.lens[i] &&
                    again.offsets[i] <= from_file.offsets[i]);
    return 0;
}
