/* test_stream.c - unit tests for lib/util/stream.c, the buffered, timed
 * I/O under queue files and the blocking side of IPC.
 *
 * Pipes and socketpairs check the socket behaviour (output held until a
 * flush or a full buffer, short reads, EOF, read and write timeouts, a
 * peer that went away); temporary files check the one shared offset of
 * a regular file (a write after a read lands where the caller stands, a
 * read after a write flushes first), seek, tell and skip at the edges.
 * stream_copy, the one chunking loop behind every buffered writer, is
 * checked against a recording sink (pieces kept, full chunks flushed in
 * order, a failed flush stopping the copy), and stream_write on top of it.
 * stream_fill_fds takes descriptors passed with the first bytes of a
 * socket (smtpd's milter connections to cleanup).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stream.h"

/* A temporary file opened read-write, already unlinked. */
static int temp_fd(void)
{
    char path[] = "/tmp/test_stream.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* A temporary file holding len bytes of pattern(i), offset at 0. */
static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 31 + i / 251);
}

static int temp_fd_with_pattern(size_t len)
{
    int fd = temp_fd();
    unsigned char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = pattern(i);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    free(data);
    return fd;
}

static off_t file_size(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return st.st_size;
}

/* Whether fd has bytes to read right now. */
static int readable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_output_waits_for_flush(void **state)
{
    int fds[2];
    char buf[16];
    assert_int_equal(pipe(fds), 0);
    struct stream *w = stream_open(fds[1], 5);
    assert_non_null(w);
    assert_int_equal(stream_fd(w), fds[1]);

    assert_int_equal(stream_write(w, "hello", 5), 0);
    assert_int_equal(stream_tell(w), 5);
    assert_false(readable_now(fds[0]));
    assert_int_equal(stream_flush(w), 0);
    assert_int_equal(stream_tell(w), 5);
    assert_true(readable_now(fds[0]));
    assert_int_equal(read(fds[0], buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "hello", 5);

    /* Offsets on a pipe count what was written, flushed or not. */
    assert_int_equal(stream_write(w, "abc", 3), 0);
    assert_int_equal(stream_tell(w), 8);
    /* Closing flushes. */
    assert_int_equal(stream_close(w), 0);
    assert_int_equal(read(fds[0], buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(read(fds[0], buf, sizeof(buf)), 0);
    close(fds[0]);
}

static void test_full_buffer_flushes_itself(void **state)
{
    int fd = temp_fd();
    struct stream *s = stream_open(fd, 0);
    char *block = malloc(STREAM_BUFSIZE);
    assert_non_null(block);
    memset(block, 'b', STREAM_BUFSIZE);

    assert_int_equal(stream_write(s, block, STREAM_BUFSIZE - 1), 0);
    assert_int_equal(file_size(fd), 0);
    assert_int_equal(stream_write(s, "c", 1), 0);   /* exactly full */
    assert_int_equal(file_size(fd), STREAM_BUFSIZE);
    assert_int_equal(stream_write(s, "d", 1), 0);
    assert_int_equal(file_size(fd), STREAM_BUFSIZE);
    assert_int_equal(stream_tell(s), STREAM_BUFSIZE + 1);

    /* One write much larger than the buffer goes through whole. */
    assert_int_equal(stream_seek(s, 0), 0);
    char *big = malloc(3 * STREAM_BUFSIZE);
    assert_non_null(big);
    for (size_t i = 0; i < 3 * STREAM_BUFSIZE; i++)
        big[i] = (char)pattern(i);
    assert_int_equal(stream_write(s, big, 3 * STREAM_BUFSIZE), 0);
    assert_int_equal(stream_flush(s), 0);
    assert_int_equal(file_size(fd), 3 * STREAM_BUFSIZE);
    assert_int_equal(stream_seek(s, 0), 0);
    char *back = malloc(3 * STREAM_BUFSIZE);
    assert_non_null(back);
    assert_int_equal(stream_read_exact(s, back, 3 * STREAM_BUFSIZE), 0);
    assert_memory_equal(back, big, 3 * STREAM_BUFSIZE);
    assert_int_equal(stream_read(s, back, 1), 0);

    free(back);
    free(big);
    free(block);
    assert_int_equal(stream_close(s), 0);
}

static void test_short_reads_and_eof(void **state)
{
    int fds[2];
    char buf[100];
    assert_int_equal(pipe(fds), 0);
    struct stream *r = stream_open(fds[0], 5);

    assert_int_equal(write(fds[1], "12345", 5), 5);
    /* What is there, not what was asked for. */
    assert_int_equal(stream_read(r, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "12345", 5);
    /* A zero-length read returns at once, without waiting for data. */
    assert_int_equal(stream_read(r, buf, 0), 0);

    assert_int_equal(write(fds[1], "abcdef", 6), 6);
    assert_int_equal(stream_read(r, buf, 2), 2);
    assert_memory_equal(buf, "ab", 2);
    assert_int_equal(stream_read(r, buf, sizeof(buf)), 4);   /* the buffered rest */
    assert_memory_equal(buf, "cdef", 4);

    close(fds[1]);
    assert_int_equal(stream_read(r, buf, sizeof(buf)), 0);
    assert_int_equal(stream_getc(r), -1);
    assert_int_equal(stream_peek(r), -1);
    assert_false(stream_timed_out(r));
    assert_int_equal(stream_close(r), 0);
}

static void test_read_exact_needs_every_byte(void **state)
{
    int fds[2];
    char buf[8];
    assert_int_equal(pipe(fds), 0);
    struct stream *r = stream_open(fds[0], 5);
    assert_int_equal(write(fds[1], "abc", 3), 3);
    assert_int_equal(write(fds[1], "def", 3), 3);
    close(fds[1]);
    assert_int_equal(stream_read_exact(r, buf, 3), 0);
    assert_memory_equal(buf, "abc", 3);
    /* Three bytes left, four wanted: EOF part-way is a failure. */
    assert_int_equal(stream_read_exact(r, buf, 4), -1);
    assert_false(stream_timed_out(r));
    stream_abandon(r);
}

static void test_getc_and_peek(void **state)
{
    int fd = temp_fd();
    assert_int_equal(write(fd, "x\xff", 2), 2);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct stream *s = stream_open(fd, 0);

    assert_int_equal(stream_peek(s), 'x');
    assert_int_equal(stream_peek(s), 'x');   /* peeking consumes nothing */
    assert_int_equal(stream_tell(s), 0);
    assert_int_equal(stream_getc(s), 'x');
    /* A byte over 127 is a byte, not EOF. */
    assert_int_equal(stream_peek(s), 0xff);
    assert_int_equal(stream_getc(s), 0xff);
    assert_int_equal(stream_tell(s), 2);
    assert_int_equal(stream_peek(s), -1);
    assert_int_equal(stream_getc(s), -1);
    assert_int_equal(stream_close(s), 0);
}

static void test_read_timeout(void **state)
{
    int fds[2];
    char buf[4];
    assert_int_equal(pipe(fds), 0);
    /* Opened without a timeout, given one later. */
    struct stream *r = stream_open(fds[0], 0);
    stream_set_timeout(r, 1);
    assert_false(stream_timed_out(r));

    double start = now_seconds();
    errno = 0;
    /* The writer stays open and silent. */
    assert_int_equal(stream_read(r, buf, sizeof(buf)), -1);
    double waited = now_seconds() - start;
    assert_int_equal(errno, ETIMEDOUT);
    assert_true(stream_timed_out(r));
    assert_true(waited >= 0.9);
    assert_true(waited < 5.0);
    assert_int_equal(stream_getc(r), -1);
    assert_int_equal(stream_peek(r), -1);
    stream_abandon(r);
    close(fds[1]);
}

static void test_write_timeout(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* Non-blocking, so that a full socket makes write(2) return instead
     * of hanging; the stream must then wait, and give up. */
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    struct stream *w = stream_open(sv[0], 1);
    char *block = calloc(1, STREAM_BUFSIZE);
    assert_non_null(block);

    int rc = 0;
    double start = now_seconds();
    /* The peer never reads: the socket fills long before 64 MiB. */
    for (int i = 0; i < 1024 && rc == 0; i++)
        rc = stream_write(w, block, STREAM_BUFSIZE);
    int saved = errno;
    double waited = now_seconds() - start;
    assert_int_equal(rc, -1);
    assert_int_equal(saved, ETIMEDOUT);
    assert_true(stream_timed_out(w));
    assert_true(waited >= 0.9);
    assert_true(waited < 10.0);
    free(block);
    stream_abandon(w);
    close(sv[1]);
}

static void test_write_to_closed_pipe(void **state)
{
    int fds[2];
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    assert_int_equal(sigaction(SIGPIPE, &ign, &old), 0);
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    struct stream *w = stream_open(fds[1], 5);

    assert_int_equal(stream_write(w, "x", 1), 0);   /* only buffered */
    errno = 0;
    assert_int_equal(stream_flush(w), -1);
    assert_int_equal(errno, EPIPE);
    assert_false(stream_timed_out(w));
    /* The final flush fails as well, and stream_close says so. */
    assert_int_equal(stream_close(w), -1);
    assert_int_equal(sigaction(SIGPIPE, &old, NULL), 0);
}

static void test_close_reports_close_failure(void **state)
{
    int fd = temp_fd();
    struct stream *s = stream_open(fd, 0);
    close(fd);   /* behind the stream's back: its close(2) fails */
    assert_int_equal(stream_close(s), -1);
}

static void test_read_error(void **state)
{
    char path[] = "/tmp/test_stream.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    unlink(path);
    struct stream *s = stream_open(fd, 0);
    char buf[4];
    errno = 0;
    assert_int_equal(stream_read(s, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(stream_getc(s), -1);
    assert_false(stream_timed_out(s));
    assert_int_equal(stream_close(s), 0);
}

static void test_abandon_drops_pending_output(void **state)
{
    int fd = temp_fd();
    int other = dup(fd);
    assert_true(other >= 0);
    struct stream *s = stream_open(fd, 0);
    assert_int_equal(stream_write(s, "lost", 4), 0);
    stream_abandon(s);
    assert_int_equal(file_size(other), 0);
    /* The stream's descriptor was closed. */
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    close(other);
}

/* On a regular file reads and writes share one offset: a write after a
 * read goes where the caller stands, not after the read-ahead. The file
 * is checked from outside through a second descriptor. */
static void test_file_write_after_read(void **state)
{
    int fd = temp_fd();
    int other = dup(fd);
    char buf[16] = {0};
    assert_true(other >= 0);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct stream *s = stream_open(fd, 0);

    assert_int_equal(stream_read_exact(s, buf, 3), 0);
    assert_memory_equal(buf, "012", 3);
    assert_int_equal(stream_tell(s), 3);
    assert_int_equal(stream_write(s, "XY", 2), 0);
    assert_int_equal(stream_tell(s), 5);
    /* A read after a write flushes it and goes on after it. */
    assert_int_equal(stream_getc(s), '5');
    assert_int_equal(stream_tell(s), 6);
    assert_int_equal(pread(other, buf, sizeof(buf), 0), 10);
    assert_memory_equal(buf, "012XY56789", 10);

    /* And once more with the write still pending at close. */
    assert_int_equal(stream_write(s, "Z", 1), 0);
    assert_int_equal(stream_close(s), 0);
    assert_int_equal(pread(other, buf, sizeof(buf), 0), 10);
    assert_memory_equal(buf, "012XY5Z789", 10);
    close(other);
}

static void test_file_read_after_write(void **state)
{
    int fd = temp_fd();
    struct stream *s = stream_open(fd, 0);
    char buf[8];

    assert_int_equal(stream_write(s, "hello world", 11), 0);
    /* At the end of what was written there is nothing to read, and the
     * attempt flushed it. */
    assert_int_equal(stream_read(s, buf, sizeof(buf)), 0);
    assert_int_equal(file_size(fd), 11);
    assert_int_equal(stream_seek(s, 6), 0);
    assert_int_equal(stream_read_exact(s, buf, 5), 0);
    assert_memory_equal(buf, "world", 5);
    assert_int_equal(stream_tell(s), 11);
    assert_int_equal(stream_close(s), 0);
}

static void test_open_at_offset(void **state)
{
    int fd = temp_fd();
    assert_int_equal(write(fd, "abcdef", 6), 6);
    assert_int_equal(lseek(fd, 2, SEEK_SET), 2);
    struct stream *s = stream_open(fd, 0);
    assert_int_equal(stream_tell(s), 2);
    assert_int_equal(stream_getc(s), 'c');
    assert_int_equal(stream_tell(s), 3);
    assert_int_equal(stream_close(s), 0);
}

static void test_seek(void **state)
{
    struct stream *s = stream_open(temp_fd_with_pattern(3 * STREAM_BUFSIZE), 0);
    assert_int_equal(stream_getc(s), pattern(0));
    /* Forward past the read-ahead, back into it, to the very end. */
    assert_int_equal(stream_seek(s, 2 * STREAM_BUFSIZE + 5), 0);
    assert_int_equal(stream_tell(s), 2 * STREAM_BUFSIZE + 5);
    assert_int_equal(stream_getc(s), pattern(2 * STREAM_BUFSIZE + 5));
    assert_int_equal(stream_seek(s, 1), 0);
    assert_int_equal(stream_getc(s), pattern(1));
    assert_int_equal(stream_seek(s, 3 * STREAM_BUFSIZE), 0);
    assert_int_equal(stream_getc(s), -1);
    assert_int_equal(stream_close(s), 0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct stream *p = stream_open(fds[0], 1);
    errno = 0;
    assert_int_equal(stream_seek(p, 0), -1);
    assert_int_equal(errno, ESPIPE);
    assert_int_equal(stream_close(p), 0);
    close(fds[1]);
}

static void test_skip_file(void **state)
{
    size_t size = 3 * STREAM_BUFSIZE;
    struct stream *s = stream_open(temp_fd_with_pattern(size), 0);

    assert_int_equal(stream_getc(s), pattern(0));   /* fills the read-ahead */
    assert_int_equal(stream_skip(s, 10), 0);        /* inside it */
    assert_int_equal(stream_getc(s), pattern(11));
    assert_int_equal(stream_skip(s, 0), 0);
    assert_int_equal(stream_getc(s), pattern(12));
    /* Beyond it: the stream seeks. */
    assert_int_equal(stream_skip(s, 2 * STREAM_BUFSIZE), 0);
    assert_int_equal(stream_tell(s), 2 * STREAM_BUFSIZE + 13);
    assert_int_equal(stream_getc(s), pattern(2 * STREAM_BUFSIZE + 13));
    /* Skipping to exactly the end is fine, one byte further is not. */
    off_t pos = stream_tell(s);
    assert_int_equal(stream_skip(s, size - (size_t)pos + 1), -1);
    assert_int_equal(stream_seek(s, pos), 0);
    assert_int_equal(stream_skip(s, size - (size_t)pos), 0);
    assert_int_equal(stream_tell(s), (off_t)size);
    assert_int_equal(stream_getc(s), -1);
    assert_int_equal(stream_close(s), 0);
}

static void test_skip_pipe(void **state)
{
    int fds[2];
    unsigned char data[10000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = pattern(i);
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], data, sizeof(data)), (ssize_t)sizeof(data));
    close(fds[1]);
    struct stream *r = stream_open(fds[0], 5);

    /* Without seeking: more than one scratch buffer's worth is read. */
    assert_int_equal(stream_skip(r, 5000), 0);
    assert_int_equal(stream_getc(r), pattern(5000));
    /* 4999 bytes are left; skipping 5000 runs into EOF. */
    assert_int_equal(stream_skip(r, 5000), -1);
    assert_int_equal(stream_close(r), 0);
}

/* --- stream_copy --- */
#define CHUNK 8

/* A flush that records what it was handed. */
struct sink {
    char buf[CHUNK];
    size_t used;
    char out[256];
    size_t out_len;
    int flushes;
    int fail_at;      /* flush number that fails, 0 = none */
};

static int sink_flush(void *ctx)
{
    struct sink *k = ctx;

    k->flushes++;
    if (k->fail_at != 0 && k->flushes == k->fail_at)
        return -1;
    memcpy(k->out + k->out_len, k->buf, k->used);
    k->out_len += k->used;
    return 0;
}

static void test_small_pieces_stay_in_the_buffer(void **state)
{
    (void)state;
    struct sink k = {0};

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "abc", 3, sink_flush, &k), 0);
    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "de", 2, sink_flush, &k), 0);
    assert_int_equal(k.flushes, 0);
    assert_int_equal(k.used, 5);
    assert_memory_equal(k.buf, "abcde", 5);
}

static void test_each_full_buffer_is_flushed_in_order(void **state)
{
    (void)state;
    struct sink k = {0};
    const char *text = "0123456789abcdefghijKLM";   /* 23 bytes: 2 full chunks + 7 */

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "xyz", 3, sink_flush, &k), 0);
    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, text, strlen(text), sink_flush, &k), 0);
    assert_int_equal(k.flushes, 3);
    assert_int_equal(k.out_len, 24);
    assert_memory_equal(k.out, "xyz0123456789abcdefghijK", 24);
    assert_int_equal(k.used, 2);
    assert_memory_equal(k.buf, "LM", 2);
}

