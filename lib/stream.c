/* stream.c - buffered, bounded, timed I/O on a descriptor (see stream.h).
 *
 * One buffer serves either reading or writing at a time; switching from
 * writing to reading flushes. Waits use poll(2) with the stream's timeout so
 * that no peer can hold a daemon forever.
 */
#include "stream.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct stream {
    int fd;
    int timeout;          /* seconds, 0 = none */
    int timed_out;
    int writing;          /* buffer holds unwritten output */
    off_t pos;            /* file offset of buf[0] */
    size_t start, end;    /* read: unread bytes are buf[start..end) */
    size_t wlen;          /* write: bytes pending in buf */
    unsigned char buf[STREAM_BUFSIZE];
};

struct stream *stream_open(int fd, int timeout_secs)
{
    struct stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = fd;
    s->timeout = timeout_secs;
    off_t cur = lseek(fd, 0, SEEK_CUR);
    s->pos = cur > 0 ? cur : 0;
    return s;
}

int stream_fd(const struct stream *s)
{
    return s->fd;
}

void stream_set_timeout(struct stream *s, int timeout_secs)
{
    s->timeout = timeout_secs;
}

int stream_timed_out(const struct stream *s)
{
    return s->timed_out;
}

/* Wait until fd is ready for events; -1 on timeout (errno ETIMEDOUT). */
static int stream_wait(struct stream *s, short events)
{
    if (s->timeout <= 0)
        return 0;
    struct pollfd p = { .fd = s->fd, .events = events };
    for (;;) {
        int n = poll(&p, 1, s->timeout * 1000);
        if (n > 0)
            return 0;
        if (n == 0) {
            s->timed_out = 1;
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

int stream_flush(struct stream *s)
{
    size_t done = 0;
    while (done < s->wlen) {
        if (stream_wait(s, POLLOUT) < 0)
            return -1;
        ssize_t n = write(s->fd, s->buf + done, s->wlen - done);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    s->pos += (off_t)s->wlen;
    s->wlen = 0;
    s->writing = 0;
    return 0;
}

/* Drop read-ahead so the next write lands at the logical position. */
static int stream_enter_write(struct stream *s)
{
    if (s->writing)
        return 0;
    if (s->end > s->start) {
        off_t logical = s->pos + (off_t)s->start;
        if (lseek(s->fd, logical, SEEK_SET) < 0)
            return -1;
        s->pos = logical;
    } else {
        s->pos += (off_t)s->end;
    }
    s->start = s->end = 0;
    s->writing = 1;
    return 0;
}

int stream_write(struct stream *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    if (stream_enter_write(s) < 0)
        return -1;
    while (len > 0) {
        size_t room = sizeof(s->buf) - s->wlen;
        size_t n = len < room ? len : room;
        memcpy(s->buf + s->wlen, p, n);
        s->wlen += n;
        p += n;
        len -= n;
        if (s->wlen == sizeof(s->buf) && stream_flush(s) < 0)
            return -1;
        s->writing = 1;
    }
    return 0;
}

/* Refill the read buffer; returns bytes read, 0 at EOF, -1 on error. */
static ssize_t stream_fill(struct stream *s)
{
    if (s->writing && stream_flush(s) < 0)
        return -1;
    s->pos += (off_t)s->end;
    s->start = s->end = 0;
    for (;;) {
        if (stream_wait(s, POLLIN) < 0)
            return -1;
        ssize_t n = read(s->fd, s->buf, sizeof(s->buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n > 0)
            s->end = (size_t)n;
        return n;
    }
}

ssize_t stream_read(struct stream *s, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (s->writing || s->start == s->end) {
        ssize_t n = stream_fill(s);
        if (n <= 0)
            return n;
    }
    size_t avail = s->end - s->start;
    size_t n = len < avail ? len : avail;
    memcpy(buf, s->buf + s->start, n);
    s->start += n;
    return (ssize_t)n;
}

int stream_read_exact(struct stream *s, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = stream_read(s, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int stream_getc(struct stream *s)
{
    unsigned char c;
    return stream_read(s, &c, 1) == 1 ? c : -1;
}

int stream_skip(struct stream *s, size_t len)
{
    size_t avail = s->writing ? 0 : s->end - s->start;
    if (len <= avail) {
        s->start += len;
        return 0;
    }
    struct stat st;
    if (!s->writing && fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t target = stream_tell(s) + (off_t)len;
        if (target > st.st_size)
            return -1;
        return stream_seek(s, target);
    }
    unsigned char scratch[4096];
    while (len > 0) {
        size_t n = len < sizeof(scratch) ? len : sizeof(scratch);
        if (stream_read_exact(s, scratch, n) < 0)
            return -1;
        len -= n;
    }
    return 0;
}

off_t stream_tell(const struct stream *s)
{
    if (s->writing)
        return s->pos + (off_t)s->wlen;
    return s->pos + (off_t)s->start;
}

int stream_seek(struct stream *s, off_t off)
{
    if (s->writing && stream_flush(s) < 0)
        return -1;
    if (lseek(s->fd, off, SEEK_SET) < 0)
        return -1;
    s->pos = off;
    s->start = s->end = 0;
    return 0;
}

int stream_close(struct stream *s)
{
    int rc = 0;
    if (s->writing && stream_flush(s) < 0)
        rc = -1;
    if (close(s->fd) < 0)
        rc = -1;
    free(s);
    return rc;
}

void stream_abandon(struct stream *s)
{
    close(s->fd);
    free(s);
}
