/* stream.c - buffered, bounded, timed I/O on a descriptor (see stream.h).
 *
 * Separate read and write buffers: on a socket the two directions are
 * independent, so writing must never disturb read-ahead. On a regular file
 * they share one offset, so a write first drops read-ahead and repositions,
 * and a read first flushes. Waits use poll(2) with the stream's timeout so
 * that no peer can hold a daemon forever.
 */
#include "stream.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct stream {
    int fd;
    int timeout;          /* seconds, 0 = none */
    int timed_out;
    int seekable;         /* a regular file: one shared offset */
    off_t rbase;          /* file offset of rbuf[0] */
    size_t rstart, rend;  /* unread bytes are rbuf[rstart..rend) */
    off_t wbase;          /* file offset of wbuf[0] */
    size_t wlen;          /* bytes pending in wbuf */
    unsigned char rbuf[STREAM_BUFSIZE];
    unsigned char wbuf[STREAM_BUFSIZE];
};

struct stream *stream_open(int fd, int timeout_secs)
{
    /* malloc, not calloc: zeroing the two 64 KiB buffers cost most of the
     * user time of cleanup, qmgr and local (bench/README.md); only the
     * bookkeeping fields need a value. */
    struct stream *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    s->fd = fd;
    s->timeout = timeout_secs;
    s->timed_out = 0;
    s->rstart = s->rend = 0;
    s->wlen = 0;
    struct stat st;
    s->seekable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    off_t cur = s->seekable ? lseek(fd, 0, SEEK_CUR) : 0;
    s->rbase = s->wbase = cur > 0 ? cur : 0;
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
    if (s->timeout <= 0 || s->seekable)
        return 0;
    struct pollfd p = {.fd = s->fd, .events = events};
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
        ssize_t n = write(s->fd, s->wbuf + done, s->wlen - done);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    s->wbase += (off_t)s->wlen;
    s->wlen = 0;
    if (s->seekable)
        s->rbase = s->wbase;
    return 0;
}

/* On a file, drop read-ahead so the write lands at the logical position. */
static int stream_prepare_write(struct stream *s)
{
    if (!s->seekable || s->wlen > 0)
        return 0;
    off_t logical = s->rbase + (off_t)s->rstart;
    if (s->rend > s->rstart && lseek(s->fd, logical, SEEK_SET) < 0)
        return -1;
    s->rbase = s->wbase = logical;
    s->rstart = s->rend = 0;
    return 0;
}

int stream_copy(void *buf, size_t size, size_t *used, const void *data, size_t len,
                int (*flush)(void *ctx), void *ctx)
{
    const unsigned char *p = data;
    while (len > 0) {
        size_t room = size - *used;
        size_t n = len < room ? len : room;
        memcpy((unsigned char *)buf + *used, p, n);
        *used += n;
        p += n;
        len -= n;
        if (*used == size) {
            if (flush(ctx) < 0)
                return -1;
            *used = 0;
        }
    }
    return 0;
}

static int stream_flush_full(void *ctx)
{
    return stream_flush(ctx);
}

int stream_write(struct stream *s, const void *data, size_t len)
{
    if (stream_prepare_write(s) < 0)
        return -1;
    return stream_copy(s->wbuf, sizeof(s->wbuf), &s->wlen, data, len, stream_flush_full, s);
}

/* Refill the read buffer; returns bytes read, 0 at EOF, -1 on error.
 * Pending output is flushed first: a peer cannot answer what it has not
 * been sent, and on a file the offsets must agree. */
/* Before a refill: pending output out, the read buffer emptied. */
static int fill_begin(struct stream *s)
{
    if (s->wlen > 0 && stream_flush(s) < 0)
        return -1;
    s->rbase += (off_t)s->rend;
    s->rstart = s->rend = 0;
    return 0;
}

static ssize_t stream_fill(struct stream *s)
{
    if (fill_begin(s) < 0)
        return -1;
    for (;;) {
        if (stream_wait(s, POLLIN) < 0)
            return -1;
        ssize_t n = read(s->fd, s->rbuf, sizeof(s->rbuf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n > 0)
            s->rend = (size_t)n;
        return n;
    }
}

/* The descriptors of one control message into fds; any beyond max are
 * closed. */
static void take_fds(struct msghdr *msg, int *fds, size_t max, size_t *nfds)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*nfds < max)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
}

ssize_t stream_fill_fds(struct stream *s, int *fds, size_t max, size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 64)];
        struct cmsghdr align;
    } ctl;
    *nfds = 0;
    if (s->rstart != s->rend || s->seekable || fill_begin(s) < 0)
        return -1;
    for (;;) {
        if (stream_wait(s, POLLIN) < 0)
            return -1;
        struct iovec iov = {.iov_base = s->rbuf, .iov_len = sizeof(s->rbuf)};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = recvmsg(s->fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n >= 0)
            take_fds(&msg, fds, max, nfds);
        if (n > 0)
            s->rend = (size_t)n;
        return n;
    }
}

ssize_t stream_read(struct stream *s, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (s->rstart == s->rend || (s->seekable && s->wlen > 0)) {
        ssize_t n = stream_fill(s);
        if (n <= 0)
            return n;
    }
    size_t avail = s->rend - s->rstart;
    size_t n = len < avail ? len : avail;
    memcpy(buf, s->rbuf + s->rstart, n);
    s->rstart += n;
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

int stream_peek(struct stream *s)
{
    if ((s->rstart == s->rend || (s->seekable && s->wlen > 0)) && stream_fill(s) <= 0)
        return -1;
    return s->rbuf[s->rstart];
}

int stream_skip(struct stream *s, size_t len)
{
    size_t avail = s->rend - s->rstart;
    if (len <= avail) {
        s->rstart += len;
        return 0;
    }
    if (s->seekable) {
        struct stat st;
        off_t target = stream_tell(s) + (off_t)len;
        if (fstat(s->fd, &st) < 0 || target > st.st_size)
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
    if (s->wlen > 0)
        return s->wbase + (off_t)s->wlen;
    return s->seekable ? s->rbase + (off_t)s->rstart : s->wbase;
}

int stream_seek(struct stream *s, off_t off)
{
    if (s->wlen > 0 && stream_flush(s) < 0)
        return -1;
    if (lseek(s->fd, off, SEEK_SET) < 0)
        return -1;
    s->rbase = s->wbase = off;
    s->rstart = s->rend = 0;
    return 0;
}

int stream_close(struct stream *s)
{
    int rc = 0;
    if (s->wlen > 0 && stream_flush(s) < 0)
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