static void test_exact_fill_flushes_and_empties(void **state)
{
    (void)state;
    struct sink k = {0};

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "12345678", CHUNK, sink_flush, &k), 0);
    assert_int_equal(k.flushes, 1);
    assert_int_equal(k.used, 0);
    assert_memory_equal(k.out, "12345678", CHUNK);
}

static void test_a_failed_flush_stops_the_copy(void **state)
{
    (void)state;
    struct sink k = {.fail_at = 2};
    char big[40];

    memset(big, 'q', sizeof(big));
    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, big, sizeof(big), sink_flush, &k), -1);
    assert_int_equal(k.flushes, 2);   /* nothing tried after the failure */
    assert_int_equal(k.out_len, CHUNK);
}

static void test_empty_copy_does_nothing(void **state)
{
    (void)state;
    struct sink k = {0};

    assert_int_equal(stream_copy(k.buf, CHUNK, &k.used, "", 0, sink_flush, &k), 0);
    assert_int_equal(k.flushes, 0);
    assert_int_equal(k.used, 0);
}

/* stream_write over stream_copy: more than STREAM_BUFSIZE in one call,
 * then a small one, all on disk in order after close. */
static void test_stream_write_larger_than_its_buffer(void **state)
{
    (void)state;
    char path[] = "/tmp/test_stream.XXXXXX";
    int fd = mkstemp(path);
    size_t big = STREAM_BUFSIZE * 2 + 100;
    char *data = malloc(big), *back = malloc(big + 3);

    assert_true(fd >= 0);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    struct stream *s = stream_open(fd, 0);
    assert_non_null(s);
    assert_int_equal(stream_write(s, data, big), 0);
    assert_int_equal(stream_write(s, "END", 3), 0);
    assert_int_equal(stream_close(s), 0);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, back, big + 3), (ssize_t)(big + 3));
    close(fd);
    unlink(path);
    assert_memory_equal(back, data, big);
    assert_memory_equal(back + big, "END", 3);
    free(data);
    free(back);
}

/* Send data with fds attached (SCM_RIGHTS), as smtpd does to cleanup. */
static void send_with_fds(int sock, const char *data, const int *fds, size_t n)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    assert_int_equal(sendmsg(sock, &msg, 0), (ssize_t)strlen(data));
}

static void test_fill_fds_takes_passed_descriptors(void **state)
{
    int sv[2], p[2], got[4];
    size_t n;
    char buf[32];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(p), 0);
    send_with_fds(sv[1], "request", p, 2);
    assert_int_equal(write(sv[1], "+rest", 5), 5);
    struct stream *s = stream_open(sv[0], 5);
    assert_int_equal(stream_fill_fds(s, got, 4, &n), 7);   /* up to the descriptors' bytes */
    assert_int_equal(n, 2);
    /* They work: what goes into the passed pipe comes out of ours. */
    assert_int_equal(write(got[1], "x", 1), 1);
    assert_int_equal(read(p[0], buf, 1), 1);
    /* The stream reads on as usual, and refuses a second fill while it
     * holds unread bytes. */
    assert_int_equal(stream_read(s, buf, 3), 3);
    assert_int_equal(stream_fill_fds(s, got + 2, 2, &n), -1);
    assert_int_equal(stream_read_exact(s, buf, 9), 0);
    assert_memory_equal(buf, "uest+rest", 9);
    /* More descriptors than room: the rest are closed, not leaked. */
    send_with_fds(sv[1], "again", p, 2);
    int one;
    assert_int_equal(stream_fill_fds(s, &one, 1, &n), 5);
    assert_int_equal(n, 1);
    assert_int_equal(stream_read_exact(s, buf, 5), 0);
    close(one);
    close(got[0]);
    close(got[1]);
    close(p[0]);
    close(p[1]);
    close(sv[1]);
    /* A peer that passes nothing: a plain read. */
    assert_int_equal(stream_fill_fds(s, got, 4, &n), 0);
    assert_int_equal(n, 0);
    stream_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_waits_for_flush),
        cmocka_unit_test(test_full_buffer_flushes_itself),
        cmocka_unit_test(test_short_reads_and_eof),
        cmocka_unit_test(test_read_exact_needs_every_byte),
        cmocka_unit_test(test_getc_and_peek),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_write_to_closed_pipe),
        cmocka_unit_test(test_close_reports_close_failure),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_abandon_drops_pending_output),
        cmocka_unit_test(test_file_write_after_read),
        cmocka_unit_test(test_file_read_after_write),
        cmocka_unit_test(test_open_at_offset),
        cmocka_unit_test(test_seek),
        cmocka_unit_test(test_skip_file),
        cmocka_unit_test(test_skip_pipe),
        cmocka_unit_test(test_small_pieces_stay_in_the_buffer),
        cmocka_unit_test(test_each_full_buffer_is_flushed_in_order),
        cmocka_unit_test(test_exact_fill_flushes_and_empties),
        cmocka_unit_test(test_a_failed_flush_stops_the_copy),
        cmocka_unit_test(test_empty_copy_does_nothing),
        cmocka_unit_test(test_stream_write_larger_than_its_buffer),
        cmocka_unit_test(test_fill_fds_takes_passed_descriptors),
    };
    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
